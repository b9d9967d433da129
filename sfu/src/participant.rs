//! One participant: its str0m `Rtc` (in RTP mode), what it publishes, its down-tracks, and
//! where its SDP negotiation stands. Routing decisions are made by `sfu.rs`, not here.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::SdpPendingOffer;
use str0m::media::{Mid, Rid};
use str0m::net::Protocol;
use str0m::rtp::{Extension, Ssrc};
use str0m::{Candidate, IceCreds, Rtc};

use crate::bandwidth::{ProbeNudge, SubscriberBandwidth};
use crate::codec::PayloadTypes;
use crate::data::DataBudget;
use crate::event::OfferedTrack;
use crate::ids::{ParticipantId, TrackId};
use crate::policy::Permissions;
use crate::svc::{DependencyDescriptorExtension, DEPENDENCY_DESCRIPTOR_URI};
use crate::track::DownTrack;

/// Where the bandwidth estimate toward a new participant starts: enough for the lowest layers
/// of a few videos, so a call starts at once and climbs as the estimate does.
const INITIAL_ESTIMATE: str0m::bwe::Bitrate = str0m::bwe::Bitrate::kbps(800);
/// How often str0m reports statistics: the NACK counter, and the bytes sent and loss the
/// bandwidth estimate reacts to (`bandwidth.rs`), so a sudden drop is seen within this.
const STATS_INTERVAL: Duration = Duration::from_millis(250);

/// How long each outgoing stream keeps what it sent, to answer NACKs. str0m's default is
/// 3 s, which was most of a meeting participant's memory (heaptrack, meeting of 12: the
/// retransmission caches held 15 of 37 MB). libwebrtc keeps max(1 s, 3 x RTT), mediasoup
/// 2 s for video; 1.5 s answers a second NACK round at a 500 ms round trip, and a packet
/// asked for later than that misses its playout anyway.
const RTX_HISTORY: Duration = Duration::from_millis(1500);

/// One send stream's cumulative counts as last read.
#[derive(Debug, Clone, Copy, Default)]
pub struct EgressSeen {
    pub nacks: u64,
    pub packets: u64,
}

/// Where the SDP offer/answer exchange with this participant stands.
#[derive(Debug, Default)]
pub struct Negotiation {
    /// The participant's first offer has been answered: the server may now offer.
    pub established: bool,
    /// The server's offer awaiting the participant's answer.
    pub pending: Option<SdpPendingOffer>,
    /// That offer as sent, to send again when the participant resumes its session.
    pub pending_offer: Option<(String, Vec<OfferedTrack>)>,
    /// The participant's own offer collided with ours and was ignored (glare), at this time.
    /// It offers again right after answering ours (docs/protocol.md), so our next offer waits
    /// for that one, or for `GLARE_YIELD`: in a busy room our next offer would otherwise
    /// always be under way first, and its ICE restart would never get through.
    pub client_offer_expected_since: Option<Instant>,
}

pub struct Participant {
    pub id: ParticipantId,
    pub room: String,
    pub name: String,
    pub rtc: Rtc,
    pub ice_ufrag: String,
    pub payload_types: PayloadTypes,
    /// Tracks this participant publishes, by its transceiver's mid.
    pub published: HashMap<Mid, TrackId>,
    /// Incoming SSRC -> published track and simulcast layer, filled on first sight.
    pub ssrc_tracks: HashMap<Ssrc, (TrackId, usize)>,
    /// The bandwidth estimate toward this participant, from whatever feedback it sends.
    pub bandwidth: SubscriberBandwidth,
    /// Probes toward a video held below its ideal layer (`bandwidth::ProbeNudge`).
    pub probe_nudge: ProbeNudge,
    /// When a video to it is paused for want of bandwidth: the estimate that resumes it.
    pub resume_bps: Option<u64>,
    /// Down-tracks by the mid of the transceiver the server added for them.
    pub downtracks: HashMap<Mid, DownTrack>,
    /// Transceivers of ended down-tracks, to stop in the next offer.
    pub mids_to_stop: Vec<Mid>,
    pub negotiation: Negotiation,
    /// When this participant's `Rtc` next wants `Input::Timeout`.
    pub next_timeout: Instant,
    pub joined_at: Instant,
    pub connected: bool,
    pub disconnected_since: Option<Instant>,
    /// When the last datagram from this participant arrived. Browsers send RTCP every second
    /// and ICE consent checks every few seconds, so a long silence means the path is gone,
    /// whatever state ICE reports (str0m's ICE-lite notices much later).
    pub last_received: Instant,
    /// Proves a reconnecting signaling connection is this participant's.
    pub resume_token: String,
    /// Which signaling connection speaks for the participant: 0 for the one that joined, one
    /// more for each resume. A connection that was superseded may still report its own end
    /// after the resume (their messages race to the worker); it names its attachment, and an
    /// old one is ignored.
    pub attachment: u32,
    /// Its signaling connection went away without a `leave`, at this time; media goes on
    /// until it resumes or the grace period ends.
    pub detached_since: Option<Instant>,
    /// Queued for `poll_output` draining.
    pub dirty: bool,
    /// What it may do (from its access token).
    pub permissions: Permissions,
    /// NACKs received and packets sent so far per send stream (str0m's stats are cumulative).
    pub egress_seen: HashMap<(Mid, Option<Rid>), EgressSeen>,
    /// How it negotiates: renegotiated by the server, or once over HTTP (WHIP, WHEP).
    pub kind: SessionKind,
    /// Application data it may still send now (`data.rs`).
    pub data_budget: DataBudget,
}

/// How a participant negotiates, fixed at join.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SessionKind {
    /// Our WebSocket protocol: the server renegotiates to add and remove the room's tracks.
    #[default]
    Interactive,
    /// A WHIP publisher: one offer, answered once; it receives nothing (WHIP cannot
    /// renegotiate).
    Ingest,
    /// A WHEP viewer: one recvonly offer, whose own audio and video m-lines carry the tracks
    /// of the publisher it follows (WHEP cannot renegotiate either).
    Playback(Playback),
}

/// What a WHEP viewer watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Playback {
    /// Whose tracks; the viewer is removed when this participant leaves.
    pub publisher: ParticipantId,
    /// The viewer's m-lines we send on, each carrying one of the publisher's tracks of its
    /// kind while there is one (a slot without a down-track waits for the next).
    pub slots: Vec<(Mid, str0m::media::MediaKind)>,
}

impl Participant {
    pub fn new(
        id: ParticipantId,
        room: String,
        name: String,
        local_candidates: &[(Protocol, SocketAddr)],
        now: Instant,
    ) -> Self {
        let ice_creds = IceCreds::new();
        let mut rtc = Rtc::builder()
            .set_ice_lite(true)
            .set_rtp_mode(true)
            .set_local_ice_credentials(ice_creds.clone())
            .clear_codecs()
            // RED (RFC 2198) is kept only with peers that offer it too (Chromium does).
            .enable_opus(true, true)
            .enable_vp8(true)
            .enable_h264(true)
            .enable_vp9(true)
            .enable_av1(true)
            // AV1's layers travel in this extension; id 12 is free in str0m's default map
            // (a publisher's offer may number it otherwise, which str0m follows).
            .set_extension(
                12,
                Extension::with_serializer(
                    DEPENDENCY_DESCRIPTOR_URI,
                    DependencyDescriptorExtension,
                ),
            )
            .enable_bwe(Some(INITIAL_ESTIMATE))
            .set_stats_interval(Some(STATS_INTERVAL))
            .set_rtx_cache_duration(RTX_HISTORY)
            .build(now);
        for (proto, addr) in local_candidates {
            let candidate = match proto {
                Protocol::Tcp => Candidate::builder()
                    .tcp()
                    .host(*addr)
                    .tcptype(str0m::net::TcpType::Passive)
                    .build(),
                _ => Candidate::host(*addr, "udp"),
            };
            match candidate {
                Ok(c) => {
                    rtc.add_local_candidate(c);
                }
                Err(e) => tracing::warn!(%addr, ?proto, error = %e, "local candidate refused"),
            }
        }
        Self {
            id,
            room,
            name,
            rtc,
            ice_ufrag: ice_creds.ufrag,
            payload_types: PayloadTypes::default(),
            published: HashMap::new(),
            ssrc_tracks: HashMap::new(),
            bandwidth: SubscriberBandwidth::new(INITIAL_ESTIMATE.as_u64()),
            probe_nudge: ProbeNudge::default(),
            resume_bps: None,
            downtracks: HashMap::new(),
            mids_to_stop: Vec::new(),
            negotiation: Negotiation::default(),
            next_timeout: now,
            joined_at: now,
            connected: false,
            disconnected_since: None,
            last_received: now,
            resume_token: (0..16)
                .map(|_| format!("{:02x}", rand::random::<u8>()))
                .collect(),
            detached_since: None,
            attachment: 0,
            dirty: false,
            permissions: Permissions::ALL,
            egress_seen: HashMap::new(),
            kind: SessionKind::Interactive,
            data_budget: DataBudget::default(),
        }
    }

    /// Refresh the payload-type map after a negotiation, which may renumber codecs.
    pub fn refresh_payload_types(&mut self) {
        self.payload_types = PayloadTypes::from_config(self.rtc.codec_config());
        for downtrack in self.downtracks.values_mut() {
            if let Some(media) = self.rtc.media(downtrack.mid) {
                downtrack.payload_types = self.payload_types.accepted_by(media.remote_pts());
            }
        }
    }

    /// Why this participant should be removed, if it should.
    pub fn expiry(
        &self,
        now: Instant,
        connect_timeout: Duration,
        disconnect_timeout: Duration,
        resume_grace: Duration,
        media_timeout: Duration,
    ) -> Option<RemovalReason> {
        if !self.rtc.is_alive() {
            return Some(RemovalReason::MediaClosed);
        }
        if self
            .detached_since
            .is_some_and(|since| now.saturating_duration_since(since) > resume_grace)
        {
            return Some(RemovalReason::SignalingLost);
        }
        if self.connected && now.saturating_duration_since(self.last_received) > media_timeout {
            return Some(RemovalReason::MediaTimeout);
        }
        if !self.connected && now.saturating_duration_since(self.joined_at) > connect_timeout {
            return Some(RemovalReason::ConnectTimeout);
        }
        match self.disconnected_since {
            Some(since) if now.saturating_duration_since(since) > disconnect_timeout => {
                Some(RemovalReason::MediaTimeout)
            }
            _ => None,
        }
    }
}

/// Why the SFU removed a participant on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovalReason {
    /// ICE/DTLS never completed in time after joining.
    ConnectTimeout,
    /// The media path went silent past the ICE timeout.
    MediaTimeout,
    /// The peer connection closed (DTLS close or a fatal media error).
    MediaClosed,
    /// Its signaling connection went away and did not come back within the grace period.
    SignalingLost,
    /// The operator removed it (room API).
    Removed,
    /// The operator closed its room (room API).
    RoomClosed,
    /// A WHEP viewer's publisher left: there is nothing more to play.
    PublisherLeft,
}
