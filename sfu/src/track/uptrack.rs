//! A published track: who sends it, its simulcast layers as they are measured, and which
//! subscribers' down-tracks receive it.

use std::time::{Duration, Instant};

use str0m::media::{MediaKind, Mid, Rid};

use crate::allocator::{LayerOffer, LayerPoint};
use crate::ids::{ParticipantId, TrackId};
use crate::keyframe::KeyframeThrottle;
use crate::rate::RateMeter;
use crate::relay::{LayerMask, WorkerIndex};
use crate::svc::{Av1Layers, SvcPacket, TemporalLevel, MAX_SPATIAL_LAYERS};

/// Keyframe requests toward a publisher, merged across all its subscribers, per layer.
const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(500);
/// A layer not heard from for this long is not offered to subscribers.
const LAYER_SILENT_AFTER: Duration = Duration::from_secs(2);

/// What a track shows; screen shares get bandwidth first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrackSource {
    #[default]
    Camera,
    Screen,
}

/// Nominal layer rates and sizes until a layer has been measured (the web client's q/h/f).
pub(crate) const NOMINAL: [LayerOffer; 3] = [
    LayerOffer {
        bitrate_bps: 150_000,
        width: 320,
        height: 180,
    },
    LayerOffer {
        bitrate_bps: 500_000,
        width: 640,
        height: 360,
    },
    LayerOffer {
        bitrate_bps: 1_700_000,
        width: 1280,
        height: 720,
    },
];

/// Temporal layers measured per layer: VP8's TID has two bits; VP9's has three, but
/// encoders use at most three layers, and a fourth meter catches the rest.
pub const MAX_TEMPORAL_LAYERS: usize = 4;

/// The share of its layer's rate a temporal layer must carry to count as present: a stray
/// packet marked with a higher TID is not a layer worth offering.
const TEMPORAL_PRESENT_SHARE: f64 = 0.05;

/// What a layer's temporal layers are, as last measured.
#[derive(Debug, Clone, Copy, PartialEq)]
enum TemporalStructure {
    /// Not measured yet (off since the start).
    Unknown,
    /// One temporal layer, or none marked.
    Single,
    /// Each temporal layer's share of the layer's rate.
    Layers([f64; MAX_TEMPORAL_LAYERS]),
}

#[derive(Debug)]
pub struct Layer {
    pub rid: Option<Rid>,
    pub rate: RateMeter,
    /// The same bytes by temporal layer (TID), for streams that mark them.
    temporal_rates: [RateMeter; MAX_TEMPORAL_LAYERS],
    /// Its temporal layers as last measured: kept while the layer is off (dynacast), so its
    /// reduced frame rates are still offered, and asking for one turns it back on.
    temporal: TemporalStructure,
    /// Frame size from the newest keyframe.
    pub size: Option<(u32, u32)>,
    pub last_packet: Option<Instant>,
    pub keyframe_throttle: KeyframeThrottle,
}

impl Layer {
    fn new(rid: Option<Rid>) -> Self {
        Self {
            rid,
            rate: RateMeter::default(),
            temporal_rates: Default::default(),
            temporal: TemporalStructure::Unknown,
            size: None,
            last_packet: None,
            keyframe_throttle: KeyframeThrottle::new(KEYFRAME_REQUEST_INTERVAL),
        }
    }

    /// Count a packet of temporal layer `tid` (its bytes are in `rate` already).
    pub fn record_temporal(&mut self, tid: u8, bytes: usize) {
        let meter = usize::from(tid).min(MAX_TEMPORAL_LAYERS - 1);
        self.temporal_rates[meter].record(bytes);
    }

    /// Close the measuring window (on the allocation tick).
    pub fn tick(&mut self, now: Instant) {
        self.rate.tick(now);
        for meter in &mut self.temporal_rates {
            meter.tick(now);
        }
        let total = self.rate.bps() as f64;
        if total <= 0.0 || !self.is_live(now) {
            return;
        }
        let bps = self.temporal_rates.each_ref().map(|m| m.bps() as f64);
        let present = bps
            .iter()
            .rposition(|&b| b > 0.0 && b >= total * TEMPORAL_PRESENT_SHARE);
        self.temporal = match present {
            Some(top) if top > 0 && bps[0] > 0.0 => {
                let sum: f64 = bps[..=top].iter().sum();
                let mut shares = [0.0; MAX_TEMPORAL_LAYERS];
                for (share, b) in shares.iter_mut().zip(&bps[..=top]) {
                    *share = b / sum;
                }
                TemporalStructure::Layers(shares)
            }
            _ => TemporalStructure::Single,
        };
    }

    pub fn is_live(&self, now: Instant) -> bool {
        self.last_packet
            .is_some_and(|t| now.saturating_duration_since(t) < LAYER_SILENT_AFTER)
    }
}

#[derive(Debug)]
pub struct UpTrack {
    pub id: TrackId,
    pub publisher: ParticipantId,
    /// The publisher's transceiver carrying this track.
    pub mid: Mid,
    pub kind: MediaKind,
    pub source: TrackSource,
    pub muted: bool,
    /// Simulcast layers, lowest first; one layer with no rid without simulcast; the spatial
    /// layers of one stream (no rids) for a scalable one (`svc`).
    pub layers: Vec<Layer>,
    /// One RTP stream carrying several spatial layers (VP9 or AV1 SVC): a subscriber's layer `n`
    /// is every packet of spatial layers `0..=n` of that stream.
    pub svc: bool,
    /// The scalable stream's upper spatial layers predict from the lower ones only in
    /// keyframes (k-SVC, Chromium's `L3T3_KEY`), as its packets last said: a subscriber's
    /// layer then costs its own rate, not that of every layer below too.
    pub k_svc: bool,
    /// A single AV1 stream's template structure (Dependency Descriptor), kept between the
    /// keyframes that carry it.
    pub av1: Av1Layers,
    /// Each subscriber and the mid of its down-track. A short list walked once per packet.
    pub subscribers: Vec<(ParticipantId, Mid)>,
    /// Audio: smoothed loudness (127 - RFC 6464 level), for the active speaker.
    pub loudness: f32,
    /// Dynacast: the rids the publisher was last told to send, and since when each layer has
    /// been unneeded.
    pub active_rids: Option<Vec<Rid>>,
    pub unneeded_since: Vec<Option<Instant>>,
    /// The worker whose participant publishes this track, when it is another one: its
    /// packets arrive through the relay (`relay.rs`).
    pub origin: Option<WorkerIndex>,
    /// A track published here: the layers each other worker's subscribers need.
    pub relay_needs: Vec<(WorkerIndex, LayerMask)>,
    /// A relayed track: the layers last asked of its origin.
    pub needs_told: LayerMask,
}

impl UpTrack {
    pub fn new(
        id: TrackId,
        publisher: ParticipantId,
        mid: Mid,
        kind: MediaKind,
        rids: &[Rid],
    ) -> Self {
        let mut layers: Vec<Layer> = rids.iter().map(|r| Layer::new(Some(*r))).collect();
        layers.sort_by_key(|l| l.rid.map_or(usize::MAX, |r| rid_rank(&r)));
        if layers.is_empty() {
            layers.push(Layer::new(None));
        }
        let unneeded_since = vec![None; layers.len()];
        Self {
            id,
            publisher,
            mid,
            kind,
            source: TrackSource::Camera,
            muted: false,
            layers,
            svc: false,
            k_svc: false,
            av1: Av1Layers::default(),
            subscribers: Vec::new(),
            loudness: 0.0,
            active_rids: None,
            unneeded_since,
            origin: None,
            relay_needs: Vec::new(),
            needs_told: 0,
        }
    }

    pub fn is_simulcast(&self) -> bool {
        self.layers.len() > 1 && !self.svc
    }

    /// One RTP stream (no simulcast): its VP9 packets are selected by their layer indices.
    pub fn is_single_stream(&self) -> bool {
        self.layers.first().is_some_and(|l| l.rid.is_none())
    }

    /// Learn a single stream's spatial layers from a VP9 or AV1 packet of it: a packet of
    /// spatial layer `n`, or a scalability structure announcing `n + 1` layers, makes the
    /// track present `n + 1` layers to subscribers (at most three), with the structure's sizes.
    pub fn learn_spatial_layers(&mut self, descriptor: &SvcPacket) {
        if !self.is_single_stream() {
            return;
        }
        let announced = descriptor.structure.map_or(1, |s| s.spatial_layers);
        let count = usize::from(announced.max(descriptor.spatial + 1)).min(MAX_SPATIAL_LAYERS);
        if count > 1 {
            self.svc = true;
        }
        while self.layers.len() < count {
            self.layers.push(Layer::new(None));
            self.unneeded_since.push(None);
        }
        let sizes = descriptor.structure.and_then(|s| s.sizes);
        for (layer, (width, height)) in self.layers.iter_mut().zip(sizes.into_iter().flatten()) {
            if width > 0 && height > 0 {
                layer.size = Some((u32::from(width), u32::from(height)));
            }
        }
    }

    /// The layer whose measurements a packet counts toward: its rid's, or for a scalable
    /// stream its spatial layer's.
    pub fn measured_layer(&self, layer: usize, descriptor: Option<&SvcPacket>) -> usize {
        match descriptor {
            Some(d) if self.svc => usize::from(d.spatial),
            _ => layer,
        }
    }

    pub fn layer_index(&self, rid: Option<Rid>) -> Option<usize> {
        self.layers.iter().position(|l| l.rid == rid)
    }

    /// What the track offers subscribers, lowest first, with the layer and temporal layers
    /// each offer stands for (`points`, same order): per layer, measured where possible and
    /// nominal otherwise, and below each layer's full rate, its reduced frame rates where it
    /// has temporal layers. So a subscriber short of a layer's full rate can take it at half
    /// or a quarter of the frame rate (no keyframe needed) before a lower layer.
    pub fn layer_offers(
        &self,
        now: Instant,
        offers: &mut Vec<LayerOffer>,
        points: &mut Vec<LayerPoint>,
    ) {
        offers.clear();
        points.clear();
        let n = self.layers.len();
        // A full-SVC stream's layer `i` is sent with every layer below it: its full rate, and
        // per temporal layer, since dropping temporal layers drops them in all of them. A
        // k-SVC layer goes alone outside keyframes.
        let cumulative = self.svc && !self.k_svc;
        let mut below_bps = 0;
        let mut below_temporal_bps = [0u64; MAX_TEMPORAL_LAYERS];
        for (i, layer) in self.layers.iter().enumerate() {
            // Nominal values by rank from the top, so a two-layer track gets h and f.
            let nominal = NOMINAL[(NOMINAL.len() + i).saturating_sub(n).min(NOMINAL.len() - 1)];
            let measured = layer.rate.bps();
            let bitrate_bps = if layer.is_live(now) && measured > 0 {
                measured
            } else if n == 1 {
                // A single-layer track: whatever it sends, it needs; assume a camera at 720p.
                measured.max(NOMINAL[2].bitrate_bps / 2)
            } else {
                nominal.bitrate_bps
            };
            let (width, height) = layer.size.unwrap_or((nominal.width, nominal.height));
            // Each temporal layer's part of this layer's rate. A layer never measured (off
            // since the start) is assumed to be structured like its measured siblings, as
            // encoders do: so its reduced frame rates can be asked for, which turns it on.
            let structure = match layer.temporal {
                TemporalStructure::Unknown => self
                    .layers
                    .iter()
                    .map(|l| l.temporal)
                    .find(|t| matches!(t, TemporalStructure::Layers(_)))
                    .unwrap_or(TemporalStructure::Unknown),
                known => known,
            };
            let mut offer = |bitrate_bps: u64, temporal: TemporalLevel| {
                offers.push(LayerOffer {
                    bitrate_bps,
                    width,
                    height,
                });
                points.push(LayerPoint { layer: i, temporal });
            };
            let mut temporal_bps = [0u64; MAX_TEMPORAL_LAYERS];
            if let TemporalStructure::Layers(shares) = structure {
                let top = shares.iter().rposition(|&x| x > 0.0).unwrap_or(0);
                for (tid, share) in shares.iter().enumerate() {
                    temporal_bps[tid] = (bitrate_bps as f64 * share) as u64;
                }
                let mut own = 0;
                for tid in 0..top {
                    own += temporal_bps[tid];
                    let bitrate_bps = if cumulative {
                        own + below_temporal_bps[..=tid].iter().sum::<u64>()
                    } else {
                        own
                    };
                    offer(bitrate_bps, Some(tid as u8));
                }
            } else {
                // No temporal layers: all of it is the base layer, which every step takes.
                temporal_bps[0] = bitrate_bps;
            }
            for (below, bps) in below_temporal_bps.iter_mut().zip(temporal_bps) {
                *below += bps;
            }
            let bitrate_bps = if cumulative {
                below_bps += bitrate_bps;
                below_bps
            } else {
                bitrate_bps
            };
            offer(bitrate_bps, None);
        }
    }
}

/// The web client's and LiveKit's rid names, lowest first; other rids keep SDP order.
fn rid_rank(rid: &Rid) -> usize {
    match &**rid {
        "q" => 0,
        "h" => 1,
        "f" => 2,
        _ => 3,
    }
}

/// The frame size in a VP8 keyframe's header (RFC 6386 9.1), given the payload after the
/// payload descriptor.
pub fn vp8_keyframe_size(frame: &[u8]) -> Option<(u32, u32)> {
    let header = frame.get(..10)?;
    if header[0] & 0x01 != 0 || header[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let width = u32::from(u16::from_le_bytes([header[6], header[7]]) & 0x3fff);
    let height = u32::from(u16::from_le_bytes([header[8], header[9]]) & 0x3fff);
    (width > 0 && height > 0).then_some((width, height))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_are_ordered_lowest_first() {
        let rids: Vec<Rid> = ["f", "q", "h"].iter().map(|r| Rid::from(*r)).collect();
        let track = UpTrack::new(
            TrackId::random(),
            ParticipantId::random_on(0),
            Mid::from("1"),
            MediaKind::Video,
            &rids,
        );
        let order: Vec<String> = track
            .layers
            .iter()
            .map(|l| l.rid.map(|r| r.to_string()).unwrap_or_default())
            .collect();
        assert_eq!(order, ["q", "h", "f"]);
        assert_eq!(track.layer_index(Some(Rid::from("h"))), Some(1));
        assert_eq!(track.layer_index(None), None);
    }

    #[test]
    fn keyframe_size_is_read_from_the_vp8_header() {
        // Tag with P=0, start code, 640 x 360 with scaling bits set (ignored).
        let frame = [0x50, 0x01, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x42, 0x68, 0x01];
        assert_eq!(vp8_keyframe_size(&frame), Some((640, 360)));
        assert_eq!(vp8_keyframe_size(&frame[..6]), None);
        let mut interframe = frame;
        interframe[0] |= 1;
        assert_eq!(vp8_keyframe_size(&interframe), None);
    }

    /// Half a second of `bytes_per_tid[t]` bytes of temporal layer `t` on `layer`.
    fn measure(track: &mut UpTrack, layer: usize, bytes_per_tid: &[usize], now: Instant) {
        let state = &mut track.layers[layer];
        for (tid, &bytes) in bytes_per_tid.iter().enumerate() {
            state.rate.record(bytes);
            state.record_temporal(tid as u8, bytes);
        }
        state.last_packet = Some(now);
    }

    #[test]
    fn layers_with_temporal_layers_offer_their_reduced_frame_rates_below_their_full_one() {
        let rids: Vec<Rid> = ["q", "h"].iter().map(|r| Rid::from(*r)).collect();
        let mut track = UpTrack::new(
            TrackId::random(),
            ParticipantId::random_on(0),
            Mid::from("1"),
            MediaKind::Video,
            &rids,
        );
        let t0 = Instant::now();
        track.layers.iter_mut().for_each(|l| l.tick(t0));
        let mut now = t0;
        // Ten windows of half a second: q has three temporal layers (100, 50 and 50 kbit/s);
        // h marks none (all TID 0, as a sender without temporal layers may).
        for _ in 0..10 {
            now += Duration::from_millis(500);
            measure(&mut track, 0, &[6_250, 3_125, 3_125], now);
            measure(&mut track, 1, &[31_250], now);
            track.layers.iter_mut().for_each(|l| l.tick(now));
        }
        let (mut offers, mut points) = (Vec::new(), Vec::new());
        track.layer_offers(now, &mut offers, &mut points);
        let point = |layer, temporal| LayerPoint { layer, temporal };
        assert_eq!(
            points,
            vec![
                point(0, Some(0)),
                point(0, Some(1)),
                point(0, None),
                point(1, None)
            ]
        );
        let kbps: Vec<u64> = offers
            .iter()
            .map(|o| (o.bitrate_bps + 500) / 1000)
            .collect();
        assert_eq!(kbps, vec![100, 150, 200, 500]);
        // Every step of a layer has its size.
        let size = |o: &LayerOffer| (o.width, o.height);
        assert!(offers[..3].iter().all(|o| size(o) == size(&offers[2])));
    }
}
