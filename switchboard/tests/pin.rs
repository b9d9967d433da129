//! Pin (spotlight) through the real server. A subscriber on a link too narrow for two good
//! videos pins one publisher and gets that one on the better layer; pinning the other moves
//! the better layer over. And a pin that names no one in the room is refused.

mod common;

use std::time::Duration;

use common::shaper::Shaper;
use common::str0m_peer::{Recorded, Role, Str0mPeer};
use common::ws::*;
use common::TestServer;
use serde_json::{json, Value};

/// The layer the server targets for `publisher`'s video, and whether it knows the pin.
fn video_of<'a>(r: &'a Recorded, publisher: &str) -> Option<&'a Value> {
    r.stats.as_ref()?["subscriptions"]
        .as_array()?
        .iter()
        .find(|s| s["kind"] == "video" && s["participant_id"] == publisher)
}

/// The layer the allocator chose for `publisher`'s video (its target: the current layer
/// follows at the next keyframe, so two videos switching would show passing mixes of both).
fn layer_of(r: &Recorded, publisher: &str) -> Option<String> {
    video_of(r, publisher).and_then(|s| s["target_layer"].as_str().map(str::to_owned))
}

/// q < h < f; paused lowest.
fn rank(layer: Option<&str>) -> u8 {
    match layer {
        Some("q") => 1,
        Some("h") => 2,
        Some("f") => 3,
        _ => 0,
    }
}

fn pinned(r: &Recorded, publisher: &str) -> bool {
    video_of(r, publisher).is_some_and(|s| s["pinned"] == true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pinned_video_gets_the_better_layer_on_a_narrow_link() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let media = server.rtc_addr;
    let a = Str0mPeer::start(&url, "pin", "A", Role::Publisher, media, None).await;
    let b = Str0mPeer::start(&url, "pin", "B", Role::Publisher, media, None).await;
    // The estimate on this link settles below what two middle layers need (2 x 540 kbps plus
    // audio, about 1.2 Mbps) and above both lowest layers and one middle one raised with 15%
    // headroom (about 0.9 Mbps): room for the pinned one only. (At 1 Mbps the estimate sits
    // near 550 kbps and both stay on q; at 2 Mbps both get h.)
    let link = Shaper::start(media, 1_500_000).await;
    let sub = Str0mPeer::start(&url, "pin", "Sub", Role::Subscriber, media, Some(link.addr)).await;
    let ids = |p: &Str0mPeer| p.recorded().participant_id.clone();
    for p in [&a, &b, &sub] {
        p.wait_for("joined", Duration::from_secs(10), |r| {
            !r.participant_id.is_empty()
        })
        .await;
    }
    let (a_id, b_id) = (ids(&a), ids(&b));

    for (pin, other) in [(&a_id, &b_id), (&b_id, &a_id)] {
        sub.send(json!({"type": "pin", "participant_id": pin}));
        sub.wait_for(
            &format!("the pinned {pin} on h and {other} on q"),
            Duration::from_secs(60),
            |r| {
                pinned(r, pin)
                    && !pinned(r, other)
                    && layer_of(r, pin).as_deref() == Some("h")
                    && layer_of(r, other).as_deref() == Some("q")
            },
        )
        .await;
        // The estimate on a shaped link swings (issue 15), moving both videos up and down,
        // but the pinned one is never below the other.
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let r = sub.recorded();
            let (p, o) = (layer_of(&r, pin), layer_of(&r, other));
            assert!(
                rank(p.as_deref()) >= rank(o.as_deref()),
                "pinned {pin} on {p:?} below {other} on {o:?}: {}",
                r.stats.as_ref().map(Value::to_string).unwrap_or_default()
            );
        }
    }
}

#[tokio::test]
async fn a_pin_must_name_another_member_of_the_room() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let mut alice = connect(&url).await;
    let alice_id = join(&mut alice, "here", "Alice", None).await["participant_id"].clone();
    let mut bob = connect(&url).await;
    let bob_id = join(&mut bob, "here", "Bob", None).await["participant_id"].clone();
    recv_type(&mut alice, "participant_joined").await;
    let mut carol = connect(&url).await;
    let carol_id = join(&mut carol, "elsewhere", "Carol", None).await["participant_id"].clone();

    for target in [
        json!("nobody"),
        json!("P00000000deadbeef"),
        carol_id,
        alice_id,
    ] {
        send(
            &mut alice,
            json!({"type": "pin", "id": 5, "participant_id": target}).to_string(),
        )
        .await;
        let error = expect_error(&mut alice, "unknown_participant").await;
        assert_eq!(error["id"], 5, "{error}");
    }
    // Bob is in the room: accepted (no reply), and so is unpinning.
    send(
        &mut alice,
        json!({"type": "pin", "participant_id": bob_id}).to_string(),
    )
    .await;
    send(
        &mut alice,
        json!({"type": "pin", "participant_id": null}).to_string(),
    )
    .await;
    expect_open(&mut alice).await;
}
