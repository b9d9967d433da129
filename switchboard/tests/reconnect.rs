//! Reconnection: a participant whose WebSocket drops keeps its session (and its media keeps
//! flowing) for the resume grace period; a new connection resumes it with the token from
//! `joined` without anyone seeing it leave; past the grace period it is removed as if it had
//! left, and nothing is left behind.

mod common;

use std::time::Duration;

use common::str0m_peer::{Role, Str0mPeer};
use common::ws::Ws;
use common::TestServer;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

async fn connect(server: &TestServer) -> Ws {
    common::ws::connect(&server.ws_url()).await
}

async fn request(ws: &mut Ws, message: Value) -> Value {
    ws.send(Message::Text(message.to_string().into()))
        .await
        .expect("send");
    next(ws, Duration::from_secs(5)).await.expect("a reply")
}

/// The next JSON message within `timeout`, if any, skipping the periodic `stats`.
async fn next(ws: &mut Ws, timeout: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .ok()??
            .ok()?;
        if let Message::Text(text) = frame {
            let message: Value = serde_json::from_str(text.as_str()).ok()?;
            if message["type"] != "stats" {
                return Some(message);
            }
        }
    }
}

async fn participants(server: &TestServer) -> u64 {
    server.health().await.expect("healthy")["participants"]
        .as_u64()
        .expect("a count")
}

/// The next message that is not about tracks or stats: joins and leaves.
async fn next_membership(ws: &mut Ws, timeout: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let message = next(ws, left).await?;
        if message["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("participant_"))
        {
            return Some(message);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_resumes_within_the_grace_period_and_expires_after_it() {
    let server = TestServer::start_with(&["--resume-grace", "3"]).await;
    let mut bystander = connect(&server).await;
    request(
        &mut bystander,
        json!({"type": "join", "room": "rc", "name": "Bystander"}),
    )
    .await;
    let mut alice = Str0mPeer::start(
        &server.ws_url(),
        "rc",
        "Alice",
        Role::Publisher,
        server.rtc_addr,
        None,
    )
    .await;
    alice
        .wait_for("Alice's media to connect", Duration::from_secs(20), |r| {
            r.connected
        })
        .await;
    let (id, token) = {
        let r = alice.recorded();
        (r.participant_id.clone(), r.resume_token.clone())
    };
    assert_eq!(token.len(), 32, "joined carries a resume token");
    let joined = next_membership(&mut bystander, Duration::from_secs(5))
        .await
        .expect("told");
    assert_eq!(joined["type"], "participant_joined");

    // The connection drops (no close frame, no leave): nobody is told, the session stays.
    alice.drop_signaling();
    assert_eq!(
        next_membership(&mut bystander, Duration::from_millis(1500)).await,
        None,
        "the bystander saw nothing"
    );
    assert_eq!(participants(&server).await, 2);

    // A wrong token is refused; the right one resumes, with the room as it is.
    let mut thief = connect(&server).await;
    let refused = request(
        &mut thief,
        json!({"type": "resume", "id": 3, "participant_id": id, "resume_token": "0".repeat(32)}),
    )
    .await;
    assert_eq!(
        (refused["type"].as_str(), refused["code"].as_str()),
        (Some("error"), Some("unknown_session"))
    );
    let mut resumed_ws = connect(&server).await;
    let resumed = request(
        &mut resumed_ws,
        json!({"type": "resume", "id": 4, "participant_id": id, "resume_token": token}),
    )
    .await;
    assert_eq!(resumed["type"], "resumed", "{resumed}");
    assert_eq!(resumed["id"], 4);
    assert_eq!(resumed["participants"][0]["name"], "Bystander");
    let pong = request(&mut resumed_ws, json!({"type": "ping", "id": 5})).await;
    assert_eq!(pong["type"], "pong", "the resumed connection works");
    assert_eq!(
        next_membership(&mut bystander, Duration::from_millis(500)).await,
        None
    );

    // Dropped again and not resumed: after the grace period it is gone for everyone.
    drop(resumed_ws);
    let left = next_membership(&mut bystander, Duration::from_secs(8))
        .await
        .expect("told after the grace period");
    assert_eq!(
        (left["type"].as_str(), left["participant_id"].as_str()),
        (Some("participant_left"), Some(id.as_str()))
    );
    assert_eq!(participants(&server).await, 1);
    let mut late = connect(&server).await;
    let refused = request(
        &mut late,
        json!({"type": "resume", "participant_id": id, "resume_token": token}),
    )
    .await;
    assert_eq!(refused["code"], "unknown_session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_keeps_flowing_while_signaling_is_down() {
    let server = TestServer::start_with(&["--resume-grace", "30"]).await;
    let url = server.ws_url();
    let mut publisher =
        Str0mPeer::start(&url, "rc2", "Pub", Role::Publisher, server.rtc_addr, None).await;
    let mut subscriber =
        Str0mPeer::start(&url, "rc2", "Sub", Role::Subscriber, server.rtc_addr, None).await;
    subscriber
        .wait_for("media", Duration::from_secs(20), |r| {
            r.video_within(Duration::from_secs(1)) > 10
                && r.audio_within(Duration::from_secs(1)) > 20
        })
        .await;
    publisher.drop_signaling();
    subscriber.drop_signaling();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (video, audio) = {
        let r = subscriber.recorded();
        (
            r.video_within(Duration::from_secs(1)),
            r.audio_within(Duration::from_secs(1)),
        )
    };
    assert!(video > 10, "video stopped when signaling dropped");
    assert!(audio > 20, "audio stopped when signaling dropped");
    assert_eq!(participants(&server).await, 2, "both sessions are kept");
}

/// A network change leaves the old WebSocket half-open while the client resumes on a new one.
/// When the old one finally closes (here with a close frame, which ends a session it still
/// owned), it must not take the resumed session with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_a_session_was_resumed_from_cannot_end_it() {
    let server = TestServer::start().await;
    let mut old = connect(&server).await;
    let joined = request(
        &mut old,
        json!({"type": "join", "room": "half-open", "name": "Mover"}),
    )
    .await;
    assert_eq!(joined["type"], "joined", "{joined}");
    let (id, token) = (
        joined["participant_id"].clone(),
        joined["resume_token"].clone(),
    );

    let mut new = connect(&server).await;
    let resumed = request(
        &mut new,
        json!({"type": "resume", "id": 1, "participant_id": id, "resume_token": token}),
    )
    .await;
    assert_eq!(resumed["type"], "resumed", "{resumed}");

    old.close(None).await.expect("close frame sent");
    while old.next().await.is_some() {}
    // The close is handled by the time the old connection is gone; give the media worker a
    // moment for anything it would have been asked to do.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        participants(&server).await,
        1,
        "the resumed session lives on"
    );
    let pong = request(&mut new, json!({"type": "ping", "id": 2})).await;
    assert_eq!(pong["type"], "pong", "and its connection works");

    // The connection that owns the session still ends it with a close frame.
    new.close(None).await.expect("close frame sent");
    while new.next().await.is_some() {}
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while participants(&server).await != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the owner's close ends the session"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
