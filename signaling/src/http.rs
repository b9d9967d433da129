//! HTTP routes: the web client (embedded in the binary), the WebSocket upgrade, health,
//! `/metrics`, and the room API (`api.rs`).

use std::sync::Arc;

use axum::extract::{State, WebSocketUpgrade};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rust_embed::RustEmbed;
use sfu::SfuHandle;

use crate::auth::Auth;
use crate::metrics::SignalingMetrics;
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
    pub metrics: Arc<SignalingMetrics>,
    /// More Prometheus text appended to `/metrics` (the binary adds its TURN server's).
    pub extra_metrics: Option<ExtraMetrics>,
    /// Set when the server shuts down: every WebSocket closes with 1001.
    pub shutting_down: Arc<tokio::sync::watch::Sender<bool>>,
}

/// Renders extra `/metrics` families, in Prometheus text format.
pub type ExtraMetrics = Arc<dyn Fn() -> String + Send + Sync>;

impl AppState {
    /// Development mode with default limits.
    pub fn new(sfu: SfuHandle, ice_servers: IceServerProvider) -> Self {
        Self {
            sfu,
            ice_servers,
            auth: None,
            limits: ConnectionLimits::default(),
            metrics: Arc::default(),
            extra_metrics: None,
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
                state.metrics,
                state.shutting_down.subscribe(),
            )
        })
}

async fn metrics(State(state): State<AppState>) -> Response {
    let mut body = crate::metrics::render(&state.sfu.metrics(), &state.metrics);
    if let Some(extra) = &state.extra_metrics {
        body.push_str(&extra());
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
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

/// Every participant, and for each what it receives, at which layer, and why. It names
/// everyone in every room, so with an API secret it wants an admin token like the room API
/// (one limited to a room sees that room); development mode keeps it open for debugging.
async fn api_stats(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let claims = if state.auth.is_some() {
        match crate::api::authorize(&state, &headers, None) {
            Ok(claims) => Some(claims),
            Err(refusal) => return refusal.into_response(),
        }
    } else {
        None
    };
    match state.sfu.all_stats().await {
        Ok(all) => {
            let participants: Vec<serde_json::Value> = all
                .iter()
                .filter(|p| claims.as_ref().is_none_or(|c| c.administers(&p.room)))
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
