//! The embedding example as a test: two str0m peers call through a sans-IO `Sfu` over an
//! in-memory network in virtual time.

#[path = "../examples/embed.rs"]
mod embed;

#[test]
fn audio_flows_through_the_sfu_in_virtual_time() {
    let frames = embed::run(std::time::Duration::from_secs(5));
    // Alice sends 50 frames a second; allow for ICE, DTLS and one renegotiation at the start.
    assert!(frames >= 150, "Bob received only {frames} frames");
    assert!(
        frames <= 251,
        "Bob received more frames ({frames}) than Alice sent"
    );
}
