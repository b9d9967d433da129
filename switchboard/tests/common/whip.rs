//! WHIP and WHEP from the client's side: raw HTTP/1.1 requests (so that every header and
//! status is visible to the test), and webrtc-rs peers publishing or playing through them.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard_testkit::{MediaPeer, PeerOptions, ReceivedStats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An HTTP response: status, headers (lower-case names, in order) and body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name`.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// One HTTP/1.1 request with `headers` (name, value) and a body.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes()).await.expect("write head");
    // A server may answer (413) and close before reading a large body.
    let _ = stream.write_all(body).await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("{method} {path}: not an HTTP response: {text:?}"));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// `POST` an SDP offer to `path`, with a bearer token if given.
pub async fn post_offer(addr: SocketAddr, path: &str, token: Option<&str>, sdp: &str) -> Reply {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/sdp")];
    if let Some(b) = &bearer {
        headers.push(("Authorization", b.as_str()));
    }
    request(addr, "POST", path, &headers, sdp.as_bytes()).await
}

/// A webrtc-rs peer with a WHIP or WHEP session.
pub struct HttpPeer {
    pub peer: MediaPeer,
    pub stats: Arc<Mutex<ReceivedStats>>,
    /// The session's `Location` (a path on the server).
    pub location: String,
    pub etag: String,
    pub created: Reply,
}

/// How long a webrtc-rs peer may take to connect (slower than a browser: FIELD-NOTES).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// A webrtc-rs peer whose payloads carry `tag`.
pub async fn new_peer(name: &str) -> (MediaPeer, Arc<Mutex<ReceivedStats>>) {
    let stats = Arc::new(Mutex::new(ReceivedStats::default()));
    let peer = MediaPeer::new(
        PeerOptions {
            stream_id: name.to_owned(),
            sender_tag: switchboard_testkit::sender_tag(name),
        },
        Arc::clone(&stats),
    )
    .await
    .expect("build a webrtc-rs peer");
    (peer, stats)
}

/// Offer from `peer` to `path` after gathering every candidate (no trickle), apply the
/// answer, and wait until connected. Panics unless the server answers 201.
pub async fn open_session(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
    peer: MediaPeer,
    stats: Arc<Mutex<ReceivedStats>>,
) -> HttpPeer {
    peer.create_offer().await.expect("offer");
    peer.wait_gathering_complete(Duration::from_secs(5))
        .await
        .expect("gathering");
    let offer = peer.current_local_sdp().await.expect("local SDP");
    let created = post_offer(addr, path, token, &offer).await;
    assert_eq!(created.status, 201, "POST {path}: {created:?}");
    peer.apply_answer(&created.body)
        .await
        .expect("apply answer");
    peer.wait_connected(CONNECT_TIMEOUT)
        .await
        .expect("connected");
    HttpPeer {
        location: created.header("location").expect("Location").to_owned(),
        etag: created.header("etag").expect("ETag").to_owned(),
        created,
        peer,
        stats,
    }
}
