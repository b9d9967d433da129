//! The UDP listener of one worker: client datagrams in (a batch per call),
//! core outputs out.

use std::io;
use std::rc::Rc;
use std::time::Instant;

use super::backoff::ErrorBackoff;
use datagram::DatagramBatch;

use super::worker::{Shard, MAX_DATAGRAM};
use super::BATCH_SIZE;
use crate::allocation::{FiveTuple, Transport};

/// Reads client datagrams until the runtime stops. Errors back off (see
/// [`ErrorBackoff`]) instead of spinning; a gone I/O driver ends the loop.
pub(crate) async fn run(shard: Rc<Shard>) {
    let mut batch = DatagramBatch::new(BATCH_SIZE, MAX_DATAGRAM);
    let mut outs = Vec::new();
    let mut backoff = ErrorBackoff::default();
    loop {
        let Ok(mut guard) = shard.udp.readable().await else {
            tracing::debug!("UDP listener: runtime shutting down");
            return;
        };
        match batch.recv(shard.udp.get_ref()) {
            Ok(n) => {
                backoff.succeeded();
                // a short batch emptied the queue (see relay.rs)
                if n < BATCH_SIZE {
                    guard.clear_ready();
                }
                let now = Instant::now();
                for (data, client) in (0..n).filter_map(|i| batch.get(i)) {
                    let tuple = FiveTuple {
                        transport: Transport::Udp,
                        client,
                        server: shard.local,
                    };
                    shard
                        .core
                        .borrow_mut()
                        .handle_client(tuple, data, now, &mut outs);
                }
                shard.dispatch(&mut outs);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => guard.clear_ready(),
            Err(e) => {
                // ICMP port unreachable from a vanished client shows up here, once
                tracing::trace!(error = %e, "UDP recv error");
                drop(guard);
                backoff.after_failure().await;
            }
        }
    }
}
