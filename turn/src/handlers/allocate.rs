//! Allocate (RFC 8656 §7.2): authenticate, check quotas, pick a relay port
//! from the pool, bind it through the embedder's `RelayBinder`, and record
//! the allocation. Nothing is stored before authentication succeeds.
//!
//! Quotas, the port pool and reservations are shared by all shards
//! ([`Global`](crate::global::Global)); this is the one place (with
//! deletion) that takes their locks.

use std::net::{IpAddr, SocketAddr};

use stun_rs::attributes::stun::XorMappedAddress;
use stun_rs::attributes::turn::{
    AdditionalAddressFamily, AddressErrorCode, DontFragment, EvenPort, LifeTime,
    RequestedAddressFamily, RequestedTrasport, ReservationToken, XorRelayedAddress,
};
use stun_rs::attributes::StunAttribute;
use stun_rs::AddressFamily;

use super::{grant_lifetime, requested_lifetime};
use crate::allocation::{Allocation, Reservation, TokenBucket};
use crate::global::QuotaRefusal;
use crate::ports::MAX_BIND_ATTEMPTS;
use crate::server::{Authed, Output, RelayBinder, Request, Server};
use crate::timer::TimerKey;

/// How long a port reserved by EVEN-PORT(R) waits for its Allocate.
const RESERVATION_LIFETIME: std::time::Duration = std::time::Duration::from_secs(30);

/// IANA protocol number of UDP, the only relay transport we offer.
const UDP: u8 = 17;

/// Handles an Allocate request.
pub(crate) fn handle<B: RelayBinder>(
    srv: &mut Server<B>,
    req: &Request<'_>,
    out: &mut Vec<Output<B::Handle>>,
) {
    let Some(auth) = srv.authenticate(req, out) else {
        return;
    };
    if let Some(existing) = srv.table.by_tuple_mut(&req.tuple) {
        // A retransmission of the request that created it gets the same answer;
        // anything else on this 5-tuple is a mismatch.
        if existing.allocate_tid == *req.msg.transaction_id().as_bytes()
            && existing.username == auth.username
        {
            let relayed = existing.relayed;
            let remaining = existing.expires.saturating_duration_since(req.now);
            let secs = u32::try_from(remaining.as_secs()).unwrap_or(u32::MAX);
            success(srv, req, &auth, relayed, secs, Vec::new(), out);
        } else {
            srv.reply_error(req, 437, Some(&auth), Vec::new(), out);
        }
        return;
    }
    let msg = &req.msg;
    let transport = msg
        .get::<RequestedTrasport>()
        .and_then(|a| a.as_requested_trasport().ok())
        .map(|t| t.protocol().as_u8());
    match transport {
        None => return srv.reply_error(req, 400, Some(&auth), Vec::new(), out),
        Some(UDP) => {}
        Some(_) => return srv.reply_error(req, 442, Some(&auth), Vec::new(), out),
    }
    // DONT-FRAGMENT: Linux UDP sockets already send with DF set by default (path
    // MTU discovery), so the request is honoured without extra work.
    let _ = msg.get::<DontFragment>();
    let family = msg
        .get::<RequestedAddressFamily>()
        .and_then(|a| a.as_requested_address_family().ok())
        .map(|f| f.family());
    let additional = msg
        .get::<AdditionalAddressFamily>()
        .and_then(|a| a.as_additional_address_family().ok())
        .map(|f| f.family());
    let even = msg
        .get::<EvenPort>()
        .and_then(|a| a.as_even_port().ok())
        .map(|e| e.reserve());
    let token: Option<[u8; 8]> = msg
        .get::<ReservationToken>()
        .and_then(|a| a.as_reservation_token().ok())
        .and_then(|t| t.token().try_into().ok());
    // Illegal combinations (RFC 8656 §7.2 steps 4-6).
    if (token.is_some() && (even.is_some() || family.is_some() || additional.is_some()))
        || (family.is_some() && additional.is_some())
        || additional == Some(AddressFamily::IPv4)
    {
        return srv.reply_error(req, 400, Some(&auth), Vec::new(), out);
    }
    let client_ip = req.tuple.reflexive().ip();
    // Admitted here, released by `delete_allocation` or below if a later step fails.
    match srv.global.quotas.admit(&auth.username, client_ip) {
        Ok(()) => {}
        Err(QuotaRefusal::User) => {
            tracing::info!(user = auth.username, "allocation quota reached");
            return srv.reply_error(req, 486, Some(&auth), Vec::new(), out);
        }
        Err(QuotaRefusal::Ip) => {
            tracing::info!(client = %client_ip, "allocation quota per client IP reached");
            return srv.reply_error(req, 486, Some(&auth), Vec::new(), out);
        }
        Err(QuotaRefusal::Total) => {
            tracing::warn!("total allocation limit reached");
            return srv.reply_error(req, 508, Some(&auth), Vec::new(), out);
        }
    }
    let refuse = |srv: &mut Server<B>, code, out: &mut Vec<Output<B::Handle>>| {
        srv.global.quotas.release(&auth.username, client_ip);
        srv.reply_error(req, code, Some(&auth), Vec::new(), out);
    };
    let mut extra = Vec::new();
    let (relay, bound_addr, relayed) = if let Some(token) = token {
        // An unknown or lapsed token is "insufficient capacity" (§7.2 step 5).
        let Some(r) = srv.global.reservations().remove(&token) else {
            return refuse(srv, 508, out);
        };
        (r.relay, r.bound, r.relayed)
    } else {
        let v6 = family == Some(AddressFamily::IPv6);
        let Some((bind_ip, public_ip)) = relay_ips(srv, req, v6) else {
            return refuse(srv, 440, out);
        };
        let reserve = even == Some(true);
        let Some((relay, bound, reserved)) = bind_relay(srv, bind_ip, even.is_some(), reserve)
        else {
            tracing::warn!("no relay port available");
            return refuse(srv, 508, out);
        };
        if let Some((next, next_bound)) = reserved {
            let token: [u8; 8] = rand::random();
            let expires = req.now + RESERVATION_LIFETIME;
            srv.global.reservations().insert(
                token,
                Reservation {
                    relay: next,
                    bound: next_bound,
                    relayed: SocketAddr::new(public_ip, next_bound.port()),
                    expires,
                },
            );
            srv.timers.push(expires, TimerKey::Reservation(token));
            extra.push(ReservationToken::from(token).into());
        }
        (relay, bound, SocketAddr::new(public_ip, bound.port()))
    };
    let lifetime = grant_lifetime(requested_lifetime(req));
    let id = srv.table.next_id();
    let expires = req.now + lifetime;
    let bucket = (srv.cfg.max_bytes_per_sec > 0)
        .then(|| TokenBucket::new(srv.cfg.max_bytes_per_sec, req.now));
    srv.table.insert(Allocation {
        id,
        tuple: req.tuple,
        username: auth.username.clone(),
        relay: relay.clone(),
        relayed,
        bound: bound_addr,
        expires,
        permissions: Default::default(),
        channels: Default::default(),
        peer_channels: Default::default(),
        bucket,
        allocate_tid: *msg.transaction_id().as_bytes(),
    });
    srv.timers.push(expires, TimerKey::Allocation(id));
    out.push(Output::RelayOpened {
        relay,
        bound: bound_addr,
    });
    tracing::info!(user = auth.username, client = %req.tuple.client, %relayed, "allocation created");
    if additional == Some(AddressFamily::IPv6) {
        // Dual-stack allocations are not offered: report the IPv6 half as
        // unsupported and keep the IPv4 one (RFC 8656 §7.2, ADDRESS-ERROR-CODE).
        if let Ok(ec) = stun_rs::ErrorCode::new(440, "Address Family not Supported") {
            extra.push(AddressErrorCode::new(AddressFamily::IPv6, ec).into());
        }
    }
    let secs = u32::try_from(lifetime.as_secs()).unwrap_or(u32::MAX);
    success(srv, req, &auth, relayed, secs, extra, out);
}

/// Binds a relay socket on a free port (even if asked). With `reserve`, also
/// binds the next port and returns it for a reservation; pairs where either
/// half is taken are skipped.
#[allow(clippy::type_complexity)]
fn bind_relay<B: RelayBinder>(
    srv: &mut Server<B>,
    ip: IpAddr,
    even: bool,
    reserve: bool,
) -> Option<(B::Handle, SocketAddr, Option<(B::Handle, SocketAddr)>)> {
    let v6 = ip.is_ipv6();
    let candidates = srv.global.ports().candidates(v6, even, MAX_BIND_ATTEMPTS);
    for port in candidates {
        let next = port.checked_add(1);
        if reserve && !next.is_some_and(|n| srv.global.ports().is_free(v6, n)) {
            continue;
        }
        let (handle, bound) = match srv.binder.bind(SocketAddr::new(ip, port)) {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!(port, error = %e, "relay port unavailable");
                continue;
            }
        };
        let reserved = match next.filter(|_| reserve) {
            Some(n) => match srv.binder.bind(SocketAddr::new(ip, n)) {
                Ok(pair) => Some(pair),
                // the first socket is dropped (closed) with `handle`
                Err(_) => continue,
            },
            None => None,
        };
        // Another shard may have bound the same candidate in the meantime:
        // the kernel refused one of us then, so whoever got here owns it.
        let mut ports = srv.global.ports();
        ports.take(v6, port);
        if let Some((_, b)) = &reserved {
            ports.take(v6, b.port());
        }
        return Some((handle, bound, reserved));
    }
    None
}

/// (bind address, advertised address) for a relay of the given family, or
/// `None` if that family is not configured.
fn relay_ips<B: RelayBinder>(
    srv: &Server<B>,
    req: &Request<'_>,
    v6: bool,
) -> Option<(IpAddr, IpAddr)> {
    let cfg = &srv.cfg;
    let (bind, external) = if v6 {
        (cfg.relay_ipv6?, cfg.external_ipv6)
    } else {
        (cfg.relay_ip, cfg.external_ip)
    };
    if bind.is_ipv6() != v6 {
        return None;
    }
    let server_ip = req.tuple.server.ip();
    let public = external
        .or((!bind.is_unspecified()).then_some(bind))
        .or((!server_ip.is_unspecified() && server_ip.is_ipv6() == v6).then_some(server_ip))?;
    Some((bind, public))
}

fn success<B: RelayBinder>(
    srv: &Server<B>,
    req: &Request<'_>,
    auth: &Authed,
    relayed: SocketAddr,
    lifetime_secs: u32,
    extra: Vec<StunAttribute>,
    out: &mut Vec<Output<B::Handle>>,
) {
    let mut attrs: Vec<StunAttribute> = vec![
        XorRelayedAddress::from(relayed).into(),
        LifeTime::from(lifetime_secs).into(),
        XorMappedAddress::from(req.tuple.reflexive()).into(),
    ];
    attrs.extend(extra);
    srv.reply_ok(req, attrs, Some(auth), out);
}
