//! The sans-IO SFU core: rooms, participants and the forwarding path, driven by datagrams and
//! time, producing datagrams to send and events for signaling. No sockets, threads or locks:
//! one `Sfu` value is owned by one task (see `io::server` for the one we ship).
//!
//! This file holds the public API and the drive loop; `forward.rs` the per-packet path,
//! `negotiate.rs` who receives what, `allocate.rs` the periodic layer allocation and stats.

mod admin;
mod allocate;
mod data;
mod forward;
mod negotiate;
mod pin;
mod relay;
mod single_offer;

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::bwe::BweKind;
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::Mid;
use str0m::net::{Protocol, Receive, Transmit};
use str0m::{Candidate, Event, IceConnectionState, Input, Output};
use subtle::ConstantTimeEq;

use crate::demux::{Demux, RouteUpdate};
use crate::error::SfuError;
use crate::event::{JoinInfo, ParticipantInfo, ParticipantStats, ResumeInfo, SfuEvent, TrackInfo};
use crate::ids::{ParticipantId, TrackId};
use crate::metrics::Counters;
use crate::participant::{EgressSeen, Participant, RemovalReason};
use crate::placement::RoomPlacement;
use crate::policy::{self, Permissions, SfuLimits, ShardLoad};
use crate::relay::{RelayMessage, RelayedPacket, RoomEvent, WorkerIndex};
use crate::room::Room;
use crate::track::{TrackSource, UpTrack};

pub use admin::RoomInfo;

/// How the SFU is reached and how patient it is.
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// Addresses put in ICE candidates: the UDP address, and the ICE-TCP one if enabled.
    /// Datagrams must be handed in with one of these as their destination.
    pub candidates: Vec<(Protocol, SocketAddr)>,
    /// A participant that has not connected this long after joining is removed.
    pub connect_timeout: Duration,
    /// A participant whose ICE has been disconnected this long is removed.
    pub disconnect_timeout: Duration,
    /// Rooms, participants, tracks and pending joins the SFU accepts.
    pub limits: SfuLimits,
    /// A participant whose signaling went away (see [`Sfu::detach`]) may resume this long.
    pub resume_grace: Duration,
    /// A connected participant from which nothing at all has arrived this long is removed.
    pub media_timeout: Duration,
    /// Which media worker this `Sfu` is, when several share one socket; carried in the low
    /// byte of every `ParticipantId` it hands out.
    pub shard: u8,
    /// A router in front of several workers routes datagrams (one table for all of them):
    /// keep no routing table here, hand the ufrag changes to `take_route_updates`, and take
    /// datagrams through [`Sfu::handle_routed`].
    pub report_routes: bool,
    /// The other workers' rooms and pending joins, when several share the server-wide
    /// limits.
    pub load: Option<Arc<ShardLoad>>,
    /// Told when this worker's members of a room come and go, for placing joins.
    pub placement: Option<Arc<RoomPlacement>>,
    /// How many workers (`Sfu`s) share rooms through the relay (see `relay.rs`); 1 means
    /// this one is alone and nothing is relayed.
    pub workers: u8,
}

impl SfuConfig {
    pub fn new(udp: SocketAddr, tcp: Option<SocketAddr>) -> Self {
        let mut candidates = vec![(Protocol::Udp, udp)];
        candidates.extend(tcp.map(|a| (Protocol::Tcp, a)));
        Self {
            candidates,
            connect_timeout: Duration::from_secs(30),
            disconnect_timeout: Duration::from_secs(5),
            limits: SfuLimits::default(),
            resume_grace: Duration::from_secs(30),
            media_timeout: Duration::from_secs(10),
            shard: 0,
            report_routes: false,
            load: None,
            placement: None,
            workers: 1,
        }
    }
}

/// What the driver of an `Sfu` must do next.
#[derive(Debug)]
pub enum SfuOutput {
    Transmit(Transmit),
    Event(SfuEvent),
    /// Control messages for another worker, in order; hand them to its
    /// [`Sfu::handle_relay`]. Never drop them.
    RelayControl {
        to: WorkerIndex,
        messages: Vec<RelayMessage>,
    },
    /// Media for another worker's subscribers; hand them to its
    /// [`Sfu::handle_relayed_media`], or drop them if it is too far behind.
    RelayMedia {
        to: WorkerIndex,
        packets: Vec<RelayedPacket>,
    },
}

/// Housekeeping (timeouts, layer allocation, dynacast) runs this often.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_millis(500);
/// How long the server holds its next offer back for a participant whose offer collided
/// with the server's, waiting for that participant to offer again.
const GLARE_YIELD: Duration = Duration::from_secs(2);
/// Each room's active speakers are re-evaluated this often.
const SPEAKERS_INTERVAL: Duration = Duration::from_millis(250);
/// Every participant gets a `Stats` event this often.
const STATS_INTERVAL: Duration = Duration::from_secs(2);
/// Due timeouts a drain handles itself before leaving the rest to `handle_timeout`, so a
/// connection that keeps reporting past deadlines cannot hold the thread.
const MAX_INLINE_TIMEOUTS: u32 = 8;

pub struct Sfu {
    config: SfuConfig,
    /// Boxed: a `Participant` (its `Rtc` inline) is about 11 KiB, and a map of them inline
    /// keeps that much per slot of its capacity, empty slots too, even after everyone left
    /// (hash maps do not shrink): 5.6 MB after 1,000 joins and leaves, in heaptrack.
    participants: HashMap<ParticipantId, Box<Participant>>,
    rooms: HashMap<String, Room>,
    tracks: HashMap<TrackId, UpTrack>,
    demux: Demux,
    /// Every participant's next `Rtc` timeout, soonest first.
    timeouts: BTreeSet<(Instant, ParticipantId)>,
    /// Participants whose `Rtc` has output to drain.
    dirty: Vec<ParticipantId>,
    /// When the datagram that left participants dirty arrived; `poll_output` drains them.
    receive_pending: Option<Instant>,
    /// Ufrag changes not yet taken by `take_route_updates` (kept if `report_routes`).
    route_updates: Vec<RouteUpdate>,
    outputs: VecDeque<SfuOutput>,
    next_housekeeping: Instant,
    /// Subscribers whose latest feedback shows congestion: allocated again at once, not at
    /// the next housekeeping tick, so a sudden drop is answered within one feedback interval.
    congested: Vec<ParticipantId>,
    /// When the first of them was seen congested (`handle_timeout` is due then).
    reallocate_at: Option<Instant>,
    next_speakers: Instant,
    next_stats: Instant,
    counters: Counters,
    /// Tracks an operator muted: their media is not forwarded until unmuted.
    operator_muted: HashSet<TrackId>,
    /// Participants to renegotiate once the connection being drained has reported all its
    /// track changes: one offer for all of a publisher's new tracks, after every
    /// `track_published`, as docs/protocol.md says (not one offer per track).
    renegotiate_after_drain: Vec<ParticipantId>,
    /// Per other worker: control messages and media not yet handed out by `poll_output`.
    relay_control: Vec<Vec<RelayMessage>>,
    relay_media: Vec<Vec<RelayedPacket>>,
    /// Subscriptions changed: tell the workers of relayed tracks what is needed now.
    relay_needs_changed: bool,
    /// Subscriber -> the participant it pinned (`pin.rs`).
    pins: HashMap<ParticipantId, ParticipantId>,
}

impl Sfu {
    pub fn new(config: SfuConfig, now: Instant) -> Self {
        install_crypto_provider();
        Self {
            participants: HashMap::new(),
            rooms: HashMap::new(),
            tracks: HashMap::new(),
            demux: Demux::default(),
            timeouts: BTreeSet::new(),
            dirty: Vec::new(),
            receive_pending: None,
            route_updates: Vec::new(),
            outputs: VecDeque::new(),
            next_housekeeping: now + HOUSEKEEPING_INTERVAL,
            congested: Vec::new(),
            reallocate_at: None,
            next_speakers: now + SPEAKERS_INTERVAL,
            next_stats: now + STATS_INTERVAL,
            counters: Counters::default(),
            operator_muted: HashSet::new(),
            renegotiate_after_drain: Vec::new(),
            relay_control: (0..config.workers).map(|_| Vec::new()).collect(),
            relay_media: (0..config.workers).map(|_| Vec::new()).collect(),
            relay_needs_changed: false,
            pins: HashMap::new(),
            config,
        }
    }

    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    pub fn participant_count(&self) -> usize {
        self.participants.len()
    }

    /// Add a participant to `room` (created on first join) with what it may do. Names and
    /// room names are the caller's to validate. Fails when a limit of [`SfuConfig::limits`]
    /// is reached (too many rooms, a full room, too many joins not yet connected).
    pub fn join(
        &mut self,
        room: &str,
        name: &str,
        permissions: Permissions,
        now: Instant,
    ) -> Result<JoinInfo, SfuError> {
        self.check_join_limits(room)?;
        let id = ParticipantId::random_on(self.config.shard);
        let mut participant = Participant::new(
            id,
            room.to_owned(),
            name.to_owned(),
            &self.config.candidates,
            now,
        );
        participant.permissions = permissions;
        self.counters.joins += 1;
        self.update_route(RouteUpdate::Add(participant.ice_ufrag.clone(), id));
        if let Some(placement) = &self.config.placement {
            placement.joined(room, usize::from(self.config.shard));
        }
        let others = self.members_info(room, Some(id));
        let info = ParticipantInfo {
            id,
            name: name.to_owned(),
            tracks: Vec::new(),
        };
        for other in &others {
            self.outputs
                .push_back(SfuOutput::Event(SfuEvent::ParticipantJoined {
                    to: other.id,
                    participant: info.clone(),
                }));
        }
        let joined_room = self.rooms.entry(room.to_owned()).or_default();
        joined_room.participants.push(id);
        // Who speaks now, rather than nothing until the list next changes.
        if !joined_room.speakers.current().is_empty() {
            self.outputs
                .push_back(SfuOutput::Event(SfuEvent::ActiveSpeakers {
                    to: id,
                    speakers: joined_room.speakers.current().to_vec(),
                }));
        }
        self.broadcast(RoomEvent::Joined {
            room: room.to_owned(),
            participant: id,
            name: name.to_owned(),
        });
        let resume_token = participant.resume_token.clone();
        self.participants.insert(id, Box::new(participant));
        self.mark_dirty(id);
        self.publish_load();
        tracing::info!(participant = %id, room, name, ?permissions, "joined");
        Ok(JoinInfo {
            participant: id,
            others,
            resume_token,
            attachment: 0,
        })
    }

    fn check_join_limits(&mut self, room: &str) -> Result<(), SfuError> {
        let limits = self.config.limits;
        let other_pending = self.config.load.as_ref().map_or(0, |load| {
            load.others_pending(usize::from(self.config.shard))
        });
        // Every worker's directory has every room (see `relay.rs`), so these counts are
        // server-wide; joins racing on two workers may overshoot by one each.
        match self.rooms.get(room) {
            Some(r) if r.len() >= limits.max_participants_per_room => {
                self.counters.refused_room_full += 1;
                tracing::info!(
                    room,
                    max = limits.max_participants_per_room,
                    "join refused: room full"
                );
                return Err(SfuError::RoomFull(limits.max_participants_per_room));
            }
            None if self.rooms.len() >= limits.max_rooms => {
                self.counters.refused_too_many_rooms += 1;
                tracing::info!(room, max = limits.max_rooms, "join refused: too many rooms");
                return Err(SfuError::TooManyRooms(limits.max_rooms));
            }
            _ => {}
        }
        let pending = self.pending_joins() + other_pending;
        if pending >= limits.max_pending_joins {
            self.counters.refused_pending_joins += 1;
            tracing::info!(
                room,
                pending,
                "join refused: too many joins not connected yet"
            );
            return Err(SfuError::TooManyPendingJoins(limits.max_pending_joins));
        }
        Ok(())
    }

    /// Apply the participant's SDP offer and return the answer.
    pub fn accept_offer(
        &mut self,
        id: ParticipantId,
        sdp: &str,
        now: Instant,
    ) -> Result<String, SfuError> {
        let offer =
            SdpOffer::from_sdp_string(sdp).map_err(|e| SfuError::InvalidSdp(sdp_error(&e)))?;
        let p = self
            .participants
            .get_mut(&id)
            .ok_or(SfuError::UnknownParticipant(id))?;
        let sending = policy::sending_sections(sdp);
        if sending > 0 && !p.permissions.can_publish {
            self.counters.refused_publish += 1;
            tracing::info!(participant = %id, sending, "offer refused: no permission to publish");
            return Err(SfuError::PublishNotAllowed);
        }
        let max_tracks = self.config.limits.max_tracks_per_participant;
        if sending > max_tracks {
            self.counters.refused_too_many_tracks += 1;
            tracing::info!(participant = %id, sending, max_tracks, "offer refused: too many tracks");
            return Err(SfuError::TooManyTracks(max_tracks));
        }
        if p.negotiation.pending.is_some() {
            p.negotiation.client_offer_expected_since = Some(now);
            return Err(SfuError::OfferCollision);
        }
        let answer = p
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| SfuError::SdpRejected(e.to_string()))?;
        // An ICE restart by the participant gives it a new ufrag of ours: route by that now.
        let ufrag = p.rtc.direct_api().local_ice_credentials().ufrag;
        let restarted_from =
            (ufrag != p.ice_ufrag).then(|| std::mem::replace(&mut p.ice_ufrag, ufrag.clone()));
        p.negotiation.established = true;
        p.negotiation.client_offer_expected_since = None;
        p.refresh_payload_types();
        if let Some(old) = restarted_from {
            tracing::info!(participant = %id, "ICE restart");
            self.update_route(RouteUpdate::Rename(old, ufrag, id));
        }
        self.mark_dirty(id);
        self.drive(now);
        self.renegotiate(id);
        Ok(crate::codec::with_start_bitrate_hint(
            &answer.to_sdp_string(),
            crate::codec::PUBLISHER_START_KBPS,
        ))
    }

    /// Apply the participant's answer to the server's pending offer.
    pub fn accept_answer(
        &mut self,
        id: ParticipantId,
        sdp: &str,
        now: Instant,
    ) -> Result<(), SfuError> {
        let answer =
            SdpAnswer::from_sdp_string(sdp).map_err(|e| SfuError::InvalidSdp(sdp_error(&e)))?;
        let p = self
            .participants
            .get_mut(&id)
            .ok_or(SfuError::UnknownParticipant(id))?;
        let pending = p
            .negotiation
            .pending
            .take()
            .ok_or(SfuError::NoPendingOffer)?;
        p.negotiation.pending_offer = None;
        p.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| SfuError::SdpRejected(e.to_string()))?;
        p.refresh_payload_types();
        // The transceivers this answer accepted now have send streams: forwarding can start.
        for downtrack in p.downtracks.values_mut().filter(|d| d.tx_ssrc().is_none()) {
            match p.rtc.direct_api().stream_tx_by_mid(downtrack.mid, None) {
                // Paced (str0m's default for video): forwarding unpaced was tried and let
                // keyframe bursts overrun a 300 kbps subscriber, whose estimate then
                // collapsed and paused its video (`switchboard/tests/simulcast.rs`).
                Some(stream) => downtrack.activate(stream.ssrc()),
                None => {
                    tracing::warn!(participant = %id, mid = %downtrack.mid, "no send stream for an answered track")
                }
            }
        }
        self.mark_dirty(id);
        self.drive(now);
        self.renegotiate(id);
        Ok(())
    }

    /// A trickled ICE candidate of the participant. The server is ICE-lite and learns the
    /// participant's addresses from its checks anyway; the candidate is validated and kept.
    pub fn add_remote_candidate(
        &mut self,
        id: ParticipantId,
        candidate: &str,
    ) -> Result<(), SfuError> {
        let line = candidate.strip_prefix("a=").unwrap_or(candidate);
        let c = Candidate::from_sdp_string(line)
            .map_err(|e| SfuError::InvalidCandidate(e.to_string()))?;
        let p = self
            .participants
            .get_mut(&id)
            .ok_or(SfuError::UnknownParticipant(id))?;
        p.rtc.add_remote_candidate(c);
        self.mark_dirty(id);
        Ok(())
    }

    /// The participant muted or unmuted the track it sends on `mid`; tell the room.
    pub fn set_muted(
        &mut self,
        id: ParticipantId,
        mid: &str,
        muted: bool,
    ) -> Result<TrackId, SfuError> {
        let p = self
            .participants
            .get(&id)
            .ok_or(SfuError::UnknownParticipant(id))?;
        let track_id = *p
            .published
            .get(&Mid::from(mid))
            .ok_or_else(|| SfuError::UnknownTrack(mid.to_owned()))?;
        if !muted && self.operator_muted.contains(&track_id) {
            return Err(SfuError::MutedByOperator(track_id.to_string()));
        }
        let room = p.room.clone();
        if let Some(track) = self.tracks.get_mut(&track_id) {
            track.muted = muted;
        }
        self.notify_room(&room, id, |to| SfuEvent::TrackMuted {
            to,
            participant: id,
            track: track_id,
            muted,
        });
        self.broadcast(RoomEvent::Muted {
            room,
            participant: id,
            track: track_id,
            muted,
        });
        Ok(track_id)
    }

    /// The size at which the participant shows `track` (`(0, 0)`: not shown). The next
    /// allocation picks a layer that fits.
    pub fn set_video_size(
        &mut self,
        id: ParticipantId,
        track: TrackId,
        width: u32,
        height: u32,
    ) -> Result<(), SfuError> {
        let p = self
            .participants
            .get_mut(&id)
            .ok_or(SfuError::UnknownParticipant(id))?;
        let d = p
            .downtracks
            .values_mut()
            .find(|d| d.track == track)
            .ok_or_else(|| SfuError::UnknownTrack(track.to_string()))?;
        d.shown = Some((width, height));
        Ok(())
    }

    /// What the track the participant sends on `mid` shows (camera or screen).
    pub fn set_track_source(
        &mut self,
        id: ParticipantId,
        mid: &str,
        source: TrackSource,
    ) -> Result<(), SfuError> {
        let p = self
            .participants
            .get(&id)
            .ok_or(SfuError::UnknownParticipant(id))?;
        let track_id = p
            .published
            .get(&Mid::from(mid))
            .ok_or_else(|| SfuError::UnknownTrack(mid.to_owned()))?;
        let track_id = *track_id;
        if let Some(track) = self.tracks.get_mut(&track_id) {
            track.source = source;
        }
        self.broadcast(RoomEvent::SourceChanged {
            track: track_id,
            source,
        });
        Ok(())
    }

    /// Every participant's name, room, and what it receives (for `/api/stats`).
    pub fn all_stats(&self) -> Vec<ParticipantStats> {
        let mut all: Vec<ParticipantStats> = self
            .participants
            .values()
            .filter_map(|p| {
                let (estimate_bps, subscriptions) = self.subscription_stats(p.id)?;
                Some(ParticipantStats {
                    participant: p.id,
                    name: p.name.clone(),
                    room: p.room.clone(),
                    estimate_bps,
                    subscriptions,
                })
            })
            .collect();
        all.sort_by(|a, b| (&a.room, &a.name).cmp(&(&b.room, &b.name)));
        all
    }

    /// The participant's signaling connection `attachment` (from [`JoinInfo`] or
    /// [`ResumeInfo`]) went away without a `leave`. Its media goes on, and nobody is told,
    /// until it [resumes](Sfu::resume) or `resume_grace` ends. One whose media never connected
    /// is simply removed. Returns `false`, and does nothing, when another connection has
    /// resumed the session since: the end of a superseded connection is no news.
    pub fn detach(&mut self, id: ParticipantId, attachment: u32, now: Instant) -> bool {
        match self.participants.get(&id) {
            Some(p) if p.attachment != attachment => {
                tracing::debug!(participant = %id, attachment, current = p.attachment, "a superseded connection closed; the session stays with the current one");
                return false;
            }
            None => return false,
            Some(_) => {}
        }
        if self.participants.get(&id).is_some_and(|p| !p.connected) {
            // No media to keep alive: nothing worth resuming.
            self.remove(id, now);
            return true;
        }
        if let Some(p) = self.participants.get_mut(&id) {
            tracing::info!(participant = %id, grace = ?self.config.resume_grace, "signaling lost; waiting for it to resume");
            p.detached_since = Some(now);
        }
        true
    }

    /// A new signaling connection takes over a detached (or still attached) session.
    pub fn resume(
        &mut self,
        id: ParticipantId,
        resume_token: &str,
    ) -> Result<ResumeInfo, SfuError> {
        let p = self
            .participants
            .get_mut(&id)
            // Constant time: a near miss takes as long to refuse as a far one.
            .filter(|p| bool::from(p.resume_token.as_bytes().ct_eq(resume_token.as_bytes())))
            .ok_or(SfuError::UnknownSession)?;
        p.detached_since = None;
        p.attachment = p.attachment.wrapping_add(1);
        let attachment = p.attachment;
        let pending_offer = p.negotiation.pending_offer.clone();
        let room = p.room.clone();
        tracing::info!(participant = %id, "session resumed");
        let others = self.members_info(&room, Some(id));
        Ok(ResumeInfo {
            attachment,
            others,
            pending_offer,
        })
    }

    /// The participant left.
    pub fn leave(&mut self, id: ParticipantId, now: Instant) {
        self.remove(id, now);
    }

    /// A datagram arrived on one of the SFU's sockets.
    ///
    /// Only the sender's connection is processed here; the subscribers it forwarded to are
    /// drained by the next `poll_output`. Feeding every datagram that is waiting before
    /// polling lets each subscriber's connection send several forwarded packets per drain,
    /// which is most of the per-packet cost with many subscribers. That writes to a
    /// subscriber's streams several times between two drains, which str0m's run-loop
    /// contract does not allow; why it is safe, and the tests that pin it, are in
    /// `sfu/tests/run_loop.rs`.
    pub fn handle_receive(
        &mut self,
        now: Instant,
        proto: Protocol,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) {
        let Some(id) = self.demux.route(proto, source, data) else {
            tracing::trace!(%source, ?proto, len = data.len(), "datagram from an unknown peer dropped");
            return;
        };
        self.handle_routed(now, id, proto, source, destination, data);
    }

    /// A datagram a router (see [`SfuConfig::report_routes`]) found to be `id`'s.
    pub fn handle_routed(
        &mut self,
        now: Instant,
        id: ParticipantId,
        proto: Protocol,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) {
        let Ok(receive) = Receive::new(proto, source, destination, data) else {
            tracing::debug!(%source, len = data.len(), "unparseable datagram dropped");
            return;
        };
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        p.last_received = now;
        if let Err(e) = p.rtc.handle_input(Input::Receive(now, receive)) {
            tracing::debug!(participant = %id, error = %e, "datagram refused");
        }
        // str0m holds one received packet at a time: the sender is drained before its next
        // datagram.
        self.drain(id, now);
        if !self.dirty.is_empty() {
            self.receive_pending.get_or_insert(now);
        }
    }

    /// Time passed: run due timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.timeouts.first() {
            if at > now {
                break;
            }
            self.timeouts.pop_first();
            if let Some(p) = self.participants.get_mut(&id) {
                if let Err(e) = p.rtc.handle_input(Input::Timeout(now)) {
                    tracing::debug!(participant = %id, error = %e, "timeout handling failed");
                }
                self.mark_dirty(id);
            }
        }
        if now >= self.next_housekeeping {
            self.next_housekeeping = now + HOUSEKEEPING_INTERVAL;
            self.congested.clear();
            self.reallocate_at = None;
            self.expire_participants(now);
            self.end_glare_yields(now);
            self.allocation_tick(now);
        }
        if !self.congested.is_empty() {
            self.reallocate_congested(now);
        }
        if now >= self.next_speakers {
            self.next_speakers = now + SPEAKERS_INTERVAL;
            self.report_speakers(now);
        }
        if now >= self.next_stats {
            self.next_stats = now + STATS_INTERVAL;
            self.emit_stats();
        }
        self.drive(now);
    }

    /// When `handle_timeout` should be called next.
    pub fn next_timeout(&self) -> Instant {
        if let Some(received) = self.receive_pending {
            return received;
        }
        self.timeouts
            .first()
            .map(|(at, _)| *at)
            .unwrap_or(self.next_housekeeping)
            .min(self.next_housekeeping)
            .min(self.next_speakers)
            .min(self.reallocate_at.unwrap_or(self.next_housekeeping))
    }

    /// The next thing to do: a datagram to send or an event to deliver. Call it until `None`
    /// after every input.
    pub fn poll_output(&mut self) -> Option<SfuOutput> {
        // The participants a receive batch left dirty are drained one at a time, as their
        // output is taken: the queue then holds one subscriber's datagrams, not the whole
        // batch's fan-out (in a meeting of 12 that was up to 8 MB of datagrams at once),
        // and the first subscriber's packets leave before the last one's are built.
        while self.outputs.is_empty() {
            let Some(received) = self.receive_pending else {
                self.hand_out_relayed();
                break;
            };
            if self.relay_needs_changed {
                self.update_relay_needs();
            }
            match self.dirty.pop() {
                Some(id) => self.drain(id, received),
                None => self.receive_pending = None,
            }
        }
        self.outputs.pop_front()
    }

    /// The ufrag changes since the last call, for a router that sends each datagram to the
    /// worker owning its peer (see [`SfuConfig::report_routes`]).
    pub(crate) fn take_route_updates(&mut self) -> Vec<RouteUpdate> {
        std::mem::take(&mut self.route_updates)
    }

    /// Keep the one routing table: this `Sfu`'s own, or, behind a router
    /// ([`SfuConfig::report_routes`]), the router's, which the update is queued for.
    fn update_route(&mut self, update: RouteUpdate) {
        if self.config.report_routes {
            self.route_updates.push(update);
        } else {
            self.demux.apply(update);
        }
    }

    fn pending_joins(&self) -> usize {
        self.participants.values().filter(|p| !p.connected).count()
    }

    /// Tell the other workers how many rooms and pending joins this one has.
    fn publish_load(&self) {
        if let Some(load) = &self.config.load {
            load.publish(
                usize::from(self.config.shard),
                self.pending_joins(),
                self.participants.len(),
            );
        }
    }

    fn mark_dirty(&mut self, id: ParticipantId) {
        if let Some(p) = self.participants.get_mut(&id) {
            if !p.dirty {
                p.dirty = true;
                self.dirty.push(id);
            }
        }
    }

    /// Drain every dirty participant's `Rtc` until each is waiting on a timeout. Draining one
    /// can dirty others (forwarded packets), so loop until none is left.
    fn drive(&mut self, now: Instant) {
        if self.relay_needs_changed {
            self.update_relay_needs();
        }
        while let Some(id) = self.dirty.pop() {
            self.drain(id, now);
        }
    }

    fn drain(&mut self, id: ParticipantId, now: Instant) {
        self.drain_rtc(id, now);
        if !self.renegotiate_after_drain.is_empty() {
            let mut members = std::mem::take(&mut self.renegotiate_after_drain);
            members.sort_unstable();
            members.dedup();
            for member in members {
                self.renegotiate(member);
            }
        }
    }

    fn drain_rtc(&mut self, id: ParticipantId, now: Instant) {
        // Timeouts already due are handled here rather than through the timer set: a
        // forwarded packet is released by the timeout that follows its write, and going
        // round the media loop for it costs more than the packet.
        let mut inline_timeouts = 0;
        loop {
            let Some(p) = self.participants.get_mut(&id) else {
                return;
            };
            p.dirty = false;
            match p.rtc.poll_output() {
                Ok(Output::Timeout(at)) if at <= now && inline_timeouts < MAX_INLINE_TIMEOUTS => {
                    inline_timeouts += 1;
                    if let Err(e) = p.rtc.handle_input(Input::Timeout(now)) {
                        tracing::debug!(participant = %id, error = %e, "timeout handling failed");
                    }
                }
                Ok(Output::Timeout(at)) => {
                    if at != p.next_timeout {
                        self.timeouts.remove(&(p.next_timeout, id));
                        p.next_timeout = at;
                    }
                    self.timeouts.insert((at, id));
                    return;
                }
                Ok(Output::Transmit(t)) => self.outputs.push_back(SfuOutput::Transmit(t)),
                Ok(Output::Event(e)) => self.handle_rtc_event(id, e, now),
                Err(e) => {
                    tracing::warn!(participant = %id, error = %e, "peer connection failed");
                    self.remove_with_reason(id, RemovalReason::MediaClosed, now);
                    return;
                }
            }
        }
    }

    fn handle_rtc_event(&mut self, id: ParticipantId, event: Event, now: Instant) {
        match event {
            Event::RtpPacket(packet) => self.forward(id, packet, now),
            Event::KeyframeRequest(req) => self.forward_keyframe_request(id, req, now),
            Event::MediaAdded(media) => self.media_added(id, media),
            Event::MediaChanged(change) => self.media_changed(id, change),
            Event::Connected => {
                if let Some(p) = self.participants.get_mut(&id) {
                    p.connected = true;
                }
                self.publish_load();
                tracing::info!(participant = %id, "media connected");
                self.outputs
                    .push_back(SfuOutput::Event(SfuEvent::Connected { to: id }));
            }
            Event::IceConnectionStateChange(state) => {
                tracing::debug!(participant = %id, ?state, "ICE state");
                if let Some(p) = self.participants.get_mut(&id) {
                    // Once connected, any state without a working path counts toward the
                    // timeout: an ICE restart that never completes (Checking) as much as a
                    // Disconnected. Before the first connection, the connect timeout applies.
                    p.disconnected_since = match state {
                        IceConnectionState::Connected | IceConnectionState::Completed => None,
                        _ if p.connected => p.disconnected_since.or(Some(now)),
                        _ => None,
                    };
                }
            }
            Event::EgressBitrateEstimate(BweKind::Twcc {
                estimate,
                can_probe,
            }) => {
                if let Some(p) = self.participants.get_mut(&id) {
                    p.bandwidth.on_str0m_estimate(estimate.as_u64(), can_probe);
                }
            }
            Event::EgressBitrateEstimate(BweKind::Remb { estimate, .. }) => {
                if let Some(p) = self.participants.get_mut(&id) {
                    p.bandwidth.on_remb(estimate.as_u64());
                }
            }
            Event::Closed => self.remove_with_reason(id, RemovalReason::MediaClosed, now),
            Event::PeerStats(stats) => {
                if let Some(p) = self.participants.get_mut(&id) {
                    let congested = p.bandwidth.on_transport_stats(
                        stats.peer_bytes_tx,
                        stats.egress_loss_fraction,
                        stats.timestamp,
                    );
                    if congested && !self.congested.contains(&id) {
                        self.congested.push(id);
                        self.reallocate_at.get_or_insert(now);
                    }
                }
            }
            Event::MediaEgressStats(stats) => {
                if let Some(p) = self.participants.get_mut(&id) {
                    let seen = p.egress_seen.entry((stats.mid, stats.rid)).or_default();
                    self.counters.nacks_received += stats.nacks.saturating_sub(seen.nacks);
                    let packets = stats.packets.saturating_sub(seen.packets);
                    *seen = EgressSeen {
                        nacks: stats.nacks,
                        packets: stats.packets,
                    };
                    if let Some(loss) = stats.loss {
                        p.bandwidth.on_receiver_report(loss, packets);
                    }
                }
            }
            _ => {}
        }
    }

    fn notify_room(
        &mut self,
        room: &str,
        except: ParticipantId,
        mut event: impl FnMut(ParticipantId) -> SfuEvent,
    ) {
        if let Some(r) = self.rooms.get(room) {
            for to in r.others(except) {
                self.outputs.push_back(SfuOutput::Event(event(to)));
            }
        }
    }

    /// A participant whose offer collided did not offer again within `GLARE_YIELD`: offer
    /// what changed meanwhile.
    fn end_glare_yields(&mut self, now: Instant) {
        let ended: Vec<ParticipantId> = self
            .participants
            .values_mut()
            .filter(|p| {
                p.negotiation
                    .client_offer_expected_since
                    .is_some_and(|since| now >= since + GLARE_YIELD)
            })
            .map(|p| {
                p.negotiation.client_offer_expected_since = None;
                p.id
            })
            .collect();
        for id in ended {
            self.renegotiate(id);
        }
    }

    fn expire_participants(&mut self, now: Instant) {
        let expired: Vec<(ParticipantId, RemovalReason)> = self
            .participants
            .values()
            .filter_map(|p| {
                p.expiry(
                    now,
                    self.config.connect_timeout,
                    self.config.disconnect_timeout,
                    self.config.resume_grace,
                    self.config.media_timeout,
                )
                .map(|r| (p.id, r))
            })
            .collect();
        for (id, reason) in expired {
            self.remove_with_reason(id, reason, now);
        }
    }

    fn remove_with_reason(&mut self, id: ParticipantId, reason: RemovalReason, now: Instant) {
        if self.participants.contains_key(&id) {
            tracing::info!(participant = %id, ?reason, "removing participant");
            self.counters.removals += 1;
            self.outputs
                .push_back(SfuOutput::Event(SfuEvent::Removed { to: id, reason }));
            self.remove(id, now);
        }
    }

    fn remove(&mut self, id: ParticipantId, now: Instant) {
        let Some(p) = self.participants.remove(&id) else {
            return;
        };
        // Its own pin goes, and so do others' pins of it.
        self.pins
            .retain(|subscriber, pinned| *subscriber != id && *pinned != id);
        self.timeouts.remove(&(p.next_timeout, id));
        self.update_route(RouteUpdate::Remove(p.ice_ufrag.clone(), id));
        for track_id in p.published.values() {
            self.unpublish(*track_id);
        }
        for downtrack in p.downtracks.values() {
            if let Some(track) = self.tracks.get_mut(&downtrack.track) {
                track.subscribers.retain(|(s, _)| *s != id);
            }
        }
        self.relay_needs_changed = true;
        self.notify_room(&p.room, id, |to| SfuEvent::ParticipantLeft {
            to,
            participant: id,
        });
        self.broadcast(RoomEvent::Left {
            room: p.room.clone(),
            participant: id,
        });
        if let Some(placement) = &self.config.placement {
            placement.left(&p.room, usize::from(self.config.shard));
        }
        if let Some(room) = self.rooms.get_mut(&p.room) {
            room.remove(id);
            if room.is_empty() {
                self.rooms.remove(&p.room);
                tracing::info!(room = %p.room, "room closed");
            }
        }
        tracing::info!(participant = %id, room = %p.room, "left");
        self.end_playback_of(id, now);
        self.publish_load();
        self.renegotiate_room(&p.room, id);
    }
}

impl Sfu {
    /// Everyone in `room` but `except`, on this worker and the others, with their tracks.
    pub(super) fn members_info(
        &self,
        room: &str,
        except: Option<ParticipantId>,
    ) -> Vec<ParticipantInfo> {
        let Some(r) = self.rooms.get(room) else {
            return Vec::new();
        };
        let local = r
            .participants
            .iter()
            .filter(|&&o| Some(o) != except)
            .filter_map(|o| self.participants.get(o))
            .map(|o| participant_info(o, &self.tracks));
        let remote = r
            .remote
            .iter()
            .filter(|m| Some(m.id) != except)
            .map(|m| ParticipantInfo {
                id: m.id,
                name: m.name.clone(),
                tracks: m
                    .tracks
                    .iter()
                    .filter_map(|t| self.tracks.get(t))
                    .map(track_info)
                    .collect(),
            });
        local.chain(remote).collect()
    }
}

fn track_info(t: &UpTrack) -> TrackInfo {
    TrackInfo {
        id: t.id,
        kind: t.kind,
        muted: t.muted,
    }
}

fn participant_info(p: &Participant, tracks: &HashMap<TrackId, UpTrack>) -> ParticipantInfo {
    ParticipantInfo {
        id: p.id,
        name: p.name.clone(),
        tracks: p
            .published
            .values()
            .filter_map(|t| tracks.get(t))
            .map(track_info)
            .collect(),
    }
}

/// str0m's SDP parse errors start with a parser-internal pointer; keep only what explains the
/// problem to the client.
fn sdp_error(e: &impl std::fmt::Display) -> String {
    let text = e.to_string();
    let explanation: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("PointerOffset") && !l.trim().is_empty())
        .collect();
    if explanation.is_empty() {
        "SDP could not be parsed".to_owned()
    } else {
        explanation.join("; ")
    }
}

fn install_crypto_provider() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| str0m::crypto::from_feature_flags().install_process_default());
}
