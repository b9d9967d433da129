//! Relay load generator for `turn/bench/relay-bench.sh`.
//!
//! Opens `clients` TURN allocations on a server (ours or coturn), binds a
//! channel from each to an echo peer run by this process, then sends
//! ChannelData at a fixed total rate for a fixed time. Every datagram is
//! relayed twice (client -> peer, echo -> client). Reports delivered
//! packets and, when given the server's pid, the server's CPU time over
//! exactly the sending window (from /proc). Loopback only.
//!
//! `relay_bench <server> <user> <pass> <clients> <rate_pps> <secs> <len> [pid]`

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stun_rs::attributes::stun::{MessageIntegrity, Nonce, Realm, UserName};
use stun_rs::attributes::turn::{ChannelNumber, RequestedTrasport, XorPeerAddress};
use stun_rs::attributes::StunAttribute;
use stun_rs::{
    methods, Algorithm, AlgorithmId, HMACKey, MessageClass, MessageDecoderBuilder,
    MessageEncoderBuilder, MessageMethod, StunMessage, StunMessageBuilder,
};

type Error = Box<dyn std::error::Error>;

fn encode(msg: &StunMessage) -> Result<Vec<u8>, Error> {
    let mut buf = vec![0u8; 1024];
    let n = MessageEncoderBuilder::default()
        .build()
        .encode(&mut buf, msg)?;
    buf.truncate(n);
    Ok(buf)
}

fn transact(sock: &UdpSocket, req: &[u8]) -> Result<StunMessage, Error> {
    let mut buf = [0u8; 2048];
    for _ in 0..5 {
        sock.send(req)?;
        if let Ok(n) = sock.recv(&mut buf) {
            if let Ok((msg, _)) = MessageDecoderBuilder::default()
                .build()
                .decode(buf.get(..n).unwrap_or_default())
            {
                return Ok(msg);
            }
        }
    }
    Err("no response".into())
}

struct Auth {
    user: String,
    realm: String,
    nonce: String,
    key: HMACKey,
}

fn request(
    method: MessageMethod,
    attrs: Vec<StunAttribute>,
    auth: Option<&Auth>,
) -> Result<Vec<u8>, Error> {
    let mut b = StunMessageBuilder::new(method, MessageClass::Request);
    for a in attrs {
        b = b.with_attribute(a);
    }
    if let Some(a) = auth {
        b = b
            .with_attribute(UserName::new(&a.user)?)
            .with_attribute(Realm::new(&a.realm)?)
            .with_attribute(Nonce::new(&a.nonce)?)
            .with_attribute(MessageIntegrity::new(a.key.clone()));
    }
    encode(&b.build())
}

/// Allocates and binds channel 0x4000 to `peer`; returns the connected socket.
fn setup_client(
    server: SocketAddr,
    user: &str,
    pass: &str,
    peer: SocketAddr,
) -> Result<UdpSocket, Error> {
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    sock.connect(server)?;
    sock.set_read_timeout(Some(Duration::from_millis(500)))?;
    let transport: StunAttribute = RequestedTrasport::from(stun_rs::protocols::UDP).into();
    let resp = transact(
        &sock,
        &request(methods::ALLOCATE, vec![transport.clone()], None)?,
    )?;
    let realm = resp
        .get::<Realm>()
        .ok_or("no realm")?
        .as_realm()?
        .as_str()
        .to_string();
    let nonce = resp
        .get::<Nonce>()
        .ok_or("no nonce")?
        .as_nonce()?
        .as_str()
        .to_string();
    let key = HMACKey::new_long_term(user, &realm, pass, Algorithm::from(AlgorithmId::MD5))?;
    let auth = Auth {
        user: user.into(),
        realm,
        nonce,
        key,
    };
    let resp = transact(
        &sock,
        &request(methods::ALLOCATE, vec![transport], Some(&auth))?,
    )?;
    if resp.class() != MessageClass::SuccessResponse {
        return Err("allocate failed".into());
    }
    let bind = vec![
        ChannelNumber::new(0x4000).into(),
        XorPeerAddress::from(peer).into(),
    ];
    let resp = transact(&sock, &request(methods::CHANNEL_BIND, bind, Some(&auth))?)?;
    if resp.class() != MessageClass::SuccessResponse {
        return Err("channel bind failed".into());
    }
    sock.set_nonblocking(true)?;
    Ok(sock)
}

fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // fields after the parenthesised command name; utime and stime are 14 and 15
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn main() -> Result<(), Error> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() < 7 {
        return Err(
            "usage: relay_bench <server> <user> <pass> <clients> <rate_pps> <secs> <len> [pid]"
                .into(),
        );
    }
    let server: SocketAddr = a[0].parse()?;
    let clients: usize = a[3].parse()?;
    let rate: u64 = a[4].parse()?;
    let secs: u64 = a[5].parse()?;
    let len: usize = a[6].parse()?;
    let pid = a.get(7).cloned();

    // Echo peer: one socket, one thread.
    let peer = UdpSocket::bind("127.0.0.1:0")?;
    let peer_addr = peer.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    peer.set_read_timeout(Some(Duration::from_millis(100)))?;
    let stop_peer = stop.clone();
    let echoed = Arc::new(AtomicU64::new(0));
    let echoed_peer = echoed.clone();
    let peer_thread = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while !stop_peer.load(Ordering::Relaxed) {
            if let Ok((n, from)) = peer.recv_from(&mut buf) {
                let _ = peer.send_to(buf.get(..n).unwrap_or_default(), from);
                echoed_peer.fetch_add(1, Ordering::Relaxed);
            }
        }
    });

    let socks: Vec<UdpSocket> = (0..clients)
        .map(|_| setup_client(server, &a[1], &a[2], peer_addr))
        .collect::<Result<_, _>>()?;
    let socks = Arc::new(socks);

    let received = Arc::new(AtomicU64::new(0));
    let rx_socks = socks.clone();
    let rx_stop = stop.clone();
    let rx_count = received.clone();
    let rx_thread = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while !rx_stop.load(Ordering::Relaxed) {
            let mut any = false;
            for s in rx_socks.iter() {
                while s.recv(&mut buf).is_ok() {
                    rx_count.fetch_add(1, Ordering::Relaxed);
                    any = true;
                }
            }
            if !any {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    });

    let mut frame = vec![0x40, 0x00];
    frame.extend_from_slice(&u16::try_from(len)?.to_be_bytes());
    frame.resize(4 + len, 0xAB);
    let cpu0 = pid.as_deref().and_then(cpu_ticks);
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut sent = 0u64;
    let mut next = 0usize;
    // Pace in 1 ms slots: each slot sends its share of the total rate.
    while Instant::now() < end {
        let due = (start.elapsed().as_micros() as u64 * rate / 1_000_000).saturating_sub(sent);
        for _ in 0..due {
            if socks[next % clients].send(&frame).is_ok() {
                sent += 1;
            }
            next += 1;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu1 = pid.as_deref().and_then(cpu_ticks);
    std::thread::sleep(Duration::from_millis(300)); // let in-flight echoes land
    stop.store(true, Ordering::Relaxed);
    let _ = rx_thread.join();
    let _ = peer_thread.join();
    let got = received.load(Ordering::Relaxed);
    let relayed = echoed.load(Ordering::Relaxed) + got;
    let hz = 100.0; // USER_HZ on Linux
    let cpu = match (cpu0, cpu1) {
        (Some(a), Some(b)) => (b.saturating_sub(a)) as f64 / hz,
        _ => f64::NAN,
    };
    println!(
        "sent={sent} echoed={} received={got} relayed={relayed} wall_s={wall:.2} relayed_pps={:.0} server_cpu_s={cpu:.2} relayed_per_cpu_s={:.0}",
        echoed.load(Ordering::Relaxed),
        relayed as f64 / wall,
        relayed as f64 / cpu
    );
    Ok(())
}
