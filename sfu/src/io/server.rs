//! The media workers: one thread per core, each owning an `Sfu` (the rooms assigned to it)
//! and running the sans-IO loop (input in, drain output, sleep until the next timeout) on a
//! single-threaded runtime of its own, so media never waits behind HTTP work and no lock is
//! taken on the media path.
//!
//! All workers share one UDP port. Worker 0 receives every datagram (a batch per system call)
//! and routes it, by ICE ufrag and then by source address, to the worker that owns the peer;
//! each worker sends its own datagrams on the shared socket. A participant lives on one
//! worker (see `placement.rs`) and its id names that worker, so signaling calls go straight
//! to it. A room may span workers: they pass each other room events and media through
//! channels (`relay.rs`), the media in one batch per worker per drain.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::Interest;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;

use super::handle::{Command, SfuHandle, WorkerCtx, WorkerHandle};
use super::tcp::{self, TcpEvent};
use crate::demux::{Demux, RouteUpdate};
use crate::engine::{Sfu, SfuConfig, SfuOutput};
use crate::event::SfuEvent;
use crate::ids::ParticipantId;
use crate::metrics::MetricsSnapshot;
use crate::placement::RoomPlacement;
use crate::policy::{SfuLimits, ShardLoad};
use crate::relay::{RelayMessage, RelayedPacket, WorkerIndex};
use datagram::DatagramBatch;
use str0m::net::Protocol;

/// How often each worker publishes its metrics snapshot.
const METRICS_INTERVAL: Duration = Duration::from_secs(1);

/// Largest datagram we accept; anything bigger is not WebRTC.
const MAX_DATAGRAM: usize = 2048;
/// Datagrams per receive and send call.
const BATCH_SIZE: usize = datagram::MAX_BATCH;

/// Participant ids carry their worker in one byte, and one relay slot may follow the workers.
const MAX_WORKERS: usize = 255;

#[derive(Debug, Clone)]
pub struct SfuServerConfig {
    /// UDP and ICE-TCP bind here (same port number for both).
    pub bind: SocketAddr,
    /// The address put in candidates, when it differs from `bind` (1:1 NAT, wildcard bind).
    pub public_ip: Option<IpAddr>,
    pub ice_tcp: bool,
    /// Rooms, participants, tracks and pending joins accepted, server-wide.
    pub limits: SfuLimits,
    /// How long a participant whose signaling dropped may resume its session.
    pub resume_grace: std::time::Duration,
    /// Media worker threads; 0 means one per available core.
    pub workers: usize,
    /// How far a room's worker may be above the least loaded one (in participants) before
    /// the room's next participant goes elsewhere (`placement.rs`).
    pub spill_margin: usize,
    /// Open a relay slot after the media workers ([`SfuServer::take_relay_port`]) for a
    /// cluster gateway.
    pub relay_port: bool,
}

pub struct SfuServer {
    handle: SfuHandle,
    udp_addr: SocketAddr,
    threads: Vec<std::thread::JoinHandle<()>>,
    relay_port: Option<RelayPort>,
}

/// Receive batches a worker may have waiting from worker 0. Past this the worker is not
/// keeping up, and further datagrams for it are dropped as a full socket buffer would drop
/// them, rather than queueing without bound.
const INBOUND_BATCHES: usize = 64;

/// Relayed media batches a worker may have waiting from the others. Past this it is not
/// keeping up, and further batches are dropped (NACKs and keyframe requests repair them).
const RELAY_MEDIA_BATCHES: usize = 256;

/// Where the others hand a worker (or the cluster gateway) their relay messages (see
/// `relay.rs`). Control messages are few and must not be lost; media is bounded.
#[derive(Clone)]
pub struct RelayInbox {
    control: mpsc::UnboundedSender<(WorkerIndex, Vec<RelayMessage>)>,
    media: mpsc::Sender<Vec<RelayedPacket>>,
}

impl RelayInbox {
    /// An inbox over channels of one's own: for a relay slot driven outside `SfuServer`
    /// (tests of a gateway, say).
    pub fn from_channels(
        control: mpsc::UnboundedSender<(WorkerIndex, Vec<RelayMessage>)>,
        media: mpsc::Sender<Vec<RelayedPacket>>,
    ) -> Self {
        Self { control, media }
    }

    /// Hand over control messages from `from`; `false` if the worker is gone.
    pub fn send_control(&self, from: WorkerIndex, messages: Vec<RelayMessage>) -> bool {
        self.control.send((from, messages)).is_ok()
    }

    /// Hand over media; `false` if it was dropped (the worker is behind, or gone).
    pub fn send_media(&self, packets: Vec<RelayedPacket>) -> bool {
        self.media.try_send(packets).is_ok()
    }
}

/// The relay slot after the media workers, for something that joins rooms of this server
/// to other servers' (the cluster gateway): it gets what the workers send that slot, and may
/// send each worker what a worker could. See [`SfuServerConfig::relay_port`].
pub struct RelayPort {
    /// This slot's index: the workers see relayed tracks' origin and messages' sender as it.
    pub index: WorkerIndex,
    pub control: mpsc::UnboundedReceiver<(WorkerIndex, Vec<RelayMessage>)>,
    pub media: mpsc::Receiver<Vec<RelayedPacket>>,
    /// The media workers' inboxes, by index.
    pub workers: Vec<RelayInbox>,
}

/// Where worker 0 hands another worker its peers' datagrams and ICE-TCP events. TCP events
/// are few (connection changes, and frames the connection's flow control already bounds)
/// and must not be lost, so they have a channel of their own.
#[derive(Clone)]
struct WorkerInbox {
    datagrams: mpsc::Sender<RoutedDatagrams>,
    tcp: mpsc::UnboundedSender<TcpEvent>,
}

/// The receiving ends of a `WorkerInbox`.
struct Inbound {
    datagrams: mpsc::Receiver<RoutedDatagrams>,
    tcp: mpsc::UnboundedReceiver<TcpEvent>,
    relay_control: mpsc::UnboundedReceiver<(WorkerIndex, Vec<RelayMessage>)>,
    relay_media: mpsc::Receiver<Vec<RelayedPacket>>,
}

/// Datagrams for one worker from one receive batch, in one buffer.
struct RoutedDatagrams {
    bytes: Vec<u8>,
    /// Source, peer and end offset in `bytes` of each datagram.
    datagrams: Vec<(SocketAddr, ParticipantId, usize)>,
}

impl RoutedDatagrams {
    fn new() -> Self {
        Self {
            bytes: Vec::new(),
            datagrams: Vec::new(),
        }
    }

    fn push(&mut self, source: SocketAddr, peer: ParticipantId, data: &[u8]) {
        self.bytes.extend_from_slice(data);
        self.datagrams.push((source, peer, self.bytes.len()));
    }

    fn iter(&self) -> impl Iterator<Item = (SocketAddr, ParticipantId, &[u8])> {
        let mut start = 0;
        self.datagrams
            .iter()
            .filter_map(move |&(source, peer, end)| {
                let data = self.bytes.get(start..end)?;
                start = end;
                Some((source, peer, data))
            })
    }
}

/// With several workers, the one routing table: which peer each datagram is for (and so
/// which worker owns it, from the peer's id), kept up to date by the route updates the
/// workers send. The workers keep no table of their own.
struct Router {
    demux: Demux,
    updates: mpsc::UnboundedReceiver<RouteUpdate>,
    /// Indexed by worker; worker 0's own slot is unused.
    workers: Vec<WorkerInbox>,
    /// Per worker, what the current receive batch routed to it.
    routed: Vec<RoutedDatagrams>,
}

impl Router {
    fn apply_updates(&mut self) {
        while let Ok(update) = self.updates.try_recv() {
            self.demux.apply(update);
        }
    }

    /// The peer this datagram comes from, learning its address from a STUN request; `None`
    /// for a peer nobody knows. Its worker is `peer.shard()`.
    fn peer_of(
        &mut self,
        proto: Protocol,
        source: SocketAddr,
        data: &[u8],
    ) -> Option<ParticipantId> {
        self.demux.route(proto, source, data)
    }

    /// Hand each worker what this batch routed to it.
    fn dispatch(&mut self) {
        for (worker, routed) in self.routed.iter_mut().enumerate().skip(1) {
            if routed.datagrams.is_empty() {
                continue;
            }
            let batch = std::mem::replace(routed, RoutedDatagrams::new());
            if let Some(inbox) = self.workers.get(worker) {
                if let Err(mpsc::error::TrySendError::Full(dropped)) =
                    inbox.datagrams.try_send(batch)
                {
                    tracing::debug!(
                        worker,
                        datagrams = dropped.datagrams.len(),
                        "media worker behind, datagrams dropped"
                    );
                }
            }
        }
    }
}

/// Worker 0's receiving side: the socket and (with several workers) the router.
struct Receiver {
    udp: UdpSocket,
    batch: DatagramBatch,
    router: Option<Router>,
}

impl SfuServer {
    /// Bind the sockets and start the media workers.
    pub fn start(config: SfuServerConfig) -> io::Result<Self> {
        let std_udp = std::net::UdpSocket::bind(config.bind)?;
        std_udp.set_nonblocking(true)?;
        let udp_addr = std_udp.local_addr()?;
        let std_tcp = if config.ice_tcp {
            let listener =
                std::net::TcpListener::bind(SocketAddr::new(udp_addr.ip(), udp_addr.port()))?;
            listener.set_nonblocking(true)?;
            Some(listener)
        } else {
            None
        };
        let advertised_ip = match config.public_ip {
            Some(ip) => ip,
            None if udp_addr.ip().is_unspecified() => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "binding media to a wildcard address needs a public IP to advertise (--public-ip)",
                ));
            }
            None => udp_addr.ip(),
        };
        let advertised = SocketAddr::new(advertised_ip, udp_addr.port());
        let worker_count = match config.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
        .clamp(1, MAX_WORKERS);
        let load = Arc::new(ShardLoad::new(worker_count));
        let placement = Arc::new(RoomPlacement::new(config.spill_margin));

        let mut handles = Vec::with_capacity(worker_count);
        let mut inbound_txs = Vec::with_capacity(worker_count);
        let mut relay_inboxes = Vec::with_capacity(worker_count);
        let mut setups = Vec::with_capacity(worker_count);
        for _ in 0..worker_count {
            let (commands_tx, commands) = mpsc::unbounded_channel();
            let (datagrams_tx, datagrams) = mpsc::channel(INBOUND_BATCHES);
            let (tcp_tx, tcp) = mpsc::unbounded_channel();
            let (relay_control_tx, relay_control) = mpsc::unbounded_channel();
            let (relay_media_tx, relay_media) = mpsc::channel(RELAY_MEDIA_BATCHES);
            let inbound_tx = WorkerInbox {
                datagrams: datagrams_tx,
                tcp: tcp_tx,
            };
            relay_inboxes.push(RelayInbox {
                control: relay_control_tx,
                media: relay_media_tx,
            });
            let inbound = Inbound {
                datagrams,
                tcp,
                relay_control,
                relay_media,
            };
            let metrics = Arc::new(Mutex::new(MetricsSnapshot::default()));
            handles.push(WorkerHandle {
                commands: commands_tx,
                metrics: Arc::clone(&metrics),
            });
            inbound_txs.push(inbound_tx);
            setups.push((commands, inbound, metrics));
        }
        let relay_port = if config.relay_port {
            let (control_tx, control) = mpsc::unbounded_channel();
            let (media_tx, media) = mpsc::channel(RELAY_MEDIA_BATCHES);
            let port = RelayPort {
                index: worker_count as WorkerIndex,
                control,
                media,
                workers: relay_inboxes.clone(),
            };
            relay_inboxes.push(RelayInbox {
                control: control_tx,
                media: media_tx,
            });
            Some(port)
        } else {
            None
        };
        let (route_tx, route_rx) = mpsc::unbounded_channel();
        let mut route_rx = (worker_count > 1).then_some(route_rx);
        let mut receiving = Some((std_udp.try_clone()?, std_tcp));

        let mut threads = Vec::with_capacity(worker_count);
        for (shard, (commands, inbound, metrics)) in setups.into_iter().enumerate() {
            let mut sfu_config = SfuConfig::new(advertised, config.ice_tcp.then_some(advertised));
            sfu_config.limits = config.limits;
            sfu_config.resume_grace = config.resume_grace;
            sfu_config.shard = shard as u8;
            sfu_config.report_routes = worker_count > 1;
            sfu_config.load = Some(Arc::clone(&load));
            sfu_config.placement = Some(Arc::clone(&placement));
            sfu_config.workers = relay_inboxes.len() as u8;
            let relay = relay_inboxes.clone();
            let send_socket = std_udp.try_clone()?;
            // Worker 0 receives for everyone; the others get their peers' datagrams from it.
            let receiving = if shard == 0 { receiving.take() } else { None };
            let router_parts = if shard == 0 {
                route_rx.take().map(|rx| (rx, inbound_txs.clone()))
            } else {
                None
            };
            let route_updates = (worker_count > 1).then(|| route_tx.clone());
            let thread = std::thread::Builder::new()
                .name(format!("sfu-media-{shard}"))
                .spawn(move || {
                    let runtime = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::error!(error = %e, "media runtime could not start");
                            return;
                        }
                    };
                    runtime.block_on(async move {
                        let (receiver, tcp_events) = match receiving {
                            Some((udp, tcp)) => match start_receiver(udp, tcp, router_parts) {
                                Ok((r, t)) => (Some(r), Some(t)),
                                Err(e) => {
                                    tracing::error!(error = %e, "media socket unusable");
                                    return;
                                }
                            },
                            None => (None, None),
                        };
                        MediaLoop {
                            sfu: Sfu::new(sfu_config, Instant::now()),
                            send_socket,
                            advertised,
                            subscribers: HashMap::new(),
                            tcp_conns: HashMap::new(),
                            metrics,
                            next_metrics: Instant::now(),
                            outgoing: DatagramBatch::new(BATCH_SIZE, MAX_DATAGRAM),
                            route_updates,
                            shard: shard as WorkerIndex,
                            relay,
                            relay_batches_dropped: 0,
                        }
                        .run(commands, receiver, tcp_events, inbound)
                        .await;
                    });
                })?;
            threads.push(thread);
        }
        tracing::info!(%udp_addr, %advertised, ice_tcp = config.ice_tcp, workers = worker_count, "media listening");
        Ok(Self {
            handle: SfuHandle::new(
                handles,
                placement,
                load,
                relay_port
                    .as_ref()
                    .and_then(|_| relay_inboxes.last().cloned()),
            ),
            udp_addr,
            threads,
            relay_port,
        })
    }

    /// The relay slot for a cluster gateway, if [`SfuServerConfig::relay_port`] asked for one
    /// (once).
    pub fn take_relay_port(&mut self) -> Option<RelayPort> {
        self.relay_port.take()
    }

    pub fn handle(&self) -> SfuHandle {
        self.handle.clone()
    }

    /// The bound UDP (and ICE-TCP) address.
    pub fn local_addr(&self) -> SocketAddr {
        self.udp_addr
    }

    /// Stop the media workers once every handle is dropped, and wait for them.
    pub fn join(self) {
        drop(self.handle);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Register worker 0's sockets with its runtime and start accepting ICE-TCP.
fn start_receiver(
    udp: std::net::UdpSocket,
    tcp: Option<std::net::TcpListener>,
    router_parts: Option<(mpsc::UnboundedReceiver<RouteUpdate>, Vec<WorkerInbox>)>,
) -> io::Result<(Receiver, mpsc::UnboundedReceiver<TcpEvent>)> {
    let udp = UdpSocket::from_std(udp)?;
    let (tcp_tx, tcp_events) = mpsc::unbounded_channel();
    if let Some(listener) = tcp {
        tokio::spawn(tcp::accept_loop(TcpListener::from_std(listener)?, tcp_tx));
    }
    let router = router_parts.map(|(updates, workers)| Router {
        demux: Demux::default(),
        updates,
        routed: workers.iter().map(|_| RoutedDatagrams::new()).collect(),
        workers,
    });
    let receiver = Receiver {
        udp,
        batch: DatagramBatch::new(BATCH_SIZE, MAX_DATAGRAM),
        router,
    };
    Ok((receiver, tcp_events))
}

async fn udp_readable(receiver: Option<&Receiver>) -> io::Result<()> {
    match receiver {
        Some(r) => r.udp.readable().await,
        None => std::future::pending().await,
    }
}

async fn next_tcp_event(
    events: Option<&mut mpsc::UnboundedReceiver<TcpEvent>>,
) -> Option<TcpEvent> {
    match events {
        Some(events) => events.recv().await,
        None => std::future::pending().await,
    }
}

struct MediaLoop {
    sfu: Sfu,
    /// The shared media socket, used here only to send (never registered with the runtime,
    /// so datagrams arriving for worker 0 do not wake this one).
    send_socket: std::net::UdpSocket,
    advertised: SocketAddr,
    /// Where each participant's events go.
    subscribers: HashMap<ParticipantId, mpsc::UnboundedSender<SfuEvent>>,
    tcp_conns: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
    /// Where the metrics snapshot is published for `SfuHandle::metrics`.
    metrics: Arc<Mutex<MetricsSnapshot>>,
    next_metrics: Instant,
    /// Datagrams produced since the last send, sent together.
    outgoing: DatagramBatch,
    /// Where this worker's ufrag changes go, for worker 0's router (several workers only).
    route_updates: Option<mpsc::UnboundedSender<RouteUpdate>>,
    shard: WorkerIndex,
    /// Every worker's relay inbox, by index (this one's own is unused).
    relay: Vec<RelayInbox>,
    relay_batches_dropped: u64,
}

impl MediaLoop {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut receiver: Option<Receiver>,
        mut tcp_events: Option<mpsc::UnboundedReceiver<TcpEvent>>,
        mut inbound: Inbound,
    ) {
        loop {
            self.flush();
            self.publish_routes();
            self.publish_metrics();
            let deadline = self.sfu.next_timeout().min(self.next_metrics);
            // An unbiased select: a past deadline fires at once but cannot starve the sockets
            // or the channels.
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => command(&mut WorkerCtx {
                        sfu: &mut self.sfu,
                        subscribers: &mut self.subscribers,
                        now: Instant::now(),
                    }),
                    None => break,
                },
                readable = udp_readable(receiver.as_ref()) => match readable {
                    Ok(()) => {
                        if let Some(r) = receiver.as_mut() {
                            self.receive_udp(r);
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "UDP socket unreadable"),
                },
                Some(event) = next_tcp_event(tcp_events.as_mut()) => {
                    if let Some(r) = receiver.as_mut() {
                        self.route_tcp(r, event);
                    }
                },
                Some(routed) = inbound.datagrams.recv() => self.handle_routed(routed),
                Some(event) = inbound.tcp.recv() => self.handle_tcp(event),
                Some((from, messages)) = inbound.relay_control.recv() => {
                    self.sfu.handle_relay(from, messages, Instant::now());
                }
                Some(packets) = inbound.relay_media.recv() => {
                    self.sfu.handle_relayed_media(&packets, Instant::now());
                }
                _ = tokio::time::sleep_until(deadline.into()) => self.sfu.handle_timeout(Instant::now()),
            }
        }
        tracing::info!("media worker stopped");
    }

    /// Take every datagram waiting, a batch per system call, and hand each to the worker
    /// owning its peer. This worker drains its peers after each batch; what they produce is
    /// sent in batches by `flush`.
    fn receive_udp(&mut self, receiver: &mut Receiver) {
        if let Some(router) = receiver.router.as_mut() {
            router.apply_updates();
        }
        loop {
            let batch = &mut receiver.batch;
            match receiver
                .udp
                .try_io(Interest::READABLE, || batch.recv(&receiver.udp))
            {
                Ok(n) => {
                    let now = Instant::now();
                    for i in 0..n {
                        let Some((data, source)) = receiver.batch.get(i) else {
                            continue;
                        };
                        match receiver.router.as_mut() {
                            None => self.receive(now, Protocol::Udp, source, data),
                            Some(router) => match router.peer_of(Protocol::Udp, source, data) {
                                Some(peer) if peer.shard() == 0 => {
                                    self.receive_routed(now, peer, Protocol::Udp, source, data)
                                }
                                Some(peer) => {
                                    if let Some(routed) =
                                        router.routed.get_mut(usize::from(peer.shard()))
                                    {
                                        routed.push(source, peer, data);
                                    }
                                }
                                None => {
                                    tracing::trace!(%source, len = data.len(), "datagram from an unknown peer dropped")
                                }
                            },
                        }
                    }
                    if let Some(router) = receiver.router.as_mut() {
                        router.dispatch();
                    }
                    if n < BATCH_SIZE {
                        return;
                    }
                    // A full batch: more may wait. Send what this one produced first, so
                    // forwarding latency does not grow with the backlog.
                    self.flush();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::debug!(error = %e, "UDP receive failed");
                    return;
                }
            }
        }
    }

    fn receive(&mut self, now: Instant, proto: Protocol, source: SocketAddr, data: &[u8]) {
        self.sfu
            .handle_receive(now, proto, source, self.advertised, data);
    }

    fn receive_routed(
        &mut self,
        now: Instant,
        peer: ParticipantId,
        proto: Protocol,
        source: SocketAddr,
        data: &[u8],
    ) {
        self.sfu
            .handle_routed(now, peer, proto, source, self.advertised, data);
    }

    /// An ICE-TCP event on worker 0: connections are known to every worker (any may send
    /// on one), frames go to the worker owning the peer.
    fn route_tcp(&mut self, receiver: &mut Receiver, event: TcpEvent) {
        let Some(router) = receiver.router.as_mut() else {
            self.handle_tcp(event);
            return;
        };
        router.apply_updates();
        match event {
            TcpEvent::Frame(source, frame) => match router.peer_of(Protocol::Tcp, source, &frame) {
                Some(peer) if peer.shard() == 0 => {
                    self.receive_routed(Instant::now(), peer, Protocol::Tcp, source, &frame)
                }
                Some(peer) => {
                    if let Some(inbox) = router.workers.get(usize::from(peer.shard())) {
                        let _ = inbox.tcp.send(TcpEvent::RoutedFrame(source, peer, frame));
                    }
                }
                None => tracing::trace!(%source, "ICE-TCP frame from an unknown peer dropped"),
            },
            TcpEvent::RoutedFrame(..) => {}
            TcpEvent::Opened(peer, writer) => {
                for inbox in router.workers.iter().skip(1) {
                    let _ = inbox.tcp.send(TcpEvent::Opened(peer, writer.clone()));
                }
                self.handle_tcp(TcpEvent::Opened(peer, writer));
            }
            TcpEvent::Closed(peer) => {
                for inbox in router.workers.iter().skip(1) {
                    let _ = inbox.tcp.send(TcpEvent::Closed(peer));
                }
                self.handle_tcp(TcpEvent::Closed(peer));
            }
        }
    }

    fn handle_routed(&mut self, routed: RoutedDatagrams) {
        let now = Instant::now();
        for (source, peer, data) in routed.iter() {
            self.receive_routed(now, peer, Protocol::Udp, source, data);
        }
    }

    /// Pass this worker's ufrag changes to worker 0's router.
    fn publish_routes(&mut self) {
        if let Some(tx) = &self.route_updates {
            for update in self.sfu.take_route_updates() {
                let _ = tx.send(update);
            }
        }
    }

    fn handle_tcp(&mut self, event: TcpEvent) {
        match event {
            TcpEvent::Opened(peer, writer) => {
                self.tcp_conns.insert(peer, writer);
            }
            TcpEvent::Frame(source, frame) => {
                self.receive(Instant::now(), Protocol::Tcp, source, &frame);
            }
            TcpEvent::RoutedFrame(source, peer, frame) => {
                self.receive_routed(Instant::now(), peer, Protocol::Tcp, source, &frame);
            }
            TcpEvent::Closed(peer) => {
                self.tcp_conns.remove(&peer);
            }
        }
    }

    /// Copy the SFU's metrics out for `SfuHandle::metrics`, once per interval.
    fn publish_metrics(&mut self) {
        let now = Instant::now();
        if now < self.next_metrics {
            return;
        }
        self.next_metrics = now + METRICS_INTERVAL;
        let mut snapshot = self.sfu.metrics_snapshot();
        snapshot.counters.relay_batches_dropped = self.relay_batches_dropped;
        *self
            .metrics
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = snapshot;
    }

    /// Send what the SFU produced, a batch of datagrams per system call, and deliver its
    /// events.
    fn flush(&mut self) {
        while let Some(output) = self.sfu.poll_output() {
            match output {
                SfuOutput::Transmit(t) => match t.proto {
                    Protocol::Udp => {
                        if self.outgoing.is_full() {
                            self.send_udp();
                        }
                        if !self.outgoing.push(&t.contents, t.destination) {
                            tracing::debug!(destination = %t.destination, len = t.contents.len(), "oversized datagram not sent");
                        }
                    }
                    _ => {
                        if let Some(conn) = self.tcp_conns.get(&t.destination) {
                            let _ = conn.try_send(t.contents.to_vec());
                        }
                    }
                },
                SfuOutput::RelayControl { to, messages } => {
                    if let Some(inbox) = self.relay.get(usize::from(to)) {
                        let _ = inbox.control.send((self.shard, messages));
                    }
                }
                SfuOutput::RelayMedia { to, packets } => {
                    let Some(inbox) = self.relay.get(usize::from(to)) else {
                        continue;
                    };
                    if let Err(mpsc::error::TrySendError::Full(dropped)) =
                        inbox.media.try_send(packets)
                    {
                        self.relay_batches_dropped += 1;
                        tracing::debug!(
                            worker = to,
                            packets = dropped.len(),
                            "media worker behind, relayed packets dropped"
                        );
                    }
                }
                SfuOutput::Event(event) => {
                    let to = event.recipient();
                    let removed = matches!(event, SfuEvent::Removed { .. });
                    if let Some(tx) = self.subscribers.get(&to) {
                        let _ = tx.send(event);
                    }
                    if removed {
                        self.subscribers.remove(&to);
                    }
                }
            }
        }
        self.send_udp();
    }

    fn send_udp(&mut self) {
        if self.outgoing.is_empty() {
            return;
        }
        let queued = self.outgoing.len();
        // A full socket buffer drops the rest of the batch, as a congested network would;
        // waiting here would stall every other peer.
        match self.outgoing.send(&self.send_socket) {
            Ok(sent) if sent < queued => {
                tracing::trace!(
                    dropped = queued - sent,
                    "UDP send buffer full, datagrams dropped"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::trace!(error = %e, "UDP send failed"),
        }
    }
}
