//! `TurnConfig`: the plain configuration struct embedders fill in.
//!
//! The binary maps its command-line flags onto this struct; the library never
//! parses flags itself. `Default` is deliberately safe: no users (so nothing
//! can allocate until credentials are configured), private and loopback peers
//! denied, quotas on.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use crate::peer_filter::Cidr;

/// Default live allocations per client IP: a browser needs one or two per
/// call (one per address family), so 20 covers a household or small office
/// behind one NAT while keeping one address from taking the whole server.
pub const DEFAULT_MAX_ALLOCATIONS_PER_IP: usize = 20;
/// Default allocation lifetime (RFC 8656 §3.2).
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(600);
/// Maximum allocation lifetime we grant.
pub const MAX_LIFETIME: Duration = Duration::from_secs(3600);
/// Permission lifetime (RFC 8656 §9, fixed by the RFC).
pub const PERMISSION_LIFETIME: Duration = Duration::from_secs(300);
/// Channel binding lifetime (RFC 8656 §12, fixed by the RFC).
pub const CHANNEL_LIFETIME: Duration = Duration::from_secs(600);

/// Configuration of one TURN server instance.
#[derive(Debug, Clone)]
pub struct TurnConfig {
    /// Address for the UDP and TCP listeners (same port for both). Port 0 picks
    /// a free port; both listeners then share the port the UDP socket got.
    pub listen: SocketAddr,
    /// Address for the TLS (`turns:`) listener; only used when `tls_cert` and
    /// `tls_key` are set.
    pub tls_listen: SocketAddr,
    /// PEM certificate chain for TLS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS.
    pub tls_key: Option<PathBuf>,
    /// Local IPv4 address relay sockets bind to.
    pub relay_ip: IpAddr,
    /// Local IPv6 address relay sockets bind to; `None` disables IPv6 relays
    /// (Allocate with REQUESTED-ADDRESS-FAMILY IPv6 then gets 440).
    pub relay_ipv6: Option<IpAddr>,
    /// Public IPv4 address advertised in XOR-RELAYED-ADDRESS, for servers behind
    /// 1:1 NAT. When `None`, `relay_ip` is advertised, or the listen address if
    /// `relay_ip` is unspecified (0.0.0.0).
    pub external_ip: Option<IpAddr>,
    /// Public IPv6 address advertised for IPv6 relays.
    pub external_ipv6: Option<IpAddr>,
    /// Realm for long-term credentials.
    pub realm: String,
    /// Static long-term users: (name, password).
    pub users: Vec<(String, String)>,
    /// Shared secret for TURN REST API (coturn `use-auth-secret`) credentials.
    pub auth_secret: Option<String>,
    /// Peers always allowed, even inside the default-denied ranges. Matched
    /// against the canonical (IPv4-unmapped) address only.
    pub allow_peers: Vec<Cidr>,
    /// Peers denied in addition to the built-in list.
    pub deny_peers: Vec<Cidr>,
    /// Allow 127.0.0.0/8 and ::1 as peers. For local testing only.
    pub allow_loopback_peers: bool,
    /// Maximum simultaneous allocations per username.
    pub max_allocations_per_user: usize,
    /// Maximum simultaneous allocations per client IP address (an IPv4
    /// client of a dual-stack listener counts as its IPv4 address); 0 means
    /// unlimited. Excess Allocates get 486 (Allocation Quota Reached).
    pub max_allocations_per_ip: usize,
    /// Maximum simultaneous allocations in total.
    pub max_allocations: usize,
    /// Relay bandwidth cap per allocation in bytes per second, both directions
    /// summed; 0 means unlimited.
    pub max_bytes_per_sec: u64,
    /// Ports relay sockets may use.
    pub port_range: RangeInclusive<u16>,
    /// How long a nonce stays valid before the client gets 438 (Stale Nonce).
    pub nonce_lifetime: Duration,
    /// SOFTWARE attribute value in responses; `None` omits it.
    pub software: Option<String>,
    /// Relay worker threads (each a single-threaded runtime with its own UDP
    /// listener socket on the shared port); 0 means one per CPU, at most 8.
    pub threads: usize,
}

impl Default for TurnConfig {
    fn default() -> Self {
        TurnConfig {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 3478),
            tls_listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 5349),
            tls_cert: None,
            tls_key: None,
            relay_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            relay_ipv6: None,
            external_ip: None,
            external_ipv6: None,
            realm: "switchboard".to_string(),
            users: Vec::new(),
            auth_secret: None,
            allow_peers: Vec::new(),
            deny_peers: Vec::new(),
            allow_loopback_peers: false,
            max_allocations_per_user: 10,
            max_allocations_per_ip: DEFAULT_MAX_ALLOCATIONS_PER_IP,
            max_allocations: 10_000,
            max_bytes_per_sec: 0,
            port_range: 49152..=65535,
            nonce_lifetime: Duration::from_secs(600),
            software: Some(concat!("switchboard-turn ", env!("CARGO_PKG_VERSION")).to_string()),
            threads: 0,
        }
    }
}
