//! What WHIP (`whip.rs`) and WHEP (`whep.rs`) share: the session resources their `POST`s
//! create (`/whip/{room}/sessions/{id}`, `/whep/{room}/sessions/{id}`), with `PATCH` for
//! trickle ICE and ICE restarts and `DELETE` to end them (RFC 9725 4.3); admission with the
//! WebSocket join's token, drain and per-IP checks; CORS; and HTTP errors with a short text
//! body, each logged.
//!
//! A session is an SFU participant. It ends when the client deletes it, when the SFU removes
//! the participant (media timeout, operator, a WHEP viewer's publisher leaving), and when the
//! server drains or shuts down; a task per session watches for the last three.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sfu::{ParticipantId, SfuError, SfuEvent, SfuHandle};
use tokio::sync::{mpsc, watch};

use crate::client_ip::client_ip;
use crate::http::AppState;
use crate::ip_limits::ConnectionPermit;
use crate::protocol::{ErrorCode, IceServer, MAX_MESSAGE_BYTES};
use crate::sdpfrag::{self, IceCredentials, IceFragment};
use crate::session::{error_code, Admission, JoinRefusal};
use crate::PeerAddr;

pub const SDP: &str = "application/sdp";
pub const SDP_FRAGMENT: &str = "application/trickle-ice-sdpfrag";
/// Largest SDP offer or fragment accepted, as for a WebSocket message.
pub const MAX_BODY_BYTES: usize = MAX_MESSAGE_BYTES;
/// Seconds a client refused for a limit should wait before trying again.
const RETRY_AFTER_SECS: &str = "5";

/// Which protocol created a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Whip,
    Whep,
}

impl Protocol {
    pub fn path(self) -> &'static str {
        match self {
            Self::Whip => "whip",
            Self::Whep => "whep",
        }
    }
}

/// One live WHIP or WHEP session.
struct Resource {
    protocol: Protocol,
    room: String,
    participant: ParticipantId,
    /// The ICE session (PATCH, restarts) is changed by one request at a time.
    ice: Arc<tokio::sync::Mutex<IceSession>>,
    /// Counts against the client address's connection limit while the session lives.
    _permit: ConnectionPermit,
}

struct IceSession {
    /// The client's offer as last applied (with its newest ICE credentials): the base of
    /// the next restart's offer.
    offer: String,
    remote: IceCredentials,
    /// Entity tag of the current ICE session: our ufrag, quoted.
    etag: String,
}

/// Every live session, by resource id.
#[derive(Default)]
pub struct HttpSessions {
    by_id: Mutex<HashMap<String, Resource>>,
}

impl HttpSessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Resource>> {
        // Only inserts, lookups and removals happen under the lock: a panic cannot leave the
        // map half-changed.
        self.by_id.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Live sessions (for tests and logs).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An HTTP error: status, a short text body, and headers (`Retry-After`, `WWW-Authenticate`).
#[derive(Debug)]
pub struct HttpError {
    status: StatusCode,
    message: String,
    headers: Vec<(header::HeaderName, &'static str)>,
}

impl HttpError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    fn with_header(mut self, name: header::HeaderName, value: &'static str) -> Self {
        self.headers.push((name, value));
        self
    }

    /// A refused join, by its protocol error code.
    pub fn from_refusal(refusal: JoinRefusal) -> Self {
        let status = match refusal.code {
            ErrorCode::Unauthorized if refusal.wrong_room => StatusCode::FORBIDDEN,
            code => status_of(code),
        };
        let error = Self::new(status, refusal.message);
        if status == StatusCode::UNAUTHORIZED {
            return error.with_header(header::WWW_AUTHENTICATE, "Bearer");
        }
        error.with_retry_after_if_limited()
    }

    /// An SFU error, by the protocol's error code for it (or as what it says for WHEP).
    pub fn from_sfu(e: &SfuError) -> Self {
        let status = match e {
            SfuError::UnknownRoom(_) | SfuError::UnknownParticipant(_) => StatusCode::NOT_FOUND,
            SfuError::NothingToPlay(_) => StatusCode::CONFLICT,
            SfuError::SdpRejected(_) => StatusCode::UNPROCESSABLE_ENTITY,
            SfuError::Closed => StatusCode::SERVICE_UNAVAILABLE,
            other => status_of(error_code(other)),
        };
        Self::new(status, e.to_string()).with_retry_after_if_limited()
    }

    fn with_retry_after_if_limited(self) -> Self {
        if matches!(
            self.status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        ) {
            self.with_header(header::RETRY_AFTER, RETRY_AFTER_SECS)
        } else {
            self
        }
    }

    /// Log it (what was asked, and why it was refused) and make the response.
    pub fn log(self, what: &str, client: IpAddr) -> Response {
        if self.status.is_server_error() && self.status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(%client, status = self.status.as_u16(), error = %self.message, "{what} failed");
        } else {
            tracing::info!(%client, status = self.status.as_u16(), error = %self.message, "{what} refused");
        }
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{}\n", self.message),
        )
            .into_response();
        for (name, value) in self.headers {
            response
                .headers_mut()
                .insert(name, HeaderValue::from_static(value));
        }
        response
    }
}

/// The HTTP status of a protocol error code.
fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::InvalidRoom | ErrorCode::InvalidName | ErrorCode::InvalidSdp => {
            StatusCode::BAD_REQUEST
        }
        ErrorCode::InvalidCandidate | ErrorCode::BadJson => StatusCode::BAD_REQUEST,
        ErrorCode::TooManyTracks => StatusCode::UNPROCESSABLE_ENTITY,
        // The client's own address is over its limits: slow down.
        ErrorCode::TooManyJoins | ErrorCode::TooManyConnections | ErrorCode::RateLimited => {
            StatusCode::TOO_MANY_REQUESTS
        }
        // The server (or the room) is over its limits, or going away: try later or elsewhere.
        ErrorCode::RoomFull
        | ErrorCode::TooManyRooms
        | ErrorCode::ServerBusy
        | ErrorCode::ServerDraining => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::UnknownTrack | ErrorCode::UnknownSession => StatusCode::NOT_FOUND,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The parts of a `POST` both protocols check the same way.
pub struct Post {
    pub client: IpAddr,
    pub offer: String,
    pub name: String,
    pub permit: ConnectionPermit,
}

/// Check a WHIP or WHEP `POST` as a join: the client address's limits, the body (an SDP offer
/// of at most [`MAX_BODY_BYTES`]), the bearer token, and the grant the protocol `needs`.
pub async fn admit_post(
    state: &AppState,
    peer: PeerAddr,
    headers: &HeaderMap,
    body: Body,
    room: &str,
    name: String,
    protocol: Protocol,
) -> Result<Post, Response> {
    let client = client_ip(peer.0.ip(), headers, &state.trusted_proxies);
    let what = match protocol {
        Protocol::Whip => "WHIP publish",
        Protocol::Whep => "WHEP playback",
    };
    let refuse = |e: HttpError| e.log(what, client);
    let Some(permit) = state.ip_limits.connect(client) else {
        state.metrics.signaling.error(ErrorCode::TooManyConnections);
        return Err(refuse(
            HttpError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "your address has the most sessions allowed open",
            )
            .with_retry_after_if_limited(),
        ));
    };
    require_content_type(headers, SDP).map_err(refuse)?;
    let offer = read_body(body).await.map_err(refuse)?;
    let admission = Admission {
        drain: state.drain.clone(),
        client: permit,
    };
    let (name, permissions) =
        match admission.admit(state.auth.as_ref(), room, name, bearer_token(headers)) {
            Ok(admitted) => admitted,
            Err(refusal) => {
                state.metrics.signaling.error(refusal.code);
                return Err(refuse(HttpError::from_refusal(refusal)));
            }
        };
    let granted = match protocol {
        Protocol::Whip => permissions.can_publish,
        Protocol::Whep => permissions.can_subscribe,
    };
    if !granted {
        state.metrics.signaling.error(ErrorCode::Forbidden);
        let grant = match protocol {
            Protocol::Whip => "publish",
            Protocol::Whep => "subscribe",
        };
        return Err(refuse(HttpError::new(
            StatusCode::FORBIDDEN,
            format!("the access token lacks the {grant} grant"),
        )));
    }
    Ok(Post {
        client,
        offer,
        name,
        permit: admission.client,
    })
}

/// The token of `Authorization: Bearer <token>`.
fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

fn require_content_type(headers: &HeaderMap, wanted: &str) -> Result<(), HttpError> {
    let given = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = given.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case(wanted) {
        Ok(())
    } else {
        Err(HttpError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("the body must be {wanted}, not {given:?}"),
        ))
    }
}

/// The body as UTF-8, refused past [`MAX_BODY_BYTES`] without reading further.
async fn read_body(body: Body) -> Result<String, HttpError> {
    let bytes: Bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            HttpError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than {MAX_BODY_BYTES} bytes (or was cut off)"),
            )
        })?;
    String::from_utf8(bytes.to_vec())
        .map_err(|_| HttpError::new(StatusCode::BAD_REQUEST, "the body is not UTF-8 text"))
}

/// Audio and video m-lines of an SDP that are not rejected (port 0).
pub fn media_sections(sdp: &str) -> (usize, usize) {
    let mut counts = (0, 0);
    for m in sdp.lines().filter_map(|l| l.trim().strip_prefix("m=")) {
        let mut fields = m.split_whitespace();
        let (kind, port) = (fields.next(), fields.next());
        if port == Some("0") {
            continue;
        }
        match kind {
            Some("audio") => counts.0 += 1,
            Some("video") => counts.1 += 1,
            _ => {}
        }
    }
    counts
}

/// What a created session answers: `201 Created` with the SDP answer, its `Location`, the
/// ICE session's `ETag`, and a `Link` for each ICE server (RFC 9725 4.4 and 4.6).
pub struct Created {
    pub protocol: Protocol,
    pub room: String,
    pub participant: ParticipantId,
    pub answer: String,
    pub offer: String,
    pub events: mpsc::UnboundedReceiver<SfuEvent>,
    pub permit: ConnectionPermit,
}

/// Register the session, start its watcher, and answer the `POST`.
pub fn create(state: &AppState, created: Created) -> Response {
    let Created {
        protocol,
        room,
        participant,
        answer,
        offer,
        events,
        permit,
    } = created;
    let id: String = (0..16)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    let local = sdpfrag::sdp_credentials(&answer);
    let etag = format!("\"{}\"", local.map(|c| c.ufrag).unwrap_or_default());
    let remote = sdpfrag::sdp_credentials(&offer).unwrap_or(IceCredentials {
        ufrag: String::new(),
        pwd: String::new(),
    });
    let location = format!("/{}/{room}/sessions/{id}", protocol.path());
    state.http_sessions.lock().insert(
        id.clone(),
        Resource {
            protocol,
            room: room.clone(),
            participant,
            ice: Arc::new(tokio::sync::Mutex::new(IceSession {
                offer,
                remote,
                etag: etag.clone(),
            })),
            _permit: permit,
        },
    );
    tokio::spawn(watch_session(state.clone(), id, participant, events));
    tracing::info!(%participant, room, %location, "{} session created", protocol.path());
    let mut response = (
        StatusCode::CREATED,
        [
            (header::CONTENT_TYPE, SDP.to_owned()),
            (header::LOCATION, location),
            (header::ETAG, etag),
            (
                header::HeaderName::from_static("accept-patch"),
                SDP_FRAGMENT.to_owned(),
            ),
        ],
        answer,
    )
        .into_response();
    for server in (state.ice_servers)(participant) {
        for link in ice_server_links(&server) {
            if let Ok(value) = HeaderValue::from_str(&link) {
                response.headers_mut().append(header::LINK, value);
            }
        }
    }
    response
}

/// RFC 9725 4.6: one `Link` per ICE server URL, with its credentials.
pub fn ice_server_links(server: &IceServer) -> Vec<String> {
    let quoted = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    server
        .urls
        .iter()
        .map(|url| {
            let mut link = format!("<{url}>; rel=\"ice-server\"");
            if let (Some(user), Some(credential)) = (&server.username, &server.credential) {
                link.push_str(&format!(
                    "; username=\"{}\"; credential=\"{}\"; credential-type=\"password\"",
                    quoted(user),
                    quoted(credential)
                ));
            }
            link
        })
        .collect()
}

/// Until the session ends: the SFU removed the participant (or `DELETE` did, which closes
/// the channel), or the server drains or shuts down. Then the resource is gone (404).
async fn watch_session(
    state: AppState,
    id: String,
    participant: ParticipantId,
    mut events: mpsc::UnboundedReceiver<SfuEvent>,
) {
    let shutting_down = until_true(state.shutting_down.subscribe());
    let draining = until_true(state.drain.subscribe());
    tokio::pin!(shutting_down, draining);
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(SfuEvent::Removed { reason, .. }) => {
                    tracing::info!(%participant, ?reason, "session ended by the server");
                    break;
                }
                // Room events are for interactive participants; an HTTP session has no one to
                // tell them to.
                Some(_) => {}
                None => break,
            },
            _ = &mut shutting_down => {
                state.sfu.leave(participant);
                break;
            }
            _ = &mut draining => {
                tracing::info!(%participant, "session ended: the server is draining");
                state.sfu.leave(participant);
                break;
            }
        }
    }
    state.http_sessions.lock().remove(&id);
}

/// Resolves once the watched flag is true (never, if its sender is gone).
async fn until_true(mut flag: watch::Receiver<bool>) {
    if flag.wait_for(|on| *on).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The session `id` of `protocol` in `room`, or 404.
fn find(
    state: &AppState,
    protocol: Protocol,
    room: &str,
    id: &str,
) -> Result<(ParticipantId, Arc<tokio::sync::Mutex<IceSession>>), HttpError> {
    state
        .http_sessions
        .lock()
        .get(id)
        .filter(|r| r.protocol == protocol && r.room == room)
        .map(|r| (r.participant, r.ice.clone()))
        .ok_or_else(|| HttpError::new(StatusCode::NOT_FOUND, "no such session"))
}

/// `DELETE` on a session: it ends (200), as if the participant had left.
pub async fn delete(
    state: &AppState,
    protocol: Protocol,
    peer: PeerAddr,
    headers: &HeaderMap,
    Path((room, id)): Path<(String, String)>,
) -> Response {
    let client = client_ip(peer.0.ip(), headers, &state.trusted_proxies);
    let what = format!("{} DELETE", protocol.path());
    let resource = {
        let mut sessions = state.http_sessions.lock();
        match sessions.get(&id) {
            Some(r) if r.protocol == protocol && r.room == room => sessions.remove(&id),
            _ => None,
        }
    };
    let Some(resource) = resource else {
        return HttpError::new(StatusCode::NOT_FOUND, "no such session").log(&what, client);
    };
    state.sfu.leave(resource.participant);
    tracing::info!(participant = %resource.participant, room, %client, "{} session deleted", protocol.path());
    StatusCode::OK.into_response()
}

/// `PATCH` on a session (RFC 9725 4.3): new candidates (204), or new ICE credentials, which
/// restart ICE (200 with our new credentials and candidates, and a new `ETag`). `If-Match`
/// must name the current ICE session (or be `*`, as a restart's is): 428 without it, 412
/// when it names an older one.
pub async fn patch(
    state: &AppState,
    protocol: Protocol,
    peer: PeerAddr,
    headers: &HeaderMap,
    Path((room, id)): Path<(String, String)>,
    body: Body,
) -> Response {
    let client = client_ip(peer.0.ip(), headers, &state.trusted_proxies);
    let what = format!("{} PATCH", protocol.path());
    match patch_inner(state, protocol, headers, &room, &id, body).await {
        Ok(response) => response,
        Err(e) => e.log(&what, client),
    }
}

async fn patch_inner(
    state: &AppState,
    protocol: Protocol,
    headers: &HeaderMap,
    room: &str,
    id: &str,
    body: Body,
) -> Result<Response, HttpError> {
    let (participant, ice) = find(state, protocol, room, id)?;
    require_content_type(headers, SDP_FRAGMENT)?;
    let text = read_body(body).await?;
    let if_match = headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .ok_or_else(|| {
            HttpError::new(
                StatusCode::PRECONDITION_REQUIRED,
                "If-Match is required: the session's ETag, or \"*\" for an ICE restart",
            )
        })?;
    let fragment = IceFragment::parse(&text)
        .map_err(|e| HttpError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let mut ice = ice.lock().await;
    if if_match != "*" && if_match != ice.etag {
        return Err(HttpError::new(
            StatusCode::PRECONDITION_FAILED,
            format!(
                "If-Match {if_match} is not the current ICE session ({})",
                ice.etag
            ),
        ));
    }
    let restart = fragment
        .credentials
        .as_ref()
        .filter(|c| **c != ice.remote)
        .cloned();
    let sfu = &state.sfu;
    let Some(credentials) = restart else {
        add_candidates(sfu, participant, &fragment).await?;
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    // An ICE restart: what the client would offer if WHIP could renegotiate, answered as a
    // browser's restart is. A refused restart leaves the session as it was (RFC 9725 4.3.2).
    let offer = sdpfrag::restart_offer(&ice.offer, &credentials);
    let answer = sfu
        .accept_offer(participant, offer.clone())
        .await
        .map_err(|e| HttpError::from_sfu(&e))?;
    let local = sdpfrag::sdp_credentials(&answer).ok_or_else(|| {
        HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the restart's answer has no ICE credentials",
        )
    })?;
    ice.offer = offer;
    ice.remote = credentials;
    ice.etag = format!("\"{}\"", local.ufrag);
    add_candidates(sfu, participant, &fragment).await?;
    tracing::info!(%participant, room, "{} ICE restart", protocol.path());
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, SDP_FRAGMENT.to_owned()),
            (header::ETAG, ice.etag.clone()),
        ],
        sdpfrag::answer_fragment(&answer),
    )
        .into_response())
}

async fn add_candidates(
    sfu: &SfuHandle,
    participant: ParticipantId,
    fragment: &IceFragment,
) -> Result<(), HttpError> {
    for candidate in &fragment.candidates {
        match sfu
            .add_remote_candidate(participant, candidate.clone())
            .await
        {
            Ok(()) => {}
            // RFC 9725 4.3.1: a candidate we cannot use is discarded, the rest applied.
            Err(SfuError::InvalidCandidate(e)) => {
                tracing::debug!(%participant, error = %e, "trickled candidate discarded")
            }
            Err(e) => return Err(HttpError::from_sfu(&e)),
        }
    }
    Ok(())
}

/// RFC 9725 4.1: a `GET` on an endpoint or session has no representation: 204.
pub async fn no_content() -> StatusCode {
    StatusCode::NO_CONTENT
}

/// Any other method: 405, with the methods that are allowed.
pub async fn method_not_allowed(
    State(state): State<AppState>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<PeerAddr>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let client = client_ip(peer.0.ip(), &headers, &state.trusted_proxies);
    let is_session = uri.path().contains("/sessions/");
    let allow = if is_session {
        "PATCH, DELETE, GET, OPTIONS"
    } else {
        "POST, GET, OPTIONS"
    };
    let mut response = HttpError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed here: {allow}"),
    )
    .log(&format!("{method} {}", uri.path()), client);
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// CORS (RFC 9725 4.2 asks endpoints to answer preflights): a page on any origin may publish
/// or play, since what it may do is the bearer token's business, not the origin's (no
/// cookies are involved). Preflights (`OPTIONS`) get 204 with the methods and headers a
/// client uses; every response exposes the headers a client reads.
pub async fn cors(request: Request, next: Next) -> Response {
    let is_session = request.uri().path().contains("/sessions/");
    let mut response = if request.method() == Method::OPTIONS {
        let mut preflight = StatusCode::NO_CONTENT.into_response();
        let headers = preflight.headers_mut();
        if is_session {
            headers.insert(
                header::ALLOW,
                HeaderValue::from_static("PATCH, DELETE, GET, OPTIONS"),
            );
            headers.insert(
                header::HeaderName::from_static("accept-patch"),
                HeaderValue::from_static(SDP_FRAGMENT),
            );
        } else {
            headers.insert(
                header::ALLOW,
                HeaderValue::from_static("POST, GET, OPTIONS"),
            );
            headers.insert(
                header::HeaderName::from_static("accept-post"),
                HeaderValue::from_static(SDP),
            );
        }
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST, PATCH, DELETE, GET, OPTIONS"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("Authorization, Content-Type, If-Match"),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        );
        preflight
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Location, ETag, Link, Accept-Patch, Accept-Post"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ice_servers_become_link_headers() {
        let turn = IceServer {
            urls: vec![
                "turn:127.0.0.1:3478?transport=udp".into(),
                "turn:127.0.0.1:3478?transport=tcp".into(),
            ],
            username: Some("1700000000:Pab".into()),
            credential: Some("c\"x".into()),
        };
        let links = ice_server_links(&turn);
        assert_eq!(links.len(), 2);
        assert_eq!(
            links[0],
            "<turn:127.0.0.1:3478?transport=udp>; rel=\"ice-server\"; username=\"1700000000:Pab\"; credential=\"c\\\"x\"; credential-type=\"password\""
        );
        let stun = IceServer {
            urls: vec!["stun:127.0.0.1:3478".into()],
            username: None,
            credential: None,
        };
        assert_eq!(
            ice_server_links(&stun),
            vec!["<stun:127.0.0.1:3478>; rel=\"ice-server\"".to_owned()]
        );
    }

    #[test]
    fn counts_live_audio_and_video_sections() {
        let sdp =
            "v=0\r\nm=audio 9 X 111\r\nm=video 9 X 96\r\nm=video 0 X 96\r\nm=application 9 X\r\n";
        assert_eq!(media_sections(sdp), (1, 1));
        assert_eq!(media_sections(""), (0, 0));
    }

    #[test]
    fn bearer_tokens_are_read_case_insensitively() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc"),
        );
        assert_eq!(bearer_token(&headers).as_deref(), Some("abc"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer_token(&headers), None);
    }
}
