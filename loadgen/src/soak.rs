//! `switchboard bench --soak MINUTES`: does anything accumulate in a server that runs for a
//! long time under churn?
//!
//! A meeting of `-n` participant slots runs for the given minutes. Each slot joins, stays for a
//! random lifetime around `--churn-seconds`, and leaves; halfway through its life it may drop
//! its WebSocket and `resume` on a new one, or restart ICE, as browsers on real networks do.
//! Every `--sample-seconds` the server's resident memory, open descriptors, threads and
//! participants are read. When the time is up everyone leaves, and the server must come back
//! to its idle figures.
//!
//! Verdict: in the last two thirds of the run the mean must not grow by more than 5% from the
//! first half to the second half of that stretch (a leak grows without bound, churn only
//! fluctuates around a level; means of several samples are steadier than any one), and once the load stops the participants must be gone and the descriptors
//! and threads back at the idle baseline, with memory within twice the idle server's.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use rand::Rng;
use serde::Serialize;

use crate::peer::{Peer, PeerSpec, Shared};
use crate::procstat;
use crate::report::Machine;
use crate::server::Server;

/// Means may grow this much from the first to the second half of the judged stretch.
const MAX_GROWTH: f64 = 0.05;
/// After the load, resident memory within this factor of the idle server's.
const MAX_RSS_AFTER_VS_IDLE: f64 = 2.0;
/// How long the server gets, after the last participant left, to close what it held.
const SETTLE_AFTER_LOAD: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct SoakSettings {
    pub duration: Duration,
    pub sample_every: Duration,
    /// Mean lifetime of a participant.
    pub churn: Duration,
}

/// The server at one moment.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Sample {
    /// Seconds since the load started (negative: before, for the idle baseline).
    pub t_s: f64,
    pub rss_kib: u64,
    pub fds: u64,
    pub threads: u64,
    pub participants: u64,
}

/// What a soak did and found.
#[derive(Debug, Serialize)]
pub struct SoakReport {
    pub command: String,
    pub machine: Machine,
    pub slots: usize,
    pub duration_s: f64,
    pub churn_s: f64,
    pub idle: Sample,
    pub samples: Vec<Sample>,
    pub after: Sample,
    pub joins: u64,
    pub leaves: u64,
    pub reconnects: u64,
    pub ice_restarts_started: u64,
    pub ice_restarts_completed: u64,
    pub peer_failures: u64,
    /// Growth of the mean from the first to the second half of the last two thirds, in %.
    pub rss_growth_pct: f64,
    pub fds_growth_pct: f64,
    pub threads_growth_pct: f64,
    pub no_growth: bool,
    pub back_to_idle: bool,
    pub holds: bool,
}

#[derive(Default)]
struct Churn {
    joins: Cell<u64>,
    leaves: Cell<u64>,
    reconnects: Cell<u64>,
    ice_restarts: Cell<u64>,
    failures: Cell<u64>,
}

fn bump(c: &Cell<u64>) {
    c.set(c.get() + 1);
}

/// Run the soak. Must run inside a `LocalSet`.
pub async fn run(
    specs: &[PeerSpec],
    server: &Server,
    settings: &SoakSettings,
) -> anyhow::Result<SoakReport> {
    // The idle baseline: the server up, nobody in it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut idle = sample(server, -1.0).await;
    idle.t_s = 0.0;
    let shared = Rc::new(Shared::new(server.ws_urls.clone()));
    let churn = Rc::new(Churn::default());
    let start = Instant::now();
    let end = start + settings.duration;
    let mut slots = Vec::new();
    for spec in specs {
        slots.push(tokio::task::spawn_local(slot(
            spec.clone(),
            shared.clone(),
            churn.clone(),
            settings.churn,
            end,
        )));
        // Spread the first joins over one churn period so leaves do not come in waves.
        tokio::time::sleep(settings.churn / specs.len().max(1) as u32).await;
    }
    let mut samples = Vec::new();
    let mut next = start;
    while Instant::now() < end {
        next += settings.sample_every;
        tokio::time::sleep_until(next.min(end).into()).await;
        let s = sample(server, start.elapsed().as_secs_f64()).await;
        eprintln!(
            "[soak {:>5.0}s] rss {} KiB, fds {}, threads {}, participants {}; joins {} leaves {} reconnects {} ICE restarts {}/{} failures {}",
            s.t_s,
            s.rss_kib,
            s.fds,
            s.threads,
            s.participants,
            churn.joins.get(),
            churn.leaves.get(),
            churn.reconnects.get(),
            shared.ice_restarts.get(),
            churn.ice_restarts.get(),
            churn.failures.get(),
        );
        samples.push(s);
    }
    shared.stop.set(true);
    for s in slots {
        let _ = tokio::time::timeout(Duration::from_secs(20), s).await;
    }
    // Everyone left: give the server its time to close what they held, then read it.
    let load_end = Instant::now();
    let mut after = sample(server, start.elapsed().as_secs_f64()).await;
    while load_end.elapsed() < SETTLE_AFTER_LOAD && !is_back(&idle, &after) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        after = sample(server, start.elapsed().as_secs_f64()).await;
    }
    let growth = |f: fn(&Sample) -> u64| growth_pct(&samples, f);
    let (rss_growth_pct, fds_growth_pct, threads_growth_pct) = (
        growth(|s| s.rss_kib),
        growth(|s| s.fds),
        growth(|s| s.threads),
    );
    let limit = MAX_GROWTH * 100.0;
    let no_growth =
        rss_growth_pct <= limit && fds_growth_pct <= limit && threads_growth_pct <= limit;
    let back_to_idle = is_back(&idle, &after);
    Ok(SoakReport {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine: Machine::current(),
        slots: specs.len(),
        duration_s: settings.duration.as_secs_f64(),
        churn_s: settings.churn.as_secs_f64(),
        idle,
        samples,
        after,
        joins: churn.joins.get(),
        leaves: churn.leaves.get(),
        reconnects: churn.reconnects.get(),
        ice_restarts_started: churn.ice_restarts.get(),
        ice_restarts_completed: shared.ice_restarts.get(),
        peer_failures: churn.failures.get(),
        rss_growth_pct,
        fds_growth_pct,
        threads_growth_pct,
        no_growth,
        back_to_idle,
        holds: no_growth && back_to_idle,
    })
}

/// Nobody left in the server, its descriptors and threads at the idle figures, its memory
/// within `MAX_RSS_AFTER_VS_IDLE` of idle.
fn is_back(idle: &Sample, now: &Sample) -> bool {
    now.participants == 0
        && now.fds <= idle.fds
        && now.threads <= idle.threads
        && (now.rss_kib as f64) <= idle.rss_kib as f64 * MAX_RSS_AFTER_VS_IDLE
}

/// Growth of the mean of `f` from the first to the second half of the last two thirds of
/// `samples`, in percent (0 when there are too few samples to tell).
fn growth_pct(samples: &[Sample], f: fn(&Sample) -> u64) -> f64 {
    let judged = &samples[samples.len() / 3..];
    if judged.len() < 2 {
        return 0.0;
    }
    let (early, late) = judged.split_at(judged.len() / 2);
    let mean = |s: &[Sample]| s.iter().map(f).sum::<u64>() as f64 / s.len().max(1) as f64;
    let (early, late) = (mean(early), mean(late));
    if early <= 0.0 {
        return 0.0;
    }
    (late / early - 1.0) * 100.0
}

async fn sample(server: &Server, t_s: f64) -> Sample {
    Sample {
        t_s,
        rss_kib: procstat::rss_kib(server.pid()).unwrap_or(0),
        fds: procstat::open_fds(server.pid()).unwrap_or(0),
        threads: procstat::threads(server.pid()).unwrap_or(0),
        participants: server.participants().await.unwrap_or(0),
    }
}

/// One participant slot: join, live, maybe reconnect or restart ICE, leave; again until `end`.
async fn slot(
    spec: PeerSpec,
    shared: Rc<Shared>,
    churn: Rc<Churn>,
    mean_life: Duration,
    end: Instant,
) {
    let mut generation = 0u32;
    while !shared.stop.get() && Instant::now() < end {
        generation += 1;
        let mut spec = spec.clone();
        spec.name = format!("{}-{generation}", spec.name);
        spec.seed = spec.seed.wrapping_add(u64::from(generation));
        let (life, action) = {
            let mut rng = rand::rng();
            let life = mean_life.mul_f64(rng.random_range(0.5..1.5));
            (life, rng.random_range(0..3u8))
        };
        let result = async {
            let mut peer = Peer::start(spec, shared.clone()).await?;
            bump(&churn.joins);
            let born = Instant::now();
            let outcome = async {
                peer.run_until(Some(born + life / 2)).await?;
                // A browser reconnects or restarts ICE only once it was connected: a session
                // whose media never connected is not kept for `resume`.
                if shared.stop.get() || !peer.is_connected() {
                    return Ok(());
                }
                match action {
                    0 => {
                        peer.reconnect().await?;
                        bump(&churn.reconnects);
                    }
                    1 => {
                        peer.ice_restart().await?;
                        bump(&churn.ice_restarts);
                    }
                    _ => {}
                }
                peer.run_until(Some(born + life)).await
            }
            .await;
            peer.finish().await;
            bump(&churn.leaves);
            outcome
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "soak participant failed");
            bump(&churn.failures);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rss(values: &[u64]) -> Vec<Sample> {
        values
            .iter()
            .map(|&rss_kib| Sample {
                rss_kib,
                ..Sample::default()
            })
            .collect()
    }

    #[test]
    fn growth_compares_means_of_the_two_halves_of_the_last_two_thirds() {
        // The first third (ramp-up) is not judged.
        let flat = rss(&[10, 50, 90, 100, 96, 98, 100, 96, 98, 100]);
        assert!(growth_pct(&flat, |s| s.rss_kib).abs() < 1.0);
        let leak = rss(&[10, 50, 90, 100, 110, 120, 130, 140, 150]);
        // Judged: 100 110 120 | 130 140 150.
        let g = growth_pct(&leak, |s| s.rss_kib);
        assert!((g - (140.0 / 110.0 - 1.0) * 100.0).abs() < 1e-9, "{g}");
        assert_eq!(growth_pct(&rss(&[5]), |s| s.rss_kib), 0.0);
    }

    #[test]
    fn back_to_idle_needs_nobody_and_the_idle_descriptors_and_threads() {
        let idle = Sample {
            rss_kib: 10_000,
            fds: 20,
            threads: 8,
            ..Sample::default()
        };
        assert!(is_back(
            &idle,
            &Sample {
                rss_kib: 19_000,
                ..idle
            }
        ));
        assert!(!is_back(&idle, &Sample { fds: 21, ..idle }));
        assert!(!is_back(&idle, &Sample { threads: 9, ..idle }));
        assert!(!is_back(
            &idle,
            &Sample {
                participants: 1,
                ..idle
            }
        ));
        assert!(!is_back(
            &idle,
            &Sample {
                rss_kib: 20_001,
                ..idle
            }
        ));
    }
}
