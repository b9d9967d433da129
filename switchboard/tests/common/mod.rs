//! Test support: runs the real `switchboard` binary on free loopback ports.

#![allow(dead_code)]

pub mod redis;
pub mod shaper;
pub mod str0m_peer;
pub mod whip;
pub mod ws;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use switchboard_testkit::{ReceivedStats, TestClient};

pub struct TestServer {
    child: Child,
    /// Where the server's stderr goes when started with [`TestServer::start_logging_to_file`].
    log: Option<std::path::PathBuf>,
    pub http_addr: SocketAddr,
    pub rtc_addr: SocketAddr,
    pub turn_addr: SocketAddr,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(&[]).await
    }

    /// Start with extra `serve` flags.
    pub async fn start_with(extra: &[&str]) -> TestServer {
        Self::wait_until_up(Self::spawn(extra, None)).await
    }

    /// Start with extra `serve` flags, its log (stderr) in a file that [`TestServer::log`]
    /// reads, for tests that assert what the server said (no panic, say).
    pub async fn start_logging_to_file(extra: &[&str]) -> TestServer {
        let path = std::env::temp_dir().join(format!(
            "switchboard-test-{}-{}.log",
            std::process::id(),
            rand::random::<u32>()
        ));
        Self::wait_until_up(Self::spawn(extra, Some(path))).await
    }

    async fn wait_until_up(server: TestServer) -> TestServer {
        let deadline = Instant::now() + Duration::from_secs(20);
        while server.health().await.is_none() {
            assert!(
                Instant::now() < deadline,
                "switchboard did not answer /healthz within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server
    }

    /// Start with extra `serve` flags, without waiting for it to answer (over TLS, say).
    pub fn start_no_wait(extra: &[&str]) -> TestServer {
        Self::spawn(extra, None)
    }

    fn spawn(extra: &[&str], log: Option<std::path::PathBuf>) -> TestServer {
        let http_addr = free_tcp_port();
        let rtc_addr = free_udp_and_tcp_port();
        let turn_addr = free_udp_and_tcp_port();
        let log_filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "info,str0m=warn".into());
        let stderr = match &log {
            Some(path) => Stdio::from(std::fs::File::create(path).expect("create the log file")),
            None => Stdio::inherit(),
        };
        let child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args([
                "serve",
                "--http-addr",
                &http_addr.to_string(),
                "--rtc-addr",
                &rtc_addr.to_string(),
                "--turn-addr",
                &turn_addr.to_string(),
            ])
            .args(extra)
            .env("RUST_LOG", log_filter)
            .stdin(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start switchboard");
        TestServer {
            child,
            log,
            http_addr,
            rtc_addr,
            turn_addr,
        }
    }

    /// Send the server a signal (`"HUP"`, `"USR1"`, `"TERM"`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args(["-s", name, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {name} failed");
    }

    /// The exit status, if the process ends within `within`.
    pub async fn exited_within(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The server's log so far, when started with [`TestServer::start_logging_to_file`].
    pub fn log(&self) -> String {
        self.log
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    }

    /// Open file descriptors of the server process.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.http_addr)
    }

    /// `/healthz` as JSON, or `None` while the server is not answering.
    pub async fn health(&self) -> Option<serde_json::Value> {
        let body = http_get(self.http_addr, "/healthz").await?;
        serde_json::from_str(&body).ok()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(path) = &self.log {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A minimal HTTP/1.1 GET, enough for our own endpoints.
pub async fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.ok()?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

fn free_tcp_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr")
}

/// A port free for both UDP and TCP, since media uses the same number for both.
fn free_udp_and_tcp_port() -> SocketAddr {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind a free UDP port");
        let addr = udp.local_addr().expect("local addr");
        if TcpListener::bind(addr).is_ok() {
            return addr;
        }
    }
}

/// How long a test waits for media to flow.
pub const MEDIA_TIMEOUT: Duration = Duration::from_secs(20);

/// `client` receives intact audio and video from `from`.
pub async fn expect_media_from(client: &TestClient, from: &TestClient) {
    let id = from.participant_id();
    let what = format!(
        "{} receiving {}'s audio and video",
        client.name(),
        from.name()
    );
    let result = client
        .wait_until(&what, MEDIA_TIMEOUT, |s: &ReceivedStats| {
            s.participant(&id).is_some_and(|p| {
                p.audio_packets() >= 50 && p.keyframes() >= 1 && p.video_frames() >= 20
            })
        })
        .await;
    if let Err(e) = result {
        panic!("{e:#}");
    }
    let stats = client.stats();
    let p = stats.participant(&id).expect("stats for the sender");
    assert_eq!(
        p.integrity_failures(),
        0,
        "{what}: corrupted payloads\n{stats}"
    );
    for track in p.tracks.values() {
        assert_eq!(
            track.sender_tag,
            Some(from.sender_tag()),
            "{what}: a track carries someone else's media\n{stats}"
        );
    }
}
