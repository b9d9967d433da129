//! What an operator (the room API) does to rooms, and the metrics snapshot: listing rooms
//! and participants, removing a participant, closing a room, muting a track.

use std::time::Instant;

use str0m::media::{KeyframeRequestKind, MediaKind};

use super::{Sfu, SfuOutput};
use crate::error::SfuError;
use crate::event::{ParticipantInfo, RemovalReason, SfuEvent};
use crate::ids::{ParticipantId, TrackId};
use crate::metrics::{Counters, MetricsSnapshot};

/// A room as the room API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomInfo {
    pub name: String,
    pub participants: usize,
}

impl Sfu {
    /// Every room and how many are in it, by name.
    pub fn rooms(&self) -> Vec<RoomInfo> {
        let mut rooms: Vec<RoomInfo> = self
            .rooms
            .iter()
            .map(|(name, room)| RoomInfo {
                name: name.clone(),
                participants: room.len(),
            })
            .collect();
        rooms.sort_by(|a, b| a.name.cmp(&b.name));
        rooms
    }

    /// Everyone in `room` (on every worker), with their tracks.
    pub fn room_participants(&self, room: &str) -> Result<Vec<ParticipantInfo>, SfuError> {
        if !self.rooms.contains_key(room) {
            return Err(SfuError::UnknownRoom(room.to_owned()));
        }
        Ok(self.members_info(room, None))
    }

    /// Remove a participant of `room`: it gets [`SfuEvent::Removed`] with `reason`, the others
    /// `ParticipantLeft`.
    pub fn remove_participant(
        &mut self,
        room: &str,
        id: ParticipantId,
        reason: RemovalReason,
        now: Instant,
    ) -> Result<(), SfuError> {
        match self.participants.get(&id) {
            Some(p) if p.room == room => {}
            _ => return Err(SfuError::UnknownParticipant(id)),
        }
        self.remove_with_reason(id, reason, now);
        self.drive(now);
        Ok(())
    }

    /// Remove everyone in `room` connected to this worker (reason
    /// [`RemovalReason::RoomClosed`]); returns how many.
    pub fn close_room(&mut self, room: &str, now: Instant) -> Result<usize, SfuError> {
        let members = self
            .rooms
            .get(room)
            .map(|r| r.participants.clone())
            .ok_or_else(|| SfuError::UnknownRoom(room.to_owned()))?;
        for id in &members {
            self.remove_with_reason(*id, RemovalReason::RoomClosed, now);
        }
        self.drive(now);
        tracing::info!(
            room,
            participants = members.len(),
            "room closed by the operator"
        );
        Ok(members.len())
    }

    /// Mute (or unmute) a track of `room` on the operator's behalf: its media is no longer
    /// forwarded, the publisher cannot unmute it itself, and everyone, the publisher included,
    /// gets `TrackMuted`. Unmuting asks the publisher for keyframes so video resumes at once.
    pub fn mute_track(
        &mut self,
        room: &str,
        track: TrackId,
        muted: bool,
        now: Instant,
    ) -> Result<(), SfuError> {
        // Only the publisher's worker mutes: it stops the media for every worker.
        let t = self
            .tracks
            .get_mut(&track)
            .filter(|t| t.origin.is_none())
            .ok_or_else(|| SfuError::UnknownTrack(track.to_string()))?;
        let publisher = t.publisher;
        if self.participants.get(&publisher).map(|p| p.room.as_str()) != Some(room) {
            return Err(SfuError::UnknownTrack(track.to_string()));
        }
        t.muted = muted;
        let layers = t.layers.len();
        if muted {
            self.operator_muted.insert(track);
        } else if self.operator_muted.remove(&track) {
            for layer in 0..layers {
                self.request_keyframe(track, layer, KeyframeRequestKind::Pli, now);
            }
        }
        self.outputs
            .push_back(SfuOutput::Event(SfuEvent::TrackMuted {
                to: publisher,
                participant: publisher,
                track,
                muted,
            }));
        self.notify_room(room, publisher, |to| SfuEvent::TrackMuted {
            to,
            participant: publisher,
            track,
            muted,
        });
        self.broadcast(crate::relay::RoomEvent::Muted {
            room: room.to_owned(),
            participant: publisher,
            track,
            muted,
        });
        tracing::info!(room, participant = %publisher, %track, muted, "track muted by the operator");
        self.drive(now);
        Ok(())
    }

    /// The media path's cumulative counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Gauges and counters now, for exporters.
    pub fn metrics_snapshot(&self) -> MetricsSnapshot {
        let mut snapshot = MetricsSnapshot {
            rooms: self.rooms.len(),
            participants: self.participants.len(),
            tracks: self.tracks.values().filter(|t| t.origin.is_none()).count(),
            counters: self.counters.clone(),
            ..MetricsSnapshot::default()
        };
        for p in self.participants.values() {
            snapshot.pending_participants += usize::from(!p.connected);
            snapshot.subscriptions += p.downtracks.len();
            if p.connected && !p.downtracks.is_empty() {
                snapshot.observe_estimate(p.bandwidth.allocation_bps());
            }
            for d in p.downtracks.values().filter(|d| d.kind == MediaKind::Video) {
                snapshot.observe_layer_changes(d.gate.changes_last_minute());
            }
        }
        snapshot
    }
}
