//! Bitrate measurement: bytes are counted per packet (one addition), and turned into a
//! smoothed rate on the allocation tick, so the hot path never divides or allocates.

use std::time::Instant;

#[derive(Debug, Clone, Default)]
pub struct RateMeter {
    bytes: u64,
    since: Option<Instant>,
    smoothed_bps: f64,
}

impl RateMeter {
    pub fn record(&mut self, bytes: usize) {
        self.bytes += bytes as u64;
    }

    /// Close the current window and fold it into the smoothed rate.
    pub fn tick(&mut self, now: Instant) {
        if let Some(since) = self.since {
            let secs = now.saturating_duration_since(since).as_secs_f64();
            if secs > 0.0 {
                let instant = self.bytes as f64 * 8.0 / secs;
                // Weighted towards the recent window: layers start and stop abruptly.
                self.smoothed_bps = 0.5 * instant + 0.5 * self.smoothed_bps;
            }
        }
        self.bytes = 0;
        self.since = Some(now);
    }

    pub fn bps(&self) -> u64 {
        self.smoothed_bps as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn converges_on_a_steady_rate() {
        let mut meter = RateMeter::default();
        let mut now = Instant::now();
        meter.tick(now);
        for _ in 0..10 {
            meter.record(62_500); // 500 kbit in half a second
            now += Duration::from_millis(500);
            meter.tick(now);
        }
        assert!(
            (990_000..=1_000_000).contains(&meter.bps()),
            "{}",
            meter.bps()
        );
        // Silence brings it down quickly.
        for _ in 0..6 {
            now += Duration::from_millis(500);
            meter.tick(now);
        }
        assert!(meter.bps() < 20_000, "{}", meter.bps());
    }
}
