//! The async, cloneable front of a running SFU: every call is a message to the media worker
//! that owns the participant (or to all of them, for room-wide and server-wide actions). A
//! room may span workers (`relay.rs`); each worker's directory knows all of it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use super::server::RelayInbox;
use crate::engine::{RoomInfo, Sfu};
use crate::error::SfuError;
use crate::event::RemovalReason;
use crate::event::{JoinInfo, ParticipantInfo, ParticipantStats, ResumeInfo, SfuEvent};
use crate::ids::{ParticipantId, TrackId};
use crate::metrics::MetricsSnapshot;
use crate::placement::RoomPlacement;
use crate::policy::{Permissions, ShardLoad};
use crate::relay::{OperatorAction, RelayMessage};
use crate::track::TrackSource;

/// Counts for health checks and leak tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SfuStats {
    pub rooms: usize,
    pub participants: usize,
}

/// One call into a media worker: a closure that runs on the worker's thread, between two
/// datagram batches, with the worker's engine. Every operation of [`SfuHandle`] is one such
/// closure over an [`Sfu`] method, so an operation is written once here (and once in the
/// engine), not as an enum variant, a constructor and a dispatch arm.
pub(crate) type Command = Box<dyn FnOnce(&mut WorkerCtx<'_>) + Send>;

/// What a [`Command`] may touch on its worker.
pub(crate) struct WorkerCtx<'a> {
    pub(crate) sfu: &'a mut Sfu,
    /// Where each participant's events go.
    pub(crate) subscribers: &'a mut HashMap<ParticipantId, mpsc::UnboundedSender<SfuEvent>>,
    pub(crate) now: Instant,
}

/// One media worker's command channel and published metrics.
pub(crate) struct WorkerHandle {
    pub(crate) commands: mpsc::UnboundedSender<Command>,
    pub(crate) metrics: Arc<Mutex<MetricsSnapshot>>,
}

/// A WHEP viewer that joined: its answer, whom it watches, and its events.
#[derive(Debug)]
pub struct PlaybackJoin {
    pub info: JoinInfo,
    pub answer: String,
    pub publisher: ParticipantId,
    pub events: mpsc::UnboundedReceiver<SfuEvent>,
}

#[derive(Clone)]
pub struct SfuHandle {
    workers: Arc<[WorkerHandle]>,
    placement: Arc<RoomPlacement>,
    load: Arc<ShardLoad>,
    /// The relay slot after the workers (a cluster gateway), for operator actions on other
    /// nodes' participants.
    gateway: Option<RelayInbox>,
}

impl SfuHandle {
    pub(crate) fn new(
        workers: Vec<WorkerHandle>,
        placement: Arc<RoomPlacement>,
        load: Arc<ShardLoad>,
        gateway: Option<RelayInbox>,
    ) -> Self {
        Self {
            workers: workers.into(),
            placement,
            load,
            gateway,
        }
    }

    /// Pass an operator action to the other nodes (through the gateway), when the room has
    /// members there that it concerns. `false` when there is no cluster.
    fn tell_other_nodes(&self, action: OperatorAction) -> bool {
        match &self.gateway {
            Some(gateway) => gateway.send_control(0, vec![RelayMessage::Operator(action)]),
            None => false,
        }
    }

    /// The worker owning a participant, from its id. An id naming no worker reaches one that
    /// does not know it, which answers `UnknownParticipant`.
    fn participant_worker(&self, participant: ParticipantId) -> &WorkerHandle {
        &self.workers[usize::from(participant.shard()) % self.workers.len()]
    }

    /// Run `f` on `worker` and wait for its result.
    async fn call_on<T: Send + 'static>(
        worker: &WorkerHandle,
        f: impl FnOnce(&mut WorkerCtx<'_>) -> T + Send + 'static,
    ) -> Result<T, SfuError> {
        let (reply, rx) = oneshot::channel();
        let command: Command = Box::new(move |ctx| {
            // The caller may have given up waiting; the work is done either way.
            let _ = reply.send(f(ctx));
        });
        worker
            .commands
            .send(command)
            .map_err(|_| SfuError::Closed)?;
        rx.await.map_err(|_| SfuError::Closed)
    }

    /// Run `f` on `worker` without waiting: for calls that must work from `Drop`.
    fn tell(worker: &WorkerHandle, f: impl FnOnce(&mut WorkerCtx<'_>) + Send + 'static) {
        // A worker that is gone has nothing left to change.
        let _ = worker.commands.send(Box::new(f));
    }

    /// Run `f` on any worker: for questions every worker's room directory answers.
    async fn call_any<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut WorkerCtx<'_>) -> T + Send + 'static,
    ) -> Result<T, SfuError> {
        Self::call_on(&self.workers[0], f).await
    }

    /// Run `f` on the worker owning `participant`.
    async fn call<T: Send + 'static>(
        &self,
        participant: ParticipantId,
        f: impl FnOnce(&mut WorkerCtx<'_>) -> T + Send + 'static,
    ) -> Result<T, SfuError> {
        Self::call_on(self.participant_worker(participant), f).await
    }

    /// Ask every worker and collect the answers.
    async fn call_all<T: Send + 'static>(
        &self,
        f: impl Fn(&mut WorkerCtx<'_>) -> T + Clone + Send + 'static,
    ) -> Result<Vec<T>, SfuError> {
        let mut answers = Vec::with_capacity(self.workers.len());
        for worker in self.workers.iter() {
            answers.push(Self::call_on(worker, f.clone()).await?);
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
        // Held until the worker answers: it counts toward that worker's load meanwhile.
        let claim = self.placement.claim(room, &self.load);
        let worker = &self.workers[claim.worker().min(self.workers.len() - 1)];
        let (room, name) = (room.to_owned(), name.to_owned());
        let info = Self::call_on(worker, move |w| {
            let info = w.sfu.join(&room, &name, permissions, w.now)?;
            w.subscribers.insert(info.participant, events);
            Ok(info)
        })
        .await??;
        drop(claim);
        Ok((info, rx))
    }

    /// Join `room` as a WHIP publisher and answer its offer, in one step on the room's
    /// worker (see [`Sfu::join_ingest`]).
    pub async fn join_ingest(
        &self,
        room: &str,
        name: &str,
        permissions: Permissions,
        offer: String,
    ) -> Result<(JoinInfo, String, mpsc::UnboundedReceiver<SfuEvent>), SfuError> {
        let (events, rx) = mpsc::unbounded_channel();
        let claim = self.placement.claim(room, &self.load);
        let worker = &self.workers[claim.worker().min(self.workers.len() - 1)];
        let (room, name) = (room.to_owned(), name.to_owned());
        let (info, answer) = Self::call_on(worker, move |w| {
            let joined = w
                .sfu
                .join_ingest(&room, &name, permissions, &offer, w.now)?;
            w.subscribers.insert(joined.0.participant, events);
            Ok(joined)
        })
        .await??;
        drop(claim);
        Ok((info, answer, rx))
    }

    /// Join `room` as a WHEP viewer of `publisher` (`None`: the room's default, see
    /// [`Sfu::playback_source`]) and answer its recvonly offer; returns whom it watches.
    /// The room must exist.
    pub async fn join_playback(
        &self,
        room: &str,
        name: &str,
        permissions: Permissions,
        publisher: Option<ParticipantId>,
        offer: String,
    ) -> Result<PlaybackJoin, SfuError> {
        let (events, rx) = mpsc::unbounded_channel();
        // Any worker knows the whole room (its directory): the viewer goes where there is
        // room, and its publisher's media is relayed to it if need be.
        let claim = self.placement.claim(room, &self.load);
        let worker = &self.workers[claim.worker().min(self.workers.len() - 1)];
        let (room, name) = (room.to_owned(), name.to_owned());
        let (info, answer, publisher) = Self::call_on(worker, move |w| {
            let joined =
                w.sfu
                    .join_playback(&room, &name, permissions, publisher, &offer, w.now)?;
            w.subscribers.insert(joined.0.participant, events);
            Ok(joined)
        })
        .await??;
        drop(claim);
        Ok(PlaybackJoin {
            info,
            answer,
            publisher,
            events: rx,
        })
    }

    pub async fn accept_offer(
        &self,
        participant: ParticipantId,
        sdp: String,
    ) -> Result<String, SfuError> {
        self.call(participant, move |w| {
            w.sfu.accept_offer(participant, &sdp, w.now)
        })
        .await?
    }

    pub async fn accept_answer(
        &self,
        participant: ParticipantId,
        sdp: String,
    ) -> Result<(), SfuError> {
        self.call(participant, move |w| {
            w.sfu.accept_answer(participant, &sdp, w.now)
        })
        .await?
    }

    pub async fn add_remote_candidate(
        &self,
        participant: ParticipantId,
        candidate: String,
    ) -> Result<(), SfuError> {
        self.call(participant, move |w| {
            w.sfu.add_remote_candidate(participant, &candidate)
        })
        .await?
    }

    pub async fn set_muted(
        &self,
        participant: ParticipantId,
        mid: String,
        muted: bool,
    ) -> Result<TrackId, SfuError> {
        self.call(participant, move |w| {
            w.sfu.set_muted(participant, &mid, muted)
        })
        .await?
    }

    /// Application data from `from` to `to` (`None`: the whole room); see
    /// [`Sfu::send_data`].
    pub async fn send_data(
        &self,
        from: ParticipantId,
        to: Option<Vec<ParticipantId>>,
        payload: Arc<str>,
    ) -> Result<(), SfuError> {
        self.call(from, move |w| w.sfu.send_data(from, to, payload, w.now))
            .await?
    }

    pub async fn set_video_size(
        &self,
        participant: ParticipantId,
        track: TrackId,
        width: u32,
        height: u32,
    ) -> Result<(), SfuError> {
        self.call(participant, move |w| {
            w.sfu.set_video_size(participant, track, width, height)
        })
        .await?
    }

    /// Serve `target`'s videos first for `participant` (`None`: unpin); see
    /// [`Sfu::set_pin`](crate::Sfu::set_pin).
    pub async fn set_pin(
        &self,
        participant: ParticipantId,
        target: Option<ParticipantId>,
    ) -> Result<(), SfuError> {
        self.call(participant, move |w| w.sfu.set_pin(participant, target))
            .await?
    }

    pub async fn set_track_source(
        &self,
        participant: ParticipantId,
        mid: String,
        source: TrackSource,
    ) -> Result<(), SfuError> {
        self.call(participant, move |w| {
            w.sfu.set_track_source(participant, &mid, source)
        })
        .await?
    }

    /// Every participant and what it receives.
    pub async fn all_stats(&self) -> Result<Vec<ParticipantStats>, SfuError> {
        let per_worker = self.call_all(|w| w.sfu.all_stats()).await?;
        Ok(per_worker.into_iter().flatten().collect())
    }

    /// The participant's signaling went away without leaving: keep its session (and media)
    /// for the resume grace period, unless another connection resumed it since (see
    /// [`Sfu::detach`](crate::Sfu::detach)). Fire and forget.
    pub fn detach(&self, participant: ParticipantId, attachment: u32) {
        Self::tell(self.participant_worker(participant), move |w| {
            // Events while detached are dropped; `resume` hands out the state instead.
            if w.sfu.detach(participant, attachment, w.now) {
                w.subscribers.remove(&participant);
            }
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
            .call(participant, move |w| {
                let info = w.sfu.resume(participant, &resume_token)?;
                w.subscribers.insert(participant, events);
                Ok(info)
            })
            .await??;
        Ok((info, rx))
    }

    /// Remove the participant. Fire and forget: also safe from `Drop`.
    pub fn leave(&self, participant: ParticipantId) {
        Self::tell(self.participant_worker(participant), move |w| {
            w.subscribers.remove(&participant);
            w.sfu.leave(participant, w.now);
        });
    }

    pub async fn stats(&self) -> Result<SfuStats, SfuError> {
        let per_worker = self
            .call_all(|w| SfuStats {
                rooms: w.sfu.room_count(),
                participants: w.sfu.participant_count(),
            })
            .await?;
        Ok(per_worker
            .into_iter()
            .fold(SfuStats::default(), |total, s| SfuStats {
                // Every worker's directory has every room.
                rooms: total.rooms.max(s.rooms),
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
        self.call_any(|w| w.sfu.rooms()).await
    }

    /// Everyone in `room`.
    pub async fn room_participants(&self, room: &str) -> Result<Vec<ParticipantInfo>, SfuError> {
        let name = room.to_owned();
        self.call_any(move |w| w.sfu.room_participants(&name))
            .await?
    }

    /// Remove a participant of `room` ([`RemovalReason::Removed`]).
    pub async fn remove_participant(
        &self,
        room: &str,
        participant: ParticipantId,
    ) -> Result<(), SfuError> {
        let name = room.to_owned();
        let local = self
            .call(participant, move |w| {
                w.sfu
                    .remove_participant(&name, participant, RemovalReason::Removed, w.now)
            })
            .await?;
        match local {
            Err(SfuError::UnknownParticipant(_))
                if self.is_remote_member(room, participant).await? =>
            {
                self.tell_other_nodes(OperatorAction::RemoveParticipant {
                    room: room.to_owned(),
                    participant,
                });
                Ok(())
            }
            other => other,
        }
    }

    /// Whether `participant` is a member of `room` on another node (in the directory, and
    /// there is a cluster).
    async fn is_remote_member(
        &self,
        room: &str,
        participant: ParticipantId,
    ) -> Result<bool, SfuError> {
        if self.gateway.is_none() {
            return Ok(false);
        }
        let members = self.room_participants(room).await?;
        Ok(members.iter().any(|m| m.id == participant))
    }

    /// Remove everyone in `room` ([`RemovalReason::RoomClosed`]), on every worker; returns
    /// how many.
    pub async fn close_room(&self, room: &str) -> Result<usize, SfuError> {
        // Everyone in the room, on every worker and node: all of them are removed.
        let everyone = self.room_participants(room).await?.len();
        let name = room.to_owned();
        let per_worker = self
            .call_all(move |w| w.sfu.close_room(&name, w.now))
            .await?;
        let here: usize = first_success(per_worker, |counts| counts.sum()).unwrap_or(0);
        if self.tell_other_nodes(OperatorAction::CloseRoom {
            room: room.to_owned(),
        }) {
            return Ok(everyone.max(here));
        }
        Ok(here)
    }

    /// Mute (or unmute) a track of `room` on the operator's behalf.
    pub async fn mute_track(
        &self,
        room: &str,
        track: TrackId,
        muted: bool,
    ) -> Result<(), SfuError> {
        let name = room.to_owned();
        // Only the publisher's worker has the track as its own; the others refuse.
        let per_worker = self
            .call_all(move |w| w.sfu.mute_track(&name, track, muted, w.now))
            .await?;
        let local = first_success(per_worker, |_| ());
        if local.is_ok() || self.gateway.is_none() {
            return local;
        }
        // Published on another node, if the directory has it in this room.
        let in_room = self
            .room_participants(room)
            .await?
            .iter()
            .any(|m| m.tracks.iter().any(|t| t.id == track));
        if in_room
            && self.tell_other_nodes(OperatorAction::MuteTrack {
                room: room.to_owned(),
                track,
                muted,
            })
        {
            return Ok(());
        }
        local
    }
}

/// Combine the answers of every worker to a room-wide action: `Ok` if any worker did it
/// (combined by `combine`), else the first worker's error.
fn first_success<T, U>(
    answers: Vec<Result<T, SfuError>>,
    combine: impl FnOnce(&mut dyn Iterator<Item = T>) -> U,
) -> Result<U, SfuError> {
    let mut error = None;
    let mut done = Vec::new();
    for answer in answers {
        match answer {
            Ok(value) => done.push(value),
            Err(e) => {
                error.get_or_insert(e);
            }
        }
    }
    match error {
        Some(e) if done.is_empty() => Err(e),
        _ => Ok(combine(&mut done.into_iter())),
    }
}
