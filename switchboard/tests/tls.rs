//! `serve --tls-cert --tls-key`: HTTPS and WSS on the HTTP port with a generated
//! certificate, checked by a client that trusts only the test CA; the certificate is
//! reloaded on SIGHUP and when its files change; SIGTERM still closes every WebSocket with
//! 1001 and ends the process.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TestServer;
use futures_util::{SinkExt, StreamExt};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer =
            CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key")).expect("CA");
        Self { issuer }
    }

    /// A server certificate for localhost: written to `dir` as cert.pem and key.pem; returns
    /// its DER.
    fn issue(&self, dir: &Path) -> CertificateDer<'static> {
        let key = KeyPair::generate().expect("key");
        let params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        // Written aside and renamed, as certificate tools do, so no reader sees half a file.
        for (name, pem) in [("cert.pem", cert.pem()), ("key.pem", key.serialize_pem())] {
            let tmp = dir.join(format!("{name}.tmp"));
            std::fs::write(&tmp, pem).expect("write PEM");
            std::fs::rename(&tmp, dir.join(name)).expect("rename PEM");
        }
        cert.der().clone()
    }

    fn connector(&self) -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.issuer.der().clone()).expect("CA root");
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        TlsConnector::from(Arc::new(config))
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sb-tls-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A verified TLS connection to the server, and the certificate it presented.
async fn tls_connect(
    connector: &TlsConnector,
    server: &TestServer,
) -> std::io::Result<(TlsStream<TcpStream>, CertificateDer<'static>)> {
    let tcp = TcpStream::connect(server.http_addr).await?;
    let name = ServerName::try_from("localhost").expect("server name");
    let tls = connector.connect(name, tcp).await?;
    let cert = tls.get_ref().1.peer_certificates().expect("a certificate")[0].clone();
    Ok((tls, cert))
}

/// `GET path` over HTTPS: status and body.
async fn https_get(connector: &TlsConnector, server: &TestServer, path: &str) -> (u16, String) {
    let (mut tls, _) = tls_connect(connector, server).await.expect("TLS connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    // The server ends with close_notify; a reset after the body is fine too.
    let _ = tls.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.split_whitespace().nth(1).expect("status");
    (status.parse().expect("a status code"), body.to_owned())
}

async fn wait_until_serving(connector: &TlsConnector, server: &TestServer) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while tls_connect(connector, server).await.is_err() {
        assert!(Instant::now() < deadline, "no TLS service within 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The certificate new connections get, once it is `want` (within `within`).
async fn serves(
    connector: &TlsConnector,
    server: &TestServer,
    want: &CertificateDer<'_>,
    within: Duration,
) {
    let deadline = Instant::now() + within;
    loop {
        let (_, cert) = tls_connect(connector, server).await.expect("TLS connect");
        if &cert == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was not served within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn next_json<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a message within 5 s")
            .expect("open")
            .expect("frame");
        if let Message::Text(t) = frame {
            let msg: Value = serde_json::from_str(t.as_str()).expect("JSON");
            if msg["type"] != "stats" {
                return msg;
            }
        }
    }
}

#[tokio::test]
async fn https_and_wss_with_reload_and_graceful_shutdown() {
    let dir = temp_dir("serve");
    let ca = Ca::new();
    let first = ca.issue(&dir);
    let connector = ca.connector();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let mut server = TestServer::start_no_wait(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    wait_until_serving(&connector, &server).await;

    let (status, body) = https_get(&connector, &server, "/healthz").await;
    assert_eq!(status, 200, "{body}");
    let health: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(health["status"], "ok");
    // Plain HTTP on the TLS port gets nothing useful.
    assert!(common::http_get(server.http_addr, "/healthz")
        .await
        .is_none());

    // A WSS join, on a connection that verified the certificate.
    let (tls, presented) = tls_connect(&connector, &server).await.expect("TLS");
    assert_eq!(presented, first);
    let (mut ws, _) = tokio_tungstenite::client_async("wss://localhost/ws", tls)
        .await
        .expect("WebSocket over TLS");
    let join = json!({"type": "join", "id": 1, "room": "secure", "name": "Alice"});
    ws.send(Message::Text(join.to_string().into()))
        .await
        .expect("send");
    let joined = next_json(&mut ws).await;
    assert_eq!(joined["type"], "joined", "{joined}");

    // Renewed files and SIGHUP: new connections get the new certificate, and the open
    // WebSocket carries on.
    let second = ca.issue(&dir);
    assert_ne!(first, second);
    server.signal("HUP");
    serves(&connector, &server, &second, Duration::from_secs(5)).await;
    ws.send(Message::Text(r#"{"type":"ping","id":7}"#.into()))
        .await
        .expect("send");
    assert_eq!(next_json(&mut ws).await, json!({"type": "pong", "id": 7}));

    // Renewed files alone are noticed too.
    let third = ca.issue(&dir);
    serves(&connector, &server, &third, Duration::from_secs(10)).await;

    // A broken renewal keeps the certificate in use.
    std::fs::write(&key, "not a key").expect("write");
    server.signal("HUP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, _) = https_get(&connector, &server, "/healthz").await;
    assert_eq!(status, 200);
    let (_, cert) = tls_connect(&connector, &server).await.expect("TLS");
    assert_eq!(cert, third);

    // SIGTERM: the WSS client is closed with 1001, and the process ends.
    server.signal("TERM");
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a close frame within 5 s")
        {
            Some(Ok(Message::Close(Some(frame)))) => break frame.code,
            Some(Ok(_)) => continue,
            other => panic!("no close frame: {other:?}"),
        }
    };
    assert_eq!(close, CloseCode::Away);
    let status = server
        .exited_within(Duration::from_secs(10))
        .await
        .expect("the server exits after SIGTERM");
    assert!(status.success(), "{status:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_certificate_that_does_not_load_stops_the_start() {
    let dir = temp_dir("bad");
    let ca = Ca::new();
    ca.issue(&dir);
    // The key of another certificate.
    let other = temp_dir("bad-other");
    ca.issue(&other);
    let mut server = TestServer::start_no_wait(&[
        "--tls-cert",
        dir.join("cert.pem").to_str().unwrap(),
        "--tls-key",
        other.join("key.pem").to_str().unwrap(),
    ]);
    let status = server
        .exited_within(Duration::from_secs(20))
        .await
        .expect("the server refuses to start");
    assert!(!status.success());
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&other);
}
