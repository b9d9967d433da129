//! Limits: each one refused with its documented error (or close code), counted in
//! `/metrics`, and never disturbing a participant already in.

mod common;

use std::time::Duration;

use common::ws::*;
use common::TestServer;
use serde_json::json;
use switchboard_testkit::{ClientConfig, TestClient};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

async fn metric(server: &TestServer, series: &str) -> f64 {
    let samples = scrape(server.http_addr).await;
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("no {series} in /metrics"))
}

/// Wait (up to 3 s: the SFU publishes its counters every second) for a metric to read `want`.
async fn metric_reaches(server: &TestServer, series: &str, want: f64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let value = metric(server, series).await;
        if value == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{series} is {value}, expected {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn flooding_is_rate_limited_then_closed() {
    let server =
        TestServer::start_with(&["--max-messages-per-sec", "5", "--message-burst", "10"]).await;
    let url = server.ws_url();
    let mut bystander = connect(&url).await;
    join(&mut bystander, "flood", "Bystander", None).await;

    let mut ws = connect(&url).await;
    join(&mut ws, "flood", "Flooder", None).await; // 1 of the burst
    for i in 0..9 {
        send(&mut ws, json!({"type": "ping", "id": i}).to_string()).await;
    }
    for i in 0..9 {
        assert_eq!(recv_type(&mut ws, "pong").await["id"], i);
    }
    // The bucket is empty: the next message is refused, once with an error.
    send(&mut ws, r#"{"type":"ping","id":100}"#).await;
    expect_error(&mut ws, "rate_limited").await;
    // A burst's worth more while refused: closed with 1008.
    for i in 0..15 {
        send(&mut ws, json!({"type": "ping", "id": 200 + i}).to_string()).await;
    }
    assert_eq!(
        closed_with(&mut ws, Duration::from_secs(5)).await,
        CloseCode::Policy
    );

    // The bystander saw the flooder come and go, and still works.
    recv_type(&mut bystander, "participant_left").await;
    expect_open(&mut bystander).await;
    // The one refused with an error, then ten more before the close.
    assert_eq!(
        metric(
            &server,
            "switchboard_limit_hits_total{limit=\"message_rate\"}"
        )
        .await,
        11.0
    );
    assert_eq!(
        metric(&server, "switchboard_rate_limit_closes_total").await,
        1.0
    );
    assert_eq!(
        metric(
            &server,
            "switchboard_signaling_errors_total{code=\"rate_limited\"}"
        )
        .await,
        1.0
    );
}

/// The documented 1008 close for a client that keeps flooding, at a steady rate above the
/// limit: some of its messages are accepted in between, which used to excuse it forever.
/// A client sending just under the limit alongside is never refused.
#[tokio::test]
async fn a_steady_flood_is_closed_and_a_client_within_the_rate_is_not() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let server =
        TestServer::start_with(&["--max-messages-per-sec", "5", "--message-burst", "10"]).await;
    let url = server.ws_url();
    let mut polite = connect(&url).await;
    join(&mut polite, "steady", "Polite", None).await;
    let mut flooder = connect(&url).await;
    join(&mut flooder, "steady", "Flooder", None).await;

    // 12 messages a second (2.4x the limit) from the flooder, 4 from the polite client.
    let mut tick = tokio::time::interval(Duration::from_millis(83));
    let started = tokio::time::Instant::now();
    let mut sent = 0u64;
    let mut polite_pongs = 0;
    // The server removes the flooder as it closes it: the polite client may hear of that
    // before this loop reads the flooder's close frame.
    let mut flooder_left = false;
    let close = loop {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "a flood at 2.4x the rate was not closed within 15 s ({sent} sent)"
        );
        tokio::select! {
            _ = tick.tick() => {
                sent += 1;
                // The flooder's socket may already be closing: a failed send is fine here.
                let _ = futures_util::SinkExt::send(
                    &mut flooder,
                    Message::Text(json!({"type": "ping", "id": sent}).to_string().into()),
                )
                .await;
                if sent.is_multiple_of(3) {
                    send(&mut polite, json!({"type": "ping", "id": sent}).to_string()).await;
                }
            }
            frame = flooder.next() => match frame {
                Some(Ok(Message::Close(Some(close)))) => break close.code,
                Some(Ok(_)) => {}
                other => panic!("the flooder's connection ended without a close frame: {other:?}"),
            },
            frame = polite.next() => match frame {
                Some(Ok(Message::Text(t))) => {
                    let msg: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                    match msg["type"].as_str() {
                        Some("pong") => polite_pongs += 1,
                        Some("participant_joined" | "stats") => {}
                        Some("participant_left") if !flooder_left => flooder_left = true,
                        _ => panic!("the polite client got {msg}"),
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("the polite client's connection ended: {other:?}"),
            },
        }
    };
    assert_eq!(close, CloseCode::Policy);
    assert!(polite_pongs > 5, "{polite_pongs} pongs");
    if !flooder_left {
        recv_type(&mut polite, "participant_left").await;
    }
    expect_open(&mut polite).await;
    assert_eq!(
        metric(&server, "switchboard_rate_limit_closes_total").await,
        1.0
    );
}

#[tokio::test]
async fn a_connection_under_the_rate_is_never_limited() {
    let server =
        TestServer::start_with(&["--max-messages-per-sec", "20", "--message-burst", "5"]).await;
    let mut ws = connect(&server.ws_url()).await;
    for i in 0..30 {
        send(&mut ws, json!({"type": "ping", "id": i}).to_string()).await;
        assert_eq!(recv(&mut ws).await, json!({"type": "pong", "id": i}));
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
}

#[tokio::test]
async fn rooms_room_size_and_pending_joins_are_limited() {
    let server = TestServer::start_with(&[
        "--max-rooms",
        "2",
        "--max-participants-per-room",
        "2",
        "--max-pending-joins",
        "3",
    ])
    .await;
    let url = server.ws_url();
    let mut a1 = connect(&url).await;
    join(&mut a1, "a", "A1", None).await;
    let mut a2 = connect(&url).await;
    join(&mut a2, "a", "A2", None).await;
    recv_type(&mut a1, "participant_joined").await;

    // Room "a" is full; the refused client may join another room on the same connection.
    let mut ws = connect(&url).await;
    let reply = try_join(&mut ws, "a", "A3", None).await;
    assert_eq!(
        (reply["type"].as_str(), reply["code"].as_str()),
        (Some("error"), Some("room_full")),
        "{reply}"
    );
    join(&mut ws, "b", "B1", None).await;

    // Two rooms exist: a third is refused.
    let mut c = connect(&url).await;
    let reply = try_join(&mut c, "c", "C1", None).await;
    assert_eq!(reply["code"], "too_many_rooms", "{reply}");
    expect_open(&mut c).await;

    // Three joined, none connected their media: a fourth join is refused until one goes.
    let reply = try_join(&mut c, "b", "B2", None).await;
    assert_eq!(reply["code"], "server_busy", "{reply}");
    drop(ws);
    tokio::time::sleep(Duration::from_millis(300)).await;
    join(&mut c, "b", "B2", None).await;

    // Nobody inside was disturbed: A1 saw nothing but A2's arrival.
    expect_open(&mut a1).await;
    expect_open(&mut a2).await;
    for limit in ["rooms", "participants_per_room", "pending_joins"] {
        let series = format!("switchboard_limit_hits_total{{limit=\"{limit}\"}}");
        metric_reaches(&server, &series, 1.0).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracks_per_participant_are_limited() {
    let server = TestServer::start_with(&["--max-tracks-per-participant", "1"]).await;
    let url = server.ws_url();
    let err = match TestClient::join(ClientConfig::new(&url, "t", "Two")).await {
        Ok(_) => panic!("two tracks were accepted"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("too_many_tracks"), "{err}");
    let mut one = ClientConfig::new(&url, "t", "One");
    one.publish_video = false;
    let client = TestClient::join(one).await.expect("one track is fine");
    client.leave().await;
    metric_reaches(
        &server,
        "switchboard_limit_hits_total{limit=\"tracks_per_participant\"}",
        1.0,
    )
    .await;
}

#[tokio::test]
async fn silent_connections_are_closed_and_live_ones_kept() {
    let server =
        TestServer::start_with(&["--ws-ping-interval", "0.3", "--ws-idle-timeout", "1"]).await;
    let url = server.ws_url();
    let mut live = connect(&url).await;
    join(&mut live, "idle", "Live", None).await;
    let mut silent = connect(&url).await;
    join(&mut silent, "idle", "Silent", None).await;
    recv_type(&mut live, "participant_joined").await;

    // `live` keeps reading, so its WebSocket answers the server's pings; `silent` reads
    // nothing, so its pongs never go out.
    // The server closes `silent` about 1 s after its join, then waits 2 s for its closing
    // handshake: read it in between, after the removal shows.
    let until = tokio::time::Instant::now() + Duration::from_millis(1600);
    let mut left = None;
    while tokio::time::Instant::now() < until {
        use futures_util::StreamExt;
        if let Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t)))) =
            tokio::time::timeout(Duration::from_millis(100), live.next()).await
        {
            let msg: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
            if msg["type"] == "participant_left" {
                left = Some(msg);
            }
        }
    }
    assert!(left.is_some(), "the silent participant was removed");
    assert_eq!(
        closed_with(&mut silent, Duration::from_secs(5)).await,
        CloseCode::from(4003)
    );
    expect_open(&mut live).await;
    assert_eq!(
        metric(
            &server,
            "switchboard_limit_hits_total{limit=\"idle_timeout\"}"
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn connections_per_ip_are_limited() {
    let server = TestServer::start_with(&["--max-connections-per-ip", "2"]).await;
    let url = server.ws_url();
    let mut first = connect(&url).await;
    join(&mut first, "per-ip", "First", None).await;
    let second = connect(&url).await;

    // The third from the same address is told why, then closed.
    let mut third = connect(&url).await;
    expect_error(&mut third, "too_many_connections").await;
    assert_eq!(
        closed_with(&mut third, Duration::from_secs(5)).await,
        CloseCode::Policy
    );
    expect_open(&mut first).await;

    // A connection closing frees its slot.
    drop(second);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut again = connect(&url).await;
    join(&mut again, "per-ip", "Again", None).await;
    metric_reaches(
        &server,
        "switchboard_limit_hits_total{limit=\"connections_per_ip\"}",
        1.0,
    )
    .await;
}

#[tokio::test]
async fn joins_per_ip_are_limited_per_minute() {
    let server = TestServer::start_with(&["--max-joins-per-ip-per-minute", "2"]).await;
    let url = server.ws_url();
    for name in ["One", "Two"] {
        let mut ws = connect(&url).await;
        join(&mut ws, "joins", name, None).await;
        send(&mut ws, r#"{"type":"leave"}"#).await;
    }
    // A new connection does not start a new budget.
    let mut ws = connect(&url).await;
    let reply = try_join(&mut ws, "joins", "Three", None).await;
    assert_eq!(reply["code"], "too_many_joins", "{reply}");
    assert_eq!(reply["id"], 1, "{reply}");
    expect_open(&mut ws).await;
    metric_reaches(
        &server,
        "switchboard_limit_hits_total{limit=\"joins_per_ip\"}",
        1.0,
    )
    .await;
}

/// Behind a named proxy the client is the right-most address in X-Forwarded-For that is not a
/// trusted proxy; without one, the header is the client's own word and is ignored.
#[tokio::test]
async fn per_ip_limits_see_through_trusted_proxies_only() {
    let server = TestServer::start_with(&[
        "--max-connections-per-ip",
        "1",
        "--trusted-proxy",
        "127.0.0.0/8,10.0.0.0/8",
    ])
    .await;
    let url = server.ws_url();
    // Two clients behind the proxy (at 127.0.0.1, which is trusted): one slot each.
    let mut a = connect_forwarded(&url, "203.0.113.1").await;
    join(&mut a, "proxied", "A", None).await;
    let mut b = connect_forwarded(&url, "203.0.113.2, 10.0.0.5").await;
    join(&mut b, "proxied-b", "B", None).await;
    // Client A again, having put a made-up address in front of its own: still A.
    let mut a2 = connect_forwarded(&url, "198.51.100.77, 203.0.113.1").await;
    expect_error(&mut a2, "too_many_connections").await;
    // The proxy itself (no header) is one more client.
    let mut direct = connect(&url).await;
    join(&mut direct, "proxied-direct", "Direct", None).await;
    expect_open(&mut a).await;
    expect_open(&mut b).await;

    // Without --trusted-proxy, the header changes nothing.
    let plain = TestServer::start_with(&["--max-connections-per-ip", "1"]).await;
    let url = plain.ws_url();
    let mut first = connect_forwarded(&url, "203.0.113.1").await;
    join(&mut first, "plain", "First", None).await;
    let mut spoofed = connect_forwarded(&url, "203.0.113.2").await;
    expect_error(&mut spoofed, "too_many_connections").await;
}
