//! CreatePermission (RFC 8656 §9): let peers at the given IPs send to the
//! relay, and the client send to them. Every address passes the peer filter
//! first; one forbidden address fails the whole request (403) so a request
//! never half-succeeds.

use std::net::IpAddr;
use std::time::Instant;

use super::{authed_allocation, peer_addresses};
use crate::allocation::Allocation;
use crate::config::PERMISSION_LIFETIME;
use crate::server::{Output, RelayBinder, Request, Server};
use crate::timer::{TimerKey, TimerQueue};

/// Installs or refreshes a permission for `ip` on `alloc`.
pub(crate) fn install<H>(
    alloc: &mut Allocation<H>,
    timers: &mut TimerQueue,
    ip: IpAddr,
    now: Instant,
) {
    let expires = now + PERMISSION_LIFETIME;
    alloc.permissions.insert(ip, expires);
    timers.push(expires, TimerKey::Permission(alloc.id, ip));
}

/// Handles a CreatePermission request.
pub(crate) fn handle<B: RelayBinder>(
    srv: &mut Server<B>,
    req: &Request<'_>,
    out: &mut Vec<Output<B::Handle>>,
) {
    let Some((auth, id)) = authed_allocation(srv, req, out) else {
        return;
    };
    let peers = peer_addresses(req);
    if peers.is_empty() {
        srv.reply_error(req, 400, Some(&auth), Vec::new(), out);
        return;
    }
    let Some(alloc) = srv.table.get_mut(id) else {
        return;
    };
    let v6 = alloc.is_ipv6();
    if peers.iter().any(|p| p.is_ipv6() != v6) {
        srv.reply_error(req, 443, Some(&auth), Vec::new(), out);
        return;
    }
    if let Some(bad) = peers.iter().find(|p| !srv.filter.is_allowed(p.ip())) {
        tracing::info!(user = auth.username, peer = %bad.ip(), "CreatePermission to forbidden peer refused");
        srv.reply_error(req, 403, Some(&auth), Vec::new(), out);
        return;
    }
    for p in &peers {
        install(alloc, &mut srv.timers, p.ip(), req.now);
    }
    srv.reply_ok(req, Vec::new(), Some(&auth), out);
}
