//! The WebSocket endpoint: a thin loop between the socket and the `Session` state machine.
//! Frame-level rules (text only, size limit, close codes), the per-connection message rate
//! limit and the ping/pong keepalive are enforced here.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use tokio::time::Instant;

use crate::metrics::SignalingMetrics;
use crate::protocol::{ErrorCode, ServerMessage, MAX_MESSAGE_BYTES};
use crate::session::{Action, Session};

/// Frames above this are refused by the WebSocket layer itself; between `MAX_MESSAGE_BYTES`
/// and this, the client gets a `message_too_large` error before the close.
pub const HARD_FRAME_LIMIT: usize = 16 * MAX_MESSAGE_BYTES;

/// Close code for a connection silent past the idle timeout.
pub const CLOSE_IDLE: u16 = 4003;

/// After the server sends a close frame, how long it waits for the client's (the closing
/// handshake) before dropping the TCP connection. Dropping at once would reset a client
/// whose pongs are still in flight before it could read the close code.
const CLOSE_HANDSHAKE_WAIT: Duration = Duration::from_secs(2);

/// Per-connection limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConnectionLimits {
    /// Sustained messages per second (token bucket refill rate).
    pub messages_per_sec: f64,
    /// Messages that may arrive at once (token bucket size). A connection that sends this
    /// many more while refused is closed (1008).
    pub message_burst: u32,
    /// The server pings this often.
    pub ping_interval: Duration,
    /// A connection from which nothing (not even a pong) arrived this long is closed.
    pub idle_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            messages_per_sec: 50.0,
            message_burst: 200,
            ping_interval: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(45),
        }
    }
}

/// A token bucket over messages.
#[derive(Debug)]
struct RateLimit {
    tokens: f64,
    burst: f64,
    per_sec: f64,
    updated: Instant,
    /// Messages refused since the last one accepted.
    refused_in_a_row: u32,
}

enum Verdict {
    Accept,
    /// Refused; `first` when it starts a run of refusals (the client is told once per run).
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
            refused_in_a_row: 0,
        }
    }

    fn check(&mut self, now: Instant) -> Verdict {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.updated = now;
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.refused_in_a_row = 0;
            return Verdict::Accept;
        }
        self.refused_in_a_row += 1;
        if f64::from(self.refused_in_a_row) > self.burst {
            Verdict::Abuse
        } else {
            Verdict::Refuse {
                first: self.refused_in_a_row == 1,
            }
        }
    }
}

pub async fn run(
    socket: WebSocket,
    mut session: Session,
    limits: ConnectionLimits,
    metrics: Arc<SignalingMetrics>,
    mut shutting_down: tokio::sync::watch::Receiver<bool>,
) {
    metrics.connections_total.inc();
    metrics.connections_open.inc();
    let (mut sink, mut stream) = socket.split();
    let start = Instant::now();
    let mut rate = RateLimit::new(&limits, start);
    let mut last_heard = start;
    let mut ping = tokio::time::interval_at(start + limits.ping_interval, limits.ping_interval);
    let mut close_sent = false;
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
                            tracing::warn!(participant = ?session.participant(), "closing a connection that keeps flooding");
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
        assert!(matches!(rate.check(t0), Verdict::Refuse { first: false }));
        assert!(matches!(rate.check(t0), Verdict::Abuse));
        // 100 ms later one token is back, and the run of refusals ends.
        let t1 = t0 + Duration::from_millis(100);
        assert!(matches!(rate.check(t1), Verdict::Accept));
        assert!(matches!(rate.check(t1), Verdict::Refuse { first: true }));
    }
}
