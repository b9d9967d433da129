//! Authentication and every error path of the request handlers.

use std::time::Duration;

use stun_rs::attributes::stun::{
    MessageIntegritySha256, PasswordAlgorithm, PasswordAlgorithms, Realm, UnknownAttributes,
};
use stun_rs::attributes::turn::{
    ChannelNumber, LifeTime, RequestedAddressFamily, RequestedTrasport, ReservationToken,
    XorPeerAddress,
};
use stun_rs::attributes::StunAttribute;
use stun_rs::{methods, AddressFamily, AlgorithmId, MessageClass};

use super::client::*;
use crate::auth::ephemeral_credentials;
use crate::server::Output;

fn peer(s: &str) -> StunAttribute {
    XorPeerAddress::from(s.parse::<std::net::SocketAddr>().expect("addr")).into()
}

#[test]
fn unauthenticated_allocate_gets_401_with_realm_nonce_and_no_state() {
    let mut h = Harness::new(config());
    let req = build(
        methods::ALLOCATE,
        MessageClass::Request,
        vec![udp_transport()],
        None,
    );
    let resp = h.request(udp(1), &req, h.t0);
    assert_eq!(resp.class(), MessageClass::ErrorResponse);
    assert_eq!(error_code(&resp), Some(401));
    let realm = resp
        .get::<Realm>()
        .and_then(|a| a.as_realm().ok())
        .expect("realm");
    assert_eq!(realm.as_str(), REALM);
    assert!(nonce_of(&resp).starts_with("obMatJos2"));
    assert!(resp.get::<PasswordAlgorithms>().is_some());
    assert_eq!(h.srv.allocation_count(), 0);
    assert_eq!(
        h.srv.timers.len(),
        0,
        "nothing scheduled before authentication"
    );
}

#[test]
fn allocate_succeeds_with_default_and_capped_lifetimes() {
    let mut h = Harness::new(config());
    let resp = h.authed(
        udp(1),
        methods::ALLOCATE,
        vec![udp_transport()],
        USER,
        PASS,
        h.t0,
    );
    assert_eq!(resp.class(), MessageClass::SuccessResponse);
    assert_eq!(lifetime_of(&resp), Some(600));
    let relayed = relayed_of(&resp);
    assert_eq!(relayed.ip().to_string(), "192.0.2.10");
    assert!((50000..=50999).contains(&relayed.port()));
    let resp = h.authed(
        udp(2),
        methods::ALLOCATE,
        vec![udp_transport(), LifeTime::from(100_000).into()],
        USER,
        PASS,
        h.t0,
    );
    assert_eq!(lifetime_of(&resp), Some(3600));
    assert_eq!(h.srv.allocation_count(), 2);
}

#[test]
fn wrong_password_is_401_and_unknown_user_is_401() {
    let mut h = Harness::new(config());
    let resp = h.authed(
        udp(1),
        methods::ALLOCATE,
        vec![udp_transport()],
        USER,
        "nope",
        h.t0,
    );
    assert_eq!(error_code(&resp), Some(401));
    let resp = h.authed(
        udp(1),
        methods::ALLOCATE,
        vec![udp_transport()],
        "mallory",
        "x",
        h.t0,
    );
    assert_eq!(error_code(&resp), Some(401));
    assert_eq!(h.srv.allocation_count(), 0);
}

#[test]
fn missing_username_realm_or_nonce_is_400() {
    let mut h = Harness::new(config());
    let nonce = h.nonce(udp(1), h.t0);
    let mut c = Creds::new(USER, PASS, &nonce);
    c.realm = "other.realm".into();
    let req = build(
        methods::ALLOCATE,
        MessageClass::Request,
        vec![udp_transport()],
        Some(&c),
    );
    assert_eq!(
        error_code(&h.request(udp(1), &req, h.t0)),
        Some(401),
        "foreign realm"
    );
    // integrity without USERNAME/REALM/NONCE
    let key = crate::auth::long_term_key(USER, REALM, PASS, AlgorithmId::MD5).expect("key");
    let req = build(
        methods::ALLOCATE,
        MessageClass::Request,
        vec![
            udp_transport(),
            stun_rs::attributes::stun::MessageIntegrity::new(key).into(),
        ],
        None,
    );
    assert_eq!(error_code(&h.request(udp(1), &req, h.t0)), Some(400));
}

#[test]
fn stale_nonce_is_438_and_forged_nonce_is_401() {
    let mut h = Harness::new(config());
    let nonce = h.nonce(udp(1), h.t0);
    let req = build(
        methods::ALLOCATE,
        MessageClass::Request,
        vec![udp_transport()],
        Some(&Creds::new(USER, PASS, &nonce)),
    );
    let resp = h.request(udp(1), &req, h.at(601));
    assert_eq!(error_code(&resp), Some(438));
    assert_ne!(nonce_of(&resp), nonce, "a fresh nonce comes with 438");
    // the same nonce from another IP address is not valid
    let mut elsewhere = udp(2);
    elsewhere.client.set_ip("203.0.113.9".parse().expect("ip"));
    let resp = h.request(elsewhere, &req, h.t0);
    assert_eq!(error_code(&resp), Some(401));
    let forged = format!(
        "{}{:016x}{}",
        crate::nonce::NONCE_PREFIX,
        u64::MAX,
        "0".repeat(32)
    );
    let req = build(
        methods::ALLOCATE,
        MessageClass::Request,
        vec![udp_transport()],
        Some(&Creds::new(USER, PASS, &forged)),
    );
    assert_eq!(error_code(&h.request(udp(1), &req, h.t0)), Some(401));
    assert_eq!(h.srv.allocation_count(), 0);
}

#[test]
fn replayed_request_after_tampering_fails_integrity() {
    let mut h = Harness::new(config());
    let nonce = h.nonce(udp(1), h.t0);
    let mut req = build(
        methods::ALLOCATE,
        MessageClass::Request,
        vec![udp_transport(), LifeTime::from(600).into()],
        Some(&Creds::new(USER, PASS, &nonce)),
    );
    // change the LIFETIME value, keep the old HMAC
    let pos = req
        .windows(4)
        .position(|w| w == [0x00, 0x0d, 0x00, 0x04])
        .expect("lifetime attr");
    req[pos + 7] ^= 0xff;
    assert_eq!(error_code(&h.request(udp(1), &req, h.t0)), Some(401));
}

#[test]
fn ephemeral_credentials_accepted_until_expiry() {
    let mut h = Harness::new(config());
    let (user, pass) = ephemeral_credentials(
        SECRET.as_bytes(),
        "participant-1",
        Duration::from_secs(300),
        wall(&h),
    );
    let resp = h.authed(
        udp(1),
        methods::ALLOCATE,
        vec![udp_transport()],
        &user,
        &pass,
        h.t0,
    );
    assert_eq!(resp.class(), MessageClass::SuccessResponse);
    // after expiry, a new allocation is refused
    let resp = h.authed(
        udp(2),
        methods::ALLOCATE,
        vec![udp_transport()],
        &user,
        &pass,
        h.at(301),
    );
    assert_eq!(error_code(&resp), Some(401));
    // a password made with another secret is refused
    let (user2, pass2) = ephemeral_credentials(b"other", "p", Duration::from_secs(300), wall(&h));
    let resp = h.authed(
        udp(3),
        methods::ALLOCATE,
        vec![udp_transport()],
        &user2,
        &pass2,
        h.t0,
    );
    assert_eq!(error_code(&resp), Some(401));
}

#[test]
fn sha256_password_algorithm_and_message_integrity_sha256() {
    let mut h = Harness::new(config());
    let nonce = h.nonce(udp(1), h.t0);
    let mut c = Creds::new(USER, PASS, &nonce);
    c.alg = AlgorithmId::SHA256;
    c.sha256 = true;
    let offered = PasswordAlgorithms::from(vec![
        PasswordAlgorithm::new(AlgorithmId::MD5.into()),
        PasswordAlgorithm::new(AlgorithmId::SHA256.into()),
    ]);
    let req = build(
        methods::ALLOCATE,
        MessageClass::Request,
        vec![
            udp_transport(),
            offered.clone().into(),
            PasswordAlgorithm::new(AlgorithmId::SHA256.into()).into(),
        ],
        Some(&c),
    );
    let resp = h.request(udp(1), &req, h.t0);
    assert_eq!(
        resp.class(),
        MessageClass::SuccessResponse,
        "{:?}",
        error_code(&resp)
    );
    assert!(
        resp.get::<MessageIntegritySha256>().is_some(),
        "response mirrors SHA-256"
    );
    // bid-down: the echoed list differs from what we offered
    let nonce = h.nonce(udp(2), h.t0);
    let mut c = Creds::new(USER, PASS, &nonce);
    c.alg = AlgorithmId::SHA256;
    let req = build(
        methods::ALLOCATE,
        MessageClass::Request,
        vec![
            udp_transport(),
            PasswordAlgorithms::from(vec![PasswordAlgorithm::new(AlgorithmId::SHA256.into())])
                .into(),
            PasswordAlgorithm::new(AlgorithmId::SHA256.into()).into(),
        ],
        Some(&c),
    );
    assert_eq!(error_code(&h.request(udp(2), &req, h.t0)), Some(400));
}

#[test]
fn allocate_requires_udp_transport() {
    let mut h = Harness::new(config());
    let resp = h.authed(udp(1), methods::ALLOCATE, vec![], USER, PASS, h.t0);
    assert_eq!(error_code(&resp), Some(400), "no REQUESTED-TRANSPORT");
    // stun-rs only names UDP, so make a TCP (6) REQUESTED-TRANSPORT by decoding
    // patched bytes, then sign a request carrying it
    let mut raw = build(
        methods::ALLOCATE,
        MessageClass::Request,
        vec![udp_transport()],
        None,
    );
    let pos = raw
        .windows(4)
        .position(|w| w == [0x00, 0x19, 0x00, 0x04])
        .expect("requested-transport");
    raw[pos + 4] = 6;
    let tcp_transport = decode(&raw)
        .get::<RequestedTrasport>()
        .cloned()
        .expect("attribute");
    let resp = h.authed(
        udp(1),
        methods::ALLOCATE,
        vec![tcp_transport],
        USER,
        PASS,
        h.t0,
    );
    assert_eq!(error_code(&resp), Some(442));
    assert_eq!(h.srv.allocation_count(), 0);
}

#[test]
fn unknown_comprehension_required_attribute_is_420() {
    let mut h = Harness::new(config());
    let mut raw = build(methods::BINDING, MessageClass::Request, vec![], None);
    // append attribute 0x7fff (comprehension-required, unknown) with 4 bytes
    raw.extend_from_slice(&[0x7f, 0xff, 0x00, 0x04, 1, 2, 3, 4]);
    let len = u16::from_be_bytes([raw[2], raw[3]]) + 8;
    raw[2..4].copy_from_slice(&len.to_be_bytes());
    let resp = h.request(udp(1), &raw, h.t0);
    assert_eq!(error_code(&resp), Some(420));
    let ua = resp
        .get::<UnknownAttributes>()
        .and_then(|a| a.as_unknown_attributes().ok())
        .expect("UNKNOWN-ATTRIBUTES");
    assert_eq!(ua.attributes(), &[0x7fff]);
    // comprehension-optional unknowns are ignored
    let mut raw = build(methods::BINDING, MessageClass::Request, vec![], None);
    raw.extend_from_slice(&[0xff, 0xf0, 0x00, 0x04, 1, 2, 3, 4]);
    let len = u16::from_be_bytes([raw[2], raw[3]]) + 8;
    raw[2..4].copy_from_slice(&len.to_be_bytes());
    assert_eq!(
        h.request(udp(1), &raw, h.t0).class(),
        MessageClass::SuccessResponse
    );
}

#[test]
fn second_allocate_is_437_but_retransmission_succeeds() {
    let mut h = Harness::new(config());
    let nonce = h.nonce(udp(1), h.t0);
    let req = build(
        methods::ALLOCATE,
        MessageClass::Request,
        vec![udp_transport()],
        Some(&Creds::new(USER, PASS, &nonce)),
    );
    let first = h.request(udp(1), &req, h.t0);
    assert_eq!(first.class(), MessageClass::SuccessResponse);
    let again = h.request(udp(1), &req, h.at(1));
    assert_eq!(again.class(), MessageClass::SuccessResponse);
    assert_eq!(relayed_of(&again), relayed_of(&first));
    let resp = h.authed(
        udp(1),
        methods::ALLOCATE,
        vec![udp_transport()],
        USER,
        PASS,
        h.at(2),
    );
    assert_eq!(error_code(&resp), Some(437));
    assert_eq!(h.srv.allocation_count(), 1);
}

#[test]
fn requests_without_allocation_are_437() {
    let mut h = Harness::new(config());
    for (method, attrs) in [
        (methods::REFRESH, vec![]),
        (methods::CREATE_PERMMISSION, vec![peer("8.8.8.8:1")]),
        (
            methods::CHANNEL_BIND,
            vec![ChannelNumber::new(0x4000).into(), peer("8.8.8.8:1")],
        ),
    ] {
        let resp = h.authed(udp(1), method, attrs, USER, PASS, h.t0);
        assert_eq!(error_code(&resp), Some(437), "{method:?}");
    }
}

#[test]
fn other_user_on_same_five_tuple_is_441() {
    let mut h = Harness::new(config());
    h.allocate(udp(1), h.t0);
    let resp = h.authed(udp(1), methods::REFRESH, vec![], "bob", "builder", h.t0);
    assert_eq!(error_code(&resp), Some(441));
}

#[test]
fn refresh_extends_and_lifetime_zero_deletes() {
    let mut h = Harness::new(config());
    h.allocate(udp(1), h.t0);
    let resp = h.authed(
        udp(1),
        methods::REFRESH,
        vec![LifeTime::from(1200).into()],
        USER,
        PASS,
        h.at(10),
    );
    assert_eq!(lifetime_of(&resp), Some(1200));
    let mut out = Vec::new();
    h.srv.handle_timeout(h.at(700), &mut out);
    assert_eq!(
        h.srv.allocation_count(),
        1,
        "refreshed allocation outlives the first deadline"
    );
    let resp = h.authed(
        udp(1),
        methods::REFRESH,
        vec![LifeTime::from(0).into()],
        USER,
        PASS,
        h.at(20),
    );
    assert_eq!(resp.class(), MessageClass::SuccessResponse);
    assert_eq!(lifetime_of(&resp), Some(0));
    assert_eq!(h.srv.allocation_count(), 0);
}

#[test]
fn refresh_with_other_family_is_443() {
    let mut h = Harness::new(config());
    h.allocate(udp(1), h.t0);
    let resp = h.authed(
        udp(1),
        methods::REFRESH,
        vec![RequestedAddressFamily::new(AddressFamily::IPv6).into()],
        USER,
        PASS,
        h.t0,
    );
    assert_eq!(error_code(&resp), Some(443));
}

#[test]
fn per_user_quota_is_486_and_total_limit_is_508() {
    let mut cfg = config();
    cfg.max_allocations_per_user = 2;
    cfg.max_allocations = 3;
    let mut h = Harness::new(cfg);
    h.allocate(udp(1), h.t0);
    h.allocate(udp(2), h.t0);
    let resp = h.authed(
        udp(3),
        methods::ALLOCATE,
        vec![udp_transport()],
        USER,
        PASS,
        h.t0,
    );
    assert_eq!(error_code(&resp), Some(486));
    let resp = h.authed(
        udp(4),
        methods::ALLOCATE,
        vec![udp_transport()],
        "bob",
        "builder",
        h.t0,
    );
    assert_eq!(resp.class(), MessageClass::SuccessResponse);
    let (user, pass) =
        ephemeral_credentials(SECRET.as_bytes(), "x", Duration::from_secs(60), wall(&h));
    let resp = h.authed(
        udp(5),
        methods::ALLOCATE,
        vec![udp_transport()],
        &user,
        &pass,
        h.t0,
    );
    assert_eq!(error_code(&resp), Some(508));
}

#[test]
fn allocations_per_client_ip_are_limited_with_486_and_counted() {
    use crate::allocation::{FiveTuple, Transport};
    let mut cfg = config();
    cfg.max_allocations_per_ip = 2;
    let mut h = Harness::new(cfg);
    let alloc = |h: &mut Harness, tuple: FiveTuple| {
        h.authed(
            tuple,
            methods::ALLOCATE,
            vec![udp_transport()],
            USER,
            PASS,
            h.t0,
        )
    };
    h.allocate(udp(1), h.t0);
    h.allocate(tcp(2), h.t0);
    // a third from the same IP, whatever its port or transport, is refused
    assert_eq!(error_code(&alloc(&mut h, udp(3))), Some(486));
    // an IPv4 client of a dual-stack listener is the same IPv4 address
    let mapped = FiveTuple {
        transport: Transport::Udp,
        client: "[::ffff:198.51.100.7]:4000".parse().expect("addr"),
        server: "[::]:3478".parse().expect("addr"),
    };
    assert_eq!(error_code(&alloc(&mut h, mapped)), Some(486));
    assert_eq!(h.srv.global().quotas().refused_per_ip(), 2);
    // another IP has its own quota
    let other = FiveTuple {
        client: "198.51.100.8:1".parse().expect("addr"),
        ..udp(1)
    };
    assert_eq!(alloc(&mut h, other).class(), MessageClass::SuccessResponse);
    // freeing one (Refresh with lifetime 0) makes room again
    let lifetime0: StunAttribute = LifeTime::from(0).into();
    let resp = h.authed(udp(1), methods::REFRESH, vec![lifetime0], USER, PASS, h.t0);
    assert_eq!(resp.class(), MessageClass::SuccessResponse);
    assert_eq!(alloc(&mut h, udp(3)).class(), MessageClass::SuccessResponse);
    assert_eq!(h.srv.global().quotas().allocations(), 3);
}

/// Shards (one per worker thread) keep their own allocations but share quotas,
/// reservations and the nonce key: an RTCP half may be allocated through another worker
/// than its RTP half, and a client's nonce may come from either.
#[test]
fn shards_share_quotas_reservations_and_nonces() {
    let mut cfg = config();
    cfg.max_allocations_per_ip = 3;
    let mut a = Harness::new(cfg);
    let mut b = a.sibling();
    let even: StunAttribute = stun_rs::attributes::turn::EvenPort::new(true).into();
    let resp = a.authed(
        udp(1),
        methods::ALLOCATE,
        vec![udp_transport(), even],
        USER,
        PASS,
        a.t0,
    );
    let rtp = relayed_of(&resp);
    let token: StunAttribute = resp
        .get::<ReservationToken>()
        .cloned()
        .expect("RESERVATION-TOKEN");
    // the reserved port, taken up through the other shard
    let resp = b.authed(
        udp(2),
        methods::ALLOCATE,
        vec![udp_transport(), token],
        USER,
        PASS,
        b.t0,
    );
    assert_eq!(
        resp.class(),
        MessageClass::SuccessResponse,
        "{:?}",
        error_code(&resp)
    );
    assert_eq!(relayed_of(&resp).port(), rtp.port() + 1);
    assert_eq!(b.srv.allocation_count(), 1);
    // a nonce issued by one shard is valid on the other
    let nonce = a.nonce(udp(3), a.t0);
    let req = build(
        methods::ALLOCATE,
        MessageClass::Request,
        vec![udp_transport()],
        Some(&Creds::new(USER, PASS, &nonce)),
    );
    let resp = b.request(udp(3), &req, b.t0);
    assert_eq!(
        resp.class(),
        MessageClass::SuccessResponse,
        "{:?}",
        error_code(&resp)
    );
    // three allocations from one IP over two shards: the fourth is refused on either
    let resp = a.authed(
        udp(4),
        methods::ALLOCATE,
        vec![udp_transport()],
        USER,
        PASS,
        a.t0,
    );
    assert_eq!(error_code(&resp), Some(486));
    let resp = b.authed(
        udp(5),
        methods::ALLOCATE,
        vec![udp_transport()],
        USER,
        PASS,
        b.t0,
    );
    assert_eq!(error_code(&resp), Some(486));
    assert_eq!(a.srv.global().quotas().allocations(), 3);
}

#[test]
fn port_exhaustion_is_508_not_a_crash() {
    let mut cfg = config();
    cfg.port_range = 50000..=50001;
    let mut h = Harness::new(cfg);
    h.srv.binder.busy.insert(50001);
    h.allocate(udp(1), h.t0);
    let resp = h.authed(
        udp(2),
        methods::ALLOCATE,
        vec![udp_transport()],
        USER,
        PASS,
        h.t0,
    );
    assert_eq!(error_code(&resp), Some(508));
    // deleting frees the port again
    let resp = h.authed(
        udp(1),
        methods::REFRESH,
        vec![LifeTime::from(0).into()],
        USER,
        PASS,
        h.t0,
    );
    assert_eq!(resp.class(), MessageClass::SuccessResponse);
    h.allocate(udp(2), h.t0);
}

#[test]
fn ipv6_relay_needs_configuration_440() {
    let mut h = Harness::new(config());
    let v6: StunAttribute = RequestedAddressFamily::new(AddressFamily::IPv6).into();
    let resp = h.authed(
        udp(1),
        methods::ALLOCATE,
        vec![udp_transport(), v6.clone()],
        USER,
        PASS,
        h.t0,
    );
    assert_eq!(error_code(&resp), Some(440));
    let mut cfg = config();
    cfg.relay_ipv6 = Some("2001:db8::10".parse().expect("ip"));
    let mut h = Harness::new(cfg);
    let resp = h.authed(
        udp(1),
        methods::ALLOCATE,
        vec![udp_transport(), v6],
        USER,
        PASS,
        h.t0,
    );
    assert_eq!(resp.class(), MessageClass::SuccessResponse);
    assert_eq!(relayed_of(&resp).ip().to_string(), "2001:db8::10");
    // IPv4-mapped loopback on an IPv6 relay is still loopback: 403
    let resp = h.authed(
        udp(1),
        methods::CREATE_PERMMISSION,
        vec![peer("[::ffff:127.0.0.1]:9")],
        USER,
        PASS,
        h.t0,
    );
    assert_eq!(error_code(&resp), Some(403));
    let resp = h.authed(
        udp(1),
        methods::CREATE_PERMMISSION,
        vec![peer("[::127.0.0.1]:9")],
        USER,
        PASS,
        h.t0,
    );
    assert_eq!(error_code(&resp), Some(403));
    let resp = h.authed(
        udp(1),
        methods::CREATE_PERMMISSION,
        vec![peer("[::]:9")],
        USER,
        PASS,
        h.t0,
    );
    assert_eq!(error_code(&resp), Some(403));
    let resp = h.authed(
        udp(1),
        methods::CREATE_PERMMISSION,
        vec![peer("[2001:db8:1::5]:9")],
        USER,
        PASS,
        h.t0,
    );
    assert_eq!(resp.class(), MessageClass::SuccessResponse);
}

#[test]
fn even_port_reservation_and_token() {
    let mut h = Harness::new(config());
    let unknown: StunAttribute = ReservationToken::from([1u8; 8]).into();
    let resp = h.authed(
        udp(1),
        methods::ALLOCATE,
        vec![udp_transport(), unknown],
        USER,
        PASS,
        h.t0,
    );
    assert_eq!(error_code(&resp), Some(508), "unknown token");
    let even = || -> StunAttribute { stun_rs::attributes::turn::EvenPort::new(true).into() };
    let resp = h.authed(
        udp(1),
        methods::ALLOCATE,
        vec![udp_transport(), even()],
        USER,
        PASS,
        h.t0,
    );
    assert_eq!(resp.class(), MessageClass::SuccessResponse);
    let rtp = relayed_of(&resp);
    assert_eq!(rtp.port() % 2, 0, "EVEN-PORT gives an even port");
    let token = resp
        .get::<ReservationToken>()
        .cloned()
        .expect("RESERVATION-TOKEN with the R bit");
    let resp = h.authed(
        udp(2),
        methods::ALLOCATE,
        vec![udp_transport(), token.clone()],
        USER,
        PASS,
        h.t0,
    );
    assert_eq!(resp.class(), MessageClass::SuccessResponse);
    assert_eq!(
        relayed_of(&resp).port(),
        rtp.port() + 1,
        "the reserved odd port"
    );
    let resp = h.authed(
        udp(3),
        methods::ALLOCATE,
        vec![udp_transport(), token],
        USER,
        PASS,
        h.t0,
    );
    assert_eq!(error_code(&resp), Some(508), "a token is single-use");
    // an unused reservation lapses after 30 s and frees its port
    let resp = h.authed(
        udp(4),
        methods::ALLOCATE,
        vec![udp_transport(), even()],
        USER,
        PASS,
        h.t0,
    );
    let reserved_port = relayed_of(&resp).port() + 1;
    assert!(!h.srv.global.ports().is_free(false, reserved_port));
    let mut out = Vec::new();
    h.srv.handle_timeout(h.at(31), &mut out);
    assert!(h.srv.global.ports().is_free(false, reserved_port));
    assert!(h.srv.global.reservations().is_empty());
}

#[test]
fn default_config_refuses_loopback_peer_with_403() {
    let mut h = Harness::new(config());
    h.allocate(udp(1), h.t0);
    for p in [
        "127.0.0.1:5000",
        "0.0.0.0:5000",
        "10.0.0.1:5000",
        "169.254.169.254:80",
    ] {
        let resp = h.authed(
            udp(1),
            methods::CREATE_PERMMISSION,
            vec![peer(p)],
            USER,
            PASS,
            h.t0,
        );
        assert_eq!(error_code(&resp), Some(403), "{p}");
        let resp = h.authed(
            udp(1),
            methods::CHANNEL_BIND,
            vec![ChannelNumber::new(0x4000).into(), peer(p)],
            USER,
            PASS,
            h.t0,
        );
        assert_eq!(error_code(&resp), Some(403), "{p}");
    }
    // one bad address fails the whole request, installing nothing
    let resp = h.authed(
        udp(1),
        methods::CREATE_PERMMISSION,
        vec![peer("8.8.8.8:1"), peer("127.0.0.1:1")],
        USER,
        PASS,
        h.t0,
    );
    assert_eq!(error_code(&resp), Some(403));
    let mut out: Vec<Output<_>> = Vec::new();
    h.srv.handle_peer(
        "192.0.2.10:0".parse().expect("a"),
        "8.8.8.8:1".parse().expect("a"),
        b"x",
        h.t0,
        &mut out,
    );
    assert!(out.is_empty());
}

#[test]
fn create_permission_and_channel_bind_validation() {
    let mut h = Harness::new(config());
    h.allocate(udp(1), h.t0);
    let resp = h.authed(
        udp(1),
        methods::CREATE_PERMMISSION,
        vec![],
        USER,
        PASS,
        h.t0,
    );
    assert_eq!(error_code(&resp), Some(400), "no XOR-PEER-ADDRESS");
    let resp = h.authed(
        udp(1),
        methods::CREATE_PERMMISSION,
        vec![peer("[2001:db8::1]:1")],
        USER,
        PASS,
        h.t0,
    );
    assert_eq!(error_code(&resp), Some(443), "IPv6 peer on IPv4 relay");
    let bind =
        |n: u16, p: &str| -> Vec<StunAttribute> { vec![ChannelNumber::new(n).into(), peer(p)] };
    for (n, why) in [(0x3FFF, "below range"), (0x8000, "above range")] {
        let resp = h.authed(
            udp(1),
            methods::CHANNEL_BIND,
            bind(n, "8.8.8.8:1"),
            USER,
            PASS,
            h.t0,
        );
        assert_eq!(error_code(&resp), Some(400), "{why}");
    }
    let resp = h.authed(
        udp(1),
        methods::CHANNEL_BIND,
        vec![peer("8.8.8.8:1")],
        USER,
        PASS,
        h.t0,
    );
    assert_eq!(error_code(&resp), Some(400), "no CHANNEL-NUMBER");
    let resp = h.authed(
        udp(1),
        methods::CHANNEL_BIND,
        bind(0x4000, "8.8.8.8:1"),
        USER,
        PASS,
        h.t0,
    );
    assert_eq!(resp.class(), MessageClass::SuccessResponse);
    let resp = h.authed(
        udp(1),
        methods::CHANNEL_BIND,
        bind(0x4000, "8.8.8.8:1"),
        USER,
        PASS,
        h.t0,
    );
    assert_eq!(
        resp.class(),
        MessageClass::SuccessResponse,
        "refresh of the same binding"
    );
    let resp = h.authed(
        udp(1),
        methods::CHANNEL_BIND,
        bind(0x4000, "8.8.4.4:1"),
        USER,
        PASS,
        h.t0,
    );
    assert_eq!(
        error_code(&resp),
        Some(400),
        "channel bound to another peer"
    );
    let resp = h.authed(
        udp(1),
        methods::CHANNEL_BIND,
        bind(0x4001, "8.8.8.8:1"),
        USER,
        PASS,
        h.t0,
    );
    assert_eq!(
        error_code(&resp),
        Some(400),
        "peer bound to another channel"
    );
}

#[test]
fn unknown_method_request_is_400() {
    let mut h = Harness::new(config());
    let raw = build(
        stun_rs::MessageMethod::try_from(0x0abc).expect("method"),
        MessageClass::Request,
        vec![],
        None,
    );
    assert_eq!(error_code(&h.request(udp(1), &raw, h.t0)), Some(400));
}

#[test]
fn allocate_with_valid_attributes_but_truncated_value_is_400() {
    let mut h = Harness::new(config());
    // LIFETIME attribute with a 2-byte value: the header is sane, the attribute is not
    let mut raw = build(methods::ALLOCATE, MessageClass::Request, vec![], None);
    raw.extend_from_slice(&[0x00, 0x0d, 0x00, 0x02, 0, 1, 0, 0]);
    let len = u16::from_be_bytes([raw[2], raw[3]]) + 8;
    raw[2..4].copy_from_slice(&len.to_be_bytes());
    assert_eq!(error_code(&h.request(udp(1), &raw, h.t0)), Some(400));
    assert_eq!(h.srv.allocation_count(), 0);
}
