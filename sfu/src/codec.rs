//! What the forwarder needs to know about a payload: its codec (from the payload type), its
//! clock rate, and whether a packet starts a keyframe. Mapping payload types between peers
//! lives here too, because each peer negotiates its own numbers for the same codec.

use str0m::format::{Codec, CodecConfig};
use str0m::media::Pt;
use str0m::rtp::Vp8Descriptor;

/// Codecs the SFU forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardedCodec {
    Opus,
    Vp8,
    H264,
}

impl ForwardedCodec {
    pub fn from_str0m(codec: Codec) -> Option<Self> {
        match codec {
            Codec::Opus => Some(Self::Opus),
            Codec::Vp8 => Some(Self::Vp8),
            Codec::H264 => Some(Self::H264),
            _ => None,
        }
    }

    /// Whether this packet is the first packet of a keyframe, where a decoder can start.
    pub fn starts_keyframe(self, payload: &[u8]) -> bool {
        match self {
            Self::Opus => true,
            Self::Vp8 => Vp8Descriptor::parse(payload)
                .map(|d| d.starts_keyframe(payload))
                .unwrap_or(false),
            Self::H264 => h264_has_idr(payload),
        }
    }
}

/// The VP8 payload descriptor fields the forwarder rewrites (RFC 7741 4.2), and where the
/// VP8 payload itself starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8Header {
    pub picture_id: Option<u16>,
    pub tl0: Option<u8>,
    pub descriptor_len: usize,
}

impl Vp8Header {
    pub fn parse(payload: &[u8]) -> Option<Self> {
        let first = *payload.first()?;
        let mut at = 1;
        let mut header = Self {
            picture_id: None,
            tl0: None,
            descriptor_len: 0,
        };
        if first & 0x80 != 0 {
            let ext = *payload.get(at)?;
            at += 1;
            if ext & 0x80 != 0 {
                let hi = *payload.get(at)?;
                at += 1;
                header.picture_id = Some(if hi & 0x80 != 0 {
                    let lo = *payload.get(at)?;
                    at += 1;
                    (u16::from(hi & 0x7f) << 8) | u16::from(lo)
                } else {
                    u16::from(hi & 0x7f)
                });
            }
            if ext & 0x40 != 0 {
                header.tl0 = Some(*payload.get(at)?);
                at += 1;
            }
            if ext & 0x30 != 0 {
                at += 1; // TID/Y/KEYIDX
            }
        }
        (at < payload.len()).then_some(Self {
            descriptor_len: at,
            ..header
        })
    }
}

/// Whether an H.264 RTP payload (RFC 6184) carries an IDR slice: as a single NAL unit, inside
/// a STAP-A aggregate, or as the first fragment of an FU-A.
fn h264_has_idr(payload: &[u8]) -> bool {
    const IDR: u8 = 5;
    const STAP_A: u8 = 24;
    const FU_A: u8 = 28;
    let Some(&first) = payload.first() else {
        return false;
    };
    match first & 0x1f {
        IDR => true,
        STAP_A => {
            let mut rest = &payload[1..];
            while let [hi, lo, nal, ..] = *rest {
                if nal & 0x1f == IDR {
                    return true;
                }
                let len = usize::from(u16::from_be_bytes([hi, lo]));
                match rest.get(2 + len..) {
                    Some(next) if len > 0 => rest = next,
                    _ => return false,
                }
            }
            false
        }
        FU_A => payload
            .get(1)
            .is_some_and(|fu| fu & 0x80 != 0 && fu & 0x1f == IDR),
        _ => false,
    }
}

/// Payload type of one peer -> codec, and codec -> payload type, as that peer negotiated.
///
/// A peer negotiates a handful of payload types; a linear scan over a small array beats a
/// hash map here and allocates nothing per packet.
#[derive(Debug, Clone, Default)]
pub struct PayloadTypes {
    entries: Vec<(Pt, ForwardedCodec)>,
}

impl PayloadTypes {
    /// The payload types of the codecs this peer's `Rtc` has negotiated (its main ones, not RTX).
    pub fn from_config(config: &CodecConfig) -> Self {
        let entries = config
            .params()
            .iter()
            .filter_map(|p| {
                let codec = ForwardedCodec::from_str0m(p.spec().codec)?;
                // H.264 comes in several profiles; forward packetization-mode 1 only, which
                // every browser offers, so a subscriber can decode what a publisher sends.
                if codec == ForwardedCodec::H264 && p.spec().format.packetization_mode != Some(1) {
                    return None;
                }
                Some((p.pt(), codec))
            })
            .collect();
        Self { entries }
    }

    pub fn codec(&self, pt: Pt) -> Option<ForwardedCodec> {
        self.entries.iter().find(|(p, _)| *p == pt).map(|(_, c)| *c)
    }

    pub fn pt(&self, codec: ForwardedCodec) -> Option<Pt> {
        self.entries
            .iter()
            .find(|(_, c)| *c == codec)
            .map(|(p, _)| *p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp8_keyframe_start_is_detected() {
        // Descriptor: X=1, S=1, PID=0; I=1 with 15-bit picture id; then a keyframe tag (P=0).
        let key = [0x90, 0x80, 0x81, 0x23, 0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a];
        assert!(ForwardedCodec::Vp8.starts_keyframe(&key));
        // Same, with P=1 (interframe).
        let delta = [0x90, 0x80, 0x81, 0x23, 0x11, 0x02, 0x00];
        assert!(!ForwardedCodec::Vp8.starts_keyframe(&delta));
        // A continuation packet (S=0) never starts a keyframe.
        let cont = [0x80, 0x80, 0x81, 0x23, 0x10, 0x02, 0x00];
        assert!(!ForwardedCodec::Vp8.starts_keyframe(&cont));
        // Garbage and truncated payloads are simply "not a keyframe".
        assert!(!ForwardedCodec::Vp8.starts_keyframe(&[]));
        assert!(!ForwardedCodec::Vp8.starts_keyframe(&[0x90, 0x80]));
    }

    #[test]
    fn vp8_descriptor_fields_are_read() {
        // X, I (15-bit 0x0123), L (tl0 7), T (tid byte), then payload.
        let p = [0x90, 0xe0, 0x81, 0x23, 0x07, 0x20, 0xaa];
        assert_eq!(
            Vp8Header::parse(&p),
            Some(Vp8Header {
                picture_id: Some(0x123),
                tl0: Some(7),
                descriptor_len: 6
            })
        );
        // 7-bit picture id, nothing else.
        assert_eq!(
            Vp8Header::parse(&[0x80, 0x80, 0x05, 0xaa]),
            Some(Vp8Header {
                picture_id: Some(5),
                tl0: None,
                descriptor_len: 3
            })
        );
        // No extension at all.
        assert_eq!(
            Vp8Header::parse(&[0x10, 0xaa]).map(|h| h.descriptor_len),
            Some(1)
        );
        // Truncated descriptors, and a descriptor with no payload after it.
        assert_eq!(Vp8Header::parse(&[0x90, 0xe0, 0x81]), None);
        assert_eq!(
            Vp8Header::parse(&[0x90, 0xe0, 0x81, 0x23, 0x07, 0x20]),
            None
        );
        assert_eq!(Vp8Header::parse(&[]), None);
    }

    #[test]
    fn h264_idr_is_a_keyframe() {
        // Single NAL unit packet, type 5 (IDR slice).
        assert!(ForwardedCodec::H264.starts_keyframe(&[0x65, 0x88, 0x84]));
        // Type 1 (non-IDR slice).
        assert!(!ForwardedCodec::H264.starts_keyframe(&[0x41, 0x9a]));
        // STAP-A with SPS (7), PPS (8) and an IDR.
        let stap = [
            0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x01, 0x68, 0x00, 0x02, 0x65, 0x88,
        ];
        assert!(ForwardedCodec::H264.starts_keyframe(&stap));
        // STAP-A whose length field runs past the end is not a keyframe, and does not panic.
        assert!(!ForwardedCodec::H264.starts_keyframe(&[0x78, 0xff, 0xff, 0x67]));
        // FU-A start fragment of an IDR, and a middle fragment of one.
        assert!(ForwardedCodec::H264.starts_keyframe(&[0x7c, 0x85, 0x00]));
        assert!(!ForwardedCodec::H264.starts_keyframe(&[0x7c, 0x05, 0x00]));
    }
}
