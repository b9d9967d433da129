//! Simulcast through the real server: a synthetic publisher sends three VP8 layers (q, h, f)
//! with real keyframe headers; subscribers reach the server through links whose capacity the
//! test controls. Each subscriber must get the layer its link allows, climb back on its own,
//! pause video (keeping audio) when even the lowest layer does not fit, resume, and see every
//! switch land on a keyframe with continuous sequence numbers and VP8 picture IDs.

mod common;

use std::time::{Duration, Instant};

use common::shaper::{Shaper, UNLIMITED};
use common::str0m_peer::{Recorded, Role, Str0mPeer, VideoPacket};
use common::TestServer;
use serde_json::Value;

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
    layers_follow_each_link(&[], HoldOnQ::Steady, Feedback::Twcc).await;
}

/// The same for subscribers that send receiver reports but no transport-wide feedback (as
/// aiortc, older gateways and devices): their estimate comes from the loss they report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_twcc_each_subscriber_gets_the_layer_its_link_allows() {
    layers_follow_each_link(&[], HoldOnQ::Steady, Feedback::ReceiverReportsOnly).await;
}

#[derive(Clone, Copy, PartialEq)]
enum Feedback {
    Twcc,
    ReceiverReportsOnly,
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
        Feedback::Twcc,
    )
    .await;
}

/// One shaped-link test at a time: two publishers and four shaped subscribers at once starve
/// this 2-core machine, and a starved client's feedback makes the estimates (which are what is
/// under test here) undershoot.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn layers_follow_each_link(server_flags: &[&str], hold: HoldOnQ, feedback: Feedback) {
    let twcc = feedback == Feedback::Twcc;
    // Without TWCC the estimate grows 8% a second, and after an overflow waits 20 s before
    // trying the link again.
    let climb = if twcc { 60 } else { 90 };
    let _alone = ONE_AT_A_TIME.lock().await;
    let server = TestServer::start_with(server_flags).await;
    let url = server.ws_url();
    let media = server.rtc_addr;
    let _publisher = Str0mPeer::start(&url, "sc", "Pub", Role::Publisher, media, None).await;
    let narrow_link = Shaper::start(media, 300_000).await;
    let narrow = Str0mPeer::start_with_feedback(
        &url,
        "sc",
        "Narrow",
        Role::Subscriber,
        media,
        Some(narrow_link.addr),
        twcc,
    )
    .await;
    let wide =
        Str0mPeer::start_with_feedback(&url, "sc", "Wide", Role::Subscriber, media, None, twcc)
            .await;

    // Two subscribers of one publisher, different links, different layers at once.
    wide.wait_for(
        "the unlimited subscriber to reach f",
        Duration::from_secs(climb),
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
            Duration::from_secs(climb),
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
        .wait_for("video to resume", Duration::from_secs(climb), |r| {
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

/// A subscriber watching the top layer whose link suddenly falls to 300 kbit/s, where the
/// lowest layer (with audio, about 200 kbit/s) still fits: the loss tells the server at once,
/// it switches to q (which kept flowing from the publisher, so its keyframe is one request
/// away), and the video never pauses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sudden_drop_switches_down_within_seconds_without_pausing() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let server = TestServer::start().await;
    let url = server.ws_url();
    let media = server.rtc_addr;
    let _publisher = Str0mPeer::start(&url, "drop", "Pub", Role::Publisher, media, None).await;
    let link = Shaper::start(media, UNLIMITED).await;
    let viewer = Str0mPeer::start(
        &url,
        "drop",
        "Viewer",
        Role::Subscriber,
        media,
        Some(link.addr),
    )
    .await;
    viewer
        .wait_for("the subscriber to reach f", Duration::from_secs(60), |r| {
            on_layer(r, "f", 2)
        })
        .await;
    // Settled on f for a while: dynacast has had time to turn off what nobody needs.
    tokio::time::sleep(Duration::from_secs(5)).await;

    let dropped_at = std::time::Instant::now();
    link.set_downlink(300_000);
    // `TIMELINE=1`: print what arrived in the first 4 s (time:seq+layer, K for a keyframe).
    if std::env::var("TIMELINE").is_ok() {
        tokio::time::sleep(Duration::from_secs(4)).await;
        let r = viewer.recorded();
        let line: Vec<String> = r
            .video
            .iter()
            .filter(|p| p.at > dropped_at)
            .map(|p| {
                format!(
                    "{}:{}{}{}",
                    (p.at - dropped_at).as_millis(),
                    p.seq,
                    ["q", "h", "f"][p.layer as usize],
                    if p.starts_keyframe { "K" } else { "" }
                )
            })
            .collect();
        eprintln!("TIMELINE {}", line.join(" "));
        // And what the link did: ssrc/pt:seq(size), x for dropped at the full queue.
        let link_line: Vec<String> = link
            .downlink_trace()
            .iter()
            .filter(|p| p.at > dropped_at)
            .map(|p| {
                format!(
                    "{}:{:x}/{}:{}({}){}",
                    (p.at - dropped_at).as_millis(),
                    p.ssrc & 0xfff,
                    p.payload_type,
                    p.seq,
                    p.len,
                    if p.dropped { "x" } else { "" }
                )
            })
            .collect();
        eprintln!("LINK {}", link_line.join(" "));
    }
    viewer
        .wait_for(
            "a keyframe of q after the drop",
            Duration::from_secs(5),
            |r| {
                r.video
                    .iter()
                    .rev()
                    .take_while(|p| p.at > dropped_at)
                    .any(|p| p.layer == 0 && p.starts_keyframe)
            },
        )
        .await;
    // It stays on q, with video flowing, for 12 s.
    let mut longest_gap = Duration::ZERO;
    for _ in 0..24 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let r = viewer.recorded();
        assert_eq!(
            r.recent_layer(Duration::from_secs(1)),
            Some(0),
            "video stopped or left q"
        );
    }
    let r = viewer.recorded();
    let after: Vec<&VideoPacket> = r.video.iter().filter(|p| p.at > dropped_at).collect();
    let first_q_keyframe = after
        .iter()
        .find(|p| p.layer == 0 && p.starts_keyframe)
        .map(|p| p.at - dropped_at)
        .expect("a q keyframe");
    // What ends the freeze is the first q keyframe with every packet in (repaired or not).
    let first_whole_q_keyframe = first_complete_keyframe(&after, 0).map(|at| at - dropped_at);
    for pair in after.windows(2) {
        if pair[0].layer == 0 {
            longest_gap = longest_gap.max(pair[1].at - pair[0].at);
        }
    }
    let paused = r.paused_messages.iter().any(|m| m["paused"] == true);
    eprintln!(
        "sudden drop: q keyframe after {:?}, whole after {:?}, longest gap on q {:?}, paused: {paused}",
        first_q_keyframe, first_whole_q_keyframe, longest_gap
    );
    assert!(!paused, "the video was paused: {:?}", r.paused_messages);
    // Until a whole q keyframe is in, the picture is frozen: the top layer's frames lose most
    // packets. The target is 1 s; 10 runs took 0.49-0.95 s (QUALITY.md). Before the RTX ratio
    // fix half the runs took 3.1 s: the keyframe's lost packets were not resent, and only the
    // publisher's next periodic keyframe ended the freeze. The bound leaves room for a slower
    // host and fails on that.
    let whole = first_whole_q_keyframe.expect("a whole q keyframe");
    assert!(
        whole < Duration::from_millis(2_000),
        "frozen for {whole:?} after the drop (first packet of a q keyframe after {first_q_keyframe:?})"
    );
    assert!(
        longest_gap < Duration::from_secs(1),
        "video on q stalled for {longest_gap:?}"
    );
}

/// The climb once a link frees up (`bandwidth::ProbeNudge`): a subscriber held on h by a
/// 1.6 Mbit/s link (f needs 1.7) uses 60-70% of its estimate, where str0m does not probe by
/// itself, and its estimate cannot grow past 1.5 times what it gets. Once the link is freed
/// it must reach f within 30 s; without the probes it had not in two of four runs 45 s later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_top_layer_comes_back_soon_after_a_link_frees_up() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let server = TestServer::start().await;
    let url = server.ws_url();
    let media = server.rtc_addr;
    let _publisher = Str0mPeer::start(&url, "up", "Pub", Role::Publisher, media, None).await;
    let link = Shaper::start(media, 1_600_000).await;
    let viewer = Str0mPeer::start(
        &url,
        "up",
        "Viewer",
        Role::Subscriber,
        media,
        Some(link.addr),
    )
    .await;
    viewer
        .wait_for("h on the 1.6 Mbit/s link", Duration::from_secs(30), |r| {
            r.recent_layer(Duration::from_millis(500)) == Some(1)
        })
        .await;
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert_eq!(
        viewer.recorded().recent_layer(Duration::from_millis(500)),
        Some(1),
        "h held on the 1.6 Mbit/s link"
    );
    link.set_downlink(UNLIMITED);
    viewer
        .wait_for("f after the link was freed", Duration::from_secs(30), |r| {
            r.recent_layer(Duration::from_millis(300)) == Some(2)
        })
        .await;
}

/// Temporal layers as the finer step (issue 16): a subscriber whose link cannot hold the top
/// layer in full (1.5 Mbit/s and audio over 1.6 Mbit/s) gets it at a reduced frame rate (its
/// TID 0 pictures, 375 kbit/s, or TID 0 and 1, 750 kbit/s, as the estimate allows) rather
/// than h, with sequence numbers and picture IDs numbered on over the pictures it does not
/// get; and the full frame rate once the link is freed, without a new keyframe of f.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_short_of_the_top_layer_gets_it_at_a_reduced_frame_rate() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let server = TestServer::start().await;
    let url = server.ws_url();
    let media = server.rtc_addr;
    let publisher = Str0mPeer::start(&url, "tl", "Pub", Role::TemporalPublisher, media, None).await;
    let link = Shaper::start(media, 1_600_000).await;
    let viewer = Str0mPeer::start(
        &url,
        "tl",
        "Viewer",
        Role::Subscriber,
        media,
        Some(link.addr),
    )
    .await;
    // The last second of video: only f, and none of its TID 2 pictures.
    let f_at_reduced_rate = |r: &Recorded| {
        let recent: Vec<&VideoPacket> = r
            .video
            .iter()
            .filter(|p| p.at.elapsed() < Duration::from_secs(1))
            .collect();
        recent.len() > 10 && recent.iter().all(|p| p.layer == 2 && p.temporal <= 1)
    };
    viewer
        .wait_for(
            "f at a reduced frame rate",
            Duration::from_secs(60),
            f_at_reduced_rate,
        )
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    {
        let r = viewer.recorded();
        assert!(f_at_reduced_rate(&r), "left f at a reduced frame rate");
        let window: Vec<&VideoPacket> = r
            .video
            .iter()
            .filter(|p| p.at.elapsed() < Duration::from_secs(3))
            .collect();
        // Numbered on over what was dropped: half the pictures or more, six packets each,
        // would leave a gap after every other picture.
        let mut seqs: Vec<u64> = window.iter().map(|p| p.seq).collect();
        seqs.sort_unstable();
        seqs.dedup();
        let span = seqs.last().expect("packets") - seqs.first().expect("packets") + 1;
        let missing = span - seqs.len() as u64;
        assert!(
            missing * 50 <= span,
            "{missing} of {span} sequence numbers missing over 3 s"
        );
        let mut pictures: Vec<(u64, u16)> = window.iter().map(|p| (p.seq, p.picture_id)).collect();
        pictures.sort_unstable();
        pictures.dedup_by_key(|(_, pic)| *pic);
        let jumps = pictures
            .windows(2)
            .filter(|w| (w[1].1.wrapping_sub(w[0].1)) & 0x7fff != 1)
            .count();
        assert_eq!(jumps, 0, "picture IDs skip: {pictures:?}");
    }
    // The subscriber's stats say so (every 2 s).
    let video_stats = |r: &Recorded, temporal: &dyn Fn(&Value) -> bool| {
        r.stats.as_ref().is_some_and(|s| {
            s["subscriptions"].as_array().is_some_and(|subs| {
                subs.iter().any(|sub| {
                    sub["kind"] == "video"
                        && sub["current_layer"] == "f"
                        && temporal(&sub["current_temporal"])
                })
            })
        })
    };
    viewer
        .wait_for(
            "stats: f at a reduced frame rate",
            Duration::from_secs(5),
            |r| video_stats(r, &|t| t.as_u64().is_some_and(|t| t <= 1)),
        )
        .await;
    // Freed: the full frame rate comes back within the layer, so the server asks the
    // publisher for no keyframe.
    let requests_before = publisher.recorded().keyframe_requests;
    link.set_downlink(UNLIMITED);
    viewer
        // The estimate climbs from what f's reduced rate used (application-limited) by
        // probing: 4.7 to 26 s in runs here.
        .wait_for("f at its full frame rate", Duration::from_secs(60), |r| {
            r.video
                .iter()
                .rev()
                .take_while(|p| p.at.elapsed() < Duration::from_secs(1))
                .any(|p| p.layer == 2 && p.temporal == 2)
        })
        .await;
    assert_eq!(
        publisher.recorded().keyframe_requests,
        requests_before,
        "a keyframe was asked for"
    );
    viewer
        .wait_for(
            "stats: f at its full frame rate",
            Duration::from_secs(5),
            |r| video_stats(r, &|t| t.is_null()),
        )
        .await;
}

/// When the first keyframe of `layer` among `packets` was complete: every sequence number from
/// its first packet to the frame's marker received, in whatever order (NACK repairs arrive
/// late). `None` if none was.
fn first_complete_keyframe(packets: &[&VideoPacket], layer: u8) -> Option<Instant> {
    let on_layer: Vec<&VideoPacket> = packets
        .iter()
        .copied()
        .filter(|p| p.layer == layer)
        .collect();
    on_layer
        .iter()
        .filter(|p| p.starts_keyframe)
        .filter_map(|start| {
            let frame: Vec<&&VideoPacket> = on_layer
                .iter()
                .filter(|p| p.picture_id == start.picture_id && p.seq >= start.seq)
                .collect();
            let end = frame.iter().filter(|p| p.marker).map(|p| p.seq).min()?;
            let complete = (start.seq..=end).all(|seq| frame.iter().any(|p| p.seq == seq));
            complete.then(|| frame.iter().map(|p| p.at).max().expect("the first packet"))
        })
        .min()
}
