//! # `switchboard bench`
//!
//! How many people does one server hold? This crate answers it: synthetic participants (str0m
//! `Rtc` instances in RTP mode, hundreds on one thread) speak our real signaling protocol and
//! real WebRTC (ICE, DTLS, SRTP) to a running `switchboard serve`, publish media that looks
//! like a browser's (Opus every 20 ms, VP8 layers with keyframes, optionally simulcast), and
//! measure what comes back: forwarded packets and bytes, loss, jitter, forwarding latency.
//! The server's CPU and memory come from /proc; our own CPU is reported apart.
//!
//! In the same run, a "floor" forwarder (one SRTP decrypt, one encrypt per subscriber,
//! `sendmmsg`) carries the same traffic to the same fan-out, to show what this machine can do.
//!
//! ## Module map
//!
//! - `scenario.rs`: audio, meeting, livestream as peers and tracks.
//! - `traffic.rs`: synthetic Opus and VP8 payloads. `peer.rs`: one participant.
//! - `driver.rs`: many peers on one thread, the measurement window.
//! - `floor.rs` + `srtp.rs`: the minimal forwarder baseline.
//! - `stats.rs`: loss, jitter, latency. `procstat.rs`: /proc figures.
//! - `report.rs`: progress line, table, JSON. `server.rs`: the server under test.

mod driver;
mod floor;
mod lobby;
mod peer;
mod procstat;
mod report;
mod scenario;
mod server;
mod soak;
mod srtp;
mod stats;
mod traffic;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

pub use report::{PhaseReport, RunReport};
pub use scenario::{LayerName, Scenario};

/// `switchboard bench` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Which load to model (after LiveKit's benchmark)
    #[arg(long, value_enum, default_value = "meeting")]
    pub scenario: Scenario,
    /// Participants (meeting) or receive-only subscribers (audio, livestream)
    #[arg(short, long, default_value_t = 10)]
    pub n: usize,
    /// Length of the measurement window, in seconds
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Publishers in the audio scenario
    #[arg(long, default_value_t = 10)]
    pub publishers: usize,
    /// Independent rooms, each running the whole scenario
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,
    /// `--media-workers` for the spawned server [default: the server's, one per core]
    #[arg(long)]
    pub media_workers: Option<usize>,
    /// `--worker-spill-margin` for the spawned server: 0 spreads one room evenly over the
    /// media workers (through the relay) [default: the server's]
    #[arg(long)]
    pub worker_spill_margin: Option<usize>,
    /// Spawn a cluster of this many nodes sharing a `redis-server` started for the run, and
    /// spread the peers over them in turn (the first publisher on the first node); the
    /// server's CPU and memory are the nodes' sum
    #[arg(long, default_value_t = 1)]
    pub nodes: usize,
    /// Send video as three simulcast layers (q, h, f)
    #[arg(long, overrides_with = "no_simulcast")]
    pub simulcast: bool,
    /// Send one video layer (the default until the SFU selects simulcast layers)
    #[arg(long, overrides_with = "simulcast")]
    pub no_simulcast: bool,
    /// Send video as one scalable VP9 stream (SVC) of three spatial layers (q, h and f's sizes
    /// and bitrates) and three temporal layers, shaped like Chromium's L3T3_KEY; the server
    /// gives each subscriber the layers its view needs
    #[arg(long, conflicts_with_all = ["simulcast", "layer"])]
    pub svc: bool,
    /// The layer sent without simulcast [default: h for meeting, f for livestream]
    #[arg(long, value_enum)]
    pub layer: Option<LayerName>,
    /// Opus bitrate, kbps (20 ms frames)
    #[arg(long, default_value_t = 32)]
    pub bitrate_audio: u32,
    /// Low layer (320x180) bitrate, kbps
    #[arg(long, default_value_t = 150)]
    pub bitrate_q: u32,
    /// Middle layer (640x360) bitrate, kbps
    #[arg(long, default_value_t = 500)]
    pub bitrate_h: u32,
    /// Full layer (1280x720) bitrate, kbps
    #[arg(long, default_value_t = 1700)]
    pub bitrate_f: u32,
    /// Video frame rate
    #[arg(long, default_value_t = 30)]
    pub fps: u32,
    /// Seconds between VP8 keyframes
    #[arg(long, default_value_t = 3.0)]
    pub keyframe_interval: f64,
    /// Longest wait, in seconds, for latency to calm down (bandwidth estimates ramping up)
    /// after every stream flows
    #[arg(long, default_value_t = 30.0)]
    pub settle_max: f64,
    /// Longest wait, in seconds after the last join, for every expected stream to flow (video
    /// the server paused for bandwidth resumes as estimates ramp up)
    #[arg(long, default_value_t = 60.0)]
    pub ready_timeout: f64,
    /// Report this size (WxH, e.g. 320x180) for every received video with `video_size`, as a
    /// browser's tile would; default: report nothing (the server assumes large)
    #[arg(long)]
    pub view: Option<String>,
    /// Peers joined per second
    #[arg(long, default_value_t = 100.0)]
    pub join_rate: f64,
    /// An already running server's WebSocket URL (default: spawn `switchboard serve`)
    #[arg(long, requires = "server_pid")]
    pub server: Option<String>,
    /// The process id of `--server`, for its CPU and memory
    #[arg(long, requires = "server")]
    pub server_pid: Option<u32>,
    /// Skip the floor baseline
    #[arg(long)]
    pub no_floor: bool,
    /// Write the report (or, with --find-max, every probe) as JSON here
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Search for the largest N that holds (loss < 1%, p99 < 50 ms), starting from -n
    #[arg(long)]
    pub find_max: bool,
    /// Upper bound for --find-max
    #[arg(long, default_value_t = 5000)]
    pub max_n: usize,
    /// Soak instead of measuring forwarding: a meeting of -n participants with churn (joins,
    /// leaves, reconnects, ICE restarts) for this many minutes, sampling the server's memory,
    /// descriptors and threads; fails if they grow or do not come back when the load stops
    #[arg(long, conflicts_with = "find_max")]
    pub soak: Option<f64>,
    /// Memory instead of forwarding: -n participants join (in rooms of 10) and offer but
    /// never connect media; reports the server's RSS per joined participant, then all leave,
    /// this many rounds, and the RSS after the last round against the idle server's
    #[arg(long, conflicts_with_all = ["find_max", "soak"])]
    pub lobby: Option<usize>,
    /// Seconds between two samples of a soak
    #[arg(long, default_value_t = 10.0)]
    pub sample_seconds: f64,
    /// Mean lifetime of a soak participant, in seconds
    #[arg(long, default_value_t = 12.0)]
    pub churn_seconds: f64,
}

impl BenchArgs {
    fn traffic(&self) -> scenario::Traffic {
        scenario::Traffic {
            simulcast: self.simulcast && !self.no_simulcast,
            svc: self.svc,
            audio_kbps: self.bitrate_audio,
            q_kbps: self.bitrate_q,
            h_kbps: self.bitrate_h,
            f_kbps: self.bitrate_f,
            fps: self.fps.max(1),
            single_layer: self.layer,
            keyframe_interval: Duration::from_secs_f64(self.keyframe_interval.max(0.1)),
            audio_publishers: self.publishers.max(1),
            view: self.view.as_deref().and_then(parse_size),
        }
    }

    fn settings(&self, peers: usize) -> driver::PhaseSettings {
        let join_interval = Duration::from_secs_f64(1.0 / self.join_rate.max(1.0));
        driver::PhaseSettings {
            duration: Duration::from_secs_f64(self.duration.max(0.5)),
            join_interval,
            ready_timeout: Duration::from_secs_f64(self.ready_timeout)
                + join_interval * peers as u32,
            settle: Duration::from_secs(1),
            settle_max: Duration::from_secs_f64(self.settle_max),
        }
    }
}

/// Run `switchboard bench`: one measured run, or a search for the largest N with --find-max.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    procstat::raise_fd_limit();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the load generator's runtime")?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        if let Some(minutes) = args.soak {
            soak(&args, minutes).await
        } else if let Some(rounds) = args.lobby {
            lobby(&args, rounds).await
        } else if args.find_max {
            find_max(&args).await
        } else {
            let report = run_once(&args, args.n).await?;
            println!("{}", report::table(&report));
            if let Some(path) = &args.json {
                write_json(path, &report)?;
            }
            Ok(())
        }
    })
}

/// One run at `n`: the SFU phase, then the floor with the same traffic and fan-out.
pub async fn run_once(args: &BenchArgs, n: usize) -> anyhow::Result<RunReport> {
    let traffic = args.traffic();
    let plan = scenario::Plan::rooms(args.scenario, n, &traffic, args.rooms.max(1));
    let settings = args.settings(plan.peers.len());
    let sfu = {
        let server = match (&args.server, args.server_pid) {
            (Some(url), Some(pid)) => server::Server::existing(url.clone(), pid),
            _ if args.nodes > 1 => {
                server::Server::spawn_cluster(
                    args.nodes,
                    args.media_workers,
                    args.worker_spill_margin,
                )
                .await?
            }
            _ => server::Server::spawn(args.media_workers, args.worker_spill_margin).await?,
        };
        eprintln!(
            "{:?} N={n} x {} room(s): {} peers ({} publishing), {} streams, server pid(s) {:?}",
            args.scenario,
            args.rooms.max(1),
            plan.peers.len(),
            plan.publishers,
            plan.expected_streams,
            server.pids
        );
        driver::run_sfu(&plan, &server, &settings).await
        // A spawned server is stopped here, before the floor runs on the same cores.
    };
    let floor = if args.no_floor {
        None
    } else {
        Some(floor::run(&plan, &settings).await?)
    };
    let sfu_vs_floor = floor
        .as_ref()
        .filter(|f| f.packets_per_server_cpu_s > 0.0)
        .map(|f| sfu.packets_per_server_cpu_s / f.packets_per_server_cpu_s);
    Ok(RunReport {
        scenario: args.scenario,
        n,
        rooms: args.rooms.max(1),
        // Applied only to a server the bench spawns.
        media_workers: args.media_workers.filter(|_| args.server.is_none()),
        worker_spill_margin: args.worker_spill_margin.filter(|_| args.server.is_none()),
        nodes: if args.server.is_none() { args.nodes } else { 1 },
        simulcast: traffic.simulcast,
        svc: traffic.svc,
        publishers: plan.publishers,
        receive_only_peers: plan.subscribers_only,
        duration_s: settings.duration.as_secs_f64(),
        machine: report::Machine::current(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        holds: sfu.holds(),
        sfu,
        floor,
        sfu_vs_floor,
    })
}

/// Above this much CPU (% of one core) used by other processes, a failed probe is repeated.
const CONTENDED_CPU_PCT: f64 = 20.0;
const CONTENDED_RETRIES: usize = 2;

/// Double N until a run fails, then bisect between the last good and first bad N.
async fn find_max(args: &BenchArgs) -> anyhow::Result<()> {
    let mut reports = Vec::new();
    let mut good: Option<usize> = None;
    let mut bad: Option<usize> = None;
    let mut n = args.n.max(1);
    loop {
        let mut report = run_once(args, n).await?;
        println!("{}", report::table(&report));
        // A failure while other work kept the machine busy says little about the server:
        // try again (the machine is shared; a quiet moment usually comes).
        for _ in 0..CONTENDED_RETRIES {
            if report.holds || report.sfu.other_cpu_pct < CONTENDED_CPU_PCT {
                break;
            }
            eprintln!(
                "other processes used {:.0}% CPU during the run: repeating N={n}",
                report.sfu.other_cpu_pct
            );
            reports.push(report);
            report = run_once(args, n).await?;
            println!("{}", report::table(&report));
        }
        let holds = report.holds;
        reports.push(report);
        if holds {
            good = Some(n);
        } else {
            bad = Some(n);
        }
        let next = match (good, bad) {
            (Some(g), None) => (g * 2).min(args.max_n),
            (g, Some(b)) => {
                let g = g.unwrap_or(0);
                // Stop within 10% (or 1 peer) of the boundary.
                if b - g <= (g / 10).max(1) {
                    break;
                }
                g + (b - g) / 2
            }
            (None, None) => break,
        };
        if next == n {
            break;
        }
        n = next;
    }
    match good {
        Some(g) => println!("largest N that holds: {g} ({:?})", args.scenario),
        None => println!("no N tried holds ({:?})", args.scenario),
    }
    if let Some(path) = &args.json {
        write_json(path, &reports)?;
    }
    Ok(())
}

/// `--soak`: the meeting scenario's participants, with churn, against one server.
async fn soak(args: &BenchArgs, minutes: f64) -> anyhow::Result<()> {
    if !(minutes > 0.0 && minutes <= 24.0 * 60.0) {
        anyhow::bail!("--soak takes minutes between 0 and 1440, not {minutes}");
    }
    let plan = scenario::Plan::rooms(Scenario::Meeting, args.n, &args.traffic(), 1);
    let server = match (&args.server, args.server_pid) {
        (Some(url), Some(pid)) => server::Server::existing(url.clone(), pid),
        _ => server::Server::spawn(args.media_workers, args.worker_spill_margin).await?,
    };
    let settings = soak::SoakSettings {
        duration: Duration::from_secs_f64(minutes * 60.0),
        sample_every: Duration::from_secs_f64(args.sample_seconds.clamp(0.5, 600.0)),
        churn: Duration::from_secs_f64(args.churn_seconds.clamp(1.0, 3600.0)),
    };
    eprintln!(
        "soak: {} participant slots for {minutes} min, mean lifetime {:?}, server pid {}",
        plan.peers.len(),
        settings.churn,
        server.pid()
    );
    let report = soak::run(&plan.peers, &server, &settings).await?;
    println!(
        "soak {}: idle rss {} KiB fds {} threads {}; after rss {} KiB fds {} threads {} participants {}; \
         growth rss {:.1}% fds {:.1}% threads {:.1}%; joins {} leaves {} reconnects {} ICE restarts {}/{} failures {}",
        if report.holds { "holds" } else { "FAILS" },
        report.idle.rss_kib,
        report.idle.fds,
        report.idle.threads,
        report.after.rss_kib,
        report.after.fds,
        report.after.threads,
        report.after.participants,
        report.rss_growth_pct,
        report.fds_growth_pct,
        report.threads_growth_pct,
        report.joins,
        report.leaves,
        report.reconnects,
        report.ice_restarts_completed,
        report.ice_restarts_started,
        report.peer_failures,
    );
    if let Some(path) = &args.json {
        write_json(path, &report)?;
    }
    if !report.holds {
        anyhow::bail!("the soak failed: resources grew or did not come back to idle");
    }
    Ok(())
}

/// `--lobby`: joined-but-unconnected participants' memory, and memory given back after leaves.
async fn lobby(args: &BenchArgs, rounds: usize) -> anyhow::Result<()> {
    if !(1..=1000).contains(&rounds) {
        anyhow::bail!("--lobby takes 1 to 1000 rounds, not {rounds}");
    }
    let server = match (&args.server, args.server_pid) {
        (Some(url), Some(pid)) => server::Server::existing(url.clone(), pid),
        _ => server::Server::spawn(args.media_workers, args.worker_spill_margin).await?,
    };
    let specs = lobby::specs(args.n);
    eprintln!(
        "lobby: {} participants in rooms of {}, {rounds} round(s), server pid {}",
        specs.len(),
        lobby::ROOM_SIZE,
        server.pid()
    );
    let report = lobby::run(&specs, &server, rounds).await?;
    println!(
        "lobby: {} participants joined, not connected: {:.1} KiB each (rss {} KiB, idle {} KiB); \
         after {} joins and leaves: rss {} KiB, {:.2}x idle",
        report.participants,
        report.kib_per_participant,
        report.joined_rss_kib,
        report.idle_rss_kib,
        report.joins,
        report.after_rss_kib,
        report.after_over_idle,
    );
    if let Some(path) = &args.json {
        write_json(path, &report)?;
    }
    Ok(())
}

/// "320x180" -> (320, 180).
fn parse_size(s: &str) -> Option<(u32, u32)> {
    let (w, h) = s.split_once('x')?;
    Some((w.trim().parse().ok()?, h.trim().parse().ok()?))
}

fn write_json(path: &std::path::Path, value: &impl serde::Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
