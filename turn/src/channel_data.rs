//! ChannelData framing (RFC 8656 §12.4) and stream framing for TCP/TLS.
//!
//! stun-rs has no ChannelData support, so this module owns it: a 4-byte
//! header (channel number, length) followed by the application data. Over
//! TCP and TLS the message is padded to a multiple of 4 bytes; over UDP the
//! padding is optional on receive and omitted on send.

/// Lowest valid channel number.
pub const MIN_CHANNEL: u16 = 0x4000;
/// Highest channel number we accept.
///
/// RFC 8656 §12 narrowed the range to 0x4000-0x4FFF, but coturn's and pion's
/// clients still pick from RFC 5766's 0x4000-0x7FFE (turnutils_uclient binds
/// e.g. 0x5213), and coturn and pion servers accept up to 0x7FFF. Refusing
/// them would break the most common clients, so we keep the RFC 5766 range.
pub const MAX_CHANNEL: u16 = 0x7FFF;
/// Size of the ChannelData header.
pub const HEADER_LEN: usize = 4;
/// Size of a STUN header.
pub const STUN_HEADER_LEN: usize = 20;

/// A parsed ChannelData message borrowing the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelData<'a> {
    /// The channel number.
    pub number: u16,
    /// The application data.
    pub data: &'a [u8],
}

/// Why a ChannelData message was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChannelDataError {
    /// Fewer than 4 bytes.
    #[error("ChannelData shorter than its header")]
    Short,
    /// Channel number outside 0x4000-0x7FFF.
    #[error("invalid channel number {0:#06x}")]
    BadChannel(u16),
    /// The length field exceeds the bytes present.
    #[error("ChannelData length {0} exceeds datagram")]
    Truncated(usize),
}

/// Whether the first byte starts a ChannelData message rather than STUN.
pub fn is_channel_data(buf: &[u8]) -> bool {
    buf.first().is_some_and(|b| (0x40..=0x7F).contains(b))
}

/// Whether `n` is a valid channel number.
pub fn valid_channel(n: u16) -> bool {
    (MIN_CHANNEL..=MAX_CHANNEL).contains(&n)
}

/// Parses a ChannelData message. Trailing bytes (padding) are allowed.
pub fn parse(buf: &[u8]) -> Result<ChannelData<'_>, ChannelDataError> {
    let (Some(&a), Some(&b), Some(&c), Some(&d)) =
        (buf.first(), buf.get(1), buf.get(2), buf.get(3))
    else {
        return Err(ChannelDataError::Short);
    };
    let number = u16::from_be_bytes([a, b]);
    if !valid_channel(number) {
        return Err(ChannelDataError::BadChannel(number));
    }
    let len = usize::from(u16::from_be_bytes([c, d]));
    let data = buf
        .get(HEADER_LEN..HEADER_LEN + len)
        .ok_or(ChannelDataError::Truncated(len))?;
    Ok(ChannelData { number, data })
}

/// Appends a ChannelData message to `out`; `pad` adds the 4-byte alignment
/// padding TCP and TLS require. Data longer than 65535 bytes cannot be framed
/// and is refused (returns false).
pub fn encode_into(number: u16, data: &[u8], pad: bool, out: &mut Vec<u8>) -> bool {
    let Ok(len) = u16::try_from(data.len()) else {
        return false;
    };
    out.reserve(HEADER_LEN + data.len() + 3);
    out.extend_from_slice(&number.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(data);
    if pad {
        let rem = data.len() % 4;
        if rem != 0 {
            out.extend(std::iter::repeat_n(0u8, 4 - rem));
        }
    }
    true
}

/// Result of looking for the next frame in a TCP/TLS byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamFrame {
    /// Need more bytes.
    Incomplete,
    /// A whole frame of this many bytes (padding included) is at the front.
    Complete(usize),
    /// The stream is not STUN/ChannelData: close the connection.
    Invalid,
}

/// Finds the length of the next STUN or ChannelData frame in a stream buffer.
pub fn stream_frame_len(buf: &[u8]) -> StreamFrame {
    let (Some(&first), Some(&c), Some(&d)) = (buf.first(), buf.get(2), buf.get(3)) else {
        return StreamFrame::Incomplete;
    };
    let len = usize::from(u16::from_be_bytes([c, d]));
    let total = match first >> 6 {
        // STUN: top two bits zero; the length excludes the 20-byte header and is
        // always a multiple of 4
        0 => {
            if len % 4 != 0 {
                return StreamFrame::Invalid;
            }
            STUN_HEADER_LEN + len
        }
        // ChannelData: padded to 4 on streams
        1 => HEADER_LEN + len.div_ceil(4) * 4,
        _ => return StreamFrame::Invalid,
    };
    if buf.len() >= total {
        StreamFrame::Complete(total)
    } else {
        StreamFrame::Incomplete
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_udp_and_tcp() {
        let mut udp = Vec::new();
        assert!(encode_into(0x4001, b"hello", false, &mut udp));
        assert_eq!(udp, [0x40, 0x01, 0x00, 0x05, b'h', b'e', b'l', b'l', b'o']);
        let mut tcp = Vec::new();
        assert!(encode_into(0x4001, b"hello", true, &mut tcp));
        assert_eq!(tcp.len(), 12);
        for buf in [&udp, &tcp] {
            let cd = parse(buf).expect("parse");
            assert_eq!(cd.number, 0x4001);
            assert_eq!(cd.data, b"hello");
        }
        let mut aligned = Vec::new();
        assert!(encode_into(0x4FFF, b"abcd", true, &mut aligned));
        assert_eq!(aligned.len(), 8);
        let mut empty = Vec::new();
        assert!(encode_into(0x4000, b"", true, &mut empty));
        assert_eq!(empty.len(), 4);
    }

    #[test]
    fn rejects_bad_messages() {
        assert_eq!(parse(&[]), Err(ChannelDataError::Short));
        assert_eq!(parse(&[0x40, 0x00, 0x00]), Err(ChannelDataError::Short));
        assert_eq!(
            parse(&[0x80, 0x00, 0, 0]),
            Err(ChannelDataError::BadChannel(0x8000))
        );
        assert!(
            parse(&[0x52, 0x13, 0, 0]).is_ok(),
            "RFC 5766 range used by coturn clients"
        );
        assert_eq!(
            parse(&[0x3F, 0xFF, 0, 0]),
            Err(ChannelDataError::BadChannel(0x3FFF))
        );
        assert_eq!(
            parse(&[0x40, 0x00, 0, 5, 1, 2]),
            Err(ChannelDataError::Truncated(5))
        );
        assert_eq!(
            parse(&[0x40, 0x00, 0xFF, 0xFF]),
            Err(ChannelDataError::Truncated(65535))
        );
        let big = vec![0u8; 70_000];
        assert!(!encode_into(0x4000, &big, false, &mut Vec::new()));
    }

    #[test]
    fn stream_framing() {
        assert_eq!(stream_frame_len(&[]), StreamFrame::Incomplete);
        assert_eq!(
            stream_frame_len(&[0x40, 0x00, 0x00]),
            StreamFrame::Incomplete
        );
        // ChannelData of 5 bytes is 12 on a stream
        let mut f = vec![0x40, 0x00, 0x00, 0x05, 1, 2, 3, 4, 5];
        assert_eq!(stream_frame_len(&f), StreamFrame::Incomplete);
        f.extend([0, 0, 0, 0xAA]);
        assert_eq!(stream_frame_len(&f), StreamFrame::Complete(12));
        // STUN header with 8 bytes of attributes
        let mut s = vec![0x00, 0x01, 0x00, 0x08];
        s.extend([0u8; 24]);
        assert_eq!(stream_frame_len(&s), StreamFrame::Complete(28));
        assert_eq!(
            stream_frame_len(&[0x00, 0x01, 0x00, 0x07]),
            StreamFrame::Invalid
        );
        assert_eq!(stream_frame_len(&[0x80, 0, 0, 0]), StreamFrame::Invalid);
        assert_eq!(stream_frame_len(&[0xC5, 0, 0, 0]), StreamFrame::Invalid);
    }
}
