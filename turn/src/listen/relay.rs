//! Relay sockets: the [`RelayBinder`] that binds them and the task that reads
//! each one and feeds peer datagrams to the core.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::sync::Notify;

use super::{buffered_udp, Shared};
use crate::server::RelayBinder;

/// Handle to one relay socket, cloned into the allocation and into outputs.
#[derive(Clone, Debug)]
pub(crate) struct Relay(Arc<RelayInner>);

#[derive(Debug)]
struct RelayInner {
    socket: UdpSocket,
    closed: Notify,
}

impl Relay {
    pub(crate) fn socket(&self) -> &UdpSocket {
        &self.0.socket
    }

    /// Asks the reader task to stop; the socket closes when the last handle
    /// (the task's) is dropped.
    pub(crate) fn close(&self) {
        // notify_one stores a permit if the task is not waiting right now
        self.0.closed.notify_one();
    }
}

/// Binds relay sockets as tokio sockets.
#[derive(Debug)]
pub(crate) struct TokioBinder;

impl RelayBinder for TokioBinder {
    type Handle = Relay;

    fn bind(&mut self, addr: SocketAddr) -> io::Result<(Relay, SocketAddr)> {
        let std_sock = buffered_udp(addr, false, false)?;
        let socket = UdpSocket::from_std(std_sock)?;
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

/// Starts the reader task of a relay socket.
///
/// A plain function (not `async`) on purpose: `dispatch` calls it, and the
/// reader awaits `dispatch`, so spawning from inside an async fn would make
/// the future types recursive and their `Send`-ness unprovable.
pub(crate) fn spawn(shared: Arc<Shared>, relay: Relay, bound: SocketAddr) {
    let fut: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(run(shared, relay, bound));
    tokio::spawn(fut);
}

/// Reads peer datagrams from one relay socket until the allocation is gone.
async fn run(shared: Arc<Shared>, relay: Relay, bound: SocketAddr) {
    let mut buf = vec![0u8; 65536];
    let mut outs = Vec::new();
    loop {
        tokio::select! {
            biased;
            _ = relay.0.closed.notified() => break,
            r = relay.socket().recv_from(&mut buf) => match r {
                Ok((n, peer)) => {
                    let data = buf.get(..n).unwrap_or_default();
                    shared.core().handle_peer(bound, peer, data, Instant::now(), &mut outs);
                    if !outs.is_empty() {
                        shared.stats.bytes_from_peers.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                    }
                    shared.dispatch(&mut outs).await;
                }
                // ICMP errors from earlier sends surface here on Linux; not fatal
                Err(e) => tracing::trace!(%bound, error = %e, "relay recv error"),
            }
        }
    }
    tracing::debug!(%bound, "relay socket closed");
}
