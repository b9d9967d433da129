//! ChannelBind (RFC 8656 §11): bind a channel number to a peer so data can
//! flow as 4-byte-header ChannelData instead of Send/Data indications. Also
//! installs or refreshes the permission for the peer's IP.

use stun_rs::attributes::turn::ChannelNumber;

use super::{authed_allocation, peer_address, permission};
use crate::allocation::Channel;
use crate::channel_data::valid_channel;
use crate::config::CHANNEL_LIFETIME;
use crate::server::{Output, RelayBinder, Request, Server};
use crate::timer::TimerKey;

/// Handles a ChannelBind request.
pub(crate) fn handle<B: RelayBinder>(
    srv: &mut Server<B>,
    req: &Request<'_>,
    out: &mut Vec<Output<B::Handle>>,
) {
    let Some((auth, id)) = authed_allocation(srv, req, out) else {
        return;
    };
    let number = req
        .msg
        .get::<ChannelNumber>()
        .and_then(|a| a.as_channel_number().ok())
        .map(|c| c.number());
    let (Some(number), Some(peer)) = (number, peer_address(req)) else {
        srv.reply_error(req, 400, Some(&auth), Vec::new(), out);
        return;
    };
    if !valid_channel(number) {
        tracing::debug!(number, "channel number outside 0x4000-0x7FFF");
        srv.reply_error(req, 400, Some(&auth), Vec::new(), out);
        return;
    }
    let Some(alloc) = srv.table.get_mut(id) else {
        return;
    };
    if peer.is_ipv6() != alloc.is_ipv6() {
        srv.reply_error(req, 443, Some(&auth), Vec::new(), out);
        return;
    }
    if !srv.filter.is_allowed(peer.ip()) {
        tracing::info!(user = auth.username, peer = %peer.ip(), "ChannelBind to forbidden peer refused");
        srv.reply_error(req, 403, Some(&auth), Vec::new(), out);
        return;
    }
    // A channel is bound to one peer and a peer to one channel (§11.2).
    let channel_taken = alloc.channels.get(&number).is_some_and(|c| c.peer != peer);
    let peer_taken = alloc.peer_channels.get(&peer).is_some_and(|n| *n != number);
    if channel_taken || peer_taken {
        srv.reply_error(req, 400, Some(&auth), Vec::new(), out);
        return;
    }
    let expires = req.now + CHANNEL_LIFETIME;
    alloc.channels.insert(number, Channel { peer, expires });
    alloc.peer_channels.insert(peer, number);
    srv.timers.push(expires, TimerKey::Channel(id, number));
    permission::install(alloc, &mut srv.timers, peer.ip(), req.now);
    srv.reply_ok(req, Vec::new(), Some(&auth), out);
}
