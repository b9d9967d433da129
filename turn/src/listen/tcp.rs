//! The TCP listener and the per-connection framing shared with TLS.
//!
//! A stream carries STUN messages and ChannelData back to back; frames are
//! cut with `channel_data::stream_frame_len`. Anything that is neither closes
//! the connection. When a connection ends, its allocation is deleted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::Shared;
use crate::allocation::{FiveTuple, Transport};
use crate::channel_data::{stream_frame_len, StreamFrame};

/// Frames queued toward one client before we start dropping.
const WRITE_QUEUE: usize = 1024;
/// Largest frame: a STUN header plus the maximum 16-bit length.
const MAX_FRAME: usize = 20 + 65535 + 3;

/// Accepts TCP connections forever.
pub(crate) async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, local: SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((stream, client)) => {
                let _ = stream.set_nodelay(true);
                let tuple = FiveTuple {
                    transport: Transport::Tcp,
                    client,
                    server: local,
                };
                tokio::spawn(serve(shared.clone(), stream, tuple));
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning
                tracing::warn!(error = %e, "TCP accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// Serves one client connection (TCP or TLS) until it closes.
pub(crate) async fn serve<S>(shared: Arc<Shared>, stream: S, tuple: FiveTuple)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    shared.streams().insert((tuple.transport, tuple.client), tx);
    let writer = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            if wr.write_all(&frame).await.is_err() {
                break;
            }
            // flush per batch, not per frame
            if rx.is_empty() && wr.flush().await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });

    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 65536];
    let mut outs = Vec::new();
    'conn: loop {
        let n = match rd.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        loop {
            match stream_frame_len(&buf) {
                StreamFrame::Incomplete => {
                    if buf.len() > MAX_FRAME {
                        break 'conn;
                    }
                    break;
                }
                StreamFrame::Invalid => {
                    tracing::debug!(client = %tuple.client, "not STUN on stream; closing");
                    break 'conn;
                }
                StreamFrame::Complete(len) => {
                    if let Some(frame) = buf.get(..len) {
                        shared
                            .core()
                            .handle_client(tuple, frame, Instant::now(), &mut outs);
                    }
                    buf.drain(..len);
                    shared.dispatch(&mut outs).await;
                }
            }
        }
    }
    shared.streams().remove(&(tuple.transport, tuple.client));
    shared.core().connection_closed(tuple, &mut outs);
    shared.dispatch(&mut outs).await;
    writer.abort();
    tracing::debug!(client = %tuple.client, "stream closed");
}
