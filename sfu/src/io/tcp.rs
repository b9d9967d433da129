//! ICE-TCP (RFC 6544): passive TCP connections on the media port, each carrying datagrams
//! framed with a 2-byte length (RFC 4571). Frames go to worker 0, which routes them like datagrams.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::ids::ParticipantId;

/// Frames a connection may have queued toward the peer before it counts as stalled.
const WRITE_QUEUE: usize = 256;
/// A connection that carries nothing for this long is closed. A live ICE-TCP path carries
/// consent checks every few seconds; one whose peer vanished without a FIN reaching us (a
/// network that dropped it) would otherwise hold its socket forever.
const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

pub(crate) enum TcpEvent {
    Opened(SocketAddr, mpsc::Sender<Vec<u8>>),
    Frame(SocketAddr, Vec<u8>),
    /// A frame worker 0's router found to be this peer's (several workers only).
    RoutedFrame(SocketAddr, ParticipantId, Vec<u8>),
    Closed(SocketAddr),
}

pub(crate) async fn accept_loop(listener: TcpListener, events: mpsc::UnboundedSender<TcpEvent>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(connection(stream, peer, events.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "ICE-TCP accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn connection(stream: TcpStream, peer: SocketAddr, events: mpsc::UnboundedSender<TcpEvent>) {
    let (mut reader, mut writer) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    if events.send(TcpEvent::Opened(peer, tx)).is_err() {
        return;
    }
    let write = async move {
        while let Some(frame) = rx.recv().await {
            let Ok(len) = u16::try_from(frame.len()) else {
                continue;
            };
            if writer.write_all(&len.to_be_bytes()).await.is_err()
                || writer.write_all(&frame).await.is_err()
            {
                break;
            }
        }
    };
    let read = async {
        while let Ok(Ok(len)) = tokio::time::timeout(IDLE_TIMEOUT, reader.read_u16()).await {
            let mut frame = vec![0; usize::from(len)];
            if reader.read_exact(&mut frame).await.is_err() {
                break;
            }
            if events.send(TcpEvent::Frame(peer, frame)).is_err() {
                break;
            }
        }
    };
    tokio::select! {
        _ = write => {}
        _ = read => {}
    }
    tracing::debug!(%peer, "ICE-TCP connection closed");
    let _ = events.send(TcpEvent::Closed(peer));
}
