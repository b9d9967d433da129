//! The Dependency Descriptor RTP header extension (AV1 RTP specification, appendix A), which
//! says of each packet which layer frame it belongs to. Chromium sends it with AV1; an SFU
//! reads it to select layers without looking into the (possibly encrypted) payload.
//!
//! The descriptor is stateful: every packet names a *frame dependency template* by id, and
//! the templates (with each one's spatial and temporal layer and its decode target
//! indications) arrive only now and then, in the *template dependency structure* that
//! Chromium attaches to keyframes. [`DependencyStructure`] is that structure, kept per track;
//! [`DependencyDescriptor::parse`] reads one packet's descriptor against it (or against the
//! structure the packet itself carries, which then replaces it).
//!
//! Only what the forwarder needs is kept: layer ids, decode target indications, and the
//! spatial layers' sizes. Frame and chain diffs are read past; the descriptor itself is
//! forwarded unchanged, so the receiver gets them as sent. Nothing here allocates.

use thiserror::Error;

/// The extension's URI in SDP (`a=extmap`).
pub const DEPENDENCY_DESCRIPTOR_URI: &str =
    "https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension";

/// Templates a structure may hold: the template id has 6 bits.
const MAX_TEMPLATES: usize = 64;
/// Decode targets a structure may hold: `dt_cnt_minus_one` has 5 bits.
pub const MAX_DECODE_TARGETS: usize = 32;
/// Spatial layers kept: AV1 operating points allow four.
pub const MAX_DD_SPATIAL_LAYERS: usize = 4;
/// Temporal layers: AV1's temporal_id has three bits.
const MAX_DD_TEMPORAL_LAYERS: usize = 8;
/// `DependencyStructure::target_by_layers`: no decode target of these layers.
const NO_TARGET: u8 = u8::MAX;

/// A decode target indication (table A.1): what a frame is to one decode target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeTargetIndication {
    /// Not part of the decode target.
    NotPresent = 0,
    /// Part of it, but no later frame of the target depends on it.
    Discardable = 1,
    /// Part of it, and a switching point: from this frame on, the target is decodable by a
    /// receiver that has had the frames of the target's chain.
    Switch = 2,
    /// Part of it, and later frames depend on it.
    Required = 3,
}

impl DecodeTargetIndication {
    fn from_bits(bits: u64) -> Self {
        match bits & 0x03 {
            0 => Self::NotPresent,
            1 => Self::Discardable,
            2 => Self::Switch,
            _ => Self::Required,
        }
    }
}

#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum DescriptorError {
    #[error("dependency descriptor truncated")]
    Truncated,
    #[error("dependency descriptor names no known template structure")]
    NoStructure,
    #[error("dependency descriptor names template {0}, which the structure does not have")]
    UnknownTemplate(u8),
    #[error("dependency structure has more than {MAX_DD_SPATIAL_LAYERS} spatial layers")]
    TooManySpatialLayers,
    #[error("dependency structure has more than {MAX_DD_TEMPORAL_LAYERS} temporal layers")]
    TooManyTemporalLayers,
    #[error("dependency structure has more than {MAX_TEMPLATES} templates")]
    TooManyTemplates,
}

/// The template dependency structure: the templates a packet's descriptor names, and what
/// each decode target is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DependencyStructure {
    template_id_offset: u8,
    decode_targets: u8,
    chains: u8,
    templates: u8,
    /// Per template: (spatial id, temporal id).
    template_layers: [(u8, u8); MAX_TEMPLATES],
    /// Per template: two bits per decode target, decode target 0 in the lowest bits.
    template_dtis: [u64; MAX_TEMPLATES],
    /// Per decode target: the highest (spatial id, temporal id) among the templates in it.
    decode_target_layers: [(u8, u8); MAX_DECODE_TARGETS],
    /// The other way round, looked up per packet: the first decode target of each (spatial
    /// id, temporal id), `NO_TARGET` where there is none.
    target_by_layers: [[u8; MAX_DD_TEMPORAL_LAYERS]; MAX_DD_SPATIAL_LAYERS],
    /// The number of spatial layers (highest spatial id plus one).
    pub spatial_layers: u8,
    /// The render size of each spatial layer, when the structure gives them.
    pub sizes: Option<[(u16, u16); MAX_DD_SPATIAL_LAYERS]>,
}

impl DependencyStructure {
    pub fn decode_targets(&self) -> u8 {
        self.decode_targets
    }

    /// The spatial and temporal layer of a decode target.
    pub fn decode_target_layers(&self, target: u8) -> Option<(u8, u8)> {
        (target < self.decode_targets).then(|| self.decode_target_layers[usize::from(target)])
    }

    /// The decode target with exactly these layers, if the structure has one.
    pub fn decode_target_of(&self, spatial: u8, temporal: u8) -> Option<u8> {
        let target = *self
            .target_by_layers
            .get(usize::from(spatial))?
            .get(usize::from(temporal))?;
        (target != NO_TARGET).then_some(target)
    }
}

/// What one packet's descriptor says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DependencyDescriptor {
    /// The first packet of a layer frame.
    pub start_of_frame: bool,
    /// The last packet of a layer frame.
    pub end_of_frame: bool,
    pub frame_number: u16,
    pub spatial: u8,
    pub temporal: u8,
    /// This packet carries the template structure (Chromium attaches it to keyframes).
    pub carries_structure: bool,
    /// The decode targets the sender says are active, when it says.
    pub active_decode_targets: Option<u32>,
    decode_targets: u8,
    /// Two bits per decode target, as in `DependencyStructure::template_dtis`.
    dtis: u64,
}

impl DependencyDescriptor {
    /// Read a descriptor. `structure` is the one last received for the stream; when the
    /// packet carries a structure of its own, the descriptor is read against that one, and
    /// it is returned so the caller keeps it from now on.
    pub fn parse(
        bytes: &[u8],
        structure: Option<&DependencyStructure>,
    ) -> Result<(Self, Option<DependencyStructure>), DescriptorError> {
        let mut r = BitReader::new(bytes);
        let start_of_frame = r.bit()?;
        let end_of_frame = r.bit()?;
        let template_id = r.bits(6)? as u8;
        let frame_number = r.bits(16)? as u16;

        let mut custom_dtis = false;
        let mut custom_fdiffs = false;
        let mut custom_chains = false;
        let mut active_decode_targets = None;
        let mut own_structure = None;
        if bytes.len() > 3 {
            let structure_present = r.bit()?;
            let active_present = r.bit()?;
            custom_dtis = r.bit()?;
            custom_fdiffs = r.bit()?;
            custom_chains = r.bit()?;
            if structure_present {
                let parsed = read_structure(&mut r)?;
                active_decode_targets = Some(all_targets(parsed.decode_targets));
                own_structure = Some(parsed);
            }
            if active_present {
                let count = own_structure
                    .as_ref()
                    .or(structure)
                    .ok_or(DescriptorError::NoStructure)?
                    .decode_targets;
                active_decode_targets = Some(r.bits(u32::from(count))? as u32);
            }
        }
        let s = own_structure
            .as_ref()
            .or(structure)
            .ok_or(DescriptorError::NoStructure)?;
        let index = (usize::from(template_id) + MAX_TEMPLATES - usize::from(s.template_id_offset))
            % MAX_TEMPLATES;
        if index >= usize::from(s.templates) {
            return Err(DescriptorError::UnknownTemplate(template_id));
        }
        let (spatial, temporal) = s.template_layers[index];
        let dtis = if custom_dtis {
            let mut dtis = 0u64;
            for target in 0..u32::from(s.decode_targets) {
                dtis |= r.bits(2)? << (2 * target);
            }
            dtis
        } else {
            s.template_dtis[index]
        };
        if custom_fdiffs {
            // next_fdiff_size, then an fdiff of 4 * size bits, until a size of 0.
            loop {
                let size = r.bits(2)? as u32;
                if size == 0 {
                    break;
                }
                r.bits(4 * size)?;
            }
        }
        if custom_chains {
            for _ in 0..s.chains {
                r.bits(8)?;
            }
        }
        let descriptor = Self {
            start_of_frame,
            end_of_frame,
            frame_number,
            spatial,
            temporal,
            carries_structure: own_structure.is_some(),
            active_decode_targets,
            decode_targets: s.decode_targets,
            dtis,
        };
        Ok((descriptor, own_structure))
    }

    /// What this frame is to decode target `target` (`NotPresent` past the last one).
    pub fn indication(&self, target: u8) -> DecodeTargetIndication {
        if target >= self.decode_targets {
            return DecodeTargetIndication::NotPresent;
        }
        DecodeTargetIndication::from_bits(self.dtis >> (2 * u32::from(target)))
    }
}

fn all_targets(count: u8) -> u32 {
    if count >= 32 {
        u32::MAX
    } else {
        (1u32 << count) - 1
    }
}

/// `template_dependency_structure()` (A.8.2 of the specification), with the derived
/// decode target layers.
fn read_structure(r: &mut BitReader<'_>) -> Result<DependencyStructure, DescriptorError> {
    let template_id_offset = r.bits(6)? as u8;
    let decode_targets = r.bits(5)? as u8 + 1;
    let mut s = DependencyStructure {
        template_id_offset,
        decode_targets,
        chains: 0,
        templates: 0,
        template_layers: [(0, 0); MAX_TEMPLATES],
        template_dtis: [0; MAX_TEMPLATES],
        decode_target_layers: [(0, 0); MAX_DECODE_TARGETS],
        target_by_layers: [[NO_TARGET; MAX_DD_TEMPORAL_LAYERS]; MAX_DD_SPATIAL_LAYERS],
        spatial_layers: 1,
        sizes: None,
    };

    // template_layers(): each template's layers, as steps from the previous one.
    let (mut spatial, mut temporal) = (0u8, 0u8);
    loop {
        let index = usize::from(s.templates);
        if index >= MAX_TEMPLATES {
            return Err(DescriptorError::TooManyTemplates);
        }
        s.template_layers[index] = (spatial, temporal);
        s.templates += 1;
        match r.bits(2)? {
            0 => {}
            1 => {
                temporal += 1;
                if usize::from(temporal) >= MAX_DD_TEMPORAL_LAYERS {
                    return Err(DescriptorError::TooManyTemporalLayers);
                }
            }
            2 => {
                temporal = 0;
                spatial += 1;
                if usize::from(spatial) >= MAX_DD_SPATIAL_LAYERS {
                    return Err(DescriptorError::TooManySpatialLayers);
                }
            }
            _ => break,
        }
    }
    s.spatial_layers = spatial + 1;
    let templates = usize::from(s.templates);

    // template_dtis()
    for dtis in &mut s.template_dtis[..templates] {
        for target in 0..u32::from(decode_targets) {
            *dtis |= r.bits(2)? << (2 * target);
        }
    }
    // template_fdiffs(): read past.
    for _ in 0..templates {
        while r.bit()? {
            r.bits(4)?;
        }
    }
    // template_chains()
    s.chains = r.non_symmetric(u32::from(decode_targets) + 1)? as u8;
    if s.chains > 0 {
        for _ in 0..decode_targets {
            r.non_symmetric(u32::from(s.chains))?;
        }
        for _ in 0..templates {
            for _ in 0..s.chains {
                r.bits(4)?;
            }
        }
    }
    // decode_target_layers(): derived, not sent.
    for target in 0..usize::from(decode_targets) {
        let mut layers = (0, 0);
        for (index, &(spatial, temporal)) in s.template_layers[..templates].iter().enumerate() {
            let present = (s.template_dtis[index] >> (2 * target)) & 0x03 != 0;
            if present {
                layers.0 = layers.0.max(spatial);
                layers.1 = layers.1.max(temporal);
            }
        }
        s.decode_target_layers[target] = layers;
        // (Layer ids past the table were refused in template_layers().)
        let slot = s
            .target_by_layers
            .get_mut(usize::from(layers.0))
            .and_then(|row| row.get_mut(usize::from(layers.1)));
        if let Some(slot) = slot.filter(|slot| **slot == NO_TARGET) {
            *slot = target as u8;
        }
    }
    // render_resolutions()
    if r.bit()? {
        let mut sizes = [(0, 0); MAX_DD_SPATIAL_LAYERS];
        for size in &mut sizes[..usize::from(s.spatial_layers)] {
            let width = r.bits(16)? as u16;
            let height = r.bits(16)? as u16;
            *size = (width.saturating_add(1), height.saturating_add(1));
        }
        s.sizes = Some(sizes);
    }
    Ok(s)
}

/// Reads bits most significant first, as the specification's `f(n)`.
struct BitReader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> BitReader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    fn bit(&mut self) -> Result<bool, DescriptorError> {
        let byte = self
            .bytes
            .get(self.at / 8)
            .ok_or(DescriptorError::Truncated)?;
        let bit = (byte >> (7 - self.at % 8)) & 1;
        self.at += 1;
        Ok(bit == 1)
    }

    /// `f(n)`, n at most 32.
    fn bits(&mut self, n: u32) -> Result<u64, DescriptorError> {
        let mut value = 0u64;
        for _ in 0..n {
            value = (value << 1) | u64::from(self.bit()?);
        }
        Ok(value)
    }

    /// `ns(n)`: a value below `n` in as few bits as its range needs.
    fn non_symmetric(&mut self, n: u32) -> Result<u32, DescriptorError> {
        if n <= 1 {
            return Ok(0);
        }
        let width = 32 - n.leading_zeros();
        let m = (1u32 << width) - n;
        let v = self.bits(width - 1)? as u32;
        if v < m {
            return Ok(v);
        }
        let extra = u32::from(self.bit()?);
        Ok((v << 1) - m + extra)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds bit strings the way the specification lays them out, for hand-made vectors.
    #[derive(Default)]
    struct BitWriter {
        bytes: Vec<u8>,
        bits: usize,
    }

    impl BitWriter {
        fn put(&mut self, value: u64, n: u32) -> &mut Self {
            for i in (0..n).rev() {
                if self.bits.is_multiple_of(8) {
                    self.bytes.push(0);
                }
                let bit = ((value >> i) & 1) as u8;
                let last = self.bytes.len() - 1;
                self.bytes[last] |= bit << (7 - self.bits % 8);
                self.bits += 1;
            }
            self
        }
    }

    /// An L1T3 structure as libwebrtc writes it: four templates (key, T0, T1, T2 twice),
    /// three decode targets, one chain.
    fn l1t3_structure(w: &mut BitWriter) {
        w.put(0, 6); // template_id_offset
        w.put(2, 5); // three decode targets
                     // Templates S0T0, S0T0, S0T1, S0T2, S0T2: next_layer_idc 0, 1, 1, 0, 3.
        for idc in [0, 1, 1, 0, 3] {
            w.put(idc, 2);
        }
        // DTIs per template, decode target 0 first: SSS, SSS, -DS? (T1: -, D... as below).
        let dtis: [[u64; 3]; 5] = [
            [2, 2, 2], // key
            [3, 3, 3], // T0
            [0, 1, 3], // T1: discardable for DT1, required for DT2
            [0, 0, 1], // T2
            [0, 0, 1], // T2
        ];
        for template in dtis {
            for dti in template {
                w.put(dti, 2);
            }
        }
        // fdiffs: none for the key, 4 for T0, 2 for T1, 1 for each T2.
        w.put(0, 1);
        for fdiff in [4u64, 2, 1, 1] {
            w.put(1, 1).put(fdiff - 1, 4).put(0, 1);
        }
        // One chain (ns(4) of 1: three bits wide range, value 1 -> "01"), protecting all
        // three decode targets (ns(1): no bits), chain fdiffs per template.
        w.put(1, 2);
        for fdiff in [0u64, 4, 2, 1, 3] {
            w.put(fdiff, 4);
        }
        w.put(1, 1); // resolutions present
        w.put(1279, 16).put(719, 16);
    }

    #[test]
    fn a_keyframe_descriptor_with_its_structure_is_read() {
        let mut w = BitWriter::default();
        w.put(1, 1).put(0, 1).put(0, 6).put(0x1234, 16); // start, template 0, frame 0x1234
        w.put(1, 1).put(0, 4); // structure present, no other flags
        l1t3_structure(&mut w);
        let (d, structure) = DependencyDescriptor::parse(&w.bytes, None).expect("parses");
        let s = structure.expect("the packet's own structure");
        assert!(d.start_of_frame && !d.end_of_frame && d.carries_structure);
        assert_eq!(d.frame_number, 0x1234);
        assert_eq!((d.spatial, d.temporal), (0, 0));
        assert_eq!(d.active_decode_targets, Some(0b111));
        assert_eq!(s.decode_targets(), 3);
        assert_eq!(s.spatial_layers, 1);
        assert_eq!(s.sizes.map(|sizes| sizes[0]), Some((1280, 720)));
        assert_eq!(
            (0..3)
                .map(|t| s.decode_target_layers(t))
                .collect::<Vec<_>>(),
            [Some((0, 0)), Some((0, 1)), Some((0, 2))]
        );
        assert_eq!(s.decode_target_of(0, 1), Some(1));
        for target in 0..3 {
            assert_eq!(d.indication(target), DecodeTargetIndication::Switch);
        }
        assert_eq!(d.indication(3), DecodeTargetIndication::NotPresent);

        // A later three-byte descriptor (mandatory fields only) of template 3: a T2 frame.
        let (d, none) = DependencyDescriptor::parse(&[0xc3, 0x12, 0x36], Some(&s)).expect("parses");
        assert!(none.is_none());
        assert!(d.start_of_frame && d.end_of_frame && !d.carries_structure);
        assert_eq!((d.spatial, d.temporal, d.frame_number), (0, 2, 0x1236));
        assert_eq!(d.indication(0), DecodeTargetIndication::NotPresent);
        assert_eq!(d.indication(2), DecodeTargetIndication::Discardable);
    }

    #[test]
    fn custom_indications_fdiffs_chains_and_active_targets_are_read() {
        let mut w = BitWriter::default();
        w.put(1, 1).put(0, 1).put(0, 6).put(7, 16);
        w.put(1, 1).put(0, 4);
        l1t3_structure(&mut w);
        let (_, s) = DependencyDescriptor::parse(&w.bytes, None).expect("parses");
        let s = s.expect("structure");

        let mut w = BitWriter::default();
        w.put(0, 1).put(1, 1).put(2, 6).put(8, 16); // end of frame, template 2 (T1)
                                                    // active targets, custom DTIs, custom fdiffs, custom chains.
        w.put(0, 1).put(1, 1).put(1, 1).put(1, 1).put(1, 1);
        w.put(0b011, 3); // decode targets 0 and 1 active
        w.put(2, 2).put(2, 2).put(0, 2); // DTIs: switch, switch, not present
        w.put(2, 2).put(0x21, 8).put(0, 2); // one fdiff of two nibbles
        w.put(5, 8); // the one chain's fdiff
        let (d, _) = DependencyDescriptor::parse(&w.bytes, Some(&s)).expect("parses");
        assert_eq!((d.spatial, d.temporal), (0, 1));
        assert_eq!(d.active_decode_targets, Some(0b011));
        assert_eq!(d.indication(0), DecodeTargetIndication::Switch);
        assert_eq!(d.indication(1), DecodeTargetIndication::Switch);
        assert_eq!(d.indication(2), DecodeTargetIndication::NotPresent);
        // The same descriptor cut short is refused, never misread (three bytes are a whole
        // descriptor of the mandatory fields alone).
        for len in (0..3).chain(4..w.bytes.len()) {
            assert!(
                DependencyDescriptor::parse(&w.bytes[..len], Some(&s)).is_err(),
                "cut at {len}"
            );
        }
    }

    #[test]
    fn descriptors_without_a_known_structure_or_template_are_refused() {
        assert_eq!(
            DependencyDescriptor::parse(&[0x80, 0x00, 0x01], None),
            Err(DescriptorError::NoStructure)
        );
        let mut w = BitWriter::default();
        w.put(1, 1).put(0, 1).put(0, 6).put(0, 16);
        w.put(1, 1).put(0, 4);
        l1t3_structure(&mut w);
        let (_, s) = DependencyDescriptor::parse(&w.bytes, None).expect("parses");
        let s = s.expect("structure");
        assert_eq!(
            DependencyDescriptor::parse(&[0x85, 0x00, 0x01], Some(&s)),
            Err(DescriptorError::UnknownTemplate(5))
        );
    }

    #[test]
    fn structures_past_the_limits_are_refused() {
        // Five spatial layers: next_layer_idc 2 four times.
        let mut w = BitWriter::default();
        w.put(1, 1).put(0, 1).put(0, 6).put(0, 16);
        w.put(1, 1).put(0, 4);
        w.put(0, 6).put(0, 5);
        for _ in 0..4 {
            w.put(2, 2);
        }
        w.put(3, 2);
        w.put(0, 32);
        assert_eq!(
            DependencyDescriptor::parse(&w.bytes, None),
            Err(DescriptorError::TooManySpatialLayers)
        );
        // 65 templates of the same layer.
        let mut w = BitWriter::default();
        w.put(1, 1).put(0, 1).put(0, 6).put(0, 16);
        w.put(1, 1).put(0, 4);
        w.put(0, 6).put(0, 5);
        for _ in 0..70 {
            w.put(0, 2);
        }
        assert_eq!(
            DependencyDescriptor::parse(&w.bytes, None),
            Err(DescriptorError::TooManyTemplates)
        );
    }

    #[test]
    fn non_symmetric_values_decode_as_the_specification_writes_them() {
        // ns(5): w = 3, m = 3; values 0..2 in two bits, 3 and 4 in three.
        for (bits, len, want) in [(0b00, 2, 0), (0b10, 2, 2), (0b110, 3, 3), (0b111, 3, 4)] {
            let mut w = BitWriter::default();
            w.put(bits, len).put(0, 8);
            assert_eq!(BitReader::new(&w.bytes).non_symmetric(5), Ok(want));
        }
        assert_eq!(BitReader::new(&[]).non_symmetric(1), Ok(0));
    }
}
