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

pub mod client;
pub mod media;
pub mod payload;
pub mod stats;

pub use client::{parse_tracks_map, sender_tag, wait_for_stats, ClientConfig, TestClient};
pub use media::{LocalCandidate, MediaPeer, PeerOptions, RemoteTrackInfo};
pub use stats::{MediaKind, ParticipantStats, ReceivedStats, SignalEvent, TrackStats};
