//! # Switchboard signaling
//!
//! The HTTP side of Switchboard: serves the web client, and speaks the JSON protocol of
//! `docs/protocol.md` over a WebSocket at `/ws`, driving an [`sfu::SfuHandle`].
//!
//! - `protocol.rs`: message types, error codes, validation of client input.
//! - `session.rs`: the per-connection state machine (fresh, joined, left).
//! - `ws.rs`: the WebSocket loop (frame rules, close codes).
//! - `http.rs`: routes, the embedded web client, `/healthz`, `/metrics`.
//! - `auth.rs`: access tokens (JWT, HS256); `api.rs`: the room API; `metrics.rs`: `/metrics`.
//! - `client_ip.rs`: the client's address (behind trusted proxies); `ip_limits.rs`: per-IP
//!   limits; `drain.rs`: taking the server out of service; `tls.rs`: HTTPS and WSS.
//! - `whip.rs`: WHIP ingest (`POST /whip/{room}`) and the routes of both; `whep.rs`: WHEP
//!   playback (`POST /whep/{room}[/{participant}]`); `http_session.rs`: the session resources
//!   they create (`PATCH`, `DELETE`), admission, CORS, HTTP errors; `sdpfrag.rs`: trickle ICE
//!   SDP fragments.

mod api;
pub mod auth;
pub mod client_ip;
pub mod drain;
mod http;
mod http_session;
pub mod ip_limits;
pub mod metrics;
pub mod protocol;
pub mod sdpfrag;
pub mod session;
pub mod tls;
mod whep;
mod whip;
mod ws;

pub use client_ip::IpNet;
pub use drain::Drain;
pub use http::AppState;
pub use prometheus_client;
pub use protocol::IceServer;
pub use session::IceServerProvider;
pub use ws::ConnectionLimits;

use std::future::Future;
use std::net::SocketAddr;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};

/// The TCP peer of a connection, for the `ConnectInfo` extractor, from any listener with
/// socket addresses (plain TCP or [`tls::TlsListener`]).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

impl Connected<IncomingStream<'_, tokio::net::TcpListener>> for PeerAddr {
    fn connect_info(stream: IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        Self(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, tls::TlsListener>> for PeerAddr {
    fn connect_info(stream: IncomingStream<'_, tls::TlsListener>) -> Self {
        Self(*stream.remote_addr())
    }
}

/// Serve HTTP and WebSocket signaling on `listener` (a `TcpListener`, or a
/// [`tls::TlsListener`] for HTTPS and WSS) until `shutdown` resolves.
pub async fn serve<L>(
    listener: L,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: Listener<Addr = SocketAddr>,
    PeerAddr: for<'a> Connected<IncomingStream<'a, L>>,
{
    // WebSocket sessions outlive axum's graceful shutdown; tell them to close.
    let shutting_down = state.shutting_down.clone();
    let shutdown = async move {
        shutdown.await;
        shutting_down.send_replace(true);
    };
    // The peer address is needed for per-IP limits and the trusted-proxy check.
    axum::serve(
        listener,
        http::router(state).into_make_service_with_connect_info::<PeerAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
