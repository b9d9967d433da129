//! Self-tests of the test client, without our server.
//!
//! 1. Two [`MediaPeer`]s wired to each other in-process (one offers, one answers, candidates
//!    trickled both ways) exchange Opus + VP8 and verify every payload, then ask each other for
//!    keyframes.
//! 2. A [`TestClient`] joins a fake signaling server written here: a WebSocket endpoint speaking
//!    our protocol with a webrtc-rs peer behind it that plays "another participant". It checks
//!    join, trickle, server-initiated renegotiation with a `tracks` map, signaling events, track
//!    end on renegotiation, `error` replies reaching `next_message`, and `leave`.
//!
//! Run inside the loopback-only namespace:
//! `/work/shared/bin/loopback-only cargo test -p switchboard-testkit --offline`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use switchboard_testkit::{
    sender_tag, wait_for_stats, ClientConfig, LocalCandidate, MediaKind, MediaPeer, PeerOptions,
    ReceivedStats, TestClient,
};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

async fn new_peer(name: &str) -> anyhow::Result<Arc<MediaPeer>> {
    let peer = MediaPeer::new(
        PeerOptions {
            stream_id: name.to_owned(),
            sender_tag: sender_tag(name),
        },
        Arc::new(Mutex::new(ReceivedStats::default())),
    )
    .await?;
    Ok(Arc::new(peer))
}

fn forward_candidates(from: &MediaPeer, to: Arc<MediaPeer>) {
    let mut rx = from.take_candidates().expect("candidates not taken yet");
    tokio::spawn(async move {
        while let Some(c) = rx.recv().await {
            if let LocalCandidate::Candidate(init) = c {
                if let Err(err) = to.add_remote_candidate(&init.candidate, init.sdp_mid).await {
                    eprintln!("add_remote_candidate: {err:#}");
                }
            }
        }
    });
}

async fn wait_peer(
    peer: &MediaPeer,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&ReceivedStats) -> bool,
) -> anyhow::Result<()> {
    wait_for_stats(&peer.stats_handle(), what, timeout, pred).await
}

fn assert_clean_stream(stats: &ReceivedStats, from: &str, sender_name: &str) {
    let p = stats
        .participant(from)
        .unwrap_or_else(|| panic!("nothing from {from}:\n{stats}"));
    for (id, t) in &p.tracks {
        assert_eq!(t.integrity_failures, 0, "{id}: corrupt payloads\n{stats}");
        assert_eq!(t.seq_missing, 0, "{id}: sequence gaps\n{stats}");
        assert_eq!(t.counter_jumps, 0, "{id}: counter jumps\n{stats}");
        assert_eq!(
            t.sender_tag,
            Some(sender_tag(sender_name)),
            "{id}: sender tag\n{stats}"
        );
        assert_eq!(t.sender_tag_changes, 0, "{id}: tag changes\n{stats}");
        if t.kind == MediaKind::Video {
            assert_eq!(t.picture_id_jumps, 0, "{id}: picture id jumps\n{stats}");
            assert_eq!(t.missing_picture_id, 0, "{id}: no picture id\n{stats}");
            assert!(
                t.frames.abs_diff(t.marker_packets) <= 1,
                "{id}: frames vs marker packets\n{stats}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_peers_exchange_verified_media() -> anyhow::Result<()> {
    let started = Instant::now();
    let alice = new_peer("alice").await?;
    let bob = new_peer("bob").await?;
    alice.publish(true, true).await?;
    bob.publish(true, true).await?;

    let offer = alice.create_offer().await?;
    let answer = bob.answer_offer(&offer, None).await?;
    forward_candidates(&alice, Arc::clone(&bob));
    alice.apply_answer(&answer).await?;
    forward_candidates(&bob, Arc::clone(&alice));

    alice.wait_connected(Duration::from_secs(15)).await?;
    bob.wait_connected(Duration::from_secs(15)).await?;
    let connected = started.elapsed();
    alice.start_media();
    bob.start_media();

    for (me, other) in [(&alice, "bob"), (&bob, "alice")] {
        wait_peer(
            me,
            "media from the other peer",
            Duration::from_secs(10),
            |s| {
                s.participant(other).is_some_and(|p| {
                    p.audio_packets() >= 100 && p.video_frames() >= 45 && p.keyframes() >= 2
                })
            },
        )
        .await?;
    }
    let media = started.elapsed();
    assert_clean_stream(&alice.stats(), "bob", "bob");
    assert_clean_stream(&bob.stats(), "alice", "alice");

    // Keyframe requests travel back to the sender, which answers with a keyframe.
    let before = alice
        .stats()
        .participant("bob")
        .map_or(0, |p| p.keyframes());
    let sent = alice.request_keyframes().await;
    assert!(sent >= 1, "no PLI sent");
    wait_peer(&bob, "PLI at bob", Duration::from_secs(3), |s| {
        s.keyframe_requests_received >= 1
    })
    .await?;
    wait_peer(&alice, "keyframe after PLI", Duration::from_secs(1), |s| {
        s.participant("bob").is_some_and(|p| p.keyframes() > before)
    })
    .await?;
    assert_clean_stream(&alice.stats(), "bob", "bob");
    eprintln!(
        "connected after {connected:?}, media checks after {media:?}, total {:?}\nalice:\n{}bob:\n{}",
        started.elapsed(),
        alice.stats(),
        bob.stats()
    );
    alice.close().await;
    bob.close().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// A fake signaling server: one client, one webrtc-rs peer playing participant "Pfake".
// ---------------------------------------------------------------------------------------------

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

struct FakeServer {
    ws: Ws,
    peer: Arc<MediaPeer>,
    log: Vec<String>,
}

impl FakeServer {
    async fn send(&mut self, v: Value) -> anyhow::Result<()> {
        self.ws.send(Message::text(v.to_string())).await?;
        Ok(())
    }

    /// Reads until a message of type `want`, applying trickled candidates and answering
    /// bad input on the way.
    async fn recv(&mut self, want: &str) -> anyhow::Result<Value> {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(15), self.ws.next())
                .await
                .map_err(|_| anyhow!("fake server: no `{want}` in time; log {:?}", self.log))?
                .ok_or_else(|| anyhow!("fake server: client went away"))??;
            let text = match frame {
                Message::Text(t) => t.to_string(),
                Message::Close(_) => bail!("fake server: client closed while waiting for {want}"),
                _ => continue,
            };
            let Ok(msg) = serde_json::from_str::<Value>(&text) else {
                self.send(json!({"type": "error", "code": "bad_json", "message": "not JSON"}))
                    .await?;
                continue;
            };
            let t = msg["type"].as_str().unwrap_or("").to_owned();
            self.log.push(t.clone());
            if t == "candidate" {
                let c = msg["candidate"].as_str().unwrap_or("");
                self.peer
                    .add_remote_candidate(c, None)
                    .await
                    .context("fake server add candidate")?;
                continue;
            }
            if t == want {
                return Ok(msg);
            }
            if !matches!(t.as_str(), "join" | "offer" | "answer" | "leave" | "ping") {
                let mut e = json!({"type": "error", "code": "unknown_type", "message": t});
                if let Some(id) = msg.get("id") {
                    e["id"] = id.clone();
                }
                self.send(e).await?;
            }
        }
    }

    async fn tracks_map(&self) -> anyhow::Result<Value> {
        let mut map = serde_json::Map::new();
        for (mid, (kind, track_id)) in self.peer.local_mids().await? {
            map.insert(
                mid,
                json!({"participant_id": "Pfake", "track_id": track_id, "kind": kind.to_string()}),
            );
        }
        Ok(Value::Object(map))
    }

    async fn renegotiate(&mut self) -> anyhow::Result<()> {
        let sdp = self.peer.create_offer().await?;
        let tracks = self.tracks_map().await?;
        self.send(json!({"type": "offer", "sdp": sdp, "tracks": tracks}))
            .await?;
        let answer = self.recv("answer").await?;
        let sdp = answer["sdp"]
            .as_str()
            .ok_or_else(|| anyhow!("answer without sdp"))?;
        self.peer.apply_answer(sdp).await
    }
}

/// Steps the test drives the fake server through.
enum Step {
    RemoveVideo,
    Leave,
}

async fn run_fake_server(
    listener: TcpListener,
    mut steps: mpsc::UnboundedReceiver<Step>,
) -> anyhow::Result<Arc<MediaPeer>> {
    let (tcp, _) = listener.accept().await?;
    let ws = tokio_tungstenite::accept_async(tcp).await?;
    let mut srv = FakeServer {
        ws,
        peer: new_peer("Pfake").await?,
        log: Vec::new(),
    };
    let join = srv.recv("join").await?;
    srv.send(
        json!({"type": "joined", "id": join["id"], "participant_id": "Pclient",
        "room": join["room"], "participants": [], "ice_servers": []}),
    )
    .await?;

    // The client's offer: answer once gathering is done (the real server is ICE-lite and puts
    // its candidates in the SDP; this one imitates that and never trickles).
    let offer = srv.recv("offer").await?;
    let sdp = offer["sdp"]
        .as_str()
        .ok_or_else(|| anyhow!("offer without sdp"))?;
    srv.peer.answer_offer(sdp, None).await?;
    srv.peer
        .wait_gathering_complete(Duration::from_secs(5))
        .await?;
    let answer = srv.peer.current_local_sdp().await?;
    srv.send(json!({"type": "answer", "id": offer["id"], "sdp": answer}))
        .await?;

    // Another participant appears with two tracks: events, then a server offer.
    srv.send(json!({"type": "participant_joined", "participant": {"participant_id": "Pfake", "name": "Fake", "tracks": []}})).await?;
    srv.peer.publish_sendonly(true, true).await?;
    for (_, (kind, track_id)) in srv.peer.local_mids().await.unwrap_or_default() {
        srv.send(json!({"type": "track_published", "participant_id": "Pfake",
            "track": {"track_id": track_id, "kind": kind.to_string(), "muted": false}}))
            .await?;
    }
    srv.renegotiate().await?;
    srv.peer.start_media();

    loop {
        let step = tokio::select! {
            step = steps.recv() => step,
            // Keep reading so candidates and bad input are handled meanwhile.
            r = srv.recv("__never__") => { r?; continue; }
        };
        match step {
            Some(Step::RemoveVideo) => {
                let video_track = srv
                    .peer
                    .local_mids()
                    .await?
                    .into_values()
                    .find(|(k, _)| *k == MediaKind::Video)
                    .map(|(_, id)| id)
                    .ok_or_else(|| anyhow!("no video mid"))?;
                srv.peer.unpublish(MediaKind::Video).await?;
                srv.send(json!({"type": "track_unpublished", "participant_id": "Pfake", "track_id": video_track})).await?;
                srv.renegotiate().await?;
            }
            Some(Step::Leave) | None => break,
        }
    }
    srv.send(json!({"type": "participant_left", "participant_id": "Pfake"}))
        .await?;
    srv.recv("leave").await?;
    srv.ws
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        })))
        .await?;
    Ok(srv.peer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_against_fake_signaling_server() -> anyhow::Result<()> {
    let started = Instant::now();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (step_tx, step_rx) = mpsc::unbounded_channel();
    let server = tokio::spawn(run_fake_server(listener, step_rx));

    let client = TestClient::join(ClientConfig::new(
        format!("ws://{addr}/ws"),
        "selftest",
        "Client",
    ))
    .await?;
    let joined = started.elapsed();
    assert_eq!(client.participant_id(), "Pclient");
    client.start_media();

    client
        .wait_until("media from Pfake", Duration::from_secs(10), |s| {
            s.participant("Pfake").is_some_and(|p| {
                p.audio_packets() >= 50 && p.video_frames() >= 25 && p.keyframes() >= 1
            }) && s.answers_sent >= 1
        })
        .await?;
    let media = started.elapsed();
    let stats = client.stats();
    assert_clean_stream(&stats, "Pfake", "Pfake");
    assert!(stats.saw_joined("Pfake"), "{stats}");
    let fake = stats.participant("Pfake").expect("Pfake");
    assert_eq!(fake.name.as_deref(), Some("Fake"));
    assert!(
        fake.tracks.values().all(|t| t.mid.is_some()),
        "tracks map not applied:\n{stats}"
    );

    // Bad input: the (fake) server's error reply reaches next_message.
    client.send_raw(r#"{"type": "bogus", "id": 77}"#)?;
    let err = client
        .wait_for_message("error for id 77", Duration::from_secs(5), |m| {
            m["type"] == "error" && m["id"] == 77
        })
        .await?;
    assert_eq!(err["code"], "unknown_type");

    // The server removes the video track: the client sees the event and the track end.
    step_tx
        .send(Step::RemoveVideo)
        .map_err(|_| anyhow!("server gone"))?;
    client
        .wait_until("Pfake video ended", Duration::from_secs(10), |s| {
            s.participant("Pfake")
                .and_then(|p| p.track(MediaKind::Video))
                .is_some_and(|t| t.ended)
                && s.answers_sent >= 2
        })
        .await?;
    let stats = client.stats();
    let fake = stats.participant("Pfake").expect("Pfake");
    assert!(
        !fake.track(MediaKind::Audio).expect("audio").ended,
        "audio must live on:\n{stats}"
    );
    assert!(
        stats
            .events
            .iter()
            .any(|e| matches!(e, switchboard_testkit::SignalEvent::TrackUnpublished { .. })),
        "{stats}"
    );
    // Audio keeps flowing after the renegotiation.
    let audio_before = stats.audio_packets_from("Pfake");
    client
        .wait_until("audio continues", Duration::from_secs(3), |s| {
            s.audio_packets_from("Pfake") >= audio_before + 25
        })
        .await?;

    step_tx
        .send(Step::Leave)
        .map_err(|_| anyhow!("server gone"))?;
    client
        .wait_until("participant_left", Duration::from_secs(5), |s| {
            s.saw_left("Pfake")
        })
        .await?;
    let final_stats = client.stats();
    assert_clean_stream(&final_stats, "Pfake", "Pfake");
    client.leave().await;

    // The fake server's own peer received the client's media intact.
    let server_peer = server.await??;
    let server_stats = server_peer.stats();
    let from_client: BTreeMap<_, _> = server_stats
        .participant("Pclient")
        .map(|p| p.tracks.clone())
        .unwrap_or_default();
    assert_eq!(from_client.len(), 2, "server side:\n{server_stats}");
    assert_clean_stream(&server_stats, "Pclient", "Client");
    server_peer.close().await;
    eprintln!(
        "joined after {joined:?}, media checks after {media:?}, total {:?}\nclient:\n{final_stats}server:\n{server_stats}",
        started.elapsed()
    );
    Ok(())
}
