//! The TCP listener and the per-connection framing shared with TLS.
//!
//! A stream carries STUN messages and ChannelData back to back; frames are
//! cut with `channel_data::stream_frame_len`. Anything that is neither closes
//! the connection. When a connection ends, its allocation is deleted.
//!
//! Stream clients live on worker 0's shard: its listeners accept them and
//! their tasks run there.

use std::rc::Rc;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::backoff::ErrorBackoff;
use super::worker::Shard;
use crate::allocation::{FiveTuple, Transport};
use crate::channel_data::{stream_frame_len, StreamFrame};

/// Frames queued toward one client before we start dropping.
const WRITE_QUEUE: usize = 1024;
/// Largest frame: a STUN header plus the maximum 16-bit length.
const MAX_FRAME: usize = 20 + 65535 + 3;

/// Accepts TCP connections until the runtime stops.
pub(crate) async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    let mut backoff = ErrorBackoff::default();
    loop {
        match listener.accept().await {
            Ok((stream, client)) => {
                backoff.succeeded();
                let _ = stream.set_nodelay(true);
                let tuple = FiveTuple {
                    transport: Transport::Tcp,
                    client,
                    server: shard.local,
                };
                tokio::task::spawn_local(serve(shard.clone(), stream, tuple));
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning
                tracing::warn!(error = %e, "TCP accept failed");
                backoff.after_failure().await;
            }
        }
    }
}

/// Serves one client connection (TCP or TLS) until it closes.
pub(crate) async fn serve<S>(shard: Rc<Shard>, stream: S, tuple: FiveTuple)
where
    S: AsyncRead + AsyncWrite + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    shard
        .streams
        .borrow_mut()
        .insert((tuple.transport, tuple.client), tx);
    let writer = tokio::task::spawn_local(async move {
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
                        shard.core.borrow_mut().handle_client(
                            tuple,
                            frame,
                            Instant::now(),
                            &mut outs,
                        );
                    }
                    buf.drain(..len);
                    shard.dispatch(&mut outs);
                }
            }
        }
    }
    shard
        .streams
        .borrow_mut()
        .remove(&(tuple.transport, tuple.client));
    shard.core.borrow_mut().connection_closed(tuple, &mut outs);
    shard.dispatch(&mut outs);
    writer.abort();
    tracing::debug!(client = %tuple.client, "stream closed");
}
