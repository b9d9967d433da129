//! Per-client-IP limits: WebSocket connections open at once, and joins per minute (a token
//! bucket of one minute's joins). One address cannot then hold every pending-join slot or
//! file descriptor of the server. The client IP is `client_ip.rs`'s.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Entries of addresses with no connection left are swept this often (they are kept until
/// their join budget has refilled, or reconnecting would reset it).
const SWEEP_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Entry {
    connections: u32,
    /// Joins left; refills at the per-minute rate up to one minute's worth.
    join_tokens: f64,
    updated: Instant,
}

#[derive(Debug)]
struct State {
    by_ip: HashMap<IpAddr, Entry>,
    last_sweep: Instant,
}

/// The shared per-IP counts. Limits of 0 mean no limit.
#[derive(Debug)]
pub struct IpLimiter {
    max_connections: u32,
    joins_per_minute: u32,
    state: Mutex<State>,
}

/// One open connection of `ip`, counted until dropped.
#[derive(Debug)]
pub struct ConnectionPermit {
    limiter: Arc<IpLimiter>,
    ip: IpAddr,
}

impl ConnectionPermit {
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// Take one join from this address's budget; `false` when it has none left this minute.
    pub fn try_join(&self) -> bool {
        self.limiter.try_join(self.ip, Instant::now())
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut state = self.limiter.lock();
        if let Some(entry) = state.by_ip.get_mut(&self.ip) {
            entry.connections = entry.connections.saturating_sub(1);
        }
    }
}

impl IpLimiter {
    pub fn new(max_connections: u32, joins_per_minute: u32) -> Self {
        Self {
            max_connections,
            joins_per_minute,
            state: Mutex::new(State {
                by_ip: HashMap::new(),
                last_sweep: Instant::now(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The critical sections only do arithmetic: a panic inside one cannot leave the
        // counts half-updated, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Count a new connection from `ip`, or `None` if it already has the most allowed.
    pub fn connect(self: &Arc<Self>, ip: IpAddr) -> Option<ConnectionPermit> {
        let now = Instant::now();
        let mut state = self.lock();
        if now.saturating_duration_since(state.last_sweep) >= SWEEP_INTERVAL {
            state.last_sweep = now;
            self.sweep(&mut state.by_ip, now);
        }
        let full = f64::from(self.joins_per_minute);
        let entry = state.by_ip.entry(ip).or_insert(Entry {
            connections: 0,
            join_tokens: full,
            updated: now,
        });
        if self.max_connections > 0 && entry.connections >= self.max_connections {
            return None;
        }
        entry.connections += 1;
        Some(ConnectionPermit {
            limiter: Arc::clone(self),
            ip,
        })
    }

    fn try_join(&self, ip: IpAddr, now: Instant) -> bool {
        if self.joins_per_minute == 0 {
            return true;
        }
        let mut state = self.lock();
        // A permit holder always has an entry: the sweep keeps addresses with connections.
        let Some(entry) = state.by_ip.get_mut(&ip) else {
            return true;
        };
        let full = f64::from(self.joins_per_minute);
        entry.join_tokens = refilled(entry, full, now);
        entry.updated = now;
        if entry.join_tokens >= 1.0 {
            entry.join_tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Forget addresses with no connection whose join budget is full again.
    fn sweep(&self, by_ip: &mut HashMap<IpAddr, Entry>, now: Instant) {
        let full = f64::from(self.joins_per_minute);
        by_ip.retain(|_, e| e.connections > 0 || refilled(e, full, now) < full);
    }

    /// Addresses tracked now (for tests: the sweep must bound this).
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.lock().by_ip.len()
    }
}

fn refilled(entry: &Entry, full: f64, now: Instant) -> f64 {
    let elapsed = now.saturating_duration_since(entry.updated).as_secs_f64();
    (entry.join_tokens + elapsed * full / 60.0).min(full)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn connections_are_counted_per_address_until_dropped() {
        let limiter = Arc::new(IpLimiter::new(2, 0));
        let a1 = limiter.connect(ip("192.0.2.1")).expect("first");
        let _a2 = limiter.connect(ip("192.0.2.1")).expect("second");
        assert!(limiter.connect(ip("192.0.2.1")).is_none(), "third refused");
        let _b = limiter.connect(ip("192.0.2.2")).expect("another address");
        drop(a1);
        assert!(
            limiter.connect(ip("192.0.2.1")).is_some(),
            "a slot is free again"
        );
        let unlimited = Arc::new(IpLimiter::new(0, 0));
        let many: Vec<_> = (0..1000)
            .map(|_| unlimited.connect(ip("192.0.2.1")))
            .collect();
        assert!(many.iter().all(Option::is_some));
    }

    #[test]
    fn joins_refill_at_the_per_minute_rate_and_survive_reconnects() {
        let limiter = Arc::new(IpLimiter::new(0, 2));
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        let permit = limiter.connect(a).unwrap();
        assert!(limiter.try_join(a, t0));
        assert!(limiter.try_join(a, t0));
        assert!(!limiter.try_join(a, t0), "the third join within the minute");
        // Reconnecting does not reset the budget.
        drop(permit);
        let permit = limiter.connect(a).unwrap();
        assert!(!limiter.try_join(a, t0));
        // Half a minute brings one join back (2 per minute).
        assert!(limiter.try_join(a, t0 + Duration::from_secs(31)));
        assert!(!limiter.try_join(a, t0 + Duration::from_secs(31)));
        drop(permit);
    }

    #[test]
    fn idle_addresses_are_forgotten() {
        let limiter = Arc::new(IpLimiter::new(10, 60));
        for i in 0..100u8 {
            let permit = limiter.connect(IpAddr::from([192, 0, 2, i])).unwrap();
            assert!(permit.try_join());
        }
        let kept = limiter.connect(ip("198.51.100.1")).unwrap();
        assert_eq!(limiter.tracked(), 101);
        let later = Instant::now() + Duration::from_secs(61);
        {
            let mut state = limiter.lock();
            limiter.sweep(&mut state.by_ip, later);
        }
        assert_eq!(limiter.tracked(), 1, "only the address still connected");
        drop(kept);
    }
}
