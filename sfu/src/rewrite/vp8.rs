//! VP8 payload descriptor fields (RFC 7741): PictureID and TL0PICIDX must stay continuous
//! across source switches too, or the decoder sees missing frames and asks for keyframes.

/// PictureID is 15 bits on the wire (libwebrtc always uses the long form).
const PICTURE_ID_MODULO: u16 = 1 << 15;

/// Rewrites PictureID (mod 2^15) and TL0PICIDX (mod 2^8) with per-source offsets.
#[derive(Debug, Clone, Default)]
pub struct Vp8Rewriter {
    picture_id_offset: u16,
    tl0_offset: u8,
    /// Newest values handed out; `None` before the first packet.
    newest: Option<(u16, u8)>,
    /// The current source's picture skipped last, so its other packets do not count again.
    last_skipped: Option<u16>,
}

impl Vp8Rewriter {
    /// Begin a new source whose first packet carries `picture_id` and `tl0`.
    pub fn switch_source(&mut self, picture_id: Option<u16>, tl0: Option<u8>) {
        self.last_skipped = None;
        let Some((newest_pic, newest_tl0)) = self.newest else {
            self.picture_id_offset = 0;
            self.tl0_offset = 0;
            return;
        };
        if let Some(pic) = picture_id {
            let next = (newest_pic + 1) % PICTURE_ID_MODULO;
            self.picture_id_offset =
                (next + PICTURE_ID_MODULO - pic % PICTURE_ID_MODULO) % PICTURE_ID_MODULO;
        }
        if let Some(tl0) = tl0 {
            self.tl0_offset = newest_tl0.wrapping_add(1).wrapping_sub(tl0);
        }
    }

    /// A picture of the current source is not forwarded (a temporal layer above the
    /// subscriber's): the pictures after it are numbered on without a gap, since a receiver
    /// waits for every missing picture ID before decoding the frames after it (libwebrtc's
    /// VP8 reference finder stashes them). Called for each packet of the picture; a late
    /// packet of a picture older than the newest one forwarded changes nothing. TL0PICIDX
    /// needs no change: base-layer pictures are never skipped.
    pub fn skip_picture(&mut self, picture_id: Option<u16>) {
        let Some(pic) = picture_id.map(|p| p % PICTURE_ID_MODULO) else {
            return;
        };
        if self.last_skipped == Some(pic) {
            return;
        }
        if let Some((newest, _)) = self.newest {
            let rewritten = (pic + self.picture_id_offset) % PICTURE_ID_MODULO;
            let ahead = (rewritten + PICTURE_ID_MODULO - newest) % PICTURE_ID_MODULO;
            if ahead == 0 || ahead >= PICTURE_ID_MODULO / 2 {
                return;
            }
        }
        self.last_skipped = Some(pic);
        self.picture_id_offset =
            (self.picture_id_offset + PICTURE_ID_MODULO - 1) % PICTURE_ID_MODULO;
    }

    /// The rewritten (PictureID, TL0PICIDX) for a packet of the current source.
    pub fn rewrite(
        &mut self,
        picture_id: Option<u16>,
        tl0: Option<u8>,
    ) -> (Option<u16>, Option<u8>) {
        let pic = picture_id
            .map(|p| (p % PICTURE_ID_MODULO + self.picture_id_offset) % PICTURE_ID_MODULO);
        let tl0 = tl0.map(|t| t.wrapping_add(self.tl0_offset));
        let (mut newest_pic, mut newest_tl0) =
            self.newest.unwrap_or((pic.unwrap_or(0), tl0.unwrap_or(0)));
        if let Some(p) = pic {
            // Newer in 15-bit serial-number arithmetic.
            if (p + PICTURE_ID_MODULO - newest_pic) % PICTURE_ID_MODULO < PICTURE_ID_MODULO / 2 {
                newest_pic = p;
            }
        }
        if let Some(t) = tl0 {
            if t.wrapping_sub(newest_tl0) < 128 {
                newest_tl0 = t;
            }
        }
        self.newest = Some((newest_pic, newest_tl0));
        (pic, tl0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_source_passes_through() {
        let mut rw = Vp8Rewriter::default();
        rw.switch_source(Some(100), Some(7));
        assert_eq!(rw.rewrite(Some(100), Some(7)), (Some(100), Some(7)));
        assert_eq!(rw.rewrite(Some(101), Some(7)), (Some(101), Some(7)));
        assert_eq!(rw.rewrite(Some(102), Some(8)), (Some(102), Some(8)));
    }

    #[test]
    fn switch_continues_both_fields() {
        let mut rw = Vp8Rewriter::default();
        rw.switch_source(Some(32_766), Some(255));
        rw.rewrite(Some(32_766), Some(255));
        rw.rewrite(Some(32_767), Some(255));
        // A layer with unrelated counters takes over: continue at 0 (wrapped) and 0.
        rw.switch_source(Some(5), Some(40));
        assert_eq!(rw.rewrite(Some(5), Some(40)), (Some(0), Some(0)));
        assert_eq!(rw.rewrite(Some(6), Some(41)), (Some(1), Some(1)));
        // Several packets of one frame share the picture id.
        assert_eq!(rw.rewrite(Some(6), Some(41)), (Some(1), Some(1)));
    }

    #[test]
    fn a_late_packet_does_not_move_the_newest_value_back() {
        let mut rw = Vp8Rewriter::default();
        rw.switch_source(Some(10), Some(1));
        rw.rewrite(Some(10), Some(1));
        rw.rewrite(Some(12), Some(2));
        assert_eq!(rw.rewrite(Some(11), Some(1)), (Some(11), Some(1)));
        rw.switch_source(Some(500), Some(90));
        assert_eq!(rw.rewrite(Some(500), Some(90)), (Some(13), Some(3)));
    }

    #[test]
    fn missing_fields_stay_missing() {
        let mut rw = Vp8Rewriter::default();
        rw.switch_source(None, None);
        assert_eq!(rw.rewrite(None, None), (None, None));
    }

    #[test]
    fn skipped_pictures_leave_no_gap_in_picture_ids() {
        let mut rw = Vp8Rewriter::default();
        rw.switch_source(Some(10), Some(1));
        assert_eq!(rw.rewrite(Some(10), Some(1)), (Some(10), Some(1)));
        // L1T3 at the base layer only: 11 (T2), 12 (T1), 13 (T2) skipped, two packets each.
        for pic in [11, 11, 12, 12, 13, 13] {
            rw.skip_picture(Some(pic));
        }
        assert_eq!(rw.rewrite(Some(14), Some(2)), (Some(11), Some(2)));
        // A late packet of the skipped 12 (a retransmission) shifts nothing.
        rw.skip_picture(Some(12));
        assert_eq!(rw.rewrite(Some(15), Some(2)), (Some(12), Some(2)));
        // Skips count across the 15-bit wrap.
        rw.switch_source(Some(0x7ffe), Some(9));
        assert_eq!(rw.rewrite(Some(0x7ffe), Some(9)), (Some(13), Some(3)));
        rw.skip_picture(Some(0x7fff));
        assert_eq!(rw.rewrite(Some(0), Some(10)), (Some(14), Some(4)));
    }
}
