//! The media thread: owns the `Sfu`, the UDP socket and the ICE-TCP connections, and runs the
//! sans-IO loop (input in, drain output, sleep until the next timeout) on a single-threaded
//! runtime of its own, so media never waits behind HTTP work.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::Interest;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;

use super::batch::DatagramBatch;
use super::handle::{Command, SfuHandle, SfuStats};
use super::tcp::{self, TcpEvent};
use crate::engine::{Sfu, SfuConfig, SfuOutput};
use crate::event::RemovalReason;
use crate::event::SfuEvent;
use crate::ids::ParticipantId;
use crate::metrics::MetricsSnapshot;
use crate::policy::SfuLimits;
use str0m::net::Protocol;

/// How often the media thread publishes its metrics snapshot.
const METRICS_INTERVAL: Duration = Duration::from_secs(1);

/// Largest datagram we accept; anything bigger is not WebRTC.
const MAX_DATAGRAM: usize = 2048;

#[derive(Debug, Clone)]
pub struct SfuServerConfig {
    /// UDP and ICE-TCP bind here (same port number for both).
    pub bind: SocketAddr,
    /// The address put in candidates, when it differs from `bind` (1:1 NAT, wildcard bind).
    pub public_ip: Option<IpAddr>,
    pub ice_tcp: bool,
    /// Rooms, participants, tracks and pending joins accepted.
    pub limits: SfuLimits,
    /// How long a participant whose signaling dropped may resume its session.
    pub resume_grace: std::time::Duration,
}

pub struct SfuServer {
    handle: SfuHandle,
    udp_addr: SocketAddr,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SfuServer {
    /// Bind the sockets and start the media thread.
    pub fn start(config: SfuServerConfig) -> io::Result<Self> {
        let std_udp = std::net::UdpSocket::bind(config.bind)?;
        std_udp.set_nonblocking(true)?;
        let udp_addr = std_udp.local_addr()?;
        let std_tcp = if config.ice_tcp {
            let listener =
                std::net::TcpListener::bind(SocketAddr::new(udp_addr.ip(), udp_addr.port()))?;
            listener.set_nonblocking(true)?;
            Some(listener)
        } else {
            None
        };
        let advertised_ip = match config.public_ip {
            Some(ip) => ip,
            None if udp_addr.ip().is_unspecified() => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "binding media to a wildcard address needs a public IP to advertise (--public-ip)",
                ));
            }
            None => udp_addr.ip(),
        };
        let advertised = SocketAddr::new(advertised_ip, udp_addr.port());
        let mut sfu_config = SfuConfig::new(advertised, std_tcp.as_ref().map(|_| advertised));
        sfu_config.limits = config.limits;
        sfu_config.resume_grace = config.resume_grace;
        let metrics = Arc::new(Mutex::new(MetricsSnapshot::default()));
        let published = Arc::clone(&metrics);

        let (commands_tx, commands) = mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name("sfu-media".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(error = %e, "media runtime could not start");
                        return;
                    }
                };
                runtime.block_on(async move {
                    let udp = match UdpSocket::from_std(std_udp) {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::error!(error = %e, "media socket unusable");
                            return;
                        }
                    };
                    let (tcp_tx, tcp_rx) = mpsc::unbounded_channel();
                    if let Some(listener) = std_tcp.and_then(|l| TcpListener::from_std(l).ok()) {
                        tokio::spawn(tcp::accept_loop(listener, tcp_tx));
                    }
                    MediaLoop {
                        sfu: Sfu::new(sfu_config, Instant::now()),
                        udp,
                        advertised,
                        subscribers: HashMap::new(),
                        tcp_conns: HashMap::new(),
                        metrics: published,
                        next_metrics: Instant::now(),
                        outgoing: DatagramBatch::new(MAX_DATAGRAM),
                    }
                    .run(commands, tcp_rx)
                    .await;
                });
            })?;
        tracing::info!(%udp_addr, %advertised, ice_tcp = config.ice_tcp, "media listening");
        Ok(Self {
            handle: SfuHandle {
                commands: commands_tx,
                metrics,
            },
            udp_addr,
            thread: Some(thread),
        })
    }

    pub fn handle(&self) -> SfuHandle {
        self.handle.clone()
    }

    /// The bound UDP (and ICE-TCP) address.
    pub fn local_addr(&self) -> SocketAddr {
        self.udp_addr
    }

    /// Stop the media thread once every handle is dropped, and wait for it.
    pub fn join(mut self) {
        drop(self.handle);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct MediaLoop {
    sfu: Sfu,
    udp: UdpSocket,
    advertised: SocketAddr,
    /// Where each participant's events go.
    subscribers: HashMap<ParticipantId, mpsc::UnboundedSender<SfuEvent>>,
    tcp_conns: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
    /// Where the metrics snapshot is published for `SfuHandle::metrics`.
    metrics: Arc<Mutex<MetricsSnapshot>>,
    next_metrics: Instant,
    /// Datagrams produced since the last send, sent together.
    outgoing: DatagramBatch,
}

impl MediaLoop {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut tcp_events: mpsc::UnboundedReceiver<TcpEvent>,
    ) {
        let mut received = DatagramBatch::new(MAX_DATAGRAM);
        loop {
            self.flush();
            self.publish_metrics();
            let deadline = self.sfu.next_timeout().min(self.next_metrics);
            // An unbiased select: a past deadline fires at once but cannot starve the sockets
            // or the command channel.
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => self.handle_command(command),
                    None => break,
                },
                readable = self.udp.readable() => match readable {
                    Ok(()) => self.receive_udp(&mut received),
                    Err(e) => tracing::debug!(error = %e, "UDP socket unreadable"),
                },
                Some(event) = tcp_events.recv() => self.handle_tcp(event),
                _ = tokio::time::sleep_until(deadline.into()) => self.sfu.handle_timeout(Instant::now()),
            }
        }
        tracing::info!("media thread stopped");
    }

    /// Take every datagram waiting, a batch per system call. The SFU drains its peers after
    /// each one; what they produce is sent in batches by `flush`.
    fn receive_udp(&mut self, batch: &mut DatagramBatch) {
        loop {
            match self.udp.try_io(Interest::READABLE, || batch.recv(&self.udp)) {
                Ok(n) => {
                    let now = Instant::now();
                    for i in 0..n {
                        if let Some((data, source)) = batch.get(i) {
                            self.sfu.handle_receive(
                                now,
                                Protocol::Udp,
                                source,
                                self.advertised,
                                data,
                            );
                        }
                    }
                    if n < super::batch::BATCH_SIZE {
                        return;
                    }
                    // A full batch: more may wait. Send what this one produced first, so
                    // forwarding latency does not grow with the backlog.
                    self.flush();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::debug!(error = %e, "UDP receive failed");
                    return;
                }
            }
        }
    }

    fn handle_command(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::Join {
                room,
                name,
                permissions,
                events,
                reply,
            } => {
                let result = self.sfu.join(&room, &name, permissions, now);
                if let Ok(info) = &result {
                    self.subscribers.insert(info.participant, events);
                }
                let _ = reply.send(result);
            }
            Command::Offer {
                participant,
                sdp,
                reply,
            } => {
                let _ = reply.send(self.sfu.accept_offer(participant, &sdp, now));
            }
            Command::Answer {
                participant,
                sdp,
                reply,
            } => {
                let _ = reply.send(self.sfu.accept_answer(participant, &sdp, now));
            }
            Command::Candidate {
                participant,
                candidate,
                reply,
            } => {
                let _ = reply.send(self.sfu.add_remote_candidate(participant, &candidate));
            }
            Command::Mute {
                participant,
                mid,
                muted,
                reply,
            } => {
                let _ = reply.send(self.sfu.set_muted(participant, &mid, muted));
            }
            Command::VideoSize {
                participant,
                track,
                width,
                height,
                reply,
            } => {
                let _ = reply.send(self.sfu.set_video_size(participant, track, width, height));
            }
            Command::TrackSource {
                participant,
                mid,
                source,
                reply,
            } => {
                let _ = reply.send(self.sfu.set_track_source(participant, &mid, source));
            }
            Command::AllStats { reply } => {
                let _ = reply.send(self.sfu.all_stats());
            }
            Command::Leave { participant } => {
                self.subscribers.remove(&participant);
                self.sfu.leave(participant, now);
            }
            Command::Detach { participant } => {
                // Events while detached are dropped; `resume` hands out the state instead.
                self.subscribers.remove(&participant);
                self.sfu.detach(participant, now);
            }
            Command::Resume {
                participant,
                resume_token,
                events,
                reply,
            } => {
                let result = self.sfu.resume(participant, &resume_token);
                if result.is_ok() {
                    self.subscribers.insert(participant, events);
                }
                let _ = reply.send(result);
            }
            Command::Rooms { reply } => {
                let _ = reply.send(self.sfu.rooms());
            }
            Command::RoomParticipants { room, reply } => {
                let _ = reply.send(self.sfu.room_participants(&room));
            }
            Command::RemoveParticipant {
                room,
                participant,
                reply,
            } => {
                let result =
                    self.sfu
                        .remove_participant(&room, participant, RemovalReason::Removed, now);
                let _ = reply.send(result);
            }
            Command::CloseRoom { room, reply } => {
                let _ = reply.send(self.sfu.close_room(&room, now));
            }
            Command::MuteTrack {
                room,
                track,
                muted,
                reply,
            } => {
                let _ = reply.send(self.sfu.mute_track(&room, track, muted, now));
            }
            Command::Stats { reply } => {
                let _ = reply.send(SfuStats {
                    rooms: self.sfu.room_count(),
                    participants: self.sfu.participant_count(),
                });
            }
        }
    }

    fn handle_tcp(&mut self, event: TcpEvent) {
        match event {
            TcpEvent::Opened(peer, writer) => {
                self.tcp_conns.insert(peer, writer);
            }
            TcpEvent::Frame(peer, frame) => {
                self.sfu.handle_receive(
                    Instant::now(),
                    Protocol::Tcp,
                    peer,
                    self.advertised,
                    &frame,
                );
            }
            TcpEvent::Closed(peer) => {
                self.tcp_conns.remove(&peer);
            }
        }
    }

    /// Copy the SFU's metrics out for `SfuHandle::metrics`, once per interval.
    fn publish_metrics(&mut self) {
        let now = Instant::now();
        if now < self.next_metrics {
            return;
        }
        self.next_metrics = now + METRICS_INTERVAL;
        let snapshot = self.sfu.metrics_snapshot();
        *self
            .metrics
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = snapshot;
    }

    /// Send what the SFU produced, a batch of datagrams per system call, and deliver its
    /// events.
    fn flush(&mut self) {
        while let Some(output) = self.sfu.poll_output() {
            match output {
                SfuOutput::Transmit(t) => match t.proto {
                    Protocol::Udp => {
                        if self.outgoing.is_full() {
                            self.send_udp();
                        }
                        if !self.outgoing.push(&t.contents, t.destination) {
                            tracing::debug!(destination = %t.destination, len = t.contents.len(), "oversized datagram not sent");
                        }
                    }
                    _ => {
                        if let Some(conn) = self.tcp_conns.get(&t.destination) {
                            let _ = conn.try_send(t.contents.to_vec());
                        }
                    }
                },
                SfuOutput::Event(event) => {
                    let to = event.recipient();
                    let removed = matches!(event, SfuEvent::Removed { .. });
                    if let Some(tx) = self.subscribers.get(&to) {
                        let _ = tx.send(event);
                    }
                    if removed {
                        self.subscribers.remove(&to);
                    }
                }
            }
        }
        self.send_udp();
    }

    fn send_udp(&mut self) {
        if self.outgoing.is_empty() {
            return;
        }
        let queued = self.outgoing.len();
        // A full socket buffer drops the rest of the batch, as a congested network would;
        // waiting here would stall every other peer.
        match self.outgoing.send(&self.udp) {
            Ok(sent) if sent < queued => {
                tracing::trace!(dropped = queued - sent, "UDP send buffer full, datagrams dropped")
            }
            Ok(_) => {}
            Err(e) => tracing::trace!(error = %e, "UDP send failed"),
        }
    }
}
