//! Smoke test of `switchboard bench`: a few seconds at small N against a server the bench
//! spawns itself, checking that packets flow through the SFU and the floor and that the JSON
//! report has every figure. No timing assertions: CI machines vary.

use std::process::Command;

use serde_json::Value;

/// Every figure a phase reports.
const PHASE_FIELDS: &[&str] = &[
    "peers_total",
    "peers_connected",
    "peers_failed",
    "streams_expected",
    "streams_flowing",
    "window_s",
    "settle_s",
    "sent_pps",
    "forwarded_pps",
    "forwarded_bytes_per_s",
    "loss_pct",
    "duplicates_per_s",
    "jitter_ms",
    "latency_p50_ms",
    "latency_p99_ms",
    "server_cpu_s",
    "server_cpu_pct",
    "packets_per_server_cpu_s",
    "server_rss_start_mib",
    "server_peak_rss_mib",
    "memory_per_subscriber_kib",
    "loadgen_cpu_s",
    "loadgen_cpu_pct",
    "other_cpu_pct",
    "loadgen_send_drops",
];

fn bench(name: &str, args: &[&str]) -> Value {
    let json = std::env::temp_dir().join(format!("bench-smoke-{name}-{}.json", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("bench")
        .args(args)
        .args(["--duration", "2", "--settle-max", "4", "--json"])
        .arg(&json)
        .output()
        .expect("run switchboard bench");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "bench {name} failed\n{stdout}\n{stderr}"
    );
    let text = std::fs::read_to_string(&json).expect("JSON report written");
    let _ = std::fs::remove_file(&json);
    let report: Value = serde_json::from_str(&text).expect("report is JSON");
    for top in [
        "scenario",
        "n",
        "simulcast",
        "machine",
        "command",
        "sfu",
        "floor",
        "holds",
    ] {
        assert!(report.get(top).is_some(), "{name}: no {top} in {report}");
    }
    for phase in ["sfu", "floor"] {
        for field in PHASE_FIELDS {
            assert!(
                report[phase].get(*field).is_some(),
                "{name}: no {phase}.{field} in {report}"
            );
        }
        let p = &report[phase];
        assert!(
            p["forwarded_pps"].as_f64().is_some_and(|v| v > 0.0),
            "{name}: nothing forwarded by the {phase}\n{stdout}\n{stderr}"
        );
        assert!(
            p["loss_pct"].as_f64().is_some_and(|v| v < 20.0),
            "{name}: {phase} lost too much\n{stdout}"
        );
        assert_eq!(p["peers_failed"], 0, "{name}: peers failed\n{stderr}");
    }
    let sfu = &report["sfu"];
    assert_eq!(sfu["peers_connected"], sfu["peers_total"], "{stdout}");
    assert!(
        sfu["latency_p50_ms"].is_number(),
        "latency measured: {stdout}"
    );
    assert!(
        sfu["server_cpu_s"].as_f64().is_some_and(|v| v > 0.0),
        "server CPU read: {stdout}"
    );
    assert!(
        sfu["server_peak_rss_mib"].as_f64().is_some_and(|v| v > 0.0),
        "server memory read: {stdout}"
    );
    report
}

#[test]
fn bench_meeting_and_audio_produce_figures() {
    let meeting = bench(
        "meeting",
        &["--scenario", "meeting", "-n", "3", "--no-simulcast"],
    );
    // Three participants, each receiving the other two's audio and video.
    assert_eq!(meeting["sfu"]["streams_expected"], 12);
    // Two rooms on a two-worker server: every stream of both flows.
    let audio = bench(
        "audio",
        &[
            "--scenario",
            "audio",
            "-n",
            "3",
            "--publishers",
            "2",
            "--rooms",
            "2",
            "--media-workers",
            "2",
        ],
    );
    assert_eq!(audio["sfu"]["peers_total"], 10);
    assert_eq!(audio["rooms"], 2);
    assert_eq!(
        audio["sfu"]["streams_flowing"],
        audio["sfu"]["streams_expected"]
    );
}

/// SVC publishers (`--svc`: one VP9 stream, three spatial layers): every stream flows, and
/// subscribers showing videos at 320x180 get the lowest spatial layer only, so far fewer
/// bytes arrive than were sent per stream.
#[test]
fn bench_with_svc_publishers_forwards_the_layers_each_view_needs() {
    let small = bench(
        "svc",
        &[
            "--scenario",
            "meeting",
            "-n",
            "3",
            "--svc",
            "--view",
            "320x180",
        ],
    );
    assert_eq!(small["svc"], true);
    assert_eq!(small["sfu"]["streams_expected"], 12);
    assert_eq!(
        small["sfu"]["streams_flowing"],
        small["sfu"]["streams_expected"]
    );
    // Each packet sent goes to two subscribers: forwarding every layer would deliver twice
    // the packets sent. The lowest layer alone (and the audio) is well under the packets sent.
    let sent = small["sfu"]["sent_pps"].as_f64().expect("sent_pps");
    let forwarded = small["sfu"]["forwarded_pps"]
        .as_f64()
        .expect("forwarded_pps");
    assert!(
        forwarded < sent,
        "forwarded {forwarded:.0} pps of {sent:.0} sent: upper spatial layers were forwarded"
    );
}

/// A one-minute soak (the CI version of `--soak 30`): a meeting with joins, leaves, reconnects
/// and ICE restarts; the server's memory, descriptors and threads must not grow, and must come
/// back to idle once everyone has left. The verdict is the bench's own (`holds`), computed
/// from the samples it reports.
#[test]
fn a_one_minute_soak_with_churn_leaves_nothing_behind() {
    let json = std::env::temp_dir().join(format!("bench-soak-{}.json", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["bench", "--soak", "1", "-n", "6"])
        .args(["--sample-seconds", "2", "--churn-seconds", "8", "--json"])
        .arg(&json)
        .output()
        .expect("run switchboard bench --soak");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let text = std::fs::read_to_string(&json).expect("JSON report written");
    let _ = std::fs::remove_file(&json);
    let report: Value = serde_json::from_str(&text).expect("report is JSON");
    assert!(
        output.status.success() && report["holds"] == true,
        "the soak failed\n{stdout}\n{stderr}"
    );
    // The churn really happened: every slot came and went several times, and both kinds of
    // reconnection were exercised.
    let count = |k: &str| report[k].as_u64().unwrap_or(0);
    assert!(count("joins") >= 20, "{stdout}");
    assert_eq!(count("joins"), count("leaves"), "{stdout}");
    assert!(count("reconnects") >= 1, "{stdout}");
    assert!(count("ice_restarts_completed") >= 1, "{stdout}");
    assert!(count("peer_failures") <= 1, "{stdout}\n{stderr}");
    assert!(report["samples"].as_array().is_some_and(|s| s.len() >= 25));
    assert_eq!(report["after"]["participants"], 0);
    assert!(report["after"]["fds"].as_u64() <= report["idle"]["fds"].as_u64());
}
