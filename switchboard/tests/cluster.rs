//! Rooms across nodes: several `switchboard serve` processes sharing a real `redis-server`,
//! each participant on its own node, clients on an independent WebRTC stack (webrtc-rs).

mod common;

use std::time::{Duration, Instant};

use common::redis::TestRedis;
use common::TestServer;
use switchboard_testkit::{ClientConfig, ReceivedStats, TestClient};

const MEDIA_TIMEOUT: Duration = Duration::from_secs(20);
const SECRET: &str = "cluster-test-secret-0123456789";

/// A node of the cluster whose registry is `redis`.
async fn node(redis: &TestRedis, extra: &[&str]) -> TestServer {
    let relay = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let url = redis.url();
    let relay = relay.to_string();
    let mut args = vec![
        "--redis",
        url.as_str(),
        "--cluster-secret",
        SECRET,
        "--relay-addr",
        relay.as_str(),
    ];
    args.extend_from_slice(extra);
    TestServer::start_with(&args).await
}

/// `client` receives intact audio and video from `from`.
async fn expect_media_from(client: &TestClient, from: &TestClient) {
    let id = from.participant_id();
    let what = format!("{} receiving {}'s media", client.name(), from.name());
    client
        .wait_until(&what, MEDIA_TIMEOUT, |s: &ReceivedStats| {
            s.participant(&id).is_some_and(|p| {
                p.audio_packets() >= 50 && p.keyframes() >= 1 && p.video_frames() >= 20
            })
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
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

/// Two nodes, one room: a participant on each sees and hears the other, a late joiner on
/// either node gets everyone in its `joined` reply, and a leave on one node is told on the
/// other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participants_on_different_nodes_share_a_room() {
    let redis = TestRedis::start().await;
    let a = node(&redis, &[]).await;
    let b = node(&redis, &[]).await;

    let ann = TestClient::join(ClientConfig::new(a.ws_url(), "cluster", "Ann"))
        .await
        .expect("Ann joins on A");
    let ben = TestClient::join(ClientConfig::new(b.ws_url(), "cluster", "Ben"))
        .await
        .expect("Ben joins on B");
    ann.start_media();
    ben.start_media();
    expect_media_from(&ben, &ann).await;
    expect_media_from(&ann, &ben).await;

    let cat = TestClient::join(ClientConfig::new(b.ws_url(), "cluster", "Cat"))
        .await
        .expect("Cat joins on B");
    let named: Vec<String> = cat.joined_message()["participants"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect();
    assert!(
        named.contains(&"Ann".to_owned()) && named.contains(&"Ben".to_owned()),
        "Cat's joined reply names everyone on both nodes: {named:?}"
    );
    cat.start_media();
    expect_media_from(&cat, &ann).await;
    expect_media_from(&ann, &cat).await;

    let ann_id = ann.participant_id();
    ann.leave().await;
    for client in [&ben, &cat] {
        client
            .wait_until(
                "told that Ann left",
                Duration::from_secs(5),
                |s: &ReceivedStats| s.saw_left(&ann_id),
            )
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
    }
    ben.leave().await;
    cat.leave().await;
}

/// A node killed with SIGKILL: within 5 s the participants on the other nodes are told that
/// its participants left, and the media between the surviving nodes never stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_is_noticed_and_the_others_keep_their_media() {
    let redis = TestRedis::start().await;
    let a = node(&redis, &[]).await;
    let b = node(&redis, &[]).await;
    let mut c = node(&redis, &[]).await;

    let ann = TestClient::join(ClientConfig::new(a.ws_url(), "fault", "Ann"))
        .await
        .expect("Ann joins on A");
    let ben = TestClient::join(ClientConfig::new(b.ws_url(), "fault", "Ben"))
        .await
        .expect("Ben joins on B");
    let cat = TestClient::join(ClientConfig::new(c.ws_url(), "fault", "Cat"))
        .await
        .expect("Cat joins on C");
    for client in [&ann, &ben, &cat] {
        client.start_media();
    }
    expect_media_from(&ann, &ben).await;
    expect_media_from(&ben, &ann).await;
    expect_media_from(&ann, &cat).await;

    let cat_id = cat.participant_id();
    let ben_id = ben.participant_id();
    let before = (
        ann.stats().audio_packets_from(&ben_id),
        ben.stats().audio_packets_from(&ann.participant_id()),
    );
    c.signal("KILL");
    let killed = Instant::now();
    assert!(c.exited_within(Duration::from_secs(2)).await.is_some());
    for client in [&ann, &ben] {
        client
            .wait_until(
                "told that Cat (on the killed node) left",
                Duration::from_secs(5),
                |s: &ReceivedStats| s.saw_left(&cat_id),
            )
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
    }
    let noticed = killed.elapsed();
    eprintln!("the kill was noticed on the other nodes after {noticed:?}");
    assert!(
        noticed < Duration::from_secs(5),
        "noticed after {noticed:?}"
    );
    // Ann and Ben kept hearing each other throughout: about 50 audio packets a second.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = (
        ann.stats().audio_packets_from(&ben_id),
        ben.stats().audio_packets_from(&ann.participant_id()),
    );
    let elapsed = killed.elapsed().as_secs_f64();
    for (what, got) in [
        ("Ann from Ben", after.0 - before.0),
        ("Ben from Ann", after.1 - before.1),
    ] {
        assert!(
            got as f64 >= 40.0 * elapsed,
            "{what}: {got} audio packets in the {elapsed:.1} s after the kill"
        );
    }
    ann.leave().await;
    ben.leave().await;
}
