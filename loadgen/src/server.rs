//! The server under test: either one already running (`--server` and `--server-pid`), or a
//! `switchboard serve` child spawned from our own executable on free loopback ports.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct Server {
    pub ws_url: String,
    /// The HTTP address, for `/healthz`.
    http_addr: Option<SocketAddr>,
    pub pid: u32,
    child: Option<Child>,
}

impl Server {
    /// An existing server: we only measure it.
    pub fn existing(ws_url: String, pid: u32) -> Self {
        // ws://host:port/ws -> host:port
        let http_addr = ws_url
            .strip_prefix("ws://")
            .and_then(|rest| rest.split('/').next())
            .and_then(|authority| authority.parse().ok());
        Self {
            http_addr,
            ws_url,
            pid,
            child: None,
        }
    }

    /// Spawn `switchboard serve` (this very executable) on free 127.0.0.1 ports, with
    /// `--media-workers` and `--worker-spill-margin` if given, and wait until `/healthz`
    /// answers.
    pub async fn spawn(
        media_workers: Option<usize>,
        worker_spill_margin: Option<usize>,
    ) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("finding our own executable")?;
        let http_addr = free_tcp_port()?;
        let rtc_addr = free_udp_and_tcp_port()?;
        // Logging per packet or per peer would be measured as server cost: warnings only,
        // unless the caller asks for more.
        let log = std::env::var("SWITCHBOARD_BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".into());
        let mut command = Command::new(&exe);
        command.args([
            "serve",
            "--http-addr",
            &http_addr.to_string(),
            "--rtc-addr",
            &rtc_addr.to_string(),
            // Every synthetic participant comes from 127.0.0.1.
            "--max-connections-per-ip",
            "0",
            "--max-joins-per-ip-per-minute",
            "0",
        ]);
        if let Some(workers) = media_workers {
            command.args(["--media-workers", &workers.to_string()]);
        }
        if let Some(margin) = worker_spill_margin {
            command.args(["--worker-spill-margin", &margin.to_string()]);
        }
        let child = command
            .env("RUST_LOG", log)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {} serve", exe.display()))?;
        let server = Self {
            ws_url: format!("ws://{http_addr}/ws"),
            http_addr: Some(http_addr),
            pid: child.id(),
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while get_healthz(http_addr).await.is_none() {
            if Instant::now() > deadline {
                bail!("the spawned server did not answer /healthz within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(server)
    }
}

impl Server {
    /// Participants in the server now, from its `/healthz`.
    pub async fn participants(&self) -> Option<u64> {
        let body = get_healthz(self.http_addr?).await?;
        let health: serde_json::Value = serde_json::from_str(&body).ok()?;
        health["participants"].as_u64()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The body of a `200` answer to `GET /healthz`, or `None`.
async fn get_healthz(addr: SocketAddr) -> Option<String> {
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        let text = String::from_utf8_lossy(&response).into_owned();
        let (head, body) = text.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
    };
    tokio::time::timeout(Duration::from_secs(5), fetch)
        .await
        .ok()
        .flatten()
}

fn free_tcp_port() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// Media uses one port number for UDP and ICE-TCP: find one free for both.
fn free_udp_and_tcp_port() -> anyhow::Result<SocketAddr> {
    for _ in 0..100 {
        let udp = UdpSocket::bind("127.0.0.1:0")?;
        let addr = udp.local_addr()?;
        if TcpListener::bind(addr).is_ok() {
            return Ok(addr);
        }
    }
    bail!("no port free for both UDP and TCP")
}
