//! Who speaks in a room: a pure detector fed with every member's smoothed loudness.
//!
//! The engine already smooths each audio track's RFC 6464 level into a loudness (127 minus the
//! level in -dBov, see `track/uptrack.rs`); this turns those values into the ordered list of
//! active speakers a client shows. Rules:
//!
//! - A member speaks while its loudness is above [`SPEAKING_LOUDNESS`], and keeps speaking
//!   for [`HOLD`] after it last was: pauses between words do not make the ring flicker.
//! - A muted member (or one without audio) stops speaking at once: a mute is a deliberate act.
//! - Speakers are ordered by loudness, loudest first; ties by id so the order is stable.
//! - A new list is reported only when the ids or their order change, and at most once per
//!   [`MIN_REPORT_INTERVAL`]; a change held back is reported at the next update after it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::ids::ParticipantId;

/// Smoothed loudness (127 - dBov level) above which a member counts as speaking.
pub const SPEAKING_LOUDNESS: f32 = 60.0;
/// A member keeps speaking this long after its loudness last was above the threshold.
pub const HOLD: Duration = Duration::from_millis(1_200);
/// At most one report per this interval.
pub const MIN_REPORT_INTERVAL: Duration = Duration::from_millis(250);

/// One member speaking, as reported.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ActiveSpeaker {
    pub participant: ParticipantId,
    /// Linear amplitude of the smoothed level: 1.0 is 0 dBov (full scale), 0.1 is -20 dBov.
    pub level: f32,
}

/// A member's audio as the detector sees it at one update.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MemberAudio {
    /// Unmuted audio with this smoothed loudness (127 - dBov).
    Loudness(f32),
    /// Muted, or not publishing audio.
    Silent,
}

/// The detector of one room.
#[derive(Debug, Default)]
pub struct SpeakerDetector {
    /// When each member was last above the threshold.
    last_loud: HashMap<ParticipantId, Instant>,
    /// The list last reported, in order.
    reported: Vec<ActiveSpeaker>,
    reported_at: Option<Instant>,
}

impl SpeakerDetector {
    /// Feed every member of the room (members absent from `members` have left). Returns the
    /// new ordered list when it should be reported to the room.
    pub fn update(
        &mut self,
        now: Instant,
        members: &[(ParticipantId, MemberAudio)],
    ) -> Option<Vec<ActiveSpeaker>> {
        self.last_loud
            .retain(|id, _| members.iter().any(|(member, _)| member == id));
        let mut speaking: Vec<(ParticipantId, f32)> = Vec::new();
        for &(id, audio) in members {
            let MemberAudio::Loudness(loudness) = audio else {
                self.last_loud.remove(&id);
                continue;
            };
            if loudness > SPEAKING_LOUDNESS {
                self.last_loud.insert(id, now);
            }
            let held = self
                .last_loud
                .get(&id)
                .is_some_and(|at| now.saturating_duration_since(*at) < HOLD);
            if held {
                speaking.push((id, loudness));
            }
        }
        speaking.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let unchanged = speaking.len() == self.reported.len()
            && speaking
                .iter()
                .zip(&self.reported)
                .all(|((id, _), reported)| *id == reported.participant);
        if unchanged {
            return None;
        }
        let too_soon = self
            .reported_at
            .is_some_and(|at| now.saturating_duration_since(at) < MIN_REPORT_INTERVAL);
        if too_soon {
            return None;
        }
        self.reported = speaking
            .into_iter()
            .map(|(participant, loudness)| ActiveSpeaker {
                participant,
                level: amplitude(loudness),
            })
            .collect();
        self.reported_at = Some(now);
        Some(self.reported.clone())
    }

    /// The list last reported: what a member who joins now is told first.
    pub fn current(&self) -> &[ActiveSpeaker] {
        &self.reported
    }
}

/// Linear amplitude of a loudness (127 - dBov), rounded to three decimals for the wire.
fn amplitude(loudness: f32) -> f32 {
    let dbov = loudness.clamp(0.0, 127.0) - 127.0;
    (10f32.powf(dbov / 20.0) * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use MemberAudio::{Loudness, Silent};

    const LOUD: f32 = 100.0;
    const QUIET: f32 = 30.0;

    fn id(n: u64) -> ParticipantId {
        ParticipantId::from_u64(n)
    }

    /// One step of a scenario: at `ms` after the start, these members' audio, and the ids
    /// expected to be reported (`None`: nothing reported at this step).
    struct Step {
        ms: u64,
        members: Vec<(u64, MemberAudio)>,
        expect: Option<Vec<u64>>,
    }

    fn step(ms: u64, members: &[(u64, MemberAudio)], expect: Option<&[u64]>) -> Step {
        Step {
            ms,
            members: members.to_vec(),
            expect: expect.map(<[u64]>::to_vec),
        }
    }

    fn run(name: &str, steps: &[Step]) {
        let start = Instant::now();
        let mut detector = SpeakerDetector::default();
        for s in steps {
            let members: Vec<_> = s.members.iter().map(|(n, a)| (id(*n), *a)).collect();
            let got = detector
                .update(start + Duration::from_millis(s.ms), &members)
                .map(|list| list.iter().map(|a| a.participant.as_u64()).collect());
            assert_eq!(got, s.expect, "{name}: at {} ms", s.ms);
        }
    }

    #[test]
    fn scenarios() {
        let cases: Vec<(&str, Vec<Step>)> = vec![
            (
                "silence reports nothing",
                vec![
                    step(0, &[(1, Loudness(QUIET)), (2, Silent)], None),
                    step(250, &[(1, Loudness(QUIET)), (2, Silent)], None),
                ],
            ),
            (
                "a speaker is reported once, held through a pause, then dropped",
                vec![
                    step(0, &[(1, Loudness(LOUD)), (2, Loudness(QUIET))], Some(&[1])),
                    step(250, &[(1, Loudness(LOUD)), (2, Loudness(QUIET))], None),
                    step(500, &[(1, Loudness(QUIET)), (2, Loudness(QUIET))], None),
                    step(1_400, &[(1, Loudness(QUIET)), (2, Loudness(QUIET))], None),
                    step(
                        1_500,
                        &[(1, Loudness(QUIET)), (2, Loudness(QUIET))],
                        Some(&[]),
                    ),
                    step(2_000, &[(1, Loudness(QUIET)), (2, Loudness(QUIET))], None),
                ],
            ),
            (
                "ordered by loudness, reordered when it changes",
                vec![
                    step(
                        0,
                        &[(1, Loudness(80.0)), (2, Loudness(90.0))],
                        Some(&[2, 1]),
                    ),
                    step(
                        250,
                        &[(1, Loudness(95.0)), (2, Loudness(90.0))],
                        Some(&[1, 2]),
                    ),
                ],
            ),
            (
                "equal loudness is ordered by id",
                vec![step(
                    0,
                    &[(2, Loudness(LOUD)), (1, Loudness(LOUD))],
                    Some(&[1, 2]),
                )],
            ),
            (
                "a mute drops the speaker at once, without the hold",
                vec![
                    step(
                        0,
                        &[(1, Loudness(LOUD)), (2, Loudness(LOUD))],
                        Some(&[1, 2]),
                    ),
                    step(250, &[(1, Silent), (2, Loudness(LOUD))], Some(&[2])),
                ],
            ),
            (
                "a member who leaves is dropped",
                vec![
                    step(0, &[(1, Loudness(LOUD))], Some(&[1])),
                    step(250, &[], Some(&[])),
                ],
            ),
            (
                "changes closer than the minimum interval wait for the next update",
                vec![
                    step(0, &[(1, Loudness(LOUD)), (2, Loudness(QUIET))], Some(&[1])),
                    step(100, &[(1, Loudness(LOUD)), (2, Loudness(LOUD))], None),
                    step(
                        260,
                        &[(1, Loudness(LOUD)), (2, Loudness(LOUD))],
                        Some(&[1, 2]),
                    ),
                ],
            ),
        ];
        for (name, steps) in &cases {
            run(name, steps);
        }
    }

    #[test]
    fn levels_are_linear_amplitudes() {
        let start = Instant::now();
        let mut detector = SpeakerDetector::default();
        let list = detector
            .update(start, &[(id(1), Loudness(127.0)), (id(2), Loudness(107.0))])
            .unwrap();
        assert_eq!(list[0].level, 1.0);
        assert_eq!(list[1].level, 0.1);
        assert_eq!(detector.current(), list.as_slice(), "kept for late joiners");
    }
}
