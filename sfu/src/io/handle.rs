//! The async, cloneable front of a running SFU: every call is a message to the media thread.

use tokio::sync::{mpsc, oneshot};

use crate::error::SfuError;
use crate::event::{JoinInfo, ParticipantStats, SfuEvent};
use crate::ids::{ParticipantId, TrackId};
use crate::track::TrackSource;

/// Counts for health checks and leak tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SfuStats {
    pub rooms: usize,
    pub participants: usize,
}

pub(crate) enum Command {
    Join {
        room: String,
        name: String,
        events: mpsc::UnboundedSender<SfuEvent>,
        reply: oneshot::Sender<JoinInfo>,
    },
    Offer {
        participant: ParticipantId,
        sdp: String,
        reply: oneshot::Sender<Result<String, SfuError>>,
    },
    Answer {
        participant: ParticipantId,
        sdp: String,
        reply: oneshot::Sender<Result<(), SfuError>>,
    },
    Candidate {
        participant: ParticipantId,
        candidate: String,
        reply: oneshot::Sender<Result<(), SfuError>>,
    },
    Mute {
        participant: ParticipantId,
        mid: String,
        muted: bool,
        reply: oneshot::Sender<Result<TrackId, SfuError>>,
    },
    VideoSize {
        participant: ParticipantId,
        track: TrackId,
        width: u32,
        height: u32,
        reply: oneshot::Sender<Result<(), SfuError>>,
    },
    TrackSource {
        participant: ParticipantId,
        mid: String,
        source: TrackSource,
        reply: oneshot::Sender<Result<(), SfuError>>,
    },
    Leave {
        participant: ParticipantId,
    },
    AllStats {
        reply: oneshot::Sender<Vec<ParticipantStats>>,
    },
    Stats {
        reply: oneshot::Sender<SfuStats>,
    },
}

#[derive(Clone)]
pub struct SfuHandle {
    pub(crate) commands: mpsc::UnboundedSender<Command>,
}

impl SfuHandle {
    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, SfuError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(make(reply))
            .map_err(|_| SfuError::Closed)?;
        rx.await.map_err(|_| SfuError::Closed)
    }

    /// Join `room` as `name`. Events for this participant arrive on the returned receiver
    /// until it leaves or is removed.
    pub async fn join(
        &self,
        room: &str,
        name: &str,
    ) -> Result<(JoinInfo, mpsc::UnboundedReceiver<SfuEvent>), SfuError> {
        let (events, rx) = mpsc::unbounded_channel();
        let info = self
            .call(|reply| Command::Join {
                room: room.to_owned(),
                name: name.to_owned(),
                events,
                reply,
            })
            .await?;
        Ok((info, rx))
    }

    pub async fn accept_offer(
        &self,
        participant: ParticipantId,
        sdp: String,
    ) -> Result<String, SfuError> {
        self.call(|reply| Command::Offer {
            participant,
            sdp,
            reply,
        })
        .await?
    }

    pub async fn accept_answer(
        &self,
        participant: ParticipantId,
        sdp: String,
    ) -> Result<(), SfuError> {
        self.call(|reply| Command::Answer {
            participant,
            sdp,
            reply,
        })
        .await?
    }

    pub async fn add_remote_candidate(
        &self,
        participant: ParticipantId,
        candidate: String,
    ) -> Result<(), SfuError> {
        self.call(|reply| Command::Candidate {
            participant,
            candidate,
            reply,
        })
        .await?
    }

    pub async fn set_muted(
        &self,
        participant: ParticipantId,
        mid: String,
        muted: bool,
    ) -> Result<TrackId, SfuError> {
        self.call(|reply| Command::Mute {
            participant,
            mid,
            muted,
            reply,
        })
        .await?
    }

    pub async fn set_video_size(
        &self,
        participant: ParticipantId,
        track: TrackId,
        width: u32,
        height: u32,
    ) -> Result<(), SfuError> {
        self.call(|reply| Command::VideoSize {
            participant,
            track,
            width,
            height,
            reply,
        })
        .await?
    }

    pub async fn set_track_source(
        &self,
        participant: ParticipantId,
        mid: String,
        source: TrackSource,
    ) -> Result<(), SfuError> {
        self.call(|reply| Command::TrackSource {
            participant,
            mid,
            source,
            reply,
        })
        .await?
    }

    /// Every participant and what it receives.
    pub async fn all_stats(&self) -> Result<Vec<ParticipantStats>, SfuError> {
        self.call(|reply| Command::AllStats { reply }).await
    }

    /// Remove the participant. Fire and forget: also safe from `Drop`.
    pub fn leave(&self, participant: ParticipantId) {
        let _ = self.commands.send(Command::Leave { participant });
    }

    pub async fn stats(&self) -> Result<SfuStats, SfuError> {
        self.call(|reply| Command::Stats { reply }).await
    }
}
