//! The allocation table: every live allocation of one shard with its
//! permissions, channel bindings and bandwidth bucket, indexed by client
//! 5-tuple (for client traffic) and by relay socket address (for peer
//! traffic). Counts that span shards (quotas) live in `global.rs`.
//!
//! Only the sans-IO core touches it, so it holds no locks. `H` is the
//! embedder's handle to the relay socket (the core never does I/O with it; it
//! hands it back in outputs).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

/// Transport between client and server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Plain UDP.
    Udp,
    /// Plain TCP.
    Tcp,
    /// TLS over TCP (`turns:`).
    Tls,
}

/// The client-side 5-tuple that identifies an allocation (RFC 8656 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FiveTuple {
    /// Transport protocol.
    pub transport: Transport,
    /// The client's address as seen by the server.
    pub client: SocketAddr,
    /// The server address the client talks to.
    pub server: SocketAddr,
}

impl FiveTuple {
    /// The client address to report in XOR-MAPPED-ADDRESS: IPv4 clients of a
    /// dual-stack `[::]` listener appear as `::ffff:a.b.c.d` and are reported
    /// as the IPv4 address they are.
    pub fn reflexive(&self) -> SocketAddr {
        match self.client {
            SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
                Some(v4) => SocketAddr::new(v4.into(), v6.port()),
                None => self.client,
            },
            SocketAddr::V4(_) => self.client,
        }
    }

    /// True for TCP and TLS, where ChannelData must be padded.
    pub fn is_stream(&self) -> bool {
        !matches!(self.transport, Transport::Udp)
    }
}

/// A token bucket limiting relayed bytes per second (one second of burst).
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: u64,
    tokens: u64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket refilling at `rate` bytes per second.
    pub fn new(rate: u64, now: Instant) -> Self {
        TokenBucket {
            rate,
            tokens: rate,
            last: now,
        }
    }

    /// Takes `n` bytes if available.
    pub fn take(&mut self, n: usize, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last);
        let refill = (elapsed.as_nanos().saturating_mul(u128::from(self.rate)) / 1_000_000_000)
            .min(u128::from(u64::MAX)) as u64;
        if refill > 0 {
            self.tokens = self.tokens.saturating_add(refill).min(self.rate);
            self.last = now;
        }
        let n = n as u64;
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }
}

/// One channel binding.
#[derive(Debug, Clone, Copy)]
pub struct Channel {
    /// The bound peer.
    pub peer: SocketAddr,
    /// When the binding expires.
    pub expires: Instant,
}

/// A relay port held back by EVEN-PORT with the R bit (RFC 8656 §7.2): the
/// next-higher port, bound now so nobody else takes it, for a later Allocate
/// carrying the RESERVATION-TOKEN (RTP/RTCP port pairs).
#[derive(Debug)]
pub struct Reservation<H> {
    /// The bound (but not yet read) relay socket.
    pub relay: H,
    /// Its local address.
    pub bound: SocketAddr,
    /// The advertised address.
    pub relayed: SocketAddr,
    /// When the reservation lapses (RFC 8656: about 30 seconds).
    pub expires: Instant,
}

/// One allocation.
#[derive(Debug)]
pub struct Allocation<H> {
    /// Table id, also used in timer keys.
    pub id: u64,
    /// The client 5-tuple.
    pub tuple: FiveTuple,
    /// The authenticated username that created it (RFC 8656 §5: later requests
    /// must use the same one).
    pub username: String,
    /// Embedder's relay socket handle.
    pub relay: H,
    /// The relayed transport address advertised to the client.
    pub relayed: SocketAddr,
    /// The local address the relay socket is bound to.
    pub bound: SocketAddr,
    /// Expiry of the allocation.
    pub expires: Instant,
    /// Permissions: peer IP -> expiry.
    pub permissions: HashMap<IpAddr, Instant>,
    /// Channels: number -> binding.
    pub channels: HashMap<u16, Channel>,
    /// Reverse channel map: peer -> number.
    pub peer_channels: HashMap<SocketAddr, u16>,
    /// Bandwidth cap, if configured.
    pub bucket: Option<TokenBucket>,
    /// Transaction id of the Allocate that created it, so a retransmitted
    /// Allocate gets the same success instead of 437.
    pub allocate_tid: [u8; 12],
}

impl<H> Allocation<H> {
    /// Whether a live permission exists for `ip`.
    pub fn has_permission(&self, ip: IpAddr, now: Instant) -> bool {
        self.permissions.get(&ip).is_some_and(|exp| *exp > now)
    }

    /// Charges `n` relayed bytes to the bandwidth cap.
    pub fn charge(&mut self, n: usize, now: Instant) -> bool {
        match self.bucket.as_mut() {
            Some(b) => b.take(n, now),
            None => true,
        }
    }

    /// Whether the relay is IPv6.
    pub fn is_ipv6(&self) -> bool {
        self.relayed.is_ipv6()
    }
}

/// All allocations.
#[derive(Debug)]
pub struct AllocationTable<H> {
    by_id: HashMap<u64, Allocation<H>>,
    by_tuple: HashMap<FiveTuple, u64>,
    by_bound: HashMap<SocketAddr, u64>,
    next_id: u64,
}

impl<H> Default for AllocationTable<H> {
    fn default() -> Self {
        AllocationTable {
            by_id: HashMap::new(),
            by_tuple: HashMap::new(),
            by_bound: HashMap::new(),
            next_id: 1,
        }
    }
}

impl<H> AllocationTable<H> {
    /// A fresh id for the next allocation.
    pub fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Adds an allocation.
    pub fn insert(&mut self, alloc: Allocation<H>) {
        self.by_tuple.insert(alloc.tuple, alloc.id);
        self.by_bound.insert(alloc.bound, alloc.id);
        self.by_id.insert(alloc.id, alloc);
    }

    /// Removes an allocation and its indexes.
    pub fn remove(&mut self, id: u64) -> Option<Allocation<H>> {
        let alloc = self.by_id.remove(&id)?;
        self.by_tuple.remove(&alloc.tuple);
        self.by_bound.remove(&alloc.bound);
        Some(alloc)
    }

    /// The allocation of a client 5-tuple.
    pub fn by_tuple_mut(&mut self, tuple: &FiveTuple) -> Option<&mut Allocation<H>> {
        let id = self.by_tuple.get(tuple)?;
        self.by_id.get_mut(id)
    }

    /// The allocation owning a relay socket.
    pub fn by_bound_mut(&mut self, bound: &SocketAddr) -> Option<&mut Allocation<H>> {
        let id = self.by_bound.get(bound)?;
        self.by_id.get_mut(id)
    }

    /// An allocation by id.
    pub fn get_mut(&mut self, id: u64) -> Option<&mut Allocation<H>> {
        self.by_id.get_mut(&id)
    }

    /// Ids of all allocations.
    pub fn ids(&self) -> Vec<u64> {
        self.by_id.keys().copied().collect()
    }

    /// Number of allocations.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn token_bucket_limits_and_refills() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000, t0);
        assert!(b.take(600, t0));
        assert!(!b.take(600, t0));
        assert!(b.take(400, t0));
        assert!(!b.take(1, t0));
        assert!(b.take(500, t0 + Duration::from_millis(500)));
        // never more than one second of burst
        assert!(!b.take(1001, t0 + Duration::from_secs(100)));
        assert!(b.take(1000, t0 + Duration::from_secs(100)));
    }
}
