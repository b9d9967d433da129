//! Refresh (RFC 8656 §7.3): extend an allocation's lifetime, or delete it
//! with LIFETIME 0.

use stun_rs::attributes::turn::{LifeTime, RequestedAddressFamily};
use stun_rs::AddressFamily;

use super::{authed_allocation, grant_lifetime, requested_lifetime};
use crate::server::{Output, RelayBinder, Request, Server};
use crate::timer::TimerKey;

/// Handles a Refresh request.
pub(crate) fn handle<B: RelayBinder>(
    srv: &mut Server<B>,
    req: &Request<'_>,
    out: &mut Vec<Output<B::Handle>>,
) {
    let Some((auth, id)) = authed_allocation(srv, req, out) else {
        return;
    };
    let requested = requested_lifetime(req);
    let family = req
        .msg
        .get::<RequestedAddressFamily>()
        .and_then(|a| a.as_requested_address_family().ok())
        .map(|f| f.family());
    let Some(alloc) = srv.table.get_mut(id) else {
        return;
    };
    // A family that does not match the allocation's is a 443 (RFC 8656 §7.3).
    let alloc_family = if alloc.is_ipv6() {
        AddressFamily::IPv6
    } else {
        AddressFamily::IPv4
    };
    if family.is_some_and(|f| f != alloc_family) {
        srv.reply_error(req, 443, Some(&auth), Vec::new(), out);
        return;
    }
    if requested == Some(0) {
        srv.delete_allocation(id, out);
        srv.reply_ok(req, vec![LifeTime::from(0).into()], Some(&auth), out);
        return;
    }
    let lifetime = grant_lifetime(requested);
    alloc.expires = req.now + lifetime;
    let expires = alloc.expires;
    srv.timers.push(expires, TimerKey::Allocation(id));
    let secs = u32::try_from(lifetime.as_secs()).unwrap_or(u32::MAX);
    srv.reply_ok(req, vec![LifeTime::from(secs).into()], Some(&auth), out);
}
