//! Calls through the real server with clients on an independent WebRTC stack (webrtc-rs, via
//! `switchboard-testkit`): every payload arrives intact at every other participant, late
//! joiners get everyone, and a participant who leaves has its tracks ended everywhere.

mod common;

use std::time::Duration;

use common::TestServer;
use switchboard_testkit::{ClientConfig, ReceivedStats, TestClient};

use common::{expect_media_from, MEDIA_TIMEOUT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_participants_then_a_late_joiner_then_one_leaves() {
    let server = TestServer::start().await;
    let url = server.ws_url();

    let mut clients = Vec::new();
    for name in ["Ann", "Ben", "Cat"] {
        let client = TestClient::join(ClientConfig::new(&url, "call", name))
            .await
            .unwrap_or_else(|e| panic!("{name} could not join: {e:#}"));
        client.start_media();
        clients.push(client);
    }
    for client in &clients {
        for other in &clients {
            if client.participant_id() != other.participant_id() {
                expect_media_from(client, other).await;
            }
        }
    }

    // A late joiner receives everyone, and everyone receives it.
    let dan = TestClient::join(ClientConfig::new(&url, "call", "Dan"))
        .await
        .unwrap_or_else(|e| panic!("Dan could not join: {e:#}"));
    dan.start_media();
    assert_eq!(
        dan.joined_message()["participants"]
            .as_array()
            .map(Vec::len),
        Some(3),
        "the join reply lists everyone already there"
    );
    for other in &clients {
        expect_media_from(&dan, other).await;
        expect_media_from(other, &dan).await;
    }

    // Ben leaves: the others are told, and his tracks end on their connections.
    let ben = clients.remove(1);
    let ben_id = ben.participant_id();
    ben.leave().await;
    clients.push(dan);
    for client in &clients {
        let result = client
            .wait_until(
                &format!("{} seeing Ben leave", client.name()),
                MEDIA_TIMEOUT,
                |s| {
                    s.saw_left(&ben_id)
                        && s.participant(&ben_id).is_some_and(|p| p.all_tracks_ended())
                },
            )
            .await;
        if let Err(e) = result {
            panic!("{e:#}");
        }
    }
    let health = server.health().await.expect("healthy");
    assert_eq!(health["participants"], 3, "{health}");

    for client in clients {
        client.leave().await;
    }
    // Everyone gone: the room is dropped.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let health = server.health().await.expect("healthy");
        if health["rooms"] == 0 && health["participants"] == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "room not dropped: {health}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The media worker a participant id names (its low byte).
fn worker_of(participant_id: &str) -> u8 {
    let hex = participant_id
        .get(participant_id.len() - 2..)
        .expect("an id");
    u8::from_str_radix(hex, 16).expect("hex id")
}

/// A room spans media workers: with `--worker-spill-margin 0` every join goes to the least
/// loaded worker, so three participants of one room land on three workers. Each sees and
/// hears the others intact (through the in-process relay), is told when one leaves, and the
/// server counts one room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_room_spans_every_media_worker() {
    const WORKERS: u8 = 3;
    let server = TestServer::start_with(&[
        "--media-workers",
        &WORKERS.to_string(),
        "--worker-spill-margin",
        "0",
    ])
    .await;
    let url = server.ws_url();

    let mut clients = Vec::new();
    for name in ["Ann", "Ben", "Cat"] {
        let client = TestClient::join(ClientConfig::new(&url, "span", name))
            .await
            .unwrap_or_else(|e| panic!("{name} could not join: {e:#}"));
        client.start_media();
        clients.push(client);
    }
    let mut workers: Vec<u8> = clients
        .iter()
        .map(|c| worker_of(&c.participant_id()))
        .collect();
    workers.sort_unstable();
    assert_eq!(workers, [0, 1, 2], "one participant per worker");
    for receiver in &clients {
        for sender in clients.iter().filter(|c| c.name() != receiver.name()) {
            expect_media_from(receiver, sender).await;
        }
    }
    let health = server.health().await.expect("healthy");
    assert_eq!(health["rooms"], 1, "{health}");
    assert_eq!(health["participants"], 3, "{health}");

    // A late joiner gets everyone, wherever they are.
    let late = TestClient::join(ClientConfig::new(&url, "span", "Dan"))
        .await
        .expect("Dan joins");
    let others = late.joined_message()["participants"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(others, 3, "{}", late.joined_message());
    late.start_media();
    for sender in &clients {
        expect_media_from(&late, sender).await;
    }

    let leaver = clients.pop().expect("three clients");
    let leaver_id = leaver.participant_id();
    leaver.leave().await;
    for client in clients.iter().chain([&late]) {
        client
            .wait_until("told that Cat left", MEDIA_TIMEOUT, |s: &ReceivedStats| {
                s.saw_left(&leaver_id)
            })
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
    }
    for client in clients {
        client.leave().await;
    }
    late.leave().await;
}

/// The relay carries a track to another worker once, not once per subscriber there: one
/// publisher and six watchers spread over two workers (three of them beside the publisher,
/// three on the other worker). Every watcher receives everything intact, and the packets
/// relayed number what one watcher receives, not three times that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_track_crosses_to_another_worker_once() {
    const WATCHERS: usize = 6;
    let server =
        TestServer::start_with(&["--media-workers", "2", "--worker-spill-margin", "0"]).await;
    let url = server.ws_url();
    let publisher = TestClient::join(ClientConfig::new(&url, "economy", "Pub"))
        .await
        .expect("publisher joins");
    let mut watchers = Vec::new();
    for i in 0..WATCHERS {
        let mut config = ClientConfig::new(&url, "economy", format!("W{i}"));
        config.publish_audio = false;
        config.publish_video = false;
        watchers.push(TestClient::join(config).await.expect("watcher joins"));
    }
    let remote = watchers
        .iter()
        .filter(|w| worker_of(&w.participant_id()) != worker_of(&publisher.participant_id()))
        .count();
    assert_eq!(remote, WATCHERS / 2, "watchers spread over both workers");
    publisher.start_media();
    for watcher in &watchers {
        expect_media_from(watcher, &publisher).await;
    }
    // Let media flow a while, then compare what crossed with what one watcher got.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let metrics = common::ws::scrape(server.http_addr).await;
    let relayed = metrics["switchboard_relayed_packets_out_total"];
    let received_in = metrics["switchboard_relayed_packets_in_total"];
    let id = publisher.participant_id();
    let per_watcher: Vec<u64> = watchers
        .iter()
        .map(|w| w.stats().audio_packets_from(&id) + w.stats().video_packets_from(&id))
        .collect();
    let most = *per_watcher.iter().max().expect("watchers") as f64;
    eprintln!(
        "relayed {relayed} packets (arrived {received_in}); watchers received {per_watcher:?}"
    );
    assert!(relayed > 0.0, "nothing relayed: {metrics:?}");
    // Each worker publishes its counters once a second, so the two sides may be a second
    // apart.
    assert!(
        (relayed - received_in).abs() <= relayed * 0.2,
        "relayed {relayed}, arrived {received_in}"
    );
    assert!(
        relayed <= most * 1.1 + 100.0,
        "the relay carried {relayed} packets while one watcher received at most {most}: \
         a copy per remote subscriber?"
    );
    assert!(
        relayed >= most * 0.5,
        "the relay carried {relayed} packets, one watcher received {most}"
    );
    publisher.leave().await;
    for watcher in watchers {
        watcher.leave().await;
    }
}

/// docs/protocol.md, "Order of events": when a publisher joins, the others get
/// `participant_joined`, then `track_published` for each of its tracks, then one `offer`
/// carrying all of them (it used to be one offer per track, interleaved).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_publisher_is_announced_then_offered_once() {
    announced_then_offered_once(&[]).await;
}

/// The same order when the publisher is on another media worker than the watcher (the
/// events come through the relay).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_on_another_worker_is_announced_then_offered_once() {
    announced_then_offered_once(&["--media-workers", "2", "--worker-spill-margin", "0"]).await;
}

async fn announced_then_offered_once(server_flags: &[&str]) {
    let server = TestServer::start_with(server_flags).await;
    let url = server.ws_url();
    let mut watcher = ClientConfig::new(&url, "order", "Watcher");
    watcher.publish_audio = false;
    watcher.publish_video = false;
    let watcher = TestClient::join(watcher).await.expect("watcher joins");
    // What the watcher's own join brought (joined, answer, stats) is not under test.
    while watcher
        .next_message(Duration::from_millis(300))
        .await
        .is_ok()
    {}

    let publisher = TestClient::join(ClientConfig::new(&url, "order", "Publisher"))
        .await
        .expect("publisher joins");
    if server_flags.contains(&"--media-workers") {
        assert_ne!(
            worker_of(&publisher.participant_id()),
            worker_of(&watcher.participant_id()),
            "the publisher is on the other worker"
        );
    }
    let mut before = Vec::new();
    let first_offer = loop {
        let msg = watcher
            .next_message(Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("no offer for the publisher's tracks: {e}; got {before:?}"));
        match msg["type"].as_str() {
            Some("offer") => break msg,
            Some("stats") => {}
            _ => before.push(msg),
        }
    };
    let types: Vec<&str> = before.iter().map(|m| m["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        ["participant_joined", "track_published", "track_published"],
        "{before:?}"
    );
    // Anything else about the publisher, for a while after its tracks were offered.
    let mut later = Vec::new();
    while let Ok(msg) = watcher.next_message(Duration::from_secs(2)).await {
        later.push(msg);
    }
    drop(publisher);
    assert!(
        !later.iter().any(|m| m["type"] == "offer"),
        "a second offer followed: {later:?}"
    );
    assert!(
        !later.iter().any(|m| m["type"] == "track_published"),
        "a track was announced after the offer: {later:?}"
    );
    let tracks = first_offer["tracks"].as_object().expect("tracks map");
    let mut kinds: Vec<&str> = tracks
        .values()
        .map(|t| t["kind"].as_str().unwrap())
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        ["audio", "video"],
        "one offer for both: {first_offer}"
    );
}

/// SIGTERM in the middle of a call with media flowing both ways: the server ends within a
/// few seconds (closing the participants' WebSockets on the way), it does not wait for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_call_stops_the_server_within_seconds() {
    let mut server = TestServer::start().await;
    let url = server.ws_url();
    let mut clients = Vec::new();
    for name in ["Ann", "Ben"] {
        let client = TestClient::join(ClientConfig::new(&url, "term", name))
            .await
            .unwrap_or_else(|e| panic!("{name} could not join: {e:#}"));
        client.start_media();
        clients.push(client);
    }
    expect_media_from(&clients[0], &clients[1]).await;
    expect_media_from(&clients[1], &clients[0]).await;

    let sent_at = std::time::Instant::now();
    server.signal("TERM");
    let status = server
        .exited_within(Duration::from_secs(5))
        .await
        .expect("the server exits within 5 s of SIGTERM, mid-call");
    assert!(
        status.success(),
        "a SIGTERM shutdown exits cleanly: {status:?} after {:?}",
        sent_at.elapsed()
    );
}
