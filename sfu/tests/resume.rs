//! Which signaling connection speaks for a session. A client that reconnects opens a new
//! connection and resumes while the old one is still being torn down; the old one's end may
//! reach the SFU after the resume (both race through the worker's queue). Driven sans-IO
//! through the public API.

use std::net::SocketAddr;
use std::time::Instant;

use sfu::{Permissions, Sfu, SfuConfig};

fn sfu(now: Instant) -> Sfu {
    let addr: SocketAddr = "10.0.0.1:5000".parse().expect("literal address");
    Sfu::new(SfuConfig::new(addr, None), now)
}

#[test]
fn the_end_of_a_superseded_connection_does_not_detach_the_resumed_session() {
    let now = Instant::now();
    let mut sfu = sfu(now);
    let joined = sfu
        .join("room", "Alice", Permissions::ALL, now)
        .expect("join");
    assert_eq!(joined.attachment, 0);
    let resumed = sfu
        .resume(joined.participant, &joined.resume_token)
        .expect("resume");
    assert_ne!(resumed.attachment, joined.attachment);

    // The first connection's close arrives after the resume: ignored. (Alice never connected
    // media, so a detach that counted would remove her at once.)
    assert!(!sfu.detach(joined.participant, joined.attachment, now));
    assert_eq!(sfu.participant_count(), 1, "the resumed session stays");

    // The current connection's close counts.
    assert!(sfu.detach(joined.participant, resumed.attachment, now));
    assert_eq!(sfu.participant_count(), 0);
    assert!(
        !sfu.detach(joined.participant, resumed.attachment, now),
        "gone already"
    );
}

#[test]
fn every_resume_supersedes_the_connection_before_it() {
    let now = Instant::now();
    let mut sfu = sfu(now);
    let joined = sfu
        .join("room", "Bob", Permissions::ALL, now)
        .expect("join");
    let first = sfu
        .resume(joined.participant, &joined.resume_token)
        .expect("resume");
    let second = sfu
        .resume(joined.participant, &joined.resume_token)
        .expect("resume");
    assert!(!sfu.detach(joined.participant, first.attachment, now));
    assert_eq!(sfu.participant_count(), 1);
    assert!(sfu.detach(joined.participant, second.attachment, now));
    assert_eq!(sfu.participant_count(), 0);
}
