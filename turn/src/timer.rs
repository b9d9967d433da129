//! One sorted deadline queue for every expiring object (allocations,
//! permissions, channels).
//!
//! Instead of a timer task per object, each object pushes its deadline here.
//! Entries are not removed when an object is refreshed or deleted: when an
//! entry fires, the owner compares it with the object's current deadline and
//! ignores stale entries. Refreshes are rare (minutes apart), so stale entries
//! stay few.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::IpAddr;
use std::time::Instant;

/// What a deadline belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimerKey {
    /// An allocation's lifetime.
    Allocation(u64),
    /// A permission of an allocation, by peer IP.
    Permission(u64, IpAddr),
    /// A channel binding of an allocation, by channel number.
    Channel(u64, u16),
    /// A port reservation, by token.
    Reservation([u8; 8]),
}

/// A min-heap of (deadline, key).
#[derive(Debug, Default)]
pub struct TimerQueue {
    heap: BinaryHeap<Reverse<(Instant, TimerKey)>>,
}

impl TimerQueue {
    /// Schedules `key` at `at`.
    pub fn push(&mut self, at: Instant, key: TimerKey) {
        self.heap.push(Reverse((at, key)));
    }

    /// The earliest deadline, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Removes and returns the next entry due at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, TimerKey)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    /// Number of queued entries (stale ones included).
    pub fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pops_in_deadline_order_only_when_due() {
        let t0 = Instant::now();
        let mut q = TimerQueue::default();
        q.push(t0 + Duration::from_secs(5), TimerKey::Allocation(2));
        q.push(t0 + Duration::from_secs(1), TimerKey::Channel(1, 0x4000));
        q.push(t0 + Duration::from_secs(3), TimerKey::Allocation(1));
        assert_eq!(q.next_deadline(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(q.pop_due(t0), None);
        let due: Vec<_> = std::iter::from_fn(|| q.pop_due(t0 + Duration::from_secs(3)))
            .map(|(_, k)| k)
            .collect();
        assert_eq!(
            due,
            vec![TimerKey::Channel(1, 0x4000), TimerKey::Allocation(1)]
        );
        assert_eq!(q.len(), 1);
    }
}
