//! Errors the SFU reports to whoever drives it (our signaling, or an embedding application).

use crate::ids::ParticipantId;

#[derive(Debug, thiserror::Error)]
pub enum SfuError {
    #[error("no participant {0}")]
    UnknownParticipant(ParticipantId),
    #[error("invalid SDP: {0}")]
    InvalidSdp(String),
    #[error("SDP not accepted: {0}")]
    SdpRejected(String),
    #[error("an answer arrived but no offer is pending")]
    NoPendingOffer,
    #[error("the participant offered while the server's own offer is pending (glare; the server's offer wins)")]
    OfferCollision,
    #[error("invalid ICE candidate: {0}")]
    InvalidCandidate(String),
    #[error("no published track on mid {0}")]
    UnknownTrack(String),
    #[error("the SFU has shut down")]
    Closed,
}
