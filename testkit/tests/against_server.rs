//! Smoke test against a running Switchboard server, skipped unless `SWITCHBOARD_WS_URL` is set
//! (e.g. `ws://127.0.0.1:8080/ws`). The real integration tests live in `switchboard/tests/`;
//! this one exists to check the test client itself against the server by hand:
//!
//! ```sh
//! /work/shared/bin/loopback-only bash -c 'target/debug/switchboard serve \
//!     --http-addr 127.0.0.1:18080 --rtc-addr 127.0.0.1:15000 & pid=$!; sleep 1; \
//!   SWITCHBOARD_WS_URL=ws://127.0.0.1:18080/ws cargo test -p switchboard-testkit --offline \
//!     --test against_server -- --nocapture; rc=$?; kill $pid; exit $rc'
//! ```

use std::time::{Duration, Instant};

use switchboard_testkit::{sender_tag, ClientConfig, TestClient};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_clients_in_one_room() -> anyhow::Result<()> {
    let Ok(url) = std::env::var("SWITCHBOARD_WS_URL") else {
        eprintln!("SWITCHBOARD_WS_URL not set: skipped");
        return Ok(());
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let started = Instant::now();
    let mut clients = Vec::new();
    for name in ["Ann", "Ben", "Cat"] {
        let client = TestClient::join(ClientConfig::new(&url, "smoke", name)).await?;
        client.start_media();
        eprintln!(
            "{name} joined as {} after {:?}",
            client.participant_id(),
            started.elapsed()
        );
        clients.push(client);
    }
    let ids: Vec<String> = clients.iter().map(|c| c.participant_id()).collect();
    let names: Vec<String> = clients.iter().map(|c| c.name().to_owned()).collect();

    for (i, client) in clients.iter().enumerate() {
        for (j, other) in ids.iter().enumerate() {
            if i == j {
                continue;
            }
            client
                .wait_until(
                    &format!("media from {}", names[j]),
                    Duration::from_secs(15),
                    |s| {
                        s.participant(other).is_some_and(|p| {
                            p.audio_packets() >= 50 && p.video_frames() >= 20 && p.keyframes() >= 1
                        })
                    },
                )
                .await?;
        }
    }
    eprintln!("full mesh of media after {:?}", started.elapsed());
    for (i, client) in clients.iter().enumerate() {
        let s = client.stats();
        assert_eq!(s.total_integrity_failures(), 0, "{}:\n{s}", names[i]);
        for (j, other) in ids.iter().enumerate() {
            if i == j {
                continue;
            }
            let p = s.participant(other).expect("checked above");
            for t in p.tracks.values().filter(|t| t.packets > 0) {
                assert_eq!(
                    t.sender_tag,
                    Some(sender_tag(&names[j])),
                    "{} got someone else's media as {}'s:\n{s}",
                    names[i],
                    names[j]
                );
            }
        }
        eprintln!("{}:\n{s}", names[i]);
    }

    let leaver = clients.pop().expect("three clients");
    let gone = leaver.participant_id();
    leaver.leave().await;
    for client in &clients {
        client
            .wait_until(
                "Cat left and her tracks ended",
                Duration::from_secs(10),
                |s| s.saw_left(&gone) && s.participant(&gone).is_some_and(|p| p.all_tracks_ended()),
            )
            .await?;
    }
    eprintln!("leave observed after {:?}", started.elapsed());
    for client in clients {
        eprintln!("{}:\n{}", client.name(), client.stats());
        client.leave().await;
    }
    Ok(())
}
