//! `switchboard serve` settings: command-line flags, then environment variables (clap reads
//! both), then a TOML file, then defaults that give a working call on localhost.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8080";
pub const DEFAULT_RTC_ADDR: &str = "127.0.0.1:50000";
pub const DEFAULT_TURN_ADDR: &str = "127.0.0.1:3478";
/// Ephemeral TURN credentials handed to participants stay valid this long: longer than any
/// call, since every TURN Refresh is authenticated with them.
pub const DEFAULT_TURN_CREDENTIAL_TTL_SECS: u64 = 12 * 3600;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// HTTP and WebSocket listen address [default: 127.0.0.1:8080]
    #[arg(long, env = "SWITCHBOARD_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// Media address: one UDP port for all peers, and ICE-TCP on the same port number
    /// [default: 127.0.0.1:50000]
    #[arg(long, env = "SWITCHBOARD_RTC_ADDR")]
    pub rtc_addr: Option<SocketAddr>,
    /// The IP put in ICE candidates, for servers behind 1:1 NAT or bound to 0.0.0.0
    #[arg(long, env = "SWITCHBOARD_PUBLIC_IP")]
    pub public_ip: Option<IpAddr>,
    /// Do not accept ICE-TCP on the media port
    #[arg(long, env = "SWITCHBOARD_NO_ICE_TCP")]
    pub no_ice_tcp: bool,
    /// Embedded TURN server: UDP and TCP listen address [default: 127.0.0.1:3478]
    #[arg(long, env = "SWITCHBOARD_TURN_ADDR")]
    pub turn_addr: Option<SocketAddr>,
    /// Do not run the embedded TURN server (participants get no iceServers)
    #[arg(long, env = "SWITCHBOARD_NO_TURN")]
    pub no_turn: bool,
    /// Secret for the ephemeral TURN credentials [default: random at each start]
    #[arg(long, env = "SWITCHBOARD_TURN_SECRET")]
    pub turn_secret: Option<String>,
    /// Let TURN relay to loopback addresses. For local testing only
    #[arg(long)]
    pub turn_allow_loopback_peers: bool,
    /// A TOML file with any of: http_addr, rtc_addr, public_ip, ice_tcp, turn_addr, turn,
    /// turn_secret
    #[arg(long, short, env = "SWITCHBOARD_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    http_addr: Option<SocketAddr>,
    rtc_addr: Option<SocketAddr>,
    public_ip: Option<IpAddr>,
    ice_tcp: Option<bool>,
    turn_addr: Option<SocketAddr>,
    turn: Option<bool>,
    turn_secret: Option<String>,
}

/// The settings `serve` runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeConfig {
    pub http_addr: SocketAddr,
    pub rtc_addr: SocketAddr,
    pub public_ip: Option<IpAddr>,
    pub ice_tcp: bool,
    /// The embedded TURN server, if enabled.
    pub turn: Option<TurnSettings>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TurnSettings {
    pub addr: SocketAddr,
    /// The address was configured, not defaulted: failing to bind it is an error, while a
    /// busy default port (another TURN server on the machine) only disables ours.
    pub addr_configured: bool,
    pub secret: String,
    pub allow_loopback_peers: bool,
    pub credential_ttl: std::time::Duration,
}

impl ServeConfig {
    pub fn resolve(args: &ServeArgs) -> anyhow::Result<Self> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        Ok(Self {
            http_addr: args
                .http_addr
                .or(file.http_addr)
                .unwrap_or(default(DEFAULT_HTTP_ADDR)),
            rtc_addr: args
                .rtc_addr
                .or(file.rtc_addr)
                .unwrap_or(default(DEFAULT_RTC_ADDR)),
            public_ip: args.public_ip.or(file.public_ip),
            ice_tcp: !args.no_ice_tcp && file.ice_tcp.unwrap_or(true),
            turn: (!args.no_turn && file.turn.unwrap_or(true)).then(|| TurnSettings {
                addr: args
                    .turn_addr
                    .or(file.turn_addr)
                    .unwrap_or(default(DEFAULT_TURN_ADDR)),
                addr_configured: args.turn_addr.or(file.turn_addr).is_some(),
                secret: args
                    .turn_secret
                    .clone()
                    .or(file.turn_secret)
                    .unwrap_or_else(random_secret),
                allow_loopback_peers: args.turn_allow_loopback_peers,
                credential_ttl: std::time::Duration::from_secs(DEFAULT_TURN_CREDENTIAL_TTL_SECS),
            }),
        })
    }
}

fn random_secret() -> String {
    (0..32)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

fn default(addr: &str) -> SocketAddr {
    // The defaults are literals above; a test checks that they parse.
    addr.parse()
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)))
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    #[test]
    fn defaults_give_a_local_server() {
        let cli = Cli::parse_from(["x"]);
        let config = ServeConfig::resolve(&cli.serve).unwrap();
        assert_eq!(config.http_addr, DEFAULT_HTTP_ADDR.parse().unwrap());
        assert_eq!(config.rtc_addr, DEFAULT_RTC_ADDR.parse().unwrap());
        assert!(config.ice_tcp);
        assert_eq!(config.public_ip, None);
        let turn = config.turn.expect("TURN is on by default");
        assert_eq!(turn.addr, DEFAULT_TURN_ADDR.parse().unwrap());
        assert_eq!(turn.secret.len(), 64, "a random secret");
        assert!(!turn.allow_loopback_peers);
    }

    #[test]
    fn flags_override_the_file() {
        let dir = std::env::temp_dir().join(format!("sb-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("switchboard.toml");
        std::fs::write(&path, "http_addr = \"0.0.0.0:9000\"\nrtc_addr = \"0.0.0.0:40000\"\npublic_ip = \"203.0.113.7\"\nice_tcp = false\nturn = false\n").unwrap();
        let cli = Cli::parse_from([
            "x",
            "--config",
            path.to_str().unwrap(),
            "--http-addr",
            "127.0.0.1:8181",
        ]);
        let config = ServeConfig::resolve(&cli.serve).unwrap();
        assert_eq!(config.http_addr, "127.0.0.1:8181".parse().unwrap());
        assert_eq!(config.rtc_addr, "0.0.0.0:40000".parse().unwrap());
        assert_eq!(config.public_ip, Some("203.0.113.7".parse().unwrap()));
        assert!(!config.ice_tcp);
        assert_eq!(config.turn, None);
        std::fs::write(&path, "http_adr = \"0.0.0.0:9000\"\n").unwrap();
        let err = ServeConfig::resolve(&cli.serve).unwrap_err();
        assert!(
            format!("{err:#}").contains("http_adr"),
            "unknown keys are reported: {err:#}"
        );
    }
}
