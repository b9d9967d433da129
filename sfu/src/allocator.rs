//! Splits one subscriber's bandwidth estimate across the videos it receives: what the
//! subscriber pinned first, then screen shares, then the active speaker, then everyone else; every video first gets its lowest
//! layer, then layers are raised in the same order while the budget lasts. No layer above
//! what the subscriber's tile size can show is chosen. Pure and table-tested; runs on a timer,
//! never per packet.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Raising a layer needs this much more budget than the layer's measured rate, so an estimate
/// sitting right at a layer boundary does not flip between two layers.
pub const UPGRADE_HEADROOM: f64 = 1.15;
/// And the estimate must allow the upgrade for this long.
pub const UPGRADE_HOLD: Duration = Duration::from_secs(2);
/// A step up that only raises a layer's frame rate (its next temporal layer) needs no
/// keyframe and costs little if it fails: it waits this long instead.
pub const TEMPORAL_UPGRADE_HOLD: Duration = Duration::from_millis(500);
/// A video already flowing is paused only when the budget falls below this share of its
/// lowest layer: estimates under-read, and a frozen video is worse than a slightly
/// overshooting one. Resuming needs the full rate plus `UPGRADE_HEADROOM`, so pause and
/// resume do not alternate.
pub const PAUSE_BELOW: f64 = 0.75;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    /// The subscriber pinned its publisher (spotlight): its own choice outranks what the room
    /// decides for it (a screen share, whoever speaks).
    Pinned,
    Screen,
    Speaker,
    Other,
}

/// One layer a video track offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerOffer {
    pub bitrate_bps: u64,
    pub width: u32,
    pub height: u32,
}

/// What one offer of a video's ladder stands for: a layer, and the temporal layers of it that
/// are taken (`None`: all of them, its full frame rate). Built with the offers by
/// `UpTrack::layer_offers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerPoint {
    pub layer: usize,
    pub temporal: Option<u8>,
}

/// One video the subscriber receives.
#[derive(Debug, Clone)]
pub struct Demand<'a> {
    pub priority: Priority,
    /// Lowest first.
    pub layers: &'a [LayerOffer],
    /// Size the subscriber shows it at: `None` when unknown (no limit), `Some((0, 0))` hidden.
    pub shown: Option<(u32, u32)>,
    /// The layer targeted now, if any: raising it needs headroom.
    pub current: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Not shown by the subscriber.
    Hidden,
    /// Even the lowest layer does not fit the estimate.
    Bandwidth,
    /// The best layer the shown size needs.
    FitsShownSize,
    /// The top layer: nothing better exists.
    Best,
    /// Below what the size would use, because of the estimate.
    BandwidthLimited,
}

impl Reason {
    pub const ALL: [Reason; 5] = [
        Self::Hidden,
        Self::Bandwidth,
        Self::FitsShownSize,
        Self::Best,
        Self::BandwidthLimited,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hidden => "hidden by the subscriber",
            Self::Bandwidth => "paused: the lowest layer does not fit the bandwidth estimate",
            Self::FitsShownSize => "the layer that fits the shown size",
            Self::Best => "the best layer",
            Self::BandwidthLimited => "limited by the bandwidth estimate",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub target: Option<usize>,
    pub reason: Reason,
    /// The layer it would get with unlimited bandwidth (what probing aims for).
    pub ideal: Option<usize>,
}

/// The smallest size that covers the shown size (within 10%), else the largest; of the
/// offers at that size, the best (the last): its full frame rate, when lower offers are the
/// same layer at a reduced one.
fn ideal_layer(layers: &[LayerOffer], shown: Option<(u32, u32)>) -> Option<usize> {
    let top = layers.len().checked_sub(1)?;
    let covering = match shown {
        Some((0, _)) | Some((_, 0)) => return None,
        None => top,
        Some((w, h)) => layers
            .iter()
            .position(|l| {
                u64::from(l.width) * 11 >= u64::from(w) * 10
                    && u64::from(l.height) * 11 >= u64::from(h) * 10
            })
            .unwrap_or(top),
    };
    let size = |l: &LayerOffer| (l.width, l.height);
    let same_size = layers[covering..]
        .iter()
        .take_while(|l| size(l) == size(&layers[covering]))
        .count();
    Some(covering + same_size - 1)
}

fn cost(layer: &LayerOffer, raising: bool) -> u64 {
    if raising {
        (layer.bitrate_bps as f64 * UPGRADE_HEADROOM) as u64
    } else {
        layer.bitrate_bps
    }
}

pub fn allocate(budget_bps: u64, demands: &[Demand]) -> Vec<Decision> {
    let mut order: Vec<usize> = (0..demands.len()).collect();
    order.sort_by_key(|&i| (demands[i].priority, i));
    let mut remaining = budget_bps;
    let mut decisions: Vec<Decision> = demands
        .iter()
        .map(|d| Decision {
            target: None,
            reason: Reason::Hidden,
            ideal: ideal_layer(d.layers, d.shown),
        })
        .collect();

    // Everyone shown gets the lowest layer first, in priority order.
    for &i in &order {
        let d = &demands[i];
        let (Some(_), Some(lowest)) = (decisions[i].ideal, d.layers.first()) else {
            continue;
        };
        let needed = match d.current {
            None => cost(lowest, true),
            Some(_) => (lowest.bitrate_bps as f64 * PAUSE_BELOW) as u64,
        };
        if needed <= remaining {
            remaining = remaining.saturating_sub(lowest.bitrate_bps);
            decisions[i].target = Some(0);
        } else {
            decisions[i].reason = Reason::Bandwidth;
        }
    }
    // Then raise each, in priority order, as far as its size and the budget allow.
    for &i in &order {
        let d = &demands[i];
        let (Some(mut at), Some(ideal)) = (decisions[i].target, decisions[i].ideal) else {
            continue;
        };
        let mut spent = d.layers[at].bitrate_bps;
        // Keeping the current step needs its own rate only. A ladder with temporal steps need
        // not rise monotonically (a layer at a quarter of its frame rate may cost less than
        // the layer below in full); walking up to the current step through a dearer one would
        // drop a subscriber whenever the estimate dips under that one, and back when it
        // recovers: two layer switches, with keyframes, for nothing.
        if let Some(c) = d.current.filter(|&c| c > at && c <= ideal) {
            let keep = d.layers[c].bitrate_bps;
            if keep <= spent + remaining {
                remaining = remaining + spent - keep;
                spent = keep;
                at = c;
            }
        }
        while at < ideal {
            let next = at + 1;
            let raising = d.current.is_none_or(|c| next > c);
            let c = cost(&d.layers[next], raising);
            if c > spent + remaining {
                break;
            }
            remaining = remaining + spent - c;
            spent = c;
            at = next;
        }
        decisions[i].target = Some(at);
        decisions[i].reason = if at < ideal {
            Reason::BandwidthLimited
        } else if ideal + 1 < d.layers.len() {
            Reason::FitsShownSize
        } else {
            Reason::Best
        };
    }
    decisions
}

/// Each failed upgrade in the last minute (a downgrade for want of bandwidth within
/// `FAILED_UPGRADE_WITHIN` of an upgrade) makes the next upgrade wait this much longer, up to
/// `MAX_UPGRADE_HOLD`: a link that keeps failing a layer is not offered it every few seconds
/// (each try costs a keyframe and, on failure, loss). A downgrade after a layer held for a
/// while is the network changing, not a flap, and does not slow the way back.
pub const FLAP_PENALTY: Duration = Duration::from_secs(4);
pub const FAILED_UPGRADE_WITHIN: Duration = Duration::from_secs(10);
pub const MAX_UPGRADE_HOLD: Duration = Duration::from_secs(20);
/// The window in which layer changes are counted (for the penalty and for metrics).
pub const CHANGE_WINDOW: Duration = Duration::from_secs(60);

/// Applies the time part of the upgrade hysteresis to one down-track's targets: lowering is
/// immediate (the estimate it follows is already steadied, `bandwidth.rs`), raising
/// (including resuming after a pause) waits until the allocator has allowed it for
/// `UPGRADE_HOLD` plus `FLAP_PENALTY` per recently failed upgrade, one step at a time.
#[derive(Debug, Clone, Default)]
pub struct UpgradeGate {
    started: bool,
    pending: Option<(Option<usize>, Instant)>,
    /// Target changes in the last `CHANGE_WINDOW`.
    changes: VecDeque<Instant>,
    /// Downgrades for want of bandwidth soon after an upgrade, in the last `CHANGE_WINDOW`.
    failed_upgrades: VecDeque<Instant>,
    /// When the last upgrade (or resume) happened.
    last_upgrade: Option<Instant>,
}

impl UpgradeGate {
    /// The target to use now, given the current one and the allocator's proposal (`reason`
    /// says why it proposes it), both steps of `ladder`.
    pub fn admit(
        &mut self,
        current: Option<usize>,
        proposed: Option<usize>,
        reason: Reason,
        ladder: &[LayerPoint],
        now: Instant,
    ) -> Option<usize> {
        for window in [&mut self.changes, &mut self.failed_upgrades] {
            while window
                .front()
                .is_some_and(|at| now.saturating_duration_since(*at) > CHANGE_WINDOW)
            {
                window.pop_front();
            }
        }
        if !self.started {
            // A new subscription starts where the allocator says.
            self.started = true;
            return proposed;
        }
        if proposed <= current {
            self.pending = None;
            if proposed < current {
                self.changes.push_back(now);
                let soon_after_upgrade = self
                    .last_upgrade
                    .is_some_and(|at| now.saturating_duration_since(at) <= FAILED_UPGRADE_WITHIN);
                if soon_after_upgrade
                    && matches!(reason, Reason::Bandwidth | Reason::BandwidthLimited)
                {
                    self.failed_upgrades.push_back(now);
                }
            }
            return proposed;
        }
        // One step up at a time: the next one above the current one.
        let next = current.map_or(0, |c| c + 1);
        let layer_of = |step: usize| ladder.get(step).map(|p| p.layer);
        // A step within one layer only raises its frame rate: no keyframe, so it needs less
        // evidence, and failing it costs less (a quarter of the penalty).
        let temporal_step = current.is_some_and(|c| layer_of(next) == layer_of(c));
        let (base, penalty) = if temporal_step {
            (TEMPORAL_UPGRADE_HOLD, FLAP_PENALTY / 4)
        } else {
            (UPGRADE_HOLD, FLAP_PENALTY)
        };
        let hold = (base + penalty * self.failed_upgrades.len() as u32).min(MAX_UPGRADE_HOLD);
        match self.pending {
            Some((step, since)) if step == Some(next) => {
                if now.saturating_duration_since(since) >= hold {
                    self.pending = None;
                    self.changes.push_back(now);
                    self.last_upgrade = Some(now);
                    if temporal_step {
                        return Some(next);
                    }
                    // Onto another layer (its keyframe is needed either way): as much of its
                    // frame rate as proposed at once, rather than climbing it afterwards.
                    let top = proposed.unwrap_or(next).max(next);
                    return (next..=top)
                        .take_while(|&step| layer_of(step) == layer_of(next))
                        .last();
                }
            }
            _ => self.pending = Some((Some(next), now)),
        }
        current
    }

    /// Target changes in the minute before the last [`admit`](Self::admit) (which runs every
    /// allocation tick).
    pub fn changes_last_minute(&self) -> usize {
        self.changes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A change for the tile's size, not for bandwidth.
    const SIZE: Reason = Reason::FitsShownSize;

    /// The web client's q/h/f, as the tracks assume them before measuring.
    const SIMULCAST: [LayerOffer; 3] = crate::track::NOMINAL;

    fn demand(
        priority: Priority,
        shown: Option<(u32, u32)>,
        current: Option<usize>,
    ) -> Demand<'static> {
        Demand {
            priority,
            layers: &SIMULCAST,
            shown,
            current,
        }
    }

    /// A video of another ladder than `SIMULCAST`, at no particular priority.
    fn video_of(
        layers: &[LayerOffer],
        shown: Option<(u32, u32)>,
        current: Option<usize>,
    ) -> Demand<'_> {
        Demand {
            priority: Priority::Other,
            layers,
            shown,
            current,
        }
    }

    fn targets(budget: u64, demands: &[Demand]) -> Vec<Option<usize>> {
        allocate(budget, demands).iter().map(|d| d.target).collect()
    }

    #[test]
    fn one_video_takes_the_best_layer_that_fits() {
        let table = [
            (100_000, None),
            (300_000, Some(0)),
            (600_000, Some(1)),
            (1_900_000, Some(1)), // 1.7 M fits, but raising needs 15% headroom
            (2_000_000, Some(2)),
        ];
        for (budget, expected) in table {
            assert_eq!(
                targets(budget, &[demand(Priority::Other, None, Some(0))]),
                vec![expected],
                "budget {budget}"
            );
        }
    }

    #[test]
    fn a_step_to_a_higher_frame_rate_waits_less_than_one_to_a_higher_layer() {
        let t0 = Instant::now();
        let mut gate = UpgradeGate::default();
        assert_eq!(
            gate.admit(None, Some(6), SIZE, &TEMPORAL_STEPS, t0),
            Some(6)
        );
        // From f at a quarter of its frame rate (6) toward all of it (8): half after
        // TEMPORAL_UPGRADE_HOLD, the rest after as long again.
        assert_eq!(
            gate.admit(Some(6), Some(8), SIZE, &TEMPORAL_STEPS, t0),
            Some(6)
        );
        let t1 = t0 + TEMPORAL_UPGRADE_HOLD;
        assert_eq!(
            gate.admit(Some(6), Some(8), SIZE, &TEMPORAL_STEPS, t1),
            Some(7)
        );
        assert_eq!(
            gate.admit(Some(7), Some(8), SIZE, &TEMPORAL_STEPS, t1),
            Some(7)
        );
        let t2 = t1 + TEMPORAL_UPGRADE_HOLD;
        assert_eq!(
            gate.admit(Some(7), Some(8), SIZE, &TEMPORAL_STEPS, t2),
            Some(8)
        );
        // A step to the next layer waits the full UPGRADE_HOLD, and lands on as much of
        // that layer's frame rate as proposed (here all of f: 8, not 6).
        let mut gate = UpgradeGate::default();
        gate.admit(None, Some(5), SIZE, &TEMPORAL_STEPS, t0);
        assert_eq!(
            gate.admit(Some(5), Some(8), SIZE, &TEMPORAL_STEPS, t0),
            Some(5)
        );
        assert_eq!(
            gate.admit(
                Some(5),
                Some(8),
                SIZE,
                &TEMPORAL_STEPS,
                t0 + TEMPORAL_UPGRADE_HOLD
            ),
            Some(5)
        );
        assert_eq!(
            gate.admit(Some(5), Some(8), SIZE, &TEMPORAL_STEPS, t0 + UPGRADE_HOLD),
            Some(8)
        );
        // Proposing f at half its rate: the climb lands there.
        let mut gate = UpgradeGate::default();
        gate.admit(None, Some(5), SIZE, &TEMPORAL_STEPS, t0);
        gate.admit(Some(5), Some(7), SIZE, &TEMPORAL_STEPS, t0);
        assert_eq!(
            gate.admit(Some(5), Some(7), SIZE, &TEMPORAL_STEPS, t0 + UPGRADE_HOLD),
            Some(7)
        );
    }

    #[test]
    fn a_flowing_video_is_paused_only_well_below_its_lowest_layer() {
        // 120 k is below q's 150 k, but above 75% of it: keep q rather than freeze.
        assert_eq!(
            targets(120_000, &[demand(Priority::Other, None, Some(0))]),
            vec![Some(0)]
        );
        assert_eq!(
            targets(110_000, &[demand(Priority::Other, None, Some(0))]),
            vec![None]
        );
        // Resuming a paused video needs q plus headroom.
        assert_eq!(
            targets(170_000, &[demand(Priority::Other, None, None)]),
            vec![None]
        );
        assert_eq!(
            targets(175_000, &[demand(Priority::Other, None, None)]),
            vec![Some(0)]
        );
    }

    #[test]
    fn keeping_a_layer_needs_no_headroom() {
        // At 1.8 M the top layer is kept once there, though reaching it needed 1.955 M.
        assert_eq!(
            targets(1_800_000, &[demand(Priority::Other, None, Some(2))]),
            vec![Some(2)]
        );
        assert_eq!(
            targets(1_800_000, &[demand(Priority::Other, None, Some(1))]),
            vec![Some(1)]
        );
    }

    #[test]
    fn shown_size_caps_the_layer() {
        let d = allocate(
            10_000_000,
            &[
                demand(Priority::Other, Some((320, 180)), Some(0)),
                demand(Priority::Other, Some((600, 340)), Some(0)),
                demand(Priority::Other, Some((1920, 1080)), Some(0)),
                demand(Priority::Other, Some((0, 0)), Some(0)),
            ],
        );
        assert_eq!(
            d.iter().map(|d| d.target).collect::<Vec<_>>(),
            vec![Some(0), Some(1), Some(2), None]
        );
        assert_eq!(d[0].reason, Reason::FitsShownSize);
        assert_eq!(d[2].reason, Reason::Best);
        assert_eq!(d[3].reason, Reason::Hidden);
    }

    /// An SVC stream's spatial layers as its up-track offers them: each layer's rate is its
    /// own plus every layer below it (S0 200 k, S1 400 k more, S2 1 M more).
    const SVC: [LayerOffer; 3] = [
        LayerOffer {
            bitrate_bps: 200_000,
            width: 320,
            height: 180,
        },
        LayerOffer {
            bitrate_bps: 600_000,
            width: 640,
            height: 360,
        },
        LayerOffer {
            bitrate_bps: 1_600_000,
            width: 1280,
            height: 720,
        },
    ];

    #[test]
    fn an_svc_grid_is_chosen_by_tile_size_and_budget_on_cumulative_rates() {
        let svc = |shown, current| video_of(&SVC, shown, current);
        // (budget, shown, current, expected target)
        let table = [
            (10_000_000, Some((320, 180)), Some(0), Some(0)),
            (10_000_000, Some((640, 360)), Some(0), Some(1)),
            (10_000_000, Some((1280, 720)), Some(0), Some(2)),
            (10_000_000, None, Some(0), Some(2)),
            (10_000_000, Some((0, 0)), Some(2), None),
            // Raising to S1 costs its cumulative 600 k plus headroom (690 k).
            (680_000, Some((1280, 720)), Some(0), Some(0)),
            (700_000, Some((1280, 720)), Some(0), Some(1)),
            // Keeping S2 needs its 1.6 M, not the 1 M S2 adds on its own.
            (1_500_000, Some((1280, 720)), Some(2), Some(1)),
            (1_600_000, Some((1280, 720)), Some(2), Some(2)),
            (140_000, Some((1280, 720)), Some(0), None),
        ];
        for (budget, shown, current, expected) in table {
            assert_eq!(
                targets(budget, &[svc(shown, current)]),
                vec![expected],
                "budget {budget}, shown {shown:?}, current {current:?}"
            );
        }
        // Two subscribers' tiles of one SVC track share nothing: each demand stands alone.
        // One subscriber with a small and a large SVC video and room for both at full size
        // fills the large one first to what its tile needs.
        assert_eq!(
            targets(
                2_300_000,
                &[
                    svc(Some((320, 180)), Some(0)),
                    svc(Some((1280, 720)), Some(0))
                ]
            ),
            vec![Some(0), Some(2)]
        );
        assert_eq!(
            targets(
                1_000_000,
                &[
                    svc(Some((640, 360)), Some(0)),
                    svc(Some((1280, 720)), Some(0))
                ]
            ),
            vec![Some(1), Some(0)],
            "the first in order takes S1; the 110 k left does not raise the other"
        );
    }

    /// Simulcast with three temporal layers each (L1T3 per stream), as `UpTrack::layer_offers`
    /// lays it out: per layer, its base temporal layer (a quarter of the frame rate), the
    /// first two (half), then all of it. Indices 0-2 are q, 3-5 h, 6-8 f.
    const TEMPORAL: [LayerOffer; 9] = {
        const fn offer(bitrate_bps: u64, width: u32, height: u32) -> LayerOffer {
            LayerOffer {
                bitrate_bps,
                width,
                height,
            }
        }
        [
            offer(80_000, 320, 180),
            offer(115_000, 320, 180),
            offer(150_000, 320, 180),
            offer(270_000, 640, 360),
            offer(385_000, 640, 360),
            offer(500_000, 640, 360),
            offer(900_000, 1280, 720),
            offer(1_300_000, 1280, 720),
            offer(1_700_000, 1280, 720),
        ]
    };

    /// The ladders the gate climbs: three layers at their full rates, and `TEMPORAL`'s.
    const SPATIAL: [LayerPoint; 3] = [
        LayerPoint {
            layer: 0,
            temporal: None,
        },
        LayerPoint {
            layer: 1,
            temporal: None,
        },
        LayerPoint {
            layer: 2,
            temporal: None,
        },
    ];
    const TEMPORAL_STEPS: [LayerPoint; 9] = {
        const fn step(layer: usize, temporal: Option<u8>) -> LayerPoint {
            LayerPoint { layer, temporal }
        }
        [
            step(0, Some(0)),
            step(0, Some(1)),
            step(0, None),
            step(1, Some(0)),
            step(1, Some(1)),
            step(1, None),
            step(2, Some(0)),
            step(2, Some(1)),
            step(2, None),
        ]
    };

    #[test]
    fn temporal_layers_are_finer_steps_below_each_layers_full_rate() {
        let video = |shown, current| video_of(&TEMPORAL, shown, current);
        // (budget, shown, current, expected target)
        let table = [
            // Unlimited: the tile's layer at its full frame rate, never a reduced one.
            (10_000_000, Some((320, 180)), Some(2), Some(2)),
            (10_000_000, Some((640, 360)), Some(2), Some(5)),
            (10_000_000, None, Some(2), Some(8)),
            // Short of f's 1.7 M: f at half the frame rate rather than h.
            (1_500_000, None, Some(8), Some(7)),
            // Short of that too: f at a quarter, still above h in full.
            (1_000_000, None, Some(8), Some(6)),
            (600_000, None, Some(8), Some(5)),
            // Under q's full rate but above its base layer: q at a quarter, not paused.
            (100_000, None, Some(2), Some(0)),
            // A paused video resumes at q's base layer, which costs least.
            (95_000, None, None, Some(0)),
            (90_000, None, None, None),
        ];
        for (budget, shown, current, expected) in table {
            assert_eq!(
                targets(budget, &[video(shown, current)]),
                vec![expected],
                "budget {budget}, shown {shown:?}, current {current:?}"
            );
        }
        // A ladder where f at a quarter of its frame rate costs less than h in full: keeping
        // f's step needs f's rate, not h's on the way (the estimate dipping under h's rate
        // must not switch layers twice).
        let mut uneven = TEMPORAL;
        uneven[6].bitrate_bps = 420_000;
        let uneven_video = |current| video_of(&uneven, None, current);
        assert_eq!(targets(450_000, &[uneven_video(Some(6))]), vec![Some(6)]);
        // From below, the walk still passes h: f's quarter is reached with h's budget.
        assert_eq!(targets(450_000, &[uneven_video(Some(4))]), vec![Some(4)]);
        assert_eq!(targets(600_000, &[uneven_video(Some(4))]), vec![Some(6)]);
        let decision = allocate(1_000_000, &[video(None, Some(8))]);
        assert_eq!(decision[0].ideal, Some(8));
        assert_eq!(decision[0].reason, Reason::BandwidthLimited);
    }

    #[test]
    fn screen_share_first_then_speaker_then_others() {
        let demands = [
            demand(Priority::Other, None, Some(0)),
            demand(Priority::Speaker, None, Some(0)),
            demand(Priority::Screen, None, Some(0)),
        ];
        // Enough for every lowest layer, then the screen climbs to the top and the speaker
        // to the middle; the rest stays low.
        assert_eq!(
            targets(
                150_000 * 3 + 1_955_000 - 150_000 + 575_000 - 150_000,
                &demands
            ),
            vec![Some(0), Some(1), Some(2)]
        );
        // Only enough for two lowest layers: the last in priority is paused.
        let d = allocate(320_000, &demands);
        assert_eq!(
            d.iter().map(|d| d.target).collect::<Vec<_>>(),
            vec![None, Some(0), Some(0)]
        );
        assert_eq!(d[0].reason, Reason::Bandwidth);
    }

    #[test]
    fn a_pinned_video_comes_before_screen_speaker_and_others() {
        // Budget for every lowest layer plus one raise to h: whoever is first in priority
        // gets it, whatever its position in the list.
        let budget = 150_000 * 3 + 575_000 - 150_000;
        let table: [([Priority; 3], [Option<usize>; 3]); 4] = [
            (
                [Priority::Other, Priority::Other, Priority::Pinned],
                [Some(0), Some(0), Some(1)],
            ),
            (
                [Priority::Speaker, Priority::Pinned, Priority::Other],
                [Some(0), Some(1), Some(0)],
            ),
            (
                [Priority::Screen, Priority::Other, Priority::Pinned],
                [Some(0), Some(0), Some(1)],
            ),
            // Without a pin the screen share wins, as before.
            (
                [Priority::Other, Priority::Speaker, Priority::Screen],
                [Some(0), Some(0), Some(1)],
            ),
        ];
        for (priorities, expected) in table {
            let demands = priorities.map(|p| demand(p, None, Some(0)));
            assert_eq!(
                targets(budget, &demands),
                expected.to_vec(),
                "{priorities:?}"
            );
        }
        // Too little for all three lowest layers: the pinned one is the last to pause.
        let demands = [
            demand(Priority::Screen, None, Some(0)),
            demand(Priority::Speaker, None, Some(0)),
            demand(Priority::Pinned, None, Some(0)),
        ];
        assert_eq!(targets(150_000, &demands), vec![None, None, Some(0)]);
    }

    #[test]
    fn upgrades_wait_for_the_hold_and_go_one_step_at_a_time() {
        let t0 = Instant::now();
        let mut gate = UpgradeGate::default();
        assert_eq!(
            gate.admit(None, Some(0), SIZE, &SPATIAL, t0),
            Some(0),
            "a new subscription starts at once"
        );
        assert_eq!(gate.admit(Some(0), Some(2), SIZE, &SPATIAL, t0), Some(0));
        assert_eq!(
            gate.admit(
                Some(0),
                Some(2),
                SIZE,
                &SPATIAL,
                t0 + Duration::from_millis(1500)
            ),
            Some(0)
        );
        assert_eq!(
            gate.admit(Some(0), Some(2), SIZE, &SPATIAL, t0 + UPGRADE_HOLD),
            Some(1),
            "one step"
        );
        let t1 = t0 + UPGRADE_HOLD;
        assert_eq!(gate.admit(Some(1), Some(2), SIZE, &SPATIAL, t1), Some(1));
        // The estimate dips: the pending upgrade is forgotten, and starts over.
        assert_eq!(
            gate.admit(
                Some(1),
                Some(1),
                SIZE,
                &SPATIAL,
                t1 + Duration::from_secs(1)
            ),
            Some(1)
        );
        assert_eq!(
            gate.admit(
                Some(1),
                Some(2),
                SIZE,
                &SPATIAL,
                t1 + Duration::from_secs(2)
            ),
            Some(1)
        );
        assert_eq!(
            gate.admit(
                Some(1),
                Some(2),
                SIZE,
                &SPATIAL,
                t1 + Duration::from_secs(3)
            ),
            Some(1)
        );
        assert_eq!(
            gate.admit(
                Some(1),
                Some(2),
                SIZE,
                &SPATIAL,
                t1 + Duration::from_secs(4)
            ),
            Some(2)
        );
        // Downgrades and pauses are immediate.
        assert_eq!(
            gate.admit(
                Some(2),
                Some(0),
                SIZE,
                &SPATIAL,
                t1 + Duration::from_secs(5)
            ),
            Some(0)
        );
        assert_eq!(
            gate.admit(Some(0), None, SIZE, &SPATIAL, t1 + Duration::from_secs(5)),
            None
        );
        // Resuming after a pause holds too.
        assert_eq!(
            gate.admit(None, Some(0), SIZE, &SPATIAL, t1 + Duration::from_secs(6)),
            None
        );
        assert_eq!(
            gate.admit(None, Some(0), SIZE, &SPATIAL, t1 + Duration::from_secs(8)),
            Some(0)
        );
    }

    #[test]
    fn an_estimate_oscillating_around_a_boundary_does_not_flap() {
        // The estimate swings +-5% around the top layer's rate every tick for a minute.
        let t0 = Instant::now();
        let mut gate = UpgradeGate::default();
        let mut current = gate.admit(None, Some(1), SIZE, &SPATIAL, t0);
        let mut switches = 0;
        for tick in 0..120u64 {
            let budget = if tick % 2 == 0 { 1_785_000 } else { 1_615_000 };
            let proposed = targets(budget, &[demand(Priority::Other, None, current)])[0];
            let next = gate.admit(
                current,
                proposed,
                SIZE,
                &SPATIAL,
                t0 + Duration::from_millis(500 * tick),
            );
            if next != current {
                switches += 1;
            }
            current = next;
        }
        assert_eq!(switches, 0, "stayed on the middle layer");
        assert_eq!(current, Some(1));
    }

    #[test]
    fn failed_upgrades_make_the_next_upgrades_wait_longer() {
        let t0 = Instant::now();
        let mut gate = UpgradeGate::default();
        gate.admit(None, Some(2), SIZE, &SPATIAL, t0);
        // The top layer fails three times within a minute: the first downgrade follows a layer
        // held since the start (no penalty), the next two follow upgrades by a second.
        let mut t = t0;
        let mut current = Some(2);
        let mut upgrade_waits = Vec::new();
        for _ in 0..3 {
            t += Duration::from_secs(1);
            current = gate.admit(current, Some(1), Reason::BandwidthLimited, &SPATIAL, t);
            assert_eq!(current, Some(1), "downgrades are immediate");
            let asked = t;
            while current == Some(1) {
                t += Duration::from_millis(500);
                current = gate.admit(current, Some(2), Reason::Best, &SPATIAL, t);
            }
            upgrade_waits.push((t - asked).as_secs());
        }
        assert_eq!(
            upgrade_waits,
            vec![2, 6, 10],
            "2 s + 4 s per recently failed upgrade"
        );
        assert_eq!(gate.changes_last_minute(), 6);
        // A minute later the penalty and the old changes are gone.
        let later = t + CHANGE_WINDOW + Duration::from_secs(1);
        current = gate.admit(current, Some(1), Reason::BandwidthLimited, &SPATIAL, later);
        assert_eq!(gate.changes_last_minute(), 1);
        let asked = later;
        let mut t = later;
        while current == Some(1) {
            t += Duration::from_millis(500);
            current = gate.admit(current, Some(2), Reason::Best, &SPATIAL, t);
        }
        assert_eq!((t - asked).as_secs(), 2);
    }

    #[test]
    fn size_changes_do_not_slow_upgrades() {
        let t0 = Instant::now();
        let mut gate = UpgradeGate::default();
        let mut current = gate.admit(None, Some(2), SIZE, &SPATIAL, t0);
        for round in 0..5u64 {
            let t = t0 + Duration::from_secs(10 * round + 1);
            current = gate.admit(current, Some(0), SIZE, &SPATIAL, t);
            assert_eq!(current, Some(0));
            current = gate.admit(current, Some(1), SIZE, &SPATIAL, t);
            current = gate.admit(current, Some(1), SIZE, &SPATIAL, t + UPGRADE_HOLD);
            assert_eq!(current, Some(1), "round {round}");
            current = gate.admit(current, Some(2), SIZE, &SPATIAL, t + UPGRADE_HOLD);
            current = gate.admit(current, Some(2), SIZE, &SPATIAL, t + UPGRADE_HOLD * 2);
            assert_eq!(current, Some(2), "round {round}");
        }
    }
}
