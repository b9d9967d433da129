//! The sans-IO TURN core: datagrams, their source and the time go in;
//! datagrams to send (and relay sockets to open or close) come out.
//!
//! The core never touches a socket. Opening a relay socket is the one side
//! effect it needs synchronously (the Allocate response carries the relayed
//! address), so it goes through the small [`RelayBinder`] trait the embedder
//! implements; tests use a fake. Everything else is returned as [`Output`]
//! values appended to a caller-owned `Vec`, which hot paths reuse.
//!
//! Per-method logic lives in `handlers/`, response building in `response.rs`;
//! this file owns dispatch, authentication and expiry.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use stun_rs::attributes::stun::{
    Fingerprint, MessageIntegrity, MessageIntegritySha256, Nonce, PasswordAlgorithm,
    PasswordAlgorithms, Realm, UnknownAttributes, UserName,
};
use stun_rs::{
    methods, AlgorithmId, HMACKey, MessageClass, MessageDecoder, MessageDecoderBuilder,
    MessageType, StunMessage, StunMessageBuilder, TransactionId,
};

use crate::allocation::{AllocationTable, FiveTuple};
use crate::auth::{self, CredentialError, IntegrityKind};
use crate::channel_data;
use crate::config::TurnConfig;
use crate::global::Global;
use crate::handlers;
use crate::nonce::NonceCheck;
use crate::peer_filter::PeerFilter;
use crate::timer::{TimerKey, TimerQueue};

/// Opens relay sockets for the core.
pub trait RelayBinder {
    /// The embedder's handle to an open relay socket (cheap to clone). `Send`
    /// because an EVEN-PORT reservation made on one shard may be taken up by
    /// an Allocate on another (see [`Global`]).
    type Handle: Clone + Send;
    /// Binds a UDP socket on `addr`; returns its handle and actual local address.
    fn bind(&mut self, addr: SocketAddr) -> io::Result<(Self::Handle, SocketAddr)>;
}

/// Something the embedder must do.
#[derive(Debug)]
pub enum Output<H> {
    /// Send `data` to the client of `tuple` (over its listener or connection).
    ToClient {
        /// The client 5-tuple.
        tuple: FiveTuple,
        /// Bytes to send (a whole STUN or ChannelData message).
        data: Vec<u8>,
    },
    /// Send `data` from relay socket `relay` to `peer`.
    ToPeer {
        /// The relay socket.
        relay: H,
        /// Destination peer, already checked against the peer filter.
        peer: SocketAddr,
        /// Payload.
        data: Vec<u8>,
    },
    /// A relay socket was bound: start reading from it and feed what arrives to
    /// [`Server::handle_peer`] with `bound`.
    RelayOpened {
        /// The relay socket.
        relay: H,
        /// Its local address.
        bound: SocketAddr,
    },
    /// The allocation owning this relay socket is gone: stop reading, close it.
    RelayClosed {
        /// The relay socket.
        relay: H,
    },
}

/// A decoded request being handled.
pub(crate) struct Request<'a> {
    pub tuple: FiveTuple,
    pub msg: StunMessage,
    pub raw: &'a [u8],
    pub now: Instant,
}

/// The outcome of successful authentication.
pub(crate) struct Authed {
    pub username: String,
    pub key: HMACKey,
    pub kind: IntegrityKind,
}

/// The TURN server state machine: one shard of it. A server may run as
/// several shards (one per thread) sharing one [`Global`]; each shard holds
/// the allocations of the clients whose packets reach it, so the relay path
/// touches only its own shard.
pub struct Server<B: RelayBinder> {
    pub(crate) cfg: TurnConfig,
    pub(crate) binder: B,
    pub(crate) table: AllocationTable<B::Handle>,
    pub(crate) timers: TimerQueue,
    pub(crate) filter: PeerFilter,
    pub(crate) global: Arc<Global<B::Handle>>,
    decoder: MessageDecoder,
    epoch: Instant,
    epoch_unix: u64,
}

impl<B: RelayBinder> std::fmt::Debug for Server<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("allocations", &self.table.len())
            .field("timers", &self.timers.len())
            .finish_non_exhaustive()
    }
}

/// The algorithms we offer in PASSWORD-ALGORITHMS, in preference order.
pub(crate) fn offered_algorithms() -> PasswordAlgorithms {
    PasswordAlgorithms::from(vec![
        PasswordAlgorithm::new(AlgorithmId::MD5.into()),
        PasswordAlgorithm::new(AlgorithmId::SHA256.into()),
    ])
}

impl<B: RelayBinder> Server<B> {
    /// A single-shard server using the real clocks.
    pub fn new(cfg: TurnConfig, binder: B) -> Self {
        let global = Arc::new(Global::new(&cfg));
        Self::shard(cfg, binder, global)
    }

    /// One shard of a server whose shards share `global` (made from the same
    /// `cfg`), using the real clocks.
    pub fn shard(cfg: TurnConfig, binder: B, global: Arc<Global<B::Handle>>) -> Self {
        Self::with_clock(cfg, binder, global, Instant::now(), SystemTime::now())
    }

    /// A shard whose `Instant` `epoch` corresponds to wall-clock time `wall`.
    /// Credential and nonce expiry use wall-clock seconds derived from the
    /// `now` passed to each call, so tests can move time freely.
    pub fn with_clock(
        cfg: TurnConfig,
        binder: B,
        global: Arc<Global<B::Handle>>,
        epoch: Instant,
        wall: SystemTime,
    ) -> Self {
        let filter = PeerFilter::new(
            cfg.allow_peers.clone(),
            cfg.deny_peers.clone(),
            cfg.allow_loopback_peers,
        );
        Server {
            global,
            filter,
            binder,
            table: AllocationTable::default(),
            timers: TimerQueue::default(),
            decoder: MessageDecoderBuilder::default().build(),
            epoch,
            epoch_unix: wall
                .duration_since(UNIX_EPOCH)
                .unwrap_or(Duration::ZERO)
                .as_secs(),
            cfg,
        }
    }

    /// Number of live allocations in this shard.
    pub fn allocation_count(&self) -> usize {
        self.table.len()
    }

    /// The state this shard shares with the others.
    pub fn global(&self) -> &Arc<Global<B::Handle>> {
        &self.global
    }

    /// When [`Server::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    pub(crate) fn unix(&self, now: Instant) -> u64 {
        self.epoch_unix
            .saturating_add(now.saturating_duration_since(self.epoch).as_secs())
    }

    /// Handles one datagram (or one framed message from a TCP/TLS stream)
    /// received from a client.
    pub fn handle_client(
        &mut self,
        tuple: FiveTuple,
        data: &[u8],
        now: Instant,
        out: &mut Vec<Output<B::Handle>>,
    ) {
        if channel_data::is_channel_data(data) {
            handlers::send::channel_data(self, tuple, data, now, out);
            return;
        }
        // Header sanity before handing bytes to the codec: top bits zero, magic
        // cookie, length a multiple of 4 and equal to what we received.
        let Some(&[t0, t1, l0, l1, c0, c1, c2, c3, ref tid @ ..]) = data
            .get(..channel_data::STUN_HEADER_LEN)
            .and_then(|h| <&[u8; channel_data::STUN_HEADER_LEN]>::try_from(h).ok())
        else {
            return;
        };
        let msg_type = u16::from_be_bytes([t0, t1]);
        let length = usize::from(u16::from_be_bytes([l0, l1]));
        if msg_type & 0xC000 != 0
            || [c0, c1, c2, c3] != stun_rs::MAGIC_COOKIE.as_u32().to_be_bytes()
            || length % 4 != 0
            || length + channel_data::STUN_HEADER_LEN != data.len()
        {
            tracing::trace!(client = %tuple.client, "dropping non-STUN datagram");
            return;
        }
        let msg = match self.decoder.decode(data) {
            Ok((msg, _)) => msg,
            Err(e) => {
                tracing::debug!(client = %tuple.client, error = %e, "malformed STUN message");
                let mt = MessageType::from(msg_type);
                if mt.class() == MessageClass::Request {
                    let msg = StunMessageBuilder::new(mt.method(), MessageClass::Request)
                        .with_transaction_id(TransactionId::from(*tid))
                        .build();
                    let req = Request {
                        tuple,
                        msg,
                        raw: data,
                        now,
                    };
                    self.reply_error(&req, 400, None, Vec::new(), out);
                }
                return;
            }
        };
        if let Some(fp) = msg.get::<Fingerprint>() {
            let ok = fp.as_fingerprint().ok().is_some_and(|fp| {
                stun_rs::get_input_text::<Fingerprint>(data).is_some_and(|i| fp.validate(&i))
            });
            if !ok {
                tracing::debug!(client = %tuple.client, "bad FINGERPRINT, dropped");
                return;
            }
        }
        let req = Request {
            tuple,
            msg,
            raw: data,
            now,
        };
        let unknown: Vec<u16> = req
            .msg
            .attributes()
            .iter()
            .filter_map(|a| a.as_unknown().ok())
            .map(|u| u.attribute_type())
            .filter(|t| t.is_comprehension_required())
            .map(|t| t.as_u16())
            .collect();
        let class = req.msg.class();
        let method = req.msg.method();
        if class == MessageClass::Request && !unknown.is_empty() {
            let mut ua = UnknownAttributes::default();
            for t in unknown {
                ua.add(t);
            }
            self.reply_error(&req, 420, None, vec![ua.into()], out);
            return;
        }
        match (class, method) {
            (MessageClass::Request, methods::BINDING) => handlers::binding::handle(self, &req, out),
            (MessageClass::Request, methods::ALLOCATE) => {
                handlers::allocate::handle(self, &req, out)
            }
            (MessageClass::Request, methods::REFRESH) => handlers::refresh::handle(self, &req, out),
            (MessageClass::Request, methods::CREATE_PERMMISSION) => {
                handlers::permission::handle(self, &req, out)
            }
            (MessageClass::Request, methods::CHANNEL_BIND) => {
                handlers::channel_bind::handle(self, &req, out)
            }
            (MessageClass::Indication, methods::SEND) if unknown.is_empty() => {
                handlers::send::indication(self, &req, out)
            }
            (MessageClass::Request, _) => self.reply_error(&req, 400, None, Vec::new(), out),
            _ => tracing::trace!(client = %tuple.client, ?method, ?class, "ignored message"),
        }
    }

    /// Handles a datagram that arrived on relay socket `bound` from `peer`.
    pub fn handle_peer(
        &mut self,
        bound: SocketAddr,
        peer: SocketAddr,
        data: &[u8],
        now: Instant,
        out: &mut Vec<Output<B::Handle>>,
    ) {
        handlers::send::from_peer(self, bound, peer, data, now, out);
    }

    /// Expires allocations, permissions and channels whose time has come.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<Output<B::Handle>>) {
        while let Some((_, key)) = self.timers.pop_due(now) {
            match key {
                TimerKey::Allocation(id) => {
                    if self.table.get_mut(id).is_some_and(|a| a.expires <= now) {
                        tracing::debug!(id, "allocation expired");
                        self.delete_allocation(id, out);
                    }
                }
                TimerKey::Permission(id, ip) => {
                    if let Some(a) = self.table.get_mut(id) {
                        if a.permissions.get(&ip).is_some_and(|exp| *exp <= now) {
                            a.permissions.remove(&ip);
                        }
                    }
                }
                TimerKey::Reservation(token) => {
                    let mut reservations = self.global.reservations();
                    if reservations.get(&token).is_some_and(|r| r.expires <= now) {
                        if let Some(r) = reservations.remove(&token) {
                            drop(reservations);
                            // never opened, so dropping the handle closes the socket
                            self.global
                                .ports()
                                .release(r.bound.is_ipv6(), r.bound.port());
                        }
                    }
                }
                TimerKey::Channel(id, number) => {
                    if let Some(a) = self.table.get_mut(id) {
                        if a.channels.get(&number).is_some_and(|c| c.expires <= now) {
                            if let Some(c) = a.channels.remove(&number) {
                                a.peer_channels.remove(&c.peer);
                            }
                        }
                    }
                }
            }
        }
    }

    /// A TCP or TLS client connection closed: its allocation goes with it
    /// (RFC 8656 §3.1).
    pub fn connection_closed(&mut self, tuple: FiveTuple, out: &mut Vec<Output<B::Handle>>) {
        if let Some(id) = self.table.by_tuple_mut(&tuple).map(|a| a.id) {
            self.delete_allocation(id, out);
        }
    }

    /// Deletes every allocation of this shard and every pending reservation
    /// (shutdown).
    pub fn close_all(&mut self, out: &mut Vec<Output<B::Handle>>) {
        for id in self.table.ids() {
            self.delete_allocation(id, out);
        }
        let drained: Vec<_> = self.global.reservations().drain().collect();
        let mut ports = self.global.ports();
        for (_, r) in drained {
            ports.release(r.bound.is_ipv6(), r.bound.port());
        }
    }

    pub(crate) fn delete_allocation(&mut self, id: u64, out: &mut Vec<Output<B::Handle>>) {
        if let Some(alloc) = self.table.remove(id) {
            self.global
                .ports()
                .release(alloc.bound.is_ipv6(), alloc.bound.port());
            self.global
                .quotas
                .release(&alloc.username, alloc.tuple.reflexive().ip());
            out.push(Output::RelayClosed { relay: alloc.relay });
        }
    }

    /// Authenticates a request with long-term credentials (RFC 8489 §9.2).
    /// On failure the error response is already queued and `None` returned.
    pub(crate) fn authenticate(
        &self,
        req: &Request<'_>,
        out: &mut Vec<Output<B::Handle>>,
    ) -> Option<Authed> {
        let msg = &req.msg;
        let has_mi = msg.get::<MessageIntegrity>().is_some()
            || msg.get::<MessageIntegritySha256>().is_some();
        if !has_mi {
            self.challenge(req, 401, out);
            return None;
        }
        let username = msg.get::<UserName>().and_then(|a| a.as_user_name().ok());
        let realm = msg.get::<Realm>().and_then(|a| a.as_realm().ok());
        let nonce = msg.get::<Nonce>().and_then(|a| a.as_nonce().ok());
        let (Some(username), Some(realm), Some(nonce)) = (username, realm, nonce) else {
            self.reply_error(req, 400, None, Vec::new(), out);
            return None;
        };
        let now_unix = self.unix(req.now);
        match self
            .global
            .nonces
            .check(nonce.as_str(), req.tuple.client.ip(), now_unix)
        {
            NonceCheck::Valid => {}
            NonceCheck::Stale => {
                self.challenge(req, 438, out);
                return None;
            }
            NonceCheck::Invalid => {
                self.challenge(req, 401, out);
                return None;
            }
        }
        if realm.as_str() != self.cfg.realm {
            self.challenge(req, 401, out);
            return None;
        }
        // Bid-down protection (RFC 8489 §9.2.4): the PASSWORD-ALGORITHMS the
        // client echoes must be the list we sent, and the chosen one in it.
        let offered: Vec<AlgorithmId> =
            offered_algorithms().iter().map(|a| a.algorithm()).collect();
        let echoed = msg
            .get::<PasswordAlgorithms>()
            .and_then(|a| a.as_password_algorithms().ok())
            .map(|l| l.iter().map(|a| a.algorithm()).collect::<Vec<_>>());
        let chosen = msg
            .get::<PasswordAlgorithm>()
            .and_then(|a| a.as_password_algorithm().ok())
            .map(|a| a.algorithm());
        let algorithm = match (echoed, chosen) {
            (None, None) => AlgorithmId::MD5,
            (Some(list), chosen) if list == offered => {
                let alg = chosen.unwrap_or(AlgorithmId::MD5);
                if !offered.contains(&alg) {
                    self.reply_error(req, 400, None, Vec::new(), out);
                    return None;
                }
                alg
            }
            _ => {
                self.reply_error(req, 400, None, Vec::new(), out);
                return None;
            }
        };
        let password = match self.global.creds.password(username.as_str(), now_unix) {
            Ok(p) => p,
            Err(e) => {
                if e == CredentialError::Expired {
                    tracing::debug!(user = username.as_str(), "expired REST credentials");
                }
                self.challenge(req, 401, out);
                return None;
            }
        };
        let Some(key) =
            auth::long_term_key(username.as_str(), &self.cfg.realm, &password, algorithm)
        else {
            self.challenge(req, 401, out);
            return None;
        };
        let Some(kind) = auth::verify_integrity(req.raw, msg, &key) else {
            tracing::debug!(user = username.as_str(), client = %req.tuple.client, "bad MESSAGE-INTEGRITY");
            self.challenge(req, 401, out);
            return None;
        };
        Some(Authed {
            username: username.as_str().to_string(),
            key,
            kind,
        })
    }
}
