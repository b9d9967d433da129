//! Sequence numbers: several incoming sequence spaces, one after the other, mapped onto one
//! continuous outgoing space.

/// Rewrites extended (64-bit, rollover-free) sequence numbers.
///
/// Within one source the mapping is a fixed offset, so reordering and loss pass through
/// unchanged (the subscriber NACKs real gaps). When the source changes, the new source's first
/// packet is placed right after the highest number sent so far; packets from before that
/// point are refused, because their numbers now belong to the old source.
#[derive(Debug, Clone)]
pub struct SeqRewriter {
    /// `out = in + offset` (wrapping), valid for the current source.
    offset: u64,
    /// First incoming number of the current source; anything older is refused.
    source_start: u64,
    /// Highest outgoing number handed out; `None` before the first packet.
    highest_out: Option<u64>,
    /// Outgoing number for the very first packet.
    initial_out: u64,
}

impl SeqRewriter {
    /// `initial_out` is the first outgoing number. Keep it below 65,536 so the receiver's
    /// rollover counter starts at zero, as SRTP expects without signalling.
    pub fn new(initial_out: u16) -> Self {
        Self {
            offset: 0,
            source_start: 0,
            highest_out: None,
            initial_out: u64::from(initial_out),
        }
    }

    /// Begin a new source whose first packet has incoming number `first_in`.
    pub fn switch_source(&mut self, first_in: u64) {
        let first_out = match self.highest_out {
            Some(h) => h + 1,
            None => self.initial_out,
        };
        self.offset = first_out.wrapping_sub(first_in);
        self.source_start = first_in;
    }

    /// The outgoing number for incoming `seq` of the current source, or `None` when the packet
    /// predates the current source (a late packet of an earlier source or of a previous layer).
    pub fn rewrite(&mut self, seq: u64) -> Option<u64> {
        if seq < self.source_start {
            return None;
        }
        let out = seq.wrapping_add(self.offset);
        if self.highest_out.is_none_or(|h| out > h) {
            self.highest_out = Some(out);
        }
        Some(out)
    }

    /// Highest outgoing sequence number so far.
    pub fn highest_out(&self) -> Option<u64> {
        self.highest_out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(rw: &mut SeqRewriter, input: &[u64]) -> Vec<Option<u64>> {
        input.iter().map(|s| rw.rewrite(*s)).collect()
    }

    #[test]
    fn first_source_starts_at_initial_number() {
        let mut rw = SeqRewriter::new(1000);
        rw.switch_source(70_000);
        assert_eq!(
            run(&mut rw, &[70_000, 70_001, 70_002]),
            vec![Some(1000), Some(1001), Some(1002)]
        );
    }

    #[test]
    fn loss_and_reordering_pass_through() {
        let mut rw = SeqRewriter::new(10);
        rw.switch_source(500);
        assert_eq!(
            run(&mut rw, &[500, 502, 501, 505, 503]),
            vec![Some(10), Some(12), Some(11), Some(15), Some(13)]
        );
        assert_eq!(rw.highest_out(), Some(15));
    }

    #[test]
    fn switch_continues_after_highest_and_refuses_stale_packets() {
        let mut rw = SeqRewriter::new(65_530);
        rw.switch_source(100);
        assert_eq!(
            run(&mut rw, &[100, 101, 102, 103, 104, 105, 106]).last(),
            Some(&Some(65_536))
        );
        // New source with an unrelated, lower sequence space.
        rw.switch_source(40);
        assert_eq!(run(&mut rw, &[40, 41]), vec![Some(65_537), Some(65_538)]);
        // A late packet of the new source from before its switch point is refused.
        assert_eq!(rw.rewrite(39), None);
        // Switching to a source with a much higher space works the same way.
        rw.switch_source(9_000_000);
        assert_eq!(rw.rewrite(9_000_000), Some(65_539));
    }

    #[test]
    fn switch_before_any_output_uses_initial_number() {
        let mut rw = SeqRewriter::new(7);
        rw.switch_source(1);
        rw.switch_source(50);
        assert_eq!(rw.rewrite(50), Some(7));
    }
}
