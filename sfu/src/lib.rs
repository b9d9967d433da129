//! # Switchboard SFU
//!
//! A selective forwarding unit for WebRTC, built on [str0m]. It can be embedded in any
//! application: it knows nothing of our signaling protocol, only of rooms, participants, SDP
//! and datagrams.
//!
//! ## Two ways to run it
//!
//! - [`Sfu`] is the sans-IO core. Feed it datagrams ([`Sfu::handle_receive`]) and time
//!   ([`Sfu::handle_timeout`] at [`Sfu::next_timeout`]), and after each call drain
//!   [`Sfu::poll_output`]: datagrams to send and [`SfuEvent`]s for participants' signaling.
//!   Control it with [`Sfu::join`], [`Sfu::accept_offer`], [`Sfu::accept_answer`],
//!   [`Sfu::add_remote_candidate`], [`Sfu::set_muted`] and [`Sfu::leave`]. One owner, no locks.
//!   Participants exchange application data with [`Sfu::send_data`] (stamped with the sender,
//!   limited in size and rate: [`data`]); who speaks in each room comes as
//!   [`SfuEvent::ActiveSpeakers`] ([`speakers`]). A subscriber that pins a participant
//!   ([`Sfu::set_pin`]) gets that participant's videos served first when its bandwidth
//!   estimate is short ([`allocator`]).
//! - [`SfuServer`] runs one such core per media worker thread (one per core by default; a
//!   room may span workers, see [`relay`]) behind one UDP socket and an ICE-TCP listener on the same
//!   port, and hands out a cloneable [`SfuHandle`] for async code.
//!
//! ## What it does with media
//!
//! Every participant has one peer connection (ICE-lite, bundled, rtcp-mux). What it publishes
//! is forwarded, as RTP, to every other participant of its room over transceivers the SFU adds
//! by renegotiating ([`SfuEvent::Offer`]). Per subscriber, the SSRC, sequence numbers and
//! timestamps are rewritten ([`rewrite`]) so that source changes are invisible; video starts
//! and switches only at keyframes. str0m answers NACKs from its send cache, and keyframe
//! requests are merged towards publishers ([`keyframe`]).
//!
//! ## Module map
//!
//! - `engine/`: the core (`forward.rs` is the per-packet path); `demux.rs`: datagram to peer;
//!   `participant.rs`: one peer's state; `room.rs`: membership; `track/`: up- and down-tracks;
//!   `rewrite/`: sequence and timestamp rewriting; `svc/`: VP9 SVC layer selection;
//!   `codec.rs`: payload types and keyframes; `red.rs`: RFC 2198 redundant audio;
//!   `io/`: the sockets, batched datagram I/O, and the media workers that own the cores.

pub mod allocator;
pub mod bandwidth;
mod codec;
pub mod data;
mod demux;
mod engine;
mod error;
mod event;
mod ids;
pub mod io;
pub mod keyframe;
pub mod metrics;
mod participant;
pub mod placement;
pub mod policy;
#[cfg(test)]
mod proptests;
mod rate;
mod red;
pub mod relay;
pub mod rewrite;
mod room;
pub mod speakers;
pub mod svc;
mod track;

pub use codec::{ForwardedCodec, H264Profile};
pub use data::AppData;
pub use engine::{RoomInfo, Sfu, SfuConfig, SfuOutput};
pub use error::SfuError;
pub use event::{
    ActiveSpeaker, JoinInfo, LayerReason, OfferedTrack, ParticipantInfo, ParticipantStats,
    RemovalReason, ResumeInfo, SfuEvent, SubscriptionStats, TrackInfo,
};
pub use ids::{ParticipantId, TrackId};
pub use io::{PlaybackJoin, RelayInbox, RelayPort, SfuHandle, SfuServer, SfuServerConfig};
pub use metrics::{Counters, MetricsSnapshot};
pub use policy::{Permissions, SfuLimits, ShardLoad};
pub use str0m::media::MediaKind;
pub use str0m::media::Rid;
pub use str0m::net::{Protocol, Transmit};
pub use track::TrackSource;
