//! The VP9 RTP payload descriptor (RFC 9628 section 4.2), read once per packet into a small
//! `Copy` value: the layer indices the selector decides on, the frame boundary bits it fixes
//! the marker from, and (on keyframes) the scalability structure's layer count and sizes for
//! the allocator. str0m's own VP9 depacketizer keeps its structure in `Vec`s; this one
//! allocates nothing.

use super::selector::{ScalabilityStructure, SvcPacket, MAX_SPATIAL_LAYERS};

/// What one packet's VP9 payload descriptor says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vp9Descriptor {
    /// Picture ID (7 or 15 bits), when present.
    pub picture_id: Option<u16>,
    /// P: the frame predicts from an earlier picture (clear on keyframes and on
    /// intra-only layer frames).
    pub inter_picture_predicted: bool,
    /// B: the first packet of a layer frame.
    pub begins_frame: bool,
    /// E: the last packet of a layer frame.
    pub ends_frame: bool,
    /// Temporal layer index (0 without layer indices).
    pub temporal: u8,
    /// Spatial layer index (0 without layer indices).
    pub spatial: u8,
    /// U: a temporal switching-up point: from this frame on, this temporal layer is
    /// decodable by someone who had only the lower ones.
    pub switching_up: bool,
    /// D: this layer frame depends on the lower spatial layer of the same picture.
    pub inter_layer_dependent: bool,
    /// From the scalability structure (sent with keyframes): how many spatial layers the
    /// stream has, and their sizes (lowest first) when the structure gives them.
    pub structure: Option<ScalabilityStructure>,
}

impl Vp9Descriptor {
    /// Parse the descriptor at the start of `payload`; `None` when it is truncated, or
    /// when no VP9 payload follows it.
    pub fn parse(payload: &[u8]) -> Option<Self> {
        let mut reader = Reader { payload, at: 0 };
        let first = reader.byte()?;
        let has_picture_id = first & 0x80 != 0;
        let has_layer_indices = first & 0x20 != 0;
        let flexible = first & 0x10 != 0;
        let has_structure = first & 0x02 != 0;
        let mut descriptor = Self {
            inter_picture_predicted: first & 0x40 != 0,
            begins_frame: first & 0x08 != 0,
            ends_frame: first & 0x04 != 0,
            ..Self::default()
        };
        if has_picture_id {
            let high = reader.byte()?;
            descriptor.picture_id = Some(if high & 0x80 != 0 {
                (u16::from(high & 0x7f) << 8) | u16::from(reader.byte()?)
            } else {
                u16::from(high & 0x7f)
            });
        }
        if has_layer_indices {
            let layers = reader.byte()?;
            descriptor.temporal = layers >> 5;
            descriptor.switching_up = layers & 0x10 != 0;
            descriptor.spatial = (layers >> 1) & 0x07;
            descriptor.inter_layer_dependent = layers & 0x01 != 0;
            if !flexible {
                reader.byte()?; // TL0PICIDX: passed through unchanged.
            }
        }
        if flexible && descriptor.inter_picture_predicted {
            // Up to three reference indices (P_DIFF), each with an N bit saying another follows.
            for _ in 0..3 {
                if reader.byte()? & 0x01 == 0 {
                    break;
                }
            }
        }
        if has_structure {
            descriptor.structure = Some(reader.structure()?);
        }
        (reader.at < payload.len()).then_some(descriptor)
    }

    /// The first packet of a keyframe: the base spatial layer's first packet, predicting
    /// from no earlier picture. A decoder (or a newly switched layer) can start here.
    pub fn starts_keyframe(&self) -> bool {
        self.begins_frame && self.spatial == 0 && !self.inter_picture_predicted
    }

    /// The first packet of a new picture (its lowest spatial layer's first packet): where
    /// layer choices may change without cutting a picture in half.
    pub fn starts_picture(&self) -> bool {
        self.begins_frame && self.spatial == 0
    }

    /// What the layer selector reads of it: U speaks for the frame's own temporal layer.
    /// `k_svc`: the stream's upper layers predict from the lower ones only in keyframe
    /// pictures (`inter_layer_only_at_keyframes`), so a frame predicted from an earlier
    /// picture is not needed above its own layer.
    pub fn svc_packet(&self, k_svc: bool) -> SvcPacket {
        SvcPacket {
            spatial: self.spatial,
            temporal: self.temporal,
            starts_picture: self.starts_picture(),
            starts_keyframe: self.starts_keyframe(),
            ends_frame: self.ends_frame,
            switch_points: if self.switching_up && self.temporal < 8 {
                1 << self.temporal
            } else {
                0
            },
            structure: self.structure,
            needed_above: !(k_svc && self.inter_picture_predicted),
        }
    }

    /// What a frame of an upper spatial layer says of the stream's structure: `Some(true)`
    /// for k-SVC (predicted from an earlier picture but not from the layer below), `Some(false)`
    /// for full SVC, `None` when this packet does not tell (a base layer frame, a keyframe
    /// picture, or not a frame's first packet).
    pub fn inter_layer_only_at_keyframes(&self) -> Option<bool> {
        (self.spatial > 0 && self.begins_frame && self.inter_picture_predicted)
            .then_some(!self.inter_layer_dependent)
    }
}

struct Reader<'a> {
    payload: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let byte = *self.payload.get(self.at)?;
        self.at += 1;
        Some(byte)
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes([self.byte()?, self.byte()?]))
    }

    /// The scalability structure (RFC 9628 4.2.1): N_S, Y (sizes follow), G (a picture
    /// group description follows, skipped here).
    fn structure(&mut self) -> Option<ScalabilityStructure> {
        let header = self.byte()?;
        let spatial_layers = (header >> 5) + 1;
        let mut structure = ScalabilityStructure {
            spatial_layers,
            sizes: None,
        };
        if header & 0x10 != 0 {
            let mut sizes = [(0, 0); MAX_SPATIAL_LAYERS];
            for layer in 0..usize::from(spatial_layers) {
                let size = (self.u16()?, self.u16()?);
                if let Some(slot) = sizes.get_mut(layer) {
                    *slot = size;
                }
            }
            structure.sizes = Some(sizes);
        }
        if header & 0x08 != 0 {
            let pictures = self.byte()?;
            for _ in 0..pictures {
                let picture = self.byte()?;
                for _ in 0..(picture >> 2) & 0x03 {
                    self.byte()?;
                }
            }
        }
        Some(structure)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_k_svc_keyframe_with_its_scalability_structure_is_read() {
        // I, B, V, L (non-flexible): picture id 0x1234 (15 bits), TID 0 U 0 SID 0 D 0,
        // TL0PICIDX 7, SS with N_S = 3, Y, G: sizes 320x180, 640x360, 1280x720, one picture
        // group entry with one reference.
        let packet = [
            0xaa, 0x92, 0x34, 0x00, 0x07, 0x58, 0x01, 0x40, 0x00, 0xb4, 0x02, 0x80, 0x01, 0x68,
            0x05, 0x00, 0x02, 0xd0, 0x01, 0x04, 0x01, 0xaa,
        ];
        let d = Vp9Descriptor::parse(&packet).expect("parses");
        assert_eq!(d.picture_id, Some(0x1234));
        assert!(d.starts_keyframe() && d.starts_picture() && !d.ends_frame);
        assert_eq!((d.spatial, d.temporal), (0, 0));
        assert_eq!(
            d.structure,
            Some(ScalabilityStructure {
                spatial_layers: 3,
                sizes: Some([(320, 180), (640, 360), (1280, 720)]),
            })
        );
    }

    #[test]
    fn layer_indices_and_frame_bits_are_read() {
        // I (7-bit id 5), P, L, E: TID 2, U, SID 1, D; TL0PICIDX; payload.
        let packet = [0xe4, 0x05, 0x53, 0x09, 0xaa];
        let d = Vp9Descriptor::parse(&packet).expect("parses");
        assert_eq!(d.picture_id, Some(5));
        assert_eq!((d.spatial, d.temporal), (1, 2));
        assert!(d.switching_up && d.inter_layer_dependent && d.ends_frame);
        assert!(d.inter_picture_predicted && !d.begins_frame);
        assert!(!d.starts_keyframe() && !d.starts_picture());
        // Flexible mode: no TL0PICIDX, P_DIFF bytes (two, the first with N set) instead.
        let flexible = [0xf8, 0x05, 0x40, 0x03, 0x02, 0xaa];
        let d = Vp9Descriptor::parse(&flexible).expect("parses");
        assert_eq!((d.spatial, d.temporal), (0, 2));
        assert!(d.starts_picture());
    }

    #[test]
    fn truncated_descriptors_are_refused() {
        assert_eq!(Vp9Descriptor::parse(&[]), None);
        assert_eq!(Vp9Descriptor::parse(&[0x08]), None, "no payload after it");
        assert_eq!(Vp9Descriptor::parse(&[0x80, 0x92]), None);
        assert_eq!(Vp9Descriptor::parse(&[0xa8, 0x01, 0x00]), None);
        assert_eq!(Vp9Descriptor::parse(&[0x0a, 0x50, 0x01]), None, "short SS");
        assert_eq!(
            Vp9Descriptor::parse(&[0x08, 0xaa]).map(|d| d.starts_keyframe()),
            Some(true),
            "no optional fields at all"
        );
    }
}
