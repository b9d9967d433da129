//! Draining (docs/api.md, "Draining"): SIGUSR1 or `POST /api/drain` takes the server out of
//! service. Connected clients are closed with 1012 (reconnect), new joins and resumes are
//! refused with `server_draining`, `/healthz` answers 503, and the process exits once empty
//! or at `--drain-deadline`.

mod common;

use std::time::{Duration, Instant};

use common::ws::*;
use common::TestServer;
use serde_json::json;
use switchboard_testkit::{ClientConfig, TestClient};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

#[tokio::test]
async fn the_drain_api_closes_every_connection_and_the_server_exits_when_empty() {
    let mut flags = key_flags();
    flags.extend(["--drain-deadline", "60"]);
    let mut server = TestServer::start_with(&flags).await;
    let addr = server.http_addr;
    let url = server.ws_url();
    let mut alice = connect(&url).await;
    join(
        &mut alice,
        "drain",
        "Alice",
        Some(&token("alice", Some("drain"), PUBLISH_SUBSCRIBE)),
    )
    .await;
    let mut bob = connect(&url).await;
    join(
        &mut bob,
        "drain",
        "Bob",
        Some(&token("bob", Some("drain"), PUBLISH_SUBSCRIBE)),
    )
    .await;
    recv_type(&mut alice, "participant_joined").await;
    let mut lurker = connect(&url).await; // connected, not joined

    // Only an admin token for every room may drain.
    let (status, body) = http_json(addr, "POST", "/api/drain", None, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized"))
    );
    let participant = token("alice", Some("drain"), PUBLISH_SUBSCRIBE);
    let (status, _) = http_json(addr, "POST", "/api/drain", Some(&participant), None).await;
    assert_eq!(status, 403);
    let room_admin = token("ops", Some("drain"), ADMIN);
    let (status, body) = http_json(addr, "POST", "/api/drain", Some(&room_admin), None).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("forbidden")));
    expect_open(&mut alice).await;

    let admin = token("ops", None, ADMIN);
    let (status, body) = http_json(addr, "POST", "/api/drain", Some(&admin), None).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["draining"], true, "{body}");
    for ws in [&mut alice, &mut bob, &mut lurker] {
        assert_eq!(
            closed_with(ws, Duration::from_secs(5)).await,
            CloseCode::Restart,
            "1012: reconnect"
        );
    }
    // Empty now: the process ends well before the 60 s deadline, successfully.
    let status = server
        .exited_within(Duration::from_secs(10))
        .await
        .expect("the drained server exits once empty");
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr1_drains_refuses_joins_and_exits_at_the_deadline() {
    let mut server =
        TestServer::start_with(&["--drain-deadline", "4", "--resume-grace", "120"]).await;
    let url = server.ws_url();
    // A participant with media whose signaling dropped: the server keeps its session for the
    // resume grace, so the server is not empty when the drain starts.
    let client = TestClient::join(ClientConfig::new(&url, "drain", "Away"))
        .await
        .expect("join with media");
    let joined = client.joined_message().clone();
    // Dropped without a close frame (its tasks end, the socket just closes): detached.
    drop(client);
    let deadline = Instant::now() + Duration::from_secs(5);
    while scrape(server.http_addr).await["switchboard_websocket_connections"] != 0.0 {
        assert!(Instant::now() < deadline, "the server did not see the drop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut present = connect(&url).await;
    join(&mut present, "drain", "Present", None).await;

    server.signal("USR1");
    let drained_at = Instant::now();
    assert_eq!(
        closed_with(&mut present, Duration::from_secs(5)).await,
        CloseCode::Restart
    );

    // Load balancers are told to send no one new.
    let (status, body) = http_json(server.http_addr, "GET", "/healthz", None, None).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (503, Some("draining")),
        "{body}"
    );
    let metrics = scrape(server.http_addr).await;
    assert_eq!(metrics.get("switchboard_draining"), Some(&1.0));
    // New joins and resumes are refused, retryably: the connection stays open.
    let mut newcomer = connect(&url).await;
    let reply = try_join(&mut newcomer, "drain", "Late", None).await;
    assert_eq!(reply["code"], "server_draining", "{reply}");
    send(
        &mut newcomer,
        json!({"type": "resume", "id": 2,
               "participant_id": joined["participant_id"], "resume_token": joined["resume_token"]})
        .to_string(),
    )
    .await;
    let reply = expect_error(&mut newcomer, "server_draining").await;
    assert_eq!(reply["id"], 2);
    expect_open(&mut newcomer).await;
    drop(newcomer);

    // The detached session never leaves by itself within the grace: the deadline ends it.
    let status = server
        .exited_within(Duration::from_secs(10))
        .await
        .expect("the server exits at the drain deadline");
    assert!(status.success(), "{status:?}");
    let took = drained_at.elapsed();
    assert!(
        took >= Duration::from_millis(3500),
        "exited after {took:?}, before the 4 s deadline, with a session left"
    );
}
