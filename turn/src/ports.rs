//! The relay port pool: which ports of the configured range are in use.
//!
//! The pool only tracks our own use; a port taken by another process shows up
//! as a bind failure, and the caller simply tries the next candidate. Running
//! out is answered with 508 (Insufficient Capacity), never a panic.

use std::collections::HashSet;
use std::ops::RangeInclusive;

/// How many bind attempts one Allocate may spend before giving up with 508.
pub const MAX_BIND_ATTEMPTS: usize = 32;

/// Ports in use, per address family.
#[derive(Debug)]
pub struct PortPool {
    min: u16,
    max: u16,
    used_v4: HashSet<u16>,
    used_v6: HashSet<u16>,
}

impl PortPool {
    /// A pool over `range` (inclusive). An empty range yields no candidates.
    pub fn new(range: RangeInclusive<u16>) -> Self {
        PortPool {
            min: *range.start(),
            max: *range.end(),
            used_v4: HashSet::new(),
            used_v6: HashSet::new(),
        }
    }

    fn used(&self, v6: bool) -> &HashSet<u16> {
        if v6 {
            &self.used_v6
        } else {
            &self.used_v4
        }
    }

    /// Number of ports in the range.
    pub fn size(&self) -> usize {
        if self.max < self.min {
            0
        } else {
            usize::from(self.max - self.min) + 1
        }
    }

    /// Up to `limit` free ports, starting at a random point of the range so that
    /// relay ports are not predictable. `even` restricts to even ports
    /// (EVEN-PORT attribute).
    pub fn candidates(&self, v6: bool, even: bool, limit: usize) -> Vec<u16> {
        let size = self.size();
        if size == 0 {
            return Vec::new();
        }
        let used = self.used(v6);
        let start = rand::random_range(0..size);
        let mut out = Vec::with_capacity(limit.min(size));
        for i in 0..size {
            if out.len() >= limit {
                break;
            }
            let offset = (start + i) % size;
            // offset < size <= 65536 and min + offset <= max, so this fits in u16
            let Ok(port) = u16::try_from(usize::from(self.min) + offset) else {
                continue;
            };
            if port == 0 || (even && port % 2 == 1) || used.contains(&port) {
                continue;
            }
            out.push(port);
        }
        out
    }

    /// Whether `port` is inside the range and not in use.
    pub fn is_free(&self, v6: bool, port: u16) -> bool {
        (self.min..=self.max).contains(&port) && !self.used(v6).contains(&port)
    }

    /// Marks a port as used.
    pub fn take(&mut self, v6: bool, port: u16) {
        if v6 {
            self.used_v6.insert(port);
        } else {
            self.used_v4.insert(port);
        }
    }

    /// Returns a port to the pool.
    pub fn release(&mut self, v6: bool, port: u16) {
        if v6 {
            self.used_v6.remove(&port);
        } else {
            self.used_v4.remove(&port);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_skip_used_and_respect_range() {
        let mut pool = PortPool::new(50000..=50003);
        pool.take(false, 50001);
        let mut c = pool.candidates(false, false, 10);
        c.sort_unstable();
        assert_eq!(c, vec![50000, 50002, 50003]);
        // the IPv6 side is independent
        assert_eq!(pool.candidates(true, false, 10).len(), 4);
        let mut even = pool.candidates(false, true, 10);
        even.sort_unstable();
        assert_eq!(even, vec![50000, 50002]);
    }

    #[test]
    fn exhausted_pool_yields_nothing() {
        let mut pool = PortPool::new(40000..=40001);
        pool.take(false, 40000);
        pool.take(false, 40001);
        assert!(pool.candidates(false, false, 5).is_empty());
        pool.release(false, 40000);
        assert_eq!(pool.candidates(false, false, 5), vec![40000]);
    }

    #[test]
    fn empty_and_full_ranges() {
        #[allow(clippy::reversed_empty_ranges)]
        let empty = PortPool::new(10..=9);
        assert_eq!(empty.size(), 0);
        assert!(empty.candidates(false, false, 3).is_empty());
        let full = PortPool::new(0..=65535);
        assert_eq!(full.size(), 65536);
        assert_eq!(full.candidates(false, false, 3).len(), 3);
    }
}
