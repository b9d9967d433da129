//! Which media worker a room lives on. A new room goes to the worker with the fewest
//! participants; every later join of it goes to the same worker, until the room closes.
//!
//! Placing by a hash of the name would need no table, but a handful of big rooms (the usual
//! case) then lands on one worker about as often as not. The table is consulted only when a
//! participant joins and updated when a room opens or closes, never per packet.

use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug, Clone, Copy)]
struct Placement {
    worker: usize,
    /// Joins sent to the worker and not answered yet: the entry must outlive them even if
    /// the room closes meanwhile, or a concurrent join could open it on another worker.
    joining: usize,
    /// The worker has the room.
    open: bool,
}

#[derive(Debug, Default)]
pub struct RoomPlacement {
    rooms: Mutex<HashMap<String, Placement>>,
}

impl RoomPlacement {
    /// The worker for a join of `room`, placing a room nobody has on `least_loaded()`.
    /// Every `claim` is followed by one `settle` once the join is answered.
    pub fn claim(&self, room: &str, least_loaded: impl FnOnce() -> usize) -> usize {
        let mut rooms = self.lock();
        let entry = rooms.entry(room.to_owned()).or_insert_with(|| Placement {
            worker: least_loaded(),
            joining: 0,
            open: false,
        });
        entry.joining += 1;
        entry.worker
    }

    /// A join of `room` was answered (either way).
    pub fn settle(&self, room: &str) {
        let mut rooms = self.lock();
        if let Some(entry) = rooms.get_mut(room) {
            entry.joining = entry.joining.saturating_sub(1);
            if entry.joining == 0 && !entry.open {
                rooms.remove(room);
            }
        }
    }

    /// The owning worker opened `room`.
    pub(crate) fn opened(&self, room: &str) {
        if let Some(entry) = self.lock().get_mut(room) {
            entry.open = true;
        }
    }

    /// The owning worker closed `room` (its last participant left).
    pub(crate) fn closed(&self, room: &str) {
        let mut rooms = self.lock();
        if let Some(entry) = rooms.get_mut(room) {
            entry.open = false;
            if entry.joining == 0 {
                rooms.remove(room);
            }
        }
    }

    /// The worker `room` is on, if it is open or being opened.
    pub fn worker_of(&self, room: &str) -> Option<usize> {
        self.lock().get(room).map(|p| p.worker)
    }

    /// Rooms placed or being placed.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Placement>> {
        // The table stays consistent under a panic elsewhere: every update is one statement.
        self.rooms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_stays_on_its_worker_until_it_closes() {
        let placement = RoomPlacement::default();
        assert_eq!(placement.claim("a", || 1), 1);
        placement.opened("a");
        placement.settle("a");
        // Later joins follow the room, whatever is least loaded now.
        assert_eq!(placement.claim("a", || 0), 1);
        placement.settle("a");
        placement.closed("a");
        assert!(placement.is_empty(), "a closed room is forgotten");
        assert_eq!(
            placement.claim("a", || 0),
            0,
            "reopened where there is room"
        );
    }

    #[test]
    fn a_join_in_flight_keeps_a_closing_room_in_place() {
        let placement = RoomPlacement::default();
        placement.claim("a", || 1);
        placement.opened("a");
        placement.settle("a");
        // A second join is sent to worker 1 while the last participant leaves there.
        assert_eq!(placement.claim("a", || 0), 1);
        placement.closed("a");
        // A third join must still go to worker 1, where the second one reopens the room.
        assert_eq!(placement.claim("a", || 0), 1);
        placement.opened("a");
        placement.settle("a");
        placement.settle("a");
        assert_eq!(placement.len(), 1);
    }

    #[test]
    fn a_refused_first_join_leaves_nothing_behind() {
        let placement = RoomPlacement::default();
        placement.claim("full-server", || 0);
        placement.settle("full-server");
        assert!(placement.is_empty());
    }
}
