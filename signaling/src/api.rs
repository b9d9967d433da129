//! The room API (`/api/rooms`), authenticated with admin access tokens
//! (`Authorization: Bearer <token>`); see `docs/api.md`. Errors are JSON:
//! `{"error": "<code>", "message": "..."}` with 400, 401, 403, 404 or 503.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use sfu::{ParticipantId, SfuError, TrackId};

use crate::auth::Claims;
use crate::http::AppState;
use crate::session::participant_json;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/rooms", get(list_rooms))
        .route("/api/rooms/{room}", get(get_room).delete(close_room))
        .route(
            "/api/rooms/{room}/participants/{participant}",
            axum::routing::delete(remove_participant),
        )
        .route("/api/rooms/{room}/tracks/{track}/mute", post(mute_track))
}

/// A refusal: status, error code, message.
pub(crate) struct ApiError(StatusCode, &'static str, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error(self.0, self.1, self.2)
    }
}

pub(crate) fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"error": code, "message": message.into()})),
    )
        .into_response()
}

/// The bearer's claims, if its token is valid and grants admin over `room` (`None`: any
/// room it administers, for listing).
pub(crate) fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    room: Option<&str>,
) -> Result<Claims, ApiError> {
    let refuse = |status, code, message: &str| {
        state.metrics.signaling.api_auth_failures.inc();
        Err(ApiError(status, code, message.to_owned()))
    };
    let Some(auth) = &state.auth else {
        return refuse(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the room API needs an API secret (--api-secret); this server runs in development mode",
        );
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = token else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send an admin access token: Authorization: Bearer <token>",
        );
    };
    let claims = match auth.verify(token) {
        Ok(c) => c,
        Err(e) => return refuse(StatusCode::UNAUTHORIZED, "unauthorized", &e.to_string()),
    };
    let allowed = match room {
        Some(room) => claims.administers(room),
        None => claims.grants.admin,
    };
    if !allowed {
        tracing::info!(identity = %claims.sub, ?room, "room API refused: no admin grant for the room");
        return refuse(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the token has no admin grant for this room",
        );
    }
    Ok(claims)
}

fn sfu_failure(e: SfuError) -> Response {
    match e {
        SfuError::UnknownRoom(_) => error(StatusCode::NOT_FOUND, "not_found", e.to_string()),
        SfuError::UnknownParticipant(_) | SfuError::UnknownTrack(_) => {
            error(StatusCode::NOT_FOUND, "not_found", e.to_string())
        }
        other => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            other.to_string(),
        ),
    }
}

async fn list_rooms(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let claims = match authorize(&state, &headers, None) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    match state.sfu.rooms().await {
        Ok(rooms) => {
            let rooms: Vec<_> = rooms
                .iter()
                .filter(|r| claims.administers(&r.name))
                .map(|r| json!({"room": r.name, "participants": r.participants}))
                .collect();
            Json(json!({ "rooms": rooms })).into_response()
        }
        Err(e) => sfu_failure(e),
    }
}

async fn get_room(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(room): Path<String>,
) -> Response {
    if let Err(r) = authorize(&state, &headers, Some(&room)) {
        return r.into_response();
    }
    match state.sfu.room_participants(&room).await {
        Ok(participants) => Json(json!({
            "room": room,
            "participants": participants.iter().map(participant_json).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => sfu_failure(e),
    }
}

async fn close_room(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(room): Path<String>,
) -> Response {
    let claims = match authorize(&state, &headers, Some(&room)) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    match state.sfu.close_room(&room).await {
        Ok(removed) => {
            tracing::info!(room, by = %claims.sub, removed, "room closed via the room API");
            Json(json!({ "room": room, "removed": removed })).into_response()
        }
        Err(e) => sfu_failure(e),
    }
}

async fn remove_participant(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((room, participant)): Path<(String, String)>,
) -> Response {
    let claims = match authorize(&state, &headers, Some(&room)) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let Some(id) = ParticipantId::parse(&participant) else {
        return error(StatusCode::NOT_FOUND, "not_found", "no such participant");
    };
    match state.sfu.remove_participant(&room, id).await {
        Ok(()) => {
            tracing::info!(room, participant = %id, by = %claims.sub, "participant removed via the room API");
            Json(json!({ "room": room, "participant_id": participant, "removed": true }))
                .into_response()
        }
        Err(e) => sfu_failure(e),
    }
}

#[derive(Deserialize)]
struct MuteBody {
    muted: bool,
}

async fn mute_track(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((room, track)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let claims = match authorize(&state, &headers, Some(&room)) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let Ok(MuteBody { muted }) = serde_json::from_slice::<MuteBody>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the body must be JSON: {\"muted\": true|false}",
        );
    };
    let Some(id) = TrackId::parse(&track) else {
        return error(StatusCode::NOT_FOUND, "not_found", "no such track");
    };
    match state.sfu.mute_track(&room, id, muted).await {
        Ok(()) => {
            tracing::info!(room, track = %id, muted, by = %claims.sub, "track muted via the room API");
            Json(json!({ "room": room, "track_id": track, "muted": muted })).into_response()
        }
        Err(e) => sfu_failure(e),
    }
}
