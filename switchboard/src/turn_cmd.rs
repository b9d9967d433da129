//! `switchboard turn`: the bundled STUN/TURN server on its own, with coturn-like flags.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::{bail, Context};
use turn::{Cidr, TurnConfig};

#[derive(Debug, clap::Args)]
pub struct TurnArgs {
    /// UDP and TCP listen address
    #[arg(long, env = "SWITCHBOARD_TURN_LISTEN", default_value = "0.0.0.0:3478")]
    pub listen: SocketAddr,
    /// TLS (turns:) listen address, used with --tls-cert and --tls-key
    #[arg(
        long,
        env = "SWITCHBOARD_TURN_TLS_LISTEN",
        default_value = "0.0.0.0:5349"
    )]
    pub tls_listen: SocketAddr,
    /// PEM certificate chain for TLS
    #[arg(long, env = "SWITCHBOARD_TURN_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS
    #[arg(long, env = "SWITCHBOARD_TURN_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Local IPv4 address relay sockets bind to
    #[arg(long, env = "SWITCHBOARD_TURN_RELAY_IP", default_value = "0.0.0.0")]
    pub relay_ip: IpAddr,
    /// Public IPv4 address advertised for relays (1:1 NAT)
    #[arg(long, env = "SWITCHBOARD_TURN_EXTERNAL_IP")]
    pub external_ip: Option<IpAddr>,
    /// Local IPv6 address for IPv6 relays (REQUESTED-ADDRESS-FAMILY); none disables them
    #[arg(long, env = "SWITCHBOARD_TURN_RELAY_IPV6")]
    pub relay_ipv6: Option<IpAddr>,
    /// Realm for long-term credentials
    #[arg(long, env = "SWITCHBOARD_TURN_REALM", default_value = "switchboard")]
    pub realm: String,
    /// A static user, NAME:PASSWORD (repeatable)
    #[arg(long = "user", value_name = "NAME:PASSWORD")]
    pub users: Vec<String>,
    /// Shared secret for ephemeral "TURN REST API" credentials (coturn's use-auth-secret)
    #[arg(long, env = "SWITCHBOARD_TURN_SECRET")]
    pub auth_secret: Option<String>,
    /// Peer range always allowed, even inside the default-denied ones (repeatable)
    #[arg(long = "allow-peer", value_name = "CIDR")]
    pub allow_peers: Vec<String>,
    /// Peer range denied in addition to the built-in list (repeatable)
    #[arg(long = "deny-peer", value_name = "CIDR")]
    pub deny_peers: Vec<String>,
    /// Allow relaying to 127.0.0.0/8 and ::1. For local testing only
    #[arg(long)]
    pub allow_loopback_peers: bool,
    /// Simultaneous allocations per user
    #[arg(long, default_value_t = 10)]
    pub max_allocations_per_user: usize,
    /// Simultaneous allocations per client IP (0: no limit)
    #[arg(long, default_value_t = turn::DEFAULT_MAX_ALLOCATIONS_PER_IP)]
    pub max_allocations_per_ip: usize,
    /// Simultaneous allocations in total
    #[arg(long, default_value_t = 10_000)]
    pub max_allocations: usize,
    /// Relay bandwidth cap per allocation, bytes per second (0: none)
    #[arg(long, default_value_t = 0)]
    pub max_bytes_per_sec: u64,
    /// Relay ports, LOW-HIGH
    #[arg(long, default_value = "49152-65535")]
    pub port_range: String,
}

impl TurnArgs {
    pub fn to_config(&self) -> anyhow::Result<TurnConfig> {
        let users = self
            .users
            .iter()
            .map(|u| {
                let (name, password) = u.split_once(':').context("--user takes NAME:PASSWORD")?;
                if name.is_empty() || password.is_empty() {
                    bail!("--user takes NAME:PASSWORD, both non-empty");
                }
                Ok((name.to_owned(), password.to_owned()))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        if users.is_empty() && self.auth_secret.is_none() {
            bail!("no credentials configured: give --user NAME:PASSWORD or --auth-secret SECRET");
        }
        Ok(TurnConfig {
            listen: self.listen,
            tls_listen: self.tls_listen,
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            relay_ip: self.relay_ip,
            relay_ipv6: self.relay_ipv6,
            external_ip: self.external_ip,
            realm: self.realm.clone(),
            users,
            auth_secret: self.auth_secret.clone(),
            allow_peers: parse_cidrs(&self.allow_peers)?,
            deny_peers: parse_cidrs(&self.deny_peers)?,
            allow_loopback_peers: self.allow_loopback_peers,
            max_allocations_per_user: self.max_allocations_per_user,
            max_allocations_per_ip: self.max_allocations_per_ip,
            max_allocations: self.max_allocations,
            max_bytes_per_sec: self.max_bytes_per_sec,
            port_range: parse_port_range(&self.port_range)?,
            ..TurnConfig::default()
        })
    }
}

fn parse_cidrs(list: &[String]) -> anyhow::Result<Vec<Cidr>> {
    list.iter()
        .map(|c| {
            c.parse::<Cidr>()
                .map_err(|e| anyhow::anyhow!("bad CIDR {c:?}: {e}"))
        })
        .collect()
}

fn parse_port_range(s: &str) -> anyhow::Result<std::ops::RangeInclusive<u16>> {
    let (low, high) = s.split_once('-').context("--port-range takes LOW-HIGH")?;
    let (low, high): (u16, u16) = (low.trim().parse()?, high.trim().parse()?);
    if low == 0 || low > high {
        bail!("--port-range {s}: need 1 <= LOW <= HIGH");
    }
    Ok(low..=high)
}

pub async fn run(args: TurnArgs) -> anyhow::Result<()> {
    let config = args.to_config()?;
    let server = turn::TurnServer::bind(config)
        .await
        .context("starting TURN")?;
    tracing::info!(listen = %server.local_addr(), tls = ?server.tls_local_addr(), "TURN server up");
    server
        .run(crate::serve::shutdown_signal())
        .await
        .context("TURN server")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        turn: TurnArgs,
    }

    #[test]
    fn flags_map_to_the_config() {
        let cli = Cli::parse_from([
            "x",
            "--user",
            "alice:pw",
            "--auth-secret",
            "s3",
            "--deny-peer",
            "203.0.113.0/24",
            "--allow-peer",
            "10.1.0.0/16",
            "--port-range",
            "40000-40100",
            "--max-bytes-per-sec",
            "125000",
            "--max-allocations-per-ip",
            "3",
        ]);
        let config = cli.turn.to_config().unwrap();
        assert_eq!(config.users, vec![("alice".to_owned(), "pw".to_owned())]);
        assert_eq!(config.auth_secret.as_deref(), Some("s3"));
        assert_eq!(config.port_range, 40000..=40100);
        assert_eq!(config.deny_peers.len(), 1);
        assert_eq!(config.allow_peers.len(), 1);
        assert_eq!(config.max_bytes_per_sec, 125_000);
        assert_eq!(config.max_allocations_per_ip, 3);
        assert!(
            !config.allow_loopback_peers,
            "loopback stays denied unless asked"
        );
    }

    #[test]
    fn bad_flags_are_refused() {
        for args in [
            vec!["x"],
            vec!["x", "--user", "nopassword"],
            vec!["x", "--user", "a:b", "--port-range", "5-1"],
            vec!["x", "--user", "a:b", "--deny-peer", "not-a-cidr"],
        ] {
            let cli = Cli::parse_from(args.clone());
            assert!(cli.turn.to_config().is_err(), "{args:?} accepted");
        }
    }
}
