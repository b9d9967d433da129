//! Calls through the real server with clients on an independent WebRTC stack (webrtc-rs, via
//! `switchboard-testkit`): every payload arrives intact at every other participant, late
//! joiners get everyone, and a participant who leaves has its tracks ended everywhere.

mod common;

use std::time::Duration;

use common::TestServer;
use switchboard_testkit::{ClientConfig, ReceivedStats, TestClient};

const MEDIA_TIMEOUT: Duration = Duration::from_secs(20);

/// `client` receives intact audio and video from `from`.
async fn expect_media_from(client: &TestClient, from: &TestClient) {
    let id = from.participant_id();
    let what = format!(
        "{} receiving {}'s audio and video",
        client.name(),
        from.name()
    );
    let result = client
        .wait_until(&what, MEDIA_TIMEOUT, |s: &ReceivedStats| {
            s.participant(&id).is_some_and(|p| {
                p.audio_packets() >= 50 && p.keyframes() >= 1 && p.video_frames() >= 20
            })
        })
        .await;
    if let Err(e) = result {
        panic!("{e:#}");
    }
    let stats = client.stats();
    let p = stats.participant(&id).expect("stats for the sender");
    assert_eq!(
        p.integrity_failures(),
        0,
        "{what}: corrupted payloads\n{stats}"
    );
    for track in p.tracks.values() {
        assert_eq!(
            track.sender_tag,
            Some(from.sender_tag()),
            "{what}: a track carries someone else's media\n{stats}"
        );
    }
}

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

/// With several media workers, worker 0 receives every datagram and hands each to the worker
/// owning its peer: calls in rooms on every worker carry intact media both ways, and the
/// server's counts add up over the workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_on_every_media_worker_carry_media() {
    const WORKERS: u8 = 3;
    let server = TestServer::start_with(&["--media-workers", &WORKERS.to_string()]).await;
    let url = server.ws_url();

    // One room per worker: a new room opens on the least loaded worker, and a room whose
    // worker already has one is closed again, until every worker has one.
    let mut firsts: Vec<Option<(String, TestClient)>> = (0..WORKERS).map(|_| None).collect();
    for n in 0..64 {
        if firsts.iter().all(Option::is_some) {
            break;
        }
        let room = format!("shard-{n}");
        let client = TestClient::join(ClientConfig::new(&url, &room, "First"))
            .await
            .unwrap_or_else(|e| panic!("joining {room}: {e:#}"));
        let worker = usize::from(worker_of(&client.participant_id()));
        match firsts.get_mut(worker) {
            Some(slot @ None) => *slot = Some((room, client)),
            Some(Some(_)) => client.leave().await,
            None => panic!(
                "participant {} names worker {worker} of {WORKERS}",
                client.participant_id()
            ),
        }
    }
    let firsts: Vec<(String, TestClient)> = firsts
        .into_iter()
        .map(|c| c.expect("a room on every worker within 64 names"))
        .collect();

    let mut pairs = Vec::new();
    for (room, first) in firsts {
        let second = TestClient::join(ClientConfig::new(&url, &room, "Second"))
            .await
            .unwrap_or_else(|e| panic!("joining {room}: {e:#}"));
        assert_eq!(
            worker_of(&second.participant_id()),
            worker_of(&first.participant_id()),
            "a room's participants share its worker"
        );
        first.start_media();
        second.start_media();
        pairs.push((first, second));
    }
    for (first, second) in &pairs {
        expect_media_from(first, second).await;
        expect_media_from(second, first).await;
    }
    let health = server.health().await.expect("healthy");
    assert_eq!(health["rooms"], u64::from(WORKERS), "{health}");
    assert_eq!(health["participants"], 2 * u64::from(WORKERS), "{health}");
    for (first, second) in pairs {
        first.leave().await;
        second.leave().await;
    }
}

/// docs/protocol.md, "Order of events": when a publisher joins, the others get
/// `participant_joined`, then `track_published` for each of its tracks, then one `offer`
/// carrying all of them (it used to be one offer per track, interleaved).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_publisher_is_announced_then_offered_once() {
    let server = TestServer::start().await;
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
