//! `switchboard serve` settings: command-line flags, then environment variables (clap reads
//! both), then a TOML file, then defaults that give a working call on localhost.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;
use sfu::SfuLimits;
use signaling::{ConnectionLimits, IpNet};

pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8080";
pub const DEFAULT_RTC_ADDR: &str = "127.0.0.1:50000";
pub const DEFAULT_TURN_ADDR: &str = "127.0.0.1:3478";
/// Where a cluster node listens for relay links from the other nodes.
pub const DEFAULT_RELAY_ADDR: &str = "127.0.0.1:7946";
/// Ephemeral TURN credentials handed to participants stay valid this long: longer than any
/// call, since every TURN Refresh is authenticated with them.
pub const DEFAULT_TURN_CREDENTIAL_TTL_SECS: u64 = 12 * 3600;
/// A drain waits this long for participants to leave (they are told to reconnect at once,
/// so it takes seconds unless some client ignores it).
pub const DEFAULT_DRAIN_DEADLINE: Duration = Duration::from_secs(60);

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
    /// Media worker threads; a room may span them [default: one per core]
    #[arg(long, env = "SWITCHBOARD_MEDIA_WORKERS")]
    pub media_workers: Option<usize>,
    /// How many participants a room's media worker may have above the least loaded one before
    /// the room's next participant goes to another worker (0 spreads every room evenly)
    /// [default: 8]
    #[arg(long, env = "SWITCHBOARD_WORKER_SPILL_MARGIN")]
    pub worker_spill_margin: Option<usize>,
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
    /// Most live TURN allocations one client IP may hold (0: no limit) [default: 20]
    #[arg(
        long,
        env = "SWITCHBOARD_TURN_MAX_ALLOCATIONS_PER_IP",
        value_name = "N"
    )]
    pub turn_max_allocations_per_ip: Option<usize>,
    /// Seconds a participant whose WebSocket dropped may reconnect and resume its session,
    /// media flowing meanwhile [default: 30]
    #[arg(long, env = "SWITCHBOARD_RESUME_GRACE", value_name = "SECONDS")]
    pub resume_grace: Option<u64>,
    #[command(flatten)]
    pub keys: ApiKeyArgs,
    /// Most rooms at once [default: 10000]
    #[arg(long, env = "SWITCHBOARD_MAX_ROOMS")]
    pub max_rooms: Option<usize>,
    /// Most participants in one room [default: 1000]
    #[arg(long, env = "SWITCHBOARD_MAX_PARTICIPANTS_PER_ROOM")]
    pub max_participants_per_room: Option<usize>,
    /// Most tracks one participant may publish [default: 16]
    #[arg(long, env = "SWITCHBOARD_MAX_TRACKS_PER_PARTICIPANT")]
    pub max_tracks_per_participant: Option<usize>,
    /// Most participants joined but not yet connected, server-wide [default: 1000]
    #[arg(long, env = "SWITCHBOARD_MAX_PENDING_JOINS")]
    pub max_pending_joins: Option<usize>,
    /// Sustained signaling messages per second per connection [default: 50]
    #[arg(long, env = "SWITCHBOARD_MAX_MESSAGES_PER_SEC")]
    pub max_messages_per_sec: Option<f64>,
    /// Signaling messages a connection may send at once [default: 200]
    #[arg(long, env = "SWITCHBOARD_MESSAGE_BURST")]
    pub message_burst: Option<u32>,
    /// Seconds between WebSocket pings [default: 15]
    #[arg(long, env = "SWITCHBOARD_WS_PING_INTERVAL")]
    pub ws_ping_interval: Option<f64>,
    /// Seconds of silence (not even a pong) after which a WebSocket is closed [default: 45]
    #[arg(long, env = "SWITCHBOARD_WS_IDLE_TIMEOUT")]
    pub ws_idle_timeout: Option<f64>,
    /// WebSocket connections one client IP may have open at once; 0 for no limit
    /// [default: 100]
    #[arg(long, env = "SWITCHBOARD_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<u32>,
    /// Joins one client IP may make per minute; 0 for no limit [default: 60]
    #[arg(long, env = "SWITCHBOARD_MAX_JOINS_PER_IP_PER_MINUTE")]
    pub max_joins_per_ip_per_minute: Option<u32>,
    /// A reverse proxy (IP address or CIDR network) whose X-Forwarded-For header names the
    /// client; repeat it or separate with commas [default: none, the header is ignored]
    #[arg(
        long = "trusted-proxy",
        env = "SWITCHBOARD_TRUSTED_PROXY",
        value_name = "IP_OR_CIDR",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<IpNet>,
    /// Serve HTTPS and WSS on the HTTP address with this certificate chain (PEM), reloaded on
    /// SIGHUP and when the file changes. Needs --tls-key
    #[arg(long, env = "SWITCHBOARD_TLS_CERT", value_name = "PEM_FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert
    #[arg(long, env = "SWITCHBOARD_TLS_KEY", value_name = "PEM_FILE")]
    pub tls_key: Option<PathBuf>,
    /// Seconds a drain (SIGUSR1 or POST /api/drain) waits for the server to empty before
    /// exiting anyway [default: 60]
    #[arg(long, env = "SWITCHBOARD_DRAIN_DEADLINE", value_name = "SECONDS")]
    pub drain_deadline: Option<f64>,
    /// Join a cluster whose registry is this Redis (redis://host:port); rooms then span every
    /// node of it (docs/scaling.md). Needs --cluster-secret
    #[arg(long, env = "SWITCHBOARD_REDIS", value_name = "URL")]
    pub redis: Option<String>,
    /// The secret every node of the cluster shares (at least 16 bytes): it authenticates and
    /// encrypts the relay links between nodes
    #[arg(long, env = "SWITCHBOARD_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,
    /// Where this node listens for relay links from the other nodes [default: 127.0.0.1:7946]
    #[arg(long, env = "SWITCHBOARD_RELAY_ADDR")]
    pub relay_addr: Option<SocketAddr>,
    /// Where the other nodes reach this node's relay, when it differs from --relay-addr (a
    /// wildcard bind, NAT) [default: --relay-addr]
    #[arg(long, env = "SWITCHBOARD_NODE_ADDR")]
    pub node_addr: Option<SocketAddr>,
    /// A TOML file with any of: http_addr, rtc_addr, public_ip, ice_tcp, media_workers,
    /// worker_spill_margin, turn_addr, turn, turn_secret, api_key, api_secret, tls_cert,
    /// tls_key, trusted_proxy (a list), drain_deadline, turn_max_allocations_per_ip, redis,
    /// cluster_secret, relay_addr, node_addr, and the limits (max_rooms, ..., ws_idle_timeout,
    /// max_connections_per_ip, max_joins_per_ip_per_minute)
    #[arg(long, short, env = "SWITCHBOARD_CONFIG")]
    pub config: Option<PathBuf>,
}

/// The API key and secret that sign access tokens.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiKeyArgs {
    /// API key: the issuer of access tokens. Needs --api-secret
    #[arg(long, env = "SWITCHBOARD_API_KEY")]
    pub api_key: Option<String>,
    /// API secret that signs access tokens (HS256). Without one the server runs in
    /// development mode: joins need no token
    #[arg(long, env = "SWITCHBOARD_API_SECRET", hide_env_values = true)]
    pub api_secret: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    http_addr: Option<SocketAddr>,
    rtc_addr: Option<SocketAddr>,
    public_ip: Option<IpAddr>,
    ice_tcp: Option<bool>,
    media_workers: Option<usize>,
    worker_spill_margin: Option<usize>,
    redis: Option<String>,
    cluster_secret: Option<String>,
    relay_addr: Option<SocketAddr>,
    node_addr: Option<SocketAddr>,
    turn_addr: Option<SocketAddr>,
    turn: Option<bool>,
    turn_secret: Option<String>,
    api_key: Option<String>,
    api_secret: Option<String>,
    max_rooms: Option<usize>,
    max_participants_per_room: Option<usize>,
    max_tracks_per_participant: Option<usize>,
    max_pending_joins: Option<usize>,
    max_messages_per_sec: Option<f64>,
    message_burst: Option<u32>,
    ws_ping_interval: Option<f64>,
    ws_idle_timeout: Option<f64>,
    max_connections_per_ip: Option<u32>,
    max_joins_per_ip_per_minute: Option<u32>,
    trusted_proxy: Option<Vec<String>>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    drain_deadline: Option<f64>,
    turn_max_allocations_per_ip: Option<usize>,
}

/// The settings `serve` runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeConfig {
    pub http_addr: SocketAddr,
    pub rtc_addr: SocketAddr,
    pub public_ip: Option<IpAddr>,
    pub ice_tcp: bool,
    /// Media worker threads; 0 is one per core.
    pub media_workers: usize,
    pub worker_spill_margin: usize,
    /// The embedded TURN server, if enabled.
    pub turn: Option<TurnSettings>,
    /// `(api_key, api_secret)`; `None` is development mode.
    pub api_keys: Option<(String, String)>,
    pub sfu_limits: SfuLimits,
    pub connection_limits: ConnectionLimits,
    pub resume_grace: std::time::Duration,
    /// Reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<IpNet>,
    /// HTTPS and WSS instead of HTTP and WS.
    pub tls: Option<TlsFiles>,
    /// How long a drain waits for the server to empty before exiting anyway.
    pub drain_deadline: Duration,
    /// Membership of a cluster (`--redis`), if configured.
    pub cluster: Option<ClusterSettings>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSettings {
    pub redis_url: String,
    pub secret: String,
    pub relay_addr: SocketAddr,
    pub node_addr: SocketAddr,
}

/// The PEM files of `--tls-cert` and `--tls-key`.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
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
    pub max_allocations_per_ip: usize,
}

impl ServeConfig {
    pub fn resolve(args: &ServeArgs) -> anyhow::Result<Self> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let api_keys = resolve_keys(&args.keys, &file)?;
        let sfu_default = SfuLimits::default();
        let sfu_limits = SfuLimits {
            max_rooms: args
                .max_rooms
                .or(file.max_rooms)
                .unwrap_or(sfu_default.max_rooms),
            max_participants_per_room: args
                .max_participants_per_room
                .or(file.max_participants_per_room)
                .unwrap_or(sfu_default.max_participants_per_room),
            max_tracks_per_participant: args
                .max_tracks_per_participant
                .or(file.max_tracks_per_participant)
                .unwrap_or(sfu_default.max_tracks_per_participant),
            max_pending_joins: args
                .max_pending_joins
                .or(file.max_pending_joins)
                .unwrap_or(sfu_default.max_pending_joins),
        };
        let conn_default = ConnectionLimits::default();
        let seconds =
            |flag: Option<f64>, key: Option<f64>, default: Duration, what: &str| match flag.or(key)
            {
                None => Ok(default),
                Some(s) if s > 0.0 => Duration::try_from_secs_f64(s)
                    .map_err(|_| anyhow::anyhow!("{what} is not a usable number of seconds: {s}")),
                Some(s) => bail!("{what} must be a positive number of seconds, not {s}"),
            };
        let connection_limits = ConnectionLimits {
            messages_per_sec: match args.max_messages_per_sec.or(file.max_messages_per_sec) {
                None => conn_default.messages_per_sec,
                Some(r) if r.is_finite() && r > 0.0 => r,
                Some(r) => bail!("max_messages_per_sec must be positive, not {r}"),
            },
            message_burst: args
                .message_burst
                .or(file.message_burst)
                .unwrap_or(conn_default.message_burst)
                .max(1),
            ping_interval: seconds(
                args.ws_ping_interval,
                file.ws_ping_interval,
                conn_default.ping_interval,
                "ws_ping_interval",
            )?,
            idle_timeout: seconds(
                args.ws_idle_timeout,
                file.ws_idle_timeout,
                conn_default.idle_timeout,
                "ws_idle_timeout",
            )?,
            max_connections_per_ip: args
                .max_connections_per_ip
                .or(file.max_connections_per_ip)
                .unwrap_or(conn_default.max_connections_per_ip),
            max_joins_per_ip_per_minute: args
                .max_joins_per_ip_per_minute
                .or(file.max_joins_per_ip_per_minute)
                .unwrap_or(conn_default.max_joins_per_ip_per_minute),
        };
        let trusted_proxies = if args.trusted_proxies.is_empty() {
            file.trusted_proxy
                .iter()
                .flatten()
                .map(|s| s.parse().context("trusted_proxy in the config file"))
                .collect::<anyhow::Result<Vec<IpNet>>>()?
        } else {
            args.trusted_proxies.clone()
        };
        let tls = match (
            args.tls_cert.clone().or(file.tls_cert),
            args.tls_key.clone().or(file.tls_key),
        ) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => bail!("--tls-cert and --tls-key go together"),
        };
        let drain_deadline = seconds(
            args.drain_deadline,
            file.drain_deadline,
            DEFAULT_DRAIN_DEADLINE,
            "drain_deadline",
        )?;
        let cluster = match (
            args.redis.clone().or(file.redis),
            args.cluster_secret.clone().or(file.cluster_secret),
        ) {
            (None, _) => None,
            (Some(_), None) => bail!("--redis needs --cluster-secret (shared by every node)"),
            (Some(_), Some(secret)) if secret.len() < 16 => {
                bail!("--cluster-secret must have at least 16 characters")
            }
            (Some(redis_url), Some(secret)) => {
                let relay_addr = args
                    .relay_addr
                    .or(file.relay_addr)
                    .unwrap_or(default(DEFAULT_RELAY_ADDR));
                let node_addr = match args.node_addr.or(file.node_addr) {
                    Some(addr) => addr,
                    None if relay_addr.ip().is_unspecified() => {
                        bail!("a wildcard --relay-addr needs --node-addr (where the other nodes reach this one)")
                    }
                    None => relay_addr,
                };
                Some(ClusterSettings {
                    redis_url,
                    secret,
                    relay_addr,
                    node_addr,
                })
            }
        };
        Ok(Self {
            cluster,
            api_keys,
            sfu_limits,
            connection_limits,
            trusted_proxies,
            tls,
            drain_deadline,
            resume_grace: std::time::Duration::from_secs(args.resume_grace.unwrap_or(30)),
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
            media_workers: args.media_workers.or(file.media_workers).unwrap_or(0),
            worker_spill_margin: args
                .worker_spill_margin
                .or(file.worker_spill_margin)
                .unwrap_or(sfu::placement::SPILL_MARGIN),
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
                max_allocations_per_ip: args
                    .turn_max_allocations_per_ip
                    .or(file.turn_max_allocations_per_ip)
                    .unwrap_or(turn::DEFAULT_MAX_ALLOCATIONS_PER_IP),
            }),
        })
    }
}

/// Key and secret from flags, environment or file: both or neither.
fn resolve_keys(args: &ApiKeyArgs, file: &FileConfig) -> anyhow::Result<Option<(String, String)>> {
    let key = args.api_key.clone().or(file.api_key.clone());
    let secret = args.api_secret.clone().or(file.api_secret.clone());
    match (key, secret) {
        (Some(k), Some(s)) if !k.is_empty() && !s.is_empty() => Ok(Some((k, s))),
        (None, None) => Ok(None),
        _ => bail!("--api-key and --api-secret go together, and neither may be empty"),
    }
}

/// Key and secret for `switchboard token`: flags, environment, or a config file.
pub fn token_keys(args: &ApiKeyArgs, config: Option<&Path>) -> anyhow::Result<(String, String)> {
    let file = match config {
        Some(path) => read_file(path)?,
        None => FileConfig::default(),
    };
    resolve_keys(args, &file)?.context(
        "minting a token needs the server's --api-key and --api-secret (or SWITCHBOARD_API_KEY/SECRET)",
    )
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
    fn api_keys_come_in_pairs_and_limits_resolve() {
        let cli = Cli::parse_from(["x"]);
        let config = ServeConfig::resolve(&cli.serve).unwrap();
        assert_eq!(config.api_keys, None, "development mode by default");
        assert_eq!(config.sfu_limits, SfuLimits::default());
        assert_eq!(config.connection_limits, ConnectionLimits::default());
        let cli = Cli::parse_from([
            "x",
            "--api-key",
            "k",
            "--api-secret",
            "s",
            "--max-rooms",
            "3",
            "--ws-idle-timeout",
            "2.5",
        ]);
        let config = ServeConfig::resolve(&cli.serve).unwrap();
        assert_eq!(config.api_keys, Some(("k".into(), "s".into())));
        assert_eq!(config.sfu_limits.max_rooms, 3);
        assert_eq!(
            config.connection_limits.idle_timeout,
            Duration::from_millis(2500)
        );
        for args in [
            &["x", "--api-key", "k"][..],
            &["x", "--api-secret", "s"],
            &["x", "--ws-ping-interval", "0"],
            &["x", "--max-messages-per-sec=-1"],
        ] {
            let cli = Cli::parse_from(args);
            assert!(ServeConfig::resolve(&cli.serve).is_err(), "{args:?}");
        }
    }

    #[test]
    fn per_ip_limits_proxies_tls_and_drain_resolve() {
        let cli = Cli::parse_from(["x"]);
        let config = ServeConfig::resolve(&cli.serve).unwrap();
        assert_eq!(config.connection_limits.max_connections_per_ip, 100);
        assert_eq!(config.connection_limits.max_joins_per_ip_per_minute, 60);
        assert!(config.trusted_proxies.is_empty());
        assert_eq!(config.tls, None);
        assert_eq!(config.drain_deadline, DEFAULT_DRAIN_DEADLINE);
        let cli = Cli::parse_from([
            "x",
            "--max-connections-per-ip",
            "0",
            "--max-joins-per-ip-per-minute",
            "5",
            "--trusted-proxy",
            "10.0.0.0/8,::1",
            "--trusted-proxy",
            "192.0.2.7",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--drain-deadline",
            "1.5",
        ]);
        let config = ServeConfig::resolve(&cli.serve).unwrap();
        assert_eq!(config.connection_limits.max_connections_per_ip, 0);
        assert_eq!(config.connection_limits.max_joins_per_ip_per_minute, 5);
        let proxies: Vec<String> = config
            .trusted_proxies
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(proxies, ["10.0.0.0/8", "::1/128", "192.0.2.7/32"]);
        assert_eq!(
            config.tls,
            Some(TlsFiles {
                cert: "c.pem".into(),
                key: "k.pem".into()
            })
        );
        assert_eq!(config.drain_deadline, Duration::from_millis(1500));
        for args in [
            &["x", "--tls-cert", "c.pem"][..],
            &["x", "--tls-key", "k.pem"],
            &["x", "--drain-deadline", "0"],
        ] {
            let cli = Cli::parse_from(args);
            assert!(ServeConfig::resolve(&cli.serve).is_err(), "{args:?}");
        }
        assert!(Cli::try_parse_from(["x", "--trusted-proxy", "10.0.0.0/40"]).is_err());

        let dir = std::env::temp_dir().join(format!("sb-config-ip-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("switchboard.toml");
        std::fs::write(
            &path,
            "trusted_proxy = [\"172.16.0.0/12\"]\nmax_connections_per_ip = 7\ntls_cert = \"a\"\ntls_key = \"b\"\ndrain_deadline = 5\nturn_max_allocations_per_ip = 3\n",
        )
        .unwrap();
        let cli = Cli::parse_from(["x", "--config", path.to_str().unwrap()]);
        let config = ServeConfig::resolve(&cli.serve).unwrap();
        assert_eq!(config.trusted_proxies, ["172.16.0.0/12".parse().unwrap()]);
        assert_eq!(config.connection_limits.max_connections_per_ip, 7);
        assert!(config.tls.is_some());
        assert_eq!(config.drain_deadline, Duration::from_secs(5));
        assert_eq!(
            config.turn.as_ref().map(|t| t.max_allocations_per_ip),
            Some(3)
        );
        std::fs::write(&path, "trusted_proxy = [\"proxy.example\"]\n").unwrap();
        let err = ServeConfig::resolve(&cli.serve).unwrap_err();
        assert!(format!("{err:#}").contains("proxy.example"), "{err:#}");
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
