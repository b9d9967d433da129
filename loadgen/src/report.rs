//! Results: the per-phase figures (SFU and floor), the progress line printed while a run
//! goes, the table at the end, and the JSON report.

use std::io::Write;
use std::time::Duration;

use serde::Serialize;

use crate::stats::Counters;

/// Figures of one measured phase (the SFU, or the floor forwarder).
#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    pub peers_total: usize,
    pub peers_connected: usize,
    pub peers_failed: usize,
    pub streams_expected: usize,
    pub streams_flowing: usize,
    pub window_s: f64,
    /// Time from every stream flowing to the first calm second (see `--settle-max`).
    pub settle_s: f64,
    /// RTP packets publishers sent in the window, per second.
    pub sent_pps: f64,
    /// RTP packets subscribers received in the window, per second: forwarded and delivered.
    pub forwarded_pps: f64,
    /// UDP payload bytes subscribers received (media and RTCP), per second.
    pub forwarded_bytes_per_s: f64,
    pub loss_pct: f64,
    /// Packets received again (a server's probe padding resends delivered packets), per second.
    /// Not counted as forwarded.
    pub duplicates_per_s: f64,
    pub jitter_ms: f64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    /// CPU seconds of the forwarder (the server process, or the floor's thread) in the window.
    pub server_cpu_s: f64,
    pub server_cpu_pct: f64,
    pub packets_per_server_cpu_s: f64,
    pub server_rss_start_mib: Option<f64>,
    pub server_peak_rss_mib: Option<f64>,
    /// (peak RSS - RSS before the first peer joined) / peers that receive.
    pub memory_per_subscriber_kib: Option<f64>,
    /// Our own CPU (all load-generator threads, the floor's forwarding thread excluded).
    pub loadgen_cpu_s: f64,
    pub loadgen_cpu_pct: f64,
    /// CPU used by everything else on the machine during the window (other processes, the
    /// kernel's softirq work not charged to us), in % of one core. Much above a few percent
    /// means the figures were taken on a shared, busy machine.
    pub other_cpu_pct: f64,
    /// Datagrams our peers could not send (full socket buffer).
    pub loadgen_send_drops: u64,
}

/// Inputs to a phase report that are not packet counters.
pub struct PhaseCosts {
    pub window: Duration,
    pub server_cpu: Duration,
    pub loadgen_cpu: Duration,
    /// Busy time of all cores together during the window.
    pub machine_cpu: Duration,
    pub server_rss_start_kib: Option<u64>,
    pub server_peak_rss_kib: Option<u64>,
    pub receivers: usize,
    pub settled_after: Duration,
}

pub struct PeerCounts {
    pub total: usize,
    pub connected: usize,
    pub failed: usize,
    pub streams_expected: usize,
    pub streams_flowing: usize,
    pub send_drops: u64,
}

impl PhaseReport {
    pub fn new(c: &Counters, costs: &PhaseCosts, peers: &PeerCounts) -> Self {
        let secs = costs.window.as_secs_f64().max(1e-9);
        let server_cpu_s = costs.server_cpu.as_secs_f64();
        let loadgen_cpu_s = costs.loadgen_cpu.as_secs_f64();
        let loss = if c.expected == 0 {
            0.0
        } else {
            c.expected.saturating_sub(c.rtp_packets) as f64 * 100.0 / c.expected as f64
        };
        let mib = |k: u64| k as f64 / 1024.0;
        Self {
            peers_total: peers.total,
            peers_connected: peers.connected,
            peers_failed: peers.failed,
            streams_expected: peers.streams_expected,
            streams_flowing: peers.streams_flowing,
            window_s: secs,
            settle_s: costs.settled_after.as_secs_f64(),
            sent_pps: c.sent_packets as f64 / secs,
            forwarded_pps: c.rtp_packets as f64 / secs,
            forwarded_bytes_per_s: c.udp_bytes as f64 / secs,
            loss_pct: loss,
            duplicates_per_s: c.duplicates as f64 / secs,
            jitter_ms: if c.jitter_streams == 0 {
                0.0
            } else {
                c.jitter_sum_ms / c.jitter_streams as f64
            },
            latency_p50_ms: c.latency.quantile_ms(0.50),
            latency_p99_ms: c.latency.quantile_ms(0.99),
            server_cpu_s,
            server_cpu_pct: server_cpu_s * 100.0 / secs,
            packets_per_server_cpu_s: if server_cpu_s > 0.0 {
                c.rtp_packets as f64 / server_cpu_s
            } else {
                0.0
            },
            server_rss_start_mib: costs.server_rss_start_kib.map(mib),
            server_peak_rss_mib: costs.server_peak_rss_kib.map(mib),
            memory_per_subscriber_kib: match (costs.server_rss_start_kib, costs.server_peak_rss_kib)
            {
                (Some(start), Some(peak)) if costs.receivers > 0 => {
                    Some(peak.saturating_sub(start) as f64 / costs.receivers as f64)
                }
                _ => None,
            },
            loadgen_cpu_s,
            loadgen_cpu_pct: loadgen_cpu_s * 100.0 / secs,
            other_cpu_pct: costs
                .machine_cpu
                .saturating_sub(costs.server_cpu + costs.loadgen_cpu)
                .as_secs_f64()
                * 100.0
                / secs,
            loadgen_send_drops: peers.send_drops,
        }
    }

    /// Under 1% loss and p99 latency under 50 ms, with every peer connected.
    pub fn holds(&self) -> bool {
        self.peers_failed == 0
            && self.peers_connected == self.peers_total
            && self.streams_flowing >= self.streams_expected
            && self.loss_pct < 1.0
            && self.latency_p99_ms.is_some_and(|p| p < 50.0)
    }
}

/// The whole run: what was asked, on what machine, and both phases.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub scenario: crate::scenario::Scenario,
    pub n: usize,
    /// Rooms running the scenario at once (N is per room).
    pub rooms: usize,
    /// The spawned server's `--media-workers`; `None` is its default (one per core).
    pub media_workers: Option<usize>,
    /// The spawned server's `--worker-spill-margin`; `None` is its default.
    pub worker_spill_margin: Option<usize>,
    /// Nodes of the spawned server (a cluster when more than one).
    pub nodes: usize,
    pub simulcast: bool,
    /// Video sent as one scalable VP9 stream (`--svc`).
    pub svc: bool,
    pub publishers: usize,
    pub receive_only_peers: usize,
    pub duration_s: f64,
    pub machine: Machine,
    pub command: String,
    pub sfu: PhaseReport,
    pub floor: Option<PhaseReport>,
    /// SFU packets per server CPU-second as a fraction of the floor's.
    pub sfu_vs_floor: Option<f64>,
    pub holds: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu_model: String,
    pub cpus: usize,
    pub build_profile: &'static str,
}

impl Machine {
    pub fn current() -> Self {
        let (cpu_model, cpus) = crate::procstat::machine();
        Self {
            cpu_model,
            cpus,
            build_profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
        }
    }
}

/// One progress line, rewritten in place on a terminal.
pub fn progress(label: &str, elapsed: Duration, total: Duration, c: &Counters, extra: &str) {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let loss = if c.expected == 0 {
        0.0
    } else {
        c.expected.saturating_sub(c.rtp_packets) as f64 * 100.0 / c.expected as f64
    };
    let p99 = c
        .latency
        .quantile_ms(0.99)
        .map_or("-".into(), |p| format!("{p:.1}"));
    let mut err = std::io::stderr().lock();
    let _ = write!(
        err,
        "\r[{label} {:>4.0}/{:.0}s] fwd {:>8.0} pps {:>7.2} MB/s loss {:>5.2}% p99 {p99} ms {extra}   ",
        elapsed.as_secs_f64(),
        total.as_secs_f64(),
        c.rtp_packets as f64 / secs,
        c.udp_bytes as f64 / secs / 1e6,
        loss,
    );
    let _ = err.flush();
}

pub fn end_progress() {
    eprintln!();
}

/// The table printed at the end of a run.
pub fn table(r: &RunReport) -> String {
    let mut rows: Vec<(&str, String, String)> = Vec::new();
    let floor = r.floor.as_ref();
    let f = |v: Option<f64>, prec: usize| v.map_or("-".into(), |v| format!("{v:.prec$}"));
    let both = |get: &dyn Fn(&PhaseReport) -> Option<f64>, prec: usize| {
        (f(get(&r.sfu), prec), f(floor.and_then(get), prec))
    };
    let mut row = |name: &'static str, get: &dyn Fn(&PhaseReport) -> Option<f64>, prec: usize| {
        let (a, b) = both(get, prec);
        rows.push((name, a, b));
    };
    row("peers connected", &|p| Some(p.peers_connected as f64), 0);
    row("streams flowing", &|p| Some(p.streams_flowing as f64), 0);
    row("settle s", &|p| Some(p.settle_s), 1);
    row("sent pps", &|p| Some(p.sent_pps), 0);
    row("forwarded pps", &|p| Some(p.forwarded_pps), 0);
    row(
        "forwarded MB/s",
        &|p| Some(p.forwarded_bytes_per_s / 1e6),
        2,
    );
    row("loss %", &|p| Some(p.loss_pct), 3);
    row("duplicates / s", &|p| Some(p.duplicates_per_s), 0);
    row("jitter ms", &|p| Some(p.jitter_ms), 2);
    row("latency p50 ms", &|p| p.latency_p50_ms, 2);
    row("latency p99 ms", &|p| p.latency_p99_ms, 2);
    row("server CPU s", &|p| Some(p.server_cpu_s), 2);
    row("server CPU %", &|p| Some(p.server_cpu_pct), 0);
    row(
        "pkts / server CPU-s",
        &|p| Some(p.packets_per_server_cpu_s),
        0,
    );
    row("server peak RSS MiB", &|p| p.server_peak_rss_mib, 1);
    row("KiB per subscriber", &|p| p.memory_per_subscriber_kib, 1);
    row("loadgen CPU %", &|p| Some(p.loadgen_cpu_pct), 0);
    row("other CPU %", &|p| Some(p.other_cpu_pct), 0);
    let mut out = format!(
        "scenario {:?}  N {}  rooms {}  simulcast {}  svc {}  window {:.1}s  {} ({} CPUs, {} build)\n",
        r.scenario,
        r.n,
        r.rooms,
        r.simulcast,
        r.svc,
        r.sfu.window_s,
        r.machine.cpu_model,
        r.machine.cpus,
        r.machine.build_profile
    );
    out.push_str(&format!("{:<22} {:>14} {:>14}\n", "", "sfu", "floor"));
    for (name, a, b) in rows {
        out.push_str(&format!("{name:<22} {a:>14} {b:>14}\n"));
    }
    if let Some(ratio) = r.sfu_vs_floor {
        out.push_str(&format!(
            "SFU reaches {:.1}% of the floor's packets per CPU-second\n",
            ratio * 100.0
        ));
    }
    out.push_str(&format!(
        "holds (all connected, loss < 1%, p99 < 50 ms): {}\n",
        if r.holds { "yes" } else { "NO" }
    ));
    out
}
