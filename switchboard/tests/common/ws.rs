//! Raw signaling clients for the tests (WebSocket requests, replies, errors and close codes),
//! HTTP requests with methods and headers, and access tokens.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use signaling::auth::{Auth, Grants, TokenRequest};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub const API_KEY: &str = "test-key";
pub const API_SECRET: &str = "test-secret-0123456789";

/// `serve` flags that turn access tokens on.
pub fn key_flags() -> Vec<&'static str> {
    vec!["--api-key", API_KEY, "--api-secret", API_SECRET]
}

pub fn token(identity: &str, room: Option<&str>, grants: Grants) -> String {
    Auth::new(API_KEY, API_SECRET)
        .mint(&TokenRequest {
            identity: identity.into(),
            name: None,
            room: room.map(str::to_owned),
            grants,
            ttl: Duration::from_secs(600),
        })
        .expect("mint")
}

pub const PUBLISH_SUBSCRIBE: Grants = Grants {
    publish: true,
    subscribe: true,
    admin: false,
};
pub const SUBSCRIBE_ONLY: Grants = Grants {
    publish: false,
    subscribe: true,
    admin: false,
};
pub const PUBLISH_ONLY: Grants = Grants {
    publish: true,
    subscribe: false,
    admin: false,
};
pub const ADMIN: Grants = Grants {
    publish: false,
    subscribe: false,
    admin: true,
};

pub async fn connect(url: &str) -> Ws {
    connect_async(url).await.expect("WebSocket connect").0
}

/// Connect with an `X-Forwarded-For` header, as a reverse proxy would.
pub async fn connect_forwarded(url: &str, forwarded_for: &str) -> Ws {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request().expect("a WebSocket URL");
    request.headers_mut().insert(
        "x-forwarded-for",
        forwarded_for.parse().expect("a header value"),
    );
    connect_async(request).await.expect("WebSocket connect").0
}

pub async fn send(ws: &mut Ws, text: impl Into<String>) {
    ws.send(Message::Text(text.into().into()))
        .await
        .expect("send");
}

/// The next JSON message, skipping pings and the periodic `stats`; fails after 5 s.
pub async fn recv(ws: &mut Ws) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a message within 5 s")
            .expect("connection open")
            .expect("frame");
        match frame {
            Message::Text(t) => {
                let message: Value = serde_json::from_str(t.as_str()).expect("JSON");
                if message["type"] != "stats" {
                    return message;
                }
            }
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

pub async fn expect_error(ws: &mut Ws, code: &str) -> Value {
    let msg = recv(ws).await;
    assert_eq!(msg["type"], "error", "expected an error, got {msg}");
    assert_eq!(msg["code"], code, "wrong error code in {msg}");
    assert!(
        msg["message"].as_str().is_some_and(|m| !m.is_empty()),
        "errors explain themselves: {msg}"
    );
    msg
}

pub async fn expect_open(ws: &mut Ws) {
    send(ws, r#"{"type":"ping","id":77}"#).await;
    assert_eq!(recv(ws).await, json!({"type": "pong", "id": 77}));
}

/// The close frame's code, skipping other messages; fails after `within`.
pub async fn closed_with(ws: &mut Ws, within: Duration) -> CloseCode {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("a close frame in time");
        match frame {
            Some(Ok(Message::Close(Some(close)))) => return close.code,
            Some(Ok(Message::Close(None))) | None => panic!("closed without a code"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("connection failed instead of closing: {e}"),
        }
    }
}

/// Send a join (with a token if given) and return the reply.
pub async fn try_join(ws: &mut Ws, room: &str, name: &str, token: Option<&str>) -> Value {
    let mut join = json!({"type": "join", "id": 1, "room": room, "name": name});
    if let Some(t) = token {
        join["token"] = json!(t);
    }
    send(ws, join.to_string()).await;
    recv(ws).await
}

pub async fn join(ws: &mut Ws, room: &str, name: &str, token: Option<&str>) -> Value {
    let joined = try_join(ws, room, name, token).await;
    assert_eq!(joined["type"], "joined", "join failed: {joined}");
    joined
}

/// An HTTP/1.1 request; returns the status and the body.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = bearer {
        request.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    (status, body.to_owned())
}

/// An HTTP request whose body is JSON.
pub async fn http_json(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    let (status, body) = http(addr, method, path, bearer, body).await;
    let value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {body}"));
    (status, value)
}

/// `/metrics` parsed into `name{labels}` -> value; panics on a malformed line.
pub async fn scrape(addr: SocketAddr) -> std::collections::BTreeMap<String, f64> {
    let (status, text) = http(addr, "GET", "/metrics", None, None).await;
    assert_eq!(status, 200, "{text}");
    let mut samples = std::collections::BTreeMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment: {line}");
        let (series, value) = line.rsplit_once(' ').expect("series and value");
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "unterminated labels in {line}");
        }
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line}"));
        samples.insert(series.to_owned(), value);
    }
    samples
}

/// The next message of type `kind`, skipping others (stats); fails after 5 s.
pub async fn recv_type(ws: &mut Ws, kind: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {kind} within 5 s"
        );
        let msg = recv(ws).await;
        if msg["type"] == kind {
            return msg;
        }
    }
}
