//! What the receiving side measures: packets and bytes, loss from sequence gaps, RFC 3550
//! interarrival jitter, and the forwarding latency histogram (each payload carries its send
//! time). Shared by the SFU run and the floor run, so both are measured the same way.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Histogram bucket width. 10 us resolves loopback latencies (tens of us to a few ms).
const BUCKET_US: u64 = 10;
/// Latencies up to 2 s get their own bucket; later ones share the last.
const BUCKETS: usize = 200_000;

/// Microseconds since the Unix epoch: the clock every sender stamps and every receiver
/// reads. Sender and receiver are the same machine, so no clock sync is needed.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Latency histogram with fixed 10 us buckets.
pub struct Histogram {
    counts: Vec<u32>,
    total: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
        }
    }
}

impl Histogram {
    pub fn record(&mut self, micros: u64) {
        let i = ((micros / BUCKET_US) as usize).min(BUCKETS - 1);
        self.counts[i] += 1;
        self.total += 1;
    }

    /// The `q` quantile (0..1) in milliseconds, or `None` when nothing was recorded.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let target = ((self.total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += u64::from(c);
            if seen >= target {
                // Report the bucket's upper edge: never flatter the figure.
                return Some(((i as u64 + 1) * BUCKET_US) as f64 / 1000.0);
            }
        }
        Some((BUCKETS as u64 * BUCKET_US) as f64 / 1000.0)
    }
}

/// Counters for the measurement window; everything before the window opens is warm-up.
#[derive(Default)]
pub struct Counters {
    /// Bumped when the window opens: streams restart their sequence tracking then.
    pub generation: u32,
    pub recording: bool,
    pub rtp_packets: u64,
    /// UDP payload bytes received by subscribers (media plus RTCP): what the server sent.
    pub udp_bytes: u64,
    /// Packets that sequence numbers say should have arrived.
    pub expected: u64,
    pub latency: Histogram,
    /// Sum and count of per-stream jitter estimates, sampled when the window closes.
    pub jitter_sum_ms: f64,
    pub jitter_streams: u64,
    /// RTP packets handed to the network by publishers during the window.
    pub sent_packets: u64,
    pub sent_bytes: u64,
    /// Packets that arrived again (resends used as bandwidth probes, or duplicates).
    pub duplicates: u64,
}

pub type SharedCounters = Rc<RefCell<Counters>>;

const SEEN_WORDS: usize = 8;
const SEEN_WINDOW: u64 = 64 * SEEN_WORDS as u64;

/// One received stream (one SSRC at one subscriber): sequence tracking and jitter.
#[derive(Default)]
pub struct StreamStat {
    /// Any packet ever arrived, window or not: the stream is flowing.
    ever: bool,
    generation: u32,
    started: bool,
    max_seq: u64,
    /// Which of the last `SEEN_WINDOW` sequence numbers arrived, by `seq % SEEN_WINDOW`: a
    /// server's bandwidth probes resend packets already delivered (str0m pads with "spurious"
    /// RTX resends), and those must not count as forwarded media or as latency.
    seen_bits: [u64; SEEN_WORDS],
    jitter_us: f64,
    last_transit: Option<i64>,
}

impl StreamStat {
    /// A packet arrived. `seq` is the extended sequence number, `sent_us` the stamp in its
    /// payload (if it had one).
    /// An empty packet in a hole: that number carried nothing, so it is no longer expected.
    pub fn on_filler(&mut self, c: &mut Counters, seq: u64) {
        if !c.recording || self.generation != c.generation || !self.started {
            return;
        }
        if seq <= self.max_seq && self.max_seq - seq < SEEN_WINDOW && !self.is_seen(seq) {
            self.set_seen(seq, true);
            c.expected = c.expected.saturating_sub(1);
        }
    }

    pub fn on_packet(&mut self, c: &mut Counters, seq: u64, sent_us: Option<u64>, now_us: u64) {
        self.ever = true;
        if !c.recording {
            return;
        }
        if self.generation != c.generation || !self.started {
            *self = StreamStat {
                ever: true,
                generation: c.generation,
                started: true,
                max_seq: seq,
                ..Default::default()
            };
            c.expected += 1;
        } else if seq > self.max_seq {
            c.expected += seq - self.max_seq;
            // Forget the bits of the sequence numbers the window slides past.
            if seq - self.max_seq >= SEEN_WINDOW {
                self.seen_bits = [0; SEEN_WORDS];
            } else {
                for s in self.max_seq + 1..=seq {
                    self.set_seen(s, false);
                }
            }
            self.max_seq = seq;
        } else if self.max_seq - seq >= SEEN_WINDOW || self.is_seen(seq) {
            c.duplicates += 1;
            return;
        }
        self.set_seen(seq, true);
        c.rtp_packets += 1;
        if let Some(sent) = sent_us {
            c.latency.record(now_us.saturating_sub(sent));
            // RFC 3550 section 6.4.1, with wall-clock send times instead of RTP timestamps.
            let transit = now_us as i64 - sent as i64;
            if let Some(last) = self.last_transit {
                let d = (transit - last).unsigned_abs() as f64;
                self.jitter_us += (d - self.jitter_us) / 16.0;
            }
            self.last_transit = Some(transit);
        }
    }

    fn is_seen(&self, seq: u64) -> bool {
        let i = seq % SEEN_WINDOW;
        self.seen_bits[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    fn set_seen(&mut self, seq: u64, on: bool) {
        let i = seq % SEEN_WINDOW;
        let word = &mut self.seen_bits[(i / 64) as usize];
        if on {
            *word |= 1 << (i % 64);
        } else {
            *word &= !(1 << (i % 64));
        }
    }

    pub fn seen(&self) -> bool {
        self.ever
    }

    pub fn jitter_ms(&self, generation: u32) -> Option<f64> {
        (self.started && self.generation == generation).then_some(self.jitter_us / 1000.0)
    }
}

/// Received streams of one subscriber, by SSRC.
#[derive(Default)]
pub struct Streams(HashMap<u32, StreamStat>);

impl Streams {
    pub fn get(&mut self, ssrc: u32) -> &mut StreamStat {
        self.0.entry(ssrc).or_default()
    }

    /// Add this subscriber's jitter estimates to the totals.
    pub fn report_jitter(&self, c: &mut Counters) {
        let generation = c.generation;
        for s in self.0.values() {
            if let Some(j) = s.jitter_ms(generation) {
                c.jitter_sum_ms += j;
                c.jitter_streams += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_count_as_loss_and_reordering_does_not() {
        let mut c = Counters {
            recording: true,
            generation: 1,
            ..Default::default()
        };
        let mut s = StreamStat::default();
        for seq in [10, 11, 13, 12, 14] {
            s.on_packet(&mut c, seq, Some(100), 150);
        }
        assert_eq!(c.expected, 5);
        assert_eq!(c.rtp_packets, 5);
        s.on_packet(&mut c, 20, None, 0);
        assert_eq!(c.expected, 11);
    }

    #[test]
    fn resent_packets_are_duplicates_not_deliveries() {
        let mut c = Counters {
            recording: true,
            generation: 1,
            ..Default::default()
        };
        let mut s = StreamStat::default();
        for seq in [100, 101, 102, 101, 100, 103, 99] {
            s.on_packet(&mut c, seq, Some(1), 2);
        }
        assert_eq!(c.rtp_packets, 5, "100..=103 and the late 99");
        assert_eq!(c.duplicates, 2);
        s.on_packet(&mut c, 2000, Some(1), 2);
        s.on_packet(&mut c, 1000, Some(1), 2);
        assert_eq!(c.duplicates, 3, "too old to tell: not counted as delivered");
        s.on_packet(&mut c, 1999, Some(1), 2);
        assert_eq!(c.rtp_packets, 7);
    }

    #[test]
    fn quantiles_report_bucket_upper_edges() {
        let mut h = Histogram::default();
        for us in 0..100 {
            h.record(us * 10);
        }
        assert_eq!(h.quantile_ms(0.5), Some(0.5));
        assert_eq!(h.quantile_ms(0.99), Some(0.99));
        assert_eq!(Histogram::default().quantile_ms(0.5), None);
    }
}
