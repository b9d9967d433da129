//! Self-verifying synthetic media payloads.
//!
//! Every RTP payload the test client sends carries a *body* a receiver can check without
//! knowing who sent it:
//!
//! ```text
//! magic "SWB1" (4) | sender tag u64 BE (8) | counter u32 BE (4) | filler length u16 BE (2)
//! | filler (pseudo-random bytes derived from tag and counter) | CRC-32 of everything before (4)
//! ```
//!
//! Audio (Opus is opaque to an SFU) uses the body as the whole RTP payload. Video uses a real
//! VP8 payload descriptor (RFC 7741) in front of the body, because an SFU may rewrite the
//! picture ID and TL0PICIDX; on the first packet of a frame the body is preceded by a VP8 frame
//! header (3-byte frame tag, plus start code and size on keyframes) so that keyframe detection
//! in the server works. Receivers verify only what follows the descriptor and frame header.

/// Magic bytes opening every body.
pub const MAGIC: &[u8; 4] = b"SWB1";
/// Fixed bytes of a body besides its filler: magic, tag, counter, length, CRC.
pub const BODY_OVERHEAD: usize = 4 + 8 + 4 + 2 + 4;
/// Width written into synthetic VP8 keyframe headers.
pub const VP8_WIDTH: u16 = 640;
/// Height written into synthetic VP8 keyframe headers.
pub const VP8_HEIGHT: u16 = 360;

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), bitwise: payloads are small.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

/// 64-bit FNV-1a, used to derive a sender tag from a display name.
pub fn fnv1a64(data: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for &byte in data {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

fn filler_byte_stream(tag: u64, counter: u32) -> impl Iterator<Item = u8> {
    // xorshift64*, seeded from tag and counter (never zero).
    let mut state = tag ^ (u64::from(counter) << 32 | u64::from(counter)) ^ 0x9E37_79B9_7F4A_7C15;
    if state == 0 {
        state = 1;
    }
    std::iter::repeat_with(move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
    })
}

/// Appends a self-verifying body with `filler_len` filler bytes to `out`.
pub fn write_body(out: &mut Vec<u8>, tag: u64, counter: u32, filler_len: u16) {
    let start = out.len();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&tag.to_be_bytes());
    out.extend_from_slice(&counter.to_be_bytes());
    out.extend_from_slice(&filler_len.to_be_bytes());
    out.extend(filler_byte_stream(tag, counter).take(usize::from(filler_len)));
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// What a verified body says about its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyInfo {
    /// The sender's tag.
    pub tag: u64,
    /// The sender's per-stream packet counter.
    pub counter: u32,
}

/// Verifies a body occupying exactly `data`.
pub fn verify_body(data: &[u8]) -> Result<BodyInfo, String> {
    if data.len() < BODY_OVERHEAD {
        return Err(format!("body too short: {} bytes", data.len()));
    }
    if &data[..4] != MAGIC {
        return Err(format!("bad magic {:02x?}", &data[..4]));
    }
    let tag = u64::from_be_bytes(data[4..12].try_into().expect("8 bytes"));
    let counter = u32::from_be_bytes(data[12..16].try_into().expect("4 bytes"));
    let filler_len = usize::from(u16::from_be_bytes([data[16], data[17]]));
    if data.len() != BODY_OVERHEAD + filler_len {
        return Err(format!(
            "body length {} does not match filler length {filler_len} (expected {})",
            data.len(),
            BODY_OVERHEAD + filler_len
        ));
    }
    let crc_at = data.len() - 4;
    let want = u32::from_be_bytes(data[crc_at..].try_into().expect("4 bytes"));
    let got = crc32(&data[..crc_at]);
    if want != got {
        return Err(format!(
            "CRC mismatch (counter {counter}): carried {want:08x}, computed {got:08x}"
        ));
    }
    let filler = &data[18..crc_at];
    if !filler_byte_stream(tag, counter)
        .take(filler_len)
        .eq(filler.iter().copied())
    {
        return Err(format!("filler does not match counter {counter}"));
    }
    Ok(BodyInfo { tag, counter })
}

/// A parsed VP8 payload descriptor (RFC 7741 section 4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8Descriptor {
    /// S bit: start of a VP8 partition.
    pub start: bool,
    /// Partition index.
    pub partition_id: u8,
    /// Picture ID, if present, and whether it is the 15-bit form.
    pub picture_id: Option<(u16, bool)>,
    /// TL0PICIDX, if present.
    pub tl0_pic_idx: Option<u8>,
    /// Length of the descriptor in bytes.
    pub len: usize,
}

impl Vp8Descriptor {
    /// Whether this packet starts a frame (S=1, PID=0).
    pub fn starts_frame(&self) -> bool {
        self.start && self.partition_id == 0
    }
}

/// Writes the descriptor this client always sends, as libwebrtc does: X=1, I=1 (15-bit
/// picture ID), L=1 and T=1 (RFC 7741 4.2: TL0PICIDX is only valid together with TID).
pub fn write_vp8_descriptor(out: &mut Vec<u8>, start_of_frame: bool, picture_id: u16, tl0: u8) {
    out.push(if start_of_frame { 0x90 } else { 0x80 }); // X=1, S, PID=0
    out.push(0xE0); // I=1, L=1, T=1, K=0
    out.push(0x80 | ((picture_id >> 8) as u8 & 0x7F)); // M=1
    out.push(picture_id as u8);
    out.push(tl0);
    out.push(0x00); // TID=0, Y=0, KEYIDX=0
}

/// Parses a VP8 payload descriptor in any valid form.
pub fn parse_vp8_descriptor(data: &[u8]) -> Result<Vp8Descriptor, String> {
    let need = |n: usize| {
        if data.len() < n {
            Err(format!("VP8 descriptor truncated ({} bytes)", data.len()))
        } else {
            Ok(())
        }
    };
    need(1)?;
    let b0 = data[0];
    let mut desc = Vp8Descriptor {
        start: b0 & 0x10 != 0,
        partition_id: b0 & 0x07,
        picture_id: None,
        tl0_pic_idx: None,
        len: 1,
    };
    if b0 & 0x80 == 0 {
        return Ok(desc);
    }
    need(2)?;
    let ext = data[1];
    let mut at = 2;
    if ext & 0x80 != 0 {
        need(at + 1)?;
        if data[at] & 0x80 != 0 {
            need(at + 2)?;
            let id = (u16::from(data[at] & 0x7F) << 8) | u16::from(data[at + 1]);
            desc.picture_id = Some((id, true));
            at += 2;
        } else {
            desc.picture_id = Some((u16::from(data[at] & 0x7F), false));
            at += 1;
        }
    }
    if ext & 0x40 != 0 {
        need(at + 1)?;
        desc.tl0_pic_idx = Some(data[at]);
        at += 1;
    }
    if ext & 0x30 != 0 {
        need(at + 1)?;
        at += 1; // TID/Y/KEYIDX
    }
    desc.len = at;
    Ok(desc)
}

/// Writes a VP8 frame header: the 3-byte frame tag, plus start code and size on keyframes.
pub fn write_vp8_frame_header(out: &mut Vec<u8>, keyframe: bool, first_partition_size: u32) {
    let size = first_partition_size.min(0x7FFFF);
    // bit 0: P (0 = key frame), bits 1-3: version 0, bit 4: show_frame, bits 5-23: size.
    let tag = u32::from(!keyframe) | (1 << 4) | (size << 5);
    out.extend_from_slice(&tag.to_le_bytes()[..3]);
    if keyframe {
        out.extend_from_slice(&[0x9d, 0x01, 0x2a]);
        out.extend_from_slice(&VP8_WIDTH.to_le_bytes());
        out.extend_from_slice(&VP8_HEIGHT.to_le_bytes());
    }
}

/// Parses a VP8 frame header; returns (is keyframe, header length).
pub fn parse_vp8_frame_header(data: &[u8]) -> Result<(bool, usize), String> {
    if data.len() < 3 {
        return Err(format!("VP8 frame header truncated ({} bytes)", data.len()));
    }
    let keyframe = data[0] & 0x01 == 0;
    if !keyframe {
        return Ok((false, 3));
    }
    if data.len() < 10 {
        return Err(format!(
            "VP8 keyframe header truncated ({} bytes)",
            data.len()
        ));
    }
    if data[3..6] != [0x9d, 0x01, 0x2a] {
        return Err(format!(
            "VP8 keyframe start code wrong: {:02x?}",
            &data[3..6]
        ));
    }
    let width = u16::from_le_bytes([data[6], data[7]]) & 0x3FFF;
    let height = u16::from_le_bytes([data[8], data[9]]) & 0x3FFF;
    if width == 0 || height == 0 {
        return Err(format!("VP8 keyframe size {width}x{height}"));
    }
    Ok((true, 10))
}

/// What a verified VP8 RTP payload holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8PacketInfo {
    /// The payload descriptor as received (possibly rewritten by an SFU).
    pub descriptor: Vp8Descriptor,
    /// `Some(is_keyframe)` on a frame's first packet.
    pub frame_start: Option<bool>,
    /// The verified body.
    pub body: BodyInfo,
}

/// Verifies a VP8 RTP payload produced by [`write_vp8_descriptor`] + frame header + body.
pub fn verify_vp8_payload(payload: &[u8]) -> Result<Vp8PacketInfo, String> {
    let descriptor = parse_vp8_descriptor(payload)?;
    let mut rest = &payload[descriptor.len..];
    let mut frame_start = None;
    if descriptor.starts_frame() {
        let (keyframe, len) = parse_vp8_frame_header(rest)?;
        frame_start = Some(keyframe);
        rest = &rest[len..];
    }
    let body = verify_body(rest)?;
    Ok(Vp8PacketInfo {
        descriptor,
        frame_start,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_known_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn body_round_trip_and_corruption() {
        let mut buf = Vec::new();
        write_body(&mut buf, 0xDEAD_BEEF, 42, 100);
        assert_eq!(
            verify_body(&buf),
            Ok(BodyInfo {
                tag: 0xDEAD_BEEF,
                counter: 42
            })
        );
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x01;
            assert!(verify_body(&bad).is_err(), "flip at {i} not detected");
        }
        assert!(verify_body(&buf[..buf.len() - 1]).is_err());
    }

    #[test]
    fn vp8_round_trip() {
        for keyframe in [true, false] {
            let mut buf = Vec::new();
            write_vp8_descriptor(&mut buf, true, 0x1234, 7);
            write_vp8_frame_header(&mut buf, keyframe, 500);
            write_body(&mut buf, 1, 2, 50);
            let info = verify_vp8_payload(&buf).expect("valid");
            assert_eq!(info.frame_start, Some(keyframe));
            assert_eq!(info.descriptor.picture_id, Some((0x1234, true)));
            assert_eq!(info.descriptor.tl0_pic_idx, Some(7));
        }
        let mut buf = Vec::new();
        write_vp8_descriptor(&mut buf, false, 5, 7);
        write_body(&mut buf, 1, 3, 50);
        let info = verify_vp8_payload(&buf).expect("valid");
        assert_eq!(info.frame_start, None);
    }
}
