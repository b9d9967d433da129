//! What the SFU tells the application: values to route to participants' signaling.

use str0m::media::MediaKind;

pub use crate::allocator::Reason as LayerReason;
use crate::data::AppData;
use crate::ids::{ParticipantId, TrackId};
pub use crate::participant::RemovalReason;
pub use crate::speakers::ActiveSpeaker;

/// What one subscriber receives of one track, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionStats {
    pub publisher: ParticipantId,
    pub track: TrackId,
    pub kind: MediaKind,
    /// The simulcast rid forwarded now (`None`: nothing, or a track without simulcast).
    pub current_layer: Option<String>,
    /// The rid the allocator is moving to.
    pub target_layer: Option<String>,
    /// The highest temporal layer of the current layer forwarded now: a reduced frame rate
    /// (`None`: all of them, the full frame rate).
    pub current_temporal: Option<u8>,
    /// The highest temporal layer the allocator wants (`None`: all of them).
    pub target_temporal: Option<u8>,
    pub paused: bool,
    pub reason: &'static str,
    /// The subscriber pinned this track's publisher: it is served first.
    pub pinned: bool,
    pub bitrate_bps: u64,
    /// How often the layer (or pause) changed in the last minute.
    pub layer_changes_last_minute: usize,
}

/// A published track as others see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInfo {
    pub id: TrackId,
    pub kind: MediaKind,
    pub muted: bool,
}

/// One participant's view, for `/api/stats`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantStats {
    pub participant: ParticipantId,
    pub name: String,
    pub room: String,
    pub estimate_bps: u64,
    pub subscriptions: Vec<SubscriptionStats>,
}

/// A participant as others see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantInfo {
    pub id: ParticipantId,
    pub name: String,
    pub tracks: Vec<TrackInfo>,
}

/// The result of joining a room.
#[derive(Debug, Clone)]
pub struct JoinInfo {
    pub participant: ParticipantId,
    /// Everyone else already in the room.
    pub others: Vec<ParticipantInfo>,
    /// Give this back to [`Sfu::resume`](crate::Sfu::resume) to continue the session over a
    /// new signaling connection.
    pub resume_token: String,
    /// The joining connection's attachment, for [`Sfu::detach`](crate::Sfu::detach).
    pub attachment: u32,
}

/// The result of resuming a session: the room as it is now, and the server's offer if one
/// was waiting for an answer (send it again).
#[derive(Debug, Clone)]
pub struct ResumeInfo {
    /// The resuming connection's attachment, for [`Sfu::detach`](crate::Sfu::detach).
    pub attachment: u32,
    pub others: Vec<ParticipantInfo>,
    pub pending_offer: Option<(String, Vec<OfferedTrack>)>,
}

/// A transceiver the server added to a participant's connection and what it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedTrack {
    pub mid: String,
    pub publisher: ParticipantId,
    pub track: TrackId,
    pub kind: MediaKind,
}

/// Something a participant must be told. Every variant names its recipient in `to`
/// (`Removed` names the participant that is gone).
#[derive(Debug, Clone)]
pub enum SfuEvent {
    /// Server-initiated renegotiation: send this offer; the participant must answer it.
    Offer {
        to: ParticipantId,
        sdp: String,
        tracks: Vec<OfferedTrack>,
    },
    ParticipantJoined {
        to: ParticipantId,
        participant: ParticipantInfo,
    },
    ParticipantLeft {
        to: ParticipantId,
        participant: ParticipantId,
    },
    TrackPublished {
        to: ParticipantId,
        participant: ParticipantId,
        track: TrackInfo,
    },
    TrackUnpublished {
        to: ParticipantId,
        participant: ParticipantId,
        track: TrackId,
    },
    TrackMuted {
        to: ParticipantId,
        participant: ParticipantId,
        track: TrackId,
        muted: bool,
    },
    /// The SFU stopped (or resumed) forwarding a video to this subscriber.
    VideoPaused {
        to: ParticipantId,
        participant: ParticipantId,
        track: TrackId,
        paused: bool,
        reason: LayerReason,
    },
    /// This subscriber negotiated no payload type for the codec of a video (or audio) it is
    /// subscribed to, so it gets none of its media (nothing is transcoded). Sent once per
    /// down-track, when the first packet cannot go out.
    CodecUnsupported {
        to: ParticipantId,
        participant: ParticipantId,
        track: TrackId,
        /// The codec's SDP name, as in `a=rtpmap` (`VP9`, `H264`, ...).
        codec: &'static str,
    },
    /// Dynacast: the simulcast rids of the publisher's transceiver `mid` that anyone needs.
    PublisherLayers {
        to: ParticipantId,
        mid: String,
        active: Vec<String>,
    },
    /// Periodic: the bandwidth estimate toward this participant and what it receives.
    Stats {
        to: ParticipantId,
        estimate_bps: u64,
        subscriptions: Vec<SubscriptionStats>,
    },
    /// The room's active speakers changed: loudest first, empty when nobody speaks (see
    /// [`speakers`](crate::speakers) for the rules).
    ActiveSpeakers {
        to: ParticipantId,
        speakers: Vec<ActiveSpeaker>,
    },
    /// Application data for this participant from another member of its room
    /// ([`Sfu::send_data`](crate::Sfu::send_data)); `data.from` and `data.name` are the
    /// sender as the SFU knows it.
    Data { to: ParticipantId, data: AppData },
    /// ICE and DTLS completed: media can flow.
    Connected { to: ParticipantId },
    /// The SFU removed this participant on its own (its media timed out or closed).
    Removed {
        to: ParticipantId,
        reason: RemovalReason,
    },
}

impl SfuEvent {
    /// The participant whose signaling should carry this event.
    pub fn recipient(&self) -> ParticipantId {
        match self {
            Self::Offer { to, .. }
            | Self::ParticipantJoined { to, .. }
            | Self::ParticipantLeft { to, .. }
            | Self::TrackPublished { to, .. }
            | Self::TrackUnpublished { to, .. }
            | Self::TrackMuted { to, .. }
            | Self::VideoPaused { to, .. }
            | Self::CodecUnsupported { to, .. }
            | Self::PublisherLayers { to, .. }
            | Self::Stats { to, .. }
            | Self::ActiveSpeakers { to, .. }
            | Self::Data { to, .. }
            | Self::Connected { to }
            | Self::Removed { to, .. } => *to,
        }
    }
}
