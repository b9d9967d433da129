//! The relay between media workers: how one room spans several `Sfu` cores.
//!
//! A participant's connection lives on one worker. Every worker keeps a directory of every
//! room (its own members and everyone else's, with their tracks), so any worker can answer a
//! join with the whole room and tell its members what happens elsewhere. What crosses between
//! workers:
//!
//! - [`RoomEvent`]s, to every other worker: joins, leaves, tracks published, unpublished,
//!   muted. They are control messages: ordered per pair of workers and never dropped.
//! - [`RelayedPacket`]s, from the worker of a track's publisher to each worker that hosts
//!   subscribers of it, **once per worker** (not once per subscriber), and only of the
//!   simulcast layers that worker's subscribers need now. The receiving worker fans each one
//!   out with the same per-subscriber layer selection, rewriting and pacing as its own
//!   publishers' packets. Media batches may be dropped when a worker falls behind, as a
//!   network would drop them; NACK and keyframe requests repair the loss.
//! - [`Needs`](RelayMessage::Needs) and [`KeyframeRequest`](RelayMessage::KeyframeRequest),
//!   back to the publisher's worker: which layers a worker wants (its publisher-side dynacast
//!   counts them) and keyframes its subscribers ask for.
//!
//! Between workers of one process this is plain memory (channels, no sockets and no
//! crypto): a packet is decrypted once by the publisher's worker and encrypted once per
//! subscriber by the subscriber's worker.

use std::sync::Arc;
use std::time::Instant;

use str0m::media::{KeyframeRequestKind, MediaKind, Rid};
use str0m::rtp::{Ssrc, VideoOrientation};

use crate::codec::ForwardedCodec;
use crate::data::AppData;
use crate::ids::{ParticipantId, TrackId};
use crate::svc::RawDependencyDescriptor;
use crate::track::TrackSource;

/// A worker's index; the low byte of the participant ids it hands out.
pub type WorkerIndex = u8;

/// Simulcast layers as bits: bit `i` is layer `i`, lowest first.
pub type LayerMask = u8;

/// Something that happened in a room, for the other workers' members.
#[derive(Debug, Clone)]
pub enum RoomEvent {
    Joined {
        room: String,
        participant: ParticipantId,
        name: String,
    },
    Left {
        room: String,
        participant: ParticipantId,
    },
    Published {
        room: String,
        participant: ParticipantId,
        track: TrackId,
        kind: MediaKind,
        /// The simulcast rids, in the publisher's order (empty without simulcast).
        rids: Vec<Rid>,
        source: TrackSource,
        muted: bool,
    },
    Unpublished {
        room: String,
        participant: ParticipantId,
        track: TrackId,
    },
    Muted {
        room: String,
        participant: ParticipantId,
        track: TrackId,
        muted: bool,
    },
    SourceChanged {
        track: TrackId,
        source: TrackSource,
    },
    /// Application data from a member of the sender's (`data.rs`), for the recipients here.
    Data {
        room: String,
        data: AppData,
    },
}

/// What an operator (the room API) does to a room, carried to the workers (and nodes) whose
/// participants it concerns: each applies it to its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperatorAction {
    RemoveParticipant {
        room: String,
        participant: ParticipantId,
    },
    MuteTrack {
        room: String,
        track: TrackId,
        muted: bool,
    },
    CloseRoom {
        room: String,
    },
}

/// A control message from one worker to another.
#[derive(Debug, Clone)]
pub enum RelayMessage {
    Room(RoomEvent),
    /// An operator's action, for this worker's own participants and tracks.
    Operator(OperatorAction),
    /// The layers of `track` the sender's subscribers need now; 0 stops the track.
    Needs {
        track: TrackId,
        layers: LayerMask,
    },
    /// A subscriber on the sender wants a keyframe of `layer`.
    KeyframeRequest {
        track: TrackId,
        layer: usize,
        kind: KeyframeRequestKind,
    },
}

/// One RTP packet of a published track, as its publisher's worker received and decrypted it.
#[derive(Debug, Clone)]
pub struct RelayedPacket {
    pub track: TrackId,
    pub layer: usize,
    pub codec: ForwardedCodec,
    /// The publisher's SSRC of this layer: a change of source is a layer switch.
    pub ssrc: Ssrc,
    /// Extended sequence number.
    pub seq: u64,
    pub timestamp: u32,
    pub marker: bool,
    /// When the publisher's worker received it (for the subscriber's pacing and latency).
    pub received: Instant,
    pub audio_level: Option<i8>,
    pub voice_activity: Option<bool>,
    pub video_orientation: Option<VideoOrientation>,
    /// AV1's Dependency Descriptor, as the publisher sent it.
    pub dependency_descriptor: Option<Arc<RawDependencyDescriptor>>,
    pub payload: Vec<u8>,
}

/// Whether `mask` has `layer`.
pub fn has_layer(mask: LayerMask, layer: usize) -> bool {
    layer < 8 && mask & (1 << layer) != 0
}

/// `mask` with `layer` added (layers past the eighth are never simulcast in practice and
/// are not representable: they are ignored).
pub fn with_layer(mask: LayerMask, layer: usize) -> LayerMask {
    if layer < 8 {
        mask | (1 << layer)
    } else {
        mask
    }
}
