//! The WebRTC half of the test client: one webrtc-rs peer connection (loopback UDP only, mDNS
//! off, no STUN), synthetic Opus and VP8 senders, and receivers that verify every payload.
//!
//! [`MediaPeer`] knows nothing about the signaling transport, so the self-tests can wire two of
//! them together in-process; [`crate::TestClient`] drives one over our WebSocket protocol.

use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use rtc::ice::mdns::MulticastDnsMode;
use rtc::interceptor::{Attribute, Interceptor, Packet, Slot, StreamInfo, TaggedPacket};
use rtc::media_stream::MediaStreamTrack;
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::SrtpProtectionProfile;
use webrtc::peer_connection::{
    register_default_interceptors, MediaEngine, PeerConnection, PeerConnectionBuilder,
    PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceCandidateInit, RTCIceGatheringState,
    RTCPeerConnectionIceEvent, RTCPeerConnectionState, RTCSessionDescription, Registry,
    SettingEngineBuilder,
};
use webrtc::rtp_transceiver::RtpSender;

use crate::payload;
use crate::stats::{MediaKind, ReceivedStats};

/// Audio packet interval.
pub const AUDIO_PTIME: Duration = Duration::from_millis(20);
/// Video frame interval (20 fps).
pub const VIDEO_FRAME_INTERVAL: Duration = Duration::from_millis(50);
/// Frames between periodic keyframes (2 s at 20 fps).
pub const KEYFRAME_EVERY: u64 = 40;

/// What the server's `tracks` map says about one receiving transceiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteTrackInfo {
    /// Whose track.
    pub participant_id: String,
    /// The server's track id.
    pub track_id: String,
    /// Audio or video.
    pub kind: MediaKind,
}

/// A locally gathered ICE candidate to trickle, or the end of gathering.
#[derive(Debug, Clone)]
pub enum LocalCandidate {
    /// A candidate, in `RTCIceCandidateInit` form.
    Candidate(RTCIceCandidateInit),
    /// Gathering completed.
    End,
}

#[derive(Default)]
struct RemoteMap {
    by_mid: BTreeMap<String, RemoteTrackInfo>,
    owner_by_track: BTreeMap<String, String>,
}

struct Shared {
    stats: Arc<Mutex<ReceivedStats>>,
    remote: Mutex<RemoteMap>,
    remote_tracks: Mutex<Vec<Arc<dyn TrackRemote>>>,
    keyframe_wanted: AtomicBool,
    state: watch::Sender<RTCPeerConnectionState>,
    gathered: watch::Sender<bool>,
    candidates: mpsc::UnboundedSender<LocalCandidate>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    pc: std::sync::OnceLock<std::sync::Weak<dyn PeerConnection>>,
}

impl Shared {
    fn spawn(&self, fut: impl std::future::Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(fut);
        lock(&self.tasks).push(handle);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct Handler {
    shared: Arc<Shared>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        match event.candidate.to_json() {
            Ok(init) => {
                let _ = self.shared.candidates.send(LocalCandidate::Candidate(init));
            }
            Err(err) => tracing::warn!("cannot serialize local candidate: {err}"),
        }
    }

    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.shared.candidates.send(LocalCandidate::End);
            self.shared.gathered.send_replace(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        lock(&self.shared.stats).connection_state = state.to_string();
        self.shared.state.send_replace(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        lock(&self.shared.remote_tracks).push(Arc::clone(&track));
        let shared = Arc::clone(&self.shared);
        self.shared.spawn(read_remote_track(shared, track));
    }
}

/// SRTP profiles from `TESTKIT_SRTP_PROFILES` (comma-separated: `aes128cm`, `aes128cm32`,
/// `aes128gcm`, `aes256gcm`), in preference order.
///
/// Unset means AES-128-GCM then AES-128-CM: with AEAD_AES_256_GCM (str0m's first choice),
/// webrtc-rs 0.21.1 and str0m 0.25 complete DTLS but no SRTP packet is accepted in either
/// direction, while Chromium and str0m do fine with it. Until that is run down, the test
/// client offers the profiles that interoperate.
fn srtp_profiles_from_env() -> anyhow::Result<Option<Vec<SrtpProtectionProfile>>> {
    let Ok(list) = std::env::var("TESTKIT_SRTP_PROFILES") else {
        return Ok(Some(vec![
            SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
            SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
        ]));
    };
    list.split(',')
        .map(|name| match name.trim() {
            "aes128cm" => Ok(SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80),
            "aes128cm32" => Ok(SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_32),
            "aes128gcm" => Ok(SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm),
            "aes256gcm" => Ok(SrtpProtectionProfile::Srtp_Aead_Aes_256_Gcm),
            other => Err(anyhow!("TESTKIT_SRTP_PROFILES: unknown profile {other:?}")),
        })
        .collect::<anyhow::Result<Vec<_>>>()
        .map(Some)
}

/// The `mid` of the transceiver whose receiver carries `track`.
async fn mid_of(shared: &Shared, track: &Arc<dyn TrackRemote>) -> Option<String> {
    let pc = shared.pc.get()?.upgrade()?;
    for transceiver in pc.get_transceivers().await {
        if let Ok(Some(receiver)) = transceiver.receiver().await {
            if Arc::ptr_eq(receiver.track(), track) {
                return transceiver.mid().await.ok().flatten();
            }
        }
    }
    None
}

async fn read_remote_track(shared: Arc<Shared>, track: Arc<dyn TrackRemote>) {
    let stream_id = track.stream_id().await;
    let msid_track_id = track.track_id().await;
    let kind = match track.kind().await {
        RtpCodecKind::Audio => MediaKind::Audio,
        _ => MediaKind::Video,
    };
    let mid = mid_of(&shared, &track).await;
    // The server's `tracks` map (applied before the offer) is authoritative, by mid first,
    // then by track id; the msid stream id is the participant id too, and is all there is
    // between two bare peers.
    let (participant, track_id) = {
        let remote = lock(&shared.remote);
        if let Some(info) = mid.as_ref().and_then(|m| remote.by_mid.get(m)) {
            if info.track_id != msid_track_id || info.participant_id != stream_id {
                tracing::warn!(
                    "mid {mid:?}: tracks map says {}/{}, msid says {stream_id}/{msid_track_id}",
                    info.participant_id,
                    info.track_id
                );
            }
            (info.participant_id.clone(), info.track_id.clone())
        } else if let Some(owner) = remote.owner_by_track.get(&msid_track_id) {
            (owner.clone(), msid_track_id.clone())
        } else {
            (stream_id.clone(), msid_track_id.clone())
        }
    };
    tracing::debug!("remote {kind} track {track_id} (mid {mid:?}) from {participant}");
    {
        let mut stats = lock(&shared.stats);
        let entry = stats.track_entry(&participant, &track_id, kind);
        if entry.mid.is_none() {
            entry.mid = mid;
        }
    }
    while let Some(event) = track.poll().await {
        match event {
            TrackRemoteEvent::OnRtpPacket(pkt) => {
                lock(&shared.stats)
                    .track_entry(&participant, &track_id, kind)
                    .record_packet(
                        pkt.header.ssrc,
                        pkt.header.sequence_number,
                        pkt.header.marker,
                        &pkt.payload,
                    );
            }
            TrackRemoteEvent::OnEnded | TrackRemoteEvent::OnEnding => {
                lock(&shared.stats)
                    .track_entry(&participant, &track_id, kind)
                    .mark_ended("webrtc-rs reported the remote track ended");
            }
            _ => {}
        }
    }
}

/// Marks inbound RTCP that carries a keyframe request (PLI/FIR) for the application, so the
/// local video track's `poll` sees it; everything else is left to the default interceptors.
#[derive(Default)]
struct KeyframeRequestMarker {
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

fn is_keyframe_request(packet: &dyn rtc::rtcp::Packet) -> bool {
    let any = packet.as_any();
    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
}

impl rtc::sansio::Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequestMarker {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = std::time::Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            if packets.iter().any(|p| is_keyframe_request(p.as_ref())) {
                msg.message.add(Attribute::DeliverToApplication);
            }
        }
        self.read_queue.push_back(msg);
        Ok(())
    }
    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read_queue.pop_front()
    }
    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write_queue.push_back(msg);
        Ok(())
    }
    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write_queue.pop_front()
    }
}

impl Interceptor for KeyframeRequestMarker {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

struct LocalTrack {
    track: Arc<TrackLocalStaticRTP>,
    sender: Arc<dyn RtpSender>,
    ssrc: u32,
    track_id: String,
    paused: Arc<AtomicBool>,
}

/// Options for a [`MediaPeer`].
#[derive(Debug, Clone)]
pub struct PeerOptions {
    /// The msid stream id of the local tracks (our participant id, when known).
    pub stream_id: String,
    /// Tag written into every payload (see [`crate::sender_tag`]).
    pub sender_tag: u64,
}

/// One webrtc-rs peer connection with synthetic senders and verifying receivers.
pub struct MediaPeer {
    pc: Arc<dyn PeerConnection>,
    shared: Arc<Shared>,
    options: PeerOptions,
    audio: Mutex<Option<Arc<LocalTrack>>>,
    video: Mutex<Option<Arc<LocalTrack>>>,
    candidates_rx: Mutex<Option<mpsc::UnboundedReceiver<LocalCandidate>>>,
    media_started: AtomicBool,
}

impl MediaPeer {
    /// Builds the peer connection: default codecs (Opus 111, VP8 96, ...), default
    /// interceptors, UDP on 127.0.0.1 only, mDNS disabled, no ICE servers.
    pub async fn new(
        options: PeerOptions,
        stats: Arc<Mutex<ReceivedStats>>,
    ) -> anyhow::Result<Self> {
        let mut media_engine = MediaEngine::default();
        media_engine
            .register_default_codecs()
            .context("register default codecs")?;
        let registry = register_default_interceptors(Registry::new(), &mut media_engine)
            .context("register default interceptors")?
            .with(Slot::from(14_000), KeyframeRequestMarker::default());
        let mut setting_engine =
            SettingEngineBuilder::new().with_multicast_dns_mode(MulticastDnsMode::Disabled);
        if let Some(profiles) = srtp_profiles_from_env()? {
            setting_engine = setting_engine.with_srtp_protection_profiles(profiles);
        }
        let setting_engine = setting_engine.build();
        let (candidates_tx, candidates_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            stats,
            remote: Mutex::default(),
            remote_tracks: Mutex::default(),
            keyframe_wanted: AtomicBool::new(false),
            state: watch::channel(RTCPeerConnectionState::New).0,
            gathered: watch::channel(false).0,
            candidates: candidates_tx,
            tasks: Mutex::default(),
            pc: std::sync::OnceLock::new(),
        });
        let pc = PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(media_engine)
            .with_interceptor_registry(registry)
            .with_setting_engine(setting_engine)
            .with_handler(Arc::new(Handler {
                shared: Arc::clone(&shared),
            }))
            .with_udp_addrs(vec!["127.0.0.1:0".to_owned()])
            .build()
            .await
            .context("build webrtc-rs peer connection")?;
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);
        let _ = shared.pc.set(Arc::downgrade(&pc));
        Ok(Self {
            pc,
            shared,
            options,
            audio: Mutex::new(None),
            video: Mutex::new(None),
            candidates_rx: Mutex::new(Some(candidates_rx)),
            media_started: AtomicBool::new(false),
        })
    }

    /// The underlying webrtc-rs peer connection.
    pub fn peer_connection(&self) -> &Arc<dyn PeerConnection> {
        &self.pc
    }

    /// The shared statistics record.
    pub fn stats_handle(&self) -> Arc<Mutex<ReceivedStats>> {
        Arc::clone(&self.shared.stats)
    }

    /// A snapshot of the statistics.
    pub fn stats(&self) -> ReceivedStats {
        lock(&self.shared.stats).clone()
    }

    /// Adds an Opus and/or VP8 local track with `addTrack` semantics (reusing a matching
    /// transceiver created by a remote offer, if any). Call before the offer that should carry
    /// them.
    pub async fn publish(&self, audio: bool, video: bool) -> anyhow::Result<()> {
        self.publish_with(audio, video, false).await
    }

    /// Like [`publish`](Self::publish), but each track gets a new `sendonly` transceiver (its
    /// own m-line), the way an SFU adds forwarded tracks.
    pub async fn publish_sendonly(&self, audio: bool, video: bool) -> anyhow::Result<()> {
        self.publish_with(audio, video, true).await
    }

    /// Receive-only audio and video transceivers, for a client that publishes nothing (an
    /// offer needs at least one m-line).
    pub async fn add_recvonly_transceivers(&self) -> anyhow::Result<()> {
        for kind in [RtpCodecKind::Audio, RtpCodecKind::Video] {
            self.pc
                .add_transceiver_from_kind(
                    kind,
                    Some(RTCRtpTransceiverInit {
                        direction: RTCRtpTransceiverDirection::Recvonly,
                        streams: vec![],
                        send_encodings: vec![],
                    }),
                )
                .await
                .with_context(|| format!("add a recvonly {kind:?} transceiver"))?;
        }
        Ok(())
    }

    async fn publish_with(&self, audio: bool, video: bool, sendonly: bool) -> anyhow::Result<()> {
        for (kind, wanted) in [(MediaKind::Audio, audio), (MediaKind::Video, video)] {
            if !wanted {
                continue;
            }
            let slot = match kind {
                MediaKind::Audio => &self.audio,
                MediaKind::Video => &self.video,
            };
            if lock(slot).is_some() {
                bail!("{kind} already published");
            }
            let local = self.add_local_track(kind, sendonly).await?;
            *lock(slot) = Some(Arc::new(local));
        }
        Ok(())
    }

    async fn add_local_track(&self, kind: MediaKind, sendonly: bool) -> anyhow::Result<LocalTrack> {
        let tag = self.options.sender_tag;
        let ssrc =
            (payload::fnv1a64(&[&tag.to_be_bytes()[..], kind.to_string().as_bytes()].concat())
                as u32)
                | 1;
        let (codec, rtp_kind) = match kind {
            MediaKind::Audio => (
                RTCRtpCodec {
                    mime_type: "audio/opus".to_owned(),
                    clock_rate: 48000,
                    channels: 2,
                    sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
                    rtcp_feedback: vec![],
                },
                RtpCodecKind::Audio,
            ),
            MediaKind::Video => (
                RTCRtpCodec {
                    mime_type: "video/VP8".to_owned(),
                    clock_rate: 90000,
                    channels: 0,
                    sdp_fmtp_line: String::new(),
                    rtcp_feedback: vec![],
                },
                RtpCodecKind::Video,
            ),
        };
        let track_id = format!("{}-{kind}", self.options.stream_id);
        let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            self.options.stream_id.clone(),
            track_id.clone(),
            format!("testkit {kind}"),
            rtp_kind,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec,
                ..Default::default()
            }],
        )));
        let sender = if sendonly {
            let transceiver = self
                .pc
                .add_transceiver_from_track(
                    Arc::clone(&track) as Arc<dyn TrackLocal>,
                    Some(RTCRtpTransceiverInit {
                        direction: RTCRtpTransceiverDirection::Sendonly,
                        streams: vec![self.options.stream_id.clone()],
                        send_encodings: vec![],
                    }),
                )
                .await
                .with_context(|| format!("add {kind} transceiver"))?;
            transceiver
                .sender()
                .await
                .with_context(|| format!("{kind} transceiver sender"))?
                .ok_or_else(|| anyhow!("new {kind} transceiver has no sender"))?
        } else {
            self.pc
                .add_track(Arc::clone(&track) as Arc<dyn TrackLocal>)
                .await
                .with_context(|| format!("add {kind} track"))?
        };
        Ok(LocalTrack {
            track,
            sender,
            ssrc,
            track_id,
            paused: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Removes the local track of `kind` (a later offer then stops sending it).
    pub async fn unpublish(&self, kind: MediaKind) -> anyhow::Result<()> {
        let slot = match kind {
            MediaKind::Audio => &self.audio,
            MediaKind::Video => &self.video,
        };
        let local = lock(slot)
            .take()
            .ok_or_else(|| anyhow!("no {kind} track"))?;
        local.paused.store(true, Ordering::SeqCst);
        self.pc
            .remove_track(&local.sender)
            .await
            .with_context(|| format!("remove {kind} track"))
    }

    /// Pauses or resumes sending media of `kind` (the stream stays negotiated).
    pub fn set_paused(&self, kind: MediaKind, paused: bool) {
        let slot = match kind {
            MediaKind::Audio => &self.audio,
            MediaKind::Video => &self.video,
        };
        if let Some(local) = lock(slot).as_ref() {
            local.paused.store(paused, Ordering::SeqCst);
        }
    }

    /// The local tracks' ids and the `mid`s of the transceivers sending them.
    pub async fn local_mids(&self) -> anyhow::Result<BTreeMap<String, (MediaKind, String)>> {
        let mut wanted = BTreeMap::new();
        for (kind, slot) in [
            (MediaKind::Audio, &self.audio),
            (MediaKind::Video, &self.video),
        ] {
            if let Some(local) = lock(slot).as_ref() {
                wanted.insert(local.track_id.clone(), kind);
            }
        }
        let mut out = BTreeMap::new();
        for transceiver in self.pc.get_transceivers().await {
            let Ok(Some(sender)) = transceiver.sender().await else {
                continue;
            };
            let track_id = sender.track().track_id().await;
            if let (Some(kind), Ok(Some(mid))) = (wanted.get(&track_id), transceiver.mid().await) {
                out.insert(mid, (*kind, track_id));
            }
        }
        Ok(out)
    }

    /// Takes the stream of locally gathered candidates (once).
    pub fn take_candidates(&self) -> Option<mpsc::UnboundedReceiver<LocalCandidate>> {
        lock(&self.candidates_rx).take()
    }

    /// Creates an offer, sets it as the local description and returns its SDP.
    pub async fn create_offer(&self) -> anyhow::Result<String> {
        let offer = self.pc.create_offer(None).await.context("create_offer")?;
        self.pc
            .set_local_description(offer)
            .await
            .context("set_local_description(offer)")?;
        self.current_local_sdp().await
    }

    /// The current local description's SDP (with the candidates gathered so far).
    pub async fn current_local_sdp(&self) -> anyhow::Result<String> {
        Ok(self
            .pc
            .local_description()
            .await
            .ok_or_else(|| anyhow!("no local description"))?
            .sdp)
    }

    /// Applies the answer to our offer.
    pub async fn apply_answer(&self, sdp: &str) -> anyhow::Result<()> {
        let answer = RTCSessionDescription::answer(sdp.to_owned()).context("parse answer SDP")?;
        self.pc
            .set_remote_description(answer)
            .await
            .context("set_remote_description(answer)")
    }

    /// Answers a remote offer and returns the answer's SDP.
    ///
    /// `tracks` is the server's `mid -> track` map from the same message. Before the offer is
    /// applied, every known receiving `mid` whose m-line the offer rejects (port 0) or no longer
    /// sends on (`recvonly`/`inactive` from the offerer's side), or that the map reassigns to a
    /// different track, has its track marked ended.
    pub async fn answer_offer(
        &self,
        sdp: &str,
        tracks: Option<&BTreeMap<String, RemoteTrackInfo>>,
    ) -> anyhow::Result<String> {
        self.note_offer_tracks(sdp, tracks);
        let offer = RTCSessionDescription::offer(sdp.to_owned()).context("parse offer SDP")?;
        self.pc
            .set_remote_description(offer)
            .await
            .context("set_remote_description(offer)")?;
        let answer = self.pc.create_answer(None).await.context("create_answer")?;
        self.pc
            .set_local_description(answer)
            .await
            .context("set_local_description(answer)")?;
        self.current_local_sdp().await
    }

    fn note_offer_tracks(&self, sdp: &str, tracks: Option<&BTreeMap<String, RemoteTrackInfo>>) {
        let mut remote = lock(&self.shared.remote);
        let mut stats = lock(&self.shared.stats);
        if let Some(tracks) = tracks {
            for (mid, info) in tracks {
                if let Some(old) = remote.by_mid.get(mid) {
                    if old.track_id != info.track_id {
                        stats
                            .track_entry(&old.participant_id, &old.track_id, old.kind)
                            .mark_ended(format!("mid {mid} reassigned to {}", info.track_id));
                    }
                }
                remote.by_mid.insert(mid.clone(), info.clone());
                remote
                    .owner_by_track
                    .insert(info.track_id.clone(), info.participant_id.clone());
                stats
                    .track_entry(&info.participant_id, &info.track_id, info.kind)
                    .mid = Some(mid.clone());
            }
        }
        for section in sdp_sections(sdp) {
            let Some(mid) = section.mid else { continue };
            let Some(info) = remote.by_mid.get(&mid) else {
                continue;
            };
            let why = if section.port_zero {
                Some("rejected (port 0)".to_owned())
            } else {
                match section.direction.as_deref() {
                    Some(dir @ ("recvonly" | "inactive")) => Some(dir.to_owned()),
                    _ => None,
                }
            };
            if let Some(why) = why {
                stats
                    .track_entry(&info.participant_id, &info.track_id, info.kind)
                    .mark_ended(format!("offer made mid {mid} {why}"));
            }
        }
    }

    /// Adds a remote ICE candidate (`candidate:` prefix optional; empty means end).
    pub async fn add_remote_candidate(
        &self,
        candidate: &str,
        sdp_mid: Option<String>,
    ) -> anyhow::Result<()> {
        let candidate = candidate.trim();
        if candidate.is_empty() {
            return Ok(());
        }
        let candidate = if candidate.starts_with("candidate:") {
            candidate.to_owned()
        } else {
            format!("candidate:{candidate}")
        };
        self.pc
            .add_ice_candidate(RTCIceCandidateInit {
                candidate,
                sdp_mid,
                ..Default::default()
            })
            .await
            .context("add_ice_candidate")
    }

    /// Waits until the peer connection is `connected`; fails early if it fails or closes.
    pub async fn wait_connected(&self, timeout: Duration) -> anyhow::Result<()> {
        let mut rx = self.shared.state.subscribe();
        let wait = rx.wait_for(|s| {
            matches!(
                s,
                RTCPeerConnectionState::Connected
                    | RTCPeerConnectionState::Failed
                    | RTCPeerConnectionState::Closed
            )
        });
        let state = *tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| {
                anyhow!(
                    "peer connection not connected after {timeout:?} (state {})",
                    *self.shared.state.borrow()
                )
            })?
            .map_err(|_| anyhow!("peer connection state channel closed"))?;
        if state != RTCPeerConnectionState::Connected {
            bail!("peer connection {state} before connecting");
        }
        Ok(())
    }

    /// Waits until ICE gathering completed.
    pub async fn wait_gathering_complete(&self, timeout: Duration) -> anyhow::Result<()> {
        let mut rx = self.shared.gathered.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|done| *done))
            .await
            .map_err(|_| anyhow!("ICE gathering not complete after {timeout:?}"))?
            .map_err(|_| anyhow!("gathering channel closed"))?;
        Ok(())
    }

    /// Starts the synthetic senders (once): Opus every 20 ms, VP8 at 20 fps with a keyframe
    /// every 2 s or on request (PLI/FIR), multi-packet frames, marker on each frame's last
    /// packet. Call after the offer/answer that binds the tracks.
    pub fn start_media(&self) {
        if self.media_started.swap(true, Ordering::SeqCst) {
            return;
        }
        let tag = self.options.sender_tag;
        if let Some(local) = lock(&self.audio).clone() {
            let shared = Arc::clone(&self.shared);
            self.shared.spawn(send_audio(shared, local, tag));
        }
        if let Some(local) = lock(&self.video).clone() {
            let shared = Arc::clone(&self.shared);
            self.shared
                .spawn(watch_keyframe_requests(shared, Arc::clone(&local.track)));
            let shared = Arc::clone(&self.shared);
            self.shared.spawn(send_video(shared, local, tag));
        }
    }

    /// Sends a PLI for every remote video track received so far.
    pub async fn request_keyframes(&self) -> usize {
        let tracks: Vec<_> = lock(&self.shared.remote_tracks).clone();
        let mut sent = 0;
        for track in tracks {
            if track.kind().await != RtpCodecKind::Video {
                continue;
            }
            for media_ssrc in track.ssrcs().await {
                let pli = PictureLossIndication {
                    sender_ssrc: 0,
                    media_ssrc,
                };
                if track.write_rtcp(vec![Box::new(pli)]).await.is_ok() {
                    sent += 1;
                }
            }
        }
        sent
    }

    /// Stops the senders and closes the peer connection.
    pub async fn close(&self) {
        for task in lock(&self.shared.tasks).drain(..) {
            task.abort();
        }
        if let Err(err) = self.pc.close().await {
            tracing::debug!("peer connection close: {err}");
        }
    }
}

impl Drop for MediaPeer {
    fn drop(&mut self) {
        for task in lock(&self.shared.tasks).drain(..) {
            task.abort();
        }
    }
}

async fn payload_type(sender: &Arc<dyn RtpSender>, fallback: u8) -> u8 {
    match sender.get_parameters().await {
        Ok(params) => params
            .rtp_parameters
            .codecs
            .first()
            .map_or(fallback, |c| c.payload_type),
        Err(_) => fallback,
    }
}

fn record_send(shared: &Shared, result: webrtc::error::Result<()>, kind: MediaKind) {
    let mut stats = lock(&shared.stats);
    match result {
        Ok(()) => match kind {
            MediaKind::Audio => stats.sent_audio_packets += 1,
            MediaKind::Video => stats.sent_video_packets += 1,
        },
        Err(err) => {
            stats.send_errors += 1;
            if stats.first_send_error.is_none() {
                stats.first_send_error = Some(format!("{kind}: {err}"));
            }
        }
    }
}

fn rtp_packet(
    pt: u8,
    seq: u16,
    ts: u32,
    ssrc: u32,
    marker: bool,
    payload: Vec<u8>,
) -> rtc::rtp::Packet {
    rtc::rtp::Packet {
        header: rtc::rtp::header::Header {
            version: 2,
            marker,
            payload_type: pt,
            sequence_number: seq,
            timestamp: ts,
            ssrc,
            ..Default::default()
        },
        payload: payload.into(),
    }
}

async fn send_audio(shared: Arc<Shared>, local: Arc<LocalTrack>, tag: u64) {
    let pt = payload_type(&local.sender, 111).await;
    let mut seq: u16 = (tag >> 16) as u16;
    let mut ts: u32 = (tag >> 32) as u32;
    let mut counter: u32 = 0;
    let mut ticker = tokio::time::interval(AUDIO_PTIME);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        ts = ts.wrapping_add(960);
        if local.paused.load(Ordering::SeqCst) {
            continue;
        }
        let mut body = Vec::with_capacity(200);
        payload::write_body(&mut body, tag, counter, 60 + (counter % 80) as u16);
        let result = local
            .track
            .write_rtp(rtp_packet(pt, seq, ts, local.ssrc, false, body))
            .await;
        record_send(&shared, result, MediaKind::Audio);
        seq = seq.wrapping_add(1);
        counter = counter.wrapping_add(1);
    }
}

async fn send_video(shared: Arc<Shared>, local: Arc<LocalTrack>, tag: u64) {
    let pt = payload_type(&local.sender, 96).await;
    let mut seq: u16 = (tag >> 8) as u16;
    let mut ts: u32 = (tag >> 24) as u32;
    let mut picture_id: u16 = (tag as u16) & 0x7FFF;
    let mut tl0: u8 = (tag >> 40) as u8;
    let mut counter: u32 = 0;
    let mut frame: u64 = 0;
    let mut last_key: Option<tokio::time::Instant> = None;
    let mut ticker = tokio::time::interval(VIDEO_FRAME_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        ts = ts.wrapping_add(4500);
        if local.paused.load(Ordering::SeqCst) {
            continue;
        }
        let requested = shared.keyframe_wanted.load(Ordering::SeqCst)
            && last_key.is_none_or(|t| t.elapsed() >= Duration::from_millis(300));
        let keyframe = frame.is_multiple_of(KEYFRAME_EVERY) || requested;
        if keyframe {
            shared.keyframe_wanted.store(false, Ordering::SeqCst);
            last_key = Some(tokio::time::Instant::now());
        }
        let packets: u64 = if keyframe { 5 } else { 1 + frame % 3 };
        let filler: u16 = if keyframe {
            900
        } else {
            300 + (frame % 5) as u16 * 80
        };
        for i in 0..packets {
            let mut buf = Vec::with_capacity(usize::from(filler) + 40);
            payload::write_vp8_descriptor(&mut buf, i == 0, picture_id, tl0);
            if i == 0 {
                let first_partition =
                    (u32::from(filler) + payload::BODY_OVERHEAD as u32) * packets as u32;
                payload::write_vp8_frame_header(&mut buf, keyframe, first_partition);
            }
            payload::write_body(&mut buf, tag, counter, filler);
            let marker = i + 1 == packets;
            let result = local
                .track
                .write_rtp(rtp_packet(pt, seq, ts, local.ssrc, marker, buf))
                .await;
            record_send(&shared, result, MediaKind::Video);
            seq = seq.wrapping_add(1);
            counter = counter.wrapping_add(1);
        }
        {
            let mut stats = lock(&shared.stats);
            stats.sent_video_frames += 1;
            if keyframe {
                stats.sent_keyframes += 1;
            }
        }
        frame += 1;
        picture_id = (picture_id + 1) & 0x7FFF;
        tl0 = tl0.wrapping_add(1);
    }
}

async fn watch_keyframe_requests(shared: Arc<Shared>, track: Arc<TrackLocalStaticRTP>) {
    while let Some(event) = TrackLocal::poll(track.as_ref()).await {
        let TrackLocalEvent::OnRtcpPacket(packets) = event else {
            continue;
        };
        let n = packets
            .iter()
            .filter(|p| is_keyframe_request(p.as_ref()))
            .count() as u64;
        if n > 0 {
            lock(&shared.stats).keyframe_requests_received += n;
            shared.keyframe_wanted.store(true, Ordering::SeqCst);
        }
    }
    tracing::debug!("local video track event stream ended");
}

/// One m-section of an SDP, as far as track-end detection needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdpSection {
    /// `a=mid`.
    pub mid: Option<String>,
    /// The m-line's port is 0 (rejected / stopped).
    pub port_zero: bool,
    /// `sendrecv`, `sendonly`, `recvonly` or `inactive`, if present.
    pub direction: Option<String>,
}

/// Splits an SDP into its m-sections.
pub fn sdp_sections(sdp: &str) -> Vec<SdpSection> {
    let mut out: Vec<SdpSection> = Vec::new();
    for line in sdp.lines().map(str::trim_end) {
        if let Some(m) = line.strip_prefix("m=") {
            let port_zero = m.split_whitespace().nth(1) == Some("0");
            out.push(SdpSection {
                mid: None,
                port_zero,
                direction: None,
            });
        } else if let Some(section) = out.last_mut() {
            if let Some(mid) = line.strip_prefix("a=mid:") {
                section.mid = Some(mid.trim().to_owned());
            } else if let Some(dir) = line.strip_prefix("a=") {
                if matches!(dir, "sendrecv" | "sendonly" | "recvonly" | "inactive") {
                    section.direction = Some(dir.to_owned());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sections() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=sendrecv\r\nm=video 0 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=inactive\r\n";
        let s = sdp_sections(sdp);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].mid.as_deref(), Some("0"));
        assert!(!s[0].port_zero);
        assert_eq!(s[1].direction.as_deref(), Some("inactive"));
        assert!(s[1].port_zero);
    }
}
