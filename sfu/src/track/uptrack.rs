//! A published track: who sends it, and which subscribers' down-tracks receive it.

use std::time::Duration;

use str0m::media::{MediaKind, Mid};

use crate::ids::{ParticipantId, TrackId};
use crate::keyframe::KeyframeThrottle;

/// Keyframe requests toward a publisher, merged across all its subscribers.
const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Debug)]
pub struct UpTrack {
    pub id: TrackId,
    pub publisher: ParticipantId,
    /// The publisher's transceiver carrying this track.
    pub mid: Mid,
    pub kind: MediaKind,
    pub muted: bool,
    /// Each subscriber and the mid of its down-track. A short list walked once per packet.
    pub subscribers: Vec<(ParticipantId, Mid)>,
    pub keyframe_throttle: KeyframeThrottle,
}

impl UpTrack {
    pub fn new(id: TrackId, publisher: ParticipantId, mid: Mid, kind: MediaKind) -> Self {
        Self {
            id,
            publisher,
            mid,
            kind,
            muted: false,
            subscribers: Vec::new(),
            keyframe_throttle: KeyframeThrottle::new(KEYFRAME_REQUEST_INTERVAL),
        }
    }
}
