//! `switchboard serve`: the SFU's media workers, HTTP/WebSocket signaling, and the embedded
//! TURN server, until SIGINT or SIGTERM, or until a drain (SIGUSR1, `POST /api/drain`) has
//! emptied the server. SIGHUP reloads the TLS certificate.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use sfu::{SfuHandle, SfuServer, SfuServerConfig};
use signaling::prometheus_client::collector::Collector;
use signaling::prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use signaling::prometheus_client::metrics::counter::ConstCounter;
use signaling::prometheus_client::metrics::gauge::ConstGauge;
use signaling::prometheus_client::metrics::MetricType;
use signaling::tls::{Certificates, TlsListener};
use signaling::{AppState, Drain, IceServer, IceServerProvider};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::{ServeConfig, TurnSettings};

pub async fn run(config: ServeConfig) -> anyhow::Result<()> {
    let mut media = SfuServer::start(SfuServerConfig {
        bind: config.rtc_addr,
        public_ip: config.public_ip,
        ice_tcp: config.ice_tcp,
        limits: config.sfu_limits,
        resume_grace: config.resume_grace,
        workers: config.media_workers,
        spill_margin: config.worker_spill_margin,
        relay_port: config.cluster.is_some(),
    })
    .with_context(|| format!("binding media on {}", config.rtc_addr))?;
    let mut cluster = match (&config.cluster, media.take_relay_port()) {
        (Some(settings), Some(port)) => Some(
            cluster::Cluster::start(
                cluster::ClusterConfig {
                    redis_url: settings.redis_url.clone(),
                    relay_listen: settings.relay_addr,
                    relay_advertise: settings.node_addr,
                    secret: settings.secret.clone().into_bytes(),
                    key_prefix: "switchboard:".into(),
                },
                port,
                media.handle(),
            )
            .await
            .context("joining the cluster")?,
        ),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("binding HTTP on {}", config.http_addr))?;
    let http_addr = listener.local_addr()?;
    let certificates = match &config.tls {
        Some(files) => Some(
            Certificates::load(&files.cert, &files.key).context("loading the TLS certificate")?,
        ),
        None => None,
    };
    let scheme = if certificates.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!(%http_addr, media = %media.local_addr(), "switchboard is up: open {scheme}://{http_addr}/");

    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let mut tasks = tokio::task::JoinSet::new();
    let turn = match &config.turn {
        Some(settings) => match start_turn(settings, config.public_ip).await {
            Ok(started) => Some(started),
            Err(e) if !settings.addr_configured => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "embedded TURN disabled: its default address is not available"
                );
                None
            }
            Err(e) => return Err(e),
        },
        None => None,
    };
    let mut turn_stats = None;
    let ice_servers: IceServerProvider = match turn {
        Some((provider, server)) => {
            turn_stats = Some(server.stats());
            let mut stop = stop_rx.clone();
            tasks.spawn(async move {
                let result = server
                    .run(async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                    .await;
                if let Err(e) = result {
                    tracing::error!(error = %e, "TURN server failed");
                }
            });
            provider
        }
        None => Arc::new(|_| Vec::new()),
    };

    tasks.spawn(return_freed_memory(media.handle(), stop_rx.clone()));
    let mut state = AppState::new(media.handle(), ice_servers);
    state.set_limits(config.connection_limits);
    state.trusted_proxies = config.trusted_proxies.clone().into();
    if !config.trusted_proxies.is_empty() {
        tracing::info!(proxies = ?config.trusted_proxies.iter().map(ToString::to_string).collect::<Vec<_>>(), "client addresses are read from X-Forwarded-For behind these proxies");
    }
    if let Some(cluster) = &cluster {
        state
            .metrics
            .register_collector(Box::new(ClusterCollector(Arc::clone(&cluster.stats))));
        let source = cluster.stats_source();
        state.remote_stats = Some(Arc::new(move || {
            let source = source.clone();
            Box::pin(async move { source.fetch().await })
        }));
    }
    if let Some(stats) = turn_stats {
        state
            .metrics
            .register_collector(Box::new(TurnCollector(stats)));
    }
    match &config.api_keys {
        Some((key, secret)) => {
            state.auth = Some(signaling::auth::Auth::new(key, secret));
            tracing::info!(api_key = %key, "access tokens required: joins need a token signed with the API secret");
        }
        None => tracing::warn!(
            "DEVELOPMENT MODE: no --api-secret configured, so anyone who reaches this server may join any room without a token, and the room API is disabled. Set --api-key and --api-secret (or SWITCHBOARD_API_KEY/SWITCHBOARD_API_SECRET) in production"
        ),
    }
    tracing::info!(sfu_limits = ?config.sfu_limits, connection_limits = ?config.connection_limits, "limits");
    {
        let stop_tx = Arc::clone(&stop_tx);
        tokio::spawn(async move {
            shutdown_signal().await;
            stop_tx.send_replace(true);
        });
    }
    spawn_drain(
        state.drain.clone(),
        media.handle(),
        config.drain_deadline,
        Arc::clone(&stop_tx),
    );
    let mut stop = stop_rx.clone();
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    match certificates {
        Some(certificates) => {
            certificates.watch();
            reload_on_sighup(&certificates);
            let listener = TlsListener::new(listener, &certificates)?;
            signaling::serve(listener, state, shutdown).await
        }
        None => signaling::serve(listener, state, shutdown).await,
    }
    .context("HTTP server")?;
    tracing::info!("shutting down");
    if let Some(cluster) = cluster.as_mut() {
        cluster.leave().await;
    }
    while tasks.join_next().await.is_some() {}
    media.join();
    Ok(())
}

/// Gives memory freed by departed participants back to the system.
///
/// glibc's allocator keeps freed memory in per-thread arenas for reuse, so after a busy hour
/// the server would hold its peak footprint forever (measured: an idle server after 40 joins
/// and leaves at 1.9x its start-up RSS). `malloc_trim` returns the free pages of every arena.
/// It runs here, on a signaling thread, never on a media worker, and only when participants
/// left since the last tick, so an idle or steady server pays nothing. Departures are
/// counted from joins and the participants present, not from the count alone: joins and
/// leaves that both fall between two ticks leave the count where it was, and their memory
/// was still freed.
async fn return_freed_memory(sfu: SfuHandle, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut last_joins, mut last_present) = (0, 0);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let metrics = sfu.metrics();
        let joins = metrics.counters.joins;
        let present = metrics.participants as u64;
        let departures = (last_present + joins.saturating_sub(last_joins)).saturating_sub(present);
        if departures > 0 {
            trim_allocator();
        }
        (last_joins, last_present) = (joins, present);
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_allocator() {
    // SAFETY: malloc_trim only walks the allocator's own free lists; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_allocator() {}

/// Once a drain starts (the API, or SIGUSR1 here), stop the server when no participant is
/// left, or at the deadline.
fn spawn_drain(drain: Drain, sfu: SfuHandle, deadline: Duration, stop: Arc<watch::Sender<bool>>) {
    #[cfg(unix)]
    {
        let drain = drain.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let mut usr1 = match signal(SignalKind::user_defined1()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGUSR1: drain only through the API");
                    return;
                }
            };
            while usr1.recv().await.is_some() {
                drain.start("SIGUSR1");
            }
        });
    }
    // The task holds an `SfuHandle`, which keeps the media workers running: it must end when
    // the server stops for any other reason.
    let mut stopped = stop.subscribe();
    tokio::spawn(async move {
        tokio::select! {
            () = drain.started() => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
        let until = Instant::now() + deadline;
        tracing::info!(
            ?deadline,
            "draining: exiting when no participant is left, or at the deadline"
        );
        loop {
            let participants = match sfu.stats().await {
                Ok(stats) => stats.participants,
                Err(_) => 0, // the media workers are gone: nothing left to wait for
            };
            if participants == 0 {
                tracing::info!("drained: no participant left; shutting down");
                break;
            }
            if Instant::now() >= until {
                tracing::warn!(
                    participants,
                    ?deadline,
                    "drain deadline reached with participants left; shutting down"
                );
                break;
            }
            tokio::select! {
                () = tokio::time::sleep(DRAIN_POLL) => {}
                _ = stopped.wait_for(|s| *s) => return,
            }
        }
        stop.send_replace(true);
    });
}

/// How often a drain checks whether the server is empty.
const DRAIN_POLL: Duration = Duration::from_millis(250);

/// SIGHUP reloads the TLS certificate (as nginx and coturn do), besides the file watch.
fn reload_on_sighup(certificates: &Arc<Certificates>) {
    #[cfg(unix)]
    {
        let certificates = Arc::downgrade(certificates);
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let mut hup = match signal(SignalKind::hangup()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGHUP: the certificate reloads only when its files change");
                    return;
                }
            };
            while hup.recv().await.is_some() {
                let Some(certificates) = certificates.upgrade() else {
                    return;
                };
                tracing::info!("SIGHUP: reloading the TLS certificate");
                if let Err(e) = certificates.reload() {
                    tracing::error!(error = %signaling::tls::chain(&e), "TLS certificate reload failed; still serving the previous certificate");
                }
            }
        });
    }
}

/// Bind the embedded TURN server and make the provider that hands every participant
/// ephemeral credentials for it.
async fn start_turn(
    settings: &TurnSettings,
    public_ip: Option<IpAddr>,
) -> anyhow::Result<(IceServerProvider, turn::TurnServer)> {
    let host = match public_ip {
        Some(ip) => ip,
        None if settings.addr.ip().is_unspecified() => {
            bail!("TURN on a wildcard address needs --public-ip to put in its URLs")
        }
        None => settings.addr.ip(),
    };
    let config = turn::TurnConfig {
        listen: settings.addr,
        relay_ip: if settings.addr.ip().is_ipv4() {
            settings.addr.ip()
        } else {
            IpAddr::from([0, 0, 0, 0])
        },
        external_ip: public_ip.filter(IpAddr::is_ipv4),
        auth_secret: Some(settings.secret.clone()),
        allow_loopback_peers: settings.allow_loopback_peers,
        max_allocations_per_ip: settings.max_allocations_per_ip,
        ..turn::TurnConfig::default()
    };
    let server = turn::TurnServer::bind(config)
        .await
        .with_context(|| format!("binding TURN on {}", settings.addr))?;
    let urls = turn::ice_urls(&host.to_string(), server.local_addr().port(), None);
    tracing::info!(listen = %server.local_addr(), ?urls, "TURN server up");
    let (secret, ttl) = (settings.secret.clone(), settings.credential_ttl);
    let provider: IceServerProvider = Arc::new(move |participant| {
        let (username, credential) = turn::ephemeral_credentials(
            secret.as_bytes(),
            &participant.to_string(),
            ttl,
            SystemTime::now(),
        );
        vec![IceServer {
            urls: urls.clone(),
            username: Some(username),
            credential: Some(credential),
        }]
    });
    Ok((provider, server))
}

/// The embedded TURN server's `/metrics` families, read from its live counters at each scrape.
#[derive(Debug)]
struct TurnCollector(Arc<turn::TurnStats>);

impl Collector for TurnCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let stats = &self.0;
        let relays = ConstGauge::new(stats.relays().max(0));
        relays.encode(encoder.encode_descriptor(
            "switchboard_turn_allocations",
            "TURN relay sockets open (one per allocation and address family)",
            None,
            relays.metric_type(),
        )?)?;
        let mut bytes = encoder.encode_descriptor(
            "switchboard_turn_relayed_bytes",
            "Bytes relayed by TURN, by direction",
            None,
            MetricType::Counter,
        )?;
        for (direction, value) in [
            ("to_peer", stats.bytes_to_peers()),
            ("from_peer", stats.bytes_from_peers()),
        ] {
            ConstCounter::new(value).encode(bytes.encode_family(&[("direction", direction)])?)?;
        }
        let refused = ConstCounter::new(stats.allocations_refused_per_ip());
        refused.encode(encoder.encode_descriptor(
            "switchboard_turn_allocations_refused_per_ip",
            "TURN Allocates refused (486) because the client IP held its quota",
            None,
            refused.metric_type(),
        )?)?;
        Ok(())
    }
}

#[derive(Debug)]
struct ClusterCollector(Arc<cluster::ClusterStats>);

impl Collector for ClusterCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        use std::sync::atomic::Ordering::Relaxed;
        let stats = &self.0;
        let linked = ConstGauge::new(stats.linked_nodes.load(Relaxed) as i64);
        linked.encode(encoder.encode_descriptor(
            "switchboard_cluster_linked_nodes",
            "Other nodes this node has a relay link with",
            None,
            linked.metric_type(),
        )?)?;
        for (name, help, value) in [
            (
                "switchboard_cluster_packets_to_nodes",
                "RTP packets sent to other nodes (once per packet per node that needs it)",
                &stats.packets_to_nodes,
            ),
            (
                "switchboard_cluster_packets_from_nodes",
                "RTP packets received from other nodes",
                &stats.packets_from_nodes,
            ),
            (
                "switchboard_cluster_media_batches_dropped",
                "Relayed media batches dropped because a link or a media worker was behind",
                &stats.media_batches_dropped,
            ),
            (
                "switchboard_cluster_nodes_lost",
                "Nodes found dead (relay link down and registry key expired)",
                &stats.nodes_lost,
            ),
        ] {
            let counter = ConstCounter::new(value.load(Relaxed));
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

pub async fn shutdown_signal() {
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
