//! Participants that negotiate exactly once, with one offer of their own: WHIP publishers
//! (RFC 9725) and WHEP viewers. Neither can take a server offer, so the server never
//! renegotiates them (`renegotiate` skips them). A WHIP publisher is otherwise a participant
//! like any other: its tracks reach the room as a browser's do. A WHEP viewer offers recvonly
//! audio and video m-lines; each becomes a down-track of the followed publisher's track of its
//! kind, with the same layer selection as any subscriber, and the viewer ends when that
//! publisher leaves.

use std::time::Instant;

use str0m::change::SdpOffer;
use str0m::media::{MediaKind, Mid};

use super::{sdp_error, Sfu};
use crate::error::SfuError;
use crate::event::JoinInfo;
use crate::ids::{ParticipantId, TrackId};
use crate::participant::{Playback, RemovalReason, SessionKind};
use crate::policy::Permissions;
use crate::track::{DownTrack, TrackSource};

impl Sfu {
    /// Join `room` as a WHIP publisher and answer its offer. Nothing of the participant is
    /// left behind when the offer is refused.
    pub fn join_ingest(
        &mut self,
        room: &str,
        name: &str,
        permissions: Permissions,
        offer: &str,
        now: Instant,
    ) -> Result<(JoinInfo, String), SfuError> {
        // Parsed before joining, so that a malformed offer does not show the room a
        // participant that comes and goes.
        SdpOffer::from_sdp_string(offer).map_err(|e| SfuError::InvalidSdp(sdp_error(&e)))?;
        let info = self.join(room, name, permissions, now)?;
        self.answer_single_offer(info, SessionKind::Ingest, offer, now)
    }

    /// Join `room` as a WHEP viewer of `publisher` (or of the room's default, see
    /// [`Sfu::playback_source`]) and answer its recvonly offer. Returns whom it watches.
    pub fn join_playback(
        &mut self,
        room: &str,
        name: &str,
        permissions: Permissions,
        publisher: Option<ParticipantId>,
        offer: &str,
        now: Instant,
    ) -> Result<(JoinInfo, String, ParticipantId), SfuError> {
        SdpOffer::from_sdp_string(offer).map_err(|e| SfuError::InvalidSdp(sdp_error(&e)))?;
        let publisher = self.playback_source(room, publisher)?;
        let info = self.join(room, name, permissions, now)?;
        let kind = SessionKind::Playback(Playback {
            publisher,
            slots: Vec::new(),
        });
        let (info, answer) = self.answer_single_offer(info, kind, offer, now)?;
        Ok((info, answer, publisher))
    }

    fn answer_single_offer(
        &mut self,
        info: JoinInfo,
        kind: SessionKind,
        offer: &str,
        now: Instant,
    ) -> Result<(JoinInfo, String), SfuError> {
        let id = info.participant;
        if let Some(p) = self.participants.get_mut(&id) {
            p.kind = kind;
        }
        match self.accept_offer(id, offer, now) {
            Ok(answer) => Ok((info, answer)),
            Err(e) => {
                self.remove(id, now);
                Err(e)
            }
        }
    }

    /// Whom a WHEP viewer of `room` watches: `wanted` if it is in the room and publishes;
    /// otherwise whoever shares a screen, else the earliest joined participant publishing
    /// video, else the earliest publishing audio.
    pub fn playback_source(
        &self,
        room: &str,
        wanted: Option<ParticipantId>,
    ) -> Result<ParticipantId, SfuError> {
        let r = self
            .rooms
            .get(room)
            .ok_or_else(|| SfuError::UnknownRoom(room.to_owned()))?;
        // Members on this worker first, in the order they joined, then the others'.
        let members: Vec<ParticipantId> = r
            .participants
            .iter()
            .copied()
            .chain(r.remote.iter().map(|m| m.id))
            .collect();
        let publishes = |id: &ParticipantId, test: &dyn Fn(MediaKind, TrackSource) -> bool| {
            self.publisher_tracks(*id)
                .iter()
                .filter_map(|(_, t)| self.tracks.get(t))
                .any(|t| test(t.kind, t.source))
        };
        if let Some(id) = wanted {
            if !members.contains(&id) {
                return Err(SfuError::UnknownParticipant(id));
            }
            if !publishes(&id, &|_, _| true) {
                return Err(SfuError::NothingToPlay(format!("{id} publishes nothing")));
            }
            return Ok(id);
        }
        let screen = |kind, source| kind == MediaKind::Video && source == TrackSource::Screen;
        let video = |kind, _| kind == MediaKind::Video;
        let audio = |kind, _| kind == MediaKind::Audio;
        for test in [
            &screen as &dyn Fn(MediaKind, TrackSource) -> bool,
            &video,
            &audio,
        ] {
            if let Some(id) = members.iter().find(|id| publishes(id, test)) {
                return Ok(*id);
            }
        }
        Err(SfuError::NothingToPlay(format!(
            "nobody publishes in room {room}"
        )))
    }

    /// A WHEP viewer's m-line we send on was added: it carries the publisher's track of its
    /// kind from now on (or from when there is one).
    pub(super) fn add_playback_slot(&mut self, viewer: ParticipantId, mid: Mid, kind: MediaKind) {
        let Some(p) = self.participants.get_mut(&viewer) else {
            return;
        };
        let SessionKind::Playback(playback) = &mut p.kind else {
            return;
        };
        if !playback.slots.iter().any(|(m, _)| *m == mid) {
            playback.slots.push((mid, kind));
        }
        self.bind_playback_slots(viewer);
    }

    /// The publisher `publisher` has a new track: viewers following it with an empty slot of
    /// that kind get it.
    pub(super) fn bind_playback_followers(&mut self, publisher: ParticipantId) {
        for viewer in self.playback_followers(publisher) {
            self.bind_playback_slots(viewer);
        }
    }

    /// The publisher left: its viewers have nothing left to play and end.
    pub(super) fn end_playback_of(&mut self, publisher: ParticipantId, now: Instant) {
        for viewer in self.playback_followers(publisher) {
            self.remove_with_reason(viewer, RemovalReason::PublisherLeft, now);
        }
    }

    /// The tracks `publisher` (on this worker or another) publishes, each with its order
    /// among them (its mid on this worker, the order announced otherwise).
    fn publisher_tracks(&self, publisher: ParticipantId) -> Vec<(u64, TrackId)> {
        if let Some(p) = self.participants.get(&publisher) {
            return p
                .published
                .iter()
                .map(|(mid, t)| (mid.parse::<u64>().unwrap_or(u64::MAX), *t))
                .collect();
        }
        self.rooms
            .values()
            .flat_map(|r| &r.remote)
            .find(|m| m.id == publisher)
            .map(|m| (0..).zip(m.tracks.iter().copied()).collect())
            .unwrap_or_default()
    }

    fn playback_followers(&self, publisher: ParticipantId) -> Vec<ParticipantId> {
        self.participants
            .values()
            .filter(|p| matches!(&p.kind, SessionKind::Playback(pb) if pb.publisher == publisher))
            .map(|p| p.id)
            .collect()
    }

    /// Give every empty slot of the viewer the publisher's track of its kind: for video a
    /// screen share first, then the camera; the track on the lowest mid among equals.
    fn bind_playback_slots(&mut self, viewer: ParticipantId) {
        let Some(p) = self.participants.get(&viewer) else {
            return;
        };
        let SessionKind::Playback(playback) = &p.kind else {
            return;
        };
        let published = self.publisher_tracks(playback.publisher);
        let mut bindings: Vec<(Mid, MediaKind, TrackId)> = Vec::new();
        for &(mid, kind) in &playback.slots {
            if p.downtracks.contains_key(&mid) {
                continue;
            }
            let best = published
                .iter()
                .filter_map(|(order, t)| Some((*order, self.tracks.get(t)?)))
                .filter(|(_, t)| t.kind == kind)
                .filter(|(_, t)| !bindings.iter().any(|(_, _, bound)| *bound == t.id))
                .min_by_key(|(order, t)| (t.source != TrackSource::Screen, *order))
                .map(|(_, t)| t.id);
            if let Some(track) = best {
                bindings.push((mid, kind, track));
            }
        }
        let Some(p) = self.participants.get_mut(&viewer) else {
            return;
        };
        for (mid, kind, track) in bindings {
            let mut downtrack = DownTrack::new(track, mid, kind);
            // Answering the viewer's offer made the send stream of each of its recvonly
            // m-lines; there is no answer of its own to wait for.
            if let Some(media) = p.rtc.media(mid) {
                downtrack.payload_types = p.payload_types.accepted_by(media.remote_pts());
            }
            match p.rtc.direct_api().stream_tx_by_mid(mid, None) {
                Some(stream) => downtrack.activate(stream.ssrc()),
                None => {
                    tracing::warn!(participant = %viewer, %mid, "no send stream for a WHEP m-line");
                    continue;
                }
            }
            p.downtracks.insert(mid, downtrack);
            p.mids_to_stop.retain(|m| *m != mid);
            if let Some(t) = self.tracks.get_mut(&track) {
                t.subscribers.push((viewer, mid));
            }
            tracing::info!(participant = %viewer, track = %track, %mid, ?kind, "WHEP viewer receives track");
        }
    }
}
