//! The embedded TURN server and the credentials `join` hands out: coturn's own client
//! (`turnutils_uclient`, Debian package coturn) relays through our TURN with exactly the
//! `ice_servers` a participant received, and the same username with a wrong password fails.

mod common;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::TestServer;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn joined_message(server: &TestServer) -> Value {
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url())
        .await
        .expect("connect");
    ws.send(Message::Text(
        r#"{"type":"join","id":1,"room":"turn","name":"T"}"#.into(),
    ))
    .await
    .expect("send");
    let Some(Ok(Message::Text(text))) = ws.next().await else {
        panic!("no reply to join");
    };
    serde_json::from_str(text.as_str()).expect("JSON")
}

/// Runs `turnutils_uclient` with a time limit; returns (messages sent, messages received).
fn uclient(
    turn_port: u16,
    user: &str,
    password: &str,
    peer_port: u16,
    tcp: bool,
) -> (u64, u64, String) {
    let mut cmd = Command::new("turnutils_uclient");
    cmd.args(["-c", "-n", "40", "-m", "2", "-l", "120", "-z", "5"])
        .args(["-p", &turn_port.to_string(), "-u", user, "-w", password])
        .args(["-e", "127.0.0.1", "-r", &peer_port.to_string()]);
    if tcp {
        cmd.arg("-t");
    }
    cmd.arg("127.0.0.1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .expect("turnutils_uclient (Debian package coturn) must be installed");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.wait();
    let mut out = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut out);
    }
    // uclient exits 0 even when nothing was relayed: read its totals.
    let number = |key: &str| {
        out.rfind(key)
            .and_then(|i| {
                out[i + key.len()..]
                    .split(|c: char| !c.is_ascii_digit())
                    .next()
            })
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (number("tot_send_msgs="), number("tot_recv_msgs="), out)
}

#[tokio::test]
async fn join_credentials_relay_through_the_embedded_turn_server() {
    let server = TestServer::start_with(&["--turn-allow-loopback-peers"]).await;
    let joined = joined_message(&server).await;
    let ice = &joined["ice_servers"][0];
    let urls: Vec<&str> = ice["urls"]
        .as_array()
        .expect("urls")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let port = server.turn_addr.port();
    assert!(
        urls.contains(&format!("turn:127.0.0.1:{port}?transport=udp").as_str()),
        "{urls:?}"
    );
    assert!(
        urls.contains(&format!("turn:127.0.0.1:{port}?transport=tcp").as_str()),
        "{urls:?}"
    );
    let user = ice["username"].as_str().expect("username");
    let password = ice["credential"].as_str().expect("credential");
    let (expiry, id) = user.split_once(':').expect("REST username is expiry:id");
    assert_eq!(
        id,
        joined["participant_id"].as_str().unwrap(),
        "credentials name the participant"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        expiry.parse::<u64>().unwrap() > now + 3600,
        "credentials outlive a call"
    );

    let peer_port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _peer = KillOnDrop(
        Command::new("turnutils_peer")
            .args(["-p", &peer_port.to_string(), "-L", "127.0.0.1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("turnutils_peer (Debian package coturn) must be installed"),
    );
    std::thread::sleep(Duration::from_millis(300));

    for tcp in [false, true] {
        let (sent, received, out) = uclient(port, user, password, peer_port, tcp);
        assert!(
            sent >= 80 && received * 100 >= sent * 95,
            "tcp={tcp}: sent {sent}, received {received}\n{out}"
        );
    }
    let (_, received, out) = uclient(port, user, "not-the-password", peer_port, false);
    assert_eq!(received, 0, "a wrong password must not relay\n{out}");

    // /metrics counts what was relayed, both ways.
    let metrics = common::http_get(server.http_addr, "/metrics")
        .await
        .expect("/metrics");
    for direction in ["to_peer", "from_peer"] {
        let series = format!("switchboard_turn_relayed_bytes_total{{direction=\"{direction}\"}} ");
        let bytes: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in /metrics:\n{metrics}"));
        assert!(bytes > 10_000, "{series}{bytes}");
    }
    assert!(
        metrics.contains("switchboard_turn_allocations "),
        "{metrics}"
    );
}
