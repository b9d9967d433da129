//! The forwarding path: one incoming RTP packet to every down-track of its track, O(1) work
//! per subscriber (rewriting is a fixed-size patch), once to each other worker hosting
//! subscribers of the layer (`relay.rs`); and keyframe requests travelling the other way,
//! merged per layer.

use std::sync::Arc;
use std::time::Instant;

use str0m::media::{KeyframeRequest, KeyframeRequestKind, MediaKind};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, Ssrc, VideoOrientation};

use super::{Sfu, SfuOutput};
use crate::codec::{ForwardedCodec, Vp8Header};
use crate::event::SfuEvent;
use crate::ids::{ParticipantId, TrackId};
use crate::red::RedPayload;
use crate::relay::{has_layer, RelayMessage, RelayedPacket};
use crate::svc::{RawDependencyDescriptor, Vp9Descriptor};
use crate::track::{vp8_keyframe_size, ForwardDecision, PacketInfo};

/// A subscriber's rewritten VP8 (PictureID, TL0PICIDX): the copies of a payload differ
/// only in these.
type Vp8Fields = (Option<u16>, Option<u8>);

/// What a subscriber's copy of a payload is, so that subscribers whose copies come out byte
/// for byte the same share one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PayloadForm {
    /// The payload as received, with the VP8 fields rewritten when it has them.
    AsReceived(Vp8Fields),
    /// A RED payload whose block headers name this payload type (the subscriber's Opus).
    Red { block_pt: u8 },
    /// The primary block of a RED payload alone: plain Opus.
    RedPrimary,
}

/// A packet to fan out, received from a local publisher or through the relay.
pub(super) struct IncomingPacket<'a> {
    pub layer: usize,
    pub codec: ForwardedCodec,
    pub ssrc: Ssrc,
    pub seq: u64,
    pub timestamp: u32,
    pub marker: bool,
    pub received: Instant,
    pub audio_level: Option<i8>,
    pub voice_activity: Option<bool>,
    pub video_orientation: Option<VideoOrientation>,
    pub dependency_descriptor: Option<Arc<RawDependencyDescriptor>>,
    pub payload: &'a [u8],
}

impl<'a> IncomingPacket<'a> {
    pub(super) fn relayed(packet: &'a RelayedPacket) -> Self {
        Self {
            layer: packet.layer,
            codec: packet.codec,
            ssrc: packet.ssrc,
            seq: packet.seq,
            timestamp: packet.timestamp,
            marker: packet.marker,
            received: packet.received,
            audio_level: packet.audio_level,
            voice_activity: packet.voice_activity,
            video_orientation: packet.video_orientation,
            dependency_descriptor: packet.dependency_descriptor.clone(),
            payload: packet.payload.as_slice(),
        }
    }
}

impl Sfu {
    pub(super) fn forward(&mut self, from: ParticipantId, packet: RtpPacket, now: Instant) {
        let Some(publisher) = self.participants.get_mut(&from) else {
            return;
        };
        let ssrc = packet.header.ssrc;
        let (track_id, layer) = match publisher.ssrc_tracks.get(&ssrc) {
            Some(known) => *known,
            None => {
                let Some((mid, rid)) = publisher
                    .rtc
                    .direct_api()
                    .stream_rx(&ssrc)
                    .map(|s| (s.mid(), s.rid()))
                else {
                    tracing::debug!(participant = %from, %ssrc, "packet on an unknown stream dropped");
                    return;
                };
                let Some(&track_id) = publisher.published.get(&mid) else {
                    tracing::debug!(participant = %from, %ssrc, %mid, "packet on an unpublished mid dropped");
                    return;
                };
                let Some(layer) = self.tracks.get(&track_id).and_then(|t| t.layer_index(rid))
                else {
                    tracing::debug!(participant = %from, %ssrc, ?rid, "packet of an unannounced simulcast layer dropped");
                    return;
                };
                publisher.ssrc_tracks.insert(ssrc, (track_id, layer));
                (track_id, layer)
            }
        };
        if !self.operator_muted.is_empty() && self.operator_muted.contains(&track_id) {
            return;
        }
        let Some(codec) = publisher.payload_types.codec(packet.header.payload_type) else {
            tracing::debug!(participant = %from, pt = *packet.header.payload_type, "packet of an unforwarded codec dropped");
            return;
        };
        let incoming = IncomingPacket {
            layer,
            codec,
            ssrc,
            seq: *packet.seq_no,
            timestamp: packet.header.timestamp,
            marker: packet.header.marker,
            received: packet.timestamp,
            audio_level: packet.header.ext_vals.audio_level,
            voice_activity: packet.header.ext_vals.voice_activity,
            video_orientation: packet.header.ext_vals.video_orientation,
            dependency_descriptor: packet
                .header
                .ext_vals
                .user_values
                .get_arc::<RawDependencyDescriptor>(),
            payload: &packet.payload,
        };
        self.relay_packet(track_id, &incoming);
        self.fan_out(track_id, &incoming, now);
    }

    /// Hand the packet to each other worker whose subscribers need its layer, once per worker.
    fn relay_packet(&mut self, track_id: TrackId, packet: &IncomingPacket<'_>) {
        let Some(track) = self.tracks.get(&track_id) else {
            return;
        };
        for &(worker, layers) in &track.relay_needs {
            // A scalable stream's packets all travel on one stream: any need takes them
            // (the other worker's subscribers select from them).
            let needed = if track.svc {
                layers != 0
            } else {
                has_layer(layers, packet.layer)
            };
            if !needed {
                continue;
            }
            let Some(out) = self.relay_media.get_mut(usize::from(worker)) else {
                continue;
            };
            out.push(RelayedPacket {
                track: track_id,
                layer: packet.layer,
                codec: packet.codec,
                ssrc: packet.ssrc,
                seq: packet.seq,
                timestamp: packet.timestamp,
                marker: packet.marker,
                received: packet.received,
                audio_level: packet.audio_level,
                voice_activity: packet.voice_activity,
                video_orientation: packet.video_orientation,
                dependency_descriptor: packet.dependency_descriptor.clone(),
                payload: packet.payload.to_vec(),
            });
            self.counters.relayed_packets_out += 1;
        }
    }

    /// Forward one packet of `track_id` to every subscriber of this worker.
    pub(super) fn fan_out(&mut self, track_id: TrackId, packet: &IncomingPacket<'_>, now: Instant) {
        let (layer, codec, ssrc) = (packet.layer, packet.codec, packet.ssrc);
        let Some(track) = self.tracks.get_mut(&track_id) else {
            return;
        };
        let payload = packet.payload;
        // A RED payload's layout is read once: the primary block for plain-Opus subscribers,
        // the block headers for RED subscribers whose Opus payload type differs.
        let red = match codec {
            ForwardedCodec::OpusRed => match RedPayload::parse(payload) {
                Ok(red) => Some(red),
                Err(error) => {
                    tracing::debug!(participant = %track.publisher, track = %track_id, %error, "malformed RED packet dropped");
                    return;
                }
            },
            _ => None,
        };
        // The VP8 descriptor is parsed here, once: the keyframe test, the layer's frame size,
        // and each subscriber's rewrite all come from this one parse.
        let vp8 = (codec == ForwardedCodec::Vp8)
            .then(|| Vp8Header::parse(payload))
            .flatten();
        // Likewise a scalable stream's layers, from the VP9 descriptor or AV1's Dependency
        // Descriptor: keyframes, the stream's spatial layers, and each subscriber's
        // selection. AV1 without the descriptor is one layer, forwarded like H.264.
        let svc = match (codec, &packet.dependency_descriptor) {
            (ForwardedCodec::Vp9 { .. }, _) => Vp9Descriptor::parse(payload).map(|d| {
                if let Some(k_svc) = d.inter_layer_only_at_keyframes() {
                    track.k_svc = k_svc;
                }
                d.svc_packet(track.k_svc)
            }),
            (ForwardedCodec::Av1, Some(descriptor)) if track.is_single_stream() => {
                // How the fixtures in `svc/fixtures/` were captured from Chromium
                // (RUST_LOG=sfu::engine::forward=trace); off, this is one level check.
                tracing::trace!(track = %track_id, seq = packet.seq, marker = packet.marker, aggregation_header = payload.first().copied().unwrap_or(0), ?descriptor, "AV1 packet");
                match track.av1.read(descriptor.as_bytes(), payload) {
                    Ok(svc) => {
                        // A base layer frame outside keyframes tells: k-SVC when no upper
                        // layer's decode target has it.
                        if svc.starts_picture && !svc.starts_keyframe && track.svc {
                            track.k_svc = !svc.needed_above;
                        }
                        Some(svc)
                    }
                    Err(error) => {
                        // No layer to place it in: no subscriber can be given it, and the
                        // next keyframe brings the structure.
                        tracing::debug!(participant = %track.publisher, track = %track_id, %error, "AV1 packet with an unusable dependency descriptor dropped");
                        self.request_keyframe(track_id, layer, KeyframeRequestKind::Pli, now);
                        return;
                    }
                }
            }
            _ => None,
        };
        let starts_keyframe = match (codec, vp8, svc) {
            (ForwardedCodec::Vp8, Some(h), _) => h.starts_keyframe(payload),
            (ForwardedCodec::Vp9 { .. } | ForwardedCodec::Av1, _, Some(p)) => p.starts_keyframe,
            (ForwardedCodec::Vp8 | ForwardedCodec::Vp9 { .. }, _, _) => false,
            _ => codec.starts_keyframe(payload),
        };
        if let Some(p) = &svc {
            track.learn_spatial_layers(p);
        }
        let measured_layer = track.measured_layer(layer, svc.as_ref());
        // VP8 temporal layers count only with picture IDs: without them the pictures a
        // subscriber does not get could not be numbered over (`rewrite::Vp8Rewriter`).
        let vp8_temporal = vp8.and_then(|h| h.picture_id.and(h.temporal));
        let temporal = vp8_temporal.or(svc.as_ref().map(|p| p.temporal));
        if let Some(state) = track.layers.get_mut(measured_layer) {
            state.rate.record(payload.len());
            if let Some(tid) = temporal {
                state.record_temporal(tid, payload.len());
            }
            state.last_packet = Some(now);
            if let (true, Some(h)) = (starts_keyframe, vp8) {
                state.size = payload
                    .get(h.descriptor_len..)
                    .and_then(vp8_keyframe_size)
                    .or(state.size);
            }
        }
        if let Some(level) = packet.audio_level {
            // RFC 6464: 0 is loudest, 127 silence.
            let loudness = 127.0 - f32::from(level.unsigned_abs().min(127));
            track.loudness = 0.9 * track.loudness + 0.1 * loudness;
        }
        let info = PacketInfo {
            layer,
            ssrc,
            seq: packet.seq,
            timestamp: packet.timestamp,
            starts_keyframe,
            marker: packet.marker,
            picture_id: vp8.and_then(|h| h.picture_id),
            tl0: vp8.and_then(|h| h.tl0),
            temporal: vp8_temporal,
            layer_sync: vp8.is_some_and(|h| h.layer_sync),
            svc: svc.filter(|_| track.is_single_stream()),
        };
        let nackable = track.kind == MediaKind::Video;
        let mut exts = ExtensionValues {
            audio_level: packet.audio_level,
            voice_activity: packet.voice_activity,
            video_orientation: packet.video_orientation,
            ..Default::default()
        };
        if let Some(descriptor) = &packet.dependency_descriptor {
            // Passed on as received (`svc::av1`); each subscriber's copy of the values
            // shares it.
            exts.user_values.set_arc(Arc::clone(descriptor));
        }
        let mut wants_keyframe = false;
        // One copy of the payload serves every subscriber whose VP8 fields come out the
        // same (all of them for audio and H.264, all on one layer that switched at the same
        // points for VP8); str0m holds payloads as `Arc<[u8]>`, in its send queue and its
        // NACK history, so the copies are shared there too.
        // A RED packet goes out in two forms (RED, and its primary alone for subscribers
        // without RED), each shared by every subscriber that takes it.
        let mut shared: Option<(PayloadForm, Arc<[u8]>)> = None;
        let mut shared_primary: Option<Arc<[u8]>> = None;

        for &(subscriber_id, mid) in &track.subscribers {
            let Some(subscriber) = self.participants.get_mut(&subscriber_id) else {
                continue;
            };
            let Some(downtrack) = subscriber.downtracks.get_mut(&mid) else {
                continue;
            };
            // Not negotiated yet: nothing to send on, and nothing to tell.
            let Some(tx_ssrc) = downtrack.tx_ssrc() else {
                continue;
            };
            // Checked before the layer decision: a subscriber that cannot decode the codec
            // must not make the publisher send keyframes for it either.
            // A RED packet goes out on the subscriber's RED payload type with its Opus one in
            // the block headers, or, to a subscriber without RED, as Opus.
            let types = &downtrack.payload_types;
            let target = match (red.is_some(), types.pt(codec)) {
                (true, Some(red_pt)) => types
                    .pt(ForwardedCodec::Opus)
                    .map(|opus| (red_pt, PayloadForm::Red { block_pt: *opus })),
                (true, None) => types
                    .pt(ForwardedCodec::Opus)
                    .map(|opus| (opus, PayloadForm::RedPrimary)),
                (false, pt) => pt.map(|pt| (pt, PayloadForm::AsReceived((None, None)))),
            };
            let Some((pt, form)) = target else {
                // A RED publisher sends Opus: what a subscriber lacks then is Opus.
                let missing = if red.is_some() {
                    ForwardedCodec::Opus
                } else {
                    codec
                };
                if !downtrack.notified_codec_unsupported {
                    downtrack.notified_codec_unsupported = true;
                    tracing::info!(participant = %subscriber_id, track = %track_id, codec = missing.sdp_name(), "subscriber cannot receive this codec");
                    self.outputs
                        .push_back(SfuOutput::Event(SfuEvent::CodecUnsupported {
                            to: subscriber_id,
                            participant: track.publisher,
                            track: track_id,
                            codec: missing.sdp_name(),
                        }));
                }
                continue;
            };
            let layer_before = downtrack.current_layer();
            let (seq, timestamp, picture_id, tl0, marker) = match downtrack.forward(&info, now) {
                ForwardDecision::Send {
                    seq,
                    timestamp,
                    picture_id,
                    tl0,
                    marker,
                    wants_keyframe: wants,
                } => {
                    wants_keyframe |= wants;
                    (seq, timestamp, picture_id, tl0, marker)
                }
                ForwardDecision::NeedKeyframe => {
                    wants_keyframe = true;
                    continue;
                }
                ForwardDecision::Fill { seq, timestamp } => {
                    let empty = RtpWrite::new(
                        pt,
                        seq.into(),
                        timestamp,
                        packet.received,
                        Arc::<[u8]>::from([]),
                    )
                    .nackable(false);
                    if let Some(stream) = subscriber.rtc.direct_api().stream_tx(&tx_ssrc) {
                        stream.write_rtp(empty);
                    }
                    self.counters.sequence_holes_filled += 1;
                    if !subscriber.dirty {
                        subscriber.dirty = true;
                        self.dirty.push(subscriber_id);
                    }
                    continue;
                }
                ForwardDecision::Drop => continue,
            };
            if layer_before.is_some() && layer_before != downtrack.current_layer() {
                self.counters.layer_switches += 1;
            }
            let form = match form {
                PayloadForm::AsReceived(_) => PayloadForm::AsReceived((picture_id, tl0)),
                red_form => red_form,
            };
            let data = match (form, red) {
                (PayloadForm::RedPrimary, Some(red)) => Arc::clone(
                    shared_primary.get_or_insert_with(|| Arc::from(red.primary(payload))),
                ),
                _ => match &shared {
                    Some((shared_form, data)) if *shared_form == form => Arc::clone(data),
                    _ => {
                        let mut data = Arc::<[u8]>::from(payload);
                        if let Some(bytes) = Arc::get_mut(&mut data) {
                            match (form, &vp8, red) {
                                (PayloadForm::AsReceived(_), Some(h), _) => {
                                    h.rewrite(bytes, picture_id, tl0)
                                }
                                (PayloadForm::Red { block_pt }, _, Some(red))
                                    if red.block_pt() != block_pt =>
                                {
                                    red.rewrite_block_pts(bytes, block_pt)
                                }
                                _ => {}
                            }
                        }
                        shared = Some((form, Arc::clone(&data)));
                        data
                    }
                },
            };
            downtrack.sent_bytes.record(data.len());
            self.counters.forwarded_packets += 1;
            self.counters.forwarded_bytes += data.len() as u64;
            let write = RtpWrite::new(pt, seq.into(), timestamp, packet.received, data)
                .marker(marker)
                .ext_vals(exts.clone())
                .nackable(nackable);
            if let Some(stream) = subscriber.rtc.direct_api().stream_tx(&tx_ssrc) {
                stream.write_rtp(write);
            }
            if !subscriber.dirty {
                subscriber.dirty = true;
                self.dirty.push(subscriber_id);
            }
        }

        if wants_keyframe {
            self.request_keyframe(track_id, layer, KeyframeRequestKind::Pli, now);
        }
    }

    /// A subscriber asked for a keyframe on one of its down-tracks: pass it to the publisher,
    /// for the layer that subscriber gets (or is switching to).
    pub(super) fn forward_keyframe_request(
        &mut self,
        subscriber: ParticipantId,
        req: KeyframeRequest,
        now: Instant,
    ) {
        let Some((track_id, layer)) = self
            .participants
            .get(&subscriber)
            .and_then(|p| p.downtracks.get(&req.mid))
            .and_then(|d| Some((d.track, d.layer_for_keyframe()?)))
        else {
            return;
        };
        self.request_keyframe(track_id, layer, req.kind, now);
    }

    /// Ask the publisher for a keyframe on one layer, at most once per interval per layer.
    pub(super) fn request_keyframe(
        &mut self,
        track_id: TrackId,
        layer: usize,
        kind: KeyframeRequestKind,
        now: Instant,
    ) {
        let Some(track) = self.tracks.get_mut(&track_id) else {
            return;
        };
        let origin = track.origin;
        // A scalable stream's keyframe is one for every layer: one throttle for them all.
        let layer = if track.svc { 0 } else { layer };
        let Some(state) = track.layers.get_mut(layer) else {
            return;
        };
        if let Some(worker) = origin {
            // The publisher is on another worker, which merges and throttles for everyone.
            if state.keyframe_throttle.try_request(now) {
                self.send_relay(
                    worker,
                    RelayMessage::KeyframeRequest {
                        track: track_id,
                        layer,
                        kind,
                    },
                );
            }
            return;
        }
        // A layer that has not sent yet has no receive stream to ask on (str0m refuses).
        if state.last_packet.is_none() || !state.keyframe_throttle.try_request(now) {
            return;
        }
        let (publisher, mid, rid) = (track.publisher, track.mid, state.rid);
        if let Some(p) = self.participants.get_mut(&publisher) {
            if let Some(stream) = p.rtc.direct_api().stream_rx_by_mid(mid, rid) {
                stream.request_keyframe(kind);
                self.counters.plis_sent += 1;
                tracing::debug!(participant = %publisher, track = %track_id, ?rid, "keyframe requested");
            }
            self.mark_dirty(publisher);
        }
    }
}
