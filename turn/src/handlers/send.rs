//! The data path in both directions: Send indications and ChannelData from
//! the client to peers, and peer datagrams back to the client as ChannelData
//! (when a channel is bound) or Data indications (RFC 8656 §10-12).
//!
//! Indications cannot be authenticated, so this path trusts only the client
//! 5-tuple (which owns the allocation) and drops anything that fails a check
//! rather than answering. The peer filter is applied again here even though
//! permissions were filtered when installed: every relay path is checked.

use std::net::SocketAddr;
use std::time::Instant;

use stun_rs::attributes::turn::{Data, XorPeerAddress};
use stun_rs::{methods, MessageClass, TransactionId};

use super::peer_address;
use crate::allocation::FiveTuple;
use crate::channel_data;
use crate::response::encode;
use crate::server::{Output, RelayBinder, Request, Server};

/// ChannelData from the client.
pub(crate) fn channel_data<B: RelayBinder>(
    srv: &mut Server<B>,
    tuple: FiveTuple,
    data: &[u8],
    now: Instant,
    out: &mut Vec<Output<B::Handle>>,
) {
    let cd = match channel_data::parse(data) {
        Ok(cd) => cd,
        Err(e) => {
            tracing::trace!(client = %tuple.client, error = %e, "bad ChannelData");
            return;
        }
    };
    let Some(alloc) = srv.table.by_tuple_mut(&tuple) else {
        return;
    };
    let Some(peer) = alloc
        .channels
        .get(&cd.number)
        .filter(|c| c.expires > now)
        .map(|c| c.peer)
    else {
        return;
    };
    if !alloc.has_permission(peer.ip(), now)
        || !srv.filter.is_allowed(peer.ip())
        || !alloc.charge(cd.data.len(), now)
    {
        return;
    }
    out.push(Output::ToPeer {
        relay: alloc.relay.clone(),
        peer,
        data: cd.data.to_vec(),
    });
}

/// A Send indication from the client.
pub(crate) fn indication<B: RelayBinder>(
    srv: &mut Server<B>,
    req: &Request<'_>,
    out: &mut Vec<Output<B::Handle>>,
) {
    let (Some(peer), Some(data)) = (
        peer_address(req),
        req.msg.get::<Data>().and_then(|a| a.as_data().ok()),
    ) else {
        return;
    };
    let now = req.now;
    let Some(alloc) = srv.table.by_tuple_mut(&req.tuple) else {
        return;
    };
    if peer.is_ipv6() != alloc.is_ipv6()
        || !alloc.has_permission(peer.ip(), now)
        || !srv.filter.is_allowed(peer.ip())
        || !alloc.charge(data.as_bytes().len(), now)
    {
        return;
    }
    out.push(Output::ToPeer {
        relay: alloc.relay.clone(),
        peer,
        data: data.as_bytes().to_vec(),
    });
}

/// A datagram from a peer to relay socket `bound`.
pub(crate) fn from_peer<B: RelayBinder>(
    srv: &mut Server<B>,
    bound: SocketAddr,
    peer: SocketAddr,
    data: &[u8],
    now: Instant,
    out: &mut Vec<Output<B::Handle>>,
) {
    let Some(alloc) = srv.table.by_bound_mut(&bound) else {
        return;
    };
    // Without a permission the datagram is silently discarded (§10.3).
    if !alloc.has_permission(peer.ip(), now) || !alloc.charge(data.len(), now) {
        return;
    }
    let tuple = alloc.tuple;
    let channel = alloc
        .peer_channels
        .get(&peer)
        .copied()
        .filter(|n| alloc.channels.get(n).is_some_and(|c| c.expires > now));
    let framed = match channel {
        Some(number) => {
            let mut buf = Vec::with_capacity(data.len() + 8);
            channel_data::encode_into(number, data, tuple.is_stream(), &mut buf).then_some(buf)
        }
        None => encode(
            methods::DATA,
            MessageClass::Indication,
            &TransactionId::default(),
            vec![XorPeerAddress::from(peer).into(), Data::from(data).into()],
            None,
            None,
        ),
    };
    if let Some(data) = framed {
        out.push(Output::ToClient { tuple, data });
    }
}
