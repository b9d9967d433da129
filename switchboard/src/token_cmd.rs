//! `switchboard token`: mint an access token with the server's API key and secret.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use signaling::auth::{Auth, Grants, TokenRequest};

use crate::config::{self, ApiKeyArgs};

#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// The room the token grants. Required unless --admin (an admin token without a room
    /// administers every room)
    #[arg(long)]
    pub room: Option<String>,
    /// The participant's identity (the token's `sub`)
    #[arg(long)]
    pub identity: String,
    /// Display name shown to the others [default: the one in the join message]
    #[arg(long)]
    pub name: Option<String>,
    /// Grant publishing media
    #[arg(long)]
    pub publish: bool,
    /// Grant receiving the others' media
    #[arg(long)]
    pub subscribe: bool,
    /// Grant the room API on the room (every room without --room)
    #[arg(long)]
    pub admin: bool,
    /// How long the token is valid: 90s, 30m, 1h, 7d, or seconds
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    pub ttl: Duration,
    #[command(flatten)]
    pub keys: ApiKeyArgs,
    /// The server's TOML config file, to read api_key and api_secret from
    #[arg(long, short, env = "SWITCHBOARD_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Print a token for `args` on stdout.
pub fn run(args: TokenArgs) -> anyhow::Result<()> {
    println!("{}", mint(&args)?);
    Ok(())
}

pub fn mint(args: &TokenArgs) -> anyhow::Result<String> {
    let (key, secret) = config::token_keys(&args.keys, args.config.as_deref())?;
    if args.room.is_none() && !args.admin {
        bail!("--room is required (only admin tokens may omit it)");
    }
    if let Some(room) = &args.room {
        signaling::protocol::validate_room(room).map_err(anyhow::Error::msg)?;
    }
    // No grant named: a participant token that publishes and subscribes.
    let default = !(args.publish || args.subscribe || args.admin);
    let request = TokenRequest {
        identity: args.identity.clone(),
        name: args.name.clone(),
        room: args.room.clone(),
        grants: Grants {
            publish: args.publish || default,
            subscribe: args.subscribe || default,
            admin: args.admin,
        },
        ttl: args.ttl,
    };
    Auth::new(&key, &secret)
        .mint(&request)
        .context("signing the token")
}

fn parse_ttl(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, ""), |i| text.split_at(i));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 90s, 30m, 1h or 7d"))?;
    let seconds = match unit {
        "" | "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        _ => return Err(format!("{text:?}: the unit is one of s, m, h, d")),
    }
    .ok_or_else(|| format!("{text:?} is too long a TTL"))?;
    if seconds == 0 {
        return Err("the TTL must be positive".into());
    }
    Ok(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        token: TokenArgs,
    }

    #[test]
    fn ttls_parse() {
        assert_eq!(parse_ttl("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_ttl("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(parse_ttl("1w").is_err());
        assert!(parse_ttl("h").is_err());
        assert!(parse_ttl("0s").is_err());
        assert!(
            parse_ttl("999999999999999999d").is_err(),
            "overflow is an error"
        );
    }

    #[test]
    fn minted_tokens_carry_the_flags() {
        let cli = Cli::parse_from([
            "x",
            "--room",
            "standup",
            "--identity",
            "bob",
            "--subscribe",
            "--api-key",
            "k",
            "--api-secret",
            "s",
        ]);
        let token = mint(&cli.token).unwrap();
        let claims = Auth::new("k", "s").verify(&token).unwrap();
        assert_eq!(claims.room.as_deref(), Some("standup"));
        assert_eq!(claims.sub, "bob");
        assert!(claims.grants.subscribe && !claims.grants.publish && !claims.grants.admin);

        let cli = Cli::parse_from([
            "x",
            "--identity",
            "ops",
            "--admin",
            "--api-key",
            "k",
            "--api-secret",
            "s",
        ]);
        let claims = Auth::new("k", "s")
            .verify(&mint(&cli.token).unwrap())
            .unwrap();
        assert!(claims.administers("any-room"));

        let cli = Cli::parse_from([
            "x",
            "--identity",
            "eve",
            "--api-key",
            "k",
            "--api-secret",
            "s",
        ]);
        assert!(mint(&cli.token).is_err(), "a room is required");
    }
}
