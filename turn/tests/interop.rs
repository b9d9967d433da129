//! Interop with an independent client: coturn's `turnutils_stunclient`,
//! `turnutils_uclient` and `turnutils_peer` (Debian package `coturn`) against
//! our server started in-process on 127.0.0.1 with a random port.
//!
//! These tests FAIL (not skip) when the coturn tools are missing: CI installs
//! them. All traffic stays on 127.0.0.1 / ::1; the server therefore runs with
//! `allow_loopback_peers`, except in the test that checks the default refuses
//! loopback peers with 403.
//!
//! `turnutils_uclient` exits 0 even when nothing got through, so every test
//! reads its `tot_send_msgs`/`tot_recv_msgs` and `Total lost packets` lines.

use std::io::Read;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use turn::{TurnConfig, TurnServer};

const USER: &str = "alice";
const PASS: &str = "wonderland";
const SECRET: &str = "rest-api-secret";

/// A running server; dropping it shuts the server down.
struct Running {
    addr: SocketAddr,
    tls: Option<SocketAddr>,
    _stop: tokio::sync::oneshot::Sender<()>,
    _rt: tokio::runtime::Runtime,
}

fn start(cfg: TurnConfig) -> Running {
    start_on(cfg, "127.0.0.1:0")
}

fn start_on(mut cfg: TurnConfig, listen: &str) -> Running {
    cfg.listen = listen.parse().expect("addr");
    cfg.relay_ip = "127.0.0.1".parse().expect("ip");
    cfg.relay_ipv6 = Some("::1".parse().expect("ip"));
    cfg.users = vec![(USER.into(), PASS.into())];
    cfg.auth_secret = Some(SECRET.into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let server = rt.block_on(TurnServer::bind(cfg)).expect("bind");
    let addr = server.local_addr();
    let tls = server.tls_local_addr();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    rt.spawn(server.run(async {
        let _ = rx.await;
    }));
    Running {
        addr,
        tls,
        _stop: tx,
        _rt: rt,
    }
}

fn loopback_config() -> TurnConfig {
    TurnConfig {
        allow_loopback_peers: true,
        ..TurnConfig::default()
    }
}

fn tool(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin"] {
        let p = PathBuf::from(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} not found: install the Debian package `coturn` (apt-get install -y coturn)");
}

/// Kills the child on drop.
struct Guard(Child);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_udp_port(ip: &str) -> u16 {
    UdpSocket::bind((ip, 0))
        .and_then(|s| s.local_addr())
        .expect("free port")
        .port()
}

/// Starts `turnutils_peer` (a UDP echo peer) on `ip`; returns its port.
fn echo_peer(ip: &str) -> (Guard, u16) {
    let port = free_udp_port(ip);
    let child = Command::new(tool("turnutils_peer"))
        .args(["-p", &port.to_string(), "-L", ip])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn turnutils_peer");
    std::thread::sleep(Duration::from_millis(300));
    (Guard(child), port)
}

/// Runs a command with a deadline; returns stdout+stderr.
fn run(cmd: &mut Command, limit: Duration) -> String {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut out = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut out);
    }
    out
}

/// What uclient reported.
#[derive(Debug)]
struct Report {
    sent: u64,
    received: u64,
    lost_percent: f64,
}

fn number_after(line: &str, key: &str) -> Option<u64> {
    let rest = &line[line.find(key)? + key.len()..];
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// Parses the final `tot_send_msgs=.., tot_recv_msgs=..` and
/// `Total lost packets N (P%)` lines.
fn parse_report(out: &str) -> Option<Report> {
    let totals = out
        .lines()
        .rev()
        .find(|l| l.contains("start_mclient: tot_send_msgs="))?;
    let lost = out
        .lines()
        .rev()
        .find(|l| l.contains("Total lost packets"))?;
    let pct = lost
        .split('(')
        .nth(1)?
        .split('%')
        .next()?
        .trim()
        .parse()
        .ok()?;
    Some(Report {
        sent: number_after(totals, "tot_send_msgs=")?,
        received: number_after(totals, "tot_recv_msgs=")?,
        lost_percent: pct,
    })
}

fn uclient(server: &Running, port: u16, extra: &[&str], peer: Option<(&str, u16)>) -> String {
    let mut cmd = Command::new(tool("turnutils_uclient"));
    // -c: no RTCP allocation; -n/-m/-l/-z: 40 messages x 2 clients, 120 bytes, every 5 ms
    cmd.args(["-c", "-n", "40", "-m", "2", "-l", "120", "-z", "5"]);
    cmd.args(["-p", &port.to_string()]);
    cmd.args(extra);
    if let Some((ip, p)) = peer {
        cmd.args(["-e", ip, "-r", &p.to_string()]);
    }
    cmd.arg(server.addr.ip().to_string());
    run(&mut cmd, Duration::from_secs(60))
}

fn assert_relayed(out: &str, what: &str) {
    let report =
        parse_report(out).unwrap_or_else(|| panic!("{what}: no uclient report in:\n{out}"));
    assert!(
        report.sent >= 80,
        "{what}: only {} sent\n{out}",
        report.sent
    );
    assert!(
        report.received * 100 >= report.sent * 95,
        "{what}: {report:?}\n{out}"
    );
    assert!(report.lost_percent <= 5.0, "{what}: {report:?}\n{out}");
}

#[test]
fn stunclient_gets_reflexive_address() {
    let server = start(TurnConfig::default());
    let out = run(
        Command::new(tool("turnutils_stunclient")).args([
            "-p",
            &server.addr.port().to_string(),
            "127.0.0.1",
        ]),
        Duration::from_secs(20),
    );
    assert!(
        out.contains("UDP reflexive addr: 127.0.0.1:"),
        "no reflexive address:\n{out}"
    );
}

#[test]
fn uclient_udp_channel_mode_to_peer() {
    let server = start(loopback_config());
    let (_peer, port) = echo_peer("127.0.0.1");
    let out = uclient(
        &server,
        server.addr.port(),
        &["-u", USER, "-w", PASS],
        Some(("127.0.0.1", port)),
    );
    assert_relayed(&out, "UDP channel");
}

#[test]
fn uclient_udp_send_indication_mode_to_peer() {
    let server = start(loopback_config());
    let (_peer, port) = echo_peer("127.0.0.1");
    let out = uclient(
        &server,
        server.addr.port(),
        &["-s", "-u", USER, "-w", PASS],
        Some(("127.0.0.1", port)),
    );
    assert_relayed(&out, "UDP send indications");
}

#[test]
fn uclient_tcp_channel_mode_to_peer() {
    let server = start(loopback_config());
    let (_peer, port) = echo_peer("127.0.0.1");
    let out = uclient(
        &server,
        server.addr.port(),
        &["-t", "-u", USER, "-w", PASS],
        Some(("127.0.0.1", port)),
    );
    assert_relayed(&out, "TCP channel");
}

#[test]
fn uclient_tcp_send_indication_mode_to_peer() {
    let server = start(loopback_config());
    let (_peer, port) = echo_peer("127.0.0.1");
    let out = uclient(
        &server,
        server.addr.port(),
        &["-t", "-s", "-u", USER, "-w", PASS],
        Some(("127.0.0.1", port)),
    );
    assert_relayed(&out, "TCP send indications");
}

#[test]
fn uclient_client_to_client_udp_and_tcp() {
    let server = start(loopback_config());
    for extra in [
        &["-y"][..],
        &["-y", "-s"],
        &["-y", "-t"],
        &["-y", "-t", "-s"],
    ] {
        let mut args = extra.to_vec();
        args.extend(["-u", USER, "-w", PASS]);
        let out = uclient(&server, server.addr.port(), &args, None);
        assert_relayed(&out, &format!("client-to-client {extra:?}"));
    }
}

#[test]
fn uclient_ephemeral_rest_credentials() {
    let server = start(loopback_config());
    let (_peer, port) = echo_peer("127.0.0.1");
    let out = uclient(
        &server,
        server.addr.port(),
        &["-W", SECRET, "-u", "participant-7"],
        Some(("127.0.0.1", port)),
    );
    assert_relayed(&out, "REST API credentials");
    // a different secret must not work
    let out = uclient(
        &server,
        server.addr.port(),
        &["-W", "not-the-secret", "-u", "participant-7"],
        Some(("127.0.0.1", port)),
    );
    let received = parse_report(&out).map_or(0, |r| r.received);
    assert_eq!(received, 0, "wrong REST secret relayed data:\n{out}");
}

#[test]
fn uclient_wrong_password_fails() {
    let server = start(loopback_config());
    let (_peer, port) = echo_peer("127.0.0.1");
    let out = uclient(
        &server,
        server.addr.port(),
        &["-u", USER, "-w", "not-the-password"],
        Some(("127.0.0.1", port)),
    );
    let received = parse_report(&out).map_or(0, |r| r.received);
    assert_eq!(received, 0, "wrong password relayed data:\n{out}");
    assert!(out.contains("Cannot complete Allocation"), "{out}");
}

#[test]
fn uclient_rtp_and_rtcp_pairs_with_even_port_reservation() {
    // Without -c, uclient allocates an RTP relay with EVEN-PORT(R) and the RTCP
    // relay with the returned RESERVATION-TOKEN.
    let server = start(loopback_config());
    let (_peer, port) = echo_peer("127.0.0.1");
    let mut cmd = Command::new(tool("turnutils_uclient"));
    cmd.args(["-n", "40", "-m", "2", "-l", "120", "-z", "5"])
        .args([
            "-p",
            &server.addr.port().to_string(),
            "-u",
            USER,
            "-w",
            PASS,
        ])
        .args(["-e", "127.0.0.1", "-r", &port.to_string(), "127.0.0.1"]);
    let out = run(&mut cmd, Duration::from_secs(60));
    assert_relayed(&out, "RTP/RTCP pairs");
}

#[test]
fn uclient_ipv6_relay_to_ipv6_peer() {
    let server = start(loopback_config());
    let (_peer, port) = echo_peer("::1");
    let out = uclient(
        &server,
        server.addr.port(),
        &["-x", "-u", USER, "-w", PASS],
        Some(("::1", port)),
    );
    assert_relayed(&out, "IPv6 relay");
}

#[test]
fn default_config_refuses_relay_to_127_0_0_1_with_403() {
    // Default peer filter: loopback denied.
    let server = start(TurnConfig::default());
    let (_peer, port) = echo_peer("127.0.0.1");
    let out = uclient(
        &server,
        server.addr.port(),
        &["-u", USER, "-w", PASS],
        Some(("127.0.0.1", port)),
    );
    assert!(
        out.contains("403"),
        "expected a 403 from the server:\n{out}"
    );
    let received = parse_report(&out).map_or(0, |r| r.received);
    assert_eq!(received, 0, "loopback peer was reachable:\n{out}");
}

#[test]
fn uclient_over_tls() {
    let dir = std::env::temp_dir().join(format!("turn-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).expect("write cert");
    std::fs::write(&key, ck.signing_key.serialize_pem()).expect("write key");
    let cfg = TurnConfig {
        tls_cert: Some(cert),
        tls_key: Some(key),
        tls_listen: "127.0.0.1:0".parse().expect("addr"),
        ..loopback_config()
    };
    let server = start(cfg);
    let tls_port = server.tls.expect("TLS listener").port();
    let (_peer, port) = echo_peer("127.0.0.1");
    let out = uclient(
        &server,
        tls_port,
        &["-t", "-S", "-u", USER, "-w", PASS],
        Some(("127.0.0.1", port)),
    );
    assert_relayed(&out, "TLS channel");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn uclient_over_ipv6_transport() {
    let server = start_on(loopback_config(), "[::1]:0");
    let (_peer, port) = echo_peer("127.0.0.1");
    let out = uclient(
        &server,
        server.addr.port(),
        &["-u", USER, "-w", PASS],
        Some(("127.0.0.1", port)),
    );
    assert_relayed(&out, "UDP over IPv6 to an IPv4 relay");
}

#[test]
fn garbage_over_udp_and_tcp_leaves_server_serving() {
    use std::io::Write;
    let server = start(loopback_config());
    let udp = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..3000u64 {
        let len = (next() % 120) as usize;
        let mut buf: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if i % 3 == 0 && len >= 20 {
            // plausible STUN header: type, length, magic cookie
            buf[0] = 0;
            buf[1] = 3;
            let body = ((len - 20) & !3) as u16;
            buf.truncate(20 + usize::from(body));
            buf[2..4].copy_from_slice(&body.to_be_bytes());
            buf[4..8].copy_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
        }
        let _ = udp.send_to(&buf, server.addr);
    }
    for _ in 0..20 {
        if let Ok(mut tcp) = std::net::TcpStream::connect(server.addr) {
            let junk: Vec<u8> = (0..500).map(|_| next() as u8).collect();
            let _ = tcp.write_all(&junk);
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    // still a working STUN server
    let out = run(
        Command::new(tool("turnutils_stunclient")).args([
            "-p",
            &server.addr.port().to_string(),
            "127.0.0.1",
        ]),
        Duration::from_secs(20),
    );
    assert!(out.contains("UDP reflexive addr: 127.0.0.1:"), "{out}");
    let (_peer, port) = echo_peer("127.0.0.1");
    let out = uclient(
        &server,
        server.addr.port(),
        &["-t", "-u", USER, "-w", PASS],
        Some(("127.0.0.1", port)),
    );
    assert_relayed(&out, "TCP after garbage");
}

#[test]
fn dual_stack_listener_serves_ipv4_and_ipv6_clients() {
    // Listening on [::] (all interfaces); the clients still only use loopback.
    let server = start_on(loopback_config(), "[::]:0");
    let port = server.addr.port().to_string();
    for (ip, want) in [
        ("127.0.0.1", "UDP reflexive addr: 127.0.0.1:"),
        ("::1", "UDP reflexive addr: ::1:"),
    ] {
        let out = run(
            Command::new(tool("turnutils_stunclient")).args(["-p", &port, ip]),
            Duration::from_secs(20),
        );
        assert!(out.contains(want), "{ip}: {out}");
    }
    let (_peer, peer_port) = echo_peer("127.0.0.1");
    for extra in [
        &["-u", USER, "-w", PASS][..],
        &["-t", "-u", USER, "-w", PASS],
    ] {
        let mut cmd = Command::new(tool("turnutils_uclient"));
        cmd.args([
            "-c", "-n", "40", "-m", "2", "-l", "120", "-z", "5", "-p", &port,
        ])
        .args(extra)
        .args(["-e", "127.0.0.1", "-r", &peer_port.to_string(), "127.0.0.1"]);
        let out = run(&mut cmd, Duration::from_secs(60));
        assert_relayed(&out, &format!("IPv4 client on [::] {extra:?}"));
    }
}
