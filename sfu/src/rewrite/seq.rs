//! Sequence numbers: several incoming sequence spaces, one after the other, mapped onto one
//! continuous outgoing space, with the packets a subscriber is not sent (an SVC layer it
//! does not get) taken out of it.

/// Dropped packets remembered so that a late packet (reordered, or repaired by
/// retransmission) from before them still gets the number it would have had: about half a
/// second of a 720p SVC stream whose top layer is dropped.
const SKIPS_REMEMBERED: usize = 128;

/// Incoming numbers remembered as seen (sent or skipped), behind the highest: a late packet
/// of a layer the subscriber does not get fills its number with an empty packet only if no
/// packet had that number (`skip`).
const SEEN_WINDOW: u64 = 256;

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
    /// Highest incoming number of the current source, forwarded or skipped.
    highest_in: Option<u64>,
    /// Incoming numbers of the latest skipped packets of the current source, a ring in
    /// increasing order starting at `skips_oldest`.
    skips: [u64; SKIPS_REMEMBERED],
    skips_len: usize,
    skips_oldest: usize,
    /// Bit `seq % SEEN_WINDOW`: incoming `seq` was sent or skipped, for the numbers within
    /// `SEEN_WINDOW` of `highest_in`.
    seen: [u64; (SEEN_WINDOW / 64) as usize],
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
            highest_in: None,
            skips: [0; SKIPS_REMEMBERED],
            skips_len: 0,
            skips_oldest: 0,
            seen: [0; (SEEN_WINDOW / 64) as usize],
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
        self.highest_in = None;
        self.skips_len = 0;
        self.skips_oldest = 0;
        self.seen = [0; (SEEN_WINDOW / 64) as usize];
    }

    /// The packet with incoming number `seq` is not sent: the packets after it move down one
    /// number, so the subscriber sees no gap (a gap would be NACKed, and a frame across it
    /// never completed).
    ///
    /// A late packet (reordered, or the publisher's repair of a loss) cannot move the numbers
    /// already sent after it: its number was left free for it, a hole the subscriber NACKs
    /// and nobody can repair. The number is returned then, for the caller to fill with an
    /// empty packet (receivers take an RTP packet without payload as padding, which closes
    /// the gap); `None` when the number was used already or is too old to tell.
    pub fn skip(&mut self, seq: u64) -> Option<u64> {
        if seq < self.source_start {
            return None;
        }
        if let Some(highest) = self.highest_in.filter(|&h| seq <= h) {
            if highest - seq >= SEEN_WINDOW || self.was_seen(seq) {
                return None;
            }
            return self.rewrite(seq);
        }
        self.advance(seq);
        self.offset = self.offset.wrapping_sub(1);
        if self.skips_len < SKIPS_REMEMBERED {
            self.skips[(self.skips_oldest + self.skips_len) % SKIPS_REMEMBERED] = seq;
            self.skips_len += 1;
        } else {
            self.skips[self.skips_oldest] = seq;
            self.skips_oldest = (self.skips_oldest + 1) % SKIPS_REMEMBERED;
        }
        None
    }

    /// `seq` becomes the highest incoming number, and the only one seen of those past the
    /// previous highest.
    fn advance(&mut self, seq: u64) {
        let from = self.highest_in.map_or(seq, |h| h + 1);
        if seq - from.min(seq) >= SEEN_WINDOW {
            self.seen = [0; (SEEN_WINDOW / 64) as usize];
        } else {
            for s in from..seq {
                self.set_seen(s, false);
            }
        }
        self.highest_in = Some(seq);
        self.set_seen(seq, true);
    }

    fn set_seen(&mut self, seq: u64, seen: bool) {
        let bit = seq % SEEN_WINDOW;
        let word = &mut self.seen[(bit / 64) as usize];
        if seen {
            *word |= 1 << (bit % 64);
        } else {
            *word &= !(1 << (bit % 64));
        }
    }

    fn was_seen(&self, seq: u64) -> bool {
        let bit = seq % SEEN_WINDOW;
        self.seen[(bit / 64) as usize] & (1 << (bit % 64)) != 0
    }

    /// The outgoing number for incoming `seq` of the current source, or `None` when the packet
    /// predates the current source (a late packet of an earlier source or of a previous layer).
    pub fn rewrite(&mut self, seq: u64) -> Option<u64> {
        if seq < self.source_start {
            return None;
        }
        // A packet from before the latest skips had the offset from before them (and a
        // repeat of a skipped packet has no number of its own).
        let mut skipped_after = 0u64;
        if self.highest_in.is_some_and(|h| seq <= h) && self.skips_len > 0 {
            let oldest = self.skips[self.skips_oldest];
            if seq < oldest && self.skips_len == SKIPS_REMEMBERED {
                // Older than what is remembered: its number cannot be known any more.
                return None;
            }
            for i in 0..self.skips_len {
                let skipped = self.skips[(self.skips_oldest + i) % SKIPS_REMEMBERED];
                if skipped == seq {
                    // Skipped once already; the number after it went to the next packet.
                    return None;
                }
                if skipped > seq {
                    skipped_after += 1;
                }
            }
        }
        if self.highest_in.is_none_or(|h| seq > h) {
            self.advance(seq);
        } else {
            self.set_seen(seq, true);
        }
        let out = seq.wrapping_add(self.offset).wrapping_add(skipped_after);
        if self.highest_out.is_none_or(|h| out > h) {
            self.highest_out = Some(out);
        }
        Some(out)
    }

    /// Whether incoming `seq` is newer than every packet of the current source so far.
    pub fn is_newest(&self, seq: u64) -> bool {
        self.highest_in.is_none_or(|h| seq > h)
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
    fn skipped_packets_leave_no_gap_and_late_packets_keep_their_numbers() {
        let mut rw = SeqRewriter::new(10);
        rw.switch_source(500);
        assert_eq!(rw.rewrite(500), Some(10));
        rw.skip(501);
        rw.skip(502);
        assert_eq!(rw.rewrite(503), Some(11), "no gap over the skipped ones");
        // 505 arrives before 504 (lost or reordered), then 506 is skipped.
        assert_eq!(rw.rewrite(505), Some(13));
        rw.skip(506);
        assert_eq!(rw.rewrite(507), Some(14));
        // The late 504 gets the number left free for it, before the skip of 506.
        assert_eq!(rw.rewrite(504), Some(12));
        // A duplicate of a skipped packet is not sent: its number is taken.
        assert_eq!(rw.rewrite(506), None);
        // Skipping a late packet whose number was used changes nothing.
        assert_eq!(rw.skip(504), None);
        assert_eq!(rw.rewrite(508), Some(15));
        // A new source forgets the skips of the old one.
        rw.switch_source(100);
        assert_eq!(rw.rewrite(100), Some(16));
        assert_eq!(rw.highest_out(), Some(16));
    }

    #[test]
    fn a_late_packet_of_a_dropped_layer_gets_its_free_number_back_to_fill() {
        let mut rw = SeqRewriter::new(10);
        rw.switch_source(500);
        assert_eq!(rw.rewrite(500), Some(10));
        // 501 is lost on the way in; 502 is skipped; 503 is sent after the hole left for 501.
        assert_eq!(rw.skip(502), None);
        assert_eq!(rw.rewrite(503), Some(12));
        // The repair of 501 turns out to be of a dropped layer: its number is to be filled,
        // once.
        assert_eq!(rw.skip(501), Some(11));
        assert_eq!(rw.skip(501), None, "filled already");
        assert_eq!(rw.skip(502), None, "skipped in order: no number of its own");
        assert_eq!(rw.skip(503), None, "sent");
        // Far behind, it is not known any more whether a number was used: nothing is filled.
        for seq in (504..1000).filter(|&s| s != 700) {
            assert!(rw.rewrite(seq).is_some());
        }
        assert_eq!(rw.skip(700), None);
    }

    #[test]
    fn a_late_packet_older_than_the_remembered_skips_is_refused() {
        let mut rw = SeqRewriter::new(0);
        rw.switch_source(0);
        assert_eq!(rw.rewrite(0), Some(0));
        for seq in 2..2 + SKIPS_REMEMBERED as u64 + 1 {
            rw.skip(seq);
        }
        assert_eq!(
            rw.rewrite(1),
            None,
            "how many skips followed it is forgotten"
        );
        let next = 3 + SKIPS_REMEMBERED as u64;
        assert_eq!(rw.rewrite(next), Some(next - SKIPS_REMEMBERED as u64 - 1));
    }

    #[test]
    fn switch_before_any_output_uses_initial_number() {
        let mut rw = SeqRewriter::new(7);
        rw.switch_source(1);
        rw.switch_source(50);
        assert_eq!(rw.rewrite(50), Some(7));
    }
}
