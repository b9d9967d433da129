//! Rooms across nodes: several `switchboard serve` processes sharing a real `redis-server`,
//! each participant on its own node, clients on an independent WebRTC stack (webrtc-rs).

mod common;

use std::time::{Duration, Instant};

use common::redis::TestRedis;
use common::TestServer;
use switchboard_testkit::{ClientConfig, ReceivedStats, TestClient};

use common::{expect_media_from, MEDIA_TIMEOUT};
const SECRET: &str = "cluster-test-secret-0123456789";

/// A node of the cluster whose registry is `redis`.
async fn node(redis: &TestRedis, extra: &[&str]) -> TestServer {
    node_with_relay(redis, extra).await.0
}

/// A node, and the port its relay listens on.
async fn node_with_relay(redis: &TestRedis, extra: &[&str]) -> (TestServer, u16) {
    let relay = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let port = relay.port();
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
    (TestServer::start_with(&args).await, port)
}

/// Audio packets `client` has received from `from` so far.
fn audio_from(client: &TestClient, from: &TestClient) -> u64 {
    client.stats().audio_packets_from(&from.participant_id())
}

/// `client` receives `more` audio packets from `from` within `within`.
async fn audio_flows(client: &TestClient, from: &TestClient, more: u64, within: Duration) {
    let start = audio_from(client, from);
    let id = from.participant_id();
    let what = format!("{} hearing {} again", client.name(), from.name());
    client
        .wait_until(&what, within, |s: &ReceivedStats| {
            s.audio_packets_from(&id) >= start + more
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
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

/// Redis stopped for 10 s and started again empty: the call between two nodes never stops,
/// a participant joins meanwhile (a join does not need Redis) and gets media from the other
/// node, and a node started after Redis is back is found and linked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_survive_a_redis_outage_and_the_registry_is_rebuilt() {
    let mut redis = TestRedis::start().await;
    let a = node(&redis, &[]).await;
    let b = node(&redis, &[]).await;
    let ann = TestClient::join(ClientConfig::new(a.ws_url(), "outage", "Ann"))
        .await
        .expect("Ann joins on A");
    let ben = TestClient::join(ClientConfig::new(b.ws_url(), "outage", "Ben"))
        .await
        .expect("Ben joins on B");
    ann.start_media();
    ben.start_media();
    expect_media_from(&ben, &ann).await;
    expect_media_from(&ann, &ben).await;

    redis.kill();
    let stopped = Instant::now();
    let before = (audio_from(&ann, &ben), audio_from(&ben, &ann));
    let dan = TestClient::join(ClientConfig::new(b.ws_url(), "outage", "Dan"))
        .await
        .expect("a join while Redis is down");
    dan.start_media();
    expect_media_from(&dan, &ann).await;
    expect_media_from(&ann, &dan).await;
    let left = stopped + Duration::from_secs(10);
    tokio::time::sleep(left.saturating_duration_since(Instant::now())).await;
    let down_for = stopped.elapsed().as_secs_f64();
    for (what, got) in [
        ("Ann from Ben", audio_from(&ann, &ben) - before.0),
        ("Ben from Ann", audio_from(&ben, &ann) - before.1),
    ] {
        assert!(
            got as f64 >= 40.0 * down_for,
            "{what}: {got} audio packets in the {down_for:.1} s without Redis"
        );
    }

    redis.restart().await;
    let c = node(&redis, &[]).await;
    let cat = TestClient::join(ClientConfig::new(c.ws_url(), "outage", "Cat"))
        .await
        .expect("Cat joins on the new node");
    cat.start_media();
    expect_media_from(&cat, &ann).await;
    expect_media_from(&ben, &cat).await;
    for client in [ann, ben, cat, dan] {
        client.leave().await;
    }
}

/// The relay link between two nodes blocked for 10 s (iptables, inside the test's own
/// namespace): it is rebuilt on its own once the path opens, media flows again, and nobody is
/// told anyone left (the node was never dead: Redis kept seeing it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_relay_link_is_rebuilt() {
    let redis = TestRedis::start().await;
    let (a, relay_a) = node_with_relay(&redis, &[]).await;
    let (b, relay_b) = node_with_relay(&redis, &[]).await;
    let ann = TestClient::join(ClientConfig::new(a.ws_url(), "link", "Ann"))
        .await
        .expect("Ann joins on A");
    let ben = TestClient::join(ClientConfig::new(b.ws_url(), "link", "Ben"))
        .await
        .expect("Ben joins on B");
    ann.start_media();
    ben.start_media();
    expect_media_from(&ben, &ann).await;
    expect_media_from(&ann, &ben).await;

    let rules: Vec<Vec<String>> = [relay_a, relay_b]
        .iter()
        .flat_map(|port| {
            ["--dport", "--sport"].map(|side| {
                ["INPUT", "-p", "tcp", side, &port.to_string(), "-j", "DROP"]
                    .map(str::to_owned)
                    .to_vec()
            })
        })
        .collect();
    let iptables = |op: &str| {
        for rule in &rules {
            let status = std::process::Command::new("iptables")
                .arg(op)
                .args(rule)
                .status()
                .expect("run iptables (scripts/install-test-deps installs it)");
            assert!(status.success(), "iptables {op} {rule:?}");
        }
    };
    iptables("-I");
    tokio::time::sleep(Duration::from_secs(10)).await;
    iptables("-D");
    let opened = Instant::now();
    audio_flows(&ann, &ben, 100, Duration::from_secs(15)).await;
    audio_flows(&ben, &ann, 100, Duration::from_secs(15)).await;
    eprintln!(
        "media flowed again {:?} after the path opened",
        opened.elapsed()
    );
    expect_media_from(&ben, &ann).await;
    let (ann_id, ben_id) = (ann.participant_id(), ben.participant_id());
    assert!(!ann.stats().saw_left(&ben_id), "Ann was told Ben left");
    assert!(!ben.stats().saw_left(&ann_id), "Ben was told Ann left");
    ann.leave().await;
    ben.leave().await;
}

/// A track crosses to another node once: one publisher on node A and four watchers on node
/// B; the packets A sends to B number what one watcher receives, not four times that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_track_crosses_to_another_node_once() {
    const WATCHERS: usize = 4;
    let redis = TestRedis::start().await;
    let a = node(&redis, &[]).await;
    let b = node(&redis, &[]).await;
    let publisher = TestClient::join(ClientConfig::new(a.ws_url(), "economy", "Pub"))
        .await
        .expect("publisher joins on A");
    let mut watchers = Vec::new();
    for i in 0..WATCHERS {
        let mut config = ClientConfig::new(b.ws_url(), "economy", format!("W{i}"));
        config.publish_audio = false;
        config.publish_video = false;
        watchers.push(TestClient::join(config).await.expect("watcher joins on B"));
    }
    publisher.start_media();
    for watcher in &watchers {
        expect_media_from(watcher, &publisher).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let sent = common::ws::scrape(a.http_addr).await["switchboard_cluster_packets_to_nodes_total"];
    let received =
        common::ws::scrape(b.http_addr).await["switchboard_cluster_packets_from_nodes_total"];
    let id = publisher.participant_id();
    let per_watcher: Vec<u64> = watchers
        .iter()
        .map(|w| w.stats().audio_packets_from(&id) + w.stats().video_packets_from(&id))
        .collect();
    let most = *per_watcher.iter().max().expect("watchers") as f64;
    eprintln!("A sent B {sent} packets, B received {received}; watchers got {per_watcher:?}");
    assert!(sent > 0.0, "nothing crossed");
    assert!(
        (sent - received).abs() <= sent * 0.1 + 50.0,
        "sent {sent}, received {received}"
    );
    assert!(
        sent <= most * 1.1 + 100.0 && sent >= most * 0.7,
        "A sent {sent} packets to B while one watcher received at most {most}"
    );
    publisher.leave().await;
    for watcher in watchers {
        watcher.leave().await;
    }
}

/// The room API of any node acts on the whole cluster: node A lists the room with the
/// participants of both nodes, mutes a track published on node B (everyone is told, and its
/// media stops), removes a participant of node B, and closes the room on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_room_api_of_one_node_acts_on_the_whole_cluster() {
    use common::ws::{http_json, key_flags, token, ADMIN, PUBLISH_SUBSCRIBE};
    let redis = TestRedis::start().await;
    let a = node(&redis, &key_flags()).await;
    let b = node(&redis, &key_flags()).await;
    let join = |server: &TestServer, name: &str| {
        let mut config = ClientConfig::new(server.ws_url(), "ops", name);
        config.token = Some(token(name, Some("ops"), PUBLISH_SUBSCRIBE));
        config.publish_video = false;
        TestClient::join(config)
    };
    let ann = join(&a, "ann").await.expect("Ann joins on A");
    let ben = join(&b, "ben").await.expect("Ben joins on B");
    let cat = join(&b, "cat").await.expect("Cat joins on B");
    for client in [&ann, &ben, &cat] {
        client.start_media();
    }
    audio_flows(&ann, &ben, 50, MEDIA_TIMEOUT).await;
    let admin = token("ops", Some("ops"), ADMIN);

    let (status, body) = http_json(a.http_addr, "GET", "/api/rooms/ops", Some(&admin), None).await;
    assert_eq!(status, 200, "{body}");
    let listed = body.to_string();
    for client in [&ann, &ben, &cat] {
        assert!(listed.contains(&client.participant_id()), "{body}");
    }

    // /api/stats on A names everyone, with what each receives.
    let (status, stats) = http_json(a.http_addr, "GET", "/api/stats", Some(&admin), None).await;
    assert_eq!(status, 200, "{stats}");
    for client in [&ann, &ben, &cat] {
        let entry = stats["participants"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["participant_id"] == client.participant_id().as_str())
            .unwrap_or_else(|| panic!("{} missing from /api/stats: {stats}", client.name()));
        assert_eq!(
            entry["subscriptions"].as_array().map(Vec::len),
            Some(2),
            "{}: one audio track from each other participant: {entry}",
            client.name()
        );
    }

    // Mute Ben's audio (on B) through A.
    let track_id = body["participants"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["participant_id"] == ben.participant_id().as_str())
        .and_then(|p| p["tracks"][0]["track_id"].as_str())
        .map(str::to_owned);
    let track_id = track_id.unwrap_or_else(|| panic!("Ben's track in {body}"));
    let path = format!("/api/rooms/ops/tracks/{track_id}/mute");
    let (status, body) = http_json(
        a.http_addr,
        "POST",
        &path,
        Some(&admin),
        Some(r#"{"muted":true}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for client in [&ann, &cat] {
        client
            .wait_for_message("track_muted", Duration::from_secs(5), |m| {
                m["type"] == "track_muted" && m["track_id"] == track_id.as_str()
            })
            .await
            .expect("told of the mute");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let muted_at = audio_from(&ann, &ben);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        audio_from(&ann, &ben) <= muted_at + 5,
        "Ben's audio still reaches Ann after the operator muted it"
    );

    // Remove Cat (on B) through A.
    let path = format!("/api/rooms/ops/participants/{}", cat.participant_id());
    let (status, body) = http_json(a.http_addr, "DELETE", &path, Some(&admin), None).await;
    assert!((200..300).contains(&status), "{status} {body}");
    let cat_id = cat.participant_id();
    ann.wait_until(
        "told that Cat was removed",
        Duration::from_secs(5),
        |s: &ReceivedStats| s.saw_left(&cat_id),
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));

    // Close the room through A: Ben (on B) is removed too.
    let (status, body) =
        http_json(a.http_addr, "DELETE", "/api/rooms/ops", Some(&admin), None).await;
    assert_eq!(status, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let health = b.health().await.expect("B answers");
        if health["participants"] == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B still has participants: {health}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// App data from a participant on node A reaches the room's members on node B, stamped by
/// A (a member of B cannot be named as its sender), and only the chosen ones when addressed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_data_crosses_nodes_stamped_by_the_senders_node() {
    use common::ws::{connect, join, recv_type, send};
    use serde_json::json;
    let redis = TestRedis::start().await;
    let a = node(&redis, &[]).await;
    let b = node(&redis, &[]).await;
    let mut ann = connect(&a.ws_url()).await;
    let ann_id = join(&mut ann, "talk", "Ann", None).await["participant_id"].clone();
    let mut ben = connect(&b.ws_url()).await;
    let ben_id = join(&mut ben, "talk", "Ben", None).await["participant_id"].clone();
    let mut cat = connect(&b.ws_url()).await;
    let cat_id = join(&mut cat, "talk", "Cat", None).await["participant_id"].clone();
    recv_type(&mut ann, "participant_joined").await;
    recv_type(&mut ann, "participant_joined").await;
    recv_type(&mut ben, "participant_joined").await;

    send(
        &mut ann,
        json!({"type": "data", "name": "Ben", "participant_id": ben_id, "payload": {"text": "hi"}})
            .to_string(),
    )
    .await;
    for (who, ws) in [("Ben", &mut ben), ("Cat", &mut cat)] {
        let got = recv_type(ws, "data").await;
        assert_eq!(
            (&got["participant_id"], &got["name"], &got["payload"]),
            (&ann_id, &json!("Ann"), &json!({"text": "hi"})),
            "{who}: {got}"
        );
    }

    send(
        &mut ann,
        json!({"type": "data", "to": [cat_id], "payload": "to Cat"}).to_string(),
    )
    .await;
    assert_eq!(recv_type(&mut cat, "data").await["payload"], "to Cat");
    send(
        &mut ann,
        json!({"type": "data", "payload": "all"}).to_string(),
    )
    .await;
    assert_eq!(
        recv_type(&mut ben, "data").await["payload"],
        "all",
        "Ben never got the message for Cat"
    );
    assert_eq!(recv_type(&mut cat, "data").await["payload"], "all");
}
