//! RFC 2198 redundant audio (RED over Opus, `audio/red`): where a RED payload's primary block
//! starts, and its block payload types, read once per packet without allocating.
//!
//! A RED payload is N redundant block headers (4 bytes each, F=1: block PT, 14-bit timestamp
//! offset, 10-bit length), one primary header (1 byte, F=0: block PT), then the block payloads
//! in the same order; the primary's length is whatever remains. The forwarder sends a RED
//! publisher's packets as they are to subscribers that negotiated RED (with the block PTs
//! rewritten to the subscriber's Opus PT when it numbers Opus differently) and only the primary
//! block, as plain Opus, to the others. str0m's `RedDecoder` reads the same format but returns
//! a `Vec` of blocks per packet; the forwarder needs only offsets, so this reads them in place.

use thiserror::Error;

/// Redundant blocks accepted in one payload. libwebrtc sends one level of redundancy by default
/// (two at most in its field trials) and str0m one; RFC 2198 sets no limit, but a hostile peer
/// could pack a datagram with 4-byte headers, so anything deeper than this is refused.
pub const MAX_REDUNDANT_BLOCKS: usize = 16;

/// Why a RED payload was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RedError {
    #[error("RED payload ends inside a block header")]
    TruncatedHeader,
    #[error("RED payload has more than {MAX_REDUNDANT_BLOCKS} redundant blocks")]
    TooManyBlocks,
    #[error("RED block lengths run past the end of the payload")]
    BlocksPastEnd,
    #[error("RED payload has an empty primary block")]
    EmptyPrimary,
    #[error("RED blocks of different payload types")]
    MixedPayloadTypes,
}

/// The layout of one RED payload: how many redundant blocks it carries, their (common)
/// payload type and where the primary block's bytes start.
///
/// Every block must have the same payload type: RED over Opus carries Opus in every block,
/// and a subscriber's copy gets one payload type written into every header. A mix (RFC 2198
/// allows a different codec for redundancy) is refused rather than half-rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedPayload {
    redundant_blocks: usize,
    block_pt: u8,
    primary_start: usize,
}

impl RedPayload {
    pub fn parse(payload: &[u8]) -> Result<Self, RedError> {
        let mut at = 0;
        let mut redundant_blocks = 0;
        let mut redundant_bytes = 0usize;
        let mut block_pt = None;
        loop {
            let header = *payload.get(at).ok_or(RedError::TruncatedHeader)?;
            let pt = header & 0x7f;
            if *block_pt.get_or_insert(pt) != pt {
                return Err(RedError::MixedPayloadTypes);
            }
            if header & 0x80 == 0 {
                at += 1;
                break;
            }
            if redundant_blocks == MAX_REDUNDANT_BLOCKS {
                return Err(RedError::TooManyBlocks);
            }
            let [_, _, len_hi, len_lo] = *payload
                .get(at..at + 4)
                .and_then(|h| <&[u8; 4]>::try_from(h).ok())
                .ok_or(RedError::TruncatedHeader)?;
            redundant_bytes += usize::from(u16::from_be_bytes([len_hi, len_lo]) & 0x03ff);
            redundant_blocks += 1;
            at += 4;
        }
        let primary_start = at + redundant_bytes;
        if primary_start > payload.len() {
            return Err(RedError::BlocksPastEnd);
        }
        // Opus never encodes a frame in zero bytes (the TOC byte is always there): an empty
        // primary is not audio, and would go out to plain-Opus subscribers as an empty packet.
        if primary_start == payload.len() {
            return Err(RedError::EmptyPrimary);
        }
        Ok(Self {
            redundant_blocks,
            // Set on the first header, which the loop always reads.
            block_pt: block_pt.unwrap_or_default(),
            primary_start,
        })
    }

    /// The payload type every block carries (the publisher's Opus payload type).
    pub fn block_pt(&self) -> u8 {
        self.block_pt
    }

    #[cfg(test)]
    pub fn redundant_blocks(&self) -> usize {
        self.redundant_blocks
    }

    /// The primary block of `payload` (the one this was parsed from): a plain Opus payload.
    pub fn primary<'a>(&self, payload: &'a [u8]) -> &'a [u8] {
        payload.get(self.primary_start..).unwrap_or_default()
    }

    /// Write `pt` as every block's payload type in `copy`, a copy of the parsed payload,
    /// keeping each header's F bit.
    pub fn rewrite_block_pts(&self, copy: &mut [u8], pt: u8) {
        // Headers are 4 bytes apart: each redundant one, then the primary's single byte.
        for header in copy.iter_mut().step_by(4).take(self.redundant_blocks + 1) {
            *header = (*header & 0x80) | (pt & 0x7f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A redundant block header: F=1, `pt`, timestamp offset, length.
    fn redundant_header(pt: u8, ts_offset: u16, len: u16) -> [u8; 4] {
        let bits = (u32::from(0x80 | pt) << 24) | (u32::from(ts_offset) << 10) | u32::from(len);
        bits.to_be_bytes()
    }

    #[test]
    fn primary_only() {
        let p = [111, 0xfc, 0x01, 0x02];
        let red = RedPayload::parse(&p).expect("parses");
        assert_eq!(red.redundant_blocks(), 0);
        assert_eq!(red.block_pt(), 111);
        assert_eq!(red.primary(&p), &[0xfc, 0x01, 0x02]);
    }

    #[test]
    fn redundant_and_primary() {
        let mut p = redundant_header(111, 960, 3).to_vec();
        p.extend([111, 0xaa, 0xbb, 0xcc, 0xfc, 0x01]);
        let red = RedPayload::parse(&p).expect("parses");
        assert_eq!(red.redundant_blocks(), 1);
        assert_eq!(red.primary(&p), &[0xfc, 0x01]);
    }

    #[test]
    fn two_redundant_blocks_and_primary() {
        let mut p = redundant_header(111, 1920, 2).to_vec();
        p.extend(redundant_header(111, 960, 1));
        p.extend([111, 0x01, 0x02, 0x03, 0xfc]);
        let red = RedPayload::parse(&p).expect("parses");
        assert_eq!(red.redundant_blocks(), 2);
        assert_eq!(red.primary(&p), &[0xfc]);
    }

    #[test]
    fn redundant_block_of_zero_length() {
        // libwebrtc sends a zero-length redundant block when it has nothing older to repeat.
        let mut p = redundant_header(111, 0, 0).to_vec();
        p.extend([111, 0xfc]);
        let red = RedPayload::parse(&p).expect("parses");
        assert_eq!(red.primary(&p), &[0xfc]);
    }

    #[test]
    fn block_pts_are_rewritten_and_nothing_else() {
        let mut p = redundant_header(111, 1920, 1).to_vec();
        p.extend(redundant_header(111, 960, 1));
        p.extend([111, 0x6f, 0xef, 0xfc]);
        let red = RedPayload::parse(&p).expect("parses");
        let mut copy = p.clone();
        red.rewrite_block_pts(&mut copy, 109);
        let mut expected = redundant_header(109, 1920, 1).to_vec();
        expected.extend(redundant_header(109, 960, 1));
        // Payload bytes that look like headers (0x6f, 0xef) stay as they are.
        expected.extend([109, 0x6f, 0xef, 0xfc]);
        assert_eq!(copy, expected);
        let again = RedPayload::parse(&copy).expect("still parses");
        assert_eq!(again.block_pt(), 109);
        assert_eq!(again.primary(&copy), red.primary(&p));
    }

    #[test]
    fn malformed_payloads_are_refused() {
        let truncated_header = [0x80 | 111, 0x0f, 0x00];
        let past_end = {
            let mut p = redundant_header(111, 960, 40).to_vec();
            p.extend([111, 0x01, 0x02]);
            p
        };
        let no_primary = {
            let mut p = redundant_header(111, 960, 2).to_vec();
            p.extend([111, 0x01, 0x02]);
            p
        };
        let mixed = {
            let mut p = redundant_header(0, 960, 1).to_vec();
            p.extend([111, 0x01, 0xfc]);
            p
        };
        let too_deep = {
            let mut p = Vec::new();
            for _ in 0..=MAX_REDUNDANT_BLOCKS {
                p.extend(redundant_header(111, 0, 0));
            }
            p.extend([111, 0xfc]);
            p
        };
        let just_deep_enough = {
            let mut p = Vec::new();
            for _ in 0..MAX_REDUNDANT_BLOCKS {
                p.extend(redundant_header(111, 0, 0));
            }
            p.extend([111, 0xfc]);
            p
        };
        let cases: [(&str, &[u8], Result<(), RedError>); 8] = [
            ("empty", &[], Err(RedError::TruncatedHeader)),
            ("header only", &[111], Err(RedError::EmptyPrimary)),
            (
                "truncated redundant header",
                &truncated_header,
                Err(RedError::TruncatedHeader),
            ),
            (
                "lengths past the end",
                &past_end,
                Err(RedError::BlocksPastEnd),
            ),
            ("no primary bytes", &no_primary, Err(RedError::EmptyPrimary)),
            (
                "mixed block types",
                &mixed,
                Err(RedError::MixedPayloadTypes),
            ),
            ("too many blocks", &too_deep, Err(RedError::TooManyBlocks)),
            ("the deepest accepted", &just_deep_enough, Ok(())),
        ];
        for (name, payload, expected) in cases {
            assert_eq!(RedPayload::parse(payload).map(|_| ()), expected, "{name}");
        }
    }
}
