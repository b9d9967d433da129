//! The WebSocket endpoint: a thin loop between the socket and the `Session` state machine.
//! Frame-level rules (text only, size limit, close codes), the per-connection message rate
//! limit and the ping/pong keepalive are enforced here.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use tokio::time::Instant;

use crate::drain::CLOSE_DRAINING;
use crate::metrics::SignalingMetrics;
use crate::protocol::{ErrorCode, ServerMessage, MAX_MESSAGE_BYTES};
use crate::session::{Action, Session};

/// Frames above this are refused by the WebSocket layer itself; between `MAX_MESSAGE_BYTES`
/// and this, the client gets a `message_too_large` error before the close.
pub const HARD_FRAME_LIMIT: usize = 16 * MAX_MESSAGE_BYTES;

/// The socket's read buffer. tungstenite's default (128 KiB) was the largest single cost of
/// a joined participant (heaptrack, 50 peers: 6.6 MB of 39.6 MB); signaling messages are a
/// few hundred bytes, an SDP a few KiB, and a larger frame still arrives, read in several
/// chunks.
pub const READ_BUFFER_BYTES: usize = 4096;

/// Outgoing frames are written out once this much is buffered (or at each flush, which
/// the send loop does per message).
pub const WRITE_BUFFER_BYTES: usize = 16 * 1024;

/// Close code for a connection silent past the idle timeout.
pub const CLOSE_IDLE: u16 = 4003;

/// After the server sends a close frame, how long it waits for the client's (the closing
/// handshake) before dropping the TCP connection. Dropping at once would reset a client
/// whose pongs are still in flight before it could read the close code.
pub(crate) const CLOSE_HANDSHAKE_WAIT: Duration = Duration::from_secs(2);

/// Per-connection limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConnectionLimits {
    /// Sustained messages per second (token bucket refill rate).
    pub messages_per_sec: f64,
    /// Messages that may arrive at once (token bucket size). A connection that has more
    /// than this many messages refused within 10 seconds is closed (1008).
    pub message_burst: u32,
    /// The server pings this often.
    pub ping_interval: Duration,
    /// A connection from which nothing (not even a pong) arrived this long is closed.
    pub idle_timeout: Duration,
    /// WebSocket connections one client IP may have open at once (0: no limit).
    pub max_connections_per_ip: u32,
    /// Joins one client IP may make per minute, in bursts of as many (0: no limit).
    pub max_joins_per_ip_per_minute: u32,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            messages_per_sec: 50.0,
            message_burst: 200,
            ping_interval: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(45),
            // Enough for an office behind one NAT address; far from what it takes to hold
            // every pending-join slot (`--max-pending-joins`, 1000) or descriptor.
            max_connections_per_ip: 100,
            max_joins_per_ip_per_minute: 60,
        }
    }
}

/// Refusals are counted over this long: more than `message_burst` of them within it closes
/// the connection.
const FLOOD_WINDOW: Duration = Duration::from_secs(10);

/// A token bucket over messages, and a leaky count of the messages it refused.
#[derive(Debug)]
struct RateLimit {
    tokens: f64,
    burst: f64,
    per_sec: f64,
    updated: Instant,
    /// Refusals within about the last `FLOOD_WINDOW`: each adds one, and the count leaks
    /// away at `burst` per window. A run of refusals "in a row" was tried and never fired: a
    /// client flooding at twice the rate gets every other message accepted, which reset it.
    refusals: f64,
    /// The last refusal: an episode of refusals ends after a quiet `FLOOD_WINDOW`.
    last_refused: Option<Instant>,
}

enum Verdict {
    Accept,
    /// Refused; `first` when it starts an episode of refusals (the client is told once per
    /// episode, not once per dropped message).
    Refuse {
        first: bool,
    },
    /// Refused, and the connection has kept flooding: close it.
    Abuse,
}

impl RateLimit {
    fn new(limits: &ConnectionLimits, now: Instant) -> Self {
        let burst = f64::from(limits.message_burst.max(1));
        Self {
            tokens: burst,
            burst,
            per_sec: limits.messages_per_sec.max(0.001),
            updated: now,
            refusals: 0.0,
            last_refused: None,
        }
    }

    fn check(&mut self, now: Instant) -> Verdict {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.updated = now;
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.burst);
        let leak = elapsed * self.burst / FLOOD_WINDOW.as_secs_f64();
        self.refusals = (self.refusals - leak).max(0.0);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Verdict::Accept;
        }
        let first = self
            .last_refused
            .is_none_or(|t| now.saturating_duration_since(t) >= FLOOD_WINDOW);
        self.last_refused = Some(now);
        self.refusals += 1.0;
        if self.refusals > self.burst {
            Verdict::Abuse
        } else {
            Verdict::Refuse { first }
        }
    }
}

pub async fn run(
    socket: WebSocket,
    mut session: Session,
    limits: ConnectionLimits,
    metrics: Arc<SignalingMetrics>,
    mut shutting_down: tokio::sync::watch::Receiver<bool>,
    mut draining: tokio::sync::watch::Receiver<bool>,
) {
    metrics.connections_total.inc();
    metrics.connections_open.inc();
    let (mut sink, mut stream) = socket.split();
    let start = Instant::now();
    let mut rate = RateLimit::new(&limits, start);
    let mut last_heard = start;
    let mut ping = tokio::time::interval_at(start + limits.ping_interval, limits.ping_interval);
    let mut close_sent = false;
    // Cleared if the drain switch goes away, so that a closed channel cannot spin the loop.
    // A connection opened while draining is not closed (its receiver has seen the drain
    // already): its join is refused with `server_draining` instead.
    let mut watch_drain = true;
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    'connection: loop {
        let idle_deadline = last_heard + limits.idle_timeout;
        let actions = tokio::select! {
            frame = stream.next() => {
                let now = Instant::now();
                last_heard = now;
                match frame {
                    Some(Ok(Message::Text(text))) => match rate.check(now) {
                        Verdict::Accept => session.handle_text(text.as_str()).await,
                        Verdict::Refuse { first } => {
                            metrics.rate_limited_messages.inc();
                            if first {
                                tracing::info!(participant = ?session.participant(), "message rate limit reached");
                                vec![Action::Send(ServerMessage::error(
                                    None,
                                    ErrorCode::RateLimited,
                                    format!(
                                        "more than {} messages per second: messages are dropped until the rate falls",
                                        limits.messages_per_sec
                                    ),
                                ))]
                            } else {
                                Vec::new()
                            }
                        }
                        Verdict::Abuse => {
                            metrics.rate_limited_messages.inc();
                            metrics.rate_limit_closes.inc();
                            tracing::warn!(participant = ?session.participant(), client = %session.client_ip(), "closing a connection that keeps flooding");
                            vec![Action::Close(1008, "message rate limit exceeded".into())]
                        }
                    },
                    Some(Ok(Message::Binary(_))) => {
                        tracing::info!(participant = ?session.participant(), "binary frame refused");
                        vec![
                            Action::Send(ServerMessage::error(None, ErrorCode::BinaryNotSupported, "binary frames are not part of the protocol")),
                            Action::Close(1003, "binary frames are not supported".into()),
                        ]
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    // A close frame is the client saying goodbye (a page unloading says 1001):
                    // that ends the session. A connection that just drops may come back.
                    Some(Ok(Message::Close(_))) => {
                        session.end();
                        break;
                    }
                    None => break,
                    Some(Err(e)) => {
                        tracing::info!(participant = ?session.participant(), error = %e, "WebSocket read failed");
                        break;
                    }
                }
            },
            Some(event) = session.next_event() => session.handle_event(event),
            changed = shutting_down.changed() => {
                let down = changed.is_err() || *shutting_down.borrow();
                if !down {
                    continue;
                }
                vec![Action::Close(1001, "server shutting down".into())]
            }
            changed = draining.changed(), if watch_drain => {
                if changed.is_err() {
                    // The switch is gone: nothing more to watch (not a reason to spin).
                    watch_drain = false;
                    continue;
                }
                if !*draining.borrow() {
                    continue;
                }
                tracing::info!(participant = ?session.participant(), client = %session.client_ip(), "closing for the drain");
                vec![Action::Close(CLOSE_DRAINING, "server draining: reconnect".into())]
            }
            _ = ping.tick() => {
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    break 'connection;
                }
                continue;
            }
            _ = tokio::time::sleep_until(idle_deadline) => {
                metrics.idle_closes.inc();
                tracing::info!(participant = ?session.participant(), timeout = ?limits.idle_timeout, "closing a silent connection");
                vec![Action::Close(CLOSE_IDLE, "idle timeout: no pong".into())]
            }
        };
        for action in actions {
            match action {
                Action::Send(message) => {
                    if let ServerMessage::Error { code, .. } = &message {
                        metrics.error(*code);
                    }
                    if sink
                        .send(Message::Text(message.to_json().into()))
                        .await
                        .is_err()
                    {
                        break 'connection;
                    }
                }
                Action::Close(code, reason) => {
                    // Closing on purpose (idle, abuse, protocol violation) ends the session.
                    session.end();
                    let frame = CloseFrame {
                        code,
                        reason: reason.into(),
                    };
                    close_sent = sink.send(Message::Close(Some(frame))).await.is_ok();
                    break 'connection;
                }
            }
        }
    }
    metrics.connections_open.dec();
    session.close();
    if close_sent {
        let handshake = async {
            while let Some(Ok(frame)) = stream.next().await {
                if matches!(frame, Message::Close(_)) {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(CLOSE_HANDSHAKE_WAIT, handshake).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_bursts_refills_and_flags_floods() {
        let limits = ConnectionLimits {
            messages_per_sec: 10.0,
            message_burst: 3,
            ..ConnectionLimits::default()
        };
        let t0 = Instant::now();
        let mut rate = RateLimit::new(&limits, t0);
        for _ in 0..3 {
            assert!(matches!(rate.check(t0), Verdict::Accept));
        }
        assert!(matches!(rate.check(t0), Verdict::Refuse { first: true }));
        assert!(matches!(rate.check(t0), Verdict::Refuse { first: false }));
        // 100 ms later one token is back; the refusals are still remembered.
        let t1 = t0 + Duration::from_millis(100);
        assert!(matches!(rate.check(t1), Verdict::Accept));
        assert!(matches!(rate.check(t1), Verdict::Refuse { first: false }));
        assert!(matches!(rate.check(t1), Verdict::Abuse));
        // A quiet window later, a new episode of refusals is reported again.
        let t2 = t1 + FLOOD_WINDOW;
        for _ in 0..3 {
            assert!(matches!(rate.check(t2), Verdict::Accept));
        }
        assert!(matches!(rate.check(t2), Verdict::Refuse { first: true }));
    }

    /// Accepted messages in between do not excuse a flood: at twice the rate, every other
    /// message gets through, and the connection is still closed within the window.
    #[test]
    fn a_steady_flood_above_the_rate_is_closed() {
        let limits = ConnectionLimits {
            messages_per_sec: 5.0,
            message_burst: 10,
            ..ConnectionLimits::default()
        };
        let t0 = Instant::now();
        let mut rate = RateLimit::new(&limits, t0);
        let closed_at = (0..1000)
            .map(|i| t0 + Duration::from_millis(100) * i)
            .position(|t| matches!(rate.check(t), Verdict::Abuse));
        let closed_at = closed_at.expect("a flood at 2x the rate is closed") as u64;
        assert!(
            closed_at * 100 < 10_000,
            "closed after {closed_at} messages"
        );
    }

    #[test]
    fn a_client_just_within_the_rate_is_never_refused() {
        let limits = ConnectionLimits {
            messages_per_sec: 5.0,
            message_burst: 10,
            ..ConnectionLimits::default()
        };
        let t0 = Instant::now();
        let mut rate = RateLimit::new(&limits, t0);
        for i in 0..1000 {
            let t = t0 + Duration::from_millis(201) * i;
            assert!(matches!(rate.check(t), Verdict::Accept), "message {i}");
        }
    }
}
