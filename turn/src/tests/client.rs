//! Test harness: fake binder, request builder, response reader.

use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use stun_rs::attributes::stun::{
    ErrorCode, MessageIntegrity, MessageIntegritySha256, Nonce, Realm, UserName,
};
use stun_rs::attributes::turn::{LifeTime, RequestedTrasport, XorRelayedAddress};
use stun_rs::attributes::StunAttribute;
use stun_rs::{
    methods, Algorithm, AlgorithmId, HMACKey, MessageClass, MessageDecoderBuilder,
    MessageEncoderBuilder, MessageMethod, StunMessage, StunMessageBuilder,
};

use crate::allocation::{FiveTuple, Transport};
use crate::config::TurnConfig;
use crate::server::{Output, RelayBinder, Server};

/// Binder that "binds" by recording the address; ports in `busy` fail.
#[derive(Debug, Default)]
pub struct FakeBinder {
    pub busy: HashSet<u16>,
}

impl RelayBinder for FakeBinder {
    type Handle = SocketAddr;
    fn bind(&mut self, addr: SocketAddr) -> io::Result<(SocketAddr, SocketAddr)> {
        if self.busy.contains(&addr.port()) {
            return Err(io::Error::new(io::ErrorKind::AddrInUse, "busy"));
        }
        Ok((addr, addr))
    }
}

pub const REALM: &str = "test.realm";
pub const USER: &str = "alice";
pub const PASS: &str = "wonderland";
pub const SECRET: &str = "rest-secret";

pub fn config() -> TurnConfig {
    TurnConfig {
        listen: "192.0.2.10:3478".parse().expect("addr"),
        relay_ip: "192.0.2.10".parse().expect("ip"),
        realm: REALM.into(),
        users: vec![(USER.into(), PASS.into()), ("bob".into(), "builder".into())],
        auth_secret: Some(SECRET.into()),
        port_range: 50000..=50999,
        ..TurnConfig::default()
    }
}

pub struct Harness {
    pub srv: Server<FakeBinder>,
    pub t0: Instant,
    pub wall0: u64,
}

impl Harness {
    pub fn new(cfg: TurnConfig) -> Self {
        let t0 = Instant::now();
        let wall = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        Harness {
            srv: Server::with_clock(
                cfg.clone(),
                FakeBinder::default(),
                std::sync::Arc::new(crate::global::Global::new(&cfg)),
                t0,
                wall,
            ),
            t0,
            wall0: 1_700_000_000,
        }
    }

    /// Another shard of the same server: its own allocation table, the same
    /// `Global` (quotas, ports, reservations, nonce key) and clock.
    pub fn sibling(&self) -> Harness {
        let wall = UNIX_EPOCH + Duration::from_secs(self.wall0);
        Harness {
            srv: Server::with_clock(
                self.srv.cfg.clone(),
                FakeBinder::default(),
                self.srv.global().clone(),
                self.t0,
                wall,
            ),
            t0: self.t0,
            wall0: self.wall0,
        }
    }

    pub fn at(&self, secs: u64) -> Instant {
        self.t0 + Duration::from_secs(secs)
    }

    pub fn send(&mut self, tuple: FiveTuple, data: &[u8], now: Instant) -> Vec<Output<SocketAddr>> {
        let mut out = Vec::new();
        self.srv.handle_client(tuple, data, now, &mut out);
        out
    }

    /// Sends and returns the single response to the client, decoded.
    pub fn request(&mut self, tuple: FiveTuple, data: &[u8], now: Instant) -> StunMessage {
        let out = self.send(tuple, data, now);
        response(&out).expect("a response")
    }
}

pub fn udp(client_port: u16) -> FiveTuple {
    FiveTuple {
        transport: Transport::Udp,
        client: SocketAddr::new("198.51.100.7".parse().expect("ip"), client_port),
        server: "192.0.2.10:3478".parse().expect("addr"),
    }
}

pub fn tcp(client_port: u16) -> FiveTuple {
    FiveTuple {
        transport: Transport::Tcp,
        ..udp(client_port)
    }
}

/// How a request is signed.
#[derive(Clone)]
pub struct Creds {
    pub user: String,
    pub pass: String,
    pub realm: String,
    pub nonce: String,
    pub alg: AlgorithmId,
    pub sha256: bool,
}

impl Creds {
    pub fn new(user: &str, pass: &str, nonce: &str) -> Self {
        Creds {
            user: user.into(),
            pass: pass.into(),
            realm: REALM.into(),
            nonce: nonce.into(),
            alg: AlgorithmId::MD5,
            sha256: false,
        }
    }
}

pub fn build(
    method: MessageMethod,
    class: MessageClass,
    attrs: Vec<StunAttribute>,
    creds: Option<&Creds>,
) -> Vec<u8> {
    let mut b = StunMessageBuilder::new(method, class);
    if let Some(c) = creds {
        b = b
            .with_attribute(UserName::new(&c.user).expect("user"))
            .with_attribute(Realm::new(&c.realm).expect("realm"))
            .with_attribute(Nonce::new(&c.nonce).expect("nonce"));
    }
    for a in attrs {
        b = b.with_attribute(a);
    }
    if let Some(c) = creds {
        let key = HMACKey::new_long_term(&c.user, &c.realm, &c.pass, Algorithm::from(c.alg))
            .expect("key");
        if c.sha256 {
            b = b.with_attribute(MessageIntegritySha256::new(key));
        } else {
            b = b.with_attribute(MessageIntegrity::new(key));
        }
    }
    let msg = b.build();
    let mut buf = vec![0u8; 2048];
    let n = MessageEncoderBuilder::default()
        .build()
        .encode(&mut buf, &msg)
        .expect("encode");
    buf.truncate(n);
    buf
}

pub fn decode(data: &[u8]) -> StunMessage {
    MessageDecoderBuilder::default()
        .build()
        .decode(data)
        .expect("decodable response")
        .0
}

pub fn response(out: &[Output<SocketAddr>]) -> Option<StunMessage> {
    out.iter().find_map(|o| match o {
        Output::ToClient { data, .. } => Some(decode(data)),
        _ => None,
    })
}

pub fn error_code(msg: &StunMessage) -> Option<u16> {
    msg.get::<ErrorCode>()
        .and_then(|a| a.as_error_code().ok())
        .map(|e| e.error_code().error_code())
}

pub fn nonce_of(msg: &StunMessage) -> String {
    msg.get::<Nonce>()
        .and_then(|a| a.as_nonce().ok())
        .expect("nonce")
        .as_str()
        .to_string()
}

pub fn udp_transport() -> StunAttribute {
    RequestedTrasport::from(stun_rs::protocols::UDP).into()
}

pub fn lifetime_of(msg: &StunMessage) -> Option<u32> {
    msg.get::<LifeTime>()
        .and_then(|a| a.as_life_time().ok())
        .map(|l| *l.as_ref())
}

pub fn relayed_of(msg: &StunMessage) -> SocketAddr {
    *msg.get::<XorRelayedAddress>()
        .and_then(|a| a.as_xor_relayed_address().ok())
        .expect("relayed address")
        .socket_address()
}

impl Harness {
    /// Gets a nonce with an unauthenticated Allocate (the usual first step).
    pub fn nonce(&mut self, tuple: FiveTuple, now: Instant) -> String {
        let req = build(
            methods::ALLOCATE,
            MessageClass::Request,
            vec![udp_transport()],
            None,
        );
        let resp = self.request(tuple, &req, now);
        assert_eq!(error_code(&resp), Some(401));
        nonce_of(&resp)
    }

    /// Authenticated request as `user`.
    pub fn authed(
        &mut self,
        tuple: FiveTuple,
        method: MessageMethod,
        attrs: Vec<StunAttribute>,
        user: &str,
        pass: &str,
        now: Instant,
    ) -> StunMessage {
        let nonce = self.nonce(tuple, now);
        let req = build(
            method,
            MessageClass::Request,
            attrs,
            Some(&Creds::new(user, pass, &nonce)),
        );
        self.request(tuple, &req, now)
    }

    /// Allocates for alice on `tuple`; returns the relayed address.
    pub fn allocate(&mut self, tuple: FiveTuple, now: Instant) -> SocketAddr {
        let resp = self.authed(
            tuple,
            methods::ALLOCATE,
            vec![udp_transport()],
            USER,
            PASS,
            now,
        );
        assert_eq!(
            resp.class(),
            MessageClass::SuccessResponse,
            "{:?}",
            error_code(&resp)
        );
        relayed_of(&resp)
    }
}

pub fn wall(h: &Harness) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(h.wall0)
}
