//! AV1's layers as the Dependency Descriptor gives them: the extension's bytes carried
//! through str0m ([`DependencyDescriptorExtension`]), a stream's template structure kept
//! between keyframes ([`Av1Layers`]), and each packet turned into what the layer selector
//! reads ([`SvcPacket`]).
//!
//! The descriptor goes to each subscriber as received: the frames a subscriber does not get
//! are ones its decode target does not use, so the frame numbers and diffs it sees still
//! add up (as LiveKit forwards it). Only the marker bit changes, in `SvcSelector`.

use std::sync::Arc;

use str0m::rtp::{ExtensionSerializer, ExtensionValues};

use super::dependency_descriptor::{
    DecodeTargetIndication, DependencyDescriptor, DependencyStructure, DescriptorError,
};
use super::selector::{ScalabilityStructure, SvcPacket, MAX_SPATIAL_LAYERS};

/// The most a header extension element holds (RFC 8285's two-byte form).
const MAX_EXTENSION_LEN: usize = 255;

/// A packet's Dependency Descriptor as received, shared (behind an `Arc`) by every copy of
/// the packet sent on.
#[derive(Clone, PartialEq, Eq)]
pub struct RawDependencyDescriptor {
    len: u8,
    bytes: [u8; MAX_EXTENSION_LEN],
}

impl std::fmt::Debug for RawDependencyDescriptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RawDependencyDescriptor({:02x?})", self.as_bytes())
    }
}

impl RawDependencyDescriptor {
    /// `None` past the extension's size limit.
    pub fn new(bytes: &[u8]) -> Option<Self> {
        let len = u8::try_from(bytes.len()).ok()?;
        let mut raw = Self {
            len,
            bytes: [0; MAX_EXTENSION_LEN],
        };
        raw.bytes[..bytes.len()].copy_from_slice(bytes);
        Some(raw)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// str0m's hook for the extension: received bytes go into the packet's user values as an
/// `Arc<RawDependencyDescriptor>`, and the same value on a written packet goes out.
#[derive(Debug)]
pub struct DependencyDescriptorExtension;

impl ExtensionSerializer for DependencyDescriptorExtension {
    fn write_to(&self, buf: &mut [u8], ev: &ExtensionValues) -> usize {
        let Some(raw) = ev.user_values.get::<RawDependencyDescriptor>() else {
            return 0;
        };
        let bytes = raw.as_bytes();
        match buf.get_mut(..bytes.len()) {
            Some(out) => {
                out.copy_from_slice(bytes);
                bytes.len()
            }
            None => 0,
        }
    }

    fn parse_value(&self, buf: &[u8], ev: &mut ExtensionValues) -> bool {
        // The three mandatory bytes at least; what they say is checked where they are read.
        let Some(raw) = RawDependencyDescriptor::new(buf).filter(|_| buf.len() >= 3) else {
            return false;
        };
        ev.user_values.set_arc(Arc::new(raw));
        true
    }

    fn is_video(&self) -> bool {
        true
    }

    fn is_audio(&self) -> bool {
        false
    }

    fn requires_two_byte_form(&self, ev: &ExtensionValues) -> bool {
        // The one-byte form holds 1 to 16 bytes; a descriptor with its structure is longer.
        ev.user_values
            .get::<RawDependencyDescriptor>()
            .is_some_and(|raw| raw.len > 16)
    }
}

/// Whether an AV1 payload's first packet starts a coded video sequence (the aggregation
/// header's N bit, AV1 RTP specification 4.4): a keyframe, where a decoder can start.
pub fn av1_starts_keyframe(payload: &[u8]) -> bool {
    payload.first().is_some_and(|header| header & 0x08 != 0)
}

/// One AV1 stream's template structure, as its last keyframe announced it.
#[derive(Debug, Default)]
pub struct Av1Layers {
    structure: Option<Box<DependencyStructure>>,
}

impl Av1Layers {
    /// Read one packet's descriptor into what the selector needs. A structure the packet
    /// carries replaces the one kept. Errors: a descriptor that is malformed or names a
    /// structure not received (the packet cannot be placed in a layer).
    pub fn read(
        &mut self,
        descriptor: &[u8],
        payload: &[u8],
    ) -> Result<SvcPacket, DescriptorError> {
        let (d, new_structure) =
            DependencyDescriptor::parse(descriptor, self.structure.as_deref())?;
        if let Some(s) = new_structure {
            match &mut self.structure {
                Some(kept) => **kept = s,
                None => self.structure = Some(Box::new(s)),
            }
        }
        let structure = self
            .structure
            .as_deref()
            .ok_or(DescriptorError::NoStructure)?;
        let mut switch_points = 0u8;
        for temporal in 0..8u8 {
            let switch = structure
                .decode_target_of(d.spatial, temporal)
                .is_some_and(|target| d.indication(target) == DecodeTargetIndication::Switch);
            if switch {
                switch_points |= 1 << temporal;
            }
        }
        // Needed above: some decode target of a higher spatial layer has this frame in it.
        let needed_above = (0..structure.decode_targets()).any(|target| {
            structure
                .decode_target_layers(target)
                .is_some_and(|(spatial, _)| spatial > d.spatial)
                && d.indication(target) != DecodeTargetIndication::NotPresent
        });
        let starts_picture = d.start_of_frame && d.spatial == 0;
        Ok(SvcPacket {
            spatial: d.spatial,
            temporal: d.temporal,
            starts_picture,
            starts_keyframe: starts_picture && av1_starts_keyframe(payload),
            ends_frame: d.end_of_frame,
            switch_points,
            structure: d.carries_structure.then(|| scalability(structure)),
            needed_above,
        })
    }
}

/// The spatial layers and sizes the selector and allocator use (the lowest three).
fn scalability(structure: &DependencyStructure) -> ScalabilityStructure {
    ScalabilityStructure {
        spatial_layers: structure.spatial_layers,
        sizes: structure.sizes.map(|sizes| {
            let mut kept = [(0, 0); MAX_SPATIAL_LAYERS];
            kept.copy_from_slice(&sizes[..MAX_SPATIAL_LAYERS]);
            kept
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::svc::{SvcLayers, SvcSelector, SvcVerdict};

    /// One packet of a fixture: sequence number, marker, aggregation header, descriptor.
    struct Captured {
        seq: u64,
        marker: bool,
        aggregation_header: u8,
        descriptor: Vec<u8>,
    }

    fn fixture(text: &str) -> Vec<Captured> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let hex = |s: &str| {
                    (0..s.len())
                        .step_by(2)
                        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
                        .collect::<Vec<u8>>()
                };
                Captured {
                    seq: fields[0].parse().expect("seq"),
                    marker: fields[1] == "1",
                    aggregation_header: hex(fields[2])[0],
                    descriptor: hex(fields[3]),
                }
            })
            .collect()
    }

    const L1T3: &str = include_str!("fixtures/chromium-av1-l1t3.txt");
    const L3T3: &str = include_str!("fixtures/chromium-av1-l3t3.txt");
    const L3T3_KEY: &str = include_str!("fixtures/chromium-av1-l3t3-key.txt");

    fn read_all(text: &str) -> Vec<(Captured, SvcPacket, DependencyDescriptor)> {
        let mut layers = Av1Layers::default();
        fixture(text)
            .into_iter()
            .map(|c| {
                let p = layers
                    .read(&c.descriptor, &[c.aggregation_header])
                    .unwrap_or_else(|e| panic!("packet {}: {e}", c.seq));
                let (d, _) =
                    DependencyDescriptor::parse(&c.descriptor, layers.structure.as_deref())
                        .expect("parses");
                (c, p, d)
            })
            .collect()
    }

    /// The descriptor rides each subscriber's copy of the extension values; vendored-str0m
    /// patch 4 shares their user values, so those copies do not copy a map each, and a copy
    /// changed later does not change the others.
    #[test]
    fn copies_of_the_extension_values_share_the_descriptor() {
        let raw = Arc::new(RawDependencyDescriptor::new(&[0x80, 0x00, 0x01]).expect("fits"));
        let mut original = ExtensionValues::default();
        original.user_values.set_arc(Arc::clone(&raw));
        let mut copy = original.clone();
        let shared = copy
            .user_values
            .get_arc::<RawDependencyDescriptor>()
            .expect("kept");
        assert!(Arc::ptr_eq(&shared, &raw));
        copy.user_values.remove::<RawDependencyDescriptor>();
        assert!(copy.user_values.get::<RawDependencyDescriptor>().is_none());
        assert_eq!(
            original.user_values.get::<RawDependencyDescriptor>(),
            Some(&*raw)
        );
        // Written out from either, byte for byte.
        let mut buf = [0u8; 8];
        assert_eq!(
            DependencyDescriptorExtension.write_to(&mut buf, &original),
            3
        );
        assert_eq!(&buf[..3], raw.as_bytes());
        assert_eq!(DependencyDescriptorExtension.write_to(&mut buf, &copy), 0);
    }

    #[test]
    fn chromium_structures_are_read() {
        for (text, spatial_layers) in [(L1T3, 1u8), (L3T3, 3), (L3T3_KEY, 3)] {
            let packets = read_all(text);
            let (first, p, d) = &packets[0];
            assert!(
                p.starts_keyframe && d.carries_structure,
                "packet {}",
                first.seq
            );
            let mut layers = Av1Layers::default();
            layers
                .read(&first.descriptor, &[first.aggregation_header])
                .expect("reads");
            let s = layers.structure.as_deref().expect("kept");
            assert_eq!(s.spatial_layers, spatial_layers);
            assert_eq!(s.decode_targets(), 3 * spatial_layers);
            for target in 0..s.decode_targets() {
                // Chromium numbers decode targets spatial-major: S0T0, S0T1, S0T2, S1T0...
                assert_eq!(
                    s.decode_target_layers(target),
                    Some((target / 3, target % 3))
                );
            }
            // Sizes as encoded (Chromium may start below the camera's 1280x720), each spatial
            // layer twice the one below.
            let sizes = p.structure.and_then(|st| st.sizes).expect("sizes");
            let top = usize::from(spatial_layers - 1);
            assert!(sizes[top].0 >= 320 && sizes[top].0 * 9 == sizes[top].1 * 16);
            for layer in 0..top {
                assert_eq!((sizes[layer].0 * 2, sizes[layer].1 * 2), sizes[layer + 1]);
            }
            // Temporal layers in Chromium's order T0 T2 T1 T2; T0 pictures are switching
            // points for every temporal layer, T1 ones for T2.
            let pictures: Vec<(u8, u8)> = packets
                .iter()
                .filter(|(_, p, _)| p.starts_picture)
                .map(|(_, p, _)| (p.temporal, p.switch_points))
                .collect();
            assert!(pictures.len() > 20);
            for (temporal, switch_points) in pictures {
                let want = match temporal {
                    0 => 0b111,
                    1 => 0b100,
                    _ => 0b000,
                };
                assert_eq!(switch_points, want, "a T{temporal} picture");
            }
        }
    }

    /// Runs a fixture through a selector whose target is `target_at(index)`; returns the
    /// verdicts, with each packet.
    fn select_all(
        packets: &[(Captured, SvcPacket, DependencyDescriptor)],
        target_at: impl Fn(usize) -> SvcLayers,
    ) -> Vec<SvcVerdict> {
        let mut selector = SvcSelector::default();
        packets
            .iter()
            .enumerate()
            .map(|(i, (c, p, _))| selector.select(target_at(i), p, c.marker, true))
            .collect()
    }

    #[test]
    fn each_decode_target_gets_exactly_the_frames_it_needs_and_one_marker_per_picture() {
        for text in [L1T3, L3T3, L3T3_KEY] {
            let packets = read_all(text);
            let spatial_layers = packets[0].1.structure.expect("structure").spatial_layers;
            for spatial in 0..spatial_layers {
                for temporal in 0..3 {
                    let target = SvcLayers { spatial, temporal };
                    let target_dt = spatial * 3 + temporal;
                    let verdicts = select_all(&packets, |_| target);
                    let mut markers_in_picture = Vec::new();
                    let mut last_forwarded_marker = None;
                    for ((c, p, d), verdict) in packets.iter().zip(&verdicts) {
                        if p.starts_picture {
                            if let Some(marker) = last_forwarded_marker.take() {
                                markers_in_picture.push(marker);
                            }
                        }
                        let needed = d.indication(target_dt) != DecodeTargetIndication::NotPresent;
                        // Exactly the frames the decode target has: k-SVC's lower layers
                        // only in keyframes, full SVC's always.
                        match *verdict {
                            SvcVerdict::Forward { marker, .. } => {
                                assert!(
                                    needed,
                                    "{target:?}: packet {} of S{}T{} forwarded",
                                    c.seq, p.spatial, p.temporal
                                );
                                last_forwarded_marker = Some(marker);
                            }
                            _ => assert!(!needed, "{target:?}: packet {} withheld", c.seq),
                        }
                    }
                    // Every picture with something forwarded ends on a marker.
                    assert!(
                        markers_in_picture.len() > 5,
                        "{target:?}: {markers_in_picture:?}"
                    );
                    assert!(markers_in_picture.iter().all(|&m| m), "{target:?}");
                }
            }
        }
    }

    #[test]
    fn temporal_steps_up_at_the_next_switching_point_spatial_ones_wait_for_a_keyframe() {
        let packets = read_all(L3T3);
        let last_key = packets
            .iter()
            .rposition(|(_, p, _)| p.starts_keyframe)
            .expect("keyframes");
        let from = last_key + 8;
        // At S1T0 until `from`, then S1T2: T2 frames of S1 follow from the next T0 or T1
        // picture on, without a keyframe.
        let verdicts = select_all(&packets, |i| SvcLayers {
            spatial: 1,
            temporal: if i < from { 0 } else { 2 },
        });
        let first_t2 = packets
            .iter()
            .zip(&verdicts)
            .position(|((_, p, _), v)| p.temporal == 2 && matches!(v, SvcVerdict::Forward { .. }))
            .expect("T2 frames forwarded after the raise");
        let pictures_waited = packets[from..first_t2]
            .iter()
            .filter(|(_, p, _)| p.starts_picture)
            .count();
        assert!(
            first_t2 > from && pictures_waited <= 4,
            "waited {pictures_waited} pictures"
        );
        // Raising the spatial layer instead: nothing of S2 until a keyframe, which is asked for.
        let verdicts = select_all(&packets, |i| SvcLayers {
            spatial: if i < from { 1 } else { 2 },
            temporal: 2,
        });
        for ((c, p, _), v) in packets.iter().zip(&verdicts).skip(from) {
            match v {
                SvcVerdict::Forward { wants_keyframe, .. } => {
                    assert!(p.spatial <= 1 && *wants_keyframe, "packet {}", c.seq)
                }
                SvcVerdict::Drop => assert_eq!(p.spatial, 2, "packet {}", c.seq),
                SvcVerdict::NeedKeyframe => panic!("the stream had started"),
            }
        }
    }
}
