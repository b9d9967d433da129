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

mod api;
pub mod auth;
mod http;
pub mod metrics;
pub mod protocol;
pub mod session;
mod ws;

pub use http::{router, AppState};
pub use prometheus_client;
pub use protocol::IceServer;
pub use session::IceServerProvider;
pub use ws::ConnectionLimits;

use std::future::Future;

/// Serve HTTP and WebSocket signaling on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // WebSocket sessions outlive axum's graceful shutdown; tell them to close.
    let shutting_down = state.shutting_down.clone();
    let shutdown = async move {
        shutdown.await;
        shutting_down.send_replace(true);
    };
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
