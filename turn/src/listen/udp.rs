//! The UDP listener: client datagrams in, core outputs out.

use std::sync::Arc;
use std::time::Instant;

use super::Shared;
use crate::allocation::{FiveTuple, Transport};

/// Reads client datagrams forever. Several of these may share the socket.
pub(crate) async fn run(shared: Arc<Shared>) {
    let udp = shared.udp.clone();
    let local = match udp.local_addr() {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "UDP listener has no local address");
            return;
        }
    };
    let mut buf = vec![0u8; 65536];
    let mut outs = Vec::new();
    loop {
        let (n, client) = match udp.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                // ICMP port unreachable from a vanished client shows up here
                tracing::trace!(error = %e, "UDP recv error");
                continue;
            }
        };
        let tuple = FiveTuple {
            transport: Transport::Udp,
            client,
            server: local,
        };
        let data = buf.get(..n).unwrap_or_default();
        shared
            .core()
            .handle_client(tuple, data, Instant::now(), &mut outs);
        shared.dispatch(&mut outs).await;
    }
}
