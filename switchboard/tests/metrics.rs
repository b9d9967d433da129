//! `/metrics`: valid Prometheus text, and it moves with a real call (webrtc-rs clients).

mod common;

use std::time::{Duration, Instant};

use common::ws::scrape;
use common::TestServer;
use switchboard_testkit::{ClientConfig, TestClient};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_move_with_a_call() {
    let server = TestServer::start().await;
    let before = scrape(server.http_addr).await;
    for series in [
        "switchboard_rooms",
        "switchboard_participants",
        "switchboard_tracks",
        "switchboard_forwarded_packets_total",
        "switchboard_forwarded_bytes_total",
        "switchboard_nacks_received_total",
        "switchboard_plis_sent_total",
        "switchboard_layer_switches_total",
        "switchboard_sequence_holes_filled_total",
        "switchboard_subscriber_estimate_bps_count",
        "switchboard_subscriber_estimate_bps_bucket{le=\"+Inf\"}",
        "switchboard_subscription_layer_changes_per_minute_count",
        "switchboard_signaling_errors_total{code=\"bad_json\"}",
        "switchboard_limit_hits_total{limit=\"rooms\"}",
    ] {
        assert!(before.contains_key(series), "{series} missing");
    }
    assert_eq!(before["switchboard_forwarded_packets_total"], 0.0);

    let url = server.ws_url();
    let ann = TestClient::join(ClientConfig::new(&url, "m", "Ann"))
        .await
        .expect("Ann");
    let ben = TestClient::join(ClientConfig::new(&url, "m", "Ben"))
        .await
        .expect("Ben");
    ann.start_media();
    ben.start_media();

    // The snapshot is published every second: wait for the call to show.
    let deadline = Instant::now() + Duration::from_secs(20);
    let during = loop {
        let s = scrape(server.http_addr).await;
        if s["switchboard_forwarded_packets_total"] > 100.0 && s["switchboard_subscriptions"] >= 4.0
        {
            break s;
        }
        assert!(Instant::now() < deadline, "metrics did not move: {s:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(during["switchboard_rooms"], 1.0);
    assert_eq!(during["switchboard_participants"], 2.0);
    assert_eq!(during["switchboard_tracks"], 4.0);
    assert!(
        during["switchboard_forwarded_bytes_total"] > during["switchboard_forwarded_packets_total"]
    );
    assert!(during["switchboard_joins_total"] >= 2.0);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let later = scrape(server.http_addr).await;
    assert!(
        later["switchboard_forwarded_packets_total"]
            > during["switchboard_forwarded_packets_total"],
        "the counter keeps moving"
    );
    assert_eq!(
        later["switchboard_subscriber_estimate_bps_count"], 2.0,
        "{later:?}"
    );
    // Each receives the other's video: two video subscriptions, each counted once.
    assert_eq!(
        later["switchboard_subscription_layer_changes_per_minute_count"], 2.0,
        "{later:?}"
    );
    ann.leave().await;
    ben.leave().await;
}
