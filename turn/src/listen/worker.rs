//! One relay worker: a thread with a single-threaded tokio runtime that owns
//! one shard of the core, one UDP listener socket on the shared port, and the
//! relay sockets of the allocations made through it.
//!
//! Everything a worker's tasks share is in [`Shard`], behind `RefCell`s: the
//! tasks run on one thread (a `LocalSet`), and no borrow is held across an
//! `.await`, so no lock is taken anywhere on the relay path.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinSet;

use datagram::DatagramBatch;

use super::relay::{self, Relay, SocketBinder};
use super::BATCH_SIZE;
use super::{tcp, tls, udp};
use crate::allocation::Transport;
use crate::config::TurnConfig;
use crate::error::TurnError;
use crate::global::Global;
use crate::server::{Output, Server};

/// Largest UDP payload: a datagram is never truncated.
pub(crate) const MAX_DATAGRAM: usize = 65536;

/// Writers of live TCP/TLS connections, by (transport, client address).
type StreamWriters = HashMap<(Transport, SocketAddr), mpsc::Sender<Vec<u8>>>;

/// One worker's counters. Only its own thread writes them, so an update is a
/// plain load and store on a cache line no other thread writes; readers (the
/// metrics scrape) sum all workers' lines.
#[derive(Debug, Default)]
#[repr(align(64))]
pub(crate) struct ShardCounters {
    relays: AtomicI64,
    bytes_to_peers: AtomicU64,
    bytes_from_peers: AtomicU64,
}

impl ShardCounters {
    fn bump(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
        }
    }

    fn relays_add(&self, n: i64) {
        let r = &self.relays;
        r.store(r.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }

    pub(crate) fn add_from_peers(&self, n: u64) {
        Self::bump(&self.bytes_from_peers, n);
    }

    pub(crate) fn relays(&self) -> i64 {
        self.relays.load(Ordering::Relaxed)
    }

    pub(crate) fn bytes_to_peers(&self) -> u64 {
        self.bytes_to_peers.load(Ordering::Relaxed)
    }

    pub(crate) fn bytes_from_peers(&self) -> u64 {
        self.bytes_from_peers.load(Ordering::Relaxed)
    }
}

/// What the tasks of one worker share.
pub(crate) struct Shard {
    pub(crate) core: RefCell<Server<SocketBinder>>,
    /// This worker's listener socket (`SO_REUSEPORT` on the shared port).
    pub(crate) udp: AsyncFd<std::net::UdpSocket>,
    /// The listener's local address (the server side of client 5-tuples).
    pub(crate) local: SocketAddr,
    /// Receive buffers shared by this worker's relay readers (each borrows
    /// them only between two awaits).
    pub(crate) peer_batch: RefCell<DatagramBatch>,
    /// UDP datagrams to clients waiting for the next flush.
    to_clients: RefCell<DatagramBatch>,
    flush_wake: Notify,
    flush_pending: Cell<bool>,
    pub(crate) streams: RefCell<StreamWriters>,
    pub(crate) counters: Arc<ShardCounters>,
}

impl Shard {
    /// Performs the core's outputs, draining `outs`. Never waits: UDP sends
    /// that find a full socket buffer are dropped, stream frames are queued.
    pub(crate) fn dispatch(self: &Rc<Self>, outs: &mut Vec<Output<Relay>>) {
        for o in outs.drain(..) {
            match o {
                Output::ToClient { tuple, data } => match tuple.transport {
                    Transport::Udp => self.queue_to_client(&data, tuple.client),
                    Transport::Tcp | Transport::Tls => {
                        let streams = self.streams.borrow();
                        if let Some(tx) = streams.get(&(tuple.transport, tuple.client)) {
                            // a full queue means a stalled client: drop, as UDP would
                            let _ = tx.try_send(data);
                        }
                    }
                },
                Output::ToPeer { relay, peer, data } => {
                    ShardCounters::bump(&self.counters.bytes_to_peers, data.len() as u64);
                    relay.send_to(&data, peer);
                }
                Output::RelayOpened { relay, bound } => {
                    self.counters.relays_add(1);
                    relay::spawn(self.clone(), relay, bound);
                }
                Output::RelayClosed { relay } => {
                    self.counters.relays_add(-1);
                    relay.close();
                }
            }
        }
    }

    /// Queues a datagram to a client. The flusher task sends the queue once
    /// the tasks already woken in this scheduler tick have run, so the replies
    /// to a tick's worth of peer datagrams (from many relay sockets) leave in
    /// one `sendmmsg`.
    fn queue_to_client(&self, data: &[u8], to: SocketAddr) {
        let mut batch = self.to_clients.borrow_mut();
        if batch.is_full() {
            self.send_batch(&mut batch);
        }
        if !batch.push(data, to) {
            tracing::debug!(%to, len = data.len(), "datagram to client too large, dropped");
        }
        if !self.flush_pending.replace(true) {
            self.flush_wake.notify_one();
        }
    }

    fn send_batch(&self, batch: &mut DatagramBatch) {
        if let Err(e) = batch.send(self.udp.get_ref()) {
            tracing::trace!(error = %e, "UDP send to a client failed");
        }
    }

    /// Sends every queued datagram to clients now.
    pub(crate) fn flush(&self) {
        self.flush_pending.set(false);
        let mut batch = self.to_clients.borrow_mut();
        if !batch.is_empty() {
            self.send_batch(&mut batch);
        }
    }
}

/// The sockets one worker thread starts with.
pub(crate) struct WorkerSockets {
    pub(crate) udp: std::net::UdpSocket,
    pub(crate) tcp: Option<std::net::TcpListener>,
    pub(crate) tls: Option<(std::net::TcpListener, tokio_rustls::TlsAcceptor)>,
}

/// What a worker needs besides its sockets.
pub(crate) struct WorkerSetup {
    pub(crate) config: TurnConfig,
    pub(crate) global: Arc<Global<Relay>>,
    pub(crate) counters: Arc<ShardCounters>,
    pub(crate) stop: watch::Receiver<bool>,
}

/// Runs one worker on the current thread until `stop` turns true (or one of
/// its listeners fails). Dropping the runtime afterwards cancels whatever
/// tasks remain (relay readers, TCP connections) without polling them again.
pub(crate) fn run_thread(sockets: WorkerSockets, setup: WorkerSetup) -> Result<(), TurnError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, worker(sockets, setup))
}

async fn worker(sockets: WorkerSockets, setup: WorkerSetup) -> Result<(), TurnError> {
    let WorkerSetup {
        config,
        global,
        counters,
        mut stop,
    } = setup;
    let local = sockets.udp.local_addr()?;
    // SAFETY: the `AsyncFd` owns the socket, so its descriptor stays open and
    // the same for the `AsyncFd`'s whole life.
    let udp = unsafe { AsyncFd::register(sockets.udp) }.map_err(|e| e.into_parts().1)?;
    let shard = Rc::new(Shard {
        core: RefCell::new(Server::shard(config, SocketBinder, global)),
        udp,
        local,
        peer_batch: RefCell::new(DatagramBatch::new(BATCH_SIZE, MAX_DATAGRAM)),
        to_clients: RefCell::new(DatagramBatch::new(BATCH_SIZE, MAX_DATAGRAM)),
        flush_wake: Notify::new(),
        flush_pending: Cell::new(false),
        streams: RefCell::default(),
        counters,
    });
    let mut tasks = JoinSet::new();
    tasks.spawn_local(udp::run(shard.clone()));
    tasks.spawn_local(flusher(shard.clone()));
    tasks.spawn_local(timer_loop(shard.clone()));
    if let Some(tcp) = sockets.tcp {
        tasks.spawn_local(tcp::accept_loop(shard.clone(), TcpListener::from_std(tcp)?));
    }
    if let Some((listener, acceptor)) = sockets.tls {
        let listener = TcpListener::from_std(listener)?;
        tasks.spawn_local(tls::accept_loop(shard.clone(), listener, acceptor));
    }
    tokio::select! {
        _ = stop.wait_for(|s| *s) => {}
        Some(done) = tasks.join_next() => {
            tracing::error!(?done, "a TURN listener task ended");
        }
    }
    tasks.abort_all();
    // Free this shard's allocations (quotas, ports) and stop their readers.
    let mut outs = Vec::new();
    shard.core.borrow_mut().close_all(&mut outs);
    shard.dispatch(&mut outs);
    shard.flush();
    shard.streams.borrow_mut().clear();
    Ok(())
}

/// Sends the queued client datagrams whenever asked (see
/// [`Shard::queue_to_client`]).
async fn flusher(shard: Rc<Shard>) {
    loop {
        shard.flush_wake.notified().await;
        shard.flush();
    }
}

/// Drives this shard's deadlines. One task for all its allocations,
/// permissions and channels; a one-second tick is far finer than the shortest
/// lifetime.
async fn timer_loop(shard: Rc<Shard>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut outs = Vec::new();
    loop {
        tick.tick().await;
        shard
            .core
            .borrow_mut()
            .handle_timeout(Instant::now(), &mut outs);
        shard.dispatch(&mut outs);
    }
}
