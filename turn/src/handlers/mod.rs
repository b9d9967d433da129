//! One handler per TURN/STUN method, plus the checks they share.
//!
//! Handlers take the core (`Server`) and a decoded request and queue outputs;
//! they never see sockets.

pub(crate) mod allocate;
pub(crate) mod binding;
pub(crate) mod channel_bind;
pub(crate) mod permission;
pub(crate) mod refresh;
pub(crate) mod send;

use std::net::SocketAddr;
use std::time::Duration;

use stun_rs::attributes::turn::{LifeTime, XorPeerAddress};

use crate::config::{DEFAULT_LIFETIME, MAX_LIFETIME};
use crate::server::{Authed, Output, RelayBinder, Request, Server};

/// Authenticates the request and finds the allocation of its 5-tuple.
/// Queues 401/438 (auth), 437 (no allocation) or 441 (another user's
/// allocation) and returns `None` on failure.
pub(crate) fn authed_allocation<B: RelayBinder>(
    srv: &mut Server<B>,
    req: &Request<'_>,
    out: &mut Vec<Output<B::Handle>>,
) -> Option<(Authed, u64)> {
    let auth = srv.authenticate(req, out)?;
    let found = srv
        .table
        .by_tuple_mut(&req.tuple)
        .map(|a| (a.id, a.username == auth.username));
    match found {
        None => {
            srv.reply_error(req, 437, Some(&auth), Vec::new(), out);
            None
        }
        Some((_, false)) => {
            srv.reply_error(req, 441, Some(&auth), Vec::new(), out);
            None
        }
        Some((id, true)) => Some((auth, id)),
    }
}

/// All XOR-PEER-ADDRESS values of a request.
pub(crate) fn peer_addresses(req: &Request<'_>) -> Vec<SocketAddr> {
    req.msg
        .attributes()
        .iter()
        .filter_map(|a| a.as_xor_peer_address().ok())
        .map(|p| *p.socket_address())
        .collect()
}

/// The first XOR-PEER-ADDRESS.
pub(crate) fn peer_address(req: &Request<'_>) -> Option<SocketAddr> {
    req.msg
        .get::<XorPeerAddress>()
        .and_then(|a| a.as_xor_peer_address().ok())
        .map(|p| *p.socket_address())
}

/// The LIFETIME attribute, if any.
pub(crate) fn requested_lifetime(req: &Request<'_>) -> Option<u32> {
    req.msg
        .get::<LifeTime>()
        .and_then(|a| a.as_life_time().ok())
        .map(|l| *l.as_ref())
}

/// Lifetime to grant (RFC 8656 §7.2 step 7): the requested value capped at the
/// maximum, but never below the default.
pub(crate) fn grant_lifetime(requested: Option<u32>) -> Duration {
    match requested {
        None => DEFAULT_LIFETIME,
        Some(secs) => Duration::from_secs(u64::from(secs))
            .min(MAX_LIFETIME)
            .max(DEFAULT_LIFETIME),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetime_is_clamped() {
        assert_eq!(grant_lifetime(None), Duration::from_secs(600));
        assert_eq!(grant_lifetime(Some(30)), Duration::from_secs(600));
        assert_eq!(grant_lifetime(Some(1200)), Duration::from_secs(1200));
        assert_eq!(grant_lifetime(Some(u32::MAX)), Duration::from_secs(3600));
    }
}
