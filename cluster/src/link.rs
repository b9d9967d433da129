//! One relay link between two nodes: a TCP connection, authenticated with the cluster secret
//! and encrypted, carrying [`NodeMessage`]s in frames.
//!
//! The handshake: each side sends `SBRL`, a version byte, its node id and 32 random bytes
//! (the dialer first). Each direction's key is HKDF-SHA256 of the cluster secret, salted with
//! both random values, so every connection has fresh keys; frames are sealed with AES-256-GCM
//! under a counter nonce (a replayed, reordered or altered frame fails to open and ends the
//! link). The first frame each way names both nodes: a peer without the secret cannot produce
//! it, and is refused. There is no forward secrecy: whoever learns the cluster secret and
//! recorded the traffic can read it. Frames are length-prefixed (4 bytes, at most
//! [`MAX_FRAME`]).
//!
//! TCP rather than UDP: control messages must arrive in order and never be lost, and inside
//! a data centre's network the head-of-line blocking that TCP adds under loss is rare; the
//! media it carries is repaired toward subscribers by the usual NACK and keyframe requests.

use std::time::{Duration, Instant};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use aws_lc_rs::hkdf::{Salt, HKDF_SHA256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::wire::NodeMessage;
use crate::NodeId;

const MAGIC: &[u8; 4] = b"SBRL";
/// Bumped with every change to the wire (`wire.rs`): nodes of another version refuse the link
/// at the handshake instead of misreading each other. 2: AV1 with its Dependency Descriptor,
/// temporal layers in stats.
const VERSION: u8 = 2;
/// Largest frame accepted (a batch of media packets fits many times over).
pub const MAX_FRAME: usize = 1 << 20;
/// A link with nothing received for this long is dead (pings go every second).
pub const LINK_TIMEOUT: Duration = Duration::from_secs(4);
const PING_INTERVAL: Duration = Duration::from_secs(1);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Media batches waiting for a slow link before more are dropped.
const MEDIA_QUEUE: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("relay link I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a Switchboard relay peer (bad greeting)")]
    BadGreeting,
    #[error("relay peer failed authentication (another cluster secret?)")]
    Authentication,
    #[error("relay frame of {0} bytes is too large")]
    FrameTooLarge(usize),
    #[error("relay handshake timed out")]
    Timeout,
    #[error("a relay peer connected to itself")]
    SelfConnection,
}

/// Where a link's messages go, and how a link is known.
#[derive(Debug)]
pub enum LinkEvent {
    Up(NodeId, LinkSender),
    Message(NodeId, NodeMessage),
    /// The link ended; `generation` tells it from a newer link to the same node.
    Down(NodeId, u64),
}

/// The sending side of a link.
#[derive(Debug, Clone)]
pub struct LinkSender {
    control: mpsc::UnboundedSender<NodeMessage>,
    media: mpsc::Sender<NodeMessage>,
    pub generation: u64,
}

impl LinkSender {
    /// A sender over channels of one's own, for tests of what is sent on a link.
    #[cfg(test)]
    pub(crate) fn from_channels(
        control: mpsc::UnboundedSender<NodeMessage>,
        media: mpsc::Sender<NodeMessage>,
        generation: u64,
    ) -> Self {
        Self {
            control,
            media,
            generation,
        }
    }

    pub fn send(&self, message: NodeMessage) {
        let _ = self.control.send(message);
    }

    /// Queue media; `false` if the link is too far behind and it was dropped.
    pub fn send_media(&self, message: NodeMessage) -> bool {
        self.media.try_send(message).is_ok()
    }
}

/// Sealing or opening one direction's frames.
struct Direction {
    key: LessSafeKey,
    counter: u64,
}

impl Direction {
    fn new(secret: &[u8], salt: &[u8], info: &[u8]) -> Self {
        let prk = Salt::new(HKDF_SHA256, salt).extract(secret);
        let info = [info];
        let okm = prk
            .expand(&info, &AES_256_GCM)
            .expect("32 bytes is a valid HKDF length");
        let key = UnboundKey::from(okm);
        Self {
            key: LessSafeKey::new(key),
            counter: 0,
        }
    }

    fn nonce(&mut self) -> Nonce {
        let mut bytes = [0u8; 12];
        bytes[4..].copy_from_slice(&self.counter.to_be_bytes());
        self.counter += 1;
        Nonce::assume_unique_for_key(bytes)
    }
}

/// Run the handshake on a fresh connection; the peer's node id and the two directions' keys.
async fn handshake(
    stream: &mut TcpStream,
    secret: &[u8],
    me: NodeId,
    dialer: bool,
) -> Result<(NodeId, Direction, Direction), LinkError> {
    let ours: [u8; 32] = rand::random();
    let mut greeting = Vec::with_capacity(45);
    greeting.extend_from_slice(MAGIC);
    greeting.push(VERSION);
    greeting.extend_from_slice(&me.0.to_be_bytes());
    greeting.extend_from_slice(&ours);
    let mut theirs = [0u8; 45];
    if dialer {
        stream.write_all(&greeting).await?;
        stream.read_exact(&mut theirs).await?;
    } else {
        stream.read_exact(&mut theirs).await?;
        stream.write_all(&greeting).await?;
    }
    if &theirs[..4] != MAGIC || theirs[4] != VERSION {
        return Err(LinkError::BadGreeting);
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&theirs[5..13]);
    let peer = NodeId(u64::from_be_bytes(id));
    if peer == me {
        return Err(LinkError::SelfConnection);
    }
    let (dialer_random, acceptor_random) = if dialer {
        (&ours[..], &theirs[13..])
    } else {
        (&theirs[13..], &ours[..])
    };
    let salt = [dialer_random, acceptor_random].concat();
    let forward = Direction::new(secret, &salt, b"switchboard relay dialer to acceptor");
    let backward = Direction::new(secret, &salt, b"switchboard relay acceptor to dialer");
    let (mut seal, mut open) = if dialer {
        (forward, backward)
    } else {
        (backward, forward)
    };
    // Each side proves it has the secret: a sealed frame naming both nodes, sender first.
    let proof = |from: NodeId, to: NodeId| [from.0.to_be_bytes(), to.0.to_be_bytes()].concat();
    write_frame(stream, &mut seal, &proof(me, peer)).await?;
    let mut buf = Vec::new();
    let opened = read_frame(stream, &mut open, &mut buf)
        .await
        .map_err(|e| match e {
            LinkError::Io(_) | LinkError::FrameTooLarge(_) => LinkError::Authentication,
            other => other,
        })?;
    if opened != proof(peer, me).as_slice() {
        return Err(LinkError::Authentication);
    }
    Ok((peer, seal, open))
}

async fn write_frame<W: AsyncWriteExt + Unpin>(
    writer: &mut W,
    seal: &mut Direction,
    plaintext: &[u8],
) -> Result<(), LinkError> {
    let mut buf = Vec::with_capacity(4 + plaintext.len() + 16);
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(plaintext);
    let nonce = seal.nonce();
    let mut sealed = buf.split_off(4);
    seal.key
        .seal_in_place_append_tag(nonce, Aad::empty(), &mut sealed)
        .map_err(|_| LinkError::Authentication)?;
    if sealed.len() > MAX_FRAME {
        return Err(LinkError::FrameTooLarge(sealed.len()));
    }
    buf.clear();
    buf.extend_from_slice(&(sealed.len() as u32).to_be_bytes());
    buf.extend_from_slice(&sealed);
    writer.write_all(&buf).await?;
    Ok(())
}

/// Read and open one frame into `buf`; the plaintext.
async fn read_frame<'b, R: AsyncReadExt + Unpin>(
    reader: &mut R,
    open: &mut Direction,
    buf: &'b mut Vec<u8>,
) -> Result<&'b [u8], LinkError> {
    let mut len = [0u8; 4];
    reader.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(LinkError::FrameTooLarge(len));
    }
    buf.resize(len, 0);
    reader.read_exact(buf).await?;
    let nonce = open.nonce();
    let plaintext = open
        .key
        .open_in_place(nonce, Aad::empty(), buf)
        .map_err(|_| LinkError::Authentication)?;
    Ok(plaintext)
}

/// Set up a link on a connected stream and start its reader and writer; the peer's id. Its
/// messages, and its end, go to `events`.
pub async fn establish(
    mut stream: TcpStream,
    secret: Vec<u8>,
    me: NodeId,
    dialer: bool,
    generation: u64,
    events: mpsc::UnboundedSender<LinkEvent>,
) -> Result<NodeId, LinkError> {
    let _ = stream.set_nodelay(true);
    let (peer, seal, open) = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        handshake(&mut stream, &secret, me, dialer),
    )
    .await
    .map_err(|_| LinkError::Timeout)??;
    let (reader, writer) = stream.into_split();
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let (media_tx, media_rx) = mpsc::channel(MEDIA_QUEUE);
    let sender = LinkSender {
        control: control_tx,
        media: media_tx,
        generation,
    };
    tokio::spawn(write_loop(writer, seal, control_rx, media_rx, peer));
    let _ = events.send(LinkEvent::Up(peer, sender));
    tokio::spawn(read_loop(reader, open, peer, generation, events));
    Ok(peer)
}

async fn read_loop(
    mut reader: OwnedReadHalf,
    mut open: Direction,
    peer: NodeId,
    generation: u64,
    events: mpsc::UnboundedSender<LinkEvent>,
) {
    let mut buf = Vec::new();
    loop {
        let frame =
            tokio::time::timeout(LINK_TIMEOUT, read_frame(&mut reader, &mut open, &mut buf));
        let plaintext = match frame.await {
            Err(_) => {
                tracing::warn!(node = %peer, "relay link silent, closing it");
                break;
            }
            Ok(Err(e)) => {
                tracing::info!(node = %peer, error = %e, "relay link ended");
                break;
            }
            Ok(Ok(plaintext)) => plaintext,
        };
        match NodeMessage::decode(plaintext, Instant::now()) {
            Ok(message) => {
                if events.send(LinkEvent::Message(peer, message)).is_err() {
                    return;
                }
            }
            // An authenticated peer that sends nonsense is a bug or another version: the
            // link cannot be trusted to stay in step, so it ends.
            Err(e) => {
                tracing::warn!(node = %peer, error = %e, "relay link ended");
                break;
            }
        }
    }
    let _ = events.send(LinkEvent::Down(peer, generation));
}

async fn write_loop(
    mut writer: OwnedWriteHalf,
    mut seal: Direction,
    mut control: mpsc::UnboundedReceiver<NodeMessage>,
    mut media: mpsc::Receiver<NodeMessage>,
    peer: NodeId,
) {
    let mut buf = Vec::new();
    let mut ping = tokio::time::interval(PING_INTERVAL);
    loop {
        let message = tokio::select! {
            biased;
            message = control.recv() => match message {
                Some(m) => m,
                None => break,
            },
            Some(message) = media.recv() => message,
            _ = ping.tick() => NodeMessage::Ping,
        };
        buf.clear();
        message.encode(&mut buf);
        let written =
            tokio::time::timeout(LINK_TIMEOUT, write_frame(&mut writer, &mut seal, &buf)).await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::info!(node = %peer, error = %e, "relay link write failed");
                break;
            }
            Err(_) => {
                tracing::warn!(node = %peer, "relay link stalled, closing it");
                break;
            }
        }
    }
    // Dropping the writer closes our side; the reader then ends and reports the link down.
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn pair(
        dialer_secret: &[u8],
        acceptor_secret: &[u8],
    ) -> (Result<NodeId, LinkError>, Result<NodeId, LinkError>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (events_a, _keep_a) = mpsc::unbounded_channel();
        let (events_d, _keep_d) = mpsc::unbounded_channel();
        let acceptor_secret = acceptor_secret.to_vec();
        let accept = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            establish(stream, acceptor_secret, NodeId(2), false, 0, events_a).await
        });
        let stream = TcpStream::connect(addr).await.unwrap();
        let dialed = establish(stream, dialer_secret.to_vec(), NodeId(1), true, 0, events_d).await;
        (dialed, accept.await.unwrap())
    }

    #[tokio::test]
    async fn nodes_with_the_same_secret_link_up_and_exchange_messages() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (events_a, mut rx_a) = mpsc::unbounded_channel();
        let (events_d, mut rx_d) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            establish(stream, b"s3cret".to_vec(), NodeId(2), false, 7, events_a).await
        });
        let stream = TcpStream::connect(addr).await.unwrap();
        let peer = establish(stream, b"s3cret".to_vec(), NodeId(1), true, 3, events_d)
            .await
            .unwrap();
        assert_eq!(peer, NodeId(2));
        let Some(LinkEvent::Up(NodeId(1), to_dialer)) = rx_a.recv().await else {
            panic!("acceptor did not see the link");
        };
        let Some(LinkEvent::Up(NodeId(2), to_acceptor)) = rx_d.recv().await else {
            panic!("dialer did not see the link");
        };
        to_acceptor.send(NodeMessage::SnapshotEnd);
        to_dialer.send(NodeMessage::SnapshotEnd);
        for rx in [&mut rx_a, &mut rx_d] {
            loop {
                match rx.recv().await {
                    Some(LinkEvent::Message(_, NodeMessage::SnapshotEnd)) => break,
                    Some(LinkEvent::Message(_, NodeMessage::Ping)) => {}
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        // One side goes away: the other sees the link down.
        drop(to_acceptor);
        loop {
            match rx_a.recv().await {
                Some(LinkEvent::Down(NodeId(1), 7)) => break,
                Some(LinkEvent::Message(..)) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_peer_with_another_secret_is_refused() {
        let (dialed, accepted) = pair(b"right", b"wrong").await;
        assert!(
            matches!(dialed, Err(LinkError::Authentication)),
            "{dialed:?}"
        );
        assert!(
            matches!(accepted, Err(LinkError::Authentication)),
            "{accepted:?}"
        );
    }

    #[tokio::test]
    async fn a_stranger_is_refused_at_the_greeting() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accept = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (events, _rx) = mpsc::unbounded_channel();
            establish(stream, b"x".to_vec(), NodeId(2), false, 0, events).await
        });
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n..................")
            .await
            .unwrap();
        let result = accept.await.unwrap();
        assert!(matches!(result, Err(LinkError::BadGreeting)), "{result:?}");
    }
}
