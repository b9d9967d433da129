//! One synthetic participant: a str0m `Rtc` (client side, not ICE-lite) in RTP mode, its own
//! 127.0.0.1 UDP socket, and its WebSocket session in our signaling protocol (join, offer,
//! trickle, answer every server offer). Publishers write synthetic media straight into str0m's
//! send streams; every received RTP packet is measured. No decoding, no frame assembly.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt, Rid, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio_tungstenite::tungstenite::Message;

use crate::stats::{now_micros, SharedCounters, Streams};
use crate::traffic::{read_stamp, AudioSource, Layer, MediaPacket, SvcSource, VideoSource};

/// Time allowed for the WebSocket to open and `join` to be answered.
const SIGNALING_TIMEOUT: Duration = Duration::from_secs(15);
/// The loop wakes at least this often, to notice the stop flag.
const MAX_SLEEP: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("signaling: {0}")]
    Signaling(String),
    #[error("WebSocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("WebRTC: {0}")]
    Rtc(#[from] str0m::RtcError),
    #[error("timed out: {0}")]
    Timeout(&'static str),
}

/// What one peer publishes.
#[derive(Debug, Clone)]
pub struct PeerSpec {
    pub room: String,
    pub name: String,
    /// Opus at this many kbps, or no audio.
    pub audio_kbps: Option<u32>,
    /// Video layers: none, one (no simulcast), or several sent as simulcast by rid.
    pub video: Vec<Layer>,
    pub simulcast: bool,
    /// Send `video` as one scalable VP9 stream, a spatial layer each (`traffic::SvcSource`),
    /// and take VP9 as a subscriber.
    pub svc: bool,
    pub keyframe_interval: Duration,
    pub seed: u64,
    /// The size this peer shows every received video at (`video_size`), as a browser's tile
    /// would report; `None` sends nothing and the server assumes "large".
    pub view: Option<(u32, u32)>,
    /// Which of the server's nodes (`Shared::ws_urls`) this peer connects to.
    pub node: usize,
}

/// What every peer shares with the driver. Single-threaded: `Rc`/`Cell`, no locks.
pub struct Shared {
    /// One signaling URL per node of the server under test (one, unless `--nodes`).
    pub ws_urls: Vec<String>,
    pub counters: SharedCounters,
    pub stop: Cell<bool>,
    pub connected: Cell<usize>,
    /// Distinct (subscriber, SSRC) streams that have delivered at least one packet.
    pub flowing: Cell<usize>,
    pub failed: Cell<usize>,
    pub send_drops: Cell<u64>,
    /// ICE restarts completed (our restart offer answered).
    pub ice_restarts: Cell<u64>,
}

impl Shared {
    pub fn new(ws_urls: Vec<String>) -> Self {
        Self {
            ws_urls,
            counters: Default::default(),
            stop: Cell::new(false),
            connected: Cell::new(0),
            flowing: Cell::new(0),
            failed: Cell::new(0),
            send_drops: Cell::new(0),
            ice_restarts: Cell::new(0),
        }
    }

    /// The signaling URL of `node` (wrapping around the nodes there are).
    pub fn ws_url(&self, node: usize) -> &str {
        &self.ws_urls[node % self.ws_urls.len().max(1)]
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct SendTrack {
    mid: Mid,
    rid: Option<Rid>,
    source: Source,
    seq: u64,
}

enum Source {
    Audio(AudioSource),
    Video(VideoSource),
    Svc(SvcSource),
}

pub(crate) struct Peer {
    spec: PeerSpec,
    shared: Rc<Shared>,
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    ws: Ws,
    next_id: u64,
    pending: Option<SdpPendingOffer>,
    tracks: Vec<SendTrack>,
    opus_pt: Option<Pt>,
    vp8_pt: Option<Pt>,
    vp9_pt: Option<Pt>,
    connected: bool,
    rtc_timeout: Instant,
    streams: Streams,
    /// Received video tracks whose size we have reported.
    sized: std::collections::HashSet<String>,
    /// From `joined`, for `resume` after a reconnect.
    participant_id: String,
    resume_token: String,
    /// Our outstanding offer restarts ICE: if the server's offer wins a glare, it is made
    /// again after answering (the client is the polite peer, docs/protocol.md).
    restarting_ice: bool,
}

/// Run one peer until `shared.stop` is set or it fails. Failures are counted, not fatal to
/// the run: the report says how many peers did not make it.
pub async fn run(spec: PeerSpec, shared: Rc<Shared>) {
    let name = spec.name.clone();
    match Peer::start(spec, shared.clone()).await {
        Ok(mut peer) => {
            if let Err(e) = peer.run().await {
                tracing::warn!(peer = %name, error = %e, "peer failed");
                shared.failed.set(shared.failed.get() + 1);
            }
            peer.finish().await;
        }
        Err(e) => {
            tracing::warn!(peer = %name, error = %e, "peer could not start");
            shared.failed.set(shared.failed.get() + 1);
        }
    }
}

impl Peer {
    pub(crate) async fn start(spec: PeerSpec, shared: Rc<Shared>) -> Result<Peer, PeerError> {
        let std_socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
        std_socket.set_nonblocking(true)?;
        let socket = UdpSocket::from_std(std_socket)?;
        let local = socket.local_addr()?;
        let url = shared.ws_url(spec.node).to_owned();
        let (ws, _) = tokio::time::timeout(
            SIGNALING_TIMEOUT,
            tokio_tungstenite::connect_async(url.as_str()),
        )
        .await
        .map_err(|_| PeerError::Timeout("WebSocket connect"))??;
        let now = Instant::now();
        let mut rtc = Rtc::builder()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .enable_vp9(spec.svc)
            .build(now);
        let candidate = Candidate::host(local, "udp")
            .map_err(|e| PeerError::Signaling(format!("host candidate: {e}")))?;
        rtc.add_local_candidate(candidate);
        let mut peer = Peer {
            spec,
            shared,
            rtc,
            socket,
            local,
            ws,
            next_id: 1,
            pending: None,
            tracks: Vec::new(),
            opus_pt: None,
            vp8_pt: None,
            vp9_pt: None,
            connected: false,
            rtc_timeout: now,
            streams: Streams::default(),
            sized: Default::default(),
            participant_id: String::new(),
            resume_token: String::new(),
            restarting_ice: false,
        };
        peer.join().await?;
        Ok(peer)
    }

    async fn send(&mut self, mut msg: Value, with_id: bool) -> Result<u64, PeerError> {
        let id = self.next_id;
        if with_id {
            self.next_id += 1;
            msg["id"] = json!(id);
        }
        self.ws.send(Message::text(msg.to_string())).await?;
        Ok(id)
    }

    /// `join`, wait for `joined`, then offer what we publish and trickle our candidate.
    async fn join(&mut self) -> Result<(), PeerError> {
        let join = json!({"type": "join", "room": self.spec.room, "name": self.spec.name});
        let id = self.send(join, true).await?;
        let deadline = Instant::now() + SIGNALING_TIMEOUT;
        loop {
            let msg = tokio::time::timeout_at(deadline.into(), self.ws.next())
                .await
                .map_err(|_| PeerError::Timeout("joined"))?
                .ok_or_else(|| PeerError::Signaling("closed before joined".into()))??;
            let Some(v) = parse(&msg) else { continue };
            match v["type"].as_str() {
                Some("joined") if v["id"].as_u64() == Some(id) => {
                    self.participant_id = v["participant_id"].as_str().unwrap_or_default().into();
                    self.resume_token = v["resume_token"].as_str().unwrap_or_default().into();
                    break;
                }
                Some("error") => return Err(PeerError::Signaling(v.to_string())),
                _ => {}
            }
        }

        let now = Instant::now();
        let mut api = self.rtc.sdp_api();
        let mut declared: Vec<(Mid, Option<Rid>, Source)> = Vec::new();
        if let Some(kbps) = self.spec.audio_kbps {
            let mid = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
            let source = AudioSource::new(kbps, now, self.spec.seed);
            declared.push((mid, None, Source::Audio(source)));
        }
        if !self.spec.video.is_empty() && self.spec.svc {
            let mid = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
            let seed = self.spec.seed.wrapping_mul(31).wrapping_add(1);
            let source = SvcSource::new(&self.spec.video, self.spec.keyframe_interval, now, seed);
            declared.push((mid, None, Source::Svc(source)));
        } else if !self.spec.video.is_empty() {
            let simulcast = self.spec.simulcast && self.spec.video.len() > 1;
            let sim = simulcast.then(|| {
                let mut s = Simulcast::new();
                for l in &self.spec.video {
                    s.add_send_layer(SimulcastLayer::new(l.rid));
                }
                s
            });
            let mid = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, sim);
            let layers = if simulcast {
                &self.spec.video[..]
            } else {
                &self.spec.video[..1]
            };
            for (i, layer) in layers.iter().enumerate() {
                let rid = simulcast.then(|| Rid::from(layer.rid));
                let seed = self.spec.seed.wrapping_mul(31).wrapping_add(i as u64 + 1);
                let source = VideoSource::new(*layer, self.spec.keyframe_interval, now, seed);
                declared.push((mid, rid, Source::Video(source)));
            }
        }
        if declared.is_empty() {
            // The protocol wants at least one m-line even from a peer that only receives.
            api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
            api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
        }
        let (offer, pending) = api
            .apply()
            .ok_or_else(|| PeerError::Signaling("nothing to offer".into()))?;
        self.pending = Some(pending);
        self.tracks = declared
            .into_iter()
            .map(|(mid, rid, source)| SendTrack {
                mid,
                rid,
                source,
                seq: 1,
            })
            .collect();
        self.send(json!({"type": "offer", "sdp": offer.to_sdp_string()}), true)
            .await?;
        let candidate = Candidate::host(self.local, "udp")
            .map_err(|e| PeerError::Signaling(format!("host candidate: {e}")))?;
        self.send(
            json!({"type": "candidate", "candidate": candidate.to_sdp_string(), "sdp_mid": "0"}),
            false,
        )
        .await?;
        Ok(())
    }

    async fn run(&mut self) -> Result<(), PeerError> {
        self.run_until(None).await
    }

    /// Run until `shared.stop` is set or, if given, until `until`.
    pub async fn run_until(&mut self, until: Option<Instant>) -> Result<(), PeerError> {
        let mut buf = vec![0u8; 2048];
        while !self.shared.stop.get() && until.is_none_or(|u| Instant::now() < u) {
            self.drain()?;
            let now = Instant::now();
            let next_media = self
                .tracks
                .iter()
                .map(|t| match &t.source {
                    Source::Audio(a) => a.next_at,
                    Source::Video(v) => v.clock.next_at,
                    Source::Svc(v) => v.clock.next_at,
                })
                .min()
                .filter(|_| {
                    self.connected && self.opus_pt.or(self.vp8_pt).or(self.vp9_pt).is_some()
                });
            let deadline = [
                Some(self.rtc_timeout),
                next_media,
                Some(now + MAX_SLEEP),
                until,
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(now + MAX_SLEEP);
            tokio::select! {
                biased;
                readable = self.socket.readable() => {
                    readable?;
                    self.receive_all(&mut buf)?;
                }
                msg = self.ws.next() => match msg {
                    Some(Ok(msg)) => self.on_signaling(msg).await?,
                    Some(Err(e)) => return Err(e.into()),
                    None => return Err(PeerError::Signaling("server closed the WebSocket".into())),
                },
                _ = tokio::time::sleep_until(deadline.into()) => {
                    let now = Instant::now();
                    if now >= self.rtc_timeout {
                        self.rtc.handle_input(Input::Timeout(now))?;
                    }
                    self.send_media(now);
                }
            }
        }
        Ok(())
    }

    /// Read every queued datagram; each goes into str0m and its output is drained at once.
    fn receive_all(&mut self, buf: &mut [u8]) -> Result<(), PeerError> {
        loop {
            match self.socket.try_recv_from(buf) {
                Ok((len, source)) => {
                    {
                        let mut c = self.shared.counters.borrow_mut();
                        if c.recording {
                            c.udp_bytes += len as u64;
                        }
                    }
                    let data = &buf[..len];
                    let Ok(receive) = Receive::new(Protocol::Udp, source, self.local, data) else {
                        continue;
                    };
                    self.rtc
                        .handle_input(Input::Receive(Instant::now(), receive))?;
                    self.drain()?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn send_media(&mut self, now: Instant) {
        if !self.connected {
            return;
        }
        let mut writes: Vec<(Mid, Option<Rid>, Pt, u64, MediaPacket)> = Vec::new();
        for t in &mut self.tracks {
            match &mut t.source {
                Source::Audio(a) => {
                    let Some(pt) = self.opus_pt else { continue };
                    while let Some(p) = a.poll(now) {
                        writes.push((t.mid, t.rid, pt, t.seq, p));
                        t.seq += 1;
                    }
                }
                Source::Video(v) => {
                    let Some(pt) = self.vp8_pt else { continue };
                    while let Some(frame) = v.poll(now) {
                        for p in frame {
                            writes.push((t.mid, t.rid, pt, t.seq, p));
                            t.seq += 1;
                        }
                    }
                }
                Source::Svc(v) => {
                    let Some(pt) = self.vp9_pt else { continue };
                    while let Some(picture) = v.poll(now) {
                        for p in picture {
                            writes.push((t.mid, t.rid, pt, t.seq, p));
                            t.seq += 1;
                        }
                    }
                }
            }
        }
        if writes.is_empty() {
            return;
        }
        let mut c = self.shared.counters.borrow_mut();
        let mut api = self.rtc.direct_api();
        for (mid, rid, pt, seq, p) in writes {
            let Some(stream) = api.stream_tx_by_mid(mid, rid) else {
                tracing::debug!(%mid, ?rid, "no send stream yet");
                continue;
            };
            if c.recording {
                c.sent_packets += 1;
                c.sent_bytes += p.payload.len() as u64;
            }
            stream.write_rtp(
                RtpWrite::new(pt, seq.into(), p.rtp_time, now, p.payload)
                    .marker(p.marker)
                    .nackable(true),
            );
        }
    }

    /// Drain str0m until it wants a timeout: send what it produced, handle its events.
    fn drain(&mut self) -> Result<(), PeerError> {
        loop {
            match self.rtc.poll_output()? {
                Output::Timeout(at) => {
                    self.rtc_timeout = at;
                    return Ok(());
                }
                Output::Transmit(t) => {
                    if self.socket.try_send_to(&t.contents, t.destination).is_err() {
                        self.shared.send_drops.set(self.shared.send_drops.get() + 1);
                    }
                }
                Output::Event(e) => self.on_event(e),
            }
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::RtpPacket(p) => {
                // An empty packet is the server filling the number of a packet it did not
                // send us (a late one of a layer we do not get): nothing was lost there.
                if p.payload.is_empty() {
                    let mut c = self.shared.counters.borrow_mut();
                    self.streams
                        .get(*p.header.ssrc)
                        .on_filler(&mut c, *p.seq_no);
                    return;
                }
                // Only our media carries a stamp: the server's padding probes do not count
                // as forwarded packets, and have their own sequence space.
                let Some(sent) = read_stamp(&p.payload) else {
                    return;
                };
                let stream = self.streams.get(*p.header.ssrc);
                if !stream.seen() {
                    self.shared.flowing.set(self.shared.flowing.get() + 1);
                }
                let mut c = self.shared.counters.borrow_mut();
                stream.on_packet(&mut c, *p.seq_no, Some(sent), now_micros());
            }
            Event::Connected => {
                self.connected = true;
                self.shared.connected.set(self.shared.connected.get() + 1);
            }
            Event::KeyframeRequest(req) => {
                for t in &mut self.tracks {
                    if t.mid != req.mid || (req.rid.is_some() && req.rid != t.rid) {
                        continue;
                    }
                    match &mut t.source {
                        Source::Video(v) => v.clock.request_keyframe(),
                        Source::Svc(v) => v.clock.request_keyframe(),
                        Source::Audio(_) => {}
                    }
                }
            }
            _ => {}
        }
    }

    async fn on_signaling(&mut self, msg: Message) -> Result<(), PeerError> {
        let Some(v) = parse(&msg) else {
            return Ok(());
        };
        match v["type"].as_str() {
            Some("answer") => {
                let sdp = v["sdp"].as_str().unwrap_or_default();
                let answer = SdpAnswer::from_sdp_string(sdp)
                    .map_err(|e| PeerError::Signaling(format!("answer: {e}")))?;
                if let Some(pending) = self.pending.take() {
                    self.rtc.sdp_api().accept_answer(pending, answer)?;
                    self.refresh_payload_types();
                    if std::mem::take(&mut self.restarting_ice) {
                        self.shared
                            .ice_restarts
                            .set(self.shared.ice_restarts.get() + 1);
                    }
                }
            }
            Some("offer") => {
                let sdp = v["sdp"].as_str().unwrap_or_default();
                let offer = SdpOffer::from_sdp_string(sdp)
                    .map_err(|e| PeerError::Signaling(format!("offer: {e}")))?;
                // Glare: the server's offer wins and ours is rolled back (dropping str0m's
                // pending offer discards its changes).
                self.pending = None;
                let answer = self.rtc.sdp_api().accept_offer(offer)?;
                self.refresh_payload_types();
                self.send(
                    json!({"type": "answer", "sdp": answer.to_sdp_string()}),
                    true,
                )
                .await?;
                if std::mem::take(&mut self.restarting_ice) {
                    self.ice_restart().await?;
                }
                if let (Some((w, h)), Some(tracks)) = (self.spec.view, v["tracks"].as_object()) {
                    for t in tracks.values().filter(|t| t["kind"] == "video") {
                        let Some(id) = t["track_id"].as_str() else {
                            continue;
                        };
                        if self.sized.insert(id.to_owned()) {
                            let msg = json!({"type": "video_size", "track_id": id, "width": w, "height": h});
                            self.send(msg, false).await?;
                        }
                    }
                }
            }
            Some("error") => tracing::warn!(peer = %self.spec.name, error = %v, "server error"),
            _ => {}
        }
        Ok(())
    }

    fn refresh_payload_types(&mut self) {
        for p in self.rtc.codec_config().params() {
            match p.spec().codec {
                Codec::Opus if self.opus_pt.is_none() => self.opus_pt = Some(p.pt()),
                Codec::Vp8 if self.vp8_pt.is_none() => self.vp8_pt = Some(p.pt()),
                // Profile 0, which the server forwards to profile 0 subscribers.
                Codec::Vp9
                    if self.vp9_pt.is_none() && p.spec().format.profile_id.unwrap_or(0) == 0 =>
                {
                    self.vp9_pt = Some(p.pt())
                }
                _ => {}
            }
        }
    }

    /// Whether ICE and DTLS have connected (a session that never connected is not kept for
    /// `resume`, and has no path to restart).
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Drop the WebSocket without a close frame, as a network change would, then connect
    /// again and `resume` the session; media goes on throughout.
    pub async fn reconnect(&mut self) -> Result<(), PeerError> {
        let url = self.shared.ws_url(self.spec.node).to_owned();
        let (ws, _) = tokio::time::timeout(
            SIGNALING_TIMEOUT,
            tokio_tungstenite::connect_async(url.as_str()),
        )
        .await
        .map_err(|_| PeerError::Timeout("WebSocket reconnect"))??;
        // Dropping the old stream closes its TCP connection without a close frame.
        self.ws = ws;
        let resume = json!({
            "type": "resume",
            "participant_id": self.participant_id,
            "resume_token": self.resume_token,
        });
        let id = self.send(resume, true).await?;
        let deadline = Instant::now() + SIGNALING_TIMEOUT;
        loop {
            let msg = tokio::time::timeout_at(deadline.into(), self.ws.next())
                .await
                .map_err(|_| PeerError::Timeout("resumed"))?
                .ok_or_else(|| PeerError::Signaling("closed before resumed".into()))??;
            let Some(v) = parse(&msg) else { continue };
            match v["type"].as_str() {
                Some("resumed") if v["id"].as_u64() == Some(id) => return Ok(()),
                Some("error") => return Err(PeerError::Signaling(v.to_string())),
                _ => {}
            }
        }
    }

    /// Offer new ICE credentials, as a browser's `restartIce()` does; the answer completes
    /// it (counted in `Shared::ice_restarts`).
    pub async fn ice_restart(&mut self) -> Result<(), PeerError> {
        let mut api = self.rtc.sdp_api();
        api.ice_restart(true);
        let (offer, pending) = api
            .apply()
            .ok_or_else(|| PeerError::Signaling("ICE restart made no offer".into()))?;
        self.pending = Some(pending);
        self.restarting_ice = true;
        self.send(json!({"type": "offer", "sdp": offer.to_sdp_string()}), true)
            .await?;
        Ok(())
    }

    /// Hand our jitter estimates to the totals and say goodbye.
    pub(crate) async fn finish(&mut self) {
        self.streams
            .report_jitter(&mut self.shared.counters.borrow_mut());
        let _ = self.send(json!({"type": "leave"}), false).await;
        let _ = self.ws.close(None).await;
    }
}

fn parse(msg: &Message) -> Option<Value> {
    match msg {
        Message::Text(t) => serde_json::from_str(t.as_str()).ok(),
        _ => None,
    }
}
