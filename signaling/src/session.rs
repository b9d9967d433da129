//! The signaling state machine of one WebSocket: `Fresh` until a valid `join`, then `Joined`
//! until it leaves. It turns requests into SFU calls and SFU events into messages; the
//! WebSocket itself is `ws.rs`'s business.

use std::collections::BTreeMap;
use std::sync::Arc;

use sfu::{
    LayerReason, MediaKind, ParticipantId, ParticipantInfo, Permissions, RemovalReason, SfuError,
    SfuEvent, SfuHandle, SubscriptionStats, TrackId, TrackInfo, TrackSource,
};
use tokio::sync::mpsc;

use crate::auth::Auth;
use crate::drain::Drain;
use crate::ip_limits::ConnectionPermit;
use crate::protocol::{
    self, ActiveSpeakerJson, ClientMessage, ErrorCode, IceServer, OfferedTrackJson,
    ParticipantJson, PermissionsJson, Request, ServerMessage, SubscriptionJson, TrackJson,
    TrackSourceJson, MAX_VIDEO_DIMENSION,
};

/// Close code when the server removed the participant on its own (media timeouts).
pub const CLOSE_REMOVED_BY_SERVER: u16 = 4000;
/// Close code when an operator removed the participant (room API).
pub const CLOSE_REMOVED_BY_OPERATOR: u16 = 4001;
/// Close code when an operator closed the room (room API).
pub const CLOSE_ROOM_CLOSED: u16 = 4002;

/// Supplies the `ice_servers` a newly joined participant should use (TURN credentials).
pub type IceServerProvider = Arc<dyn Fn(ParticipantId) -> Vec<IceServer> + Send + Sync>;

/// What the WebSocket should do.
#[derive(Debug, PartialEq)]
pub enum Action {
    Send(ServerMessage),
    /// Close the connection with this code and reason (after sending what came before).
    Close(u16, String),
}

enum State {
    Fresh,
    Joined {
        participant: ParticipantId,
        /// Which of the session's connections this is (`Sfu::detach`).
        attachment: u32,
        events: mpsc::UnboundedReceiver<SfuEvent>,
    },
    Left,
}

/// What a join must pass besides its token: the server is not draining, and the client's
/// address has joins left this minute.
pub struct Admission {
    pub drain: Drain,
    /// This connection, counted against its client IP's limits while the session lives.
    pub client: ConnectionPermit,
}

/// Why [`Admission::admit`] refused a join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRefusal {
    pub code: ErrorCode,
    pub message: String,
    /// The token was valid, but not for this room: forbidden rather than unauthenticated.
    pub wrong_room: bool,
}

impl JoinRefusal {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            wrong_room: false,
        }
    }
}

impl Admission {
    /// What every join passes before the SFU sees it, WebSocket or WHIP/WHEP alike: the
    /// server is not draining, the room name is valid, the client's address has a join left
    /// this minute, and with an API secret a valid token for `room`. Returns the display name
    /// (the token's, if it has one) and what the participant may do.
    pub fn admit(
        &self,
        auth: Option<&Auth>,
        room: &str,
        name: String,
        token: Option<String>,
    ) -> Result<(String, Permissions), JoinRefusal> {
        let client = self.client.ip();
        if self.drain.is_draining() {
            tracing::info!(%client, "join refused: the server is draining");
            return Err(JoinRefusal::new(
                ErrorCode::ServerDraining,
                "this server is being taken out of service: join again (elsewhere, or here later)",
            ));
        }
        protocol::validate_room(room)
            .map_err(|message| JoinRefusal::new(ErrorCode::InvalidRoom, message))?;
        // Counted before the token is checked: a stream of joins with bad tokens from one
        // address is as much a flood as one with good ones.
        if !self.client.try_join() {
            tracing::info!(%client, room, "join refused: too many joins from this address this minute");
            return Err(JoinRefusal::new(
                ErrorCode::TooManyJoins,
                "too many joins from your address in the last minute: try again shortly",
            ));
        }
        let (name, permissions) = match auth {
            None => (name, Permissions::ALL),
            Some(auth) => {
                let Some(token) = token.filter(|t| !t.trim().is_empty()) else {
                    tracing::info!(%client, room, "join refused: no access token");
                    return Err(JoinRefusal::new(
                        ErrorCode::Unauthorized,
                        "this server needs an access token",
                    ));
                };
                let claims = auth.verify(&token).map_err(|e| {
                    tracing::info!(%client, room, error = %e, "join refused: bad access token");
                    JoinRefusal::new(ErrorCode::Unauthorized, e.to_string())
                })?;
                if claims.room.as_deref() != Some(room) {
                    tracing::info!(identity = %claims.sub, room, token_room = ?claims.room, "join refused: token for another room");
                    return Err(JoinRefusal {
                        wrong_room: true,
                        ..JoinRefusal::new(
                            ErrorCode::Unauthorized,
                            format!("the access token does not grant room {room:?}"),
                        )
                    });
                }
                tracing::debug!(identity = %claims.sub, room, grants = ?claims.grants, "access token accepted");
                let permissions = Permissions {
                    can_publish: claims.grants.publish,
                    can_subscribe: claims.grants.subscribe,
                };
                (claims.name.unwrap_or(name), permissions)
            }
        };
        protocol::validate_name(&name)
            .map_err(|message| JoinRefusal::new(ErrorCode::InvalidName, message))?;
        Ok((name, permissions))
    }
}

pub struct Session {
    sfu: SfuHandle,
    ice_servers: IceServerProvider,
    /// `None`: development mode, joins need no token and may do everything.
    auth: Option<Auth>,
    admission: Admission,
    state: State,
}

impl Session {
    pub fn new(
        sfu: SfuHandle,
        ice_servers: IceServerProvider,
        auth: Option<Auth>,
        admission: Admission,
    ) -> Self {
        Self {
            sfu,
            ice_servers,
            auth,
            admission,
            state: State::Fresh,
        }
    }

    /// The client's address (behind a trusted proxy, the one it reported).
    pub fn client_ip(&self) -> std::net::IpAddr {
        self.admission.client.ip()
    }

    /// A resume on a draining server: refused, so the client goes elsewhere (joins are
    /// refused by [`Admission::admit`]).
    fn refuse_if_draining(&self, id: Option<u64>) -> Option<Vec<Action>> {
        if !self.admission.drain.is_draining() {
            return None;
        }
        tracing::info!(client = %self.client_ip(), "join refused: the server is draining");
        Some(vec![Action::Send(ServerMessage::error(
            id,
            ErrorCode::ServerDraining,
            "this server is being taken out of service: join again (elsewhere, or here later)",
        ))])
    }

    pub fn participant(&self) -> Option<ParticipantId> {
        match &self.state {
            State::Joined { participant, .. } => Some(*participant),
            _ => None,
        }
    }

    /// The next SFU event for this participant; pending forever before joining. `None` when
    /// the session is no longer this connection's: removed, or resumed by another connection.
    pub async fn next_event(&mut self) -> Option<SfuEvent> {
        let event = match &mut self.state {
            State::Joined { events, .. } => events.recv().await,
            _ => std::future::pending().await,
        };
        if event.is_none() {
            self.state = State::Left;
        }
        event
    }

    /// The participant this connection still speaks for. The SFU drops our event channel when
    /// another connection resumes the session (or the participant is gone), so a connection
    /// left half-open by a network change cannot detach or end the session it lost, whenever
    /// it finally closes.
    fn own_participant(&self) -> Option<ParticipantId> {
        match &self.state {
            State::Joined {
                participant,
                events,
                ..
            } if !events.is_closed() => Some(*participant),
            _ => None,
        }
    }

    /// Handle one text frame from the client.
    pub async fn handle_text(&mut self, text: &str) -> Vec<Action> {
        let actions = self.handle_text_inner(text).await;
        if actions.iter().any(|a| matches!(a, Action::Close(..))) {
            self.end();
        }
        actions
    }

    async fn handle_text_inner(&mut self, text: &str) -> Vec<Action> {
        if text.len() > protocol::MAX_MESSAGE_BYTES {
            return fatal(
                None,
                ErrorCode::MessageTooLarge,
                format!(
                    "message of {} bytes exceeds the limit of {} bytes",
                    text.len(),
                    protocol::MAX_MESSAGE_BYTES
                ),
            );
        }
        match protocol::parse_request(text) {
            Ok(request) => self.handle_request(request).await,
            Err(e) => {
                tracing::info!(code = ?e.code, error = %e.message, "bad client message");
                vec![Action::Send(ServerMessage::error(e.id, e.code, e.message))]
            }
        }
    }

    async fn handle_request(&mut self, Request { id, message }: Request) -> Vec<Action> {
        let participant = self.participant();
        match (message, participant) {
            (ClientMessage::Ping, _) => vec![Action::Send(ServerMessage::Pong { id })],
            (ClientMessage::Join { .. }, Some(_)) => fatal(
                id,
                ErrorCode::AlreadyJoined,
                "this connection has already joined a room",
            ),
            (ClientMessage::Join { room, name, token }, None) => {
                self.join(id, room, name, token).await
            }
            (ClientMessage::Resume { .. }, Some(_)) => fatal(
                id,
                ErrorCode::AlreadyJoined,
                "this connection already has a session",
            ),
            (
                ClientMessage::Resume {
                    participant_id,
                    resume_token,
                },
                None,
            ) => self.resume(id, participant_id, resume_token).await,
            (ClientMessage::Leave, p) => {
                if let Some(p) = p {
                    self.sfu.leave(p);
                    tracing::info!(participant = %p, "left by request");
                }
                self.state = State::Left;
                vec![Action::Close(1000, "left".into())]
            }
            (_, None) => vec![Action::Send(ServerMessage::error(
                id,
                ErrorCode::NotJoined,
                "join a room first",
            ))],
            (ClientMessage::Offer { sdp }, Some(p)) => match self.sfu.accept_offer(p, sdp).await {
                Ok(sdp) => vec![Action::Send(ServerMessage::Answer { id, sdp })],
                Err(SfuError::OfferCollision) => {
                    tracing::debug!(participant = %p, "client offer ignored: the server's offer is pending");
                    Vec::new()
                }
                Err(e) => sfu_error(id, p, e),
            },
            (ClientMessage::Answer { sdp }, Some(p)) => {
                match self.sfu.accept_answer(p, sdp).await {
                    Ok(()) => Vec::new(),
                    Err(e) => sfu_error(id, p, e),
                }
            }
            (ClientMessage::Candidate { candidate }, Some(p)) => {
                let Some(candidate) = candidate.filter(|c| !c.trim().is_empty()) else {
                    return Vec::new(); // end of candidates
                };
                match self.sfu.add_remote_candidate(p, candidate).await {
                    Ok(()) => Vec::new(),
                    Err(e) => sfu_error(id, p, e),
                }
            }
            (ClientMessage::Mute { mid, muted }, Some(p)) => {
                match self.sfu.set_muted(p, mid, muted).await {
                    Ok(_) => Vec::new(),
                    Err(e) => sfu_error(id, p, e),
                }
            }
            (
                ClientMessage::VideoSize {
                    track_id,
                    width,
                    height,
                },
                Some(p),
            ) => {
                let Some(track) = TrackId::parse(&track_id) else {
                    return sfu_error(id, p, SfuError::UnknownTrack(track_id));
                };
                let (w, h) = (
                    width.min(MAX_VIDEO_DIMENSION),
                    height.min(MAX_VIDEO_DIMENSION),
                );
                match self.sfu.set_video_size(p, track, w, h).await {
                    Ok(()) => Vec::new(),
                    Err(e) => sfu_error(id, p, e),
                }
            }
            (ClientMessage::Pin { participant_id }, Some(p)) => {
                let target = match participant_id {
                    None => None,
                    Some(text) => match ParticipantId::parse(&text) {
                        Some(target) => Some(target),
                        None => {
                            return vec![Action::Send(ServerMessage::error(
                                id,
                                ErrorCode::UnknownParticipant,
                                format!(
                                    "pin: no participant {:?}",
                                    text.chars().take(40).collect::<String>()
                                ),
                            ))]
                        }
                    },
                };
                match self.sfu.set_pin(p, target).await {
                    Ok(()) => Vec::new(),
                    Err(e) => sfu_error(id, p, e),
                }
            }
            (ClientMessage::Data { to, payload }, Some(p)) => {
                self.send_data(id, p, to, payload).await
            }
            (ClientMessage::TrackSource { mid, source }, Some(p)) => {
                let source = match source {
                    TrackSourceJson::Camera => TrackSource::Camera,
                    TrackSourceJson::Screen => TrackSource::Screen,
                };
                match self.sfu.set_track_source(p, mid, source).await {
                    Ok(()) => Vec::new(),
                    Err(e) => sfu_error(id, p, e),
                }
            }
        }
    }

    /// A client's `data`: its recipients parsed, its payload carried as JSON text. The
    /// engine checks the grant, size and rate, and stamps the sender.
    async fn send_data(
        &mut self,
        id: Option<u64>,
        participant: ParticipantId,
        to: Option<Vec<String>>,
        payload: serde_json::Value,
    ) -> Vec<Action> {
        let to = match to {
            None => None,
            Some(ids) => {
                let mut parsed = Vec::with_capacity(ids.len());
                for text in &ids {
                    let Some(recipient) = ParticipantId::parse(text) else {
                        return vec![Action::Send(ServerMessage::error(
                            id,
                            ErrorCode::BadJson,
                            format!(
                                "data: \"to\" names no participant: {:?}",
                                text.chars().take(40).collect::<String>()
                            ),
                        ))];
                    };
                    parsed.push(recipient);
                }
                Some(parsed)
            }
        };
        let text: Arc<str> = payload.to_string().into();
        match self.sfu.send_data(participant, to, text).await {
            Ok(()) => Vec::new(),
            Err(e) => sfu_error(id, participant, e),
        }
    }

    async fn join(
        &mut self,
        id: Option<u64>,
        room: String,
        name: String,
        token: Option<String>,
    ) -> Vec<Action> {
        let (name, permissions) = match self.admission.admit(self.auth.as_ref(), &room, name, token)
        {
            Ok(admitted) => admitted,
            Err(refusal) if refusal.code == ErrorCode::Unauthorized => {
                return fatal(id, refusal.code, refusal.message)
            }
            Err(refusal) => {
                return vec![Action::Send(ServerMessage::error(
                    id,
                    refusal.code,
                    refusal.message,
                ))]
            }
        };
        match self.sfu.join(&room, &name, permissions).await {
            Ok((info, events)) => {
                let participant = info.participant;
                self.state = State::Joined {
                    participant,
                    attachment: info.attachment,
                    events,
                };
                vec![Action::Send(ServerMessage::Joined {
                    id,
                    participant_id: participant.to_string(),
                    room,
                    participants: info.others.iter().map(participant_json).collect(),
                    ice_servers: (self.ice_servers)(participant),
                    permissions: PermissionsJson {
                        publish: permissions.can_publish,
                        subscribe: permissions.can_subscribe,
                    },
                    resume_token: info.resume_token,
                })]
            }
            Err(e) => {
                let code = error_code(&e);
                if code == ErrorCode::Internal {
                    tracing::error!(room, error = %e, "join failed");
                } else {
                    tracing::info!(room, ?code, error = %e, "join refused");
                }
                vec![Action::Send(ServerMessage::error(id, code, e.to_string()))]
            }
        }
    }

    /// Turn an SFU event into what this client is told.
    pub fn handle_event(&mut self, event: SfuEvent) -> Vec<Action> {
        let message = match event {
            SfuEvent::Offer { sdp, tracks, .. } => ServerMessage::Offer {
                sdp,
                tracks: tracks
                    .into_iter()
                    .map(|t| {
                        (
                            t.mid,
                            OfferedTrackJson {
                                participant_id: t.publisher.to_string(),
                                track_id: t.track.to_string(),
                                kind: kind_str(t.kind),
                            },
                        )
                    })
                    .collect::<BTreeMap<_, _>>(),
            },
            SfuEvent::ParticipantJoined { participant, .. } => ServerMessage::ParticipantJoined {
                participant: participant_json(&participant),
            },
            SfuEvent::ParticipantLeft { participant, .. } => ServerMessage::ParticipantLeft {
                participant_id: participant.to_string(),
            },
            SfuEvent::TrackPublished {
                participant, track, ..
            } => ServerMessage::TrackPublished {
                participant_id: participant.to_string(),
                track: track_json(&track),
            },
            SfuEvent::TrackUnpublished {
                participant, track, ..
            } => ServerMessage::TrackUnpublished {
                participant_id: participant.to_string(),
                track_id: track.to_string(),
            },
            SfuEvent::TrackMuted {
                participant,
                track,
                muted,
                ..
            } => ServerMessage::TrackMuted {
                participant_id: participant.to_string(),
                track_id: track.to_string(),
                muted,
            },
            SfuEvent::VideoPaused {
                participant,
                track,
                paused,
                reason,
                ..
            } => ServerMessage::VideoPaused {
                participant_id: participant.to_string(),
                track_id: track.to_string(),
                paused,
                reason: paused.then_some(match reason {
                    LayerReason::Hidden => "hidden",
                    _ => "bandwidth",
                }),
            },
            SfuEvent::CodecUnsupported {
                participant,
                track,
                codec,
                ..
            } => ServerMessage::CodecUnsupported {
                participant_id: participant.to_string(),
                track_id: track.to_string(),
                codec,
            },
            SfuEvent::PublisherLayers { mid, active, .. } => {
                ServerMessage::PublisherLayers { mid, active }
            }
            SfuEvent::Stats {
                estimate_bps,
                subscriptions,
                ..
            } => ServerMessage::Stats {
                estimate_bps,
                subscriptions: subscriptions.iter().map(subscription_json).collect(),
            },
            SfuEvent::ActiveSpeakers { speakers, .. } => ServerMessage::ActiveSpeakers {
                speakers: speakers
                    .iter()
                    .map(|s| ActiveSpeakerJson {
                        participant_id: s.participant.to_string(),
                        level: s.level,
                    })
                    .collect(),
            },
            SfuEvent::Data { data, .. } => ServerMessage::Data {
                participant_id: data.from.to_string(),
                name: data.name,
                to: data
                    .to
                    .map(|ids| ids.iter().map(ToString::to_string).collect()),
                // Our signaling sends JSON text; an embedder's plain text arrives as a string.
                payload: serde_json::from_str(&data.payload)
                    .unwrap_or_else(|_| serde_json::Value::String(data.payload.to_string())),
            },
            SfuEvent::Connected { .. } => return Vec::new(),
            SfuEvent::Removed { reason, .. } => {
                self.state = State::Left;
                let (code, why) = match reason {
                    RemovalReason::Removed => (
                        CLOSE_REMOVED_BY_OPERATOR,
                        "removed by an operator".to_owned(),
                    ),
                    RemovalReason::RoomClosed => {
                        (CLOSE_ROOM_CLOSED, "the room was closed".to_owned())
                    }
                    other => (
                        CLOSE_REMOVED_BY_SERVER,
                        format!("removed by the server: {other:?}"),
                    ),
                };
                return vec![Action::Close(code, why)];
            }
        };
        vec![Action::Send(message)]
    }

    /// Take over a session whose signaling connection dropped.
    async fn resume(
        &mut self,
        id: Option<u64>,
        participant_id: String,
        resume_token: String,
    ) -> Vec<Action> {
        if let Some(refusal) = self.refuse_if_draining(id) {
            return refusal;
        }
        let Some(participant) = ParticipantId::parse(&participant_id) else {
            return vec![Action::Send(ServerMessage::error(
                id,
                ErrorCode::UnknownSession,
                "no such session: join again",
            ))];
        };
        match self.sfu.resume(participant, resume_token).await {
            Ok((info, events)) => {
                self.state = State::Joined {
                    participant,
                    attachment: info.attachment,
                    events,
                };
                let mut actions = vec![Action::Send(ServerMessage::Resumed {
                    id,
                    participant_id,
                    participants: info.others.iter().map(participant_json).collect(),
                })];
                if let Some((sdp, tracks)) = info.pending_offer {
                    actions.extend(self.handle_event(SfuEvent::Offer {
                        to: participant,
                        sdp,
                        tracks,
                    }));
                }
                actions
            }
            Err(e) => {
                tracing::info!(%participant, error = %e, "resume refused");
                vec![Action::Send(ServerMessage::error(
                    id,
                    ErrorCode::UnknownSession,
                    "no such session (it ended, or the token is wrong): join again",
                ))]
            }
        }
    }

    /// The connection dropped without a `leave`: keep the session for a while, so the client
    /// can resume it over a new connection without the others seeing it leave.
    pub fn close(&mut self) {
        if let (Some(p), State::Joined { attachment, .. }) = (self.own_participant(), &self.state) {
            tracing::info!(participant = %p, "signaling closed without leave");
            self.sfu.detach(p, *attachment);
        }
        self.state = State::Left;
    }

    /// The session ends with the connection: the client closed it, or the server did on
    /// purpose (a protocol violation).
    pub fn end(&mut self) {
        if let Some(p) = self.own_participant() {
            tracing::info!(participant = %p, "session ended by the server");
            self.sfu.leave(p);
        }
        self.state = State::Left;
    }
}

fn fatal(id: Option<u64>, code: ErrorCode, message: impl Into<String>) -> Vec<Action> {
    let message = message.into();
    tracing::info!(?code, %message, "closing connection after protocol violation");
    let close = code.close_code().unwrap_or(1008);
    vec![
        Action::Send(ServerMessage::error(id, code, message.clone())),
        Action::Close(close, message.chars().take(100).collect()),
    ]
}

/// The protocol's error code for an SFU error.
pub fn error_code(e: &SfuError) -> ErrorCode {
    match e {
        SfuError::InvalidSdp(_)
        | SfuError::SdpRejected(_)
        | SfuError::NoPendingOffer
        | SfuError::OfferCollision => ErrorCode::InvalidSdp,
        SfuError::InvalidCandidate(_) => ErrorCode::InvalidCandidate,
        SfuError::UnknownTrack(_) => ErrorCode::UnknownTrack,
        SfuError::RoomFull(_) => ErrorCode::RoomFull,
        SfuError::TooManyRooms(_) => ErrorCode::TooManyRooms,
        SfuError::TooManyPendingJoins(_) => ErrorCode::ServerBusy,
        SfuError::TooManyTracks(_) => ErrorCode::TooManyTracks,
        SfuError::PublishNotAllowed | SfuError::MutedByOperator(_) | SfuError::DataNotAllowed => {
            ErrorCode::Forbidden
        }
        SfuError::DataTooLarge { .. } => ErrorCode::PayloadTooLarge,
        SfuError::DataRateLimited { .. } => ErrorCode::RateLimited,
        SfuError::NotPinnable(_) => ErrorCode::UnknownParticipant,
        SfuError::UnknownSession => ErrorCode::UnknownSession,
        SfuError::UnknownParticipant(_)
        | SfuError::UnknownRoom(_)
        | SfuError::NothingToPlay(_)
        | SfuError::Closed => ErrorCode::Internal,
    }
}

fn sfu_error(id: Option<u64>, participant: ParticipantId, e: SfuError) -> Vec<Action> {
    let code = error_code(&e);
    tracing::info!(%participant, ?code, error = %e, "request failed");
    vec![Action::Send(ServerMessage::error(id, code, e.to_string()))]
}

pub fn subscription_json(s: &SubscriptionStats) -> SubscriptionJson {
    SubscriptionJson {
        participant_id: s.publisher.to_string(),
        track_id: s.track.to_string(),
        kind: kind_str(s.kind),
        current_layer: s.current_layer.clone(),
        target_layer: s.target_layer.clone(),
        current_temporal: s.current_temporal,
        target_temporal: s.target_temporal,
        paused: s.paused,
        reason: s.reason,
        pinned: s.pinned,
        bitrate_bps: s.bitrate_bps,
        layer_changes_last_minute: s.layer_changes_last_minute,
    }
}

fn kind_str(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Audio => "audio",
        MediaKind::Video => "video",
    }
}

fn track_json(t: &TrackInfo) -> TrackJson {
    TrackJson {
        track_id: t.id.to_string(),
        kind: kind_str(t.kind),
        muted: t.muted,
    }
}

pub fn participant_json(p: &ParticipantInfo) -> ParticipantJson {
    ParticipantJson {
        participant_id: p.id.to_string(),
        name: p.name.clone(),
        tracks: p.tracks.iter().map(track_json).collect(),
    }
}
