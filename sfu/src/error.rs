//! Errors the SFU reports to whoever drives it (our signaling, or an embedding application).

use crate::ids::ParticipantId;

#[derive(Debug, thiserror::Error)]
pub enum SfuError {
    #[error("no participant {0}")]
    UnknownParticipant(ParticipantId),
    #[error("no such session to resume (it ended, or the resume token is wrong)")]
    UnknownSession,
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
    #[error("no room {0}")]
    UnknownRoom(String),
    #[error("the room is full ({0} participants)")]
    RoomFull(usize),
    #[error("the server has reached its limit of {0} rooms")]
    TooManyRooms(usize),
    #[error("too many joins are still connecting (limit {0}); try again shortly")]
    TooManyPendingJoins(usize),
    #[error("an offer may send at most {0} tracks")]
    TooManyTracks(usize),
    #[error("this participant may not publish (its offer sends media)")]
    PublishNotAllowed,
    #[error("track {0} was muted by an operator; only an operator can unmute it")]
    MutedByOperator(String),
    #[error("nothing to play: {0}")]
    NothingToPlay(String),
    #[error("this participant may not send data (it needs the publish grant)")]
    DataNotAllowed,
    #[error("a data payload is at most {max} bytes; this one is {size}")]
    DataTooLarge { size: usize, max: usize },
    #[error("participant {0} cannot be pinned: not another member of this room")]
    NotPinnable(ParticipantId),
    #[error("too many data messages; the next is allowed in {wait_ms} ms")]
    DataRateLimited { wait_ms: u64 },
}
