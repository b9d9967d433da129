//! HTTP routes: the web client (embedded in the binary), the WebSocket upgrade, health,
//! `/metrics`, the room API (`api.rs`), and WHIP and WHEP (`whip.rs`, `whep.rs`).

use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message};
use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rust_embed::RustEmbed;
use sfu::SfuHandle;

use crate::auth::Auth;
use crate::client_ip::{client_ip, IpNet};
use crate::drain::Drain;
use crate::http_session::HttpSessions;
use crate::ip_limits::IpLimiter;
use crate::metrics::Metrics;
use crate::protocol::{ErrorCode, ServerMessage};
use crate::session::{subscription_json, Admission, IceServerProvider, Session};
use crate::ws::{self, ConnectionLimits};
use crate::PeerAddr;

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
    limits: ConnectionLimits,
    /// Per-client-IP counts under `limits`.
    pub(crate) ip_limits: Arc<IpLimiter>,
    /// Peers whose `X-Forwarded-For` names the client (reverse proxies).
    pub trusted_proxies: Arc<[IpNet]>,
    /// Set to take the server out of service.
    pub drain: Drain,
    /// `/metrics`; the binary registers its TURN server's families here too.
    pub metrics: Arc<Metrics>,
    /// Set when the server shuts down: every WebSocket closes with 1001.
    pub shutting_down: Arc<tokio::sync::watch::Sender<bool>>,
    /// WHIP and WHEP sessions, by resource id.
    pub http_sessions: Arc<HttpSessions>,
    /// The other nodes' participants for `/api/stats`, when this server is in a cluster.
    pub remote_stats: Option<RemoteStats>,
}

/// Where `/api/stats` gets the participants of the other nodes of a cluster.
pub type RemoteStats = Arc<
    dyn Fn() -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Vec<sfu::ParticipantStats>> + Send>,
        > + Send
        + Sync,
>;

impl AppState {
    /// Development mode with default limits.
    pub fn new(sfu: SfuHandle, ice_servers: IceServerProvider) -> Self {
        let drain = Drain::default();
        Self {
            metrics: Arc::new(Metrics::new(sfu.clone(), drain.clone())),
            sfu,
            ice_servers,
            auth: None,
            limits: ConnectionLimits::default(),
            ip_limits: Arc::new(limiter(&ConnectionLimits::default())),
            trusted_proxies: Arc::new([]),
            drain,
            shutting_down: Arc::new(tokio::sync::watch::channel(false).0),
            http_sessions: Arc::default(),
            remote_stats: None,
        }
    }

    /// Per-connection and per-IP limits (set before serving: the per-IP counts start over).
    pub fn set_limits(&mut self, limits: ConnectionLimits) {
        self.limits = limits;
        self.ip_limits = Arc::new(limiter(&limits));
    }
}

fn limiter(limits: &ConnectionLimits) -> IpLimiter {
    IpLimiter::new(
        limits.max_connections_per_ip,
        limits.max_joins_per_ip_per_minute,
    )
}

/// The routes; serve them with `ConnectInfo<PeerAddr>` (as [`crate::serve`] does).
pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/ws", get(websocket))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/stats", get(api_stats))
        .route("/api/drain", post(drain))
        .merge(crate::api::routes())
        .merge(crate::whip::routes())
        .fallback(get(static_file))
        .with_state(state)
}

async fn websocket(
    State(state): State<AppState>,
    ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let ip = client_ip(peer.ip(), &headers, &state.trusted_proxies);
    let permit = state.ip_limits.connect(ip);
    upgrade
        .max_message_size(ws::HARD_FRAME_LIMIT)
        .max_frame_size(ws::HARD_FRAME_LIMIT)
        .read_buffer_size(ws::READ_BUFFER_BYTES)
        .write_buffer_size(ws::WRITE_BUFFER_BYTES)
        .on_upgrade(move |mut socket| async move {
            let Some(permit) = permit else {
                // Refused after the upgrade rather than with an HTTP status, which a browser
                // does not show its page: the client reads why, like every other limit.
                state.metrics.signaling.error(ErrorCode::TooManyConnections);
                let max = state.limits.max_connections_per_ip;
                tracing::info!(client = %ip, %peer, max, "WebSocket refused: too many connections from this address (behind a reverse proxy, name it with --trusted-proxy)");
                let error = ServerMessage::error(
                    None,
                    ErrorCode::TooManyConnections,
                    format!("your address has the most connections allowed ({max}) open"),
                );
                let _ = socket.send(Message::Text(error.to_json().into())).await;
                let close = CloseFrame {
                    code: 1008,
                    reason: "too many connections from this address".into(),
                };
                let _ = socket.send(Message::Close(Some(close))).await;
                // The closing handshake, as `ws::run` does: a client that sent its join
                // already would otherwise get a reset before reading why.
                let handshake = async {
                    while let Some(Ok(frame)) = socket.recv().await {
                        if matches!(frame, Message::Close(_)) {
                            break;
                        }
                    }
                };
                let _ = tokio::time::timeout(ws::CLOSE_HANDSHAKE_WAIT, handshake).await;
                return;
            };
            let admission = Admission {
                drain: state.drain.clone(),
                client: permit,
            };
            let session = Session::new(state.sfu, state.ice_servers, state.auth, admission);
            ws::run(
                socket,
                session,
                state.limits,
                state.metrics.signaling.clone(),
                state.shutting_down.subscribe(),
                state.drain.subscribe(),
            )
            .await
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

/// For load balancers: 200 while in service; 503 while draining (so they send no one new)
/// or when the media workers are gone.
async fn healthz(State(state): State<AppState>) -> Response {
    match state.sfu.stats().await {
        Ok(stats) => {
            let draining = state.drain.is_draining();
            let status = if draining {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            };
            let body = Json(serde_json::json!({
                "status": if draining { "draining" } else { "ok" },
                "rooms": stats.rooms,
                "participants": stats.participants,
            }));
            (status, body).into_response()
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

/// `POST /api/drain`: take the server out of service (as SIGUSR1 does). It needs an admin
/// token for every room, since it ends every call here.
async fn drain(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let claims = match crate::api::authorize(&state, &headers, None) {
        Ok(claims) => claims,
        Err(refusal) => return refusal.into_response(),
    };
    if claims.room.is_some() {
        state.metrics.signaling.api_auth_failures.inc();
        tracing::info!(identity = %claims.sub, "drain refused: a token for one room");
        return crate::api::error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "draining ends every call on this server: it needs an admin token without a room",
        );
    }
    let started = state
        .drain
        .start(&format!("the drain API ({})", claims.sub));
    let participants = state.sfu.stats().await.map(|s| s.participants).ok();
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({
            "draining": true,
            "already": !started,
            "participants": participants,
        })),
    )
        .into_response()
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
    let remote = match &state.remote_stats {
        Some(remote) => remote().await,
        None => Vec::new(),
    };
    match state.sfu.all_stats().await {
        Ok(mut all) => {
            all.extend(remote);
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
