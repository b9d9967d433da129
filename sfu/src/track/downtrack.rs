//! One subscriber's copy of a published track: decides per packet whether to forward it and
//! with which sequence number and timestamp, so the subscriber sees one continuous stream.

use std::time::Instant;

use str0m::media::{MediaKind, Mid};
use str0m::rtp::Ssrc;

use crate::ids::TrackId;
use crate::rewrite::{SeqRewriter, TsRewriter};

/// What to do with one incoming packet for one down-track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardDecision {
    /// Send it with these rewritten numbers.
    Send { seq: u64, timestamp: u32 },
    /// The down-track cannot start (or restart) before a keyframe: drop, and ask for one.
    NeedKeyframe,
    /// Not for sending (not negotiated yet, or a stale packet from an earlier source).
    Drop,
}

#[derive(Debug)]
pub struct DownTrack {
    pub track: TrackId,
    /// The subscriber's transceiver for this track.
    pub mid: Mid,
    /// Outgoing SSRC, known once negotiation has completed.
    tx_ssrc: Option<Ssrc>,
    /// Incoming SSRC being forwarded; a different one means the source changed.
    source: Option<Ssrc>,
    seq: SeqRewriter,
    ts: TsRewriter,
}

impl DownTrack {
    pub fn new(track: TrackId, mid: Mid, kind: MediaKind) -> Self {
        let clock_rate = if kind == MediaKind::Audio {
            48_000
        } else {
            90_000
        };
        Self {
            track,
            mid,
            tx_ssrc: None,
            source: None,
            // Random starting points, as RFC 3550 asks, so streams are not predictable.
            seq: SeqRewriter::new(rand::random::<u16>() & 0x7fff),
            ts: TsRewriter::new(clock_rate, rand::random()),
        }
    }

    /// Negotiation finished: packets go out on `ssrc` from now on.
    pub fn activate(&mut self, ssrc: Ssrc) {
        self.tx_ssrc = Some(ssrc);
    }

    pub fn tx_ssrc(&self) -> Option<Ssrc> {
        self.tx_ssrc
    }

    /// Decide for one packet of source `ssrc`. `starts_keyframe` says whether a decoder can
    /// start at this packet (always true for audio).
    pub fn forward(
        &mut self,
        ssrc: Ssrc,
        seq: u64,
        timestamp: u32,
        starts_keyframe: bool,
        now: Instant,
    ) -> ForwardDecision {
        if self.tx_ssrc.is_none() {
            return ForwardDecision::Drop;
        }
        if self.source != Some(ssrc) {
            if !starts_keyframe {
                return ForwardDecision::NeedKeyframe;
            }
            self.source = Some(ssrc);
            self.seq.switch_source(seq);
            self.ts.switch_source(timestamp, now);
        }
        match self.seq.rewrite(seq) {
            Some(seq) => ForwardDecision::Send {
                seq,
                timestamp: self.ts.rewrite(timestamp, now),
            },
            None => ForwardDecision::Drop,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video() -> DownTrack {
        let mut dt = DownTrack::new(
            crate::ids::TrackId::random(),
            Mid::from("3"),
            MediaKind::Video,
        );
        dt.seq = SeqRewriter::new(100);
        dt.ts = TsRewriter::new(90_000, 0);
        dt
    }

    #[test]
    fn nothing_is_sent_before_negotiation() {
        let mut dt = video();
        let now = Instant::now();
        assert_eq!(dt.forward(1.into(), 5, 9, true, now), ForwardDecision::Drop);
    }

    #[test]
    fn video_starts_at_a_keyframe_then_flows_continuously() {
        let mut dt = video();
        dt.activate(42.into());
        let now = Instant::now();
        assert_eq!(
            dt.forward(1.into(), 5, 900, false, now),
            ForwardDecision::NeedKeyframe
        );
        assert_eq!(
            dt.forward(1.into(), 6, 3900, true, now),
            ForwardDecision::Send {
                seq: 100,
                timestamp: 0
            }
        );
        assert_eq!(
            dt.forward(1.into(), 7, 6900, false, now),
            ForwardDecision::Send {
                seq: 101,
                timestamp: 3000
            }
        );
        // The publisher restarts its encoder with a new SSRC: wait for its keyframe, then the
        // stream continues where it left off.
        assert_eq!(
            dt.forward(2.into(), 1, 50, false, now),
            ForwardDecision::NeedKeyframe
        );
        match dt.forward(2.into(), 2, 60, true, now) {
            ForwardDecision::Send { seq, timestamp } => {
                assert_eq!(seq, 102);
                assert!(timestamp >= 3001);
            }
            other => panic!("expected send, got {other:?}"),
        }
        // A late packet from before the switch point of the new source is dropped.
        assert_eq!(
            dt.forward(2.into(), 1, 50, false, now),
            ForwardDecision::Drop
        );
    }
}
