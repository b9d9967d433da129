//! Which pictures of one VP8 stream with temporal layers (RFC 7741: the TID and Y fields)
//! one subscriber gets: those of the temporal layers up to its current one, which moves
//! toward the allocator's target only where the decoder can follow. A temporal step halves
//! or doubles the frame rate without a keyframe, so the allocator can take it before a
//! spatial one (`allocator.rs`).
//!
//! - Down: at the next picture. A frame is only referenced by frames of its own or higher
//!   temporal layers, so the ones kept still decode.
//! - Up: at a picture of a higher layer that carries the Y (layer sync) bit, which references
//!   only the base layer, or at a keyframe. Another picture of that layer may reference
//!   earlier ones of it that the subscriber never got.
//!
//! VP9's temporal layers are selected by `selector.rs` with the rest of its layer indices.

/// The temporal layer a subscriber takes; `None` is every one.
pub type TemporalLevel = Option<u8>;

#[derive(Debug, Clone, Default)]
pub struct TemporalFilter {
    /// The layers forwarded now: `None` every one.
    level: TemporalLevel,
    /// The picture the level was last decided at.
    picture: Option<u16>,
}

impl TemporalFilter {
    /// A new start (a keyframe of a new source): the target's layers from here.
    /// The temporal layers passed now (`None`: all of them).
    pub fn level(&self) -> TemporalLevel {
        self.level
    }

    pub fn restart(&mut self, target: TemporalLevel) {
        self.level = target;
        self.picture = None;
    }

    #[cfg(test)]
    fn current(&self) -> TemporalLevel {
        self.level
    }

    /// Whether to forward a packet of temporal layer `temporal` (`None`: the stream does not
    /// mark layers) of `picture` (the forwarder marks temporal layers only with picture IDs). `in_order`: newer than every packet before it; a late one
    /// never moves the level, so a retransmitted packet cannot start a layer mid-chain.
    pub fn admit(
        &mut self,
        target: TemporalLevel,
        temporal: Option<u8>,
        picture: Option<u16>,
        layer_sync: bool,
        keyframe: bool,
        in_order: bool,
    ) -> bool {
        let Some(tid) = temporal else {
            return true;
        };
        if in_order && picture != self.picture {
            self.picture = picture;
            self.level = next_level(self.level, target, tid, layer_sync, keyframe);
        }
        self.level.is_none_or(|level| tid <= level)
    }
}

/// The level from the picture whose first packet has `tid` and the Y bit `layer_sync`.
fn next_level(
    level: TemporalLevel,
    target: TemporalLevel,
    tid: u8,
    layer_sync: bool,
    keyframe: bool,
) -> TemporalLevel {
    // `None` (every layer) ranks above any index.
    let rank = |l: TemporalLevel| l.map_or(u16::MAX, u16::from);
    if keyframe || rank(target) <= rank(level) {
        return target;
    }
    if layer_sync && rank(Some(tid)) > rank(level) && rank(Some(tid)) <= rank(target) {
        // Y speaks for this frame's own layer: the ones between may need frames the
        // subscriber never got.
        return Some(tid);
    }
    level
}

#[cfg(test)]
mod tests {
    use super::*;

    /// L1T3's pattern, pictures 0..: TID 0, 2, 1, 2, 0, 2, 1, 2, ...
    fn tid_of(picture: u16) -> u8 {
        [0, 2, 1, 2][usize::from(picture % 4)]
    }

    /// Feed `pictures` (two packets each) and return which pictures were forwarded.
    /// `sync`: pictures with the Y bit.
    fn run(
        filter: &mut TemporalFilter,
        target: TemporalLevel,
        pictures: std::ops::Range<u16>,
        sync: &[u16],
    ) -> Vec<u16> {
        let mut forwarded = Vec::new();
        for pic in pictures {
            let tid = tid_of(pic);
            let first = filter.admit(
                target,
                Some(tid),
                Some(pic),
                sync.contains(&pic),
                false,
                true,
            );
            let second = filter.admit(target, Some(tid), Some(pic), false, false, true);
            assert_eq!(
                first, second,
                "both packets of picture {pic} go the same way"
            );
            if first {
                forwarded.push(pic);
            }
        }
        forwarded
    }

    #[test]
    fn a_lower_target_takes_effect_at_the_next_picture() {
        let mut f = TemporalFilter::default();
        f.restart(None);
        assert_eq!(run(&mut f, None, 0..4, &[]), vec![0, 1, 2, 3]);
        // Half the frame rate: TID 0 and 1.
        assert_eq!(run(&mut f, Some(1), 4..8, &[]), vec![4, 6]);
        // A quarter: the base layer alone.
        assert_eq!(run(&mut f, Some(0), 8..16, &[]), vec![8, 12]);
        assert_eq!(f.current(), Some(0));
    }

    #[test]
    fn a_higher_target_waits_for_a_layer_sync_picture_of_that_layer() {
        let mut f = TemporalFilter::default();
        f.restart(Some(0));
        // Target every layer; no Y bit until picture 6 (TID 1), then picture 9 (TID 2).
        assert_eq!(run(&mut f, None, 0..6, &[]), vec![0, 4]);
        assert_eq!(f.current(), Some(0));
        assert_eq!(run(&mut f, None, 6..9, &[6]), vec![6, 8]);
        assert_eq!(f.current(), Some(1));
        // A Y bit on a TID 2 picture: every layer of this L1T3 stream from there.
        assert_eq!(run(&mut f, None, 9..12, &[9]), vec![9, 10, 11]);
        assert_eq!(f.current(), Some(2));
    }

    #[test]
    fn a_sync_picture_above_the_target_does_not_raise_past_it() {
        let mut f = TemporalFilter::default();
        f.restart(Some(0));
        // Target TID 1; the Y bit on TID 2 picture 1 must not take layer 2.
        assert_eq!(run(&mut f, Some(1), 0..4, &[1]), vec![0]);
        assert_eq!(run(&mut f, Some(1), 4..8, &[6]), vec![4, 6]);
        assert_eq!(f.current(), Some(1));
    }

    #[test]
    fn a_keyframe_goes_straight_to_the_target() {
        let mut f = TemporalFilter::default();
        f.restart(Some(0));
        assert!(f.admit(None, Some(0), Some(20), false, true, true));
        assert_eq!(f.current(), None);
        assert!(f.admit(None, Some(2), Some(21), false, false, true));
    }

    #[test]
    fn late_packets_never_move_the_level_and_unmarked_streams_pass() {
        let mut f = TemporalFilter::default();
        f.restart(Some(0));
        assert!(f.admit(None, Some(0), Some(4), false, false, true));
        // A retransmitted packet of an older TID 2 picture with Y: not a switching point.
        assert!(!f.admit(None, Some(2), Some(3), true, false, false));
        assert_eq!(f.current(), Some(0));
        // No TID at all: the stream has no temporal layers to choose from.
        assert!(f.admit(Some(0), None, Some(5), false, false, true));
    }
}
