//! Property tests: the SFU's own parsers and rewriters never panic (debug builds also trap
//! integer overflow), whatever bytes or sequences they are given.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use str0m::net::Protocol;
use str0m::rtp::{RedDecoder, RedEncoder, RedundantBlock};

use crate::codec::{ForwardedCodec, H264Profile, Vp8Header};
use crate::demux::Demux;
use crate::ids::ParticipantId;
use crate::red::RedPayload;
use crate::rewrite::{SeqRewriter, TsRewriter, Vp8Rewriter};
use crate::svc::{
    Av1Layers, DependencyDescriptor, SvcLayers, SvcSelector, SvcVerdict, Vp9Descriptor,
};

const MAGIC: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];

const STUN_USERNAME: u16 = 0x0006;

/// What routing a generated STUN message must give.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// A well-formed message whose USERNAME names our peer's ufrag.
    Ours,
    /// A well-formed message naming another ufrag, or none.
    NotOurs,
    /// A lying length: either outcome, but no panic.
    Either,
}

/// A STUN-looking message: a valid header (or a lying length), arbitrary attributes, and
/// perhaps one USERNAME naming the ufrag `abcd` (ours) or `zzzz` (nobody's) among them.
fn stunlike() -> impl Strategy<Value = (Vec<u8>, Expect)> {
    (
        any::<u8>(),
        any::<u8>(),
        proptest::option::of(any::<u16>()),
        proptest::collection::vec(
            (any::<u16>(), proptest::collection::vec(any::<u8>(), 0..40)),
            0..6,
        ),
        proptest::option::of((any::<bool>(), any::<prop::sample::Index>())),
    )
        .prop_map(|(t0, t1, lying_len, mut attrs, username)| {
            // Only the USERNAME placed below may name a ufrag.
            for (attr_type, _) in attrs.iter_mut() {
                if *attr_type == STUN_USERNAME {
                    *attr_type += 1;
                }
            }
            let mut expect = Expect::NotOurs;
            if let Some((ours, at)) = username {
                let value = if ours {
                    b"abcd:peer".to_vec()
                } else {
                    b"zzzz:peer".to_vec()
                };
                attrs.insert(at.index(attrs.len() + 1), (STUN_USERNAME, value));
                if ours {
                    expect = Expect::Ours;
                }
            }
            if lying_len.is_some() {
                expect = Expect::Either;
            }
            let mut body = Vec::new();
            for (attr_type, value) in attrs {
                body.extend_from_slice(&attr_type.to_be_bytes());
                body.extend_from_slice(&(value.len() as u16).to_be_bytes());
                body.extend_from_slice(&value);
                while body.len() % 4 != 0 {
                    body.push(0);
                }
            }
            let len = lying_len.unwrap_or(body.len() as u16);
            let mut msg = vec![t0 & 0x3f, t1];
            msg.extend_from_slice(&len.to_be_bytes());
            msg.extend_from_slice(&MAGIC);
            msg.extend_from_slice(&[9; 12]);
            msg.extend_from_slice(&body);
            (msg, expect)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn demux_routes_any_datagram_without_panicking(
        data in proptest::collection::vec(any::<u8>(), 0..300),
        (stun, expect) in stunlike(),
        port in 1u16..,
    ) {
        let mut demux = Demux::default();
        let peer = ParticipantId::random_on(0);
        demux.add_peer("abcd".into(), peer);
        let source = SocketAddr::from(([127, 0, 0, 1], port));
        let _ = demux.route(Protocol::Udp, source, &data);
        // Over TCP nothing is bound yet: only the message itself can route it.
        let routed = demux.route(Protocol::Tcp, source, &stun);
        match expect {
            Expect::Ours => prop_assert_eq!(routed, Some(peer)),
            Expect::NotOurs => prop_assert_eq!(routed, None),
            Expect::Either => prop_assert!(routed.is_none() || routed == Some(peer)),
        }
    }

    #[test]
    fn codec_parsers_accept_any_payload(payload in proptest::collection::vec(any::<u8>(), 0..64)) {
        for codec in [
            ForwardedCodec::Opus,
            ForwardedCodec::OpusRed,
            ForwardedCodec::Vp8,
            ForwardedCodec::H264(H264Profile::from_profile_level_id(Some(0x42e01f))),
            ForwardedCodec::Vp9 { profile: 0 },
        ] {
            let _ = codec.starts_keyframe(&payload);
        }
        if let Some(h) = Vp8Header::parse(&payload) {
            prop_assert!(h.descriptor_len < payload.len());
            prop_assert!(h.picture_id.is_none_or(|p| p < 0x8000));
        }
    }

    /// Rewriting a subscriber's copy keeps the descriptor's shape and the VP8 payload, and
    /// the copy reads back with the new fields.
    #[test]
    fn vp8_rewrite_changes_only_its_fields(
        payload in proptest::collection::vec(any::<u8>(), 0..64),
        picture_id in 0u16..0x8000,
        tl0 in any::<u8>(),
    ) {
        if let Some(h) = Vp8Header::parse(&payload) {
            let mut copy = payload.clone();
            h.rewrite(&mut copy, Some(picture_id), Some(tl0));
            let again = Vp8Header::parse(&copy).expect("a rewritten descriptor still parses");
            prop_assert_eq!(again.descriptor_len, h.descriptor_len);
            prop_assert_eq!(&copy[h.descriptor_len..], &payload[h.descriptor_len..]);
            prop_assert_eq!(again.starts_keyframe(&copy), h.starts_keyframe(&payload));
            if let Some(old) = h.tl0 {
                prop_assert_eq!(again.tl0, Some(tl0), "tl0 was {}", old);
            }
            match h.picture_id {
                None => prop_assert_eq!(again.picture_id, None),
                Some(old) if old > 0x7f || payload[2] & 0x80 != 0 => {
                    prop_assert_eq!(again.picture_id, Some(picture_id))
                }
                Some(_) if picture_id <= 0x7f => prop_assert_eq!(again.picture_id, Some(picture_id)),
                Some(old) => prop_assert_eq!(again.picture_id, Some(old)),
            }
        }
    }

    /// Any bytes as a RED payload: no panic; what is accepted str0m's own decoder reads the
    /// same way, and a rewritten copy keeps its primary block and takes the new block type.
    #[test]
    fn red_parser_takes_any_payload(
        payload in proptest::collection::vec(any::<u8>(), 0..96),
        new_pt in 0u8..128,
    ) {
        if let Ok(red) = RedPayload::parse(&payload) {
            let primary = red.primary(&payload);
            prop_assert!(!primary.is_empty());
            let blocks = RedDecoder::decode(&payload).expect("str0m accepts what we accept");
            let theirs = blocks.last().expect("a primary block");
            prop_assert!(theirs.is_primary);
            prop_assert_eq!(theirs.payload, primary);
            prop_assert!(blocks.iter().all(|b| b.pt == red.block_pt()));
            let mut copy = payload.clone();
            red.rewrite_block_pts(&mut copy, new_pt);
            let again = RedPayload::parse(&copy).expect("a rewritten payload still parses");
            prop_assert_eq!(again.block_pt(), new_pt);
            prop_assert_eq!(again.primary(&copy), primary);
        }
    }

    /// Well-formed RED, as str0m's encoder writes it, always parses to its primary block.
    #[test]
    fn red_parser_reads_encoded_payloads(
        pt in 0u8..128,
        redundant in proptest::collection::vec(
            (0u32..0x4000, proptest::collection::vec(any::<u8>(), 0..40)),
            0..4,
        ),
        primary in proptest::collection::vec(any::<u8>(), 1..80),
    ) {
        let blocks: Vec<RedundantBlock> = redundant
            .into_iter()
            .map(|(timestamp_offset, payload)| RedundantBlock { pt, timestamp_offset, payload })
            .collect();
        let encoded = RedEncoder::encode(pt, &primary, &blocks);
        let red = RedPayload::parse(&encoded).expect("well-formed RED parses");
        prop_assert_eq!(red.block_pt(), pt);
        prop_assert_eq!(red.primary(&encoded), &primary[..]);
    }

    #[test]
    fn rewriters_take_any_sequence(
        initial_seq in any::<u16>(),
        initial_ts in any::<u32>(),
        clock in prop_oneof![Just(48_000u32), Just(90_000u32), 1u32..],
        steps in proptest::collection::vec(
            (any::<bool>(), any::<u64>(), any::<u32>(), proptest::option::of(any::<u16>()), proptest::option::of(any::<u8>()), 0u64..5_000_000),
            1..60,
        ),
    ) {
        let mut seq = SeqRewriter::new(initial_seq);
        let mut ts = TsRewriter::new(clock, initial_ts);
        let mut vp8 = Vp8Rewriter::default();
        let mut now = Instant::now();
        let mut sent = std::collections::HashSet::new();
        for (switch, s, t, pic, tl0, advance_us) in steps {
            // Extended sequence numbers as str0m gives them: up to 2^48 or so.
            let s = s >> 16;
            now += Duration::from_micros(advance_us);
            if switch {
                seq.switch_source(s);
                ts.switch_source(t, now);
                vp8.switch_source(pic, tl0);
            }
            if let Some(out) = seq.rewrite(s) {
                prop_assert!(sent.insert(out), "two packets got one sequence number");
            }
            let _ = ts.rewrite(t, now);
            let (p, _) = vp8.rewrite(pic, tl0);
            prop_assert!(p.is_none_or(|p| p < 0x8000));
        }
    }

    /// Hostile VP9 descriptors never panic the parser, and what it reads stays in range;
    /// the selector fed any of them never forwards a layer above its target.
    #[test]
    fn vp9_descriptors_parse_and_select_safely(
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..48), 1..40),
        targets in proptest::collection::vec((0u8..4, 0u8..8), 1..40),
        markers in proptest::collection::vec(any::<bool>(), 1..40),
    ) {
        let mut selector = SvcSelector::default();
        for (i, payload) in payloads.iter().enumerate() {
            let Some(d) = Vp9Descriptor::parse(payload) else {
                continue;
            };
            prop_assert!(d.spatial < 8 && d.temporal < 8);
            prop_assert!(d.picture_id.is_none_or(|p| p < 0x8000));
            if let Some(structure) = d.structure {
                prop_assert!((1..=8).contains(&structure.spatial_layers));
            }
            let (spatial, temporal) = targets[i % targets.len()];
            let target = SvcLayers { spatial, temporal };
            let verdict = selector.select(target, &d.svc_packet(i % 2 == 0), markers[i % markers.len()], true);
            let Some(current) = selector.current() else {
                prop_assert_eq!(verdict, SvcVerdict::NeedKeyframe);
                continue;
            };
            if let SvcVerdict::Forward { .. } = verdict {
                prop_assert!(d.spatial <= current.spatial && d.temporal <= current.temporal);
            }
            if d.starts_picture() {
                // (A k-SVC spatial step down may wait for a keyframe; temporal ones never do.)
                prop_assert!(
                    current.temporal <= temporal,
                    "a picture starts with temporal layers no higher than the target"
                );
            }
        }
    }

    /// Hostile Dependency Descriptors never panic the parser, whether they carry a structure
    /// of their own or are read against the last one; what comes out stays in range, and the
    /// selector fed them never forwards a layer above its target.
    #[test]
    fn dependency_descriptors_parse_and_select_safely(
        descriptors in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..40),
        structure_flags in proptest::collection::vec(any::<bool>(), 1..40),
        targets in proptest::collection::vec((0u8..4, 0u8..8), 1..40),
    ) {
        let mut layers = Av1Layers::default();
        let mut selector = SvcSelector::default();
        for (i, bytes) in descriptors.iter().enumerate() {
            // Half the time force the "structure present" flag, so the structure reader
            // sees hostile input as often as the frame reader.
            let mut bytes = bytes.clone();
            if structure_flags[i % structure_flags.len()] && bytes.len() > 3 {
                bytes[3] |= 0x80;
            }
            if let Ok((d, structure)) = DependencyDescriptor::parse(&bytes, None) {
                let s = structure.expect("parsed without a kept structure: it carried one");
                prop_assert!((1..=4).contains(&s.spatial_layers));
                prop_assert!(d.spatial < s.spatial_layers && d.temporal < 8);
                for t in 0..s.decode_targets() {
                    let (spatial, temporal) = s.decode_target_layers(t).expect("in range");
                    prop_assert!(spatial < s.spatial_layers && temporal < 8);
                }
            }
            let Ok(p) = layers.read(&bytes, &[0x08]) else {
                continue;
            };
            let (spatial, temporal) = targets[i % targets.len()];
            let target = SvcLayers { spatial, temporal };
            let verdict = selector.select(target, &p, false, true);
            if let (Some(current), SvcVerdict::Forward { .. }) = (selector.current(), verdict) {
                prop_assert!(p.spatial <= current.spatial && p.temporal <= current.temporal);
            }
        }
    }

    /// Whatever mix of sent, skipped, late and repeated packets, no two packets sent get one
    /// outgoing number, counting the empty packets that fill the numbers of late skipped ones.
    #[test]
    fn skipping_never_gives_two_packets_one_number(
        initial in any::<u16>(),
        start in 0u64..1_000_000,
        steps in proptest::collection::vec((any::<bool>(), 0u64..400, any::<bool>()), 1..300),
    ) {
        let mut seq = SeqRewriter::new(initial);
        seq.switch_source(start);
        let mut numbers = std::collections::HashMap::new();
        for (skip, delta, switch) in steps {
            if switch && delta % 50 == 0 {
                seq.switch_source(start + delta);
                continue;
            }
            let incoming = start + delta;
            let out = if skip {
                seq.skip(incoming)
            } else {
                seq.rewrite(incoming)
            };
            if let Some(out) = out {
                let previous = numbers.insert(out, incoming);
                prop_assert!(
                    previous.is_none_or(|p| p == incoming),
                    "{} and {} both got {}", previous.unwrap_or(0), incoming, out
                );
            }
        }
    }
}
