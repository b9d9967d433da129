//! WHEP playback: `POST /whep/{room}` (or `/whep/{room}/{participant_id}`) with a recvonly
//! SDP offer of one audio and one video m-line. The answer fills them with one publisher's
//! tracks, since WHEP cannot renegotiate: the named participant, or by default whoever
//! shares a screen, else the earliest joined participant publishing video, else audio. The
//! viewer is a subscriber like any other (layer chosen from its bandwidth estimate, counted
//! in limits, metrics and `/api/stats`), and its session ends when that publisher leaves.
//! The session resource is `http_session.rs`'s.

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use sfu::{ParticipantId, Permissions, PlaybackJoin};

use crate::http::AppState;
use crate::http_session::{self, Created, HttpError, Protocol};
use crate::whip::NameQuery;
use crate::PeerAddr;

/// Display name of a WHEP viewer that names none.
const DEFAULT_NAME: &str = "WHEP viewer";

/// `POST /whep/{room}`: play the room's default publisher.
pub(crate) async fn play_default(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<PeerAddr>,
    Path(room): Path<String>,
    Query(query): Query<NameQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    play(state, peer, room, None, query, headers, body).await
}

/// `POST /whep/{room}/{participant}`: play that participant.
pub(crate) async fn play_participant(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<PeerAddr>,
    Path((room, participant)): Path<(String, String)>,
    Query(query): Query<NameQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    play(state, peer, room, Some(participant), query, headers, body).await
}

async fn play(
    state: AppState,
    peer: PeerAddr,
    room: String,
    participant: Option<String>,
    query: NameQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let name = query.name.unwrap_or_else(|| DEFAULT_NAME.to_owned());
    let post =
        match http_session::admit_post(&state, peer, &headers, body, &room, name, Protocol::Whep)
            .await
        {
            Ok(post) => post,
            Err(refused) => return refused,
        };
    let refuse = |e: HttpError| e.log("WHEP playback", post.client);
    let publisher = match participant.as_deref().map(ParticipantId::parse) {
        None => None,
        Some(Some(id)) => Some(id),
        Some(None) => {
            return refuse(HttpError::new(
                StatusCode::NOT_FOUND,
                "no such participant in this room",
            ))
        }
    };
    let (audio, video) = http_session::media_sections(&post.offer);
    if audio + video == 0 || audio > 1 || video > 1 {
        return refuse(HttpError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("a WHEP offer receives one audio and/or one video track (this one has {audio} audio and {video} video m-lines)"),
        ));
    }
    if sfu::policy::sending_sections(&post.offer) > 0 {
        return refuse(HttpError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "a WHEP offer only receives: make its m-lines recvonly",
        ));
    }
    let permissions = Permissions {
        can_publish: false,
        can_subscribe: true,
    };
    let joined = state
        .sfu
        .join_playback(
            &room,
            &post.name,
            permissions,
            publisher,
            post.offer.clone(),
        )
        .await;
    let PlaybackJoin {
        info,
        answer,
        publisher,
        events,
    } = match joined {
        Ok(joined) => joined,
        Err(e) => {
            state
                .metrics
                .signaling
                .error(crate::session::error_code(&e));
            return refuse(HttpError::from_sfu(&e));
        }
    };
    tracing::info!(participant = %info.participant, %publisher, room, "WHEP viewer follows a publisher");
    http_session::create(
        &state,
        Created {
            protocol: Protocol::Whep,
            room,
            participant: info.participant,
            answer,
            offer: post.offer,
            events,
            permit: post.permit,
        },
    )
}

pub(crate) async fn patch(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<PeerAddr>,
    path: Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    http_session::patch(&state, Protocol::Whep, peer, &headers, path, body).await
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<PeerAddr>,
    path: Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    http_session::delete(&state, Protocol::Whep, peer, &headers, path).await
}
