//! HTTP routes: the web client (embedded in the binary), the WebSocket upgrade, health,
//! `/metrics`, and the room API (`api.rs`).

use std::sync::Arc;

use axum::extract::{State, WebSocketUpgrade};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rust_embed::RustEmbed;
use sfu::SfuHandle;

use crate::auth::Auth;
use crate::metrics::Metrics;
use crate::session::{subscription_json, IceServerProvider, Session};
use crate::ws::{self, ConnectionLimits};

#[derive(RustEmbed)]
#[folder = "../web-client/"]
#[exclude = "tests/*"]
#[exclude = "*.md"]
struct WebClient;

#[derive(Clone)]
pub struct AppState {
    pub sfu: SfuHandle,
    pub ice_servers: IceServerProvider,
    /// API key and secret; `None` is development mode (joins need no token, no room API).
    pub auth: Option<Auth>,
    pub limits: ConnectionLimits,
    /// `/metrics`; the binary registers its TURN server's families here too.
    pub metrics: Arc<Metrics>,
    /// Set when the server shuts down: every WebSocket closes with 1001.
    pub shutting_down: Arc<tokio::sync::watch::Sender<bool>>,
}

impl AppState {
    /// Development mode with default limits.
    pub fn new(sfu: SfuHandle, ice_servers: IceServerProvider) -> Self {
        Self {
            metrics: Arc::new(Metrics::new(sfu.clone())),
            sfu,
            ice_servers,
            auth: None,
            limits: ConnectionLimits::default(),
            shutting_down: Arc::new(tokio::sync::watch::channel(false).0),
        }
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/ws", get(websocket))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/stats", get(api_stats))
        .merge(crate::api::routes())
        .fallback(get(static_file))
        .with_state(state)
}

async fn websocket(State(state): State<AppState>, upgrade: WebSocketUpgrade) -> Response {
    upgrade
        .max_message_size(ws::HARD_FRAME_LIMIT)
        .max_frame_size(ws::HARD_FRAME_LIMIT)
        .on_upgrade(move |socket| {
            let session = Session::new(state.sfu, state.ice_servers, state.auth);
            ws::run(
                socket,
                session,
                state.limits,
                state.metrics.signaling.clone(),
                state.shutting_down.subscribe(),
            )
        })
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn healthz(State(state): State<AppState>) -> Response {
    match state.sfu.stats().await {
        Ok(stats) => Json(serde_json::json!({
            "status": "ok",
            "rooms": stats.rooms,
            "participants": stats.participants,
        }))
        .into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

/// Every participant, and for each what it receives, at which layer, and why.
async fn api_stats(State(state): State<AppState>) -> Response {
    match state.sfu.all_stats().await {
        Ok(all) => {
            let participants: Vec<serde_json::Value> = all
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "participant_id": p.participant.to_string(),
                        "name": p.name,
                        "room": p.room,
                        "estimate_bps": p.estimate_bps,
                        "subscriptions": p.subscriptions.iter().map(subscription_json).collect::<Vec<_>>(),
                    })
                })
                .collect();
            Json(serde_json::json!({ "participants": participants })).into_response()
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

async fn static_file(uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    match WebClient::get(path) {
        Some(file) => (
            [
                (header::CONTENT_TYPE, file.metadata.mimetype().to_owned()),
                (header::CACHE_CONTROL, "no-cache".to_owned()),
            ],
            file.data,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}
