//! Switchboard's WebRTC test client, built on webrtc-rs (an independent stack from the str0m
//! core of our server).
//!
//! A [`TestClient`] joins a room over our JSON signaling protocol (see `docs/protocol.md`),
//! publishes synthetic Opus and VP8 tracks whose every RTP payload is self-verifying (see
//! [`payload`]), answers the server's renegotiation offers, and counts what it receives per
//! remote participant in [`ReceivedStats`]. Everything stays on loopback: UDP host candidates
//! on 127.0.0.1 only, mDNS disabled, no STUN or TURN servers.
//!
//! [`MediaPeer`] is the WebRTC half alone, usable without signaling (the self-tests wire two
//! of them together in-process).
//!
//! ```no_run
//! use std::time::Duration;
//! use switchboard_testkit::{ClientConfig, TestClient};
//!
//! # async fn demo(port: u16) -> anyhow::Result<()> {
//! let url = format!("ws://127.0.0.1:{port}/ws");
//! let alice = TestClient::join(ClientConfig::new(&url, "standup", "Alice")).await?;
//! let bob = TestClient::join(ClientConfig::new(&url, "standup", "Bob")).await?;
//! alice.start_media();
//! bob.start_media();
//! let a = alice.participant_id();
//! bob.wait_until("Alice's media", Duration::from_secs(10), |s| {
//!     s.participant(&a).is_some_and(|p| p.audio_packets() >= 50 && p.keyframes() >= 1)
//! })
//! .await?;
//! let stats = bob.stats();
//! assert_eq!(stats.total_integrity_failures(), 0, "{stats}");
//! alice.leave().await;
//! bob.wait_until("Alice gone", Duration::from_secs(5), |s| {
//!     s.saw_left(&a) && s.participant(&a).is_some_and(|p| p.all_tracks_ended())
//! })
//! .await?;
//! bob.leave().await;
//! # Ok(())
//! # }
//! ```
//!
//! Set-up costs about 0.2 s per client on loopback (ICE + DTLS); allow a few seconds in
//! timeouts on a loaded 2-core machine. Tests run inside `/work/shared/bin/loopback-only`.

pub mod client;
pub mod media;
pub mod payload;
pub mod stats;

pub use client::{parse_tracks_map, sender_tag, wait_for_stats, ClientConfig, TestClient};
pub use media::{LocalCandidate, MediaPeer, PeerOptions, RemoteTrackInfo};
pub use stats::{MediaKind, ParticipantStats, ReceivedStats, SignalEvent, TrackStats};
