//! The embedding example as a test: two str0m peers call through a sans-IO `Sfu` over an
//! in-memory network in virtual time.

#[path = "../examples/embed.rs"]
mod embed;

use std::time::Duration;

use sfu::{RemovalReason, SfuEvent};

#[test]
fn audio_flows_through_the_sfu_in_virtual_time() {
    let call = embed::run(Duration::from_secs(5), None);
    let frames = call.frames_received_by_bob;
    // Alice sends 50 frames a second; allow for ICE, DTLS and one renegotiation at the start.
    assert!(frames >= 150, "Bob received only {frames} frames");
    assert!(
        frames <= 251,
        "Bob received more frames ({frames}) than Alice sent"
    );
    assert!(
        !call
            .events
            .iter()
            .any(|e| matches!(e, SfuEvent::Removed { .. })),
        "nobody times out in a healthy call"
    );
}

#[test]
fn the_talking_participant_is_reported_as_active_speaker_once() {
    let call = embed::run(Duration::from_secs(5), None);
    let told_bob: Vec<_> = call
        .events
        .iter()
        .filter_map(|e| match e {
            SfuEvent::ActiveSpeakers { to, speakers } if *to == call.bob => Some(speakers),
            _ => None,
        })
        .collect();
    assert_eq!(
        told_bob.len(),
        1,
        "one report while nothing changes: {told_bob:?}"
    );
    let speakers = told_bob[0];
    assert_eq!(speakers.len(), 1, "only Alice talks: {speakers:?}");
    assert_eq!(speakers[0].participant, call.alice);
    assert!(
        speakers[0].level > 0.0 && speakers[0].level <= 0.1,
        "the level is the linear amplitude of the smoothed level, at most -20 dBov: {speakers:?}"
    );
    assert!(
        call.events
            .iter()
            .any(|e| matches!(e, SfuEvent::ActiveSpeakers { to, .. } if *to == call.alice)),
        "the speaker is told too"
    );
}

#[test]
fn a_participant_whose_media_goes_silent_is_removed_and_others_are_told() {
    let call = embed::run(Duration::from_secs(30), Some(Duration::from_secs(3)));
    let removed_at = call
        .events
        .iter()
        .position(|e| matches!(e, SfuEvent::Removed { to, reason: RemovalReason::MediaTimeout } if *to == call.bob))
        .unwrap_or_else(|| panic!("Bob was not removed for silence: {:?}", call.events));
    let told = call.events[removed_at..].iter().any(
        |e| matches!(e, SfuEvent::ParticipantLeft { to, participant } if *to == call.alice && *participant == call.bob),
    );
    assert!(told, "Alice was not told that Bob left: {:?}", call.events);
    assert!(
        !call
            .events
            .iter()
            .any(|e| matches!(e, SfuEvent::Removed { to, .. } if *to == call.alice)),
        "Alice stays"
    );
}
