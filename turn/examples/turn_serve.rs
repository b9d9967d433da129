//! Minimal stand-alone server for manual tests and the relay benchmark.
//!
//! `cargo run -p switchboard-turn --release --example turn_serve -- 127.0.0.1:3478 user:pass [secret]`
//! `TURN_THREADS=N` sets the worker count (default: one per core, at most 8).
//! Loopback peers are allowed: do not expose this on a network.

use std::net::SocketAddr;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let mut args = std::env::args().skip(1);
    let listen: SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:3478".into())
        .parse()?;
    let mut config = turn::TurnConfig {
        listen,
        relay_ip: listen.ip(),
        relay_ipv6: Some("::1".parse()?),
        allow_loopback_peers: true,
        // load generators open many allocations with one user, from one IP
        max_allocations_per_user: 10_000,
        max_allocations_per_ip: 0,
        threads: std::env::var("TURN_THREADS")
            .ok()
            .and_then(|t| t.parse().ok())
            .unwrap_or(0),
        realm: "switchboard".into(),
        ..Default::default()
    };
    if let Some((u, p)) = args.next().as_deref().and_then(|s| s.split_once(':')) {
        config.users.push((u.to_string(), p.to_string()));
    }
    config.auth_secret = args.next();
    let server = turn::TurnServer::bind(config).await?;
    eprintln!("listening on {}", server.local_addr());
    server
        .run(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
