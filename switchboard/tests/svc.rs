//! VP9 SVC through the real server: a synthetic publisher sends one VP9 stream of three
//! spatial layers (k-SVC, valid payload descriptors); one subscriber has an unlimited link, one
//! a 1.2 Mbit/s link, one negotiated VP8 only. The first must get every spatial layer, the
//! second the two lower ones (its link cannot carry the third), each with continuous sequence
//! numbers over what the server drops and the marker on the last packet of the highest layer
//! it gets in every picture; the third must be told `codec_unsupported` and get no video.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::shaper::Shaper;
use common::str0m_peer::{Recorded, Role, Str0mPeer, VideoPacket};
use common::TestServer;

const WINDOW: Duration = Duration::from_secs(3);

/// The tests shape links and measure rates: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn server_layer_is(r: &Recorded, layer: &str) -> bool {
    r.server_layer().as_deref() == Some(layer)
}

/// The VP9 packets that arrived in the last `WINDOW`, in sequence order, without repeats.
fn recent_vp9(r: &Recorded) -> Vec<VideoPacket> {
    let since = Instant::now() - WINDOW;
    let mut packets: Vec<VideoPacket> = r
        .video
        .iter()
        .filter(|p| p.at >= since && p.vp9_ends_frame.is_some())
        .copied()
        .collect();
    packets.sort_by_key(|p| p.seq);
    packets.dedup_by_key(|p| p.seq);
    packets
}

/// The subscriber got spatial layers `0..=top` and nothing above, with no gap in the
/// sequence numbers, and each whole picture's marker on the last packet of layer `top`.
fn assert_layers(name: &str, packets: &[VideoPacket], top: u8) {
    assert!(
        packets.len() > 100,
        "{name}: only {} VP9 packets",
        packets.len()
    );
    let highest = packets.iter().map(|p| p.layer).max();
    assert_eq!(
        highest,
        Some(top),
        "{name}: the highest spatial layer received"
    );
    let span = packets.last().map_or(0, |p| p.seq) - packets.first().map_or(0, |p| p.seq) + 1;
    let missing = span - packets.len() as u64;
    assert!(
        missing * 100 <= span,
        "{name}: {missing} of {span} sequence numbers never arrived (dropped layers must leave no gap)"
    );
    let mut pictures: BTreeMap<u16, Vec<VideoPacket>> = BTreeMap::new();
    for p in packets {
        pictures.entry(p.picture_id).or_default().push(*p);
    }
    let mut checked = 0;
    for (id, picture) in &pictures {
        let last = picture.last().expect("not empty");
        if last.layer != top || last.vp9_ends_frame != Some(true) {
            continue; // cut by the window's end
        }
        checked += 1;
        let marked: Vec<u64> = picture.iter().filter(|p| p.marker).map(|p| p.seq).collect();
        assert_eq!(
            marked,
            vec![last.seq],
            "{name}: picture {id}: the marker must be on its last packet (of layer {top}) alone"
        );
    }
    assert!(
        checked > 20,
        "{name}: only {checked} whole pictures to check"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_subscriber_gets_the_spatial_layers_its_link_allows() {
    spatial_layers_follow_each_link(&[]).await;
}

/// The same with every participant on a media worker of its own: the publisher's worker
/// relays the one stream to each subscriber's worker, which selects its layers there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_subscriber_gets_the_spatial_layers_its_link_allows_across_workers() {
    spatial_layers_follow_each_link(&["--media-workers", "4", "--worker-spill-margin", "0"]).await;
}

async fn spatial_layers_follow_each_link(server_flags: &[&str]) {
    let _alone = ONE_AT_A_TIME.lock().await;
    let server = TestServer::start_with(server_flags).await;
    let url = server.ws_url();
    let media = server.rtc_addr;
    let _publisher = Str0mPeer::start(&url, "svc", "Pub", Role::SvcPublisher, media, None).await;
    let wide = Str0mPeer::start(&url, "svc", "Wide", Role::Subscriber, media, None).await;
    let narrow_link = Shaper::start(media, 1_200_000).await;
    let narrow = Str0mPeer::start(
        &url,
        "svc",
        "Narrow",
        Role::Subscriber,
        media,
        Some(narrow_link.addr),
    )
    .await;
    let vp8_only =
        Str0mPeer::start(&url, "svc", "Vp8Only", Role::Vp8OnlySubscriber, media, None).await;

    wide.wait_for(
        "the unlimited subscriber to get every spatial layer",
        Duration::from_secs(60),
        |r| server_layer_is(r, "S2") && r.recent_layer(Duration::from_secs(1)).is_some(),
    )
    .await;
    narrow
        .wait_for(
            "the 1.2 Mbit/s subscriber to settle on two spatial layers",
            Duration::from_secs(60),
            |r| server_layer_is(r, "S1"),
        )
        .await;
    // A window of steady forwarding to check.
    tokio::time::sleep(WINDOW).await;
    assert_layers("Wide", &recent_vp9(&wide.recorded()), 2);
    assert_layers("Narrow", &recent_vp9(&narrow.recorded()), 1);

    vp8_only
        .wait_for(
            "the VP8-only subscriber to be told it cannot receive VP9",
            Duration::from_secs(10),
            |r| !r.codec_unsupported.is_empty(),
        )
        .await;
    let r = vp8_only.recorded();
    assert_eq!(
        r.codec_unsupported.len(),
        1,
        "told once: {:?}",
        r.codec_unsupported
    );
    assert_eq!(r.codec_unsupported[0]["codec"], "VP9");
    assert!(r.video.is_empty(), "no undecodable video");
    assert!(r.audio_packets > 0, "its audio still flows");
}
