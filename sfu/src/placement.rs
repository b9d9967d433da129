//! Which media worker a new participant goes to. Any worker can take any participant of any
//! room: the relay (`relay.rs`) carries a room across workers. Where a join goes only
//! decides the cost: a room kept on one worker needs no relay, a room spread over workers
//! uses their cores.
//!
//! The rule: a join goes to the least loaded worker already hosting members of its room,
//! unless that worker has more than a margin ([`SPILL_MARGIN`] by default) of participants
//! above the least loaded worker of all; then, and for a room nobody hosts yet, to the least loaded worker of all.
//! Small rooms stay on one worker; a big room (a livestream, a large meeting) spills over
//! every worker and the server stays balanced.
//!
//! The table is consulted when a participant joins and updated when a member comes or goes,
//! never per packet.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::policy::ShardLoad;

/// How far (in participants) a room's worker may be above the least loaded worker before a
/// join of that room goes elsewhere.
pub const SPILL_MARGIN: usize = 8;

#[derive(Debug, Default)]
struct State {
    /// Per room, how many members each worker has (indexed by worker).
    rooms: HashMap<String, Vec<usize>>,
    /// Joins sent to each worker and not answered yet: load the workers have not published
    /// yet, so that a burst of joins does not all land on the worker that was idle first.
    joining: Vec<usize>,
}

#[derive(Debug)]
pub struct RoomPlacement {
    state: Mutex<State>,
    spill_margin: usize,
}

impl Default for RoomPlacement {
    fn default() -> Self {
        Self::new(SPILL_MARGIN)
    }
}

impl RoomPlacement {
    /// Rooms spill to another worker past `spill_margin` participants above the least loaded
    /// one; 0 spreads every room evenly.
    pub fn new(spill_margin: usize) -> Self {
        Self {
            state: Mutex::default(),
            spill_margin,
        }
    }

    /// The worker for a join of `room`. Hold the claim until the join is answered (either
    /// way): meanwhile it counts toward that worker's load.
    pub fn claim(&self, room: &str, load: &ShardLoad) -> Claim<'_> {
        let mut state = self.lock();
        let workers = load.workers().max(1);
        state.joining.resize(workers, 0);
        let load_of = |state: &State, w: usize| load.participants(w) + state.joining[w];
        let least_loaded = (0..workers)
            .min_by_key(|&w| load_of(&state, w))
            .unwrap_or(0);
        let floor = load_of(&state, least_loaded);
        let hosting = state.rooms.get(room).and_then(|members| {
            (0..workers)
                .filter(|&w| members.get(w).is_some_and(|&n| n > 0))
                .min_by_key(|&w| load_of(&state, w))
        });
        let worker = match hosting {
            Some(w) if load_of(&state, w) <= floor + self.spill_margin => w,
            _ => least_loaded,
        };
        state.joining[worker] += 1;
        Claim {
            placement: self,
            worker,
        }
    }

    /// A member of `room` joined on `worker`.
    pub(crate) fn joined(&self, room: &str, worker: usize) {
        let mut state = self.lock();
        let members = state.rooms.entry(room.to_owned()).or_default();
        if members.len() <= worker {
            members.resize(worker + 1, 0);
        }
        members[worker] += 1;
    }

    /// A member of `room` on `worker` left.
    pub(crate) fn left(&self, room: &str, worker: usize) {
        let mut state = self.lock();
        if let Some(members) = state.rooms.get_mut(room) {
            if let Some(n) = members.get_mut(worker) {
                *n = n.saturating_sub(1);
            }
            if members.iter().all(|&n| n == 0) {
                state.rooms.remove(room);
            }
        }
    }

    /// The workers hosting members of `room`.
    pub fn workers_of(&self, room: &str) -> Vec<usize> {
        self.lock()
            .rooms
            .get(room)
            .map_or_else(Vec::new, |members| {
                (0..members.len()).filter(|&w| members[w] > 0).collect()
            })
    }

    /// Rooms with members.
    pub fn len(&self) -> usize {
        self.lock().rooms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn settle(&self, worker: usize) {
        if let Some(n) = self.lock().joining.get_mut(worker) {
            *n = n.saturating_sub(1);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The table stays consistent under a panic elsewhere: every update is one statement.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A join in flight; see [`RoomPlacement::claim`].
pub struct Claim<'a> {
    placement: &'a RoomPlacement,
    worker: usize,
}

impl Claim<'_> {
    /// The worker the join goes to.
    pub fn worker(&self) -> usize {
        self.worker
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.placement.settle(self.worker);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server of `workers` where each join is answered at once.
    fn join(placement: &RoomPlacement, load: &ShardLoad, room: &str) -> usize {
        let worker = placement.claim(room, load).worker();
        placement.joined(room, worker);
        load.publish(worker, 0, load.participants(worker) + 1);
        worker
    }

    #[test]
    fn a_small_room_stays_on_one_worker() {
        let (placement, load) = (RoomPlacement::default(), ShardLoad::new(2));
        let first = join(&placement, &load, "a");
        for _ in 0..SPILL_MARGIN {
            assert_eq!(join(&placement, &load, "a"), first);
        }
        // Another room opens on the other worker, the least loaded.
        assert_ne!(join(&placement, &load, "b"), first);
    }

    #[test]
    fn a_big_room_spills_over_every_worker_and_stays_balanced() {
        let (placement, load) = (RoomPlacement::default(), ShardLoad::new(3));
        let mut per_worker = [0usize; 3];
        for _ in 0..300 {
            per_worker[join(&placement, &load, "live")] += 1;
        }
        let (min, max) = (per_worker.iter().min(), per_worker.iter().max());
        assert!(
            max.unwrap() - min.unwrap() <= SPILL_MARGIN + 1,
            "{per_worker:?}"
        );
        assert_eq!(placement.workers_of("live"), vec![0, 1, 2]);
    }

    #[test]
    fn joins_in_flight_count_as_load() {
        let (placement, load) = (RoomPlacement::default(), ShardLoad::new(2));
        // A burst of first joins of distinct rooms before any worker has answered.
        let claims: Vec<Claim<'_>> = (0..4)
            .map(|i| placement.claim(&format!("r{i}"), &load))
            .collect();
        let on_zero = claims.iter().filter(|c| c.worker() == 0).count();
        assert_eq!(on_zero, 2, "spread while in flight");
        drop(claims);
        assert_eq!(placement.claim("x", &load).worker(), 0, "settled");
    }

    #[test]
    fn without_a_margin_a_room_alternates_between_workers() {
        let (placement, load) = (RoomPlacement::new(0), ShardLoad::new(2));
        let workers: Vec<usize> = (0..6).map(|_| join(&placement, &load, "a")).collect();
        assert_eq!(workers, [0, 1, 0, 1, 0, 1]);
    }

    #[test]
    fn a_room_is_forgotten_when_its_last_member_leaves() {
        let (placement, load) = (RoomPlacement::default(), ShardLoad::new(2));
        let worker = join(&placement, &load, "a");
        placement.left("a", worker);
        assert!(placement.is_empty());
        assert!(placement.workers_of("a").is_empty());
    }
}
