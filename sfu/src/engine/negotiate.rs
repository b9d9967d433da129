//! Who receives what: tracks appear when a publisher's offer adds them and disappear when it
//! removes them or leaves; each subscriber's transceivers follow by server-initiated
//! renegotiation, one offer in flight at a time.

use str0m::media::{Direction, MediaAdded, MediaChanged, MediaKind, Rid};

use super::{Sfu, SfuOutput};
use crate::event::{OfferedTrack, SfuEvent, TrackInfo};
use crate::ids::{ParticipantId, TrackId};
use crate::participant::SessionKind;
use crate::relay::RoomEvent;
use crate::track::{DownTrack, TrackSource, UpTrack};

impl Sfu {
    pub(super) fn media_added(&mut self, id: ParticipantId, media: MediaAdded) {
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        if p.downtracks.contains_key(&media.mid) {
            return; // a transceiver the server offered; activated when its answer arrives
        }
        if matches!(p.kind, SessionKind::Playback(_)) {
            if media.direction.is_sending() {
                self.add_playback_slot(id, media.mid, media.kind);
            }
            return;
        }
        if !media.direction.is_receiving() || p.published.contains_key(&media.mid) {
            return;
        }
        let track_id = TrackId::random();
        p.published.insert(media.mid, track_id);
        let room = p.room.clone();
        let rids: Vec<Rid> = media
            .simulcast
            .iter()
            .flat_map(|s| &s.recv)
            .map(|layer| layer.rid)
            .collect();
        self.tracks.insert(
            track_id,
            UpTrack::new(track_id, id, media.mid, media.kind, &rids),
        );
        self.broadcast(RoomEvent::Published {
            room: room.clone(),
            participant: id,
            track: track_id,
            kind: media.kind,
            rids,
            source: TrackSource::Camera,
            muted: false,
        });
        tracing::info!(participant = %id, track = %track_id, mid = %media.mid, kind = ?media.kind, "track published");
        let info = TrackInfo {
            id: track_id,
            kind: media.kind,
            muted: false,
        };
        self.notify_room(&room, id, |to| SfuEvent::TrackPublished {
            to,
            participant: id,
            track: info.clone(),
        });
        self.bind_playback_followers(id);
        // The publisher's other new tracks come as more `MediaAdded` in the same drain.
        self.renegotiate_room_after_drain(&room, id);
    }

    pub(super) fn media_changed(&mut self, id: ParticipantId, change: MediaChanged) {
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        if p.downtracks.contains_key(&change.mid) || change.direction.is_receiving() {
            return;
        }
        let Some(track_id) = p.published.remove(&change.mid) else {
            return;
        };
        p.ssrc_tracks.retain(|_, (t, _)| *t != track_id);
        let room = p.room.clone();
        self.unpublish(track_id);
        self.notify_room(&room, id, |to| SfuEvent::TrackUnpublished {
            to,
            participant: id,
            track: track_id,
        });
        self.broadcast(RoomEvent::Unpublished {
            room: room.clone(),
            participant: id,
            track: track_id,
        });
        self.renegotiate_room_after_drain(&room, id);
    }

    /// Remove a published track and every subscriber's down-track of it.
    pub(super) fn unpublish(&mut self, track_id: TrackId) {
        let Some(track) = self.tracks.remove(&track_id) else {
            return;
        };
        self.operator_muted.remove(&track_id);
        self.relay_needs_changed = true;
        tracing::info!(participant = %track.publisher, track = %track_id, "track unpublished");
        for (subscriber, mid) in track.subscribers {
            if let Some(s) = self.participants.get_mut(&subscriber) {
                s.downtracks.remove(&mid);
                s.mids_to_stop.push(mid);
            }
        }
    }

    /// Renegotiate everyone in `room` except `except`, whose subscriptions may have changed.
    pub(super) fn renegotiate_room(&mut self, room: &str, except: ParticipantId) {
        let members: Vec<ParticipantId> = self
            .rooms
            .get(room)
            .map(|r| r.others(except).collect())
            .unwrap_or_default();
        for member in members {
            self.renegotiate(member);
        }
    }

    /// Like `renegotiate_room`, once the connection being drained has no more events: an
    /// offer made now would miss the tracks its next events add, and the next offer waits
    /// for the answer to this one.
    pub(super) fn renegotiate_room_after_drain(&mut self, room: &str, except: ParticipantId) {
        if let Some(r) = self.rooms.get(room) {
            self.renegotiate_after_drain.extend(r.others(except));
        }
    }

    /// Bring a participant's down-tracks in line with what its room publishes: add the missing,
    /// stop the ended, and send one offer for all of it. One offer is in flight at a time.
    pub(super) fn renegotiate(&mut self, id: ParticipantId) {
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        if p.kind != SessionKind::Interactive {
            // WHIP and WHEP peers take no offers: their m-lines stay as they offered them.
            p.mids_to_stop.clear();
            return;
        }
        if !p.negotiation.established {
            return;
        }
        if p.negotiation.pending.is_some() {
            // Runs again when the answer arrives.
            return;
        }
        if p.negotiation.client_offer_expected_since.is_some() {
            // Runs again when the participant's offer arrives, or after `GLARE_YIELD`.
            return;
        }
        let can_subscribe = p.permissions.can_subscribe;
        let room = self.rooms.get(&p.room);
        let local = room
            .into_iter()
            .flat_map(|room| room.others(id))
            .filter_map(|other| self.participants.get(&other))
            .flat_map(|other| other.published.values());
        let remote = room
            .into_iter()
            .flat_map(|room| &room.remote)
            .flat_map(|member| &member.tracks);
        let wanted: Vec<(TrackId, ParticipantId, MediaKind)> = local
            .chain(remote)
            .filter_map(|t| self.tracks.get(t))
            .filter(|_| can_subscribe)
            .map(|t| (t.id, t.publisher, t.kind))
            .collect();

        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        let mut api = p.rtc.sdp_api();
        let mut added = Vec::new();
        for (track, publisher, kind) in wanted {
            if !p.downtracks.values().any(|d| d.track == track) {
                let mid = api.add_media(
                    kind,
                    Direction::SendOnly,
                    Some(publisher.to_string()),
                    Some(track.to_string()),
                    None,
                );
                added.push((track, mid, kind));
            }
        }
        for mid in p.mids_to_stop.drain(..) {
            api.stop_media(mid);
        }
        let Some((offer, pending)) = api.apply() else {
            return;
        };
        p.negotiation.pending = Some(pending);
        self.relay_needs_changed |= !added.is_empty();
        for (track, mid, kind) in added {
            p.downtracks.insert(mid, DownTrack::new(track, mid, kind));
            if let Some(t) = self.tracks.get_mut(&track) {
                t.subscribers.push((id, mid));
            }
        }
        let tracks: Vec<OfferedTrack> = p
            .downtracks
            .values()
            .filter_map(|d| {
                let t = self.tracks.get(&d.track)?;
                Some(OfferedTrack {
                    mid: d.mid.to_string(),
                    publisher: t.publisher,
                    track: t.id,
                    kind: t.kind,
                })
            })
            .collect();
        tracing::debug!(participant = %id, "sending offer");
        let sdp = offer.to_sdp_string();
        p.negotiation.pending_offer = Some((sdp.clone(), tracks.clone()));
        self.outputs.push_back(SfuOutput::Event(SfuEvent::Offer {
            to: id,
            sdp,
            tracks,
        }));
    }
}
