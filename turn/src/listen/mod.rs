//! The tokio edge around the sans-IO core: binds the listeners, runs the
//! relay workers, and moves bytes between sockets and the core.
//!
//! ## Architecture
//!
//! The relay runs on its own worker threads (one per core, at most 8), each
//! with a single-threaded tokio runtime and its own UDP listener socket on
//! the shared port (`SO_REUSEPORT`: the kernel keeps each client 5-tuple on
//! one socket, so on one worker). Each worker owns one shard of the core, a
//! [`Server`](crate::Server) holding the allocations made through it, and
//! the relay sockets of those allocations, read by tasks on the same thread.
//! A relayed packet therefore never changes thread and takes no lock: the
//! shard sits in a `RefCell` that only its thread's tasks borrow, never
//! across an `.await` (`worker.rs`). What must hold across shards (quotas,
//! the relay port pool, EVEN-PORT reservations, the nonce key) lives in one
//! [`Global`](crate::Global), touched at Allocate and at deletion only.
//! TCP and TLS clients are accepted and served on worker 0, in its shard.
//!
//! ## Per packet
//!
//! Client datagrams are read with `recvmmsg`, up to 32 per call; a short
//! batch clears the socket's readiness without the extra call that would
//! find the queue empty (`udp.rs`). Peer datagrams are read the same way from
//! each relay socket (`relay.rs`). Datagrams to peers leave at once from
//! their relay socket (each its own file descriptor, so no batching is
//! possible); datagrams to clients are queued and sent with one `sendmmsg`
//! per scheduler tick by a flusher task that runs after the tick's other
//! tasks (`worker.rs`). No send ever waits: a full socket buffer drops the
//! datagram, as a congested link would. Counters are per worker and summed
//! when read ([`TurnStats`]).
//!
//! ## Stopping
//!
//! Every loop over a fallible socket call backs off on repeated errors and
//! ends when its runtime goes away (`backoff.rs`). On shutdown each worker
//! frees its shard's allocations and drops its runtime, which cancels the
//! remaining tasks without polling them; [`TurnServer::run`] returns after
//! all workers have ended, or after [`SHUTDOWN_GRACE`] at the latest.

mod addr;
mod backoff;
mod relay;
mod tcp;
mod tls;
mod udp;
mod worker;

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::config::TurnConfig;
use crate::error::TurnError;
use crate::global::{Global, Quotas};

use worker::{ShardCounters, WorkerSetup, WorkerSockets};

/// Socket buffer size we ask the kernel for on listeners and relays, so
/// bursts are absorbed instead of dropped.
const SOCKET_BUFFER: usize = 4 << 20;

/// Datagrams per receive and send call: 32 keeps a batch's headers in cache and bounds how
/// long one socket holds its worker before others are served.
pub(crate) const BATCH_SIZE: usize = 32;

/// How long [`TurnServer::run`] waits for its workers after shutdown begins.
/// A worker only has to free its allocations and drop its runtime, which
/// takes milliseconds; the bound guarantees the host process can exit.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Counters of a running [`TurnServer`], for metrics ([`TurnServer::stats`]).
/// Each worker keeps its own; the methods sum them.
#[derive(Debug)]
pub struct TurnStats {
    shards: Vec<Arc<ShardCounters>>,
    quotas: Arc<Quotas>,
}

impl TurnStats {
    /// Relay sockets open: one per allocation.
    pub fn relays(&self) -> i64 {
        self.shards.iter().map(|s| s.relays()).sum()
    }

    /// Payload bytes relayed from clients to peers.
    pub fn bytes_to_peers(&self) -> u64 {
        self.shards.iter().map(|s| s.bytes_to_peers()).sum()
    }

    /// Bytes received from peers and relayed to clients.
    pub fn bytes_from_peers(&self) -> u64 {
        self.shards.iter().map(|s| s.bytes_from_peers()).sum()
    }

    /// Live allocations.
    pub fn allocations(&self) -> usize {
        self.quotas.allocations()
    }

    /// Allocate requests refused (486) because the client IP already held
    /// `max_allocations_per_ip` allocations.
    pub fn allocations_refused_per_ip(&self) -> u64 {
        self.quotas.refused_per_ip()
    }
}

/// A non-blocking UDP socket with large buffers; `reuse_port` lets several
/// worker sockets share one listening port.
///
/// IPv6 sockets are IPv6-only (so an IPv4 relay can use the same port number),
/// except a listener on `[::]`, which also serves IPv4 clients (they appear
/// as `::ffff:a.b.c.d`, which is how replies must be addressed on it).
pub(crate) fn buffered_udp(
    addr: SocketAddr,
    reuse_port: bool,
    listener: bool,
) -> io::Result<std::net::UdpSocket> {
    let domain = socket2::Domain::for_address(addr);
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    if let IpAddr::V6(ip) = addr.ip() {
        s.set_only_v6(!(listener && ip.is_unspecified()))?;
    }
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// A bound TURN server, ready to [`run`](TurnServer::run).
///
/// The sockets are bound (so `local_addr` is known and port clashes surface
/// early) but not yet registered with any runtime: `run` moves them onto the
/// TURN worker threads.
pub struct TurnServer {
    config: TurnConfig,
    udp: Vec<std::net::UdpSocket>,
    tcp: std::net::TcpListener,
    tls: Option<(std::net::TcpListener, tokio_rustls::TlsAcceptor)>,
    local_addr: SocketAddr,
    global: Arc<Global<relay::Relay>>,
    counters: Vec<Arc<ShardCounters>>,
    stats: Arc<TurnStats>,
}

impl std::fmt::Debug for TurnServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnServer")
            .field("local_addr", &self.local_addr)
            .field("tls_local_addr", &self.tls_local_addr())
            .field("threads", &self.udp.len())
            .finish()
    }
}

impl TurnServer {
    /// Binds the UDP and TCP listeners (same port) and, when a certificate and
    /// key are configured, the TLS listener.
    pub async fn bind(mut config: TurnConfig) -> Result<TurnServer, TurnError> {
        if config.relay_ip.is_ipv6() {
            return Err(TurnError::Config("relay_ip must be an IPv4 address".into()));
        }
        if config.relay_ipv6.is_some_and(|ip| ip.is_ipv4()) {
            return Err(TurnError::Config(
                "relay_ipv6 must be an IPv6 address".into(),
            ));
        }
        if config.external_ip.is_none()
            && config.relay_ip.is_unspecified()
            && config.listen.ip().is_unspecified()
        {
            let ifaces = addr::interface_ipv4s();
            let ip = addr::choose_relay_ipv4(&ifaces, addr::default_route_ipv4());
            tracing::info!(
                relay_ip = %ip,
                interfaces = ?ifaces,
                "relaying on an interface address (set external_ip behind 1:1 NAT, relay_ip to choose)"
            );
            config.relay_ip = IpAddr::V4(ip);
        }
        let threads = match config.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get().min(8)),
            n => n,
        };
        let (udp, tcp) = bind_udp_tcp(config.listen, threads)?;
        let local_addr = udp
            .first()
            .ok_or_else(|| TurnError::Config("no UDP socket".into()))?
            .local_addr()?;
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => {
                let acceptor = tls::acceptor(cert, key)?;
                let l = std::net::TcpListener::bind(config.tls_listen).map_err(|source| {
                    TurnError::Bind {
                        what: "TLS",
                        addr: config.tls_listen,
                        source,
                    }
                })?;
                l.set_nonblocking(true)?;
                Some((l, acceptor))
            }
            (None, None) => None,
            _ => {
                return Err(TurnError::Config(
                    "TLS needs both tls_cert and tls_key".into(),
                ))
            }
        };
        let advertised = config
            .external_ip
            .or((!config.relay_ip.is_unspecified()).then_some(config.relay_ip))
            .unwrap_or(local_addr.ip());
        tracing::info!(%local_addr, tls = ?tls.as_ref().and_then(|(l, _)| l.local_addr().ok()), threads, realm = %config.realm, relays_advertised = %advertised, relay_ipv6 = ?config.external_ipv6.or(config.relay_ipv6), "TURN server listening");
        let global = Arc::new(Global::new(&config));
        let counters: Vec<Arc<ShardCounters>> = (0..threads).map(|_| Arc::default()).collect();
        let stats = Arc::new(TurnStats {
            shards: counters.clone(),
            quotas: global.quotas().clone(),
        });
        Ok(TurnServer {
            config,
            udp,
            tcp,
            tls,
            local_addr,
            global,
            counters,
            stats,
        })
    }

    /// Live counters (relay sockets, relayed bytes, quota refusals), updated
    /// while it runs.
    pub fn stats(&self) -> Arc<TurnStats> {
        Arc::clone(&self.stats)
    }

    /// The UDP and TCP listening address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The TLS listening address, if TLS is configured.
    pub fn tls_local_addr(&self) -> Option<SocketAddr> {
        self.tls.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// Serves until `shutdown` completes, then stops every worker and closes
    /// every socket; returns within [`SHUTDOWN_GRACE`] of `shutdown`.
    ///
    /// The relay runs on dedicated threads, each with its own single-threaded
    /// tokio runtime: socket wake-ups stay on one thread instead of bouncing
    /// between the host runtime's workers, and TURN load cannot starve the
    /// host's tasks. Call it from any tokio runtime.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), TurnError> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let (done_tx, mut done_rx) =
            tokio::sync::mpsc::unbounded_channel::<(usize, Result<(), TurnError>)>();
        let mut tcp = Some(self.tcp);
        let mut tls = self.tls;
        let workers = self.udp.len();
        for (i, (udp, counters)) in self.udp.into_iter().zip(self.counters).enumerate() {
            let sockets = WorkerSockets {
                udp,
                tcp: tcp.take(),
                tls: tls.take(),
            };
            let setup = WorkerSetup {
                config: self.config.clone(),
                global: self.global.clone(),
                counters,
                stop: stop_rx.clone(),
            };
            let done_tx = done_tx.clone();
            std::thread::Builder::new()
                .name(format!("turn-{i}"))
                .spawn(move || {
                    let _ = done_tx.send((i, worker::run_thread(sockets, setup)));
                })?;
        }
        drop(done_tx);
        let mut running = workers;
        let result = tokio::select! {
            _ = shutdown => {
                tracing::info!("TURN server shutting down");
                Ok(())
            }
            Some((i, r)) = done_rx.recv() => {
                running -= 1;
                match &r {
                    Ok(()) => tracing::error!(worker = i, "a TURN worker ended"),
                    Err(e) => tracing::error!(worker = i, error = %e, "a TURN worker failed"),
                }
                r
            }
        };
        let _ = stop_tx.send(true);
        let grace = tokio::time::sleep(SHUTDOWN_GRACE);
        tokio::pin!(grace);
        while running > 0 {
            tokio::select! {
                done = done_rx.recv() => match done {
                    Some(_) => running -= 1,
                    None => break,
                },
                _ = &mut grace => {
                    // Leave them: their threads hold nothing the host needs to
                    // exit, and waiting longer is what must not happen.
                    tracing::warn!(running, "TURN workers did not stop in time; leaving them");
                    break;
                }
            }
        }
        tracing::debug!("TURN server stopped");
        result
    }
}

/// Binds `threads` UDP sockets (SO_REUSEPORT) and one TCP listener on the
/// same port; with port 0 retries until a port free for both is found.
fn bind_udp_tcp(
    addr: SocketAddr,
    threads: usize,
) -> Result<(Vec<std::net::UdpSocket>, std::net::TcpListener), TurnError> {
    let attempts = if addr.port() == 0 { 20 } else { 1 };
    let mut last = None;
    let bind_err = |what, addr, source| TurnError::Bind { what, addr, source };
    for _ in 0..attempts {
        let first = buffered_udp(addr, threads > 1, true).map_err(|e| bind_err("UDP", addr, e))?;
        let port = first.local_addr()?.port();
        let udp_addr = SocketAddr::new(addr.ip(), port);
        let mut udp = vec![first];
        for _ in 1..threads {
            udp.push(buffered_udp(udp_addr, true, true).map_err(|e| bind_err("UDP", udp_addr, e))?);
        }
        match std::net::TcpListener::bind(udp_addr) {
            Ok(tcp) => {
                tcp.set_nonblocking(true)?;
                return Ok((udp, tcp));
            }
            Err(source) => last = Some(bind_err("TCP", udp_addr, source)),
        }
    }
    Err(last.unwrap_or_else(|| TurnError::Config("no port".into())))
}

/// Binds a [`TurnServer`] and runs it until `shutdown` completes.
pub async fn run(config: TurnConfig, shutdown: impl Future<Output = ()>) -> Result<(), TurnError> {
    TurnServer::bind(config).await?.run(shutdown).await
}
