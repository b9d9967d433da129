//! The JSON protocol of docs/protocol.md: message types, error codes, and the validation of
//! everything a client sends. Parsing never panics and classifies every failure.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Largest text frame accepted; larger ones close the connection with 1009.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
const MAX_ROOM_CHARS: usize = 64;
const MAX_NAME_CHARS: usize = 64;

#[derive(Debug, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    Join {
        room: String,
        name: String,
        #[serde(default)]
        token: Option<String>,
    },
    Offer {
        sdp: String,
    },
    Answer {
        sdp: String,
    },
    Candidate {
        #[serde(default)]
        candidate: Option<String>,
    },
    Mute {
        mid: String,
        muted: bool,
    },
    VideoSize {
        track_id: String,
        width: u32,
        height: u32,
    },
    TrackSource {
        mid: String,
        source: TrackSourceJson,
    },
    Resume {
        participant_id: String,
        resume_token: String,
    },
    /// Application data for the room, or for the participants in `to`.
    Data {
        #[serde(default)]
        to: Option<Vec<String>>,
        payload: Value,
    },
    /// Serve this participant's videos first (`None`: unpin).
    Pin {
        #[serde(default)]
        participant_id: Option<String>,
    },
    Leave,
    Ping,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TrackSourceJson {
    Camera,
    Screen,
}

const CLIENT_TYPES: &[&str] = &[
    "join",
    "offer",
    "answer",
    "candidate",
    "mute",
    "video_size",
    "track_source",
    "resume",
    "data",
    "pin",
    "leave",
    "ping",
];

/// Reported video sizes above this are clamped: no screen is larger, and the allocator only
/// compares sizes.
pub const MAX_VIDEO_DIMENSION: u32 = 16_384;

/// A parsed request: its optional request id and the message.
#[derive(Debug, PartialEq)]
pub struct Request {
    pub id: Option<u64>,
    pub message: ClientMessage,
}

/// Why a text frame is not a valid request; `id` is kept when it could be read, so the error
/// can be matched to the request.
#[derive(Debug, PartialEq)]
pub struct ParseError {
    pub id: Option<u64>,
    pub code: ErrorCode,
    pub message: String,
}

pub fn parse_request(text: &str) -> Result<Request, ParseError> {
    let value: Value = serde_json::from_str(text).map_err(|e| ParseError {
        id: None,
        code: ErrorCode::BadJson,
        message: format!("not JSON: {e}"),
    })?;
    let Value::Object(object) = &value else {
        return Err(ParseError {
            id: None,
            code: ErrorCode::BadJson,
            message: "a message must be a JSON object".into(),
        });
    };
    let id = object.get("id").and_then(Value::as_u64);
    let kind = object
        .get("type")
        .and_then(Value::as_str)
        .map(str::to_owned);
    match kind.as_deref() {
        Some(k) if CLIENT_TYPES.contains(&k) => {}
        Some(k) => {
            return Err(ParseError {
                id,
                code: ErrorCode::UnknownType,
                message: format!("unknown message type {:?}", truncate(k, 32)),
            });
        }
        None => {
            return Err(ParseError {
                id,
                code: ErrorCode::UnknownType,
                message: "missing string field \"type\"".into(),
            });
        }
    }
    let message = ClientMessage::deserialize(value).map_err(|e| ParseError {
        id,
        code: ErrorCode::BadJson,
        message: format!("malformed {}: {e}", kind.unwrap_or_default()),
    })?;
    Ok(Request { id, message })
}

fn truncate(s: &str, max_chars: usize) -> &str {
    s.char_indices().nth(max_chars).map_or(s, |(i, _)| &s[..i])
}

pub fn validate_room(room: &str) -> Result<(), String> {
    let ok_chars = room
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if room.is_empty() || room.chars().count() > MAX_ROOM_CHARS || !ok_chars {
        return Err(format!(
            "a room name is 1-{MAX_ROOM_CHARS} characters from A-Z a-z 0-9 - _ ."
        ));
    }
    Ok(())
}

pub fn validate_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("a display name must not be empty or all whitespace".into());
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(format!(
            "a display name is at most {MAX_NAME_CHARS} characters"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("a display name must not contain control characters".into());
    }
    Ok(())
}

/// Declares [`ErrorCode`] with each code's wire name written once: the enum, `ALL` (for
/// metrics), `as_str` and the serde form all come from this list.
macro_rules! error_codes {
    ($($code:ident => $name:literal,)+) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ErrorCode {
            $($code,)+
        }

        impl ErrorCode {
            /// Every code, for metrics.
            pub const ALL: &'static [ErrorCode] = &[$(Self::$code,)+];

            /// The code as it appears on the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$code => $name,)+
                }
            }
        }
    };
}

error_codes! {
    BadJson => "bad_json",
    UnknownType => "unknown_type",
    InvalidRoom => "invalid_room",
    InvalidName => "invalid_name",
    NotJoined => "not_joined",
    InvalidSdp => "invalid_sdp",
    InvalidCandidate => "invalid_candidate",
    UnknownTrack => "unknown_track",
    AlreadyJoined => "already_joined",
    MessageTooLarge => "message_too_large",
    BinaryNotSupported => "binary_not_supported",
    Internal => "internal",
    Unauthorized => "unauthorized",
    Forbidden => "forbidden",
    RoomFull => "room_full",
    TooManyRooms => "too_many_rooms",
    ServerBusy => "server_busy",
    TooManyTracks => "too_many_tracks",
    RateLimited => "rate_limited",
    UnknownSession => "unknown_session",
    TooManyConnections => "too_many_connections",
    TooManyJoins => "too_many_joins",
    ServerDraining => "server_draining",
    PayloadTooLarge => "payload_too_large",
    UnknownParticipant => "unknown_participant",
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl ErrorCode {
    /// The WebSocket close code for errors that end the connection.
    pub fn close_code(self) -> Option<u16> {
        match self {
            Self::AlreadyJoined | Self::Unauthorized | Self::TooManyConnections => Some(1008),
            Self::MessageTooLarge => Some(1009),
            Self::BinaryNotSupported => Some(1003),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TrackJson {
    pub track_id: String,
    pub kind: &'static str,
    pub muted: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ParticipantJson {
    pub participant_id: String,
    pub name: String,
    pub tracks: Vec<TrackJson>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OfferedTrackJson {
    pub participant_id: String,
    pub track_id: String,
    pub kind: &'static str,
}

/// What the participant may do (from its access token; everything in development mode).
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct PermissionsJson {
    pub publish: bool,
    pub subscribe: bool,
}

/// An `RTCIceServer` for the client's peer connection.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SubscriptionJson {
    pub participant_id: String,
    pub track_id: String,
    pub kind: &'static str,
    pub current_layer: Option<String>,
    pub target_layer: Option<String>,
    /// The highest temporal layer forwarded now; `null`: all of them (full frame rate).
    pub current_temporal: Option<u8>,
    pub target_temporal: Option<u8>,
    pub paused: bool,
    pub reason: &'static str,
    pub pinned: bool,
    pub bitrate_bps: u64,
    /// Layer (or pause) changes in the last minute.
    pub layer_changes_last_minute: usize,
}

/// One active speaker: its participant id and the linear amplitude of its smoothed audio level
/// (1.0 = 0 dBov).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ActiveSpeakerJson {
    pub participant_id: String,
    pub level: f32,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Joined {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        participant_id: String,
        room: String,
        participants: Vec<ParticipantJson>,
        ice_servers: Vec<IceServer>,
        permissions: PermissionsJson,
        resume_token: String,
    },
    Resumed {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        participant_id: String,
        participants: Vec<ParticipantJson>,
    },
    Answer {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        sdp: String,
    },
    Offer {
        sdp: String,
        tracks: BTreeMap<String, OfferedTrackJson>,
    },
    ParticipantJoined {
        participant: ParticipantJson,
    },
    ParticipantLeft {
        participant_id: String,
    },
    TrackPublished {
        participant_id: String,
        track: TrackJson,
    },
    TrackUnpublished {
        participant_id: String,
        track_id: String,
    },
    TrackMuted {
        participant_id: String,
        track_id: String,
        muted: bool,
    },
    PublisherLayers {
        mid: String,
        active: Vec<String>,
    },
    /// You negotiated no payload type for this track's codec: you get none of its media.
    CodecUnsupported {
        participant_id: String,
        track_id: String,
        codec: &'static str,
    },
    VideoPaused {
        participant_id: String,
        track_id: String,
        paused: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'static str>,
    },
    Stats {
        estimate_bps: u64,
        subscriptions: Vec<SubscriptionJson>,
    },
    /// Loudest first; empty when nobody speaks.
    ActiveSpeakers {
        speakers: Vec<ActiveSpeakerJson>,
    },
    /// Application data from `participant_id` (stamped by the server); `to` is present when
    /// the sender addressed chosen participants rather than the whole room.
    Data {
        participant_id: String,
        name: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        to: Option<Vec<String>>,
        payload: Value,
    },
    Pong {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
    },
    Error {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        code: ErrorCode,
        message: String,
    },
}

impl ServerMessage {
    pub fn error(id: Option<u64>, code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Error {
            id,
            code,
            message: message.into(),
        }
    }

    pub fn to_json(&self) -> String {
        // Serializing these plain structs cannot fail: no maps with non-string keys, no
        // custom serializers.
        serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"type":"error","code":"internal","message":"serialization"}"#.into()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> ErrorCode {
        parse_request(text).expect_err("should fail").code
    }

    #[test]
    fn parses_every_client_message() {
        let r =
            parse_request(r#"{"type":"join","id":1,"room":"a","name":"B","extra":true}"#).unwrap();
        assert_eq!(r.id, Some(1));
        assert!(matches!(r.message, ClientMessage::Join { .. }));
        assert_eq!(
            parse_request(r#"{"type":"leave"}"#).unwrap().message,
            ClientMessage::Leave
        );
        assert_eq!(
            parse_request(r#"{"type":"candidate","candidate":null}"#)
                .unwrap()
                .message,
            ClientMessage::Candidate { candidate: None }
        );
        assert_eq!(
            parse_request(r#"{"type":"data","payload":{"text":"hi"}}"#)
                .unwrap()
                .message,
            ClientMessage::Data {
                to: None,
                payload: serde_json::json!({"text": "hi"})
            }
        );
        assert!(matches!(
            parse_request(r#"{"type":"data","to":["P1"],"payload":"hi"}"#)
                .unwrap()
                .message,
            ClientMessage::Data { to: Some(_), .. }
        ));
        assert_eq!(
            parse_request(r#"{"type":"pin","participant_id":"p1"}"#)
                .unwrap()
                .message,
            ClientMessage::Pin {
                participant_id: Some("p1".into())
            }
        );
        for unpin in [
            r#"{"type":"pin"}"#,
            r#"{"type":"pin","participant_id":null}"#,
        ] {
            assert_eq!(
                parse_request(unpin).unwrap().message,
                ClientMessage::Pin {
                    participant_id: None
                }
            );
        }
        assert!(matches!(
            parse_request(r#"{"type":"mute","mid":"0","muted":true}"#)
                .unwrap()
                .message,
            ClientMessage::Mute { muted: true, .. }
        ));
    }

    #[test]
    fn classifies_malformed_input() {
        assert_eq!(code("{"), ErrorCode::BadJson);
        assert_eq!(code("[1,2]"), ErrorCode::BadJson);
        assert_eq!(code("\"join\""), ErrorCode::BadJson);
        assert_eq!(code(r#"{"room":"a"}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"type":7}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"type":"explode"}"#), ErrorCode::UnknownType);
        assert_eq!(
            code(r#"{"type":"join","room":5,"name":"x"}"#),
            ErrorCode::BadJson
        );
        assert_eq!(code(r#"{"type":"offer"}"#), ErrorCode::BadJson);
        assert_eq!(
            code(r#"{"type":"video_size","track_id":"T","width":-1,"height":5}"#),
            ErrorCode::BadJson
        );
        assert_eq!(
            code(r#"{"type":"track_source","mid":"1","source":"hologram"}"#),
            ErrorCode::BadJson
        );
        assert_eq!(code(r#"{"type":"data"}"#), ErrorCode::BadJson);
        assert_eq!(
            code(r#"{"type":"data","to":"P1","payload":1}"#),
            ErrorCode::BadJson
        );
        assert_eq!(
            code(r#"{"type":"data","to":[5],"payload":1}"#),
            ErrorCode::BadJson
        );
        assert_eq!(
            code(r#"{"type":"pin","participant_id":7}"#),
            ErrorCode::BadJson
        );
        let err = parse_request(r#"{"type":"offer","id":9}"#).unwrap_err();
        assert_eq!(err.id, Some(9), "the request id survives a malformed body");
    }

    #[test]
    fn validates_rooms_and_names() {
        assert!(validate_room("standup-2.b_c").is_ok());
        assert!(validate_room("").is_err());
        assert!(validate_room("has space").is_err());
        assert!(validate_room("ü").is_err());
        assert!(validate_room(&"r".repeat(65)).is_err());
        assert!(validate_name("Zoë 🎧").is_ok());
        assert!(validate_name("   ").is_err());
        assert!(validate_name("a\u{0}b").is_err());
        assert!(validate_name(&"n".repeat(65)).is_err());
    }

    #[test]
    fn server_messages_use_the_documented_shape() {
        let json = ServerMessage::error(Some(3), ErrorCode::NotJoined, "join first").to_json();
        assert_eq!(
            json,
            r#"{"type":"error","id":3,"code":"not_joined","message":"join first"}"#
        );
        let json = ServerMessage::ParticipantLeft {
            participant_id: "P1".into(),
        }
        .to_json();
        assert_eq!(json, r#"{"type":"participant_left","participant_id":"P1"}"#);
        let json = ServerMessage::ActiveSpeakers {
            speakers: vec![ActiveSpeakerJson {
                participant_id: "P2".into(),
                level: 0.25,
            }],
        }
        .to_json();
        assert_eq!(
            json,
            r#"{"type":"active_speakers","speakers":[{"participant_id":"P2","level":0.25}]}"#
        );
    }

    #[test]
    fn error_codes_serialize_as_their_wire_names_which_are_distinct_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, code.as_str());
            assert!(seen.insert(code.as_str()), "{code:?} repeats a name");
            assert!(code
                .as_str()
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_'));
        }
    }
}
