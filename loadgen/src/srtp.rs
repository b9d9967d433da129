//! SRTP with AEAD_AES_128_GCM (RFC 7714), just enough for the floor forwarder and its peers:
//! seal and open one packet in place. Keys are fixed per stream end rather than derived with
//! the SRTP KDF: the KDF runs once per session, not per packet, so it is not part of the
//! per-packet cost the floor measures.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM};

/// The GCM authentication tag appended to every packet.
pub const TAG: usize = 16;

pub struct GcmContext {
    key: LessSafeKey,
    salt: [u8; 12],
}

impl GcmContext {
    /// A context from a seed: each sender and receiver pair derive the same key from it.
    pub fn from_seed(seed: u64) -> Self {
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        key[8..].copy_from_slice(&(!seed).to_be_bytes());
        let mut salt = [0u8; 12];
        salt[..8].copy_from_slice(&seed.rotate_left(17).to_le_bytes());
        // Unwrap: a 16-byte key is exactly what AES-128-GCM takes.
        let unbound = UnboundKey::new(&AES_128_GCM, &key).expect("16-byte AES-128 key");
        Self {
            key: LessSafeKey::new(unbound),
            salt,
        }
    }

    /// RFC 7714 section 8.1: IV = (0x0000 || SSRC || ROC || SEQ) XOR salt. ROC is 0: the
    /// floor's runs are shorter than a sequence wrap of any stream.
    fn nonce(&self, header: &[u8]) -> Nonce {
        let mut iv = [0u8; 12];
        iv[2..6].copy_from_slice(&header[8..12]);
        iv[10..12].copy_from_slice(&header[2..4]);
        for (b, s) in iv.iter_mut().zip(self.salt) {
            *b ^= s;
        }
        Nonce::assume_unique_for_key(iv)
    }

    /// Encrypt `packet[header_len..len]` in place and write the tag after it; returns the
    /// new length. `packet` must have `TAG` bytes of room after `len`.
    pub fn seal(&self, packet: &mut [u8], header_len: usize, len: usize) -> Option<usize> {
        let (header, rest) = packet.split_at_mut(header_len);
        let nonce = self.nonce(header);
        let payload_len = len - header_len;
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(&*header), &mut rest[..payload_len])
            .ok()?;
        rest.get_mut(payload_len..payload_len + TAG)?
            .copy_from_slice(tag.as_ref());
        Some(len + TAG)
    }

    /// Decrypt and authenticate in place; returns the plaintext length (header included).
    pub fn open(&self, packet: &mut [u8], header_len: usize) -> Option<usize> {
        if packet.len() < header_len + TAG {
            return None;
        }
        let (header, rest) = packet.split_at_mut(header_len);
        let nonce = self.nonce(header);
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(&*header), rest)
            .ok()?;
        Some(header_len + plain.len())
    }
}

/// Length of an RTP header (fixed part, CSRCs, extension), if `p` holds one.
pub fn rtp_header_len(p: &[u8]) -> Option<usize> {
    if p.len() < 12 || p[0] >> 6 != 2 {
        return None;
    }
    let mut len = 12 + 4 * usize::from(p[0] & 0x0f);
    if p[0] & 0x10 != 0 {
        let ext = p.get(len + 2..len + 4)?;
        len += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
    }
    (len <= p.len()).then_some(len)
}

/// A 12-byte RTP header.
pub fn rtp_header(pt: u8, marker: bool, seq: u16, ts: u32, ssrc: u32) -> [u8; 12] {
    let mut h = [0u8; 12];
    h[0] = 0x80;
    h[1] = pt | if marker { 0x80 } else { 0 };
    h[2..4].copy_from_slice(&seq.to_be_bytes());
    h[4..8].copy_from_slice(&ts.to_be_bytes());
    h[8..12].copy_from_slice(&ssrc.to_be_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_open_round_trips_and_tampering_fails() {
        let ctx = GcmContext::from_seed(42);
        let mut buf = vec![0u8; 12 + 100 + TAG];
        buf[..12].copy_from_slice(&rtp_header(96, true, 7, 9000, 1234));
        for (i, b) in buf[12..112].iter_mut().enumerate() {
            *b = i as u8;
        }
        let len = ctx.seal(&mut buf, 12, 112).expect("sealed");
        assert_eq!(len, 128);
        assert_ne!(buf[12], 0, "payload is encrypted");
        let mut tampered = buf.clone();
        tampered[20] ^= 1;
        assert!(ctx.open(&mut tampered, 12).is_none());
        assert_eq!(ctx.open(&mut buf, 12), Some(112));
        assert_eq!(buf[12 + 99], 99);
        assert_eq!(rtp_header_len(&buf), Some(12));
    }
}
