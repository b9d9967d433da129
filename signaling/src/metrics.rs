//! `/metrics` in the Prometheus text format (version 0.0.4), written by `prometheus-client`.
//!
//! Two kinds of source: signaling's own counters ([`SignalingMetrics`], registered as they
//! are), and the SFU's snapshot, which the media workers publish every second without locks
//! or atomics on the media path; [`SfuCollector`] turns the latest snapshot into families at
//! each scrape. The binary registers more collectors (its TURN server's) with
//! [`Metrics::register_collector`].

use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use sfu::metrics::{ESTIMATE_BUCKETS_BPS, LAYER_CHANGE_BUCKETS};
use sfu::SfuHandle;

use crate::drain::Drain;
use crate::protocol::ErrorCode;

/// A label set of one label.
type Label = [(&'static str, &'static str); 1];

/// Signaling's counters, shared by every connection (not on the media path).
#[derive(Debug, Default)]
pub struct SignalingMetrics {
    errors: Family<Label, Counter>,
    pub connections_total: Counter,
    pub connections_open: Gauge,
    /// Messages refused by the per-connection rate limit.
    pub rate_limited_messages: Counter,
    /// Connections closed for sustained flooding.
    pub rate_limit_closes: Counter,
    /// Connections closed by the keepalive for silence.
    pub idle_closes: Counter,
    /// Room API requests refused for a missing, invalid or insufficient token.
    pub api_auth_failures: Counter,
}

impl SignalingMetrics {
    /// An `error` message with this code was sent.
    pub fn error(&self, code: ErrorCode) {
        self.errors.get_or_create(&[("code", code.as_str())]).inc();
    }

    pub fn errors(&self, code: ErrorCode) -> u64 {
        self.errors.get_or_create(&[("code", code.as_str())]).get()
    }
}

/// Every family `/metrics` shows.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    pub signaling: Arc<SignalingMetrics>,
}

impl Metrics {
    pub fn new(sfu: SfuHandle, drain: Drain) -> Self {
        let signaling = Arc::new(SignalingMetrics::default());
        // Every code shows from the start, at 0, so rates and alerts need no special case.
        for code in ErrorCode::ALL {
            let _ = signaling.errors.get_or_create(&[("code", code.as_str())]);
        }
        let mut registry = Registry::default();
        registry.register_collector(Box::new(SfuCollector {
            sfu,
            signaling: signaling.clone(),
            drain,
        }));
        registry.register(
            "switchboard_signaling_errors",
            "Error messages sent to clients, by error code",
            signaling.errors.clone(),
        );
        registry.register(
            "switchboard_websocket_connections",
            "WebSocket connections accepted",
            signaling.connections_total.clone(),
        );
        registry.register(
            "switchboard_websocket_connections",
            "WebSocket connections open",
            signaling.connections_open.clone(),
        );
        registry.register(
            "switchboard_rate_limit_closes",
            "Connections closed for sustained flooding",
            signaling.rate_limit_closes.clone(),
        );
        registry.register(
            "switchboard_room_api_auth_failures",
            "Room API requests refused (401 or 403)",
            signaling.api_auth_failures.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            signaling,
        }
    }

    /// More families, read at every scrape.
    pub fn register_collector(&self, collector: Box<dyn Collector>) {
        self.registry().register_collector(collector);
    }

    /// The whole `/metrics` page.
    pub fn render(&self) -> String {
        let mut text = String::with_capacity(8 * 1024);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry());
        text
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        // Only scrapes and start-up take the lock; a panic while holding it is a bug, but the
        // registry stays usable.
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The SFU's latest snapshot as families, the limit-hit family that joins the SFU's
/// refusals with signaling's, and whether the server is draining.
struct SfuCollector {
    sfu: SfuHandle,
    signaling: Arc<SignalingMetrics>,
    drain: Drain,
}

impl std::fmt::Debug for SfuCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SfuCollector").finish_non_exhaustive()
    }
}

/// Writes one family of one sample.
fn one(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: impl EncodeMetric,
) -> std::fmt::Result {
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

impl Collector for SfuCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let sfu = self.sfu.metrics();
        let c = &sfu.counters;
        let gauge = |v: usize| ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
        one(&mut e, "switchboard_rooms", "Rooms open", gauge(sfu.rooms))?;
        one(
            &mut e,
            "switchboard_participants",
            "Participants joined",
            gauge(sfu.participants),
        )?;
        one(
            &mut e,
            "switchboard_participants_connecting",
            "Participants joined whose media has not connected yet",
            gauge(sfu.pending_participants),
        )?;
        one(
            &mut e,
            "switchboard_tracks",
            "Published tracks",
            gauge(sfu.tracks),
        )?;
        one(
            &mut e,
            "switchboard_subscriptions",
            "Down-tracks: one per subscriber per track it receives",
            gauge(sfu.subscriptions),
        )?;
        for (name, help, value) in [
            ("switchboard_joins", "Participants that joined", c.joins),
            (
                "switchboard_removals",
                "Participants removed by the server (timeouts, closed media, operator)",
                c.removals,
            ),
            (
                "switchboard_forwarded_packets",
                "RTP packets forwarded to subscribers",
                c.forwarded_packets,
            ),
            (
                "switchboard_forwarded_bytes",
                "RTP payload bytes forwarded to subscribers",
                c.forwarded_bytes,
            ),
            (
                "switchboard_nacks_received",
                "RTCP NACKs received from subscribers",
                c.nacks_received,
            ),
            (
                "switchboard_plis_sent",
                "Keyframe requests sent to publishers",
                c.plis_sent,
            ),
            (
                "switchboard_layer_switches",
                "Simulcast layer switches of subscribers",
                c.layer_switches,
            ),
            (
                "switchboard_sequence_holes_filled",
                "Empty packets sent in place of late packets of layers a subscriber does not get",
                c.sequence_holes_filled,
            ),
            (
                "switchboard_relayed_packets_out",
                "RTP packets handed to other media workers' subscribers (once per packet per worker)",
                c.relayed_packets_out,
            ),
            (
                "switchboard_relayed_packets_in",
                "RTP packets received from other media workers for this worker's subscribers",
                c.relayed_packets_in,
            ),
            (
                "switchboard_relay_batches_dropped",
                "Relayed media batches dropped because the receiving media worker was behind",
                c.relay_batches_dropped,
            ),
            (
                "switchboard_publish_refused",
                "Offers refused because the participant may not publish",
                c.refused_publish,
            ),
        ] {
            one(&mut e, name, help, ConstCounter::new(value))?;
        }

        // Buckets are cumulative in the snapshot already, as the format wants them.
        let buckets: Vec<(f64, u64)> = ESTIMATE_BUCKETS_BPS
            .iter()
            .zip(sfu.estimate_buckets)
            .map(|(bound, count)| (*bound as f64, count))
            .collect();
        e.encode_descriptor(
            "switchboard_subscriber_estimate_bps",
            "Bandwidth estimates towards connected subscribers now (a snapshot: buckets go down too)",
            None,
            MetricType::Histogram,
        )?
        .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            sfu.estimate_sum_bps as f64,
            sfu.estimate_count,
            &buckets,
            None,
        )?;

        let buckets: Vec<(f64, u64)> = LAYER_CHANGE_BUCKETS
            .iter()
            .zip(sfu.layer_change_buckets)
            .map(|(bound, count)| (*bound as f64, count))
            .collect();
        e.encode_descriptor(
            "switchboard_subscription_layer_changes_per_minute",
            "Video subscriptions by how often their layer (or pause) changed in the last minute (a snapshot)",
            None,
            MetricType::Histogram,
        )?
        .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            sfu.layer_change_sum as f64,
            sfu.layer_change_count,
            &buckets,
            None,
        )?;

        let sig = &self.signaling;
        let mut family = e.encode_descriptor(
            "switchboard_limit_hits",
            "Requests refused by a limit, by limit",
            None,
            MetricType::Counter,
        )?;
        for (limit, value) in [
            ("rooms", c.refused_too_many_rooms),
            ("participants_per_room", c.refused_room_full),
            ("pending_joins", c.refused_pending_joins),
            ("tracks_per_participant", c.refused_too_many_tracks),
            ("message_rate", sig.rate_limited_messages.get()),
            ("message_size", sig.errors(ErrorCode::MessageTooLarge)),
            ("idle_timeout", sig.idle_closes.get()),
            (
                "connections_per_ip",
                sig.errors(ErrorCode::TooManyConnections),
            ),
            ("joins_per_ip", sig.errors(ErrorCode::TooManyJoins)),
        ] {
            let labels: Label = [("limit", limit)];
            ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
        }
        one(
            &mut e,
            "switchboard_draining",
            "1 while the server is draining (refusing joins, waiting to exit), else 0",
            ConstGauge::new(i64::from(self.drain.is_draining())),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_counted_under_their_wire_names() {
        let sig = SignalingMetrics::default();
        sig.error(ErrorCode::RateLimited);
        sig.error(ErrorCode::RateLimited);
        assert_eq!(sig.errors(ErrorCode::RateLimited), 2);
        assert_eq!(sig.errors(ErrorCode::BadJson), 0);
        let mut registry = Registry::default();
        registry.register(
            "switchboard_signaling_errors",
            "Error messages sent to clients, by error code",
            sig.errors.clone(),
        );
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).expect("encode");
        assert!(
            text.contains("switchboard_signaling_errors_total{code=\"rate_limited\"} 2\n"),
            "{text}"
        );
    }
}
