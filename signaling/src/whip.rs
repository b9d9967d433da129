//! WHIP ingest (RFC 9725): `POST /whip/{room}` with an SDP offer makes the client a publisher
//! in the room, like a browser participant that only sends: the others get
//! `participant_joined` and `track_published` and receive its audio and video (Opus, H.264,
//! VP8, simulcast when offered). The session resource it gets back is `http_session.rs`'s.
//! Also the routes of both WHIP and WHEP (`whep.rs`).

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use sfu::Permissions;

use crate::http::AppState;
use crate::http_session::{self, Created, HttpError, Protocol};
use crate::PeerAddr;

/// Display name of a WHIP publisher that names none (no `?name=`, no name in its token).
const DEFAULT_NAME: &str = "WHIP publisher";

/// `?name=`: the display name in development mode (a token's name wins).
#[derive(Debug, Deserialize)]
pub struct NameQuery {
    pub name: Option<String>,
}

/// The WHIP and WHEP endpoints and session resources, with CORS on all of them.
pub(crate) fn routes() -> Router<AppState> {
    let fallback = http_session::method_not_allowed;
    Router::new()
        .route(
            "/whip/{room}",
            post(publish)
                .get(http_session::no_content)
                .fallback(fallback),
        )
        .route(
            "/whip/{room}/sessions/{id}",
            get(http_session::no_content)
                .patch(patch)
                .delete(delete)
                .fallback(fallback),
        )
        .route(
            "/whep/{room}",
            post(crate::whep::play_default)
                .get(http_session::no_content)
                .fallback(fallback),
        )
        .route(
            "/whep/{room}/{participant}",
            post(crate::whep::play_participant)
                .get(http_session::no_content)
                .fallback(fallback),
        )
        .route(
            "/whep/{room}/sessions/{id}",
            get(http_session::no_content)
                .patch(crate::whep::patch)
                .delete(crate::whep::delete)
                .fallback(fallback),
        )
        .layer(axum::middleware::from_fn(http_session::cors))
}

/// `POST /whip/{room}`: publish into `room`.
async fn publish(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<PeerAddr>,
    Path(room): Path<String>,
    Query(query): Query<NameQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let name = query.name.unwrap_or_else(|| DEFAULT_NAME.to_owned());
    let post =
        match http_session::admit_post(&state, peer, &headers, body, &room, name, Protocol::Whip)
            .await
        {
            Ok(post) => post,
            Err(refused) => return refused,
        };
    let refuse = |e: HttpError| e.log("WHIP publish", post.client);
    // RFC 9725 4.5: one MediaStream of at most one audio and one video track; anything else
    // is refused whole rather than answered in part.
    let (audio, video) = http_session::media_sections(&post.offer);
    if audio + video == 0 || audio > 1 || video > 1 {
        return refuse(HttpError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "a WHIP offer sends one audio and/or one video track (this one has {audio} audio and {video} video m-lines)"
            ),
        ));
    }
    // It sends, and receives nothing: a WHIP client cannot take the server's offers that
    // would add the room's tracks.
    let permissions = Permissions {
        can_publish: true,
        can_subscribe: false,
    };
    let (info, answer, events) = match state
        .sfu
        .join_ingest(&room, &post.name, permissions, post.offer.clone())
        .await
    {
        Ok(joined) => joined,
        Err(e) => {
            state
                .metrics
                .signaling
                .error(crate::session::error_code(&e));
            return refuse(HttpError::from_sfu(&e));
        }
    };
    if http_session::media_sections(&answer) != (audio, video) {
        // Nothing we forward in some m-line (an H.265-only video, say): RFC 9725 asks for
        // the whole offer to be refused rather than a partial ingest.
        state.sfu.leave(info.participant);
        return refuse(HttpError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no codec in common for every m-line (audio: Opus; video: H.264 packetization-mode 1 or VP8)",
        ));
    }
    http_session::create(
        &state,
        Created {
            protocol: Protocol::Whip,
            room,
            participant: info.participant,
            answer,
            offer: post.offer,
            events,
            permit: post.permit,
        },
    )
}

async fn patch(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<PeerAddr>,
    path: Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    http_session::patch(&state, Protocol::Whip, peer, &headers, path, body).await
}

async fn delete(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<PeerAddr>,
    path: Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    http_session::delete(&state, Protocol::Whip, peer, &headers, path).await
}
