//! `--lobby`: what participants cost the server before their media connects, and whether it
//! gives the memory back after they leave.
//!
//! Every participant opens its WebSocket, joins, offers (receive-only audio and video, as a
//! watcher would) and trickles its candidate, and then never answers ICE: the server holds
//! a joined participant with a peer connection that is not connected, as it does for every
//! browser between `join` and the end of ICE, and for every client that never gets there.
//! Rooms of [`ROOM_SIZE`], so that the cost measured is the participant's, not a room's
//! signaling fan-out. After the first round the server's RSS per participant is reported;
//! all leave, and the rounds repeat; the RSS after the last round is compared with the idle
//! server's.

use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::peer::{Peer, PeerSpec, Shared};
use crate::server::Server;

/// Participants per room.
pub const ROOM_SIZE: usize = 10;

/// How long the server may take to count every leave.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, serde::Serialize)]
pub struct LobbyReport {
    pub participants: usize,
    pub rounds: usize,
    pub idle_rss_kib: u64,
    /// With every participant of the first round joined.
    pub joined_rss_kib: u64,
    pub kib_per_participant: f64,
    /// After the last round's leaves, once the server counts nobody.
    pub after_rss_kib: u64,
    pub after_over_idle: f64,
    pub joins: usize,
}

/// The specs of `n` watch-only participants in rooms of [`ROOM_SIZE`].
pub fn specs(n: usize) -> Vec<PeerSpec> {
    (0..n)
        .map(|i| PeerSpec {
            room: format!("lobby-{}", i / ROOM_SIZE),
            name: format!("lobby{i}"),
            audio_kbps: None,
            video: Vec::new(),
            simulcast: false,
            svc: false,
            keyframe_interval: Duration::from_secs(3),
            seed: i as u64,
            view: None,
            node: 0,
        })
        .collect()
}

pub async fn run(
    specs: &[PeerSpec],
    server: &Server,
    rounds: usize,
) -> anyhow::Result<LobbyReport> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = server
        .rss_kib()
        .ok_or_else(|| anyhow::anyhow!("cannot read the server's RSS"))?;
    let shared = Rc::new(Shared::new(server.ws_urls.clone()));
    let mut joined_rss = 0;
    let mut joins = 0;
    for round in 0..rounds {
        let mut peers = Vec::with_capacity(specs.len());
        for spec in specs {
            let peer = Peer::start(spec.clone(), shared.clone())
                .await
                .map_err(|e| anyhow::anyhow!("{} could not join: {e}", spec.name))?;
            peers.push(peer);
            joins += 1;
        }
        let counted = wait_for_participants(server, specs.len() as u64).await;
        if round == 0 {
            // Let the last answers and candidates settle before reading.
            tokio::time::sleep(Duration::from_secs(1)).await;
            joined_rss = server.rss_kib().unwrap_or(0);
            eprintln!(
                "[lobby] {} joined ({counted:?} counted by the server): rss {joined_rss} KiB, idle {idle} KiB",
                specs.len()
            );
        }
        for peer in &mut peers {
            peer.finish().await;
        }
        drop(peers);
        if wait_for_participants(server, 0).await != Some(0) {
            anyhow::bail!(
                "participants were still counted {LEAVE_TIMEOUT:?} after round {round}'s leaves"
            );
        }
    }
    // The server returns freed memory to the system within 5 s of participants leaving
    // (`serve`'s trim tick).
    tokio::time::sleep(Duration::from_secs(7)).await;
    let after = server.rss_kib().unwrap_or(0);
    Ok(LobbyReport {
        participants: specs.len(),
        rounds,
        idle_rss_kib: idle,
        joined_rss_kib: joined_rss,
        kib_per_participant: joined_rss.saturating_sub(idle) as f64 / specs.len().max(1) as f64,
        after_rss_kib: after,
        after_over_idle: after as f64 / idle.max(1) as f64,
        joins,
    })
}

/// Waits until the server counts `n` participants (or the timeout); returns its last count.
async fn wait_for_participants(server: &Server, n: u64) -> Option<u64> {
    let deadline = Instant::now() + LEAVE_TIMEOUT;
    loop {
        let count = server.participants().await;
        if count == Some(n) || Instant::now() >= deadline {
            return count;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
