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
    /// The worker for a join of `room`, placing a room nobody has on `least_loaded()`. The
    /// room stays placed while the returned claim lives: hold it until the join is answered
    /// (either way). Dropping it, also when the join is abandoned midway, settles it.
    pub fn claim<'a>(&'a self, room: &'a str, least_loaded: impl FnOnce() -> usize) -> Claim<'a> {
        let mut rooms = self.lock();
        let entry = rooms.entry(room.to_owned()).or_insert_with(|| Placement {
            worker: least_loaded(),
            joining: 0,
            open: false,
        });
        entry.joining += 1;
        Claim {
            placement: self,
            room,
            worker: entry.worker,
        }
    }

    fn settle(&self, room: &str) {
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

/// A join of a room in flight; see [`RoomPlacement::claim`].
pub struct Claim<'a> {
    placement: &'a RoomPlacement,
    room: &'a str,
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
        self.placement.settle(self.room);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;

    #[test]
    fn a_room_stays_on_its_worker_until_it_closes() {
        let placement = RoomPlacement::default();
        {
            let first = placement.claim("a", || 1);
            assert_eq!(first.worker(), 1);
            placement.opened("a");
        }
        // Later joins follow the room, whatever is least loaded now.
        assert_eq!(placement.claim("a", || 0).worker(), 1);
        placement.closed("a");
        assert!(placement.is_empty(), "a closed room is forgotten");
        assert_eq!(
            placement.claim("a", || 0).worker(),
            0,
            "reopened where there is room"
        );
    }

    #[test]
    fn a_join_in_flight_keeps_a_closing_room_in_place() {
        let placement = RoomPlacement::default();
        {
            let _first = placement.claim("a", || 1);
            placement.opened("a");
        }
        // A second join is sent to worker 1 while the last participant leaves there.
        let second = placement.claim("a", || 0);
        assert_eq!(second.worker(), 1);
        placement.closed("a");
        // A third join must still go to worker 1, where the second one reopens the room.
        let third = placement.claim("a", || 0);
        assert_eq!(third.worker(), 1);
        placement.opened("a");
        drop(second);
        drop(third);
        assert_eq!(placement.len(), 1);
    }

    #[test]
    fn a_refused_or_abandoned_first_join_leaves_nothing_behind() {
        let placement = RoomPlacement::default();
        drop(placement.claim("full-server", || 0));
        assert!(placement.is_empty());
        // A join whose caller went away before the answer: its future, stopped at the await,
        // is dropped.
        let mut abandoned = Box::pin(async {
            let _claim = placement.claim("gone", || 0);
            std::future::pending::<()>().await;
        });
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(abandoned.as_mut().poll(&mut cx).is_pending());
        assert_eq!(
            placement.worker_of("gone"),
            Some(0),
            "placed while the join is in flight"
        );
        drop(abandoned);
        assert!(placement.is_empty());
    }
}
