//! What nodes say to each other over a relay link, and its binary encoding. Every field is
//! length-checked on decode: a peer that passed authentication is still not trusted to send
//! well-formed messages (a bug, or a node of another version).

use std::sync::Arc;
use std::time::Instant;

use sfu::data::{AppData, MAX_DATA_BYTES};
use sfu::relay::{OperatorAction, RelayedPacket, RoomEvent};
use sfu::svc::RawDependencyDescriptor;
use sfu::{
    ForwardedCodec, H264Profile, LayerReason, MediaKind, ParticipantId, ParticipantStats, Rid,
    SubscriptionStats, TrackId, TrackSource,
};
use str0m::media::KeyframeRequestKind;
use str0m::rtp::{Ssrc, VideoOrientation};

/// Longest room or participant name carried (the signaling layer allows less).
const MAX_NAME: usize = 1024;
/// Most simulcast rids per track.
const MAX_RIDS: usize = 8;
/// Largest RTP payload carried.
const MAX_PAYLOAD: usize = 1500;
/// Most packets in one media message.
const MAX_BATCH: usize = 1024;
/// Most recipients named by one data message (more than a 64 KiB signaling message can name).
const MAX_RECIPIENTS: usize = 8192;

/// One message between two nodes.
#[derive(Debug, Clone)]
pub enum NodeMessage {
    /// Something happened in a room, to one of the sender's own participants.
    Room(RoomEvent),
    /// The sender has sent every room event of its participants as they are now (after a
    /// link is established): members of the sender's that the receiver knows and that were
    /// not in it have left.
    SnapshotEnd,
    /// The layers of a track published on the receiver that the sender's subscribers need.
    Needs { track: TrackId, layers: u8 },
    /// A subscriber on the sender wants a keyframe of a layer of a track on the receiver.
    KeyframeRequest {
        track: TrackId,
        layer: u8,
        kind: KeyframeRequestKind,
    },
    /// Media of tracks published on the sender that the receiver asked for.
    Media(Vec<RelayedPacket>),
    /// Nothing to say; keeps the link's liveness check fed.
    Ping,
    /// An operator's action through the room API of the sender, for the receiver's own
    /// participants and tracks.
    Operator(OperatorAction),
    /// The sender's `/api/stats` wants the receiver's participants.
    StatsRequest { id: u64 },
    /// The receiver's own participants and what they receive, for request `id`.
    StatsReply {
        id: u64,
        stats: Vec<ParticipantStats>,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed relay message: {0}")]
pub struct DecodeError(&'static str);

impl NodeMessage {
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer(out);
        match self {
            NodeMessage::Room(event) => {
                w.u8(1);
                encode_room_event(&mut w, event);
            }
            NodeMessage::SnapshotEnd => w.u8(2),
            NodeMessage::Needs { track, layers } => {
                w.u8(3);
                w.u64(track.as_u64());
                w.u8(*layers);
            }
            NodeMessage::KeyframeRequest { track, layer, kind } => {
                w.u8(4);
                w.u64(track.as_u64());
                w.u8(*layer);
                w.u8(match kind {
                    KeyframeRequestKind::Pli => 0,
                    KeyframeRequestKind::Fir => 1,
                });
            }
            NodeMessage::Media(packets) => {
                w.u8(5);
                w.u16(packets.len() as u16);
                for p in packets {
                    encode_packet(&mut w, p);
                }
            }
            NodeMessage::Ping => w.u8(6),
            NodeMessage::Operator(action) => {
                w.u8(7);
                match action {
                    OperatorAction::RemoveParticipant { room, participant } => {
                        w.u8(1);
                        w.str(room);
                        w.u64(participant.as_u64());
                    }
                    OperatorAction::MuteTrack { room, track, muted } => {
                        w.u8(2);
                        w.str(room);
                        w.u64(track.as_u64());
                        w.u8(u8::from(*muted));
                    }
                    OperatorAction::CloseRoom { room } => {
                        w.u8(3);
                        w.str(room);
                    }
                }
            }
            NodeMessage::StatsRequest { id } => {
                w.u8(8);
                w.u64(*id);
            }
            NodeMessage::StatsReply { id, stats } => {
                w.u8(9);
                w.u64(*id);
                w.u32(stats.len() as u32);
                for p in stats {
                    encode_stats(&mut w, p);
                }
            }
        }
    }

    /// Decode one message; packets get `received` as their arrival time.
    pub fn decode(data: &[u8], received: Instant) -> Result<Self, DecodeError> {
        let mut r = Reader(data);
        let message = match r.u8()? {
            1 => NodeMessage::Room(decode_room_event(&mut r)?),
            2 => NodeMessage::SnapshotEnd,
            3 => NodeMessage::Needs {
                track: r.track()?,
                layers: r.u8()?,
            },
            4 => NodeMessage::KeyframeRequest {
                track: r.track()?,
                layer: r.u8()?,
                kind: match r.u8()? {
                    0 => KeyframeRequestKind::Pli,
                    1 => KeyframeRequestKind::Fir,
                    _ => return Err(DecodeError("keyframe request kind")),
                },
            },
            5 => {
                let n = usize::from(r.u16()?);
                if n > MAX_BATCH {
                    return Err(DecodeError("media batch too large"));
                }
                let mut packets = Vec::with_capacity(n);
                for _ in 0..n {
                    packets.push(decode_packet(&mut r, received)?);
                }
                NodeMessage::Media(packets)
            }
            6 => NodeMessage::Ping,
            7 => NodeMessage::Operator(match r.u8()? {
                1 => OperatorAction::RemoveParticipant {
                    room: r.str()?,
                    participant: r.participant()?,
                },
                2 => OperatorAction::MuteTrack {
                    room: r.str()?,
                    track: r.track()?,
                    muted: r.bool()?,
                },
                3 => OperatorAction::CloseRoom { room: r.str()? },
                _ => return Err(DecodeError("operator action")),
            }),
            8 => NodeMessage::StatsRequest { id: r.u64()? },
            9 => {
                let id = r.u64()?;
                let n = r.u32()? as usize;
                // Each entry takes at least 30 bytes: a count past that is a lie.
                if n > r.0.len() / 30 {
                    return Err(DecodeError("stats count"));
                }
                let mut stats = Vec::with_capacity(n);
                for _ in 0..n {
                    stats.push(decode_stats(&mut r)?);
                }
                NodeMessage::StatsReply { id, stats }
            }
            _ => return Err(DecodeError("message type")),
        };
        if !r.0.is_empty() {
            return Err(DecodeError("trailing bytes"));
        }
        Ok(message)
    }
}

fn encode_room_event(w: &mut Writer<'_>, event: &RoomEvent) {
    match event {
        RoomEvent::Joined {
            room,
            participant,
            name,
        } => {
            w.u8(1);
            w.str(room);
            w.u64(participant.as_u64());
            w.str(name);
        }
        RoomEvent::Left { room, participant } => {
            w.u8(2);
            w.str(room);
            w.u64(participant.as_u64());
        }
        RoomEvent::Published {
            room,
            participant,
            track,
            kind,
            rids,
            source,
            muted,
        } => {
            w.u8(3);
            w.str(room);
            w.u64(participant.as_u64());
            w.u64(track.as_u64());
            w.kind(*kind);
            w.u8(rids.len().min(MAX_RIDS) as u8);
            for rid in rids.iter().take(MAX_RIDS) {
                w.str(rid);
            }
            w.u8(source_byte(*source));
            w.u8(u8::from(*muted));
        }
        RoomEvent::Unpublished {
            room,
            participant,
            track,
        } => {
            w.u8(4);
            w.str(room);
            w.u64(participant.as_u64());
            w.u64(track.as_u64());
        }
        RoomEvent::Muted {
            room,
            participant,
            track,
            muted,
        } => {
            w.u8(5);
            w.str(room);
            w.u64(participant.as_u64());
            w.u64(track.as_u64());
            w.u8(u8::from(*muted));
        }
        RoomEvent::SourceChanged { track, source } => {
            w.u8(6);
            w.u64(track.as_u64());
            w.u8(source_byte(*source));
        }
        RoomEvent::Data { room, data } => {
            w.u8(7);
            w.str(room);
            w.u64(data.from.as_u64());
            w.str(&data.name);
            match &data.to {
                None => w.u8(0),
                Some(to) => {
                    w.u8(1);
                    let n = to.len().min(MAX_RECIPIENTS);
                    w.u16(n as u16);
                    for p in &to[..n] {
                        w.u64(p.as_u64());
                    }
                }
            }
            // The engine refuses larger payloads, so this length fits its u16.
            w.bytes(data.payload.as_bytes());
        }
    }
}

fn decode_room_event(r: &mut Reader<'_>) -> Result<RoomEvent, DecodeError> {
    Ok(match r.u8()? {
        1 => RoomEvent::Joined {
            room: r.str()?,
            participant: r.participant()?,
            name: r.str()?,
        },
        2 => RoomEvent::Left {
            room: r.str()?,
            participant: r.participant()?,
        },
        3 => {
            let room = r.str()?;
            let participant = r.participant()?;
            let track = r.track()?;
            let kind = r.kind()?;
            let n = usize::from(r.u8()?);
            if n > MAX_RIDS {
                return Err(DecodeError("too many rids"));
            }
            let mut rids = Vec::with_capacity(n);
            for _ in 0..n {
                rids.push(Rid::from(r.str()?.as_str()));
            }
            RoomEvent::Published {
                room,
                participant,
                track,
                kind,
                rids,
                source: r.source()?,
                muted: r.bool()?,
            }
        }
        4 => RoomEvent::Unpublished {
            room: r.str()?,
            participant: r.participant()?,
            track: r.track()?,
        },
        5 => RoomEvent::Muted {
            room: r.str()?,
            participant: r.participant()?,
            track: r.track()?,
            muted: r.bool()?,
        },
        6 => RoomEvent::SourceChanged {
            track: r.track()?,
            source: r.source()?,
        },
        7 => {
            let room = r.str()?;
            let from = r.participant()?;
            let name = r.str()?;
            let to = if r.bool()? {
                let n = usize::from(r.u16()?);
                if n > MAX_RECIPIENTS {
                    return Err(DecodeError("too many recipients"));
                }
                let mut to = Vec::with_capacity(n);
                for _ in 0..n {
                    to.push(r.participant()?);
                }
                Some(to)
            } else {
                None
            };
            let payload = r.bytes()?;
            if payload.len() > MAX_DATA_BYTES {
                return Err(DecodeError("data payload too large"));
            }
            let payload =
                std::str::from_utf8(payload).map_err(|_| DecodeError("data not UTF-8"))?;
            RoomEvent::Data {
                room,
                data: AppData {
                    from,
                    name,
                    to,
                    payload: payload.into(),
                },
            }
        }
        _ => return Err(DecodeError("room event type")),
    })
}

fn encode_packet(w: &mut Writer<'_>, p: &RelayedPacket) {
    w.u64(p.track.as_u64());
    w.u8(p.layer.min(255) as u8);
    w.u8(match p.codec {
        ForwardedCodec::Opus => 0,
        ForwardedCodec::Vp8 => 1,
        ForwardedCodec::H264(_) => 2,
        ForwardedCodec::Vp9 { .. } => 3,
        ForwardedCodec::OpusRed => 4,
        ForwardedCodec::Av1 => 5,
    });
    match p.codec {
        ForwardedCodec::H264(profile) => {
            w.u8(profile.profile_idc());
            w.u8(u8::from(profile.constrained_baseline()));
        }
        ForwardedCodec::Vp9 { profile } => w.u8(profile),
        ForwardedCodec::Opus
        | ForwardedCodec::OpusRed
        | ForwardedCodec::Vp8
        | ForwardedCodec::Av1 => {}
    }
    w.u32(*p.ssrc);
    w.u64(p.seq);
    w.u32(p.timestamp);
    // Flags: marker, then which optional extensions follow.
    let flags = u8::from(p.marker)
        | u8::from(p.audio_level.is_some()) << 1
        | u8::from(p.voice_activity.is_some()) << 2
        | u8::from(p.voice_activity == Some(true)) << 3
        | u8::from(p.video_orientation.is_some()) << 4
        | u8::from(p.dependency_descriptor.is_some()) << 5;
    w.u8(flags);
    if let Some(level) = p.audio_level {
        w.u8(level as u8);
    }
    if let Some(orientation) = p.video_orientation {
        w.u8(orientation as u8);
    }
    if let Some(descriptor) = &p.dependency_descriptor {
        w.bytes(descriptor.as_bytes());
    }
    w.bytes(&p.payload);
}

fn decode_packet(r: &mut Reader<'_>, received: Instant) -> Result<RelayedPacket, DecodeError> {
    let track = r.track()?;
    let layer = usize::from(r.u8()?);
    let codec = match r.u8()? {
        0 => ForwardedCodec::Opus,
        1 => ForwardedCodec::Vp8,
        2 => ForwardedCodec::H264(H264Profile::new(r.u8()?, r.bool()?)),
        3 => ForwardedCodec::Vp9 { profile: r.u8()? },
        4 => ForwardedCodec::OpusRed,
        5 => ForwardedCodec::Av1,
        _ => return Err(DecodeError("codec")),
    };
    let ssrc = Ssrc::from(r.u32()?);
    let seq = r.u64()?;
    let timestamp = r.u32()?;
    let flags = r.u8()?;
    let audio_level = (flags & 0x02 != 0).then(|| r.u8()).transpose()?;
    let voice_activity = (flags & 0x04 != 0).then_some(flags & 0x08 != 0);
    let video_orientation = (flags & 0x10 != 0)
        .then(|| r.u8())
        .transpose()?
        .map(|o| VideoOrientation::from(o & 0x03));
    let dependency_descriptor = if flags & 0x20 != 0 {
        let bytes = r.bytes()?;
        Some(Arc::new(
            RawDependencyDescriptor::new(bytes).ok_or(DecodeError("dependency descriptor"))?,
        ))
    } else {
        None
    };
    let payload = r.bytes()?;
    if payload.len() > MAX_PAYLOAD {
        return Err(DecodeError("payload too large"));
    }
    Ok(RelayedPacket {
        track,
        layer,
        codec,
        ssrc,
        seq,
        timestamp,
        marker: flags & 0x01 != 0,
        received,
        audio_level: audio_level.map(|l| l as i8),
        voice_activity,
        video_orientation,
        dependency_descriptor,
        payload: payload.to_vec(),
    })
}

fn encode_stats(w: &mut Writer<'_>, p: &ParticipantStats) {
    w.u64(p.participant.as_u64());
    w.str(&p.name);
    w.str(&p.room);
    w.u64(p.estimate_bps);
    w.u16(p.subscriptions.len().min(usize::from(u16::MAX)) as u16);
    for s in p.subscriptions.iter().take(usize::from(u16::MAX)) {
        w.u64(s.publisher.as_u64());
        w.u64(s.track.as_u64());
        w.kind(s.kind);
        for layer in [&s.current_layer, &s.target_layer] {
            match layer {
                Some(rid) => {
                    w.u8(1);
                    w.str(rid);
                }
                None => w.u8(0),
            }
        }
        w.u8(u8::from(s.paused));
        let reason = LayerReason::ALL
            .iter()
            .position(|r| r.as_str() == s.reason)
            .map_or(u8::MAX, |i| i as u8);
        w.u8(reason);
        w.u64(s.bitrate_bps);
        w.u16(s.layer_changes_last_minute.min(usize::from(u16::MAX)) as u16);
        w.u8(u8::from(s.pinned));
        // Temporal layers: 0xff for all of them.
        for level in [s.current_temporal, s.target_temporal] {
            w.u8(level.unwrap_or(u8::MAX));
        }
    }
}

fn decode_stats(r: &mut Reader<'_>) -> Result<ParticipantStats, DecodeError> {
    let participant = r.participant()?;
    let name = r.str()?;
    let room = r.str()?;
    let estimate_bps = r.u64()?;
    let n = usize::from(r.u16()?);
    let mut subscriptions = Vec::with_capacity(n.min(r.0.len() / 20));
    for _ in 0..n {
        let publisher = r.participant()?;
        let track = r.track()?;
        let kind = r.kind()?;
        let mut layers = [None, None];
        for layer in &mut layers {
            if r.bool()? {
                *layer = Some(r.str()?);
            }
        }
        let [current_layer, target_layer] = layers;
        let paused = r.bool()?;
        let reason = LayerReason::ALL
            .get(usize::from(r.u8()?))
            .map_or("unknown", |r| r.as_str());
        subscriptions.push(SubscriptionStats {
            publisher,
            track,
            kind,
            current_layer,
            target_layer,
            paused,
            reason,
            bitrate_bps: r.u64()?,
            layer_changes_last_minute: usize::from(r.u16()?),
            pinned: r.bool()?,
            current_temporal: Some(r.u8()?).filter(|&t| t != u8::MAX),
            target_temporal: Some(r.u8()?).filter(|&t| t != u8::MAX),
        });
    }
    Ok(ParticipantStats {
        participant,
        name,
        room,
        estimate_bps,
        subscriptions,
    })
}

fn source_byte(source: TrackSource) -> u8 {
    match source {
        TrackSource::Camera => 0,
        TrackSource::Screen => 1,
    }
}

struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn bytes(&mut self, v: &[u8]) {
        self.u16(v.len().min(usize::from(u16::MAX)) as u16);
        self.0
            .extend_from_slice(&v[..v.len().min(usize::from(u16::MAX))]);
    }
    fn kind(&mut self, kind: MediaKind) {
        self.u8(match kind {
            MediaKind::Audio => 0,
            MediaKind::Video => 1,
        });
    }
    fn str(&mut self, v: &str) {
        // Names are validated (and short) before they reach a room; cut at a char boundary
        // anyway so that what is sent always decodes.
        let mut end = v.len().min(MAX_NAME);
        while !v.is_char_boundary(end) {
            end -= 1;
        }
        self.bytes(&v.as_bytes()[..end]);
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(b))
    }
    fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError("boolean")),
        }
    }
    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = usize::from(self.u16()?);
        self.take(n)
    }
    fn str(&mut self) -> Result<String, DecodeError> {
        let b = self.bytes()?;
        if b.len() > MAX_NAME {
            return Err(DecodeError("name too long"));
        }
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError("name not UTF-8"))
    }
    fn participant(&mut self) -> Result<ParticipantId, DecodeError> {
        Ok(ParticipantId::from_u64(self.u64()?))
    }
    fn track(&mut self) -> Result<TrackId, DecodeError> {
        Ok(TrackId::from_u64(self.u64()?))
    }
    fn kind(&mut self) -> Result<MediaKind, DecodeError> {
        match self.u8()? {
            0 => Ok(MediaKind::Audio),
            1 => Ok(MediaKind::Video),
            _ => Err(DecodeError("media kind")),
        }
    }
    fn source(&mut self) -> Result<TrackSource, DecodeError> {
        match self.u8()? {
            0 => Ok(TrackSource::Camera),
            1 => Ok(TrackSource::Screen),
            _ => Err(DecodeError("track source")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(message: &NodeMessage) -> NodeMessage {
        let mut bytes = Vec::new();
        message.encode(&mut bytes);
        NodeMessage::decode(&bytes, Instant::now()).expect("decodes")
    }

    #[test]
    fn room_events_and_media_round_trip() {
        let published = NodeMessage::Room(RoomEvent::Published {
            room: "räum".into(),
            participant: ParticipantId::from_u64(0x1234_5678_9abc_de01),
            track: TrackId::from_u64(42),
            kind: MediaKind::Video,
            rids: vec![Rid::from("q"), Rid::from("h"), Rid::from("f")],
            source: TrackSource::Screen,
            muted: true,
        });
        let text = format!("{:?}", round_trip(&published));
        assert_eq!(text, format!("{published:?}"));

        let packet = RelayedPacket {
            track: TrackId::from_u64(7),
            layer: 2,
            codec: ForwardedCodec::Vp8,
            ssrc: Ssrc::from(0xdead_beef),
            seq: 1 << 40,
            timestamp: 90_000,
            marker: true,
            received: Instant::now(),
            audio_level: Some(-30),
            voice_activity: Some(true),
            video_orientation: None,
            dependency_descriptor: None,
            payload: vec![0x90, 0x80, 1, 2, 3],
        };
        let NodeMessage::Media(packets) = round_trip(&NodeMessage::Media(vec![packet.clone()]))
        else {
            panic!("not media");
        };
        let p = &packets[0];
        assert_eq!(
            (
                p.track,
                p.layer,
                p.codec,
                p.ssrc,
                p.seq,
                p.timestamp,
                p.marker
            ),
            (
                packet.track,
                packet.layer,
                packet.codec,
                packet.ssrc,
                packet.seq,
                packet.timestamp,
                packet.marker
            )
        );
        assert_eq!(
            (p.audio_level, p.voice_activity, &p.payload),
            (Some(-30), Some(true), &packet.payload)
        );
        // VP9 keeps its profile across the link.
        let vp9 = RelayedPacket {
            codec: ForwardedCodec::Vp9 { profile: 2 },
            ..packet.clone()
        };
        let NodeMessage::Media(packets) = round_trip(&NodeMessage::Media(vec![vp9])) else {
            panic!("not media");
        };
        assert_eq!(packets[0].codec, ForwardedCodec::Vp9 { profile: 2 });
        // AV1 keeps its Dependency Descriptor, byte for byte (a keyframe's, with its
        // structure, is longer than the one-byte extension form holds).
        let descriptor: Vec<u8> = (0..40).collect();
        let av1 = RelayedPacket {
            codec: ForwardedCodec::Av1,
            dependency_descriptor: Some(Arc::new(
                RawDependencyDescriptor::new(&descriptor).expect("fits"),
            )),
            ..packet.clone()
        };
        let NodeMessage::Media(packets) = round_trip(&NodeMessage::Media(vec![av1])) else {
            panic!("not media");
        };
        assert_eq!(packets[0].codec, ForwardedCodec::Av1);
        let received = packets[0].dependency_descriptor.as_ref().expect("kept");
        assert_eq!(received.as_bytes(), &descriptor[..]);
        assert_eq!(packets[0].payload, packet.payload);
    }

    #[test]
    fn stats_round_trip_with_their_temporal_layers() {
        let subscription = |current_temporal, target_temporal| SubscriptionStats {
            publisher: ParticipantId::from_u64(3),
            track: TrackId::from_u64(4),
            kind: MediaKind::Video,
            current_layer: Some("f".into()),
            target_layer: Some("S1".into()),
            current_temporal,
            target_temporal,
            paused: false,
            reason: LayerReason::ALL[0].as_str(),
            pinned: true,
            bitrate_bps: 1_200_000,
            layer_changes_last_minute: 2,
        };
        let stats = ParticipantStats {
            participant: ParticipantId::from_u64(1),
            name: "ana".into(),
            room: "r".into(),
            estimate_bps: 2_000_000,
            subscriptions: vec![subscription(Some(1), Some(2)), subscription(None, None)],
        };
        let reply = NodeMessage::StatsReply {
            id: 9,
            stats: vec![stats.clone()],
        };
        let NodeMessage::StatsReply { id, stats: back } = round_trip(&reply) else {
            panic!("not a stats reply");
        };
        assert_eq!((id, back), (9, vec![stats]));
    }

    #[test]
    fn red_audio_stays_red_across_the_link() {
        let packet = RelayedPacket {
            track: TrackId::from_u64(7),
            layer: 0,
            codec: ForwardedCodec::OpusRed,
            ssrc: Ssrc::from(9),
            seq: 1,
            timestamp: 960,
            marker: false,
            received: Instant::now(),
            audio_level: Some(-20),
            voice_activity: None,
            video_orientation: None,
            dependency_descriptor: None,
            // One redundant block of 1 byte (timestamp offset 960), then the primary.
            payload: vec![0xef, 0x0f, 0x00, 0x01, 0x6f, 0xaa, 0xfc],
        };
        let NodeMessage::Media(packets) = round_trip(&NodeMessage::Media(vec![packet.clone()]))
        else {
            panic!("not media");
        };
        assert_eq!(packets[0].codec, ForwardedCodec::OpusRed);
        assert_eq!(packets[0].payload, packet.payload);
    }

    #[test]
    fn data_round_trips_to_the_room_and_to_chosen_participants() {
        for to in [
            None,
            Some(vec![ParticipantId::from_u64(2), ParticipantId::from_u64(3)]),
        ] {
            let data = AppData {
                from: ParticipantId::from_u64(0xfeed_0001),
                name: "Zoë".into(),
                to,
                payload: format!(r#"{{"text":"{}"}}"#, "é".repeat(MAX_DATA_BYTES / 2 - 6)).into(),
            };
            let message = NodeMessage::Room(RoomEvent::Data {
                room: "r".into(),
                data: data.clone(),
            });
            let NodeMessage::Room(RoomEvent::Data { room, data: back }) = round_trip(&message)
            else {
                panic!("not data");
            };
            assert_eq!((room.as_str(), back), ("r", data));
        }
    }

    #[test]
    fn operator_actions_round_trip() {
        for action in [
            OperatorAction::RemoveParticipant {
                room: "r".into(),
                participant: ParticipantId::from_u64(9),
            },
            OperatorAction::MuteTrack {
                room: "r".into(),
                track: TrackId::from_u64(3),
                muted: true,
            },
            OperatorAction::CloseRoom { room: "r".into() },
        ] {
            let NodeMessage::Operator(back) = round_trip(&NodeMessage::Operator(action.clone()))
            else {
                panic!("not an operator action");
            };
            assert_eq!(back, action);
        }
    }

    #[test]
    fn truncated_and_trailing_bytes_are_refused() {
        let mut bytes = Vec::new();
        NodeMessage::Needs {
            track: TrackId::from_u64(1),
            layers: 3,
        }
        .encode(&mut bytes);
        for cut in 0..bytes.len() {
            assert!(NodeMessage::decode(&bytes[..cut], Instant::now()).is_err());
        }
        bytes.push(0);
        assert_eq!(
            NodeMessage::decode(&bytes, Instant::now()).unwrap_err(),
            DecodeError("trailing bytes")
        );
    }

    proptest! {
        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = NodeMessage::decode(&data, Instant::now());
        }
    }
}
