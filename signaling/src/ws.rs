//! The WebSocket endpoint: a thin loop between the socket and the `Session` state machine.
//! Frame-level rules (text only, size limit, close codes) are enforced here.

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{SinkExt, StreamExt};

use crate::protocol::{ErrorCode, ServerMessage, MAX_MESSAGE_BYTES};
use crate::session::{Action, Session};

/// Frames above this are refused by the WebSocket layer itself; between `MAX_MESSAGE_BYTES`
/// and this, the client gets a `message_too_large` error before the close.
pub const HARD_FRAME_LIMIT: usize = 16 * MAX_MESSAGE_BYTES;

pub async fn run(socket: WebSocket, mut session: Session) {
    let (mut sink, mut stream) = socket.split();
    'connection: loop {
        let actions = tokio::select! {
            frame = stream.next() => match frame {
                Some(Ok(Message::Text(text))) => session.handle_text(text.as_str()).await,
                Some(Ok(Message::Binary(_))) => {
                    tracing::info!("binary frame refused");
                    vec![
                        Action::Send(ServerMessage::error(None, ErrorCode::BinaryNotSupported, "binary frames are not part of the protocol")),
                        Action::Close(1003, "binary frames are not supported".into()),
                    ]
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Close(_))) | None => break,
                Some(Err(e)) => {
                    tracing::info!(error = %e, "WebSocket read failed");
                    break;
                }
            },
            Some(event) = session.next_event() => session.handle_event(event),
        };
        for action in actions {
            match action {
                Action::Send(message) => {
                    if sink
                        .send(Message::Text(message.to_json().into()))
                        .await
                        .is_err()
                    {
                        break 'connection;
                    }
                }
                Action::Close(code, reason) => {
                    let frame = CloseFrame {
                        code,
                        reason: reason.into(),
                    };
                    let _ = sink.send(Message::Close(Some(frame))).await;
                    break 'connection;
                }
            }
        }
    }
    session.close();
}
