//! Relay sockets: the [`RelayBinder`] that binds them and the task that reads
//! each one and feeds peer datagrams to its shard's core.
//!
//! A relay socket is a plain non-blocking std socket until its reader task
//! registers it with the runtime of the worker that opened the allocation.
//! That matters for EVEN-PORT reservations: the reserved socket is bound while
//! one shard answers an Allocate and may be opened by another (the RTCP half
//! of a pair comes from another 5-tuple), and a socket must be polled on the
//! runtime it is registered with. Sends need no runtime at all: they go
//! straight out of the std socket and are dropped if its buffer is full, as a
//! congested link would drop them.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::Notify;

use super::backoff::ErrorBackoff;
use super::buffered_udp;
use super::worker::Shard;
use super::BATCH_SIZE;
use crate::server::RelayBinder;

/// Handle to one relay socket, cloned into the allocation and into outputs.
#[derive(Clone, Debug)]
pub(crate) struct Relay(Arc<RelayInner>);

#[derive(Debug)]
struct RelayInner {
    socket: std::net::UdpSocket,
    closed: Notify,
}

impl Relay {
    /// Sends one datagram to `peer` if the socket has room. Errors (an ICMP
    /// error of an earlier send, a full buffer) drop it: UDP is best-effort.
    pub(crate) fn send_to(&self, data: &[u8], peer: SocketAddr) {
        if let Err(e) = self.0.socket.send_to(data, peer) {
            tracing::trace!(%peer, error = %e, "relay send failed");
        }
    }

    /// Asks the reader task to stop; the socket closes when the last handle
    /// (the task's) is dropped.
    pub(crate) fn close(&self) {
        // notify_one stores a permit if the task is not waiting right now
        self.0.closed.notify_one();
    }
}

impl AsRawFd for Relay {
    fn as_raw_fd(&self) -> RawFd {
        self.0.socket.as_raw_fd()
    }
}

/// Binds relay sockets as non-blocking std sockets.
#[derive(Debug)]
pub(crate) struct SocketBinder;

impl RelayBinder for SocketBinder {
    type Handle = Relay;

    fn bind(&mut self, addr: SocketAddr) -> io::Result<(Relay, SocketAddr)> {
        let socket = buffered_udp(addr, false, false)?;
        let local = socket.local_addr()?;
        Ok((
            Relay(Arc::new(RelayInner {
                socket,
                closed: Notify::new(),
            })),
            local,
        ))
    }
}

/// Starts the reader task of a relay socket on the current worker.
pub(crate) fn spawn(shard: Rc<Shard>, relay: Relay, bound: SocketAddr) {
    tokio::task::spawn_local(run(shard, relay, bound));
}

/// Reads peer datagrams from one relay socket until the allocation is gone
/// or the worker stops (its runtime then drops this task).
async fn run(shard: Rc<Shard>, relay: Relay, bound: SocketAddr) {
    // SAFETY: the descriptor is the relay's socket, which the `Relay` clone
    // moved into the `AsyncFd` keeps open (an `Arc`) for the `AsyncFd`'s whole
    // life, and `as_raw_fd` always returns that same descriptor.
    let registered = unsafe { AsyncFd::register_with_interest(relay.clone(), Interest::READABLE) };
    let fd = match registered {
        Ok(fd) => fd,
        Err(e) => {
            tracing::warn!(%bound, error = %e, "cannot watch relay socket");
            return;
        }
    };
    let mut outs = Vec::new();
    let mut backoff = ErrorBackoff::default();
    loop {
        let mut guard = tokio::select! {
            biased;
            _ = relay.0.closed.notified() => break,
            ready = fd.readable() => match ready {
                Ok(guard) => guard,
                // the runtime's I/O driver is gone: the worker is stopping
                Err(_) => break,
            },
        };
        let received = {
            let mut batch = shard.peer_batch.borrow_mut();
            match batch.recv(fd.get_ref()) {
                Ok(n) => {
                    let now = Instant::now();
                    let mut relayed = 0u64;
                    for (data, peer) in (0..n).filter_map(|i| batch.get(i)) {
                        let before = outs.len();
                        shard
                            .core
                            .borrow_mut()
                            .handle_peer(bound, peer, data, now, &mut outs);
                        if outs.len() > before {
                            relayed += data.len() as u64;
                        }
                    }
                    shard.counters.add_from_peers(relayed);
                    Ok(n)
                }
                Err(e) => Err(e),
            }
        };
        match received {
            Ok(n) => {
                backoff.succeeded();
                // A short batch emptied the queue: clear readiness now instead of
                // spending a call to learn it. A datagram arriving meanwhile
                // raises a new edge, which the driver records after this.
                if n < BATCH_SIZE {
                    guard.clear_ready();
                }
                shard.dispatch(&mut outs);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => guard.clear_ready(),
            Err(e) => {
                // ICMP errors from earlier sends surface here on Linux, once each
                tracing::trace!(%bound, error = %e, "relay recv error");
                drop(guard);
                backoff.after_failure().await;
            }
        }
    }
    tracing::debug!(%bound, "relay socket closed");
}
