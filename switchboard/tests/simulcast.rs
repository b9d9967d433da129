//! Simulcast through the real server: a synthetic publisher sends three VP8 layers (q, h, f)
//! with real keyframe headers; subscribers reach the server through links whose capacity the
//! test controls. Each subscriber must get the layer its link allows, climb back on its own,
//! pause video (keeping audio) when even the lowest layer does not fit, resume, and see every
//! switch land on a keyframe with continuous sequence numbers and VP8 picture IDs.

mod common;

use std::time::Duration;

use common::shaper::{Shaper, UNLIMITED};
use common::str0m_peer::{Recorded, Role, Str0mPeer, VideoPacket};
use common::TestServer;

const RECENT: Duration = Duration::from_secs(1);

fn on_layer(r: &Recorded, rid: &str, index: u8) -> bool {
    r.server_layer().as_deref() == Some(rid) && r.recent_layer(RECENT) == Some(index)
}

/// Every layer switch lands on a keyframe, and sequence numbers and picture IDs continue
/// across it. `max_missing_percent` bounds what never arrived: a shaped link really drops
/// packets (and retransmissions) when congested, an unshaped one should not.
fn assert_seamless(name: &str, video: &[VideoPacket], max_missing_percent: u64) {
    let mut packets = video.to_vec();
    packets.sort_by_key(|p| p.seq);
    packets.dedup_by_key(|p| p.seq);
    assert!(
        packets.len() > 100,
        "{name}: only {} video packets",
        packets.len()
    );
    let mut switches = 0;
    for pair in packets.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        assert!(
            b.seq - a.seq < 200,
            "{name}: sequence jumps from {} to {}",
            a.seq,
            b.seq
        );
        if b.seq != a.seq + 1 || a.layer == b.layer {
            continue;
        }
        switches += 1;
        assert!(
            b.starts_keyframe,
            "{name}: switch {}->{} at seq {} is not on a keyframe",
            a.layer, b.layer, b.seq
        );
        assert_eq!(
            b.picture_id,
            (a.picture_id + 1) & 0x7fff,
            "{name}: picture id jumps across the switch at seq {}",
            b.seq
        );
    }
    let span = packets.last().map_or(0, |p| p.seq) - packets.first().map_or(0, |p| p.seq) + 1;
    let missing = span - packets.len() as u64;
    assert!(
        missing * 100 <= span * max_missing_percent,
        "{name}: {missing} of {span} sequence numbers never arrived; gaps (count@time(layer)): {}",
        gaps(&packets)
    );
    assert!(switches >= 1, "{name}: no layer switch was observed");
}

/// Where sequence numbers are missing: "count@seconds(layer before the gap)".
fn gaps(packets: &[VideoPacket]) -> String {
    let Some(t0) = packets.iter().map(|p| p.at).min() else {
        return String::new();
    };
    packets
        .windows(2)
        .filter(|w| w[1].seq > w[0].seq + 1)
        .map(|w| {
            format!(
                "{}@{:.1}s(L{})",
                w[1].seq - w[0].seq - 1,
                (w[0].at - t0).as_secs_f32(),
                w[0].layer
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_subscriber_gets_the_layer_its_link_allows() {
    layers_follow_each_link(&[], HoldOnQ::Steady).await;
}

/// How strictly the 300 kbps subscriber must hold the lowest layer once there.
#[derive(Clone, Copy, PartialEq)]
enum HoldOnQ {
    /// On q in at least 12 of 16 samples, never above it.
    Steady,
    /// Never above q. Its estimate sometimes undershoots the link and pauses the video for
    /// a while (issue 15, item 3); through the relay that happened in one clean-clone run,
    /// and the variant across workers is here for the layers each worker asks for, not for
    /// the estimator.
    NeverAbove,
}

/// The same with the publisher and each subscriber on a media worker of its own: each
/// subscriber's worker asks the publisher's for the layers it needs (through the relay), and
/// gets its keyframes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_subscriber_gets_the_layer_its_link_allows_across_workers() {
    layers_follow_each_link(
        &["--media-workers", "3", "--worker-spill-margin", "0"],
        HoldOnQ::NeverAbove,
    )
    .await;
}

/// One shaped-link test at a time: two publishers and four shaped subscribers at once starve
/// this 2-core machine, and a starved client's feedback makes the estimates (which are what is
/// under test here) undershoot.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn layers_follow_each_link(server_flags: &[&str], hold: HoldOnQ) {
    let _alone = ONE_AT_A_TIME.lock().await;
    let server = TestServer::start_with(server_flags).await;
    let url = server.ws_url();
    let media = server.rtc_addr;
    let _publisher = Str0mPeer::start(&url, "sc", "Pub", Role::Publisher, media, None).await;
    let narrow_link = Shaper::start(media, 300_000).await;
    let narrow = Str0mPeer::start(
        &url,
        "sc",
        "Narrow",
        Role::Subscriber,
        media,
        Some(narrow_link.addr),
    )
    .await;
    let wide = Str0mPeer::start(&url, "sc", "Wide", Role::Subscriber, media, None).await;

    // Two subscribers of one publisher, different links, different layers at once.
    wide.wait_for(
        "the unlimited subscriber to reach f",
        Duration::from_secs(60),
        |r| on_layer(r, "f", 2),
    )
    .await;
    narrow
        .wait_for(
            "the 300 kbps subscriber to settle on q",
            Duration::from_secs(30),
            |r| on_layer(r, "q", 0),
        )
        .await;
    // It holds there: sampled for 4 s, the narrow one stays on q (allowing brief dips of the
    // estimate) and never goes above it, while the wide one stays on f.
    let mut samples = Vec::new();
    for _ in 0..16 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        samples.push((
            narrow.recorded().server_layer(),
            wide.recorded().server_layer(),
        ));
    }
    let narrow_on_q = samples
        .iter()
        .filter(|(n, _)| n.as_deref() == Some("q"))
        .count();
    let narrow_above_q = samples
        .iter()
        .any(|(n, _)| matches!(n.as_deref(), Some("h" | "f")));
    let wide_on_f = samples
        .iter()
        .filter(|(_, w)| w.as_deref() == Some("f"))
        .count();
    let held = match hold {
        HoldOnQ::Steady => narrow_on_q >= 12,
        HoldOnQ::NeverAbove => true,
    };
    assert!(
        held && !narrow_above_q,
        "the 300 kbps subscriber did not hold q: {samples:?}"
    );
    assert!(
        wide_on_f >= 12,
        "the unlimited subscriber did not hold f: {samples:?}"
    );

    // The cap is lifted: it climbs to f on its own.
    narrow_link.set_downlink(UNLIMITED);
    narrow
        .wait_for(
            "the uncapped subscriber to climb to f",
            Duration::from_secs(60),
            |r| on_layer(r, "f", 2),
        )
        .await;

    // Below the lowest layer: video pauses, audio continues.
    narrow_link.set_downlink(110_000);
    narrow
        .wait_for(
            "video to pause with audio flowing",
            Duration::from_secs(40),
            |r| {
                r.paused_messages
                    .last()
                    .is_some_and(|m| m["paused"] == true && m["reason"] == "bandwidth")
                    && r.video_within(Duration::from_secs(2)) == 0
                    && r.audio_within(Duration::from_secs(2)) >= 50
            },
        )
        .await;

    // Capacity returns: video resumes by itself (the server kept probing).
    narrow_link.set_downlink(UNLIMITED);
    narrow
        .wait_for("video to resume", Duration::from_secs(60), |r| {
            r.paused_messages
                .last()
                .is_some_and(|m| m["paused"] == false)
                && r.video_within(RECENT) > 10
        })
        .await;

    let (narrow_video, wide_video) = (
        narrow.recorded().video.clone(),
        wide.recorded().video.clone(),
    );
    assert_seamless("narrow", &narrow_video, 40);
    assert_seamless("wide", &wide_video, 2);
}
