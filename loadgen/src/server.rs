//! The server under test: either one already running (`--server` and `--server-pid`), or
//! `switchboard serve` children spawned from our own executable on free loopback ports: one,
//! or with `--nodes` a cluster of several sharing a `redis-server` started for the run.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::procstat;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct Server {
    /// One per node.
    pub ws_urls: Vec<String>,
    /// The first node's HTTP address, for `/healthz`.
    http_addr: Option<SocketAddr>,
    /// One per node; the server's CPU and memory are their sum.
    pub pids: Vec<u32>,
    /// The nodes we spawned, then the Redis of a cluster.
    children: Vec<Child>,
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
            ws_urls: vec![ws_url],
            pids: vec![pid],
            children: Vec::new(),
        }
    }

    /// The first node's process id.
    pub fn pid(&self) -> u32 {
        self.pids[0]
    }

    /// CPU time of every node so far.
    pub fn cpu(&self) -> Option<Duration> {
        self.pids.iter().map(|&p| procstat::process_cpu(p)).sum()
    }

    pub fn rss_kib(&self) -> Option<u64> {
        self.pids.iter().map(|&p| procstat::rss_kib(p)).sum()
    }

    pub fn peak_rss_kib(&self) -> Option<u64> {
        self.pids.iter().map(|&p| procstat::peak_rss_kib(p)).sum()
    }

    /// Spawn `switchboard serve` (this very executable) on free 127.0.0.1 ports, with
    /// `--media-workers` and `--worker-spill-margin` if given, and wait until `/healthz`
    /// answers.
    pub async fn spawn(
        media_workers: Option<usize>,
        worker_spill_margin: Option<usize>,
    ) -> anyhow::Result<Self> {
        let (child, http_addr) = spawn_node(media_workers, worker_spill_margin, &[])?;
        let server = Self {
            ws_urls: vec![format!("ws://{http_addr}/ws")],
            http_addr: Some(http_addr),
            pids: vec![child.id()],
            children: vec![child],
        };
        wait_for_health(http_addr).await?;
        Ok(server)
    }

    /// Spawn a `redis-server` and `nodes` cluster nodes sharing it, and wait until every
    /// node has linked to every other.
    pub async fn spawn_cluster(
        nodes: usize,
        media_workers: Option<usize>,
        worker_spill_margin: Option<usize>,
    ) -> anyhow::Result<Self> {
        let redis_port = free_tcp_port()?.port();
        let redis = Command::new("redis-server")
            .args(["--port", &redis_port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("starting redis-server (apt-get install redis-server)")?;
        let mut server = Self {
            ws_urls: Vec::new(),
            http_addr: None,
            pids: Vec::new(),
            children: vec![redis],
        };
        let redis_url = format!("redis://127.0.0.1:{redis_port}");
        let secret: String = (0..32)
            .map(|_| format!("{:02x}", rand::random::<u8>()))
            .collect();
        let mut http_addrs = Vec::new();
        for _ in 0..nodes {
            let relay = free_tcp_port()?.to_string();
            let cluster_args = [
                "--redis",
                redis_url.as_str(),
                "--cluster-secret",
                secret.as_str(),
                "--relay-addr",
                relay.as_str(),
            ];
            let (child, http_addr) = spawn_node(media_workers, worker_spill_margin, &cluster_args)?;
            server.ws_urls.push(format!("ws://{http_addr}/ws"));
            server.pids.push(child.id());
            server.children.insert(0, child);
            http_addrs.push(http_addr);
        }
        server.http_addr = http_addrs.first().copied();
        for &addr in &http_addrs {
            wait_for_health(addr).await?;
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        for &addr in &http_addrs {
            while linked_nodes(addr).await != Some(nodes - 1) {
                if Instant::now() > deadline {
                    bail!("the cluster's nodes did not link to each other within 15 s");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(server)
    }
}

/// Start one `switchboard serve` on free loopback ports with `extra` flags.
fn spawn_node(
    media_workers: Option<usize>,
    worker_spill_margin: Option<usize>,
    extra: &[&str],
) -> anyhow::Result<(Child, SocketAddr)> {
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
        .args(extra)
        .env("RUST_LOG", log)
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {} serve", exe.display()))?;
    Ok((child, http_addr))
}

async fn wait_for_health(http_addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(http_addr, "/healthz").await.is_none() {
        if Instant::now() > deadline {
            bail!("the spawned server did not answer /healthz within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// The node's `switchboard_cluster_linked_nodes` gauge.
async fn linked_nodes(http_addr: SocketAddr) -> Option<usize> {
    let metrics = get(http_addr, "/metrics").await?;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("switchboard_cluster_linked_nodes "))
        .and_then(|v| v.trim().parse().ok())
}

impl Server {
    /// Participants in the server now, from its `/healthz`.
    pub async fn participants(&self) -> Option<u64> {
        let body = get(self.http_addr?, "/healthz").await?;
        let health: serde_json::Value = serde_json::from_str(&body).ok()?;
        health["participants"].as_u64()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The body of a `200` answer to `GET path`, or `None`.
async fn get(addr: SocketAddr, path: &str) -> Option<String> {
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
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
