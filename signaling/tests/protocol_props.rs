//! Property tests of the message parser: any text and any JSON value either parses or is
//! classified with a documented error code; it never panics, and a readable request id
//! always survives into the error.

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use signaling::protocol::{parse_request, ErrorCode};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(".{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

const TYPES: &[&str] = &[
    "join",
    "offer",
    "answer",
    "candidate",
    "mute",
    "video_size",
    "track_source",
    "pin",
    "leave",
    "ping",
    "Join",
    "",
    "nope",
];
const FIELDS: &[&str] = &[
    "id",
    "room",
    "name",
    "token",
    "sdp",
    "candidate",
    "mid",
    "muted",
    "track_id",
    "width",
    "height",
    "source",
    "sdp_mid",
    "participant_id",
];

/// Objects that look like client messages: a real type and a mix of real and random fields.
fn messagelike() -> impl Strategy<Value = Value> {
    (
        proptest::sample::select(TYPES),
        proptest::collection::vec((proptest::sample::select(FIELDS), json_value()), 0..6),
    )
        .prop_map(|(kind, fields)| {
            let mut object = Map::new();
            object.insert("type".into(), json!(kind));
            for (k, v) in fields {
                object.insert(k.to_owned(), v);
            }
            Value::Object(object)
        })
}

fn check(text: &str) -> Result<(), TestCaseError> {
    match parse_request(text) {
        Ok(_) => {}
        Err(e) => {
            prop_assert!(
                matches!(e.code, ErrorCode::BadJson | ErrorCode::UnknownType),
                "{e:?}"
            );
            prop_assert!(!e.message.is_empty());
            if let Ok(Value::Object(o)) = serde_json::from_str::<Value>(text) {
                prop_assert_eq!(e.id, o.get("id").and_then(Value::as_u64));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn any_text(text in ".{0,200}") {
        check(&text)?;
    }

    #[test]
    fn any_json_value(value in json_value()) {
        check(&value.to_string())?;
    }

    #[test]
    fn anything_shaped_like_a_message(value in messagelike()) {
        check(&value.to_string())?;
    }

    #[test]
    fn any_bytes_as_lossy_text(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        check(&String::from_utf8_lossy(&bytes))?;
    }
}
