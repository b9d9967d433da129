//! `/metrics` in the Prometheus text exposition format (version 0.0.4): the SFU's snapshot
//! (published by its media workers every second) and signaling's own counters.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use sfu::metrics::ESTIMATE_BUCKETS_BPS;
use sfu::MetricsSnapshot;

use crate::protocol::ErrorCode;

/// Signaling's counters, shared by every connection (not on the media path).
#[derive(Debug, Default)]
pub struct SignalingMetrics {
    errors: [AtomicU64; ErrorCode::ALL.len()],
    pub connections_total: AtomicU64,
    pub connections_open: AtomicI64,
    /// Messages refused by the per-connection rate limit.
    pub rate_limited_messages: AtomicU64,
    /// Connections closed for sustained flooding.
    pub rate_limit_closes: AtomicU64,
    /// Connections closed by the keepalive for silence.
    pub idle_closes: AtomicU64,
    /// Room API requests refused for a missing, invalid or insufficient token.
    pub api_auth_failures: AtomicU64,
}

impl SignalingMetrics {
    /// An `error` message with this code was sent.
    pub fn error(&self, code: ErrorCode) {
        if let Some(c) = self.errors.get(code.index()) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn errors(&self, code: ErrorCode) -> u64 {
        self.errors
            .get(code.index())
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

/// A metric family being written.
struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) {
        if labels.is_empty() {
            let _ = writeln!(self.0, "{name} {value}");
        } else {
            let _ = writeln!(self.0, "{name}{{{labels}}} {value}");
        }
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, "", value);
    }
}

/// The whole `/metrics` page.
pub fn render(sfu: &MetricsSnapshot, sig: &SignalingMetrics, draining: bool) -> String {
    let mut o = Out(String::with_capacity(8 * 1024));
    let c = &sfu.counters;
    o.one("switchboard_rooms", "gauge", "Rooms open.", sfu.rooms);
    o.one(
        "switchboard_participants",
        "gauge",
        "Participants joined.",
        sfu.participants,
    );
    o.one(
        "switchboard_participants_connecting",
        "gauge",
        "Participants joined whose media has not connected yet.",
        sfu.pending_participants,
    );
    o.one(
        "switchboard_tracks",
        "gauge",
        "Published tracks.",
        sfu.tracks,
    );
    o.one(
        "switchboard_subscriptions",
        "gauge",
        "Down-tracks: one per subscriber per track it receives.",
        sfu.subscriptions,
    );
    o.one(
        "switchboard_joins_total",
        "counter",
        "Participants that joined.",
        c.joins,
    );
    o.one(
        "switchboard_removals_total",
        "counter",
        "Participants removed by the server (timeouts, closed media, operator).",
        c.removals,
    );
    o.one(
        "switchboard_forwarded_packets_total",
        "counter",
        "RTP packets forwarded to subscribers.",
        c.forwarded_packets,
    );
    o.one(
        "switchboard_forwarded_bytes_total",
        "counter",
        "RTP payload bytes forwarded to subscribers.",
        c.forwarded_bytes,
    );
    o.one(
        "switchboard_nacks_received_total",
        "counter",
        "RTCP NACKs received from subscribers.",
        c.nacks_received,
    );
    o.one(
        "switchboard_plis_sent_total",
        "counter",
        "Keyframe requests sent to publishers.",
        c.plis_sent,
    );
    o.one(
        "switchboard_layer_switches_total",
        "counter",
        "Simulcast layer switches of subscribers.",
        c.layer_switches,
    );

    let name = "switchboard_subscriber_estimate_bps";
    o.family(
        name,
        "histogram",
        "Bandwidth estimates towards connected subscribers now (a snapshot: buckets go down too).",
    );
    for (bound, count) in ESTIMATE_BUCKETS_BPS.iter().zip(sfu.estimate_buckets) {
        o.sample(&format!("{name}_bucket"), &format!("le=\"{bound}\""), count);
    }
    o.sample(&format!("{name}_bucket"), "le=\"+Inf\"", sfu.estimate_count);
    o.sample(&format!("{name}_sum"), "", sfu.estimate_sum_bps);
    o.sample(&format!("{name}_count"), "", sfu.estimate_count);

    let name = "switchboard_limit_hits_total";
    o.family(name, "counter", "Requests refused by a limit, by limit.");
    for (limit, value) in [
        ("rooms", c.refused_too_many_rooms),
        ("participants_per_room", c.refused_room_full),
        ("pending_joins", c.refused_pending_joins),
        ("tracks_per_participant", c.refused_too_many_tracks),
        (
            "message_rate",
            sig.rate_limited_messages.load(Ordering::Relaxed),
        ),
        ("message_size", sig.errors(ErrorCode::MessageTooLarge)),
        ("idle_timeout", sig.idle_closes.load(Ordering::Relaxed)),
        (
            "connections_per_ip",
            sig.errors(ErrorCode::TooManyConnections),
        ),
        ("joins_per_ip", sig.errors(ErrorCode::TooManyJoins)),
    ] {
        o.sample(name, &format!("limit=\"{limit}\""), value);
    }
    o.one(
        "switchboard_publish_refused_total",
        "counter",
        "Offers refused because the participant may not publish.",
        c.refused_publish,
    );

    let name = "switchboard_signaling_errors_total";
    o.family(
        name,
        "counter",
        "Error messages sent to clients, by error code.",
    );
    for code in ErrorCode::ALL {
        o.sample(
            name,
            &format!("code=\"{}\"", code.as_str()),
            sig.errors(code),
        );
    }
    o.one(
        "switchboard_websocket_connections_total",
        "counter",
        "WebSocket connections accepted.",
        sig.connections_total.load(Ordering::Relaxed),
    );
    o.one(
        "switchboard_websocket_connections",
        "gauge",
        "WebSocket connections open.",
        sig.connections_open.load(Ordering::Relaxed),
    );
    o.one(
        "switchboard_rate_limit_closes_total",
        "counter",
        "Connections closed for sustained flooding.",
        sig.rate_limit_closes.load(Ordering::Relaxed),
    );
    o.one(
        "switchboard_room_api_auth_failures_total",
        "counter",
        "Room API requests refused (401 or 403).",
        sig.api_auth_failures.load(Ordering::Relaxed),
    );
    o.one(
        "switchboard_draining",
        "gauge",
        "1 while the server is draining (refusing joins, waiting to exit), else 0.",
        u8::from(draining),
    );
    o.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_line_is_name_labels_value() {
        let sig = SignalingMetrics::default();
        sig.error(ErrorCode::RateLimited);
        let mut snapshot = MetricsSnapshot::default();
        snapshot.counters.forwarded_packets = 7;
        let text = render(&snapshot, &sig, false);
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').expect("name and value");
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
        assert!(text.contains("switchboard_forwarded_packets_total 7\n"));
        assert!(text.contains("switchboard_signaling_errors_total{code=\"rate_limited\"} 1\n"));
    }
}
