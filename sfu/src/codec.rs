//! What the forwarder needs to know about a payload: its codec (from the payload type), its
//! clock rate, and whether a packet starts a keyframe. Mapping payload types between peers
//! lives here too, because each peer negotiates its own numbers for the same codec.

use str0m::format::{Codec, CodecConfig};
use str0m::media::Pt;

use crate::svc::{av1_starts_keyframe, Vp9Descriptor};

/// Codecs the SFU forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardedCodec {
    Opus,
    /// Opus wrapped in RFC 2198 redundancy (`audio/red`): each packet repeats the previous
    /// frame(s) before its own (`red::RedPayload`). A subscriber without RED gets the
    /// primary block as plain Opus.
    OpusRed,
    Vp8,
    /// H.264 in packetization mode 1, of one profile: a subscriber gets it on its payload
    /// type of the same profile when it negotiated one.
    H264(H264Profile),
    /// VP9 of one profile (`profile-id` 0, 8-bit 4:2:0, or 2, 10-bit): a subscriber gets it
    /// only on a payload type of the same profile, since a profile 0 decoder cannot decode
    /// profile 2. Possibly scalable (SVC): `svc::Vp9Descriptor` says which layer a packet is.
    Vp9 {
        profile: u8,
    },
    /// AV1 of the main profile (`profile` 0 or absent: 8- and 10-bit 4:2:0, what browsers
    /// encode and every AV1 decoder takes). Possibly scalable: the Dependency Descriptor
    /// header extension says which layer a packet is (`svc::Av1Layers`).
    Av1,
}

/// The profile part of an H.264 `profile-level-id` (RFC 6184 8.1): the level does not
/// matter to a decoder's choice of payload type, the profile (and whether a baseline is the
/// constrained one) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H264Profile {
    profile_idc: u8,
    constrained_baseline: bool,
}

impl H264Profile {
    pub fn new(profile_idc: u8, constrained_baseline: bool) -> Self {
        Self {
            profile_idc,
            constrained_baseline,
        }
    }

    pub fn profile_idc(self) -> u8 {
        self.profile_idc
    }

    pub fn constrained_baseline(self) -> bool {
        self.constrained_baseline
    }

    /// From a `profile-level-id` (absent: RFC 6184's default, baseline).
    pub fn from_profile_level_id(profile_level_id: Option<u32>) -> Self {
        let [_, profile_idc, profile_iop, _] = profile_level_id.unwrap_or(0x42_00_0a).to_be_bytes();
        Self {
            profile_idc,
            // Constrained baseline is baseline (0x42) with constraint_set1_flag (0x40).
            constrained_baseline: profile_idc == 0x42 && profile_iop & 0x40 != 0,
        }
    }
}

impl ForwardedCodec {
    pub fn from_str0m(codec: Codec) -> Option<Self> {
        match codec {
            Codec::Opus => Some(Self::Opus),
            Codec::Vp8 => Some(Self::Vp8),
            _ => None,
        }
    }

    /// Whether this packet is the first packet of a keyframe, where a decoder can start.
    pub fn starts_keyframe(self, payload: &[u8]) -> bool {
        match self {
            Self::Opus | Self::OpusRed => true,
            Self::Vp8 => Vp8Header::parse(payload).is_some_and(|h| h.starts_keyframe(payload)),
            Self::H264(_) => h264_starts_keyframe(payload),
            Self::Vp9 { .. } => Vp9Descriptor::parse(payload).is_some_and(|d| d.starts_keyframe()),
            Self::Av1 => av1_starts_keyframe(payload),
        }
    }

    /// The SDP encoding name (`a=rtpmap`), for telling a subscriber what it cannot decode.
    pub fn sdp_name(self) -> &'static str {
        match self {
            Self::Opus => "opus",
            Self::OpusRed => "red",
            Self::Vp8 => "VP8",
            Self::H264(_) => "H264",
            Self::Vp9 { .. } => "VP9",
            Self::Av1 => "AV1",
        }
    }
}

/// The VP8 payload descriptor (RFC 7741 4.2), parsed once per packet: the fields the
/// forwarder rewrites, where they are, and where the VP8 payload itself starts. Each
/// subscriber's copy of the payload is rewritten in place ([`Vp8Header::rewrite`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8Header {
    pub picture_id: Option<u16>,
    pub tl0: Option<u8>,
    /// The temporal layer (TID), when the sender marks them (T bit).
    pub temporal: Option<u8>,
    /// The Y bit: this frame depends only on the base temporal layer, so a receiver may start
    /// taking its temporal layer here.
    pub layer_sync: bool,
    pub descriptor_len: usize,
    /// Offset of the picture ID, and whether it has 15 bits (else 7).
    picture_id_at: Option<(usize, bool)>,
    tl0_at: Option<usize>,
}

impl Vp8Header {
    pub fn parse(payload: &[u8]) -> Option<Self> {
        let first = *payload.first()?;
        let mut at = 1;
        let mut header = Self {
            picture_id: None,
            tl0: None,
            temporal: None,
            layer_sync: false,
            descriptor_len: 0,
            picture_id_at: None,
            tl0_at: None,
        };
        if first & 0x80 != 0 {
            let ext = *payload.get(at)?;
            at += 1;
            if ext & 0x80 != 0 {
                let hi = *payload.get(at)?;
                let long = hi & 0x80 != 0;
                header.picture_id_at = Some((at, long));
                at += 1;
                header.picture_id = Some(if long {
                    let lo = *payload.get(at)?;
                    at += 1;
                    (u16::from(hi & 0x7f) << 8) | u16::from(lo)
                } else {
                    u16::from(hi & 0x7f)
                });
            }
            if ext & 0x40 != 0 {
                header.tl0 = Some(*payload.get(at)?);
                header.tl0_at = Some(at);
                at += 1;
            }
            if ext & 0x30 != 0 {
                // TID/Y/KEYIDX, present with T or K; TID and Y mean something with T only.
                let byte = *payload.get(at)?;
                if ext & 0x20 != 0 {
                    header.temporal = Some(byte >> 6);
                    header.layer_sync = byte & 0x20 != 0;
                }
                at += 1;
            }
        }
        (at < payload.len()).then_some(Self {
            descriptor_len: at,
            ..header
        })
    }

    /// Whether `payload` (the one this was parsed from) starts a keyframe: the start of
    /// partition 0 (S=1, PID=0) with the payload header's P bit clear.
    pub fn starts_keyframe(&self, payload: &[u8]) -> bool {
        let Some(&first) = payload.first() else {
            return false;
        };
        first & 0x10 != 0
            && first & 0x07 == 0
            && payload
                .get(self.descriptor_len)
                .is_some_and(|header| header & 0x01 == 0)
    }

    /// Write a rewritten picture ID and TL0PICIDX into `payload`, a copy of the one this was
    /// parsed from. A field the packet does not carry stays absent; a picture ID too large
    /// for a 7-bit field leaves that field as it was (the rewriter counts in 15 bits, and
    /// senders that use 7 bits do not switch sources).
    pub fn rewrite(&self, payload: &mut [u8], picture_id: Option<u16>, tl0: Option<u8>) {
        if let (Some((at, long)), Some(id)) = (self.picture_id_at, picture_id) {
            if long {
                if let Some(field) = payload.get_mut(at..at + 2) {
                    field.copy_from_slice(&(0x8000 | (id & 0x7fff)).to_be_bytes());
                }
            } else if id <= 0x7f {
                if let Some(field) = payload.get_mut(at) {
                    *field = id as u8;
                }
            }
        }
        if let (Some(at), Some(tl0)) = (self.tl0_at, tl0) {
            if let Some(field) = payload.get_mut(at) {
                *field = tl0;
            }
        }
    }
}

/// Whether an H.264 RTP payload (RFC 6184) starts a keyframe: it carries a sequence
/// parameter set or an IDR slice, as a single NAL unit, inside a STAP-A aggregate, or as the
/// first fragment of an FU-A.
///
/// The SPS counts because a decoder needs the SPS and PPS before the IDR, and senders put
/// them right before it: libwebrtc (Chromium) sends a STAP-A of SPS and PPS, then the IDR in
/// FU-A fragments; x264 (OBS), GStreamer's `rtph264pay config-interval=-1` and ffmpeg's WHIP
/// muxer repeat them before every IDR too. Switching at the IDR alone would drop the packet
/// with the SPS and PPS of the new layer, whose resolution differs from the old one's, and
/// leave the decoder unable to start.
fn h264_starts_keyframe(payload: &[u8]) -> bool {
    const IDR: u8 = 5;
    const SPS: u8 = 7;
    const STAP_A: u8 = 24;
    const FU_A: u8 = 28;
    let starts = |nal_type: u8| nal_type == IDR || nal_type == SPS;
    let Some(&first) = payload.first() else {
        return false;
    };
    match first & 0x1f {
        STAP_A => {
            let mut rest = &payload[1..];
            while let [hi, lo, nal, ..] = *rest {
                if starts(nal & 0x1f) {
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
            .is_some_and(|fu| fu & 0x80 != 0 && starts(fu & 0x1f)),
        single => starts(single),
    }
}

/// Payload type of one peer -> codec, and codec -> payload type, as that peer negotiated.
///
/// A peer negotiates a handful of payload types; a linear scan over a small array beats a
/// hash map here and allocates nothing per packet.
#[derive(Debug, Clone, Default)]
pub struct PayloadTypes {
    entries: Vec<PayloadType>,
}

#[derive(Debug, Clone, Copy)]
struct PayloadType {
    pt: Pt,
    codec: ForwardedCodec,
    /// The payload type an m-line's `Media::remote_pts` lists when this one is accepted:
    /// itself, except for RED, which str0m folds onto its primary codec's entry.
    listed_as: Pt,
}

impl PayloadTypes {
    /// The payload types of the codecs this peer's `Rtc` has negotiated (its main ones, not
    /// RTX), and RED over Opus when the peer offered it too (str0m keeps a RED payload type
    /// only then).
    pub fn from_config(config: &CodecConfig) -> Self {
        let red = config.params().iter().find_map(|p| {
            let red_pt = p.red().filter(|_| p.spec().codec == Codec::Opus)?;
            Some(PayloadType {
                pt: red_pt,
                codec: ForwardedCodec::OpusRed,
                listed_as: p.pt(),
            })
        });
        let entries = config
            .params()
            .iter()
            .filter_map(|p| {
                let spec = p.spec();
                let codec = match spec.codec {
                    // Packetization mode 1 only, which every browser and encoder offers: a
                    // mode-0 receiver cannot take the FU-A and STAP-A packets others send.
                    Codec::H264 if spec.format.packetization_mode == Some(1) => {
                        ForwardedCodec::H264(H264Profile::from_profile_level_id(
                            spec.format.profile_level_id,
                        ))
                    }
                    // Absent, the profile is 0 (RFC 9628 6).
                    Codec::Vp9 => match spec.format.profile_id.unwrap_or(0) {
                        profile @ (0 | 2) => ForwardedCodec::Vp9 {
                            profile: profile as u8,
                        },
                        _ => return None,
                    },
                    // Absent, the profile is 0 (AV1 RTP specification 7.2.1).
                    Codec::Av1 if spec.format.profile.unwrap_or(0) == 0 => ForwardedCodec::Av1,
                    other => ForwardedCodec::from_str0m(other)?,
                };
                Some(PayloadType {
                    pt: p.pt(),
                    codec,
                    listed_as: p.pt(),
                })
            })
            .chain(red)
            .collect();
        Self { entries }
    }

    /// Only the payload types the remote accepted on one m-line (`Media::remote_pts`): the
    /// session's list also holds every codec we offered, taken or not.
    pub fn accepted_by(&self, remote_pts: &[Pt]) -> Self {
        Self {
            entries: self
                .entries
                .iter()
                .filter(|e| remote_pts.contains(&e.listed_as))
                .copied()
                .collect(),
        }
    }

    pub fn codec(&self, pt: Pt) -> Option<ForwardedCodec> {
        self.entries.iter().find(|e| e.pt == pt).map(|e| e.codec)
    }

    /// This peer's payload type for `codec`. For H.264, one of the same profile if it has
    /// one, else any H.264 one: its decoder may still manage (Chromium's decodes every
    /// profile on any H.264 payload type), and there is nothing better to send.
    pub fn pt(&self, codec: ForwardedCodec) -> Option<Pt> {
        let same_codec = |c: &ForwardedCodec| {
            matches!(
                (c, codec),
                (ForwardedCodec::H264(_), ForwardedCodec::H264(_))
            )
        };
        self.entries
            .iter()
            .find(|e| e.codec == codec)
            .or_else(|| self.entries.iter().find(|e| same_codec(&e.codec)))
            .map(|e| e.pt)
    }
}

/// The bitrate (kbit/s) a publisher's browser should start its estimate at.
///
/// Chromium starts at 300 kbit/s and, with a simulcast camera whose three layers need about
/// 2.4 Mbit/s, was seen to sit at 1.09 Mbit/s for 30 s without encoding its top layer although
/// a subscriber wanted it. A start of 1 Mbit/s lets its initial probes (3x and 6x the start)
/// reach every layer's rate at once on a good link; on a poor one its estimator falls back
/// within a second or two, as from any start.
pub const PUBLISHER_START_KBPS: u32 = 1_000;

/// The SDP with `x-google-start-bitrate` on every video codec (not on retransmission,
/// redundancy or FEC formats): Chromium reads it from the remote description as its sender's
/// start bitrate; other clients ignore unknown format parameters (RFC 4566 6).
pub fn with_start_bitrate_hint(sdp: &str, kbps: u32) -> String {
    let param = format!("x-google-start-bitrate={kbps}");
    let mut out = String::with_capacity(sdp.len() + 256);
    let mut video = false;
    // Payload types of media codecs in this video section, waiting for their fmtp line (or
    // the section's end) to get the parameter.
    let mut pending: Vec<String> = Vec::new();
    let lines: Vec<&str> = sdp.split("\r\n").filter(|l| !l.is_empty()).collect();
    let flush = |out: &mut String, pending: &mut Vec<String>| {
        for pt in pending.drain(..) {
            out.push_str(&format!("a=fmtp:{pt} {param}\r\n"));
        }
    };
    for line in lines {
        if line.starts_with("m=") {
            flush(&mut out, &mut pending);
            video = line.starts_with("m=video");
        } else if video {
            if let Some(rest) = line.strip_prefix("a=rtpmap:") {
                let (pt, name) = rest.split_once(' ').unwrap_or((rest, ""));
                let codec = name.split('/').next().unwrap_or("").to_ascii_lowercase();
                if !matches!(codec.as_str(), "rtx" | "red" | "ulpfec" | "flexfec-03" | "") {
                    pending.push(pt.to_owned());
                }
            } else if let Some(rest) = line.strip_prefix("a=fmtp:") {
                let pt = rest.split(' ').next().unwrap_or("");
                if let Some(at) = pending.iter().position(|p| p == pt) {
                    pending.remove(at);
                    if !rest.contains("x-google-start-bitrate") {
                        out.push_str(line);
                        out.push(';');
                        out.push_str(&param);
                        out.push_str("\r\n");
                        continue;
                    }
                }
            } else if !line.starts_with("a=rtcp-fb:") && !pending.is_empty() {
                // Format lines come together (rtpmap, fmtp, rtcp-fb); past them, the codecs
                // without an fmtp line get one.
                flush(&mut out, &mut pending);
            }
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    flush(&mut out, &mut pending);
    out
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
    fn vp8_fields_are_rewritten_in_place_and_nothing_else() {
        // X, I (15-bit 0x0123), L (tl0 7), T (tid byte), then a keyframe payload header.
        let p = [0x90, 0xe0, 0x81, 0x23, 0x07, 0x20, 0x00, 0xaa];
        let h = Vp8Header::parse(&p).expect("parses");
        assert!(h.starts_keyframe(&p));
        let mut copy = p;
        h.rewrite(&mut copy, Some(0x7abc), Some(42));
        assert_eq!(copy, [0x90, 0xe0, 0xfa, 0xbc, 42, 0x20, 0x00, 0xaa]);
        let again = Vp8Header::parse(&copy).expect("still parses");
        assert_eq!((again.picture_id, again.tl0), (Some(0x7abc), Some(42)));
        // A 7-bit field takes a value that fits, and keeps its own otherwise.
        let p = [0x80, 0x80, 0x05, 0x01];
        let h = Vp8Header::parse(&p).expect("parses");
        assert!(!h.starts_keyframe(&p), "S bit clear");
        let mut copy = p;
        h.rewrite(&mut copy, Some(0x11), None);
        assert_eq!(copy, [0x80, 0x80, 0x11, 0x01]);
        h.rewrite(&mut copy, Some(0x1234), None);
        assert_eq!(copy, [0x80, 0x80, 0x11, 0x01]);
        // Fields the packet does not carry are not added.
        let p = [0x10, 0x00];
        let h = Vp8Header::parse(&p).expect("parses");
        assert!(h.starts_keyframe(&p));
        let mut copy = p;
        h.rewrite(&mut copy, Some(3), Some(4));
        assert_eq!(copy, p);
    }

    #[test]
    fn vp8_descriptor_fields_are_read() {
        // X, I (15-bit 0x0123), L (tl0 7), T (tid byte), then payload.
        let p = [0x90, 0xe0, 0x81, 0x23, 0x07, 0x20, 0xaa];
        let fields = |h: Vp8Header| (h.picture_id, h.tl0, h.descriptor_len);
        assert_eq!(
            Vp8Header::parse(&p).map(fields),
            Some((Some(0x123), Some(7), 6))
        );
        // 7-bit picture id, nothing else.
        assert_eq!(
            Vp8Header::parse(&[0x80, 0x80, 0x05, 0xaa]).map(fields),
            Some((Some(5), None, 3))
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
    fn vp8_temporal_layer_and_sync_bit_are_read_only_with_the_t_bit() {
        let temporal = |p: &[u8]| Vp8Header::parse(p).map(|h| (h.temporal, h.layer_sync));
        // T set: TID 2, Y set (0b10_1_00000).
        assert_eq!(
            temporal(&[0x90, 0xe0, 0x81, 0x23, 0x07, 0xa0, 0xaa]),
            Some((Some(2), true))
        );
        // T set: TID 1, Y clear.
        assert_eq!(
            temporal(&[0x90, 0xe0, 0x81, 0x23, 0x07, 0x40, 0xaa]),
            Some((Some(1), false))
        );
        // K only (0x10): the byte holds KEYIDX, and TID/Y mean nothing.
        assert_eq!(temporal(&[0x90, 0x10, 0xe5, 0xaa]), Some((None, false)));
        // No T and no K: no such byte.
        assert_eq!(temporal(&[0x90, 0x80, 0x05, 0xaa]), Some((None, false)));
    }

    const H264: ForwardedCodec = ForwardedCodec::H264(H264Profile {
        profile_idc: 0x42,
        constrained_baseline: true,
    });

    #[test]
    fn h264_keyframes_start_at_the_sps_or_the_idr() {
        // Single NAL unit packet, type 5 (IDR slice).
        assert!(H264.starts_keyframe(&[0x65, 0x88, 0x84]));
        // Type 1 (non-IDR slice), and a lone PPS (8).
        assert!(!H264.starts_keyframe(&[0x41, 0x9a]));
        assert!(!H264.starts_keyframe(&[0x68, 0xce]));
        // A lone SPS (7): the start of a keyframe's access unit.
        assert!(H264.starts_keyframe(&[0x67, 0x42, 0xe0, 0x1f]));
        // STAP-A with SPS (7), PPS (8) and an IDR.
        let stap = [
            0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x01, 0x68, 0x00, 0x02, 0x65, 0x88,
        ];
        assert!(H264.starts_keyframe(&stap));
        // STAP-A with SPS and PPS only, as libwebrtc sends before an IDR in FU-As.
        let parameter_sets = [0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce];
        assert!(H264.starts_keyframe(&parameter_sets));
        // STAP-A with a PPS and a non-IDR slice.
        assert!(!H264.starts_keyframe(&[0x78, 0x00, 0x01, 0x68, 0x00, 0x01, 0x41]));
        // STAP-A whose length field runs past the end is not a keyframe, and does not panic.
        assert!(!H264.starts_keyframe(&[0x78, 0xff, 0xff, 0x61]));
        assert!(!H264.starts_keyframe(&[0x78]));
        assert!(!H264.starts_keyframe(&[]));
        // FU-A start fragment of an IDR, and a middle fragment of one.
        assert!(H264.starts_keyframe(&[0x7c, 0x85, 0x00]));
        assert!(!H264.starts_keyframe(&[0x7c, 0x05, 0x00]));
        assert!(!H264.starts_keyframe(&[0x7c]));
    }

    #[test]
    fn h264_profiles_are_told_apart_by_profile_not_level() {
        let cb = H264Profile::from_profile_level_id(Some(0x42e01f));
        assert_eq!(cb, H264Profile::from_profile_level_id(Some(0x42e034)));
        assert_eq!(cb, H264Profile::from_profile_level_id(Some(0x42c01f)));
        let baseline = H264Profile::from_profile_level_id(Some(0x42001f));
        assert_ne!(cb, baseline);
        assert_eq!(baseline, H264Profile::from_profile_level_id(None));
        let high = H264Profile::from_profile_level_id(Some(0x64001f));
        assert_ne!(high, H264Profile::from_profile_level_id(Some(0x4d001f)));
        assert_eq!(high, H264Profile::from_profile_level_id(Some(0x640c28)));
    }

    #[test]
    fn h264_goes_out_on_the_same_profile_else_any_h264() {
        let cb = ForwardedCodec::H264(H264Profile::from_profile_level_id(Some(0x42e01f)));
        let high = ForwardedCodec::H264(H264Profile::from_profile_level_id(Some(0x64001f)));
        let main = ForwardedCodec::H264(H264Profile::from_profile_level_id(Some(0x4d001f)));
        let entry = |pt: u8, codec| PayloadType {
            pt: pt.into(),
            codec,
            listed_as: pt.into(),
        };
        let types = PayloadTypes {
            entries: vec![
                entry(111, ForwardedCodec::Opus),
                entry(127, high),
                entry(108, cb),
            ],
        };
        assert_eq!(types.pt(cb), Some(Pt::from(108)));
        assert_eq!(types.pt(high), Some(Pt::from(127)));
        assert_eq!(
            types.pt(main),
            Some(Pt::from(127)),
            "fallback: the first H.264"
        );
        assert_eq!(types.pt(ForwardedCodec::Vp8), None);
    }

    #[test]
    fn red_rides_on_opus_when_negotiated() {
        let mut config = CodecConfig::empty();
        config.enable_opus(true, true);
        config.enable_vp8(true);
        let types = PayloadTypes::from_config(&config);
        let opus = types.pt(ForwardedCodec::Opus).expect("opus");
        let red = types.pt(ForwardedCodec::OpusRed).expect("red");
        assert_ne!(opus, red);
        assert_eq!(types.codec(red), Some(ForwardedCodec::OpusRed));
        let vp8 = types.pt(ForwardedCodec::Vp8).expect("vp8");
        // An m-line lists RED's primary, not RED itself: accepting Opus keeps RED.
        let audio = types.accepted_by(&[opus]);
        assert_eq!(audio.pt(ForwardedCodec::OpusRed), Some(red));
        assert_eq!(audio.pt(ForwardedCodec::Vp8), None);
        let video = types.accepted_by(&[vp8]);
        assert_eq!(video.pt(ForwardedCodec::OpusRed), None);
        assert_eq!(video.pt(ForwardedCodec::Opus), None);
        // Without RED, Opus alone.
        config.enable_opus(true, false);
        let types = PayloadTypes::from_config(&config);
        assert!(types.pt(ForwardedCodec::Opus).is_some());
        assert_eq!(types.pt(ForwardedCodec::OpusRed), None);
    }

    #[test]
    fn the_start_bitrate_hint_goes_on_video_codecs_only() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\n\
            a=fmtp:111 minptime=10;useinbandfec=1\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96 97 102\r\na=mid:1\r\na=recvonly\r\n\
            a=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 transport-cc\r\n\
            a=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n\
            a=rtpmap:102 H264/90000\r\na=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1\r\n\
            a=ssrc:1 cname:x\r\n";
        let hinted = with_start_bitrate_hint(sdp, 1000);
        let lines: Vec<&str> = hinted.split("\r\n").collect();
        assert!(
            lines.contains(&"a=fmtp:96 x-google-start-bitrate=1000"),
            "{hinted}"
        );
        assert!(lines.contains(
            &"a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;x-google-start-bitrate=1000"
        ));
        assert!(lines.contains(&"a=fmtp:97 apt=96"), "not on rtx");
        assert!(
            lines.contains(&"a=fmtp:111 minptime=10;useinbandfec=1"),
            "not on audio"
        );
        assert_eq!(hinted.matches("x-google-start-bitrate").count(), 2);
        // Every original line is still there, in order.
        let original: Vec<&str> = sdp.split("\r\n").filter(|l| !l.is_empty()).collect();
        let kept: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| !l.is_empty() && !l.contains("x-google"))
            .collect();
        assert_eq!(
            kept,
            original[..]
                .iter()
                .copied()
                .filter(|l| !l.starts_with("a=fmtp:102"))
                .collect::<Vec<_>>()
        );
        // Applying it twice adds nothing.
        assert_eq!(
            with_start_bitrate_hint(&hinted, 1000)
                .matches("x-google-start-bitrate")
                .count(),
            2
        );
    }
}
