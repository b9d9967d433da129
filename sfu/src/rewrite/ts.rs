//! RTP timestamps: one continuous outgoing timeline across source changes.

use std::time::Instant;

/// Rewrites 32-bit RTP timestamps.
///
/// Every source (a publisher's SSRC, a simulcast layer) has its own random timestamp base.
/// Forwarding a new source's timestamps unchanged makes the subscriber's timeline jump by hours
/// and its jitter buffer stall. At each switch the new source is rebased so that its first
/// timestamp follows the last one sent by the wall-clock time that passed in between.
#[derive(Debug, Clone)]
pub struct TsRewriter {
    clock_rate: u32,
    offset: u32,
    /// Newest timestamp sent and when; `None` before the first packet.
    newest_out: Option<(u32, Instant)>,
    initial_out: u32,
}

impl TsRewriter {
    pub fn new(clock_rate: u32, initial_out: u32) -> Self {
        Self {
            clock_rate,
            offset: 0,
            newest_out: None,
            initial_out,
        }
    }

    /// Begin a new source whose first packet has timestamp `first_in`, arriving at `now`.
    pub fn switch_source(&mut self, first_in: u32, now: Instant) {
        let first_out = match self.newest_out {
            Some((ts, at)) => {
                let elapsed = now.saturating_duration_since(at);
                let ticks = (elapsed.as_micros() * u128::from(self.clock_rate) / 1_000_000) as u32;
                // At least one tick, so two frames never share a timestamp across the switch.
                ts.wrapping_add(ticks.max(1))
            }
            None => self.initial_out,
        };
        self.offset = first_out.wrapping_sub(first_in);
    }

    /// The outgoing timestamp for incoming `ts` of the current source, sent at `now`.
    pub fn rewrite(&mut self, ts: u32, now: Instant) -> u32 {
        let out = ts.wrapping_add(self.offset);
        let newer = match self.newest_out {
            // Serial-number comparison (RFC 1982) so a wrap at 2^32 still counts as newer.
            Some((newest, _)) => out.wrapping_sub(newest) < 0x8000_0000,
            None => true,
        };
        if newer {
            self.newest_out = Some((out, now));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn first_source_starts_at_initial_value() {
        let now = Instant::now();
        let mut rw = TsRewriter::new(90_000, 5000);
        rw.switch_source(3_000_000_000, now);
        assert_eq!(rw.rewrite(3_000_000_000, now), 5000);
        assert_eq!(rw.rewrite(3_000_003_000, now), 8000);
        // Reordered older frame keeps its relative position.
        assert_eq!(rw.rewrite(2_999_997_000, now), 2000);
    }

    #[test]
    fn switch_advances_by_elapsed_wall_clock() {
        let t0 = Instant::now();
        let mut rw = TsRewriter::new(90_000, 0);
        rw.switch_source(100, t0);
        assert_eq!(rw.rewrite(100, t0), 0);
        assert_eq!(rw.rewrite(3100, t0 + Duration::from_millis(33)), 3000);
        // A new source with an unrelated base, 100 ms after the last packet.
        let t1 = t0 + Duration::from_millis(133);
        rw.switch_source(4_000_000_000, t1);
        assert_eq!(rw.rewrite(4_000_000_000, t1), 3000 + 9000);
        assert_eq!(rw.rewrite(4_000_003_000, t1), 3000 + 9000 + 3000);
    }

    #[test]
    fn switch_at_the_same_instant_still_moves_forward() {
        let t0 = Instant::now();
        let mut rw = TsRewriter::new(48_000, u32::MAX);
        rw.switch_source(10, t0);
        assert_eq!(rw.rewrite(10, t0), u32::MAX);
        rw.switch_source(77, t0);
        assert_eq!(
            rw.rewrite(77, t0),
            0,
            "wraps past 2^32 and advances by one tick"
        );
    }
}
