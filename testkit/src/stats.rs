//! What a test client has seen: received media per remote participant and track, plus the
//! signaling events and errors the server sent.
//!
//! Nothing here fails on its own: anomalies (corrupt payloads, sequence gaps, picture-ID
//! jumps) are counted, and tests decide what they tolerate.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Instant;

use crate::payload;

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MediaKind {
    /// Opus audio.
    Audio,
    /// VP8 video.
    Video,
}

impl MediaKind {
    /// Parses the protocol's `"audio"` / `"video"`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "audio" => Some(Self::Audio),
            "video" => Some(Self::Video),
            _ => None,
        }
    }
}

impl fmt::Display for MediaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Audio => "audio",
            Self::Video => "video",
        })
    }
}

/// Counters for one received track.
#[derive(Debug, Clone)]
pub struct TrackStats {
    /// Audio or video (from signaling or from the track itself).
    pub kind: MediaKind,
    /// The transceiver `mid` it arrives on, when the server's `tracks` map named it.
    pub mid: Option<String>,
    /// RTP packets received.
    pub packets: u64,
    /// RTP payload bytes received.
    pub payload_bytes: u64,
    /// Payloads that failed verification (corrupt, truncated, bad VP8 structure).
    pub integrity_failures: u64,
    /// The first verification failure, for diagnostics.
    pub first_integrity_error: Option<String>,
    /// Sequence numbers skipped (sum of the sizes of all forward jumps).
    pub seq_missing: u64,
    /// Number of forward jumps in the sequence numbers.
    pub seq_gap_events: u64,
    /// Packets whose sequence number was not ahead of the highest seen (duplicates, reordering).
    pub seq_out_of_order: u64,
    /// Transitions where the sender's packet counter did not advance by exactly one (packets
    /// lost or dropped before the last hop, even if the SFU rewrote sequence numbers over them).
    pub counter_jumps: u64,
    /// The distinct SSRCs seen on this track.
    pub ssrcs: Vec<u32>,
    /// The sender tag carried in the payloads (see [`crate::sender_tag`]).
    pub sender_tag: Option<u64>,
    /// Payloads whose sender tag differed from the first one seen on this track.
    pub sender_tag_changes: u64,
    /// VP8: frames started (packets with S=1, PID=0).
    pub frames: u64,
    /// VP8: keyframes started.
    pub keyframes: u64,
    /// VP8: packets with the RTP marker bit (last packet of a frame).
    pub marker_packets: u64,
    /// VP8: frame starts whose picture ID was not the previous one plus one, plus packets
    /// within a frame whose picture ID differed from the frame's.
    pub picture_id_jumps: u64,
    /// VP8: packets without a picture ID.
    pub missing_picture_id: u64,
    /// Whether the track ended (server renegotiated it away, or webrtc-rs reported its end).
    pub ended: bool,
    /// Why it is considered ended.
    pub ended_reason: Option<String>,
    /// When the first packet arrived.
    pub first_packet_at: Option<Instant>,
    /// When the last packet arrived.
    pub last_packet_at: Option<Instant>,
    highest_seq: Option<u16>,
    last_counter: Option<u32>,
    last_picture_id: Option<(u16, bool)>,
}

impl TrackStats {
    /// An empty record for a track of `kind`.
    pub fn new(kind: MediaKind) -> Self {
        Self {
            kind,
            mid: None,
            packets: 0,
            payload_bytes: 0,
            integrity_failures: 0,
            first_integrity_error: None,
            seq_missing: 0,
            seq_gap_events: 0,
            seq_out_of_order: 0,
            counter_jumps: 0,
            ssrcs: Vec::new(),
            sender_tag: None,
            sender_tag_changes: 0,
            frames: 0,
            keyframes: 0,
            marker_packets: 0,
            picture_id_jumps: 0,
            missing_picture_id: 0,
            ended: false,
            ended_reason: None,
            first_packet_at: None,
            last_packet_at: None,
            highest_seq: None,
            last_counter: None,
            last_picture_id: None,
        }
    }

    /// Records one received RTP packet and checks its payload.
    pub fn record_packet(&mut self, ssrc: u32, seq: u16, marker: bool, payload: &[u8]) {
        let now = Instant::now();
        self.packets += 1;
        self.payload_bytes += payload.len() as u64;
        self.first_packet_at.get_or_insert(now);
        self.last_packet_at = Some(now);
        if !self.ssrcs.contains(&ssrc) {
            self.ssrcs.push(ssrc);
        }
        match self.highest_seq {
            None => self.highest_seq = Some(seq),
            Some(high) => {
                let diff = seq.wrapping_sub(high);
                if diff == 0 || diff >= 0x8000 {
                    self.seq_out_of_order += 1;
                } else {
                    if diff > 1 {
                        self.seq_missing += u64::from(diff - 1);
                        self.seq_gap_events += 1;
                    }
                    self.highest_seq = Some(seq);
                }
            }
        }
        if marker {
            self.marker_packets += 1;
        }
        let body = match self.kind {
            MediaKind::Audio => payload::verify_body(payload),
            MediaKind::Video => payload::verify_vp8_payload(payload).map(|info| {
                self.record_vp8(&info);
                info.body
            }),
        };
        match body {
            Ok(body) => {
                match self.sender_tag {
                    None => self.sender_tag = Some(body.tag),
                    Some(tag) if tag != body.tag => self.sender_tag_changes += 1,
                    Some(_) => {}
                }
                if let Some(last) = self.last_counter {
                    if body.counter != last.wrapping_add(1) {
                        self.counter_jumps += 1;
                    }
                }
                self.last_counter = Some(body.counter);
            }
            Err(err) => {
                self.integrity_failures += 1;
                if self.first_integrity_error.is_none() {
                    self.first_integrity_error = Some(format!("seq {seq}: {err}"));
                }
            }
        }
    }

    fn record_vp8(&mut self, info: &payload::Vp8PacketInfo) {
        let Some((pid, long)) = info.descriptor.picture_id else {
            self.missing_picture_id += 1;
            return;
        };
        let modulus: u32 = if long { 1 << 15 } else { 1 << 7 };
        if let Some(keyframe) = info.frame_start {
            self.frames += 1;
            if keyframe {
                self.keyframes += 1;
            }
            if let Some((last, last_long)) = self.last_picture_id {
                let expected = ((u32::from(last) + 1) % modulus) as u16;
                if last_long != long || pid != expected {
                    self.picture_id_jumps += 1;
                }
            }
        } else if let Some(last) = self.last_picture_id {
            if last != (pid, long) {
                self.picture_id_jumps += 1;
            }
        }
        self.last_picture_id = Some((pid, long));
    }

    /// Marks the track ended, keeping the first reason.
    pub fn mark_ended(&mut self, reason: impl Into<String>) {
        if !self.ended {
            self.ended = true;
            self.ended_reason = Some(reason.into());
        }
    }
}

/// Everything received from one remote participant.
#[derive(Debug, Clone, Default)]
pub struct ParticipantStats {
    /// Display name, if a signaling message named it.
    pub name: Option<String>,
    /// Received tracks by track id.
    pub tracks: BTreeMap<String, TrackStats>,
}

impl ParticipantStats {
    fn sum(&self, kind: Option<MediaKind>, f: impl Fn(&TrackStats) -> u64) -> u64 {
        self.tracks
            .values()
            .filter(|t| kind.is_none_or(|k| t.kind == k))
            .map(f)
            .sum()
    }
    /// Audio packets received.
    pub fn audio_packets(&self) -> u64 {
        self.sum(Some(MediaKind::Audio), |t| t.packets)
    }
    /// Video packets received.
    pub fn video_packets(&self) -> u64 {
        self.sum(Some(MediaKind::Video), |t| t.packets)
    }
    /// Video frames started.
    pub fn video_frames(&self) -> u64 {
        self.sum(Some(MediaKind::Video), |t| t.frames)
    }
    /// Video keyframes started.
    pub fn keyframes(&self) -> u64 {
        self.sum(Some(MediaKind::Video), |t| t.keyframes)
    }
    /// Payload integrity failures over all tracks.
    pub fn integrity_failures(&self) -> u64 {
        self.sum(None, |t| t.integrity_failures)
    }
    /// Missing sequence numbers over all tracks.
    pub fn seq_missing(&self) -> u64 {
        self.sum(None, |t| t.seq_missing)
    }
    /// Picture-ID jumps over all video tracks.
    pub fn picture_id_jumps(&self) -> u64 {
        self.sum(Some(MediaKind::Video), |t| t.picture_id_jumps)
    }
    /// Whether it has at least one track and every track ended.
    pub fn all_tracks_ended(&self) -> bool {
        !self.tracks.is_empty() && self.tracks.values().all(|t| t.ended)
    }
    /// The track of `kind`, if exactly one or the first of several.
    pub fn track(&self, kind: MediaKind) -> Option<&TrackStats> {
        self.tracks.values().find(|t| t.kind == kind)
    }
}

/// A signaling event from the server, in order of arrival.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalEvent {
    /// `participant_joined`.
    ParticipantJoined {
        /// Its id.
        participant_id: String,
        /// Its display name.
        name: String,
    },
    /// `participant_left`.
    ParticipantLeft {
        /// Its id.
        participant_id: String,
    },
    /// `track_published`.
    TrackPublished {
        /// Whose track.
        participant_id: String,
        /// The track.
        track_id: String,
        /// `"audio"` or `"video"`.
        kind: String,
    },
    /// `track_unpublished`.
    TrackUnpublished {
        /// Whose track.
        participant_id: String,
        /// The track.
        track_id: String,
    },
    /// `track_muted`.
    TrackMuted {
        /// Whose track.
        participant_id: String,
        /// The track.
        track_id: String,
        /// Muted or unmuted.
        muted: bool,
    },
}

/// A snapshot of what a client has received and seen.
#[derive(Debug, Clone, Default)]
pub struct ReceivedStats {
    /// Received media by remote participant id (the msid stream id / the server's `tracks` map).
    pub participants: BTreeMap<String, ParticipantStats>,
    /// Signaling events, in order.
    pub events: Vec<SignalEvent>,
    /// Participants listed in `joined` (already in the room when this client joined).
    pub initial_participants: Vec<String>,
    /// `error` messages the server sent, as JSON.
    pub errors: Vec<serde_json::Value>,
    /// Server-initiated offers received.
    pub server_offers: u64,
    /// Server offers answered successfully.
    pub answers_sent: u64,
    /// Failures while applying server offers.
    pub negotiation_failures: Vec<String>,
    /// The latest peer-connection state, as webrtc-rs names it.
    pub connection_state: String,
    /// Audio RTP packets written to the local track.
    pub sent_audio_packets: u64,
    /// Video RTP packets written to the local track.
    pub sent_video_packets: u64,
    /// Video frames sent, and keyframes among them.
    pub sent_video_frames: u64,
    /// Keyframes sent.
    pub sent_keyframes: u64,
    /// RTP writes that failed, with the first error.
    pub send_errors: u64,
    /// The first send error.
    pub first_send_error: Option<String>,
    /// PLI/FIR keyframe requests received for this client's video.
    pub keyframe_requests_received: u64,
    /// The WebSocket closed: `Some(close code)` (`None` inside when no close frame came).
    pub ws_closed: Option<Option<u16>>,
}

impl ReceivedStats {
    /// The record for a remote participant.
    pub fn participant(&self, id: &str) -> Option<&ParticipantStats> {
        self.participants.get(id)
    }
    /// Audio packets received from `id` (0 if unknown).
    pub fn audio_packets_from(&self, id: &str) -> u64 {
        self.participant(id).map_or(0, |p| p.audio_packets())
    }
    /// Video packets received from `id` (0 if unknown).
    pub fn video_packets_from(&self, id: &str) -> u64 {
        self.participant(id).map_or(0, |p| p.video_packets())
    }
    /// Integrity failures over all participants.
    pub fn total_integrity_failures(&self) -> u64 {
        self.participants
            .values()
            .map(|p| p.integrity_failures())
            .sum()
    }
    /// Whether a `participant_joined` for `id` arrived.
    pub fn saw_joined(&self, id: &str) -> bool {
        self.events.iter().any(|e| matches!(e, SignalEvent::ParticipantJoined { participant_id, .. } if participant_id == id))
    }
    /// Whether a `participant_left` for `id` arrived.
    pub fn saw_left(&self, id: &str) -> bool {
        self.events.iter().any(
            |e| matches!(e, SignalEvent::ParticipantLeft { participant_id } if participant_id == id),
        )
    }
    /// Whether a `track_unpublished` for `track_id` arrived.
    pub fn saw_unpublished(&self, track_id: &str) -> bool {
        self.events.iter().any(
            |e| matches!(e, SignalEvent::TrackUnpublished { track_id: t, .. } if t == track_id),
        )
    }
    /// The entry for a track, created if absent.
    pub(crate) fn track_entry(
        &mut self,
        participant_id: &str,
        track_id: &str,
        kind: MediaKind,
    ) -> &mut TrackStats {
        self.participants
            .entry(participant_id.to_owned())
            .or_default()
            .tracks
            .entry(track_id.to_owned())
            .or_insert_with(|| TrackStats::new(kind))
    }
}

impl fmt::Display for ReceivedStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "connection={} sent audio={} video={} (frames {}, key {}) send_errors={}{} pli_in={} server_offers={} answers={} ws_closed={:?}",
            self.connection_state,
            self.sent_audio_packets,
            self.sent_video_packets,
            self.sent_video_frames,
            self.sent_keyframes,
            self.send_errors,
            self.first_send_error
                .as_ref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default(),
            self.keyframe_requests_received,
            self.server_offers,
            self.answers_sent,
            self.ws_closed,
        )?;
        for (id, p) in &self.participants {
            writeln!(f, "  from {id} ({}):", p.name.as_deref().unwrap_or("?"))?;
            for (track_id, t) in &p.tracks {
                writeln!(
                    f,
                    "    {} {track_id} mid={:?}: packets={} bytes={} integrity_fail={}{} seq_missing={} (gaps {}) out_of_order={} counter_jumps={} frames={} key={} marker={} pid_jumps={} tag={:?} tag_changes={} ssrcs={:?} ended={}{}",
                    t.kind,
                    t.mid,
                    t.packets,
                    t.payload_bytes,
                    t.integrity_failures,
                    t.first_integrity_error
                        .as_ref()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default(),
                    t.seq_missing,
                    t.seq_gap_events,
                    t.seq_out_of_order,
                    t.counter_jumps,
                    t.frames,
                    t.keyframes,
                    t.marker_packets,
                    t.picture_id_jumps,
                    t.sender_tag.map(|t| format!("{t:016x}")),
                    t.sender_tag_changes,
                    t.ssrcs,
                    t.ended,
                    t.ended_reason
                        .as_ref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default(),
                )?;
            }
        }
        writeln!(f, "  events: {:?}", self.events)?;
        if !self.negotiation_failures.is_empty() {
            writeln!(f, "  negotiation failures: {:?}", self.negotiation_failures)?;
        }
        if !self.errors.is_empty() {
            writeln!(f, "  server errors: {:?}", self.errors)?;
        }
        Ok(())
    }
}
