//! The subscription tick, every `HOUSEKEEPING_INTERVAL`: measure layers, find each room's
//! active speaker, split every subscriber's bandwidth estimate across its videos (see
//! `allocator`), tell publishers which simulcast layers anyone still needs (dynacast), and
//! report all of it (stats). Every `SPEAKERS_INTERVAL` each room's active speakers are
//! re-evaluated (`speakers.rs`) and reported to its members here when they change.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use str0m::bwe::Bitrate;
use str0m::media::{KeyframeRequestKind, MediaKind, Mid, Rid};

use super::{Sfu, SfuOutput};
use crate::allocator::{
    allocate, Demand, LayerOffer, LayerPoint, Priority, Reason, UPGRADE_HEADROOM,
};
use crate::bandwidth::Feedback;
use crate::event::{SfuEvent, SubscriptionStats};
use crate::ids::{ParticipantId, TrackId};
use crate::relay::{has_layer, with_layer, LayerMask};
use crate::room::Room;
use crate::speakers::{MemberAudio, SPEAKING_LOUDNESS};
use crate::svc::TemporalLevel;
use crate::track::TrackSource;

/// A layer nobody needs is turned off at the publisher after this long, so a brief dip does
/// not make it restart (with a keyframe) a moment later.
const DYNACAST_OFF_DELAY: Duration = Duration::from_secs(3);
/// The estimate is probed to this multiple of what the allocation wants. str0m paces at
/// 1.1 x the estimate, so an estimate only just above the media rate holds every keyframe
/// (several delta frames' worth) in the pacer for tens of ms; headroom lets it through.
const PROBE_HEADROOM: u64 = 2;
/// Audio takes about this much of a subscriber's budget per track before video is allocated.
const AUDIO_ALLOWANCE_BPS: u64 = 48_000;

/// One video down-track as the allocator sees it.
struct VideoDownTrack {
    mid: Mid,
    /// The track's ladder (`UpTrack::layer_offers`): what each step costs, and which layer
    /// and temporal layers it stands for.
    offers: Vec<LayerOffer>,
    points: Vec<LayerPoint>,
    /// Which layers arrive from the publisher now.
    live: LayerMask,
    priority: Priority,
    shown: Option<(u32, u32)>,
    /// The step of the ladder targeted now.
    current: Option<usize>,
    /// A scalable stream: its layers are parts of one stream, none to stop or flush.
    svc: bool,
}

impl Sfu {
    pub(super) fn allocation_tick(&mut self, now: Instant) {
        for track in self.tracks.values_mut() {
            for layer in &mut track.layers {
                layer.tick(now);
            }
        }
        for p in self.participants.values_mut() {
            for d in p.downtracks.values_mut() {
                d.sent_bytes.tick(now);
            }
        }
        let speakers = self.active_speakers();
        let ids: Vec<ParticipantId> = self.participants.keys().copied().collect();
        for id in ids {
            self.allocate_for(id, &speakers, now);
        }
        // Targets may have moved: the other workers' relays follow.
        self.relay_needs_changed = true;
        self.update_dynacast(now);
    }

    /// Allocate again, now, for the subscribers whose feedback just showed congestion.
    pub(super) fn reallocate_congested(&mut self, now: Instant) {
        self.reallocate_at = None;
        let speakers = self.active_speakers();
        for id in std::mem::take(&mut self.congested) {
            self.allocate_for(id, &speakers, now);
        }
    }

    /// In each room, the loudest participant, if anyone is speaking: members on other
    /// workers included, from the audio this worker receives of them through the relay.
    fn active_speakers(&self) -> HashSet<ParticipantId> {
        self.rooms
            .values()
            .filter_map(|room| {
                self.member_audio(room)
                    .into_iter()
                    .filter_map(|(id, audio)| match audio {
                        MemberAudio::Loudness(loudness) if loudness > SPEAKING_LOUDNESS => {
                            Some((id, loudness))
                        }
                        _ => None,
                    })
                    .max_by(|a, b| a.1.total_cmp(&b.1))
                    .map(|(id, _)| id)
            })
            .collect()
    }

    /// Every member of `room` (local and on other workers) with the loudness of its loudest
    /// unmuted audio track, or silent.
    fn member_audio(&self, room: &Room) -> Vec<(ParticipantId, MemberAudio)> {
        let audio_of = |tracks: &mut dyn Iterator<Item = &TrackId>| {
            tracks
                .filter_map(|t| self.tracks.get(t))
                .filter(|t| t.kind == MediaKind::Audio && !t.muted)
                .map(|t| t.loudness)
                .reduce(f32::max)
                .map_or(MemberAudio::Silent, MemberAudio::Loudness)
        };
        let local = room
            .participants
            .iter()
            .filter_map(|p| self.participants.get(p))
            .map(|p| (p.id, audio_of(&mut p.published.values())));
        let remote = room
            .remote
            .iter()
            .map(|m| (m.id, audio_of(&mut m.tracks.iter())));
        local.chain(remote).collect()
    }

    /// Re-evaluate each room's active speakers and tell its members here when they change.
    pub(super) fn report_speakers(&mut self, now: Instant) {
        let mut reports = Vec::new();
        for (name, room) in &self.rooms {
            let members = self.member_audio(room);
            reports.push((name.clone(), members));
        }
        for (name, members) in reports {
            let Some(room) = self.rooms.get_mut(&name) else {
                continue;
            };
            let Some(speakers) = room.speakers.update(now, &members) else {
                continue;
            };
            for &to in &room.participants {
                self.outputs
                    .push_back(SfuOutput::Event(SfuEvent::ActiveSpeakers {
                        to,
                        speakers: speakers.clone(),
                    }));
            }
        }
    }

    fn allocate_for(&mut self, id: ParticipantId, speakers: &HashSet<ParticipantId>, now: Instant) {
        let Some(p) = self.participants.get(&id) else {
            return;
        };
        let pinned = self.pins.get(&id).copied();
        let mut videos: Vec<VideoDownTrack> = Vec::new();
        let mut audio_bps = 0;
        for d in p.downtracks.values() {
            if d.kind == MediaKind::Audio {
                // What audio actually takes (silence and mutes take little), or the allowance
                // before it is measured.
                let measured = d.sent_bytes.bps();
                audio_bps += if measured > 0 {
                    measured * 5 / 4
                } else {
                    AUDIO_ALLOWANCE_BPS
                };
                continue;
            }
            if d.notified_codec_unsupported {
                // It gets none of this video: no share of the budget either.
                continue;
            }
            let Some(track) = self.tracks.get(&d.track) else {
                continue;
            };
            let (mut offers, mut points) = (Vec::new(), Vec::new());
            track.layer_offers(now, &mut offers, &mut points);
            let priority = match (track.source, speakers.contains(&track.publisher)) {
                _ if pinned == Some(track.publisher) => Priority::Pinned,
                (TrackSource::Screen, _) => Priority::Screen,
                (_, true) => Priority::Speaker,
                _ => Priority::Other,
            };
            let live = track
                .layers
                .iter()
                .enumerate()
                .filter(|(_, l)| l.is_live(now))
                .fold(0, |mask, (i, _)| with_layer(mask, i));
            let current = d
                .target_layer()
                .and_then(|layer| ladder_step(&points, layer, d.target_temporal()));
            videos.push(VideoDownTrack {
                mid: d.mid,
                offers,
                points,
                live,
                priority,
                shown: d.shown,
                current,
                svc: track.svc,
            });
        }
        let demands: Vec<Demand> = videos
            .iter()
            .map(|v| Demand {
                priority: v.priority,
                layers: &v.offers,
                shown: v.shown,
                current: v.current,
            })
            .collect();
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        let estimate = p.bandwidth.update(now, p.resume_bps);
        if let Some(bps) = estimate.reset_str0m {
            tracing::debug!(participant = %id, bps, feedback = ?p.bandwidth.feedback(), "bandwidth estimate: str0m's estimator restarted from ours");
            p.rtc.bwe().reset(Bitrate::bps(bps));
        }
        let budget = estimate.allocation_bps.saturating_sub(audio_bps);
        let decisions = allocate(budget, &demands);
        let mut resume_bps = None;
        let mut keyframes_wanted: Vec<(TrackId, usize)> = Vec::new();
        let (mut floor_bps, mut desired_bps) = (audio_bps, audio_bps);
        for (
            VideoDownTrack {
                mid,
                offers,
                points,
                live,
                svc,
                current,
                ..
            },
            decision,
        ) in videos.iter().zip(&decisions)
        {
            let Some(d) = p.downtracks.get_mut(mid) else {
                continue;
            };
            let before = d.target_layer();
            let before_temporal = d.target_temporal();
            let mut proposed = decision.target;
            if let (true, Some(down), Some(from)) = (estimate.congested, proposed, *current) {
                if down < from {
                    // Stepping down on a congested link: to a layer at its full frame rate.
                    // A lower frame rate of the same layer leaves str0m's pacer holding a
                    // backlog at the old rate, which the overflowing link drops, while the
                    // estimate has not finished falling: the picture would freeze until the
                    // next step, a second later (1.7 s instead of 0.2-0.6 s in `drop.mjs`).
                    // Temporal steps serve falls that come without loss, and climbs.
                    // And never to a layer the publisher has stopped (dynacast), whose
                    // restart and keyframe would take longer than the freeze already under
                    // way: the next lower one that flows will do.
                    proposed = (0..=down)
                        .rev()
                        .find(|&step| {
                            points[step].temporal.is_none() && has_layer(*live, points[step].layer)
                        })
                        .or(proposed);
                }
            }
            let step = d
                .gate
                .admit(*current, proposed, decision.reason, points, now);
            let point = step.and_then(|s| points.get(s).copied());
            let target = point.map(|p| p.layer);
            let target_temporal = point.and_then(|p| p.temporal);
            if (target, target_temporal) != (before, before_temporal) {
                tracing::debug!(participant = %id, track = %d.track, ?before, ?before_temporal, ?target, ?target_temporal, reason = decision.reason.as_str(), estimate = estimate.allocation_bps, "layer target changed");
            }
            d.set_target_temporal(target_temporal);
            if target != before {
                d.set_target(target);
                // A scalable stream steps down without one: it only needs a keyframe to go up.
                let needs_keyframe = |t: usize| {
                    let current = d.current_layer();
                    current != Some(t) && (!svc || current < Some(t))
                };
                if let Some(layer) = target.filter(|&t| needs_keyframe(t)) {
                    // Ask now rather than when the layer's next packet arrives: a frame
                    // interval sooner, which is most of a downswitch's freeze.
                    keyframes_wanted.push((d.track, layer));
                }
                if target.is_some() && target < before && estimate.congested && !svc {
                    // The link is overflowing: stop the old layer now, and throw away what
                    // str0m's pacer still holds of it, so the lower layer's keyframe goes
                    // out next instead of seconds later. (A scalable stream steps down at
                    // its next picture by itself; stopping it would wait for a keyframe.)
                    d.stop_current();
                    if let Some(ssrc) = d.tx_ssrc() {
                        if let Some(stream) = p.rtc.direct_api().stream_tx(&ssrc) {
                            stream.drop_queued();
                        }
                    }
                }
            }
            d.reason = decision.reason;
            let paused = target.is_none();
            if paused != d.notified_paused {
                d.notified_paused = paused;
                if let Some(track) = self.tracks.get(&d.track) {
                    self.outputs
                        .push_back(SfuOutput::Event(SfuEvent::VideoPaused {
                            to: id,
                            participant: track.publisher,
                            track: d.track,
                            paused,
                            reason: decision.reason,
                        }));
                }
            }
            floor_bps += step
                .and_then(|s| offers.get(s))
                .map_or(0, |l| l.bitrate_bps);
            if paused && decision.reason == Reason::Bandwidth && resume_bps.is_none() {
                resume_bps = offers
                    .first()
                    .map(|l| (l.bitrate_bps as f64 * UPGRADE_HEADROOM) as u64);
            }
            // Probe toward what every video would get unconstrained, so paused or limited
            // videos come back on their own when the network allows.
            desired_bps += decision
                .ideal
                .and_then(|i| offers.get(i))
                .map_or(0, |l| l.bitrate_bps);
        }
        // What resumes the first video paused for bandwidth: everything flowing now, plus it.
        p.resume_bps = resume_bps.map(|bps| bps + floor_bps);
        // A video held below its ideal layer by the estimate gets probes toward it now and
        // then, where str0m would not probe on its own (`bandwidth::ProbeNudge`); they need
        // transport-wide feedback to tell anything.
        let limited = p.bandwidth.feedback() == Feedback::Twcc
            && decisions
                .iter()
                .any(|d| matches!(d.reason, Reason::Bandwidth | Reason::BandwidthLimited));
        // Without video there is nothing to probe for: audio is never held back by the
        // estimate. Asking for twice the audio had str0m probe every audio listener, a
        // burst of padding each time (230 probe timeouts a second for 100 listeners).
        let desired_bps = if videos.is_empty() {
            0
        } else {
            p.probe_nudge
                .desired_bps(
                    now,
                    estimate.allocation_bps,
                    desired_bps.max(floor_bps).saturating_mul(PROBE_HEADROOM),
                    limited,
                )
                .max(floor_bps)
        };
        // str0m pads the link up to the minimum whenever media falls short of it. Audio is
        // left out: its allowance is an estimate with headroom (payload, headers, a quarter
        // more), so counting it had every audio listener padded by about a quarter of what
        // it receives, for nothing to discover (7,000 padding packets a second to 100
        // listeners; BENCHMARKS.md, "The pacer's passes and padding to audio listeners").
        // The video floor stays: it keeps the estimate at what the allocated layers need
        // when an encoder undershoots.
        p.rtc.bwe().set_bitrate(
            Bitrate::bps(floor_bps.saturating_sub(audio_bps)),
            Bitrate::bps(desired_bps),
        );
        self.mark_dirty(id);
        for (track, layer) in keyframes_wanted {
            self.request_keyframe(track, layer, KeyframeRequestKind::Pli, now);
        }
    }

    /// Tell each simulcast publisher which layers are still wanted by some subscriber, here
    /// or on another worker.
    fn update_dynacast(&mut self, now: Instant) {
        for track in self
            .tracks
            .values_mut()
            .filter(|t| t.is_simulcast() && t.origin.is_none())
        {
            let mut needed = vec![false; track.layers.len()];
            // The lowest layer of every subscribed track keeps flowing, wanted or not: it is
            // cheap, and a subscriber whose link suddenly drops switches down to it without
            // waiting for the publisher to restart it and send its keyframe.
            if let Some(lowest) = needed.first_mut() {
                *lowest = !track.subscribers.is_empty() || !track.relay_needs.is_empty();
            }
            for (i, n) in needed.iter_mut().enumerate() {
                *n |= track
                    .relay_needs
                    .iter()
                    .any(|&(_, layers)| has_layer(layers, i));
            }
            for (subscriber, mid) in &track.subscribers {
                let Some(d) = self
                    .participants
                    .get(subscriber)
                    .and_then(|p| p.downtracks.get(mid))
                else {
                    continue;
                };
                for layer in [d.target_layer(), d.current_layer()].into_iter().flatten() {
                    if let Some(n) = needed.get_mut(layer) {
                        *n = true;
                    }
                }
            }
            let mut active: Vec<Rid> = Vec::new();
            for (i, layer) in track.layers.iter().enumerate() {
                let since = &mut track.unneeded_since[i];
                if needed[i] {
                    *since = None;
                } else if since.is_none() {
                    *since = Some(now);
                }
                let keep =
                    since.is_none_or(|s| now.saturating_duration_since(s) < DYNACAST_OFF_DELAY);
                if keep {
                    active.extend(layer.rid);
                }
            }
            if track.active_rids.as_ref() != Some(&active) {
                tracing::debug!(participant = %track.publisher, track = %track.id, ?active, "dynacast: publisher layers");
                self.outputs
                    .push_back(SfuOutput::Event(SfuEvent::PublisherLayers {
                        to: track.publisher,
                        mid: track.mid.to_string(),
                        active: active.iter().map(|r| r.to_string()).collect(),
                    }));
                track.active_rids = Some(active);
            }
        }
    }

    /// What every participant receives and why, for the stats message and `/api/stats`.
    pub fn subscription_stats(&self, id: ParticipantId) -> Option<(u64, Vec<SubscriptionStats>)> {
        let p = self.participants.get(&id)?;
        let mut subscriptions: Vec<SubscriptionStats> = p
            .downtracks
            .values()
            .filter_map(|d| {
                let track = self.tracks.get(&d.track)?;
                let rid_of = |layer: Option<usize>| {
                    if track.svc {
                        // Spatial layers have no rid: name them as scalability modes do.
                        return layer.map(|l| format!("S{l}"));
                    }
                    layer
                        .and_then(|l| track.layers.get(l))
                        .and_then(|l| l.rid)
                        .map(|r| r.to_string())
                };
                Some(SubscriptionStats {
                    publisher: track.publisher,
                    track: track.id,
                    kind: track.kind,
                    current_layer: rid_of(d.current_layer()),
                    target_layer: rid_of(d.target_layer()),
                    current_temporal: d.current_temporal(),
                    target_temporal: d.target_temporal(),
                    paused: d.target_layer().is_none(),
                    reason: d.reason.as_str(),
                    pinned: self.pins.get(&id) == Some(&track.publisher),
                    bitrate_bps: d.sent_bytes.bps(),
                    layer_changes_last_minute: d.gate.changes_last_minute(),
                })
            })
            .collect();
        subscriptions.sort_by_key(|s| (s.publisher, s.track));
        Some((p.bandwidth.allocation_bps(), subscriptions))
    }

    pub(super) fn emit_stats(&mut self) {
        let ids: Vec<ParticipantId> = self.participants.keys().copied().collect();
        for id in ids {
            if let Some((estimate_bps, subscriptions)) = self.subscription_stats(id) {
                self.outputs.push_back(SfuOutput::Event(SfuEvent::Stats {
                    to: id,
                    estimate_bps,
                    subscriptions,
                }));
            }
        }
    }
}

/// The step of `points` that a down-track's target (`layer`, with `temporal` of its temporal
/// layers) stands at: the step itself, or, where the ladder no longer has it (its temporal
/// layers no longer measured), the layer's full rate.
fn ladder_step(points: &[LayerPoint], layer: usize, temporal: TemporalLevel) -> Option<usize> {
    points
        .iter()
        .position(|p| p.layer == layer && p.temporal == temporal)
        .or_else(|| points.iter().rposition(|p| p.layer <= layer))
}
