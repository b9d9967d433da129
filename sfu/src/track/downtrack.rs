//! One subscriber's copy of a published track: which layer it gets (current and target),
//! the per-packet decision, and the rewriting that makes layer switches invisible.

use std::time::Instant;

use str0m::media::{MediaKind, Mid};
use str0m::rtp::Ssrc;

use crate::allocator::{Reason, UpgradeGate};
use crate::codec::PayloadTypes;
use crate::ids::TrackId;
use crate::rewrite::{SeqRewriter, TsRewriter, Vp8Rewriter};
use crate::svc::{SvcLayers, SvcPacket, SvcSelector, SvcVerdict, TemporalFilter, TemporalLevel};

/// A scalable stream's subscriber's temporal layers when the allocator asks for all of them
/// (temporal layer indices are 0..=7).
const ALL_TEMPORAL_LAYERS: u8 = 7;

/// What to do with one incoming packet for one down-track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardDecision {
    /// Send it with these rewritten numbers.
    Send {
        seq: u64,
        timestamp: u32,
        picture_id: Option<u16>,
        tl0: Option<u8>,
        /// The RTP marker: the publisher's, or for a scalable stream whose upper layers are
        /// dropped, the end of the highest layer sent.
        marker: bool,
        /// A scalable stream's spatial up-switch waits for a keyframe: ask for one.
        wants_keyframe: bool,
    },
    /// The target layer cannot start before its keyframe: drop, and ask the publisher.
    NeedKeyframe,
    /// Not for this subscriber (another layer, paused, not negotiated, or stale).
    Drop,
    /// Not for this subscriber, but a late packet whose number was left free for it
    /// (`SeqRewriter::skip`): send an empty packet with this number, so the subscriber sees
    /// no loss it would NACK forever.
    Fill { seq: u64, timestamp: u32 },
}

/// The parts of an incoming packet the decision looks at.
#[derive(Debug, Clone, Copy)]
pub struct PacketInfo {
    pub layer: usize,
    pub ssrc: Ssrc,
    pub seq: u64,
    pub timestamp: u32,
    pub starts_keyframe: bool,
    pub marker: bool,
    pub picture_id: Option<u16>,
    pub tl0: Option<u8>,
    /// VP8: the temporal layer (TID) and the layer sync (Y) bit, when the sender marks them.
    pub temporal: Option<u8>,
    pub layer_sync: bool,
    /// The layers of a single scalable stream's packet (VP9, or AV1 with the Dependency
    /// Descriptor): selected by its layer indices (`svc`) rather than by `layer`.
    pub svc: Option<SvcPacket>,
}

#[derive(Debug)]
pub struct DownTrack {
    pub track: TrackId,
    /// The subscriber's transceiver for this track.
    pub mid: Mid,
    pub kind: MediaKind,
    /// Outgoing SSRC, known once negotiation has completed.
    tx_ssrc: Option<Ssrc>,
    /// The layer and SSRC being forwarded now.
    current: Option<(usize, Ssrc)>,
    /// The layer the allocator wants; `None` pauses the track.
    target: Option<usize>,
    /// The temporal layers of it the allocator wants (`None`: every one).
    target_temporal: TemporalLevel,
    pub reason: Reason,
    /// Size the subscriber shows this track at (`None` until it says).
    pub shown: Option<(u32, u32)>,
    pub gate: UpgradeGate,
    /// Whether the subscriber was last told this video is paused.
    pub notified_paused: bool,
    /// Whether the subscriber was told it negotiated no payload type for this track's codec.
    pub notified_codec_unsupported: bool,
    /// The payload types the subscriber accepted on this m-line.
    pub payload_types: PayloadTypes,
    seq: SeqRewriter,
    ts: TsRewriter,
    vp8: Vp8Rewriter,
    temporal: TemporalFilter,
    svc: SvcSelector,
    pub sent_bytes: crate::rate::RateMeter,
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
            kind,
            tx_ssrc: None,
            current: None,
            // Until the first allocation, take the lowest layer: it starts fastest.
            target: Some(0),
            target_temporal: None,
            reason: Reason::Best,
            shown: None,
            gate: UpgradeGate::default(),
            notified_paused: false,
            notified_codec_unsupported: false,
            payload_types: PayloadTypes::default(),
            // Random starting points, as RFC 3550 asks, so streams are not predictable.
            seq: SeqRewriter::new(rand::random::<u16>() & 0x7fff),
            ts: TsRewriter::new(clock_rate, rand::random()),
            vp8: Vp8Rewriter::default(),
            temporal: TemporalFilter::default(),
            svc: SvcSelector::default(),
            sent_bytes: Default::default(),
        }
    }

    /// Negotiation finished: packets go out on `ssrc` from now on.
    pub fn activate(&mut self, ssrc: Ssrc) {
        self.tx_ssrc = Some(ssrc);
    }

    pub fn tx_ssrc(&self) -> Option<Ssrc> {
        self.tx_ssrc
    }

    pub fn current_layer(&self) -> Option<usize> {
        match self.svc.current() {
            Some(layers) => Some(usize::from(layers.spatial)),
            None => self.current.map(|(layer, _)| layer),
        }
    }

    pub fn target_layer(&self) -> Option<usize> {
        self.target
    }

    pub fn target_temporal(&self) -> TemporalLevel {
        self.target_temporal
    }

    /// The temporal layers forwarded now (`None`: all of them, or nothing forwarded).
    pub fn current_temporal(&self) -> TemporalLevel {
        match self.svc.current() {
            Some(layers) => Some(layers.temporal).filter(|&t| t < ALL_TEMPORAL_LAYERS),
            None => self.current.and(self.temporal.level()),
        }
    }

    /// Take only the temporal layers up to `level` of the target layer (`None`: all): a
    /// lower frame rate, reached without a keyframe (`svc::temporal`).
    pub fn set_target_temporal(&mut self, level: TemporalLevel) {
        self.target_temporal = level;
    }

    /// Move to another layer (at its next keyframe), or pause with `None`.
    pub fn set_target(&mut self, target: Option<usize>) {
        self.target = target;
        if target.is_none() {
            self.current = None;
            self.svc.reset();
        }
    }

    /// Stop forwarding the current layer now, before the target's keyframe arrives: on a
    /// congested link its packets would only queue (str0m's pacer holds up to 2 s) and be
    /// lost, and the target's keyframe would wait behind them.
    pub fn stop_current(&mut self) {
        self.current = None;
        self.svc.reset();
    }

    /// The layer a keyframe request from the subscriber is about.
    pub fn layer_for_keyframe(&self) -> Option<usize> {
        match (self.current, self.target) {
            (Some((current, _)), Some(target)) if current == target => Some(current),
            (_, target) => target,
        }
    }

    pub fn forward(&mut self, packet: &PacketInfo, now: Instant) -> ForwardDecision {
        if self.tx_ssrc.is_none() {
            return ForwardDecision::Drop;
        }
        let Some(target) = self.target else {
            return ForwardDecision::Drop;
        };
        if let Some(svc) = &packet.svc {
            return self.forward_scalable(packet, svc, target, now);
        }
        let on_current = self.current == Some((packet.layer, packet.ssrc));
        if !on_current {
            if packet.layer != target {
                return ForwardDecision::Drop;
            }
            if !packet.starts_keyframe {
                return ForwardDecision::NeedKeyframe;
            }
            // The target layer's keyframe: switch here, continuing every counter.
            self.current = Some((packet.layer, packet.ssrc));
            self.seq.switch_source(packet.seq);
            self.ts.switch_source(packet.timestamp, now);
            self.vp8.switch_source(packet.picture_id, packet.tl0);
            self.temporal.restart(self.target_temporal);
        }
        let in_order = self.seq.is_newest(packet.seq);
        if !self.temporal.admit(
            self.target_temporal,
            packet.temporal,
            packet.picture_id,
            packet.layer_sync,
            packet.starts_keyframe,
            in_order,
        ) {
            // Taken out of the numbering, so the subscriber sees neither lost packets nor
            // missing pictures.
            let fill = self.seq.skip(packet.seq);
            self.vp8.skip_picture(packet.picture_id);
            return self.fill_or_drop(fill, packet, now);
        }
        let Some(seq) = self.seq.rewrite(packet.seq) else {
            return ForwardDecision::Drop;
        };
        let (picture_id, tl0) = self.vp8.rewrite(packet.picture_id, packet.tl0);
        ForwardDecision::Send {
            seq,
            timestamp: self.ts.rewrite(packet.timestamp, now),
            picture_id,
            tl0,
            marker: packet.marker,
            wants_keyframe: false,
        }
    }

    fn fill_or_drop(
        &mut self,
        fill: Option<u64>,
        packet: &PacketInfo,
        now: Instant,
    ) -> ForwardDecision {
        match fill {
            Some(seq) => ForwardDecision::Fill {
                seq,
                timestamp: self.ts.rewrite(packet.timestamp, now),
            },
            None => ForwardDecision::Drop,
        }
    }

    /// One packet of a single scalable stream: its layer indices decide (`svc::SvcSelector`);
    /// what is not sent is taken out of the sequence numbers.
    fn forward_scalable(
        &mut self,
        packet: &PacketInfo,
        svc: &SvcPacket,
        target: usize,
        now: Instant,
    ) -> ForwardDecision {
        let same_source = self.current.is_some_and(|(_, ssrc)| ssrc == packet.ssrc);
        if !same_source {
            self.svc.reset();
        }
        let layers = SvcLayers {
            spatial: u8::try_from(target).unwrap_or(u8::MAX),
            temporal: self.target_temporal.unwrap_or(ALL_TEMPORAL_LAYERS),
        };
        let in_order = !same_source || self.seq.is_newest(packet.seq);
        match self.svc.select(layers, svc, packet.marker, in_order) {
            SvcVerdict::NeedKeyframe => ForwardDecision::NeedKeyframe,
            SvcVerdict::Drop => {
                let fill = self.seq.skip(packet.seq);
                self.fill_or_drop(fill, packet, now)
            }
            SvcVerdict::Forward {
                marker,
                wants_keyframe,
            } => {
                if !same_source {
                    self.current = Some((packet.layer, packet.ssrc));
                    self.seq.switch_source(packet.seq);
                    self.ts.switch_source(packet.timestamp, now);
                }
                let Some(seq) = self.seq.rewrite(packet.seq) else {
                    return ForwardDecision::Drop;
                };
                ForwardDecision::Send {
                    seq,
                    timestamp: self.ts.rewrite(packet.timestamp, now),
                    // VP9 picture IDs and AV1 frame numbers pass through (see `svc::selector`).
                    picture_id: None,
                    tl0: None,
                    marker,
                    wants_keyframe,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::svc::Vp9Descriptor;

    fn video() -> DownTrack {
        let mut dt = DownTrack::new(TrackId::random(), Mid::from("3"), MediaKind::Video);
        dt.seq = SeqRewriter::new(100);
        dt.ts = TsRewriter::new(90_000, 0);
        dt
    }

    fn packet(
        layer: usize,
        ssrc: u32,
        seq: u64,
        timestamp: u32,
        key: bool,
        pic: u16,
    ) -> PacketInfo {
        PacketInfo {
            layer,
            ssrc: ssrc.into(),
            seq,
            timestamp,
            starts_keyframe: key,
            marker: false,
            picture_id: Some(pic),
            tl0: Some(pic as u8),
            temporal: None,
            layer_sync: false,
            svc: None,
        }
    }

    fn sent(d: ForwardDecision) -> (u64, u32, Option<u16>) {
        match d {
            ForwardDecision::Send {
                seq,
                timestamp,
                picture_id,
                ..
            } => (seq, timestamp, picture_id),
            other => panic!("expected a send, got {other:?}"),
        }
    }

    #[test]
    fn a_stopped_layer_is_not_forwarded_while_the_target_keyframe_is_awaited() {
        let mut dt = video();
        dt.activate(42.into());
        let t0 = Instant::now();
        dt.set_target(Some(2));
        sent(dt.forward(&packet(2, 3, 10, 1000, true, 500), t0));
        dt.set_target(Some(0));
        assert!(matches!(
            dt.forward(&packet(2, 3, 11, 4000, false, 501), t0),
            ForwardDecision::Send { .. }
        ));
        dt.stop_current();
        assert_eq!(
            dt.forward(&packet(2, 3, 12, 7000, false, 502), t0),
            ForwardDecision::Drop
        );
        assert_eq!(
            dt.forward(&packet(0, 1, 80, 7000, false, 90), t0),
            ForwardDecision::NeedKeyframe
        );
        assert_eq!(
            sent(dt.forward(&packet(0, 1, 81, 10000, true, 91), t0)).2,
            Some(502),
            "picture ids continue across the gap"
        );
    }

    #[test]
    fn nothing_is_sent_before_negotiation() {
        let mut dt = video();
        assert_eq!(
            dt.forward(&packet(0, 1, 5, 9, true, 1), Instant::now()),
            ForwardDecision::Drop
        );
    }

    #[test]
    fn starts_at_a_keyframe_of_the_target_layer_and_ignores_other_layers() {
        let mut dt = video();
        dt.activate(42.into());
        let now = Instant::now();
        assert_eq!(
            dt.forward(&packet(0, 1, 5, 900, false, 7), now),
            ForwardDecision::NeedKeyframe
        );
        assert_eq!(
            dt.forward(&packet(1, 2, 50, 100, true, 90), now),
            ForwardDecision::Drop,
            "not the target"
        );
        assert_eq!(
            sent(dt.forward(&packet(0, 1, 6, 3900, true, 8), now)),
            (100, 0, Some(8))
        );
        assert_eq!(
            sent(dt.forward(&packet(0, 1, 7, 6900, false, 9), now)),
            (101, 3000, Some(9))
        );
        assert_eq!(dt.current_layer(), Some(0));
    }

    #[test]
    fn switches_layers_only_at_the_target_keyframe_and_stays_continuous() {
        let mut dt = video();
        dt.activate(42.into());
        let t0 = Instant::now();
        sent(dt.forward(&packet(0, 1, 10, 1000, true, 500), t0));
        sent(dt.forward(&packet(0, 1, 11, 4000, false, 501), t0));
        dt.set_target(Some(2));
        // Until layer 2's keyframe arrives, layer 0 keeps flowing.
        assert_eq!(
            dt.forward(&packet(2, 3, 7000, 80, false, 20), t0),
            ForwardDecision::NeedKeyframe
        );
        assert_eq!(
            sent(dt.forward(&packet(0, 1, 12, 7000, false, 502), t0)).0,
            102
        );
        let t1 = t0 + std::time::Duration::from_millis(33);
        let (seq, ts, pic) = sent(dt.forward(&packet(2, 3, 7001, 3080, true, 21), t1));
        assert_eq!(
            (seq, pic),
            (103, Some(503)),
            "sequence and picture id continue"
        );
        assert_eq!(ts, 6000 + 33 * 90, "timestamp advances by the elapsed time");
        // Now the old layer is dropped, and the new one continues.
        assert_eq!(
            dt.forward(&packet(0, 1, 13, 10_000, false, 503), t1),
            ForwardDecision::Drop
        );
        assert_eq!(
            sent(dt.forward(&packet(2, 3, 7002, 6080, false, 22), t1)),
            (104, 6000 + 33 * 90 + 3000, Some(504))
        );
        assert_eq!(dt.current_layer(), Some(2));
    }

    #[test]
    fn pausing_drops_everything_and_resuming_waits_for_a_keyframe() {
        let mut dt = video();
        dt.activate(42.into());
        let now = Instant::now();
        sent(dt.forward(&packet(0, 1, 10, 1000, true, 1), now));
        dt.set_target(None);
        assert_eq!(
            dt.forward(&packet(0, 1, 11, 4000, true, 2), now),
            ForwardDecision::Drop
        );
        assert_eq!(dt.current_layer(), None);
        dt.set_target(Some(0));
        assert_eq!(
            dt.forward(&packet(0, 1, 12, 7000, false, 3), now),
            ForwardDecision::NeedKeyframe
        );
        assert_eq!(
            sent(dt.forward(&packet(0, 1, 13, 10_000, true, 4), now)).0,
            101,
            "no gap on resume"
        );
    }

    #[test]
    fn an_ssrc_change_on_the_same_layer_waits_for_a_keyframe() {
        let mut dt = video();
        dt.activate(42.into());
        let now = Instant::now();
        sent(dt.forward(&packet(0, 1, 10, 1000, true, 1), now));
        assert_eq!(
            dt.forward(&packet(0, 9, 1, 5, false, 1), now),
            ForwardDecision::NeedKeyframe
        );
        assert_eq!(sent(dt.forward(&packet(0, 9, 2, 6, true, 1), now)).0, 101);
        assert_eq!(
            dt.forward(&packet(0, 9, 1, 5, false, 1), now),
            ForwardDecision::Drop,
            "stale"
        );
    }

    /// VP8 with three temporal layers (L1T3: TID 0, 2, 1, 2, ...), one packet per picture,
    /// picture IDs and sequence numbers from `first`; picture `first` is a keyframe when
    /// `key`, and `sync` pictures carry the Y bit.
    fn l1t3(first: u16, count: u16, key: bool, sync: &[u16]) -> Vec<PacketInfo> {
        (first..first + count)
            .map(|pic| PacketInfo {
                temporal: Some([0, 2, 1, 2][usize::from(pic % 4)]),
                layer_sync: sync.contains(&pic),
                starts_keyframe: key && pic == first,
                ..packet(0, 7, u64::from(pic), u32::from(pic) * 3000, false, pic)
            })
            .collect()
    }

    #[test]
    fn a_vp8_temporal_target_drops_whole_pictures_without_gaps_in_numbers_or_picture_ids() {
        let mut dt = video();
        dt.activate(42.into());
        let now = Instant::now();
        dt.set_target(Some(0));
        // Every layer for pictures 0-3, then half the frame rate from picture 4.
        let sent_of = |dt: &mut DownTrack, packets: Vec<PacketInfo>| -> Vec<(u64, Option<u16>)> {
            packets
                .iter()
                .filter_map(|p| match dt.forward(p, now) {
                    ForwardDecision::Send {
                        seq, picture_id, ..
                    } => Some((seq, picture_id)),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(
            sent_of(&mut dt, l1t3(0, 4, true, &[])),
            vec![
                (100, Some(0)),
                (101, Some(1)),
                (102, Some(2)),
                (103, Some(3))
            ]
        );
        dt.set_target_temporal(Some(1));
        // Pictures 4 (TID 0) and 6 (TID 1) of 4-7, numbered on without a gap.
        assert_eq!(
            sent_of(&mut dt, l1t3(4, 4, false, &[])),
            vec![(104, Some(4)), (105, Some(5))]
        );
        // Back to every layer: only from a TID 2 picture with the Y bit (9 here).
        dt.set_target_temporal(None);
        assert_eq!(
            sent_of(&mut dt, l1t3(8, 4, false, &[9])),
            vec![
                (106, Some(6)),
                (107, Some(7)),
                (108, Some(8)),
                (109, Some(9))
            ]
        );
    }

    /// The six packets of one VP9 SVC picture (three spatial layers of two packets each),
    /// from incoming sequence number `first_seq`; the publisher's marker on the last.
    fn svc_picture(first_seq: u64, timestamp: u32, key: bool, temporal: u8) -> Vec<PacketInfo> {
        (0..6u8)
            .map(|i| {
                let spatial = i / 2;
                let vp9 = Vp9Descriptor {
                    picture_id: Some(7),
                    inter_picture_predicted: !key,
                    begins_frame: i % 2 == 0,
                    ends_frame: i % 2 == 1,
                    temporal,
                    spatial,
                    switching_up: false,
                    inter_layer_dependent: spatial > 0,
                    structure: None,
                };
                PacketInfo {
                    layer: 0,
                    ssrc: 5.into(),
                    seq: first_seq + u64::from(i),
                    timestamp,
                    starts_keyframe: vp9.starts_keyframe(),
                    marker: i == 5,
                    picture_id: Some(7),
                    tl0: None,
                    temporal: None,
                    layer_sync: false,
                    svc: Some(vp9.svc_packet(false)),
                }
            })
            .collect()
    }

    /// What each packet became: `Some((seq, marker, wants_keyframe))` when sent.
    fn outcomes(
        dt: &mut DownTrack,
        packets: &[PacketInfo],
        now: Instant,
    ) -> Vec<Option<(u64, bool, bool)>> {
        packets
            .iter()
            .map(|p| match dt.forward(p, now) {
                ForwardDecision::Send {
                    seq,
                    marker,
                    wants_keyframe,
                    picture_id,
                    ..
                } => {
                    assert_eq!(picture_id, None, "VP9 picture ids are not rewritten");
                    Some((seq, marker, wants_keyframe))
                }
                ForwardDecision::Drop => None,
                ForwardDecision::NeedKeyframe => panic!("unexpected keyframe wait"),
                ForwardDecision::Fill { .. } => panic!("unexpected fill"),
            })
            .collect()
    }

    #[test]
    fn a_late_packet_of_a_dropped_layer_fills_the_number_left_for_it() {
        let t0 = Instant::now();
        let mut dt = video();
        dt.activate(9.into());
        dt.set_target(Some(0));
        // Spatial layer 0 only. Picture 1 arrives whole; picture 2 arrives without its
        // spatial layer 1 first packet (seq 8), which comes after picture 3 started.
        let first = svc_picture(0, 0, true, 0);
        let second = svc_picture(6, 3000, false, 0);
        let third = svc_picture(12, 6000, false, 0);
        assert_eq!(outcomes(&mut dt, &first, t0).iter().flatten().count(), 2);
        let on_time: Vec<PacketInfo> = second.iter().filter(|p| p.seq != 8).copied().collect();
        outcomes(&mut dt, &on_time, t0);
        let sent = outcomes(&mut dt, &third[..1], t0);
        let (third_seq, _, _) = sent[0].expect("layer 0 of picture 3 sent");
        // The late packet's number was left free (the rewriter could not know its layer);
        // it comes back to be filled, and the numbers sent around it leave exactly that gap.
        match dt.forward(&second[2], t0) {
            ForwardDecision::Fill { seq, timestamp } => {
                assert_eq!(seq + 1, third_seq, "the hole just before picture 3");
                assert_eq!(timestamp, 3000);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            dt.forward(&second[2], t0),
            ForwardDecision::Drop,
            "filled once"
        );
    }

    #[test]
    fn an_svc_subscriber_gets_its_layers_with_continuous_numbers_and_a_fixed_marker() {
        let mut dt = video();
        dt.activate(42.into());
        let now = Instant::now();
        dt.set_target(Some(1));
        let delta = svc_picture(4, 0, false, 0);
        assert_eq!(dt.forward(&delta[0], now), ForwardDecision::NeedKeyframe);
        assert_eq!(
            outcomes(&mut dt, &svc_picture(10, 3000, true, 0), now),
            [
                Some((100, false, false)),
                Some((101, false, false)),
                Some((102, false, false)),
                Some((103, true, false)),
                None,
                None
            ]
        );
        assert_eq!(dt.current_layer(), Some(1));
        assert_eq!(
            outcomes(&mut dt, &svc_picture(16, 6000, false, 1), now),
            [
                Some((104, false, false)),
                Some((105, false, false)),
                Some((106, false, false)),
                Some((107, true, false)),
                None,
                None
            ],
            "no gap where spatial layer 2 was dropped"
        );
        // Up to layer 2: not before a keyframe, which is asked for meanwhile.
        dt.set_target(Some(2));
        assert_eq!(
            outcomes(&mut dt, &svc_picture(22, 9000, false, 0), now),
            [
                Some((108, false, true)),
                Some((109, false, true)),
                Some((110, false, true)),
                Some((111, true, true)),
                None,
                None
            ]
        );
        assert_eq!(
            outcomes(&mut dt, &svc_picture(28, 12000, true, 0), now),
            [
                Some((112, false, false)),
                Some((113, false, false)),
                Some((114, false, false)),
                Some((115, false, false)),
                Some((116, false, false)),
                Some((117, true, false))
            ]
        );
        assert_eq!(dt.current_layer(), Some(2));
        // Down to layer 0 at the next picture, no keyframe needed.
        dt.set_target(Some(0));
        assert_eq!(
            outcomes(&mut dt, &svc_picture(34, 15000, false, 1), now),
            [
                Some((118, false, false)),
                Some((119, true, false)),
                None,
                None,
                None,
                None
            ]
        );
        assert_eq!(dt.current_layer(), Some(0));
        // A late copy (a publisher's retransmission) of a layer 0 packet sent before the
        // drops gets the number it had.
        let late = outcomes(&mut dt, &svc_picture(28, 12000, true, 0)[1..2], now);
        assert_eq!(late[0].map(|(seq, ..)| seq), Some(113));
    }
}
