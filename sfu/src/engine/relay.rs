//! The engine's side of the relay between workers (see `crate::relay`): telling the other
//! workers what happens in rooms, following what they tell, fanning out the media they relay,
//! and asking each publisher's worker for exactly the layers this worker's subscribers need.

use std::collections::HashMap;
use std::time::Instant;

use str0m::media::Mid;

use super::forward::IncomingPacket;
use super::{Sfu, SfuOutput};
use crate::event::RemovalReason;
use crate::event::{ParticipantInfo, SfuEvent, TrackInfo};
use crate::ids::TrackId;
use crate::relay::{
    with_layer, LayerMask, OperatorAction, RelayMessage, RelayedPacket, RoomEvent, WorkerIndex,
};
use crate::room::RemoteMember;
use crate::track::UpTrack;

impl Sfu {
    /// Control messages from worker `from`, in the order it sent them. Apply them all, then
    /// drain [`poll_output`](Sfu::poll_output): the room's members here get the events, and
    /// one offer for everything that changed.
    pub fn handle_relay(&mut self, from: WorkerIndex, messages: Vec<RelayMessage>, now: Instant) {
        if from == self.config.shard || usize::from(from) >= self.relay_control.len() {
            tracing::warn!(from, "relay message from an unknown worker ignored");
            return;
        }
        for message in messages {
            match message {
                RelayMessage::Room(event) => self.apply_room_event(from, event, now),
                RelayMessage::Needs { track, layers } => self.set_relay_needs(from, track, layers),
                RelayMessage::Operator(action) => self.apply_operator_action(&action, now),
                RelayMessage::KeyframeRequest { track, layer, kind } => {
                    if self.tracks.get(&track).is_some_and(|t| t.origin.is_none()) {
                        self.request_keyframe(track, layer, kind, now);
                    }
                }
            }
        }
        let mut members = std::mem::take(&mut self.renegotiate_after_drain);
        members.sort_unstable();
        members.dedup();
        for member in members {
            self.renegotiate(member);
        }
        self.drive(now);
    }

    /// Media of remote publishers for this worker's subscribers. Forwarded like local media;
    /// drain [`poll_output`](Sfu::poll_output) afterwards.
    pub fn handle_relayed_media(&mut self, packets: &[RelayedPacket], now: Instant) {
        for packet in packets {
            self.counters.relayed_packets_in += 1;
            if self
                .tracks
                .get(&packet.track)
                .is_none_or(|t| t.origin.is_none())
            {
                // Unpublished meanwhile, or not a relayed track: nothing to do.
                continue;
            }
            self.fan_out(packet.track, &IncomingPacket::relayed(packet), now);
        }
        if !self.dirty.is_empty() {
            self.receive_pending.get_or_insert(now);
        }
    }

    /// An operator's action from elsewhere: applied to this worker's own participants and
    /// tracks (the others are told by theirs).
    pub fn apply_operator_action(&mut self, action: &OperatorAction, now: Instant) {
        let result = match action {
            OperatorAction::RemoveParticipant { room, participant } => self
                .remove_participant(room, *participant, RemovalReason::Removed, now)
                .map(|()| 1),
            OperatorAction::MuteTrack { room, track, muted } => {
                self.mute_track(room, *track, *muted, now).map(|()| 1)
            }
            OperatorAction::CloseRoom { room } => self.close_room(room, now),
        };
        match result {
            Ok(done) => {
                tracing::info!(?action, done, "operator action from another worker applied")
            }
            // Most workers have nothing to do with a given action.
            Err(e) => tracing::trace!(?action, error = %e, "operator action not for this worker"),
        }
    }

    /// Tell every other worker what happened in a room of this one.
    pub(super) fn broadcast(&mut self, event: RoomEvent) {
        let shard = usize::from(self.config.shard);
        for (worker, out) in self.relay_control.iter_mut().enumerate() {
            if worker != shard {
                out.push(RelayMessage::Room(event.clone()));
            }
        }
    }

    pub(super) fn send_relay(&mut self, to: WorkerIndex, message: RelayMessage) {
        if let Some(out) = self.relay_control.get_mut(usize::from(to)) {
            out.push(message);
        }
    }

    /// Move what the relay has gathered into the outputs, one batch per worker.
    pub(super) fn hand_out_relayed(&mut self) {
        for (to, messages) in self.relay_control.iter_mut().enumerate() {
            if !messages.is_empty() {
                self.outputs.push_back(SfuOutput::RelayControl {
                    to: to as WorkerIndex,
                    messages: std::mem::take(messages),
                });
            }
        }
        for (to, packets) in self.relay_media.iter_mut().enumerate() {
            if !packets.is_empty() {
                self.outputs.push_back(SfuOutput::RelayMedia {
                    to: to as WorkerIndex,
                    packets: std::mem::take(packets),
                });
            }
        }
    }

    /// For each relayed track, the layers this worker's subscribers are on or moving to, and
    /// the lowest; ask the publisher's worker for them when that changed.
    pub(super) fn update_relay_needs(&mut self) {
        self.relay_needs_changed = false;
        let mut needs: HashMap<TrackId, LayerMask> = HashMap::new();
        for p in self.participants.values() {
            for d in p.downtracks.values() {
                let Some(track) = self.tracks.get(&d.track).filter(|t| t.origin.is_some()) else {
                    continue;
                };
                // The lowest layer always flows while anyone here subscribes: it is cheap,
                // keeps its measured rate and size known here (a paused video is offered
                // by what it really takes, not a nominal guess), and a subscriber that must
                // step down or resume never waits for another worker to start it.
                let mask = needs.entry(track.id).or_insert(with_layer(0, 0));
                for layer in [d.target_layer(), d.current_layer()].into_iter().flatten() {
                    *mask = with_layer(*mask, layer);
                }
            }
        }
        let mut messages = Vec::new();
        for track in self.tracks.values_mut() {
            let Some(origin) = track.origin else {
                continue;
            };
            let layers = needs.get(&track.id).copied().unwrap_or(0);
            if layers != track.needs_told {
                track.needs_told = layers;
                messages.push((
                    origin,
                    RelayMessage::Needs {
                        track: track.id,
                        layers,
                    },
                ));
            }
        }
        for (origin, message) in messages {
            self.send_relay(origin, message);
        }
    }

    /// Worker `from` needs `layers` of a track published here.
    fn set_relay_needs(&mut self, from: WorkerIndex, track: TrackId, layers: LayerMask) {
        let Some(t) = self.tracks.get_mut(&track).filter(|t| t.origin.is_none()) else {
            return;
        };
        t.relay_needs.retain(|&(worker, _)| worker != from);
        if layers != 0 {
            t.relay_needs.push((from, layers));
        }
        tracing::debug!(track = %track, worker = from, layers, "relay needs");
    }

    fn apply_room_event(&mut self, from: WorkerIndex, event: RoomEvent, now: Instant) {
        match event {
            RoomEvent::Data { room, data } => {
                let from_member = self
                    .rooms
                    .get_mut(&room)
                    .is_some_and(|r| r.remote_member(data.from).is_some());
                if from_member {
                    self.deliver_data(&room, &data);
                } else {
                    tracing::debug!(room, from = %data.from, "data from a non-member dropped");
                }
            }
            RoomEvent::Joined {
                room,
                participant,
                name,
            } => {
                let r = self.rooms.entry(room.clone()).or_default();
                if r.remote_member(participant).is_some() {
                    return;
                }
                r.remote.push(RemoteMember {
                    id: participant,
                    name: name.clone(),
                    tracks: Vec::new(),
                });
                let info = ParticipantInfo {
                    id: participant,
                    name,
                    tracks: Vec::new(),
                };
                self.notify_room(&room, participant, |to| SfuEvent::ParticipantJoined {
                    to,
                    participant: info.clone(),
                });
            }
            RoomEvent::Left { room, participant } => {
                let Some(r) = self.rooms.get_mut(&room) else {
                    return;
                };
                let Some(at) = r.remote.iter().position(|m| m.id == participant) else {
                    return;
                };
                let member = r.remote.remove(at);
                self.pins.retain(|_, pinned| *pinned != participant);
                for track in member.tracks {
                    self.unpublish(track);
                }
                self.notify_room(&room, participant, |to| SfuEvent::ParticipantLeft {
                    to,
                    participant,
                });
                if self.rooms.get(&room).is_some_and(|r| r.is_empty()) {
                    self.rooms.remove(&room);
                    tracing::info!(room = %room, "room closed");
                }
                self.end_playback_of(participant, now);
                self.renegotiate_room_after_drain(&room, participant);
            }
            RoomEvent::Published {
                room,
                participant,
                track,
                kind,
                rids,
                source,
                muted,
            } => {
                let Some(member) = self
                    .rooms
                    .get_mut(&room)
                    .and_then(|r| r.remote_member(participant))
                else {
                    return;
                };
                member.tracks.push(track);
                // The publisher's mid means nothing here: keyframe requests go to its worker.
                let mut up = UpTrack::new(track, participant, Mid::from("-"), kind, &rids);
                up.origin = Some(from);
                up.source = source;
                up.muted = muted;
                self.tracks.insert(track, up);
                let info = TrackInfo {
                    id: track,
                    kind,
                    muted,
                };
                self.notify_room(&room, participant, |to| SfuEvent::TrackPublished {
                    to,
                    participant,
                    track: info.clone(),
                });
                self.bind_playback_followers(participant);
                self.renegotiate_room_after_drain(&room, participant);
            }
            RoomEvent::Unpublished {
                room,
                participant,
                track,
            } => {
                let Some(member) = self
                    .rooms
                    .get_mut(&room)
                    .and_then(|r| r.remote_member(participant))
                else {
                    return;
                };
                member.tracks.retain(|t| *t != track);
                self.unpublish(track);
                self.notify_room(&room, participant, |to| SfuEvent::TrackUnpublished {
                    to,
                    participant,
                    track,
                });
                self.renegotiate_room_after_drain(&room, participant);
            }
            RoomEvent::Muted {
                room,
                participant,
                track,
                muted,
            } => {
                if let Some(t) = self.tracks.get_mut(&track).filter(|t| t.origin.is_some()) {
                    t.muted = muted;
                }
                self.notify_room(&room, participant, |to| SfuEvent::TrackMuted {
                    to,
                    participant,
                    track,
                    muted,
                });
            }
            RoomEvent::SourceChanged { track, source } => {
                if let Some(t) = self.tracks.get_mut(&track).filter(|t| t.origin.is_some()) {
                    t.source = source;
                }
            }
        }
    }
}
