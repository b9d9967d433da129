//! Runs many synthetic peers on one thread: a current-thread runtime and `LocalSet`, one task
//! and one UDP socket per peer, shared counters in `Rc<RefCell>` (no locks, no atomics). Joins
//! peers at a steady rate, waits until every expected stream flows, then measures a window.

use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::peer::{self, Shared};
use crate::procstat;
use crate::report::{self, PeerCounts, PhaseCosts, PhaseReport};
use crate::scenario::Plan;
use crate::server::Server;
use crate::stats::{Counters, Histogram};

#[derive(Debug, Clone)]
pub struct PhaseSettings {
    pub duration: Duration,
    /// Pause between two joins: a crowd joining at once is a different benchmark.
    pub join_interval: Duration,
    /// How long to wait for every stream to flow before measuring anyway.
    pub ready_timeout: Duration,
    /// Quiet time after everything flows (keyframes, first NACK rounds) before the window.
    pub settle: Duration,
    /// Longest wait for a calm second (p99 under 50 ms, loss under 1%) before measuring anyway.
    pub settle_max: Duration,
}

/// A second with p99 latency under this is calm enough to start measuring.
const CALM_P99_MS: f64 = 50.0;

/// Open the measurement window: counters start from zero, streams restart sequence tracking.
pub fn open_window(c: &mut Counters) {
    let generation = c.generation + 1;
    *c = Counters {
        generation,
        recording: true,
        latency: Histogram::default(),
        ..Default::default()
    };
}

/// The SFU phase: every peer of `plan` against `server`. Must run inside a `LocalSet`.
pub async fn run_sfu(plan: &Plan, server: &Server, s: &PhaseSettings) -> PhaseReport {
    let rss_start = server.rss_kib();
    let shared = Rc::new(Shared::new(server.ws_urls.clone()));
    let total = plan.peers.len();
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for (i, spec) in plan.peers.iter().enumerate() {
        tasks.push(tokio::task::spawn_local(peer::run(
            spec.clone(),
            shared.clone(),
        )));
        tokio::time::sleep(s.join_interval).await;
        if i % 10 == 9 {
            setup_progress(&shared, plan, i + 1, start);
        }
    }
    let ready_deadline = Instant::now() + s.ready_timeout;
    while Instant::now() < ready_deadline {
        let done = shared.connected.get() + shared.failed.get() >= total
            && shared.flowing.get() >= plan.expected_streams;
        if done {
            break;
        }
        setup_progress(&shared, plan, total, start);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    setup_progress(&shared, plan, total, start);
    report::end_progress();
    if shared.flowing.get() < plan.expected_streams {
        tracing::warn!(
            flowing = shared.flowing.get(),
            expected = plan.expected_streams,
            "not every stream flows; measuring anyway"
        );
    }
    let settle_start = Instant::now();
    tokio::time::sleep(s.settle).await;
    // Wait for a calm second: subscribers' bandwidth estimates start low and the server's
    // pacer queues what does not fit until they ramp up. Measuring that ramp would report
    // the estimator's start-up, not the forwarding cost; the settle time is reported instead.
    loop {
        open_window(&mut shared.counters.borrow_mut());
        tokio::time::sleep(Duration::from_secs(1)).await;
        let calm = {
            let c = shared.counters.borrow();
            let p99 = c.latency.quantile_ms(0.99).unwrap_or(f64::MAX);
            let loss = c.expected.saturating_sub(c.rtp_packets) as f64 / c.expected.max(1) as f64;
            eprint!(
                "\r[settle {:>4.0}s] p99 {p99:.1} ms loss {:.2}%   ",
                settle_start.elapsed().as_secs_f64(),
                loss * 100.0
            );
            p99 < CALM_P99_MS && loss < 0.01
        };
        if calm || settle_start.elapsed() >= s.settle_max {
            break;
        }
    }
    report::end_progress();
    let settled_after = settle_start.elapsed();

    open_window(&mut shared.counters.borrow_mut());
    let server_cpu0 = server.cpu().unwrap_or_default();
    let self_cpu0 = procstat::self_cpu().unwrap_or_default();
    let machine0 = procstat::machine_busy().unwrap_or_default();
    let window_start = Instant::now();
    while window_start.elapsed() < s.duration {
        tokio::time::sleep(Duration::from_secs(1).min(s.duration)).await;
        let cpu = server.cpu().unwrap_or_default().saturating_sub(server_cpu0);
        let own = procstat::self_cpu()
            .unwrap_or_default()
            .saturating_sub(self_cpu0);
        let elapsed = window_start.elapsed();
        let extra = format!(
            "server {:.0}% loadgen {:.0}%",
            cpu.as_secs_f64() * 100.0 / elapsed.as_secs_f64(),
            own.as_secs_f64() * 100.0 / elapsed.as_secs_f64()
        );
        report::progress(
            "sfu",
            elapsed,
            s.duration,
            &shared.counters.borrow(),
            &extra,
        );
    }
    let window = window_start.elapsed();
    shared.counters.borrow_mut().recording = false;
    let server_cpu = server.cpu().unwrap_or_default().saturating_sub(server_cpu0);
    let loadgen_cpu = procstat::self_cpu()
        .unwrap_or_default()
        .saturating_sub(self_cpu0);
    let machine_cpu = procstat::machine_busy()
        .unwrap_or_default()
        .saturating_sub(machine0);
    let peak = server.peak_rss_kib();
    report::end_progress();

    shared.stop.set(true);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    let c = shared.counters.borrow();
    PhaseReport::new(
        &c,
        &PhaseCosts {
            window,
            server_cpu,
            loadgen_cpu,
            machine_cpu,
            server_rss_start_kib: rss_start,
            server_peak_rss_kib: peak,
            receivers: total,
            settled_after,
        },
        &PeerCounts {
            total,
            connected: shared.connected.get(),
            failed: shared.failed.get(),
            streams_expected: plan.expected_streams,
            streams_flowing: shared.flowing.get(),
            send_drops: shared.send_drops.get(),
        },
    )
}

fn setup_progress(shared: &Shared, plan: &Plan, started: usize, since: Instant) {
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    let _ = write!(
        err,
        "\r[setup {:>4.0}s] peers started {started}/{} connected {} failed {} streams flowing {}/{}   ",
        since.elapsed().as_secs_f64(),
        plan.peers.len(),
        shared.connected.get(),
        shared.failed.get(),
        shared.flowing.get(),
        plan.expected_streams,
    );
    let _ = err.flush();
}
