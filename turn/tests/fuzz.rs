//! Property tests of the sans-IO TURN core in virtual time: whatever a client (or a peer)
//! sends, `Server` never panics, and garbage creates no allocation. Inputs range from raw
//! bytes to STUN messages with a valid header and arbitrary attributes, and ChannelData.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant, UNIX_EPOCH};

use proptest::prelude::*;
use turn::{FiveTuple, RelayBinder, Server, Transport, TurnConfig};

#[derive(Debug, Default)]
struct FakeBinder;

impl RelayBinder for FakeBinder {
    type Handle = SocketAddr;
    fn bind(&mut self, addr: SocketAddr) -> io::Result<(SocketAddr, SocketAddr)> {
        Ok((addr, addr))
    }
}

fn server(t0: Instant) -> Server<FakeBinder> {
    let cfg = TurnConfig {
        listen: "192.0.2.10:3478".parse().expect("addr"),
        relay_ip: "192.0.2.10".parse().expect("ip"),
        realm: "fuzz.realm".into(),
        users: vec![("alice".into(), "wonderland".into())],
        auth_secret: Some("rest-secret".into()),
        port_range: 50000..=50099,
        ..TurnConfig::default()
    };
    let wall = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let global = std::sync::Arc::new(turn::Global::new(&cfg));
    Server::with_clock(cfg, FakeBinder, global, t0, wall)
}

fn tuple(tcp: bool, port: u16) -> FiveTuple {
    FiveTuple {
        transport: if tcp { Transport::Tcp } else { Transport::Udp },
        client: SocketAddr::new("198.51.100.7".parse().expect("ip"), port),
        server: "192.0.2.10:3478".parse().expect("addr"),
    }
}

const METHODS: &[u16] = &[
    0x001, 0x003, 0x004, 0x006, 0x007, 0x008, 0x009, 0x00a, 0x00b, 0x0ff,
];
const ATTRIBUTES: &[u16] = &[
    0x0006, 0x0008, 0x0009, 0x000c, 0x000d, 0x0012, 0x0013, 0x0014, 0x0015, 0x0016, 0x0017, 0x0018,
    0x0019, 0x001a, 0x001c, 0x001d, 0x001e, 0x0020, 0x0022, 0x002a, 0x8000, 0x8022, 0x8028, 0x802b,
    0x802c,
];

/// A STUN message whose header passes the server's sanity checks, with arbitrary
/// (well-framed) attributes.
fn stun_message() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::sample::select(METHODS),
        0u16..4,
        proptest::collection::vec(
            (
                prop_oneof![proptest::sample::select(ATTRIBUTES), any::<u16>()],
                proptest::collection::vec(any::<u8>(), 0..36),
            ),
            0..8,
        ),
        any::<[u8; 12]>(),
    )
        .prop_map(|(method, class, attrs, tid)| {
            let msg_type = (method & 0x000f)
                | ((method & 0x0070) << 1)
                | ((method & 0x0f80) << 2)
                | ((class & 1) << 4)
                | ((class & 2) << 7);
            let mut body = Vec::new();
            for (t, value) in attrs {
                body.extend_from_slice(&t.to_be_bytes());
                body.extend_from_slice(&(value.len() as u16).to_be_bytes());
                body.extend_from_slice(&value);
                while body.len() % 4 != 0 {
                    body.push(0);
                }
            }
            let mut msg = msg_type.to_be_bytes().to_vec();
            msg.extend_from_slice(&(body.len() as u16).to_be_bytes());
            msg.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
            msg.extend_from_slice(&tid);
            msg.extend_from_slice(&body);
            msg
        })
}

fn channel_data() -> impl Strategy<Value = Vec<u8>> {
    (
        0x4000u16..0x8000,
        any::<u16>(),
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(channel, len, data)| {
            let mut msg = channel.to_be_bytes().to_vec();
            msg.extend_from_slice(&len.to_be_bytes());
            msg.extend_from_slice(&data);
            msg
        })
}

fn input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..120),
        stun_message(),
        channel_data(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn any_client_input_in_any_order(
        steps in proptest::collection::vec((input(), any::<bool>(), 1u16..4, 0u64..200_000), 1..12),
    ) {
        let t0 = Instant::now();
        let mut srv = server(t0);
        let mut now = t0;
        let mut out = Vec::new();
        for (data, tcp, port, advance_ms) in steps {
            now += Duration::from_millis(advance_ms);
            srv.handle_timeout(now, &mut out);
            srv.handle_client(tuple(tcp, port), &data, now, &mut out);
            out.clear();
        }
        // Nothing here is authenticated: no allocation can exist.
        prop_assert_eq!(srv.allocation_count(), 0);
        srv.connection_closed(tuple(true, 1), &mut out);
        srv.close_all(&mut out);
    }

    #[test]
    fn any_peer_datagram(
        data in proptest::collection::vec(any::<u8>(), 0..200),
        port in any::<u16>(),
        peer_port in any::<u16>(),
    ) {
        let t0 = Instant::now();
        let mut srv = server(t0);
        let mut out = Vec::new();
        let bound = SocketAddr::from(([192, 0, 2, 10], port));
        let peer = SocketAddr::from(([203, 0, 113, 9], peer_port));
        srv.handle_peer(bound, peer, &data, t0, &mut out);
        prop_assert!(out.is_empty(), "nothing is relayed without an allocation");
    }
}
