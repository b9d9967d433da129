//! [`TestClient`]: a participant speaking our JSON signaling protocol (docs/protocol.md) over a
//! WebSocket, with a [`MediaPeer`] for its media.
//!
//! Join sequence: connect, `join`, wait for `joined`, build the peer connection with the
//! local tracks, send `offer`, apply `answer`, trickle candidates (after the offer went out),
//! then answer every server `offer` in order, one at a time, and wait until the peer
//! connection is connected. The client offers only once, so glare cannot arise and no rollback
//! is ever needed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::media::{LocalCandidate, MediaPeer, PeerOptions, RemoteTrackInfo};
use crate::stats::{MediaKind, ReceivedStats, SignalEvent};

/// How long `join` waits for each server reply and for the connection.
pub const JOIN_STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// What a test client joins as.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `ws://HOST:PORT/ws`.
    pub ws_url: String,
    /// Room name.
    pub room: String,
    /// Display name (also seeds the payload sender tag).
    pub name: String,
    /// Publish an Opus track.
    pub publish_audio: bool,
    /// Publish a VP8 track.
    pub publish_video: bool,
    /// An access token for the join (servers with an API secret need one).
    pub token: Option<String>,
}

impl ClientConfig {
    /// A config publishing audio and video.
    pub fn new(
        ws_url: impl Into<String>,
        room: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        Self {
            ws_url: ws_url.into(),
            room: room.into(),
            name: name.into(),
            publish_audio: true,
            publish_video: true,
            token: None,
        }
    }
}

/// The payload sender tag of a client named `name` (FNV-1a 64 of the name).
pub fn sender_tag(name: &str) -> u64 {
    crate::payload::fnv1a64(name.as_bytes())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Work for the negotiation task, in arrival order.
enum Signal {
    Offer(Value),
    Candidate(Value),
}

/// A test participant. Dropping it aborts its tasks; prefer [`TestClient::leave`].
pub struct TestClient {
    config: ClientConfig,
    participant_id: String,
    joined: Value,
    peer: Arc<MediaPeer>,
    stats: Arc<Mutex<ReceivedStats>>,
    out_tx: mpsc::UnboundedSender<Message>,
    inbox: tokio::sync::Mutex<mpsc::UnboundedReceiver<Value>>,
    next_id: AtomicU64,
    tasks: Vec<JoinHandle<()>>,
}

impl TestClient {
    /// Connects, joins, negotiates and waits until the peer connection is connected.
    pub async fn join(config: ClientConfig) -> anyhow::Result<TestClient> {
        let (ws, _) = tokio::time::timeout(
            JOIN_STEP_TIMEOUT,
            tokio_tungstenite::connect_async(config.ws_url.as_str()),
        )
        .await
        .map_err(|_| anyhow!("WebSocket connect to {} timed out", config.ws_url))?
        .with_context(|| format!("WebSocket connect to {}", config.ws_url))?;
        let (mut sink, mut stream) = ws.split();
        let stats = Arc::new(Mutex::new(ReceivedStats::default()));
        let mut tasks = Vec::new();

        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Message>();
        tasks.push(tokio::spawn(async move {
            while let Some(msg) = out_rx.recv().await {
                let closing = matches!(msg, Message::Close(_));
                if let Err(err) = sink.send(msg).await {
                    tracing::debug!("WebSocket send failed: {err}");
                    break;
                }
                if closing {
                    break;
                }
            }
        }));

        let (control_tx, mut control_rx) = mpsc::unbounded_channel::<Value>();
        let (signal_tx, mut signal_rx) = mpsc::unbounded_channel::<Signal>();
        let (inbox_tx, inbox_rx) = mpsc::unbounded_channel::<Value>();
        {
            let stats = Arc::clone(&stats);
            tasks.push(tokio::spawn(async move {
                let mut close_code = None;
                while let Some(frame) = stream.next().await {
                    let text = match frame {
                        Ok(Message::Text(text)) => text.to_string(),
                        Ok(Message::Close(frame)) => {
                            close_code = frame.map(|f| u16::from(f.code));
                            break;
                        }
                        Ok(Message::Binary(_)) => {
                            let _ = inbox_tx.send(json!({"type": "__binary_frame__"}));
                            continue;
                        }
                        Ok(_) => continue,
                        Err(err) => {
                            tracing::debug!("WebSocket receive failed: {err}");
                            break;
                        }
                    };
                    let msg: Value = match serde_json::from_str(&text) {
                        Ok(v) => v,
                        Err(err) => {
                            tracing::warn!("server sent non-JSON text: {err}: {text}");
                            let _ = inbox_tx.send(Value::String(text));
                            continue;
                        }
                    };
                    dispatch(&msg, &stats, &control_tx, &signal_tx);
                    let _ = inbox_tx.send(msg);
                }
                lock(&stats).ws_closed = Some(close_code);
            }));
        }

        let send = |v: Value| {
            out_tx
                .send(Message::text(v.to_string()))
                .map_err(|_| anyhow!("WebSocket writer gone"))
        };

        // join -> joined
        let mut join = json!({"type": "join", "id": 1, "room": config.room, "name": config.name});
        if let Some(token) = &config.token {
            join["token"] = json!(token);
        }
        send(join)?;
        let joined = expect_reply(&mut control_rx, "joined", 1, &stats).await?;
        let participant_id = joined
            .get("participant_id")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("joined without a participant_id: {joined}"))?
            .to_owned();
        {
            let mut s = lock(&stats);
            s.initial_participants = joined
                .get("participants")
                .and_then(Value::as_array)
                .map(|ps| {
                    ps.iter()
                        .filter_map(|p| p.get("participant_id")?.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            if let Some(ps) = joined.get("participants").and_then(Value::as_array) {
                for p in ps {
                    if let (Some(id), Some(name)) = (
                        p.get("participant_id").and_then(Value::as_str),
                        p.get("name").and_then(Value::as_str),
                    ) {
                        s.participants.entry(id.to_owned()).or_default().name =
                            Some(name.to_owned());
                    }
                }
            }
        }

        // Peer connection, tracks, offer -> answer.
        let peer = Arc::new(
            MediaPeer::new(
                PeerOptions {
                    stream_id: participant_id.clone(),
                    sender_tag: sender_tag(&config.name),
                },
                Arc::clone(&stats),
            )
            .await?,
        );
        peer.publish(config.publish_audio, config.publish_video)
            .await?;
        if !config.publish_audio && !config.publish_video {
            // An offer needs an m-line: receive-only audio and video, as docs/protocol.md says.
            peer.add_recvonly_transceivers().await?;
        }
        let mut candidates = peer
            .take_candidates()
            .ok_or_else(|| anyhow!("candidate stream already taken"))?;
        let offer = peer.create_offer().await?;
        send(json!({"type": "offer", "id": 2, "sdp": offer}))?;
        {
            // Trickle only after the offer went out; earlier candidates waited in the channel.
            let out_tx = out_tx.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(c) = candidates.recv().await {
                    let msg = match c {
                        LocalCandidate::Candidate(init) => json!({
                            "type": "candidate",
                            "candidate": init.candidate,
                            "sdp_mid": init.sdp_mid,
                            "sdp_m_line_index": init.sdp_mline_index,
                        }),
                        LocalCandidate::End => json!({"type": "candidate", "candidate": ""}),
                    };
                    if out_tx.send(Message::text(msg.to_string())).is_err() {
                        break;
                    }
                }
            }));
        }
        tracing::debug!("our offer:\n{offer}");
        let answer = expect_reply(&mut control_rx, "answer", 2, &stats).await?;
        let sdp = answer
            .get("sdp")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("answer without sdp: {answer}"))?;
        tracing::debug!("server answer:\n{sdp}");
        peer.apply_answer(sdp).await?;

        // Server-initiated renegotiation and server candidates, strictly in order.
        {
            let peer = Arc::clone(&peer);
            let out_tx = out_tx.clone();
            let stats = Arc::clone(&stats);
            tasks.push(tokio::spawn(async move {
                let mut next_answer_id = 1_000_000u64;
                while let Some(signal) = signal_rx.recv().await {
                    match signal {
                        Signal::Offer(msg) => {
                            let result = answer_server_offer(&peer, &msg).await;
                            match result {
                                Ok(sdp) => {
                                    next_answer_id += 1;
                                    let reply =
                                        json!({"type": "answer", "id": next_answer_id, "sdp": sdp});
                                    if out_tx.send(Message::text(reply.to_string())).is_err() {
                                        break;
                                    }
                                    lock(&stats).answers_sent += 1;
                                }
                                Err(err) => {
                                    tracing::warn!("cannot answer server offer: {err:#}");
                                    lock(&stats).negotiation_failures.push(format!("{err:#}"));
                                }
                            }
                        }
                        Signal::Candidate(msg) => {
                            let candidate =
                                msg.get("candidate").and_then(Value::as_str).unwrap_or("");
                            let mid = msg
                                .get("sdp_mid")
                                .and_then(Value::as_str)
                                .map(str::to_owned);
                            if let Err(err) = peer.add_remote_candidate(candidate, mid).await {
                                lock(&stats)
                                    .negotiation_failures
                                    .push(format!("server candidate: {err:#}"));
                            }
                        }
                    }
                }
            }));
        }

        drop(control_rx);
        peer.wait_connected(JOIN_STEP_TIMEOUT)
            .await
            .with_context(|| format!("{} ({participant_id})", config.name))?;

        Ok(TestClient {
            config,
            participant_id,
            joined,
            peer,
            stats,
            out_tx,
            inbox: tokio::sync::Mutex::new(inbox_rx),
            next_id: AtomicU64::new(100),
            tasks,
        })
    }

    /// Our participant id (from `joined`).
    pub fn participant_id(&self) -> String {
        self.participant_id.clone()
    }

    /// Our display name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The tag our payloads carry (compare with [`crate::TrackStats::sender_tag`]).
    pub fn sender_tag(&self) -> u64 {
        sender_tag(&self.config.name)
    }

    /// The `joined` message, as received.
    pub fn joined_message(&self) -> &Value {
        &self.joined
    }

    /// The media half, for what this API does not wrap.
    pub fn peer(&self) -> &Arc<MediaPeer> {
        &self.peer
    }

    /// Starts the synthetic senders (see [`MediaPeer::start_media`]).
    pub fn start_media(&self) {
        self.peer.start_media();
    }

    /// A snapshot of what this client has received and seen.
    pub fn stats(&self) -> ReceivedStats {
        lock(&self.stats).clone()
    }

    /// Polls [`stats`](Self::stats) every 50 ms until `pred` holds; on timeout the error names
    /// `what` and includes the stats.
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&ReceivedStats) -> bool,
    ) -> anyhow::Result<()> {
        wait_for_stats(
            &self.stats,
            &format!("{}: {what}", self.config.name),
            timeout,
            pred,
        )
        .await
    }

    /// Next id for a request sent through [`send_json`](Self::send_json).
    pub fn next_request_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::SeqCst)
    }

    /// Sends a text frame as is (malformed input welcome).
    pub fn send_raw(&self, text: &str) -> anyhow::Result<()> {
        self.out_tx
            .send(Message::text(text.to_owned()))
            .map_err(|_| anyhow!("WebSocket writer gone"))
    }

    /// Sends a JSON message.
    pub fn send_json(&self, msg: &Value) -> anyhow::Result<()> {
        self.send_raw(&msg.to_string())
    }

    /// Sends a binary frame (a protocol violation, for error tests).
    pub fn send_binary(&self, data: Vec<u8>) -> anyhow::Result<()> {
        self.out_tx
            .send(Message::binary(data))
            .map_err(|_| anyhow!("WebSocket writer gone"))
    }

    /// The next server message not yet taken (every message since `joined` is queued here,
    /// including `joined`, `answer` and `offer`). Non-JSON text arrives as a JSON string.
    pub async fn next_message(&self, timeout: Duration) -> anyhow::Result<Value> {
        let mut inbox = self.inbox.lock().await;
        match tokio::time::timeout(timeout, inbox.recv()).await {
            Ok(Some(v)) => Ok(v),
            Ok(None) => bail!(
                "WebSocket closed (stats: {:?})",
                lock(&self.stats).ws_closed
            ),
            Err(_) => bail!("no server message within {timeout:?}"),
        }
    }

    /// Skips queued messages until one satisfies `pred`, and returns it.
    pub async fn wait_for_message(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut skipped = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_message(left).await {
                Ok(msg) if pred(&msg) => return Ok(msg),
                Ok(msg) => skipped.push(msg),
                Err(err) => {
                    bail!(
                        "{}: no message {what}: {err}; skipped: {skipped:?}",
                        self.config.name
                    )
                }
            }
        }
    }

    /// Tells the server our `kind` track is muted (by its `mid`) and pauses sending it.
    pub async fn set_muted(&self, kind: MediaKind, muted: bool) -> anyhow::Result<u64> {
        let mid = self
            .peer
            .local_mids()
            .await?
            .into_iter()
            .find(|(_, (k, _))| *k == kind)
            .map(|(mid, _)| mid)
            .ok_or_else(|| anyhow!("no local {kind} transceiver with a mid"))?;
        let id = self.next_request_id();
        self.send_json(&json!({"type": "mute", "id": id, "mid": mid, "muted": muted}))?;
        self.peer.set_paused(kind, muted);
        Ok(id)
    }

    /// Sends a PLI for every remote video track; returns how many were sent.
    pub async fn request_keyframes(&self) -> usize {
        self.peer.request_keyframes().await
    }

    /// Sends `leave`, waits (up to 2 s) for the server to close the WebSocket, closes the peer
    /// connection and stops all tasks.
    pub async fn leave(mut self) {
        let _ = self.send_json(&json!({"type": "leave"}));
        let _ = wait_for_stats(&self.stats, "ws close", Duration::from_secs(2), |s| {
            s.ws_closed.is_some()
        })
        .await;
        let _ = self.out_tx.send(Message::Close(None));
        self.peer.close().await;
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }

    /// Closes the WebSocket and peer connection without sending `leave` (an abrupt exit).
    pub async fn disconnect(mut self) {
        let _ = self.out_tx.send(Message::Close(None));
        self.peer.close().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }
}

impl Drop for TestClient {
    fn drop(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }
}

/// Polls `stats` until `pred` holds.
pub async fn wait_for_stats(
    stats: &Mutex<ReceivedStats>,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&ReceivedStats) -> bool,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        {
            let s = lock(stats);
            if pred(&s) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("timed out after {timeout:?} waiting for {what}; stats:\n{s}");
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn str_field(msg: &Value, key: &str) -> String {
    msg.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn dispatch(
    msg: &Value,
    stats: &Mutex<ReceivedStats>,
    control: &mpsc::UnboundedSender<Value>,
    signal: &mpsc::UnboundedSender<Signal>,
) {
    let kind = msg.get("type").and_then(Value::as_str).unwrap_or("");
    match kind {
        "joined" | "answer" => {
            let _ = control.send(msg.clone());
        }
        "error" => {
            lock(stats).errors.push(msg.clone());
            let _ = control.send(msg.clone());
        }
        "offer" => {
            lock(stats).server_offers += 1;
            let _ = signal.send(Signal::Offer(msg.clone()));
        }
        "candidate" => {
            let _ = signal.send(Signal::Candidate(msg.clone()));
        }
        "participant_joined" => {
            let p = msg.get("participant").cloned().unwrap_or(Value::Null);
            let participant_id = str_field(&p, "participant_id");
            let name = str_field(&p, "name");
            let mut s = lock(stats);
            s.participants
                .entry(participant_id.clone())
                .or_default()
                .name = Some(name.clone());
            s.events.push(SignalEvent::ParticipantJoined {
                participant_id,
                name,
            });
        }
        "participant_left" => lock(stats).events.push(SignalEvent::ParticipantLeft {
            participant_id: str_field(msg, "participant_id"),
        }),
        "track_published" => {
            let track = msg.get("track").cloned().unwrap_or(Value::Null);
            lock(stats).events.push(SignalEvent::TrackPublished {
                participant_id: str_field(msg, "participant_id"),
                track_id: str_field(&track, "track_id"),
                kind: str_field(&track, "kind"),
            });
        }
        "track_unpublished" => lock(stats).events.push(SignalEvent::TrackUnpublished {
            participant_id: str_field(msg, "participant_id"),
            track_id: str_field(msg, "track_id"),
        }),
        "track_muted" => lock(stats).events.push(SignalEvent::TrackMuted {
            participant_id: str_field(msg, "participant_id"),
            track_id: str_field(msg, "track_id"),
            muted: msg.get("muted").and_then(Value::as_bool).unwrap_or(false),
        }),
        _ => {}
    }
}

async fn expect_reply(
    control: &mut mpsc::UnboundedReceiver<Value>,
    want: &str,
    id: u64,
    stats: &Mutex<ReceivedStats>,
) -> anyhow::Result<Value> {
    let deadline = tokio::time::Instant::now() + JOIN_STEP_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let msg = match tokio::time::timeout(left, control.recv()).await {
            Ok(Some(msg)) => msg,
            Ok(None) => bail!(
                "WebSocket closed while waiting for `{want}` (close: {:?})",
                lock(stats).ws_closed
            ),
            Err(_) => bail!("no `{want}` within {JOIN_STEP_TIMEOUT:?}"),
        };
        let msg_id = msg.get("id").and_then(Value::as_u64);
        match msg.get("type").and_then(Value::as_str) {
            Some("error") if msg_id == Some(id) || msg_id.is_none() => {
                bail!("server refused request {id} (waiting for `{want}`): {msg}")
            }
            Some(t) if t == want => return Ok(msg),
            _ => tracing::debug!("ignoring {msg} while waiting for `{want}`"),
        }
    }
}

/// Parses a server offer's `tracks` map.
pub fn parse_tracks_map(msg: &Value) -> anyhow::Result<BTreeMap<String, RemoteTrackInfo>> {
    let mut out = BTreeMap::new();
    let Some(tracks) = msg.get("tracks") else {
        return Ok(out);
    };
    let tracks = tracks
        .as_object()
        .ok_or_else(|| anyhow!("offer `tracks` is not an object: {tracks}"))?;
    for (mid, t) in tracks {
        let field = |k: &str| {
            t.get(k)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("tracks[{mid}] lacks string `{k}`: {t}"))
        };
        let kind = field("kind")?;
        out.insert(
            mid.clone(),
            RemoteTrackInfo {
                participant_id: field("participant_id")?,
                track_id: field("track_id")?,
                kind: MediaKind::parse(&kind)
                    .ok_or_else(|| anyhow!("tracks[{mid}] has unknown kind {kind:?}"))?,
            },
        );
    }
    Ok(out)
}

async fn answer_server_offer(peer: &MediaPeer, msg: &Value) -> anyhow::Result<String> {
    let sdp = msg
        .get("sdp")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("server offer without sdp"))?;
    let tracks = parse_tracks_map(msg)?;
    tracing::debug!("server offer, tracks {tracks:?}:\n{sdp}");
    let answer = peer.answer_offer(sdp, Some(&tracks)).await?;
    tracing::debug!("our answer:\n{answer}");
    Ok(answer)
}
