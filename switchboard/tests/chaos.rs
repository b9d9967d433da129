//! Garbage at every port during a call. While a publisher and a subscriber exchange media,
//! attackers send random and protocol-shaped datagrams to the media and TURN ports (UDP and
//! TCP), junk and half-finished requests to the HTTP port, and hostile WebSocket traffic. The
//! call must not notice: the subscriber keeps receiving audio at its rate and video without a
//! gap, the server stays up without a panic, and once the attackers are gone the server holds
//! the same descriptors and participants as before.
//!
//! The attack is bounded in count and time, and goes to loopback only.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::str0m_peer::{Role, Str0mPeer};
use common::TestServer;
use futures_util::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio_tungstenite::tungstenite::Message;

/// How long the attack lasts.
const ATTACK: Duration = Duration::from_secs(8);
/// Datagrams per second from each UDP attacker (four of them). Modest on purpose: the server
/// under test is a debug build sharing two cores with the attackers and both peers; what is
/// tested is that garbage is dropped without harm, not how much of it one core can drop.
const UDP_RATE: u32 = 1_500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_at_every_port_leaves_a_call_untouched() {
    let mut server = TestServer::start_logging_to_file(&[]).await;
    let publisher = Str0mPeer::start(
        &server.ws_url(),
        "chaos",
        "Publisher",
        Role::Publisher,
        server.rtc_addr,
        None,
    )
    .await;
    let subscriber = Str0mPeer::start(
        &server.ws_url(),
        "chaos",
        "Subscriber",
        Role::Subscriber,
        server.rtc_addr,
        None,
    )
    .await;
    subscriber
        .wait_for("media flowing", Duration::from_secs(20), |r| {
            r.audio_within(Duration::from_secs(1)) > 30
                && r.video_within(Duration::from_secs(1)) > 10
        })
        .await;
    // Let the call settle before taking the baseline.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let fds_before = server.open_fds();
    let audio_before = subscriber.recorded().audio_packets;
    let attack_start = Instant::now();

    let mut attackers = tokio::task::JoinSet::new();
    for (i, target) in [
        server.rtc_addr,
        server.rtc_addr,
        server.turn_addr,
        server.turn_addr,
    ]
    .into_iter()
    .enumerate()
    {
        attackers.spawn(udp_garbage(target, i as u64));
    }
    attackers.spawn(tcp_garbage(server.rtc_addr));
    attackers.spawn(tcp_garbage(server.turn_addr));
    attackers.spawn(http_garbage(server.http_addr));
    attackers.spawn(websocket_garbage(server.ws_url()));
    let mut sent = 0u64;
    while let Some(done) = attackers.join_next().await {
        sent += done.expect("attacker task");
    }
    let attack = attack_start.elapsed();
    assert!(sent > 20_000, "the attack sent only {sent} messages");

    // The call did not notice.
    {
        let r = subscriber.recorded();
        let audio = r.audio_packets - audio_before;
        let expected = attack.as_secs_f64() * 50.0;
        assert!(
            audio as f64 > expected * 0.9,
            "audio during the attack: {audio} packets in {attack:?}, expected about {expected:.0}"
        );
        let during: Vec<Instant> = r
            .video
            .iter()
            .map(|p| p.at)
            .filter(|at| *at >= attack_start)
            .collect();
        assert!(
            during.len() > 100,
            "video during the attack: {} packets",
            during.len()
        );
        let longest_gap = during
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default();
        assert!(
            longest_gap < Duration::from_millis(500),
            "video stalled for {longest_gap:?} during the attack"
        );
    }
    assert!(
        publisher.recorded().connected,
        "the publisher stays connected"
    );

    // Nothing is left behind: the two participants only, and the descriptors of before.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let health = server.health().await.expect("the server answers /healthz");
        let fds = server.open_fds();
        if health["participants"] == 2 && fds <= fds_before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after the attack: {health} and {fds} descriptors (before: {fds_before})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(server.is_running(), "the server is still running");
    let log = server.log();
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
}

/// Random bytes and datagrams shaped like STUN, RTP, RTCP, DTLS and TURN ChannelData, from
/// one socket at `UDP_RATE` for `ATTACK`. Returns how many were sent.
async fn udp_garbage(target: SocketAddr, seed: u64) -> u64 {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let mut rng = StdRng::seed_from_u64(rand::random());
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let per_tick = (UDP_RATE / 100) as usize;
    let mut sent = 0u64;
    let mut buf = [0u8; 1500];
    while start.elapsed() < ATTACK {
        tick.tick().await;
        for k in 0..per_tick {
            let len = rng.random_range(1..=buf.len());
            rng.fill_bytes(&mut buf[..len]);
            shape(&mut buf[..len], (seed as usize + k) % 7);
            // Errors (ICMP unreachable) do not matter to an attacker.
            let _ = socket.send_to(&buf[..len], target).await;
            sent += 1;
        }
    }
    sent
}

/// Make random bytes look like the start of a protocol the server demultiplexes.
fn shape(b: &mut [u8], kind: usize) {
    let Some(first) = b.first_mut() else { return };
    match kind {
        // STUN: first two bits zero, magic cookie, a length that may lie.
        0 | 1 => {
            *first &= 0x01;
            if b.len() >= 8 {
                b[4..8].copy_from_slice(&0x2112_A442u32.to_be_bytes());
            }
        }
        // RTP and RTCP: version 2, payload types across both ranges.
        2 => *first = 0x80 | (*first & 0x3f),
        3 => {
            *first = 0x81;
            if b.len() > 1 {
                b[1] = 200 + b[1] % 7;
            }
        }
        // DTLS records: content types 20-25.
        4 => *first = 20 + *first % 6,
        // TURN ChannelData: channel numbers 0x4000-0x7fff.
        5 => *first = 0x40 | (*first & 0x3f),
        // Whatever the generator made.
        _ => {}
    }
}

/// TCP connections to a port that speaks RFC 4571 framing (ICE-TCP, TURN over TCP): random
/// bytes, well-framed garbage, a frame that announces more than it sends, and a connection
/// that says nothing. All are closed by us at the end.
async fn tcp_garbage(target: SocketAddr) -> u64 {
    let start = Instant::now();
    let mut sent = 0u64;
    let mut held = Vec::new();
    let mut rng = StdRng::seed_from_u64(rand::random());
    // A silent connection and one with a lying frame header, held through the attack.
    if let Ok(s) = TcpStream::connect(target).await {
        held.push(s);
    }
    if let Ok(mut s) = TcpStream::connect(target).await {
        let _ = s.write_all(&[0xff, 0xff, 0x00, 0x01]).await;
        held.push(s);
    }
    while start.elapsed() < ATTACK {
        let Ok(mut s) = TcpStream::connect(target).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        for _ in 0..20 {
            let len = rng.random_range(1..1200usize);
            let mut frame = vec![0u8; len + 2];
            rng.fill_bytes(&mut frame);
            if rng.random_bool(0.5) {
                frame[..2].copy_from_slice(&(len as u16).to_be_bytes());
                shape(&mut frame[2..], rng.random_range(0..7));
            }
            if s.write_all(&frame).await.is_err() {
                break;
            }
            sent += 1;
        }
        drop(s);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(held);
    sent
}

/// Junk at the HTTP port: random bytes, a request with an enormous header, a request that
/// never finishes, and requests for paths that do not exist.
async fn http_garbage(target: SocketAddr) -> u64 {
    let start = Instant::now();
    let mut sent = 0u64;
    let mut rng = StdRng::seed_from_u64(rand::random());
    let mut held = Vec::new();
    if let Ok(mut s) = TcpStream::connect(target).await {
        let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await;
        held.push(s);
    }
    while start.elapsed() < ATTACK {
        let Ok(mut s) = TcpStream::connect(target).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let request: Vec<u8> = match sent % 4 {
            0 => {
                let mut b = vec![0u8; rng.random_range(1..4096usize)];
                rng.fill_bytes(&mut b);
                b
            }
            1 => format!(
                "GET / HTTP/1.1\r\nHost: x\r\nX-Junk: {}\r\n\r\n",
                "a".repeat(200_000)
            )
            .into_bytes(),
            2 => {
                b"POST /api/rooms HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n{".to_vec()
            }
            _ => b"GET /../../etc/passwd%00 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        };
        let _ = s.write_all(&request).await;
        // Read whatever comes back, briefly, then hang up.
        let mut reply = [0u8; 512];
        let _ = tokio::time::timeout(Duration::from_millis(50), s.read(&mut reply)).await;
        sent += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(held);
    sent
}

/// Hostile WebSocket clients: malformed JSON, wrong types, huge text and binary frames,
/// invalid SDP, and a message flood, each on its own connection (the server closes some).
async fn websocket_garbage(url: String) -> u64 {
    let start = Instant::now();
    let mut sent = 0u64;
    let hostile: Vec<Message> = vec![
        Message::text("{not json"),
        Message::text("[]"),
        Message::text(r#"{"type":"join","room":{"a":1},"name":7}"#),
        Message::text(r#"{"type":"offer","id":1,"sdp":"v=0\r\nm=video 0 RTP/AVP 96\r\n"}"#),
        Message::text(
            r#"{"type":"candidate","candidate":"candidate:x 1 udp 1 999.1.1.1 70000 typ host"}"#,
        ),
        Message::text("x".repeat(2 << 20)),
        Message::binary(vec![0u8; 70_000]),
        Message::text(format!("{{\"type\":\"{}\"}}", "\u{fffd}".repeat(1000))),
    ];
    while start.elapsed() < ATTACK {
        let Ok((mut ws, _)) = tokio_tungstenite::connect_async(url.as_str()).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        for m in &hostile {
            if ws.send(m.clone()).await.is_err() {
                break;
            }
            sent += 1;
        }
        // A flood: far beyond the per-connection rate limit.
        for i in 0..300 {
            if ws
                .send(Message::text(format!(r#"{{"type":"ping","id":{i}}}"#)))
                .await
                .is_err()
            {
                break;
            }
            sent += 1;
        }
        // Drain what the server says (errors, the close) for a moment, then hang up.
        let _ = tokio::time::timeout(Duration::from_millis(200), async {
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
        drop(ws);
    }
    sent
}
