//! `switchboard serve`: the SFU's media thread plus HTTP/WebSocket signaling, until SIGINT or
//! SIGTERM.

use std::sync::Arc;

use anyhow::Context;
use sfu::{SfuServer, SfuServerConfig};
use signaling::AppState;

use crate::config::ServeConfig;

pub async fn run(config: ServeConfig) -> anyhow::Result<()> {
    let media = SfuServer::start(SfuServerConfig {
        bind: config.rtc_addr,
        public_ip: config.public_ip,
        ice_tcp: config.ice_tcp,
    })
    .with_context(|| format!("binding media on {}", config.rtc_addr))?;
    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("binding HTTP on {}", config.http_addr))?;
    let http_addr = listener.local_addr()?;
    tracing::info!(%http_addr, media = %media.local_addr(), "switchboard is up: open http://{http_addr}/");

    let state = AppState {
        sfu: media.handle(),
        ice_servers: Arc::new(|_| Vec::new()),
    };
    signaling::serve(listener, state, shutdown_signal())
        .await
        .context("HTTP server")?;
    tracing::info!("shutting down");
    media.join();
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = terminate => tracing::info!("SIGTERM received"),
    }
}
