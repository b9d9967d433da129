//! # switchboard-turn: the STUN/TURN server bundled with Switchboard
//!
//! A TURN server (RFC 8656) and STUN server (RFC 8489) on the `stun-rs` codec,
//! meant to replace coturn for Switchboard users and to be embedded in
//! `switchboard serve`.
//!
//! ## Shape
//!
//! * [`Server`] is a sans-IO state machine: feed it client datagrams
//!   ([`Server::handle_client`]), peer datagrams ([`Server::handle_peer`]) and
//!   time ([`Server::handle_timeout`]); it appends [`Output`]s (datagrams to
//!   send, relay sockets opened or closed). All protocol logic and all state
//!   live there, so it is tested without sockets.
//! * [`TurnServer`] is the tokio edge: UDP and TCP listeners on one port, an
//!   optional TLS listener, one UDP socket per relay. It runs one `Server`
//!   per worker thread (a shard holding the allocations of the clients the
//!   kernel steers to that thread), so the relay path takes no lock; quotas,
//!   relay ports, reservations and the nonce key are shared through a
//!   [`Global`] touched only at Allocate and deletion.
//!
//! ## Embedding
//!
//! ```no_run
//! # async fn demo() -> Result<(), turn::TurnError> {
//! let mut config = turn::TurnConfig::default();
//! config.users.push(("alice".into(), "secret".into()));
//! config.auth_secret = Some("rest-api-secret".into());
//! let server = turn::TurnServer::bind(config).await?;
//! println!("TURN on {}", server.local_addr());
//! server.run(async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```
//!
//! For the credentials and URLs to hand to browsers, see
//! [`ephemeral_credentials`] and [`ice_urls`].
//!
//! ## Safety defaults
//!
//! Relaying to loopback, private, CGNAT, link-local, ULA, multicast and
//! broadcast addresses is refused in every spelling (see [`peer_filter`]);
//! nothing is stored for a client before it authenticates (nonces are
//! stateless, see `nonce.rs`); malformed input is dropped or answered with
//! 400, never a panic.

mod allocation;
mod auth;
mod channel_data;
mod config;
mod error;
mod global;
mod handlers;
mod ice;
mod listen;
mod nonce;
pub mod peer_filter;
mod ports;
mod response;
mod server;
mod timer;

#[cfg(test)]
mod tests;

pub use allocation::{FiveTuple, Transport};
pub use auth::{ephemeral_credentials, rest_password};
pub use config::{
    TurnConfig, CHANNEL_LIFETIME, DEFAULT_LIFETIME, DEFAULT_MAX_ALLOCATIONS_PER_IP, MAX_LIFETIME,
    PERMISSION_LIFETIME,
};
pub use error::TurnError;
pub use global::{Global, QuotaRefusal, Quotas};
pub use ice::ice_urls;
pub use listen::{run, TurnServer, TurnStats, SHUTDOWN_GRACE};
pub use peer_filter::{Cidr, PeerFilter};
pub use server::{Output, RelayBinder, Server};
