//! # Switchboard cluster
//!
//! Several `switchboard serve` nodes behave as one: a participant connected to any node is in
//! the same room as everyone on the others, sees and hears them, and is seen and heard.
//!
//! - `registry.rs`: Redis holds which nodes are alive (a key per node with a short expiry,
//!   refreshed every second), where each one's relay listens, and its load.
//! - `link.rs`: each pair of nodes keeps one TCP link, authenticated with the cluster secret
//!   and encrypted (AES-256-GCM, keys fresh per link). The node with the lower id dials.
//! - `wire.rs`: what travels on a link: room events, media of the layers the other node
//!   needs, needs and keyframe requests back.
//! - `gateway.rs`: the node's end of all its links, seen by the media workers as one more
//!   relay slot (see `sfu::relay`): a track reaches another node once, however many of that
//!   node's participants watch it, and only the layers they need.
//!
//! A node that dies is noticed when its link drops and its registry key expires (within
//! about 3 s of a `kill -9`); every other node then tells its participants that the dead
//! node's participants left. See docs/scaling.md.

mod gateway;
pub mod link;
pub mod registry;
pub mod wire;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sfu::{ParticipantStats, RelayPort, SfuHandle};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use gateway::Gateway;
use link::LinkEvent;
use registry::{Membership, NodeEntry, Registry, HEARTBEAT};
use wire::NodeMessage;

/// A node of the cluster: random at each start.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u64);

impl NodeId {
    pub fn random() -> Self {
        Self(rand::random())
    }

    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 16)
            .then(|| u64::from_str_radix(s, 16).ok().map(Self))
            .flatten()
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Counters of a node's part in the cluster, for `/metrics`.
#[derive(Debug, Default)]
pub struct ClusterStats {
    /// Nodes this one has a relay link with now.
    pub linked_nodes: AtomicUsize,
    /// RTP packets sent to other nodes (once per packet per node that needs it).
    pub packets_to_nodes: AtomicU64,
    /// RTP packets received from other nodes.
    pub packets_from_nodes: AtomicU64,
    /// Media batches dropped because a link or a worker was behind.
    pub media_batches_dropped: AtomicU64,
    /// Nodes found dead (link down and registry key expired).
    pub nodes_lost: AtomicU64,
}

#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `redis://host:port` (or `rediss://`, `redis+unix://`).
    pub redis_url: String,
    /// Where this node's relay listens.
    pub relay_listen: SocketAddr,
    /// Where the other nodes reach it (differs from `relay_listen` behind NAT or on a
    /// wildcard bind).
    pub relay_advertise: SocketAddr,
    /// Shared by every node of the cluster; authenticates and encrypts the relay links.
    pub secret: Vec<u8>,
    /// Prefix of every Redis key, so that several clusters can share one Redis.
    pub key_prefix: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("invalid Redis URL: {0}")]
    RedisUrl(#[from] redis::RedisError),
    #[error("binding the relay listener on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("the cluster secret must have at least 16 bytes")]
    WeakSecret,
}

/// Asks the other nodes for their participants (for `/api/stats`).
#[derive(Clone)]
pub struct StatsSource(mpsc::UnboundedSender<oneshot::Sender<Vec<ParticipantStats>>>);

impl StatsSource {
    /// Every participant of the other nodes and what it receives: what the nodes answer
    /// within a second.
    pub async fn fetch(&self) -> Vec<ParticipantStats> {
        let (reply, answer) = oneshot::channel();
        if self.0.send(reply).is_err() {
            return Vec::new();
        }
        answer.await.unwrap_or_default()
    }
}

/// How long `/api/stats` waits for the other nodes' participants.
const STATS_TIMEOUT: Duration = Duration::from_secs(1);

/// A running cluster membership. Dropping it leaves the tasks running with the runtime; call
/// [`Cluster::leave`] at a clean shutdown so that the others do not wait for the key to
/// expire.
pub struct Cluster {
    pub node: NodeId,
    pub relay_addr: SocketAddr,
    pub stats: Arc<ClusterStats>,
    stop: watch::Sender<bool>,
    left: Option<tokio::sync::oneshot::Receiver<()>>,
    stats_requests: mpsc::UnboundedSender<oneshot::Sender<Vec<ParticipantStats>>>,
}

impl Cluster {
    /// Join the cluster: listen for relay links, register in Redis, link to every other node,
    /// and relay between them and this node's media workers through `port`.
    pub async fn start(
        config: ClusterConfig,
        port: RelayPort,
        sfu: SfuHandle,
    ) -> Result<Self, ClusterError> {
        if config.secret.len() < 16 {
            return Err(ClusterError::WeakSecret);
        }
        let registry = Registry::new(&config.redis_url, &config.key_prefix)?;
        let listener = TcpListener::bind(config.relay_listen)
            .await
            .map_err(|e| ClusterError::Bind(config.relay_listen, e))?;
        let relay_addr = listener
            .local_addr()
            .map_err(|e| ClusterError::Bind(config.relay_listen, e))?;
        let advertise = if config.relay_advertise.port() == 0 {
            SocketAddr::new(config.relay_advertise.ip(), relay_addr.port())
        } else {
            config.relay_advertise
        };
        let node = NodeId::random();
        let (stop, stop_rx) = watch::channel(false);
        let (link_tx, link_rx) = mpsc::unbounded_channel();
        let (membership_tx, membership_rx) = mpsc::channel(4);
        let (forget_tx, forget_rx) = mpsc::unbounded_channel();
        let (left_tx, left) = tokio::sync::oneshot::channel();
        let participants = Arc::new(AtomicUsize::new(0));
        let generations = Arc::new(AtomicU64::new(1));
        let secret = Arc::new(config.secret);

        tokio::spawn(accept_links(
            listener,
            node,
            Arc::clone(&secret),
            Arc::clone(&generations),
            link_tx.clone(),
            stop_rx.clone(),
        ));
        tokio::spawn(heartbeat_loop(
            registry,
            node,
            advertise,
            Arc::clone(&participants),
            membership_tx,
            forget_rx,
            stop_rx.clone(),
            left_tx,
        ));
        let stats = Arc::new(ClusterStats::default());
        let gateway = Gateway::new(port.index, port.workers.clone(), Arc::clone(&stats));
        let (stats_requests, stats_rx) = mpsc::unbounded_channel();
        tokio::spawn(
            GatewayLoop {
                node,
                gateway,
                secret,
                generations,
                link_tx,
                forget: forget_tx,
                participants,
                known: HashSet::new(),
                dialing: HashSet::new(),
                sfu,
                pending_stats: HashMap::new(),
                next_stats_id: 1,
            }
            .run(port, link_rx, membership_rx, stats_rx, stop_rx),
        );
        tracing::info!(%node, relay = %relay_addr, %advertise, "joined the cluster");
        Ok(Self {
            node,
            relay_addr,
            stats,
            stop,
            left: Some(left),
            stats_requests,
        })
    }

    /// Where `/api/stats` gets the other nodes' participants.
    pub fn stats_source(&self) -> StatsSource {
        StatsSource(self.stats_requests.clone())
    }

    /// Leave at a clean shutdown: stop relaying and remove this node from Redis (waits at
    /// most a second for Redis).
    pub async fn leave(&mut self) {
        let _ = self.stop.send(true);
        if let Some(left) = self.left.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), left).await;
        }
    }
}

async fn accept_links(
    listener: TcpListener,
    node: NodeId,
    secret: Arc<Vec<u8>>,
    generations: Arc<AtomicU64>,
    events: mpsc::UnboundedSender<LinkEvent>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(1);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.changed() => return,
        };
        match accepted {
            Ok((stream, from)) => {
                backoff = Duration::from_millis(1);
                let (secret, events) = (Arc::clone(&secret), events.clone());
                let generation = generations.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    if let Err(e) =
                        link::establish(stream, secret.to_vec(), node, false, generation, events)
                            .await
                    {
                        tracing::warn!(%from, error = %e, "relay connection refused");
                    }
                });
            }
            Err(e) => {
                // Out of descriptors, say: back off rather than spin.
                tracing::warn!(error = %e, "relay accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn heartbeat_loop(
    mut registry: Registry,
    node: NodeId,
    advertise: SocketAddr,
    participants: Arc<AtomicUsize>,
    membership: mpsc::Sender<Membership>,
    mut forget: mpsc::UnboundedReceiver<NodeId>,
    mut stop: watch::Receiver<bool>,
    left: tokio::sync::oneshot::Sender<()>,
) {
    let mut ticks = tokio::time::interval(HEARTBEAT);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut redis_down_since: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.changed() => break,
        }
        while let Ok(dead) = forget.try_recv() {
            if let Err(e) = registry.forget(dead).await {
                tracing::debug!(node = %dead, error = %e, "could not forget a dead node");
            }
        }
        let entry = NodeEntry {
            relay_addr: advertise,
            participants: participants.load(Ordering::Relaxed),
        };
        match registry.heartbeat(node, &entry).await {
            Ok(found) => {
                if let Some(since) = redis_down_since.take() {
                    tracing::info!(after = ?since.elapsed(), "Redis reachable again; registered");
                }
                if membership.send(found).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                if redis_down_since.is_none() {
                    redis_down_since = Some(tokio::time::Instant::now());
                    tracing::warn!(error = %e, "Redis unreachable: calls go on, new nodes are not discovered meanwhile");
                }
            }
        }
    }
    if let Err(e) = registry.deregister(node).await {
        tracing::debug!(error = %e, "could not deregister from Redis");
    }
    let _ = left.send(());
}

/// The gateway's task: media workers, links and the registry's findings.
struct GatewayLoop {
    node: NodeId,
    gateway: Gateway,
    secret: Arc<Vec<u8>>,
    generations: Arc<AtomicU64>,
    link_tx: mpsc::UnboundedSender<LinkEvent>,
    forget: mpsc::UnboundedSender<NodeId>,
    participants: Arc<AtomicUsize>,
    /// Nodes seen alive since they were last found dead.
    known: HashSet<NodeId>,
    /// Nodes being dialled now.
    dialing: HashSet<NodeId>,
    /// This node's SFU, to answer the others' stats requests.
    sfu: SfuHandle,
    pending_stats: HashMap<u64, PendingStats>,
    next_stats_id: u64,
}

/// A stats request of this node, waiting for the other nodes' replies.
struct PendingStats {
    waiting_for: HashSet<NodeId>,
    collected: Vec<ParticipantStats>,
    reply: oneshot::Sender<Vec<ParticipantStats>>,
    deadline: Instant,
}

impl GatewayLoop {
    async fn run(
        mut self,
        mut port: RelayPort,
        mut links: mpsc::UnboundedReceiver<LinkEvent>,
        mut membership: mpsc::Receiver<Membership>,
        mut stats_requests: mpsc::UnboundedReceiver<oneshot::Sender<Vec<ParticipantStats>>>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            let stats_deadline = self
                .pending_stats
                .values()
                .map(|p| p.deadline)
                .min()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                Some(reply) = stats_requests.recv() => self.request_stats(reply),
                _ = tokio::time::sleep_until(stats_deadline) => self.expire_stats(),
                Some((worker, messages)) = port.control.recv() => {
                    self.gateway.handle_worker_messages(worker, messages);
                    self.participants.store(self.gateway.local_participants(), Ordering::Relaxed);
                }
                Some(packets) = port.media.recv() => self.gateway.media_from_workers(packets),
                Some(event) = links.recv() => self.link_event(event),
                Some(found) = membership.recv() => self.membership(found),
                _ = stop.changed() => break,
                else => break,
            }
        }
    }

    fn link_event(&mut self, event: LinkEvent) {
        match event {
            LinkEvent::Up(node, sender) => {
                self.dialing.remove(&node);
                self.known.insert(node);
                self.gateway.link_up(node, sender);
            }
            LinkEvent::Message(node, NodeMessage::StatsRequest { id }) => {
                let (sfu, link) = (self.sfu.clone(), self.gateway.link(node).cloned());
                tokio::spawn(async move {
                    let stats = sfu.all_stats().await.unwrap_or_default();
                    if let Some(link) = link {
                        link.send(NodeMessage::StatsReply { id, stats });
                    }
                });
            }
            LinkEvent::Message(node, NodeMessage::StatsReply { id, stats }) => {
                if let Some(pending) = self.pending_stats.get_mut(&id) {
                    if pending.waiting_for.remove(&node) {
                        pending.collected.extend(stats);
                    }
                    if pending.waiting_for.is_empty() {
                        if let Some(done) = self.pending_stats.remove(&id) {
                            let _ = done.reply.send(done.collected);
                        }
                    }
                }
            }
            LinkEvent::Message(node, message) => self.gateway.handle_node_message(node, message),
            LinkEvent::Down(node, generation) => {
                self.dialing.remove(&node);
                self.gateway.link_down(node, generation);
            }
        }
    }

    fn request_stats(&mut self, reply: oneshot::Sender<Vec<ParticipantStats>>) {
        let nodes = self.gateway.linked_nodes();
        if nodes.is_empty() {
            let _ = reply.send(Vec::new());
            return;
        }
        let id = self.next_stats_id;
        self.next_stats_id += 1;
        for node in &nodes {
            if let Some(link) = self.gateway.link(*node) {
                link.send(NodeMessage::StatsRequest { id });
            }
        }
        self.pending_stats.insert(
            id,
            PendingStats {
                waiting_for: nodes.into_iter().collect(),
                collected: Vec::new(),
                reply,
                deadline: Instant::now() + STATS_TIMEOUT,
            },
        );
    }

    /// Answer the requests whose time is up with what arrived.
    fn expire_stats(&mut self) {
        let now = Instant::now();
        let expired: Vec<u64> = self
            .pending_stats
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(done) = self.pending_stats.remove(&id) {
                tracing::warn!(missing = ?done.waiting_for, "stats: nodes did not answer in time");
                let _ = done.reply.send(done.collected);
            }
        }
    }

    fn membership(&mut self, found: Membership) {
        for (&node, entry) in &found.alive {
            if node == self.node {
                continue;
            }
            self.known.insert(node);
            // One link per pair: the lower id dials.
            if self.node < node && !self.gateway.linked(node) && self.dialing.insert(node) {
                self.dial(node, entry.relay_addr);
            }
        }
        let dead: Vec<NodeId> = self
            .known
            .iter()
            .copied()
            .filter(|n| !found.alive.contains_key(n) && !self.gateway.linked(*n))
            .collect();
        for node in dead {
            self.known.remove(&node);
            self.gateway.node_dead(node);
            let _ = self.forget.send(node);
        }
        for node in found.expired {
            if !self.gateway.linked(node) && !self.known.contains(&node) {
                let _ = self.forget.send(node);
            }
        }
    }

    fn dial(&self, node: NodeId, addr: SocketAddr) {
        let (secret, events) = (Arc::clone(&self.secret), self.link_tx.clone());
        let me = self.node;
        let generation = self.generations.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let connected =
                tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await;
            let result = match connected {
                Ok(Ok(stream)) => link::establish(
                    stream,
                    secret.to_vec(),
                    me,
                    true,
                    generation,
                    events.clone(),
                )
                .await
                .map(|_| ()),
                Ok(Err(e)) => Err(link::LinkError::Io(e)),
                Err(_) => Err(link::LinkError::Timeout),
            };
            if let Err(e) = result {
                tracing::info!(%node, %addr, error = %e, "could not link to node; retrying");
                // Reported as a link that went down, so the next heartbeat dials again.
                let _ = events.send(LinkEvent::Down(node, generation));
            }
        });
    }
}
