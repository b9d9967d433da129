//! The async, cloneable front of a running SFU: every call is a message to the media worker
//! that owns the room or participant (or to all of them, for server-wide questions).

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use crate::engine::RoomInfo;
use crate::error::SfuError;
#[allow(unused_imports)] // named in docs
use crate::event::RemovalReason;
use crate::event::{JoinInfo, ParticipantInfo, ParticipantStats, ResumeInfo, SfuEvent};
use crate::ids::{ParticipantId, TrackId};
use crate::metrics::MetricsSnapshot;
use crate::placement::RoomPlacement;
use crate::policy::{Permissions, ShardLoad};
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
        attachment: u32,
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

/// One media worker's command channel and published metrics.
pub(crate) struct WorkerHandle {
    pub(crate) commands: mpsc::UnboundedSender<Command>,
    pub(crate) metrics: Arc<Mutex<MetricsSnapshot>>,
}

#[derive(Clone)]
pub struct SfuHandle {
    workers: Arc<[WorkerHandle]>,
    placement: Arc<RoomPlacement>,
    load: Arc<ShardLoad>,
}

impl SfuHandle {
    pub(crate) fn new(
        workers: Vec<WorkerHandle>,
        placement: Arc<RoomPlacement>,
        load: Arc<ShardLoad>,
    ) -> Self {
        Self {
            workers: workers.into(),
            placement,
            load,
        }
    }

    /// The worker `room` lives on. A room that is not open anywhere is asked of worker 0,
    /// which does not have it either and answers so.
    fn room_worker(&self, room: &str) -> &WorkerHandle {
        let index = self.placement.worker_of(room).unwrap_or(0);
        &self.workers[index.min(self.workers.len() - 1)]
    }

    /// The worker owning a participant, from its id. An id naming no worker reaches one that
    /// does not know it, which answers `UnknownParticipant`.
    fn participant_worker(&self, participant: ParticipantId) -> &WorkerHandle {
        &self.workers[usize::from(participant.shard()) % self.workers.len()]
    }

    async fn call_on<T>(
        worker: &WorkerHandle,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, SfuError> {
        let (reply, rx) = oneshot::channel();
        worker
            .commands
            .send(make(reply))
            .map_err(|_| SfuError::Closed)?;
        rx.await.map_err(|_| SfuError::Closed)
    }

    async fn call_room<T>(
        &self,
        room: &str,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, SfuError> {
        Self::call_on(self.room_worker(room), make).await
    }

    async fn call<T>(
        &self,
        participant: ParticipantId,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, SfuError> {
        Self::call_on(self.participant_worker(participant), make).await
    }

    /// Ask every worker and collect the answers.
    async fn call_all<T>(
        &self,
        make: impl Fn(oneshot::Sender<T>) -> Command,
    ) -> Result<Vec<T>, SfuError> {
        let mut answers = Vec::with_capacity(self.workers.len());
        for worker in self.workers.iter() {
            answers.push(Self::call_on(worker, &make).await?);
        }
        Ok(answers)
    }

    pub async fn join(
        &self,
        room: &str,
        name: &str,
        permissions: Permissions,
    ) -> Result<(JoinInfo, mpsc::UnboundedReceiver<SfuEvent>), SfuError> {
        let (events, rx) = mpsc::unbounded_channel();
        // Held until the worker answers: the room stays on that worker meanwhile.
        let claim = self.placement.claim(room, || self.load.least_loaded());
        let worker = &self.workers[claim.worker().min(self.workers.len() - 1)];
        let info = Self::call_on(worker, |reply| Command::Join {
            room: room.to_owned(),
            name: name.to_owned(),
            permissions,
            events,
            reply,
        })
        .await??;
        drop(claim);
        Ok((info, rx))
    }

    pub async fn accept_offer(
        &self,
        participant: ParticipantId,
        sdp: String,
    ) -> Result<String, SfuError> {
        self.call(participant, |reply| Command::Offer {
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
        self.call(participant, |reply| Command::Answer {
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
        self.call(participant, |reply| Command::Candidate {
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
        self.call(participant, |reply| Command::Mute {
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
        self.call(participant, |reply| Command::VideoSize {
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
        self.call(participant, |reply| Command::TrackSource {
            participant,
            mid,
            source,
            reply,
        })
        .await?
    }

    /// Every participant and what it receives.
    pub async fn all_stats(&self) -> Result<Vec<ParticipantStats>, SfuError> {
        let per_worker = self.call_all(|reply| Command::AllStats { reply }).await?;
        Ok(per_worker.into_iter().flatten().collect())
    }

    /// The participant's signaling went away without leaving: keep its session (and media)
    /// for the resume grace period, unless another connection resumed it since (see
    /// [`Sfu::detach`](crate::Sfu::detach)). Fire and forget.
    pub fn detach(&self, participant: ParticipantId, attachment: u32) {
        let _ = self
            .participant_worker(participant)
            .commands
            .send(Command::Detach {
                participant,
                attachment,
            });
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
            .call(participant, |reply| Command::Resume {
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
        let _ = self
            .participant_worker(participant)
            .commands
            .send(Command::Leave { participant });
    }

    pub async fn stats(&self) -> Result<SfuStats, SfuError> {
        let per_worker = self.call_all(|reply| Command::Stats { reply }).await?;
        Ok(per_worker
            .into_iter()
            .fold(SfuStats::default(), |total, s| SfuStats {
                rooms: total.rooms + s.rooms,
                participants: total.participants + s.participants,
            }))
    }

    /// The latest metrics snapshot (at most about a second old).
    pub fn metrics(&self) -> MetricsSnapshot {
        let mut total = MetricsSnapshot::default();
        for worker in self.workers.iter() {
            total.add(
                &worker
                    .metrics
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()),
            );
        }
        total
    }

    /// Every room, by name.
    pub async fn rooms(&self) -> Result<Vec<RoomInfo>, SfuError> {
        let per_worker = self.call_all(|reply| Command::Rooms { reply }).await?;
        Ok(per_worker.into_iter().flatten().collect())
    }

    /// Everyone in `room`.
    pub async fn room_participants(&self, room: &str) -> Result<Vec<ParticipantInfo>, SfuError> {
        self.call_room(room, |reply| Command::RoomParticipants {
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
        self.call_room(room, |reply| Command::RemoveParticipant {
            room: room.to_owned(),
            participant,
            reply,
        })
        .await?
    }

    /// Remove everyone in `room` ([`RemovalReason::RoomClosed`]); returns how many.
    pub async fn close_room(&self, room: &str) -> Result<usize, SfuError> {
        self.call_room(room, |reply| Command::CloseRoom {
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
        self.call_room(room, |reply| Command::MuteTrack {
            room: room.to_owned(),
            track,
            muted,
            reply,
        })
        .await?
    }
}
