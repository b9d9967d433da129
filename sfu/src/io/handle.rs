//! The async, cloneable front of a running SFU: every call is a message to the media thread.

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use crate::engine::RoomInfo;
use crate::error::SfuError;
#[allow(unused_imports)] // named in docs
use crate::event::RemovalReason;
use crate::event::{JoinInfo, ParticipantInfo, ParticipantStats, ResumeInfo, SfuEvent};
use crate::ids::{ParticipantId, TrackId};
use crate::metrics::MetricsSnapshot;
use crate::policy::Permissions;
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
        permissions: Permissions,
        events: mpsc::UnboundedSender<SfuEvent>,
        reply: oneshot::Sender<Result<JoinInfo, SfuError>>,
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
    Detach {
        participant: ParticipantId,
    },
    Resume {
        participant: ParticipantId,
        resume_token: String,
        events: mpsc::UnboundedSender<SfuEvent>,
        reply: oneshot::Sender<Result<ResumeInfo, SfuError>>,
    },
    AllStats {
        reply: oneshot::Sender<Vec<ParticipantStats>>,
    },
    Stats {
        reply: oneshot::Sender<SfuStats>,
    },
    Rooms {
        reply: oneshot::Sender<Vec<RoomInfo>>,
    },
    RoomParticipants {
        room: String,
        reply: oneshot::Sender<Result<Vec<ParticipantInfo>, SfuError>>,
    },
    RemoveParticipant {
        room: String,
        participant: ParticipantId,
        reply: oneshot::Sender<Result<(), SfuError>>,
    },
    CloseRoom {
        room: String,
        reply: oneshot::Sender<Result<usize, SfuError>>,
    },
    MuteTrack {
        room: String,
        track: TrackId,
        muted: bool,
        reply: oneshot::Sender<Result<(), SfuError>>,
    },
}

#[derive(Clone)]
pub struct SfuHandle {
    pub(crate) commands: mpsc::UnboundedSender<Command>,
    /// Refreshed by the media thread every second.
    pub(crate) metrics: Arc<Mutex<MetricsSnapshot>>,
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

    /// Join `room` as `name`, with what it may do. Events for this participant arrive on the
    /// returned receiver until it leaves or is removed. Fails when a limit is reached.
    pub async fn join(
        &self,
        room: &str,
        name: &str,
        permissions: Permissions,
    ) -> Result<(JoinInfo, mpsc::UnboundedReceiver<SfuEvent>), SfuError> {
        let (events, rx) = mpsc::unbounded_channel();
        let info = self
            .call(|reply| Command::Join {
                room: room.to_owned(),
                name: name.to_owned(),
                permissions,
                events,
                reply,
            })
            .await??;
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

    /// The participant's signaling went away without leaving: keep its session (and media)
    /// for the resume grace period. Fire and forget.
    pub fn detach(&self, participant: ParticipantId) {
        let _ = self.commands.send(Command::Detach { participant });
    }

    /// Continue a session over a new signaling connection; its events arrive on the returned
    /// receiver from now on.
    pub async fn resume(
        &self,
        participant: ParticipantId,
        resume_token: String,
    ) -> Result<(ResumeInfo, mpsc::UnboundedReceiver<SfuEvent>), SfuError> {
        let (events, rx) = mpsc::unbounded_channel();
        let info = self
            .call(|reply| Command::Resume {
                participant,
                resume_token,
                events,
                reply,
            })
            .await??;
        Ok((info, rx))
    }

    /// Remove the participant. Fire and forget: also safe from `Drop`.
    pub fn leave(&self, participant: ParticipantId) {
        let _ = self.commands.send(Command::Leave { participant });
    }

    pub async fn stats(&self) -> Result<SfuStats, SfuError> {
        self.call(|reply| Command::Stats { reply }).await
    }

    /// The latest metrics snapshot (at most about a second old).
    pub fn metrics(&self) -> MetricsSnapshot {
        self.metrics
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Every room, by name.
    pub async fn rooms(&self) -> Result<Vec<RoomInfo>, SfuError> {
        self.call(|reply| Command::Rooms { reply }).await
    }

    /// Everyone in `room`.
    pub async fn room_participants(&self, room: &str) -> Result<Vec<ParticipantInfo>, SfuError> {
        self.call(|reply| Command::RoomParticipants {
            room: room.to_owned(),
            reply,
        })
        .await?
    }

    /// Remove a participant of `room` ([`RemovalReason::Removed`]).
    pub async fn remove_participant(
        &self,
        room: &str,
        participant: ParticipantId,
    ) -> Result<(), SfuError> {
        self.call(|reply| Command::RemoveParticipant {
            room: room.to_owned(),
            participant,
            reply,
        })
        .await?
    }

    /// Remove everyone in `room` ([`RemovalReason::RoomClosed`]); returns how many.
    pub async fn close_room(&self, room: &str) -> Result<usize, SfuError> {
        self.call(|reply| Command::CloseRoom {
            room: room.to_owned(),
            reply,
        })
        .await?
    }

    /// Mute (or unmute) a track of `room` on the operator's behalf.
    pub async fn mute_track(
        &self,
        room: &str,
        track: TrackId,
        muted: bool,
    ) -> Result<(), SfuError> {
        self.call(|reply| Command::MuteTrack {
            room: room.to_owned(),
            track,
            muted,
            reply,
        })
        .await?
    }
}
