//! The data path, timers, bandwidth cap and garbage input.

use std::net::SocketAddr;

use stun_rs::attributes::turn::{ChannelNumber, Data, XorPeerAddress};
use stun_rs::attributes::StunAttribute;
use stun_rs::{methods, MessageClass};

use super::client::*;
use crate::channel_data;
use crate::server::Output;

const PEER: &str = "8.8.8.8:4000";

fn peer_addr() -> SocketAddr {
    PEER.parse().expect("addr")
}

fn peer_attr() -> StunAttribute {
    XorPeerAddress::from(peer_addr()).into()
}

fn send_indication(data: &[u8]) -> Vec<u8> {
    build(
        methods::SEND,
        MessageClass::Indication,
        vec![peer_attr(), Data::from(data).into()],
        None,
    )
}

fn to_peer(out: &[Output<SocketAddr>]) -> Vec<(SocketAddr, Vec<u8>)> {
    out.iter()
        .filter_map(|o| match o {
            Output::ToPeer { peer, data, .. } => Some((*peer, data.clone())),
            _ => None,
        })
        .collect()
}

fn to_client(out: &[Output<SocketAddr>]) -> Vec<Vec<u8>> {
    out.iter()
        .filter_map(|o| match o {
            Output::ToClient { data, .. } => Some(data.clone()),
            _ => None,
        })
        .collect()
}

fn from_peer(
    h: &mut Harness,
    relayed: SocketAddr,
    data: &[u8],
    secs: u64,
) -> Vec<Output<SocketAddr>> {
    let mut out = Vec::new();
    // the fake binder's bound address equals the relayed address
    h.srv
        .handle_peer(relayed, peer_addr(), data, h.at(secs), &mut out);
    out
}

#[test]
fn send_indication_needs_permission_then_relays_both_ways() {
    let mut h = Harness::new(config());
    let relayed = h.allocate(udp(1), h.t0);
    assert!(to_peer(&h.send(udp(1), &send_indication(b"hi"), h.t0)).is_empty());
    assert!(
        from_peer(&mut h, relayed, b"yo", 0).is_empty(),
        "no permission, dropped"
    );
    let resp = h.authed(
        udp(1),
        methods::CREATE_PERMMISSION,
        vec![peer_attr()],
        USER,
        PASS,
        h.t0,
    );
    assert_eq!(resp.class(), MessageClass::SuccessResponse);
    let out = h.send(udp(1), &send_indication(b"hi"), h.t0);
    assert_eq!(to_peer(&out), vec![(peer_addr(), b"hi".to_vec())]);
    // another 5-tuple has no allocation: dropped
    assert!(h.send(udp(9), &send_indication(b"hi"), h.t0).is_empty());
    let back = to_client(&from_peer(&mut h, relayed, b"yo", 1));
    assert_eq!(back.len(), 1);
    let ind = decode(&back[0]);
    assert_eq!(ind.method(), methods::DATA);
    assert_eq!(ind.class(), MessageClass::Indication);
    let data = ind
        .get::<Data>()
        .and_then(|a| a.as_data().ok())
        .expect("DATA");
    assert_eq!(data.as_bytes(), b"yo");
    let from = ind
        .get::<XorPeerAddress>()
        .and_then(|a| a.as_xor_peer_address().ok())
        .expect("peer");
    assert_eq!(*from.socket_address(), peer_addr());
}

#[test]
fn channel_data_both_ways_with_tcp_padding() {
    for (tuple, padded) in [(udp(1), false), (tcp(1), true)] {
        let mut h = Harness::new(config());
        let relayed = h.allocate(tuple, h.t0);
        let resp = h.authed(
            tuple,
            methods::CHANNEL_BIND,
            vec![ChannelNumber::new(0x4001).into(), peer_attr()],
            USER,
            PASS,
            h.t0,
        );
        assert_eq!(resp.class(), MessageClass::SuccessResponse);
        let mut cd = Vec::new();
        channel_data::encode_into(0x4001, b"hello", padded, &mut cd);
        assert_eq!(
            to_peer(&h.send(tuple, &cd, h.t0)),
            vec![(peer_addr(), b"hello".to_vec())]
        );
        // unbound channel: dropped
        let mut other = Vec::new();
        channel_data::encode_into(0x4002, b"hello", padded, &mut other);
        assert!(h.send(tuple, &other, h.t0).is_empty());
        let back = to_client(&from_peer(&mut h, relayed, b"abcde", 1));
        let expected_len = if padded { 12 } else { 9 };
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].len(), expected_len);
        let parsed = channel_data::parse(&back[0]).expect("channel data");
        assert_eq!((parsed.number, parsed.data), (0x4001, &b"abcde"[..]));
    }
}

#[test]
fn permissions_channels_and_allocations_expire_from_one_timer_queue() {
    let mut h = Harness::new(config());
    let relayed = h.allocate(udp(1), h.t0);
    h.authed(
        udp(1),
        methods::CHANNEL_BIND,
        vec![ChannelNumber::new(0x4001).into(), peer_attr()],
        USER,
        PASS,
        h.t0,
    );
    let mut out = Vec::new();
    h.srv.handle_timeout(h.at(299), &mut out);
    assert_eq!(from_peer(&mut h, relayed, b"x", 299).len(), 1);
    // permission (300 s) lapses before the channel (600 s): data is dropped
    h.srv.handle_timeout(h.at(301), &mut out);
    assert!(from_peer(&mut h, relayed, b"x", 301).is_empty());
    let mut cd = Vec::new();
    channel_data::encode_into(0x4001, b"x", false, &mut cd);
    assert!(h.send(udp(1), &cd, h.at(301)).is_empty());
    assert!(out.is_empty());
    h.srv.handle_timeout(h.at(601), &mut out);
    assert_eq!(h.srv.allocation_count(), 0);
    assert!(matches!(out.as_slice(), [Output::RelayClosed { relay }] if *relay == relayed));
    assert_eq!(h.srv.poll_timeout(), None);
}

#[test]
fn tcp_connection_close_deletes_allocation() {
    let mut h = Harness::new(config());
    h.allocate(tcp(1), h.t0);
    let mut out = Vec::new();
    h.srv.connection_closed(tcp(1), &mut out);
    assert_eq!(h.srv.allocation_count(), 0);
    assert_eq!(out.len(), 1);
}

#[test]
fn bandwidth_cap_drops_excess() {
    let mut cfg = config();
    cfg.max_bytes_per_sec = 1000;
    let mut h = Harness::new(cfg);
    let relayed = h.allocate(udp(1), h.t0);
    h.authed(
        udp(1),
        methods::CREATE_PERMMISSION,
        vec![peer_attr()],
        USER,
        PASS,
        h.t0,
    );
    let payload = [0u8; 400];
    let sent: usize = (0..5)
        .map(|_| to_peer(&h.send(udp(1), &send_indication(&payload), h.t0)).len())
        .sum();
    assert_eq!(sent, 2, "1000 B/s admits two 400-byte packets");
    assert!(
        from_peer(&mut h, relayed, &payload, 0).is_empty(),
        "both directions share the cap"
    );
    assert_eq!(
        from_peer(&mut h, relayed, &payload, 1).len(),
        1,
        "refilled after a second"
    );
}

#[test]
fn garbage_never_panics_and_never_allocates() {
    let mut h = Harness::new(config());
    let relayed = h.allocate(udp(1), h.t0);
    let valid = build(
        methods::ALLOCATE,
        MessageClass::Request,
        vec![udp_transport()],
        Some(&Creds::new(USER, PASS, "obMatJos2gAAA0000")),
    );
    let mut rng_state = 0x1234_5678_9abc_def0u64;
    let mut next = move || {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        rng_state
    };
    for i in 0..20_000u64 {
        let len = (next() % 200) as usize;
        let mut buf: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        match i % 4 {
            // valid STUN header, random attributes with a consistent length
            0 if len >= 20 => {
                buf[0] = 0x00;
                buf[1] = [0x01, 0x03, 0x04, 0x08, 0x09, 0x16][(next() % 6) as usize];
                let body = ((len - 20) & !3) as u16;
                buf.truncate(20 + usize::from(body));
                buf[2..4].copy_from_slice(&body.to_be_bytes());
                buf[4..8].copy_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
            }
            // a real message with random bytes flipped or cut
            1 => {
                buf = valid.clone();
                let n = buf.len();
                for _ in 0..3 {
                    let p = (next() as usize) % n;
                    buf[p] ^= next() as u8;
                }
                buf.truncate(20 + (next() as usize) % (n - 19));
            }
            // ChannelData-looking
            2 if len >= 1 => buf[0] = 0x40 | (buf[0] & 0x0f),
            _ => {}
        }
        let tuple = udp(2 + (i % 50) as u16);
        let _ = h.send(tuple, &buf, h.t0);
        let _ = h.send(udp(1), &buf, h.t0);
        let mut out = Vec::new();
        h.srv
            .handle_peer(relayed, peer_addr(), &buf, h.t0, &mut out);
    }
    assert_eq!(h.srv.allocation_count(), 1);
    // no per-client state was created by any of it
    assert!(h.srv.timers.len() <= 1);
}

#[test]
fn dual_stack_clients_are_reported_as_ipv4() {
    let mut h = Harness::new(config());
    let mut tuple = udp(1);
    tuple.client = "[::ffff:198.51.100.7]:40000".parse().expect("addr");
    let req = build(methods::BINDING, MessageClass::Request, vec![], None);
    let resp = h.request(tuple, &req, h.t0);
    let mapped = resp
        .get::<stun_rs::attributes::stun::XorMappedAddress>()
        .and_then(|a| a.as_xor_mapped_address().ok())
        .expect("mapped");
    assert_eq!(mapped.socket_address().to_string(), "198.51.100.7:40000");
}
