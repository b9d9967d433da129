//! A synthetic participant on str0m for the simulcast tests: it publishes Opus and three VP8
//! simulcast layers with real keyframe headers (answering keyframe requests), or one VP9 k-SVC
//! stream of three spatial layers with valid payload descriptors, or receives and records what
//! the SFU forwards; it answers TWCC so the server's estimator works, and can be
//! pointed at a shaping proxy instead of the server's media port.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Rid, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{Extension, ExtensionMap, RtpWrite, SeqNo};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio_tungstenite::tungstenite::Message;

pub const RIDS: [&str; 3] = ["q", "h", "f"];
/// Per layer: width, height, bytes per frame at 30 fps (~150 kbps, ~500 kbps, ~1.5 Mbps).
const LAYERS: [(u16, u16, usize); 3] = [(320, 180, 620), (640, 360, 2_080), (1280, 720, 6_250)];
const KEYFRAME_INTERVAL: Duration = Duration::from_secs(3);
const MAX_PAYLOAD: usize = 1_100;

/// One received video packet, as the subscriber saw it.
#[derive(Debug, Clone, Copy)]
pub struct VideoPacket {
    pub seq: u64,
    /// Which simulcast layer the publisher sent it on (read from the payload), or for VP9
    /// its spatial layer.
    pub layer: u8,
    pub starts_keyframe: bool,
    pub picture_id: u16,
    pub at: Instant,
    pub marker: bool,
    /// The temporal layer (VP8's TID, VP9's).
    pub temporal: u8,
    /// A VP9 packet: its descriptor's E bit (the last packet of its layer frame).
    pub vp9_ends_frame: Option<bool>,
}

#[derive(Debug, Default)]
pub struct Recorded {
    pub participant_id: String,
    pub resume_token: String,
    pub video: Vec<VideoPacket>,
    pub audio_packets: u64,
    pub audio_at: VecDeque<Instant>,
    /// Latest `stats` message from the server.
    pub stats: Option<Value>,
    /// Every `video_paused` message, in order.
    pub paused_messages: Vec<Value>,
    /// Every `codec_unsupported` message, in order.
    pub codec_unsupported: Vec<Value>,
    pub keyframe_requests: u64,
    pub connected: bool,
}

impl Recorded {
    /// Layer of the most recent video packets, if any arrived within `window`.
    pub fn recent_layer(&self, window: Duration) -> Option<u8> {
        let last = self.video.last()?;
        (last.at.elapsed() < window).then_some(last.layer)
    }

    pub fn audio_within(&self, window: Duration) -> usize {
        self.audio_at
            .iter()
            .filter(|t| t.elapsed() < window)
            .count()
    }

    pub fn video_within(&self, window: Duration) -> usize {
        self.video
            .iter()
            .rev()
            .take_while(|p| p.at.elapsed() < window)
            .count()
    }

    /// The server's current layer for the one video track received.
    pub fn server_layer(&self) -> Option<String> {
        let subs = self.stats.as_ref()?["subscriptions"].as_array()?;
        subs.iter()
            .find(|s| s["kind"] == "video")
            .and_then(|s| s["current_layer"].as_str().map(str::to_owned))
    }
}

pub enum Role {
    /// Opus and VP8 simulcast q/h/f.
    Publisher,
    /// The same, each layer with three temporal layers marked in its VP8 descriptors (L1T3,
    /// as Chromium sends simulcast: TID 0, 2, 1, 2, ..., the Y bit on the TID 2 and TID 1
    /// pictures that reference only the base layer).
    TemporalPublisher,
    /// Opus and one VP9 stream with three spatial layers (k-SVC: they depend on each other
    /// at keyframes only), all in every picture.
    SvcPublisher,
    Subscriber,
    /// A subscriber whose peer connection negotiates VP8 (and Opus) only.
    Vp8OnlySubscriber,
}

pub struct Str0mPeer {
    pub recorded: Arc<Mutex<Recorded>>,
    /// Dropping the WebSocket (without `leave`) while media goes on.
    drop_signaling: Option<tokio::sync::oneshot::Sender<()>>,
    /// Extra signaling messages for the server (`pin`, ...).
    outgoing: tokio::sync::mpsc::UnboundedSender<Value>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Str0mPeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Str0mPeer {
    /// Join `room` over `ws_url`. Media to the server goes to `media_via` when given (a proxy
    /// in front of the server's media port `server_media`).
    pub async fn start(
        ws_url: &str,
        room: &str,
        name: &str,
        role: Role,
        server_media: SocketAddr,
        media_via: Option<SocketAddr>,
    ) -> Str0mPeer {
        Self::start_with_feedback(ws_url, room, name, role, server_media, media_via, true).await
    }

    /// The same; `twcc: false` leaves the transport-wide sequence number extension out of
    /// the answer, so the server gets receiver reports only (as from aiortc).
    pub async fn start_with_feedback(
        ws_url: &str,
        room: &str,
        name: &str,
        role: Role,
        server_media: SocketAddr,
        media_via: Option<SocketAddr>,
        twcc: bool,
    ) -> Str0mPeer {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let local = socket.local_addr().expect("local addr");
        let (ws, _) = tokio_tungstenite::connect_async(ws_url)
            .await
            .expect("connect");
        let recorded = Arc::new(Mutex::new(Recorded::default()));
        let mut extensions = ExtensionMap::empty();
        for (id, extension) in ExtensionMap::standard().iter() {
            if twcc || *extension != Extension::TransportSequenceNumber {
                extensions.set(id, extension.clone());
            }
        }
        let mut rtc = Rtc::builder()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .enable_vp9(!matches!(role, Role::Vp8OnlySubscriber))
            .set_extension_map(extensions)
            .build(Instant::now());
        rtc.add_local_candidate(Candidate::host(local, "udp").expect("candidate"));
        let (drop_tx, drop_rx) = tokio::sync::oneshot::channel();
        let (outgoing, outgoing_rx) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(run(
            drop_rx,
            outgoing_rx,
            rtc,
            socket,
            ws,
            room.to_owned(),
            name.to_owned(),
            role,
            server_media,
            media_via,
            recorded.clone(),
        ));
        Str0mPeer {
            recorded,
            drop_signaling: Some(drop_tx),
            outgoing,
            task,
        }
    }

    /// Send `message` to the server over the peer's signaling connection.
    pub fn send(&self, message: Value) {
        self.outgoing.send(message).expect("the peer is running");
    }

    /// Drop the signaling connection abruptly (no `leave`, no close frame); media goes on.
    pub fn drop_signaling(&mut self) {
        if let Some(tx) = self.drop_signaling.take() {
            let _ = tx.send(());
        }
    }

    pub fn recorded(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.recorded.lock().expect("not poisoned")
    }

    /// Wait until `pred` holds; panics with `what` and `describe` after `timeout`.
    /// Wait until `pred` holds; prints how long it took (seen with `--nocapture`: QUALITY.md's
    /// recovery figures come from these lines).
    pub async fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&Recorded) -> bool) {
        let start = Instant::now();
        let deadline = start + timeout;
        loop {
            if pred(&self.recorded()) {
                eprintln!("waited {:.1} s for {what}", start.elapsed().as_secs_f32());
                return;
            }
            if Instant::now() > deadline {
                let r = self.recorded();
                panic!(
                    "timed out after {timeout:?} waiting for {what}; server layer {:?}, recent layer {:?}, video in last 2 s {}, audio in last 2 s {}, paused messages {:?}, stats {}",
                    r.server_layer(),
                    r.recent_layer(Duration::from_secs(2)),
                    r.video_within(Duration::from_secs(2)),
                    r.audio_within(Duration::from_secs(2)),
                    r.paused_messages,
                    r.stats.as_ref().map(|s| s.to_string()).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The publisher's synthetic encoder state for one layer.
struct LayerSender {
    rid: Rid,
    seq: u64,
    picture_id: u16,
    tl0: u8,
    keyframe_due: bool,
    /// Pictures sent, for the temporal pattern.
    frames: u64,
}

#[allow(clippy::too_many_arguments)]
async fn run(
    mut drop_signaling: tokio::sync::oneshot::Receiver<()>,
    mut outgoing: tokio::sync::mpsc::UnboundedReceiver<Value>,
    mut rtc: Rtc,
    socket: UdpSocket,
    ws: Ws,
    room: String,
    name: String,
    role: Role,
    server_media: SocketAddr,
    media_via: Option<SocketAddr>,
    recorded: Arc<Mutex<Recorded>>,
) {
    // Candidates in the server's SDP point at its media port; send through the proxy instead.
    let redirect = |sdp: &str| match media_via {
        Some(via) => sdp.replace(
            &format!("{} {} typ host", server_media.ip(), server_media.port()),
            &format!("{} {} typ host", via.ip(), via.port()),
        ),
        None => sdp.to_owned(),
    };
    let send_json = |v: Value| Message::Text(v.to_string().into());
    let mut ws = Some(ws);
    let mut signaling_dropped = false;
    ws.as_mut()
        .expect("just set")
        .send(send_json(
            json!({"type": "join", "id": 1, "room": room, "name": name}),
        ))
        .await
        .expect("join");

    let svc = matches!(role, Role::SvcPublisher);
    let temporal = matches!(role, Role::TemporalPublisher);
    let publisher = svc || temporal || matches!(role, Role::Publisher);
    let mut api = rtc.sdp_api();
    let (audio_mid, video_mid) = if svc {
        (
            api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None),
            api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None),
        )
    } else if publisher {
        let mut simulcast = Simulcast::new();
        for rid in RIDS {
            simulcast.add_send_layer(SimulcastLayer::new(rid));
        }
        (
            api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None),
            api.add_media(
                MediaKind::Video,
                Direction::SendOnly,
                None,
                None,
                Some(simulcast),
            ),
        )
    } else {
        (
            api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None),
            api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None),
        )
    };
    let (offer, mut pending) = api.apply().map(|(o, p)| (o, Some(p))).expect("an offer");
    let mut offer_sent = false;
    let mut layers: Vec<LayerSender> = RIDS
        .iter()
        .map(|r| LayerSender {
            rid: Rid::from(*r),
            seq: rand::random::<u16>() as u64,
            picture_id: rand::random::<u16>() & 0x7fff,
            tl0: 0,
            keyframe_due: true,
            frames: 0,
        })
        .collect();
    let mut audio_seq: u64 = rand::random::<u16>() as u64;
    let mut next_audio = Instant::now();
    let mut next_video = Instant::now();
    let mut next_keyframe = Instant::now() + KEYFRAME_INTERVAL;
    let start = Instant::now();
    let mut buf = vec![0u8; 2000];

    loop {
        // Drain the peer connection.
        let timeout = loop {
            match rtc.poll_output() {
                Ok(Output::Timeout(t)) => break t,
                Ok(Output::Transmit(t)) => {
                    let _ = socket.send_to(&t.contents, t.destination).await;
                }
                Ok(Output::Event(event)) => handle_event(&mut rtc, event, &mut layers, &recorded),
                Err(e) => panic!("{name}: {e}"),
            }
        };
        let connected = recorded.lock().map(|r| r.connected).unwrap_or(false);
        if publisher && connected {
            let now = Instant::now();
            if now >= next_audio {
                next_audio += Duration::from_millis(20);
                send_audio(&mut rtc, audio_mid, &mut audio_seq, now, start);
            }
            if now >= next_video {
                next_video += Duration::from_millis(33);
                if now >= next_keyframe {
                    next_keyframe = now + KEYFRAME_INTERVAL;
                    layers.iter_mut().for_each(|l| l.keyframe_due = true);
                }
                if svc {
                    send_svc_picture(&mut rtc, video_mid, &mut layers[0], now, start);
                } else {
                    for (index, layer) in layers.iter_mut().enumerate() {
                        send_frame(&mut rtc, video_mid, index, layer, temporal, now, start);
                    }
                }
            }
        }
        let wake = if publisher && connected {
            timeout.min(next_audio).min(next_video)
        } else {
            timeout
        };
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                let Ok((len, source)) = received else { continue };
                let Ok(receive) = Receive::new(Protocol::Udp, source, socket.local_addr().expect("addr"), &buf[..len]) else { continue };
                let _ = rtc.handle_input(Input::Receive(Instant::now(), receive));
            }
            _ = &mut drop_signaling, if !signaling_dropped => {
                signaling_dropped = true;
                ws = None; // dropped without a close frame, as a lost network would
            }
            Some(message) = outgoing.recv() => send(&mut ws, send_json(message)).await,
            message = next_message(&mut ws) => {
                let text = match message {
                    Some(Ok(Message::Text(text))) => text,
                    // Keepalive pings are answered by the WebSocket layer itself.
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    _ => return,
                };
                let Ok(msg) = serde_json::from_str::<Value>(text.as_str()) else { continue };
                match msg["type"].as_str() {
                    Some("joined") => {
                        {
                            let mut r = recorded.lock().expect("lock");
                            r.participant_id = msg["participant_id"].as_str().unwrap_or_default().to_owned();
                            r.resume_token = msg["resume_token"].as_str().unwrap_or_default().to_owned();
                        }
                        if !offer_sent {
                            offer_sent = true;
                            send(&mut ws, send_json(json!({"type": "offer", "id": 2, "sdp": offer.to_sdp_string()}))).await;
                        }
                    }
                    Some("answer") => {
                        let answer = SdpAnswer::from_sdp_string(&redirect(msg["sdp"].as_str().unwrap_or_default())).expect("answer SDP");
                        if let Some(p) = pending.take() {
                            rtc.sdp_api().accept_answer(p, answer).expect("answer accepted");
                        }
                        if svc {
                            declare_svc_stream(&mut rtc, video_mid);
                        } else if publisher {
                            declare_layer_streams(&mut rtc, video_mid, &layers);
                        }
                    }
                    Some("offer") => {
                        let offer = SdpOffer::from_sdp_string(&redirect(msg["sdp"].as_str().unwrap_or_default())).expect("offer SDP");
                        let answer = rtc.sdp_api().accept_offer(offer).expect("offer accepted");
                        send(&mut ws, send_json(json!({"type": "answer", "sdp": answer.to_sdp_string()}))).await;
                    }
                    Some("stats") => recorded.lock().expect("lock").stats = Some(msg),
                    Some("video_paused") => recorded.lock().expect("lock").paused_messages.push(msg),
                    Some("codec_unsupported") => recorded.lock().expect("lock").codec_unsupported.push(msg),
                    _ => {}
                }
            }
            _ = tokio::time::sleep_until(wake.into()) => {
                let _ = rtc.handle_input(Input::Timeout(Instant::now()));
            }
        }
    }
}

/// The next WebSocket message; pending forever once the connection was dropped.
async fn next_message(
    ws: &mut Option<Ws>,
) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>> {
    match ws {
        Some(ws) => ws.next().await,
        None => std::future::pending().await,
    }
}

async fn send(ws: &mut Option<Ws>, message: Message) {
    if let Some(ws) = ws {
        ws.send(message).await.expect("signaling send");
    }
}

fn handle_event(
    rtc: &mut Rtc,
    event: Event,
    layers: &mut [LayerSender],
    recorded: &Arc<Mutex<Recorded>>,
) {
    let mut r = recorded.lock().expect("lock");
    match event {
        Event::Connected => r.connected = true,
        Event::KeyframeRequest(req) => {
            r.keyframe_requests += 1;
            for layer in layers
                .iter_mut()
                .filter(|l| req.rid.is_none() || req.rid == Some(l.rid))
            {
                layer.keyframe_due = true;
            }
        }
        Event::RtpPacket(packet) => {
            let payload = &packet.payload;
            let kind = rtc
                .direct_api()
                .stream_rx(&packet.header.ssrc)
                .map(|s| s.mid())
                .and_then(|mid| rtc.media(mid).map(|m| m.kind()));
            if kind == Some(MediaKind::Audio) {
                r.audio_packets += 1;
                r.audio_at.push_back(Instant::now());
                while r.audio_at.len() > 500 {
                    r.audio_at.pop_front();
                }
                return;
            }
            let vp9 = rtc
                .codec_config()
                .params()
                .iter()
                .any(|p| p.pt() == packet.header.payload_type && p.spec().codec == Codec::Vp9);
            if vp9 {
                // Ours: I|P|L|B|E|V flags, 15-bit picture id, TID/U/SID/D, TL0PICIDX.
                let (Some(&flags), Some(&hi), Some(&lo), Some(&layer_byte)) = (
                    payload.first(),
                    payload.get(1),
                    payload.get(2),
                    payload.get(3),
                ) else {
                    return;
                };
                let spatial = (layer_byte >> 1) & 0x07;
                r.video.push(VideoPacket {
                    seq: *packet.seq_no,
                    layer: spatial,
                    starts_keyframe: flags & 0x40 == 0 && flags & 0x08 != 0 && spatial == 0,
                    picture_id: (u16::from(hi & 0x7f) << 8) | u16::from(lo),
                    at: Instant::now(),
                    marker: packet.header.marker,
                    temporal: layer_byte >> 5,
                    vp9_ends_frame: Some(flags & 0x04 != 0),
                });
                return;
            }
            // Our VP8 descriptor is always 6 bytes: X, I|L|T, 15-bit picture id, TL0, TID.
            let (Some(&first), Some(&hi), Some(&lo)) =
                (payload.first(), payload.get(2), payload.get(3))
            else {
                return;
            };
            let starts_frame = first & 0x10 != 0;
            let keyframe = starts_frame && payload.get(6).is_some_and(|b| b & 0x01 == 0);
            let layer_at = 6 + if starts_frame {
                if keyframe {
                    10
                } else {
                    3
                }
            } else {
                0
            };
            if let Some(&layer) = payload.get(layer_at) {
                r.video.push(VideoPacket {
                    seq: *packet.seq_no,
                    layer,
                    starts_keyframe: keyframe,
                    picture_id: (u16::from(hi & 0x7f) << 8) | u16::from(lo),
                    at: Instant::now(),
                    marker: packet.header.marker,
                    temporal: payload.get(5).map_or(0, |tid| tid >> 6),
                    vp9_ends_frame: None,
                });
            }
        }
        _ => {}
    }
}

fn declare_layer_streams(rtc: &mut Rtc, mid: Mid, layers: &[LayerSender]) {
    let mut api = rtc.direct_api();
    for layer in layers {
        if api.stream_tx_by_mid(mid, Some(layer.rid)).is_none() {
            let (ssrc, rtx) = (api.new_ssrc(), api.new_ssrc());
            api.declare_stream_tx(ssrc, Some(rtx), mid, Some(layer.rid));
        }
    }
}

/// The VP9 stream: one SSRC, no rid.
fn declare_svc_stream(rtc: &mut Rtc, mid: Mid) {
    let mut api = rtc.direct_api();
    if api.stream_tx_by_mid(mid, None).is_none() {
        let (ssrc, rtx) = (api.new_ssrc(), api.new_ssrc());
        api.declare_stream_tx(ssrc, Some(rtx), mid, None);
    }
}

fn payload_type(rtc: &Rtc, codec: Codec) -> Option<str0m::media::Pt> {
    rtc.codec_config()
        .params()
        .iter()
        .find(|p| p.spec().codec == codec)
        .map(|p| p.pt())
}

fn send_audio(rtc: &mut Rtc, mid: Mid, seq: &mut u64, now: Instant, start: Instant) {
    let Some(pt) = payload_type(rtc, Codec::Opus) else {
        return;
    };
    let ts = (now - start).as_micros() as u64 * 48 / 1000;
    let mut api = rtc.direct_api();
    if let Some(stream) = api.stream_tx_by_mid(mid, None) {
        *seq += 1;
        let exts = str0m::rtp::ExtensionValues {
            audio_level: Some(-40),
            ..Default::default()
        };
        stream.write_rtp(
            RtpWrite::new(pt, SeqNo::from(*seq), ts as u32, now, vec![0xfc; 64]).ext_vals(exts),
        );
    }
}

fn send_frame(
    rtc: &mut Rtc,
    mid: Mid,
    index: usize,
    layer: &mut LayerSender,
    temporal: bool,
    now: Instant,
    start: Instant,
) {
    let Some(pt) = payload_type(rtc, Codec::Vp8) else {
        return;
    };
    let (width, height, frame_bytes) = LAYERS[index];
    let keyframe = std::mem::take(&mut layer.keyframe_due);
    let frame_bytes = if keyframe {
        frame_bytes * 3
    } else {
        frame_bytes
    };
    layer.picture_id = (layer.picture_id + 1) & 0x7fff;
    if keyframe {
        // The pattern starts over at a keyframe, as an encoder's does.
        layer.frames = 0;
    }
    let (tid, layer_sync) = if temporal {
        [(0, false), (2, true), (1, true), (2, false)][(layer.frames % 4) as usize]
    } else {
        (0, false)
    };
    layer.frames += 1;
    if tid == 0 {
        layer.tl0 = layer.tl0.wrapping_add(1);
    }
    let ts = ((now - start).as_micros() as u64 * 90 / 1000) as u32;
    let packets = frame_bytes.div_ceil(MAX_PAYLOAD);
    let mut api = rtc.direct_api();
    let Some(stream) = api.stream_tx_by_mid(mid, Some(layer.rid)) else {
        return;
    };
    for i in 0..packets {
        let first = i == 0;
        let mut payload = Vec::with_capacity(MAX_PAYLOAD + 20);
        payload.push(if first { 0x90 } else { 0x80 });
        payload.push(0xe0);
        payload.push(0x80 | (layer.picture_id >> 8) as u8);
        payload.push(layer.picture_id as u8);
        payload.push(layer.tl0);
        payload.push((tid << 6) | if layer_sync { 0x20 } else { 0 });
        if first {
            let tag: u32 = u32::from(!keyframe) | (1 << 4) | (100 << 5);
            payload.extend_from_slice(&tag.to_le_bytes()[..3]);
            if keyframe {
                payload.extend_from_slice(&[0x9d, 0x01, 0x2a]);
                payload.extend_from_slice(&width.to_le_bytes());
                payload.extend_from_slice(&height.to_le_bytes());
            }
        }
        payload.push(index as u8);
        payload.resize(payload.len().max(MAX_PAYLOAD.min(frame_bytes)), 0x5a);
        layer.seq += 1;
        stream.write_rtp(
            RtpWrite::new(pt, SeqNo::from(layer.seq), ts, now, payload)
                .marker(i + 1 == packets)
                .nackable(true),
        );
    }
}

/// One VP9 picture of three spatial layers (the sizes and rates of `LAYERS`), as Chromium's
/// k-SVC sends it: a non-flexible payload descriptor on every packet (picture ID, layer
/// indices, TL0PICIDX), the scalability structure with the layer sizes on a keyframe's first
/// packet, the upper layers depending on the lower ones only in a keyframe, and the marker on
/// the picture's last packet. The first byte after the descriptor is the spatial layer.
fn send_svc_picture(
    rtc: &mut Rtc,
    mid: Mid,
    stream: &mut LayerSender,
    now: Instant,
    start: Instant,
) {
    let Some(pt) = rtc
        .codec_config()
        .params()
        .iter()
        .find(|p| p.spec().codec == Codec::Vp9 && p.spec().format.profile_id.unwrap_or(0) == 0)
        .map(|p| p.pt())
    else {
        return;
    };
    let keyframe = std::mem::take(&mut stream.keyframe_due);
    stream.picture_id = (stream.picture_id + 1) & 0x7fff;
    stream.tl0 = stream.tl0.wrapping_add(1);
    let ts = ((now - start).as_micros() as u64 * 90 / 1000) as u32;
    let mut api = rtc.direct_api();
    let Some(tx) = api.stream_tx_by_mid(mid, None) else {
        return;
    };
    for (spatial, &(_, _, frame_bytes)) in LAYERS.iter().enumerate() {
        let frame_bytes = if keyframe {
            frame_bytes * 3
        } else {
            frame_bytes
        };
        let packets = frame_bytes.div_ceil(MAX_PAYLOAD);
        for i in 0..packets {
            let (first, last) = (i == 0, i + 1 == packets);
            let structure = keyframe && first && spatial == 0;
            let flags = 0x80 // I: picture ID
                | if keyframe { 0 } else { 0x40 } // P: predicted from an earlier picture
                | 0x20 // L: layer indices
                | if first { 0x08 } else { 0 } // B
                | if last { 0x04 } else { 0 } // E
                | if structure { 0x02 } else { 0 }; // V
            let mut payload = Vec::with_capacity(MAX_PAYLOAD + 20);
            payload.push(flags);
            payload.push(0x80 | (stream.picture_id >> 8) as u8);
            payload.push(stream.picture_id as u8);
            // TID 0, SID, D (inter-layer dependency) in a keyframe's upper layers.
            payload.push(((spatial as u8) << 1) | u8::from(keyframe && spatial > 0));
            payload.push(stream.tl0);
            if structure {
                // N_S = 3, Y (sizes follow), no picture group description.
                payload.push(0x40 | 0x10);
                for (width, height, _) in LAYERS {
                    payload.extend_from_slice(&width.to_be_bytes());
                    payload.extend_from_slice(&height.to_be_bytes());
                }
            }
            payload.push(spatial as u8);
            payload.resize(payload.len().max(MAX_PAYLOAD.min(frame_bytes)), 0x5a);
            stream.seq += 1;
            tx.write_rtp(
                RtpWrite::new(pt, SeqNo::from(stream.seq), ts, now, payload)
                    .marker(last && spatial + 1 == LAYERS.len())
                    .nackable(true),
            );
        }
    }
}
