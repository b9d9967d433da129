//! Access control: with an API secret, joins need a valid token for their room, the token's
//! name wins, its grants are enforced by the SFU (checked with independent webrtc-rs
//! clients), and the room API answers only admin tokens.

mod common;

use std::time::Duration;

use common::ws::*;
use common::TestServer;
use serde_json::json;
use signaling::auth::{Auth, TokenRequest};
use switchboard_testkit::{ClientConfig, ReceivedStats, TestClient};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const MEDIA_TIMEOUT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn joins_need_a_valid_token_for_their_room() {
    let server = TestServer::start_with(&key_flags()).await;
    let url = server.ws_url();
    let mut bystander = connect(&url).await;
    join(
        &mut bystander,
        "secure",
        "ignored",
        Some(&token("by", Some("secure"), PUBLISH_SUBSCRIBE)),
    )
    .await;

    let other_key = Auth::new("other-key", API_SECRET)
        .mint(&TokenRequest {
            identity: "x".into(),
            name: None,
            room: Some("secure".into()),
            grants: PUBLISH_SUBSCRIBE,
            ttl: Duration::from_secs(60),
        })
        .unwrap();
    let wrong_secret = Auth::new(API_KEY, "not the secret")
        .mint(&TokenRequest {
            identity: "x".into(),
            name: None,
            room: Some("secure".into()),
            grants: PUBLISH_SUBSCRIBE,
            ttl: Duration::from_secs(60),
        })
        .unwrap();
    let expired = Auth::new(API_KEY, API_SECRET)
        .mint_at(
            &TokenRequest {
                identity: "x".into(),
                name: None,
                room: Some("secure".into()),
                grants: PUBLISH_SUBSCRIBE,
                ttl: Duration::from_secs(60),
            },
            std::time::SystemTime::now() - Duration::from_secs(3600),
        )
        .unwrap();
    let for_another_room = token("x", Some("elsewhere"), PUBLISH_SUBSCRIBE);
    for bad in [
        None,
        Some("garbage"),
        Some(other_key.as_str()),
        Some(wrong_secret.as_str()),
        Some(expired.as_str()),
        Some(for_another_room.as_str()),
    ] {
        let mut ws = connect(&url).await;
        let reply = try_join(&mut ws, "secure", "Mallory", bad).await;
        assert_eq!(reply["type"], "error", "{bad:?} got {reply}");
        assert_eq!(reply["code"], "unauthorized", "{reply}");
        assert_eq!(reply["id"], 1);
        assert_eq!(
            closed_with(&mut ws, Duration::from_secs(5)).await,
            CloseCode::Policy
        );
    }

    // A valid token: its name wins over the join message's.
    let named = Auth::new(API_KEY, API_SECRET)
        .mint(&TokenRequest {
            identity: "carol".into(),
            name: Some("Carol From Token".into()),
            room: Some("secure".into()),
            grants: SUBSCRIBE_ONLY,
            ttl: Duration::from_secs(60),
        })
        .unwrap();
    let mut ws = connect(&url).await;
    let joined = join(&mut ws, "secure", "Typed Name", Some(&named)).await;
    assert_eq!(
        joined["permissions"],
        json!({"publish": false, "subscribe": true})
    );
    let seen = recv_type(&mut bystander, "participant_joined").await;
    assert_eq!(seen["participant"]["name"], "Carol From Token");
    expect_open(&mut bystander).await;
    let health = server.health().await.expect("healthy");
    assert_eq!(
        health["participants"], 2,
        "only the two valid joins: {health}"
    );
}

#[tokio::test]
async fn development_mode_needs_no_token_and_has_no_room_api() {
    let server = TestServer::start().await;
    let mut ws = connect(&server.ws_url()).await;
    let joined = join(&mut ws, "dev", "Dev", None).await;
    assert_eq!(
        joined["permissions"],
        json!({"publish": true, "subscribe": true})
    );
    let (status, body) = http_json(server.http_addr, "GET", "/api/rooms", None, None).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "forbidden");
    // Stats stay open for debugging when nothing is secret anyway.
    let (status, body) = http_json(server.http_addr, "GET", "/api/stats", None, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["participants"][0]["name"], "Dev", "{body}");
}

/// `/api/stats` names every participant of every room: with an API secret it is the room
/// API's business, and a room admin sees its own room only.
#[tokio::test]
async fn stats_need_an_admin_token_in_production() {
    let server = TestServer::start_with(&key_flags()).await;
    let addr = server.http_addr;
    let mut alice = connect(&server.ws_url()).await;
    join(
        &mut alice,
        "ops",
        "Alice",
        Some(&token("alice", Some("ops"), PUBLISH_SUBSCRIBE)),
    )
    .await;
    let mut carol = connect(&server.ws_url()).await;
    join(
        &mut carol,
        "other",
        "Carol",
        Some(&token("carol", Some("other"), PUBLISH_SUBSCRIBE)),
    )
    .await;

    let (status, body) = http_json(addr, "GET", "/api/stats", None, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized")),
        "{body}"
    );
    assert!(!body.to_string().contains("Alice"), "{body}");
    let participant = token("alice", Some("ops"), PUBLISH_SUBSCRIBE);
    let (status, body) = http_json(addr, "GET", "/api/stats", Some(&participant), None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );

    let names = |body: &serde_json::Value| -> Vec<String> {
        let mut names: Vec<String> = body["participants"]
            .as_array()
            .unwrap_or_else(|| panic!("no participants in {body}"))
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    };
    let admin = token("ops", None, ADMIN);
    let (status, body) = http_json(addr, "GET", "/api/stats", Some(&admin), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(names(&body), ["Alice", "Carol"]);
    let room_admin = token("ops2", Some("other"), ADMIN);
    let (status, body) = http_json(addr, "GET", "/api/stats", Some(&room_admin), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(names(&body), ["Carol"]);
}

async fn media_from(client: &TestClient, from: &TestClient) {
    let id = from.participant_id();
    let what = format!("{} receiving {}", client.name(), from.name());
    client
        .wait_until(&what, MEDIA_TIMEOUT, |s: &ReceivedStats| {
            s.participant(&id)
                .is_some_and(|p| p.audio_packets() >= 20 && p.video_frames() >= 10)
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_are_enforced_by_the_server() {
    let server = TestServer::start_with(&key_flags()).await;
    let url = server.ws_url();
    let config = |name: &str, grants, publish: bool| {
        let mut c = ClientConfig::new(&url, "grants", name);
        c.token = Some(token(name, Some("grants"), grants));
        c.publish_audio = publish;
        c.publish_video = publish;
        c
    };

    // A subscribe-only participant that tries to publish is refused with `forbidden`.
    let err = match TestClient::join(config("Sneaky", SUBSCRIBE_ONLY, true)).await {
        Ok(_) => panic!("a subscribe-only client published"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("forbidden"), "{err}");

    let ann = TestClient::join(config("Ann", PUBLISH_SUBSCRIBE, true))
        .await
        .expect("Ann joins");
    ann.start_media();
    let viewer = TestClient::join(config("Viewer", SUBSCRIBE_ONLY, false))
        .await
        .expect("Viewer joins");
    let camera = TestClient::join(config("Camera", PUBLISH_ONLY, true))
        .await
        .expect("Camera joins");
    camera.start_media();

    media_from(&viewer, &ann).await;
    media_from(&viewer, &camera).await;
    media_from(&ann, &camera).await;
    // The publish-only camera was never offered anyone's tracks.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = camera.stats();
    assert_eq!(
        stats
            .participant(&ann.participant_id())
            .map_or(0, |p| p.tracks.len()),
        0,
        "a participant without subscribe received tracks\n{stats}"
    );
    let (_, metrics) = http(server.http_addr, "GET", "/metrics", None, None).await;
    assert!(
        metrics.contains("switchboard_publish_refused_total 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("switchboard_signaling_errors_total{code=\"forbidden\"} 1\n"),
        "{metrics}"
    );
    for c in [ann, viewer, camera] {
        c.leave().await;
    }
}

#[tokio::test]
async fn the_room_api_answers_admin_tokens_only() {
    let server = TestServer::start_with(&key_flags()).await;
    let url = server.ws_url();
    let addr = server.http_addr;
    let mut alice = connect(&url).await;
    let joined = join(
        &mut alice,
        "ops",
        "Alice",
        Some(&token("alice", Some("ops"), PUBLISH_SUBSCRIBE)),
    )
    .await;
    let alice_id = joined["participant_id"].as_str().unwrap().to_owned();
    let mut bob = connect(&url).await;
    let joined = join(
        &mut bob,
        "ops",
        "Bob",
        Some(&token("bob", Some("ops"), PUBLISH_SUBSCRIBE)),
    )
    .await;
    let bob_id = joined["participant_id"].as_str().unwrap().to_owned();
    recv_type(&mut alice, "participant_joined").await;
    let mut carol = connect(&url).await;
    join(
        &mut carol,
        "other",
        "Carol",
        Some(&token("carol", Some("other"), PUBLISH_SUBSCRIBE)),
    )
    .await;

    // Refusals.
    let (status, body) = http_json(addr, "GET", "/api/rooms", None, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized")),
        "{body}"
    );
    let (status, body) = http_json(addr, "GET", "/api/rooms", Some("nonsense"), None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized")),
        "{body}"
    );
    let participant = token("alice", Some("ops"), PUBLISH_SUBSCRIBE);
    let (status, body) = http_json(addr, "GET", "/api/rooms/ops", Some(&participant), None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    let other_admin = token("ops2", Some("other"), ADMIN);
    let (status, _) = http_json(addr, "DELETE", "/api/rooms/ops", Some(&other_admin), None).await;
    assert_eq!(status, 403);

    // Listing: a global admin sees every room; a room admin only its own.
    let admin = token("ops", None, ADMIN);
    let (status, body) = http_json(addr, "GET", "/api/rooms", Some(&admin), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["rooms"],
        json!([{"room": "ops", "participants": 2}, {"room": "other", "participants": 1}])
    );
    let (_, body) = http_json(addr, "GET", "/api/rooms", Some(&other_admin), None).await;
    assert_eq!(body["rooms"], json!([{"room": "other", "participants": 1}]));
    let (status, body) = http_json(addr, "GET", "/api/rooms/ops", Some(&admin), None).await;
    assert_eq!(status, 200, "{body}");
    let names: Vec<&str> = body["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"Alice") && names.contains(&"Bob"), "{body}");
    let (status, body) = http_json(addr, "GET", "/api/rooms/nowhere", Some(&admin), None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );

    // Muting an unknown track, and a malformed body.
    let (status, _) = http_json(
        addr,
        "POST",
        "/api/rooms/ops/tracks/Tnope/mute",
        Some(&admin),
        Some(r#"{"muted":true}"#),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = http_json(
        addr,
        "POST",
        "/api/rooms/ops/tracks/Tnope/mute",
        Some(&admin),
        Some("muted"),
    )
    .await;
    assert_eq!(status, 400);

    // Removing Bob: he is closed with 4001, Alice sees him leave.
    let path = format!("/api/rooms/ops/participants/{bob_id}");
    let (status, body) = http_json(addr, "DELETE", &path, Some(&admin), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        closed_with(&mut bob, Duration::from_secs(5)).await,
        CloseCode::from(4001)
    );
    let left = recv_type(&mut alice, "participant_left").await;
    assert_eq!(
        left,
        json!({"type": "participant_left", "participant_id": bob_id})
    );
    let (status, _) = http_json(addr, "DELETE", &path, Some(&admin), None).await;
    assert_eq!(status, 404, "already gone");
    let wrong_room = format!("/api/rooms/other/participants/{alice_id}");
    let (status, _) = http_json(addr, "DELETE", &wrong_room, Some(&admin), None).await;
    assert_eq!(
        status, 404,
        "a participant is removed only through its own room"
    );

    // Closing the room: Alice is closed with 4002; Carol's room is untouched.
    let (status, body) = http_json(addr, "DELETE", "/api/rooms/ops", Some(&admin), None).await;
    assert_eq!((status, &body["removed"]), (200, &json!(1)), "{body}");
    assert_eq!(
        closed_with(&mut alice, Duration::from_secs(5)).await,
        CloseCode::from(4002)
    );
    expect_open(&mut carol).await;
    let (_, body) = http_json(addr, "GET", "/api/rooms", Some(&admin), None).await;
    assert_eq!(body["rooms"], json!([{"room": "other", "participants": 1}]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_room_api_mutes_a_published_track() {
    let server = TestServer::start_with(&key_flags()).await;
    let url = server.ws_url();
    let mut c = ClientConfig::new(&url, "mute", "Pub");
    c.token = Some(token("pub", Some("mute"), PUBLISH_SUBSCRIBE));
    c.publish_video = false;
    let publisher = TestClient::join(c).await.expect("join");
    publisher.start_media();
    let mut c = ClientConfig::new(&url, "mute", "Watcher");
    c.token = Some(token("w", Some("mute"), SUBSCRIBE_ONLY));
    (c.publish_audio, c.publish_video) = (false, false);
    let watcher = TestClient::join(c).await.expect("join");
    let track = &watcher.joined_message()["participants"][0]["tracks"][0];
    assert_eq!(track["kind"], "audio", "{track}");
    let track_id = track["track_id"].as_str().unwrap().to_owned();
    let pub_id = publisher.participant_id();
    let audio = |c: &TestClient| c.stats().audio_packets_from(&pub_id);
    watcher
        .wait_until("audio flowing", Duration::from_secs(10), |s| {
            s.audio_packets_from(&pub_id) > 20
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));

    let admin = token("ops", Some("mute"), ADMIN);
    let path = format!("/api/rooms/mute/tracks/{track_id}/mute");
    let (status, body) = http_json(
        server.http_addr,
        "POST",
        &path,
        Some(&admin),
        Some(r#"{"muted":true}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for client in [&watcher, &publisher] {
        let muted = client
            .wait_for_message("track_muted", Duration::from_secs(5), |m| {
                m["type"] == "track_muted"
            })
            .await
            .expect("everyone is told, the publisher too");
        assert_eq!(
            (muted["track_id"].as_str(), &muted["muted"]),
            (Some(track_id.as_str()), &json!(true))
        );
    }
    // The server stops forwarding it (the publisher keeps sending), and the publisher
    // cannot unmute it itself.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopped_at = audio(&watcher);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        audio(&watcher) <= stopped_at + 2,
        "muted media still forwarded"
    );
    let id = publisher.next_request_id();
    let mid = publisher
        .peer()
        .local_mids()
        .await
        .expect("mids")
        .into_keys()
        .next()
        .expect("a mid");
    publisher
        .send_json(&json!({"type": "mute", "id": id, "mid": mid, "muted": false}))
        .expect("send");
    let refused = publisher
        .wait_for_message("forbidden", Duration::from_secs(5), |m| {
            m["type"] == "error"
        })
        .await
        .expect("an error");
    assert_eq!(
        (refused["code"].as_str(), refused["id"].as_u64()),
        (Some("forbidden"), Some(id))
    );
    let (_, body) = http_json(
        server.http_addr,
        "GET",
        "/api/rooms/mute",
        Some(&admin),
        None,
    )
    .await;
    let publisher_json = body["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["participant_id"] == pub_id.as_str())
        .cloned()
        .unwrap();
    assert_eq!(publisher_json["tracks"][0]["muted"], true, "{body}");

    // Unmuted by the operator: media flows again.
    let (status, _) = http_json(
        server.http_addr,
        "POST",
        &path,
        Some(&admin),
        Some(r#"{"muted":false}"#),
    )
    .await;
    assert_eq!(status, 200);
    let resumed_from = audio(&watcher);
    watcher
        .wait_until("audio resumed", Duration::from_secs(5), |s| {
            s.audio_packets_from(&pub_id) > resumed_from + 20
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    publisher.leave().await;
    watcher.leave().await;
}
