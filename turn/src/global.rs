//! What every shard of the core shares: quotas, the relay port pool, port
//! reservations and the nonce key.
//!
//! The TURN core runs as one [`Server`](crate::Server) per worker thread
//! (a shard); a client's packets always reach the same shard, so the relay
//! path needs nothing from here. What must hold across shards is decided only
//! when an allocation is created or freed: the quotas (per user, per client
//! IP, in total), which relay ports are taken, and EVEN-PORT reservations
//! (the RTCP half of a pair may be allocated from another 5-tuple, so from
//! another shard). Those take the short locks below, never a relayed packet.
//! Nonces are stateless: every shard holds the same key and can check a nonce
//! another shard issued.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::allocation::Reservation;
use crate::auth::Credentials;
use crate::config::TurnConfig;
use crate::nonce::NonceMint;
use crate::ports::PortPool;

/// Why an allocation was refused by a quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaRefusal {
    /// The user holds `max_allocations_per_user` already (486).
    User,
    /// The client IP holds `max_allocations_per_ip` already (486).
    Ip,
    /// The server holds `max_allocations` already (508).
    Total,
}

#[derive(Debug, Default)]
struct Counts {
    per_user: HashMap<String, usize>,
    per_ip: HashMap<IpAddr, usize>,
}

/// Live-allocation counts checked at Allocate, across all shards.
#[derive(Debug)]
pub struct Quotas {
    max_per_user: usize,
    max_per_ip: usize,
    max_total: usize,
    counts: Mutex<Counts>,
    /// Mirrors the sum of `per_user`, for readers that should not lock.
    total: AtomicUsize,
    refused_per_ip: AtomicU64,
}

impl Quotas {
    /// Quotas with the limits of `cfg` (0 for the per-IP limit means none).
    pub fn new(cfg: &TurnConfig) -> Self {
        Quotas {
            max_per_user: cfg.max_allocations_per_user,
            max_per_ip: cfg.max_allocations_per_ip,
            max_total: cfg.max_allocations,
            counts: Mutex::default(),
            total: AtomicUsize::new(0),
            refused_per_ip: AtomicU64::new(0),
        }
    }

    fn counts(&self) -> MutexGuard<'_, Counts> {
        // The counts are updated in one step each; a panic elsewhere cannot
        // leave them half-changed, so a poisoned lock is still usable.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes one allocation slot for `user` from `ip`, or refuses without
    /// taking anything. Every successful call must be paired with
    /// [`Quotas::release`].
    pub fn admit(&self, user: &str, ip: IpAddr) -> Result<(), QuotaRefusal> {
        let mut c = self.counts();
        if c.per_user.get(user).copied().unwrap_or(0) >= self.max_per_user {
            return Err(QuotaRefusal::User);
        }
        if self.max_per_ip > 0 && c.per_ip.get(&ip).copied().unwrap_or(0) >= self.max_per_ip {
            self.refused_per_ip.fetch_add(1, Ordering::Relaxed);
            return Err(QuotaRefusal::Ip);
        }
        if self.total.load(Ordering::Relaxed) >= self.max_total {
            return Err(QuotaRefusal::Total);
        }
        *c.per_user.entry(user.to_owned()).or_default() += 1;
        *c.per_ip.entry(ip).or_default() += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Gives back the slot an allocation of `user` from `ip` held.
    pub fn release(&self, user: &str, ip: IpAddr) {
        let mut c = self.counts();
        let mut released = false;
        if let Some(n) = c.per_user.get_mut(user) {
            *n = n.saturating_sub(1);
            released = true;
            if *n == 0 {
                c.per_user.remove(user);
            }
        }
        if let Some(n) = c.per_ip.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.per_ip.remove(&ip);
            }
        }
        if released {
            self.total.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Live allocations, all shards.
    pub fn allocations(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Live allocations of `user`.
    pub fn user_count(&self, user: &str) -> usize {
        self.counts().per_user.get(user).copied().unwrap_or(0)
    }

    /// Allocate requests refused because their client IP held its quota.
    pub fn refused_per_ip(&self) -> u64 {
        self.refused_per_ip.load(Ordering::Relaxed)
    }
}

/// State shared by all shards of one server; `H` is the relay socket handle.
pub struct Global<H> {
    pub(crate) quotas: std::sync::Arc<Quotas>,
    ports: Mutex<PortPool>,
    reservations: Mutex<HashMap<[u8; 8], Reservation<H>>>,
    pub(crate) nonces: NonceMint,
    pub(crate) creds: Credentials,
}

impl<H> std::fmt::Debug for Global<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Global")
            .field("quotas", &self.quotas)
            .finish_non_exhaustive()
    }
}

impl<H> Global<H> {
    /// Fresh shared state for a server configured with `cfg` (a new random
    /// nonce key).
    pub fn new(cfg: &TurnConfig) -> Self {
        Global {
            quotas: std::sync::Arc::new(Quotas::new(cfg)),
            ports: Mutex::new(PortPool::new(cfg.port_range.clone())),
            reservations: Mutex::default(),
            nonces: NonceMint::new(cfg.nonce_lifetime.as_secs()),
            creds: Credentials::new(&cfg.users, cfg.auth_secret.as_deref()),
        }
    }

    /// The quotas, for metrics.
    pub fn quotas(&self) -> &std::sync::Arc<Quotas> {
        &self.quotas
    }

    /// The relay port pool (taken at allocate and free only).
    pub(crate) fn ports(&self) -> MutexGuard<'_, PortPool> {
        // Each pool operation is a single set insert or remove.
        self.ports.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// EVEN-PORT reservations by token (taken at allocate and expiry only).
    pub(crate) fn reservations(&self) -> MutexGuard<'_, HashMap<[u8; 8], Reservation<H>>> {
        self.reservations.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quotas(per_user: usize, per_ip: usize, total: usize) -> Quotas {
        Quotas::new(&TurnConfig {
            max_allocations_per_user: per_user,
            max_allocations_per_ip: per_ip,
            max_allocations: total,
            ..TurnConfig::default()
        })
    }

    #[test]
    fn each_limit_refuses_and_a_release_makes_room() {
        let ip1: IpAddr = "198.51.100.1".parse().unwrap();
        let ip2: IpAddr = "198.51.100.2".parse().unwrap();
        let q = quotas(3, 2, 4);
        assert_eq!(q.admit("a", ip1), Ok(()));
        assert_eq!(q.admit("a", ip1), Ok(()));
        assert_eq!(q.admit("b", ip1), Err(QuotaRefusal::Ip));
        assert_eq!(q.refused_per_ip(), 1);
        assert_eq!(q.admit("a", ip2), Ok(()));
        assert_eq!(q.admit("a", ip2), Err(QuotaRefusal::User));
        assert_eq!(q.admit("b", ip2), Ok(()));
        assert_eq!(q.allocations(), 4);
        assert_eq!(
            q.admit("c", "198.51.100.3".parse().unwrap()),
            Err(QuotaRefusal::Total)
        );
        // a refusal takes nothing
        assert_eq!(q.allocations(), 4);
        q.release("a", ip1);
        assert_eq!(q.admit("b", ip1), Ok(()));
        assert_eq!(q.user_count("a"), 2);
        assert_eq!(q.user_count("b"), 2);
        for (u, ip) in [("a", ip1), ("b", ip1), ("a", ip2), ("b", ip2)] {
            q.release(u, ip);
        }
        assert_eq!(q.allocations(), 0);
        assert_eq!(q.user_count("a"), 0);
    }

    #[test]
    fn zero_per_ip_means_unlimited() {
        let q = quotas(100, 0, 100);
        let ip: IpAddr = "198.51.100.1".parse().unwrap();
        for _ in 0..50 {
            assert_eq!(q.admit("a", ip), Ok(()));
        }
        assert_eq!(q.refused_per_ip(), 0);
    }
}
