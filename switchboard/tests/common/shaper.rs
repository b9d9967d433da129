//! A loopback UDP proxy that shapes one direction like a bottleneck link: a rate limit and a
//! drop-tail queue of about 100 ms. The kernel here has no netem, and shaping on the server's
//! own interface would throttle every peer (FIELD-NOTES), so each shaped client gets one.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::watch;

/// Effectively no limit.
pub const UNLIMITED: u64 = 1_000_000_000;

pub struct Shaper {
    /// Where the client should send: stands in for the server's media address.
    pub addr: SocketAddr,
    downlink_bps: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
    trace: Arc<Mutex<Vec<DownlinkPacket>>>,
}

/// One RTP packet toward the client, as the link saw it (the header is in the clear under
/// SRTP): for diagnosing what a drop did to a layer switch.
#[derive(Debug, Clone, Copy)]
pub struct DownlinkPacket {
    pub at: Instant,
    pub ssrc: u32,
    pub payload_type: u8,
    pub seq: u16,
    pub len: usize,
    /// Dropped at the tail of the full queue.
    pub dropped: bool,
}

impl Drop for Shaper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Shaper {
    /// Proxy to `server`, limiting server-to-client traffic to `downlink_bps`.
    pub async fn start(server: SocketAddr, downlink_bps: u64) -> Shaper {
        let front = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let back = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = front.local_addr().expect("addr");
        let (tx, rx) = watch::channel(downlink_bps);
        let trace = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(relay(front, back, server, rx, trace.clone()));
        Shaper {
            addr,
            downlink_bps: tx,
            task,
            trace,
        }
    }

    /// Every RTP packet toward the client so far, queued or dropped.
    pub fn downlink_trace(&self) -> Vec<DownlinkPacket> {
        self.trace.lock().expect("trace").clone()
    }

    pub fn set_downlink(&self, bps: u64) {
        let _ = self.downlink_bps.send(bps);
    }
}

async fn relay(
    front: UdpSocket,
    back: UdpSocket,
    server: SocketAddr,
    rate: watch::Receiver<u64>,
    trace: Arc<Mutex<Vec<DownlinkPacket>>>,
) {
    let mut client: Option<SocketAddr> = None;
    let mut queue: VecDeque<Vec<u8>> = VecDeque::new();
    let mut queued_bytes = 0usize;
    let mut next_send = Instant::now();
    let (mut up, mut down) = (vec![0u8; 2048], vec![0u8; 2048]);
    loop {
        let bps = (*rate.borrow()).max(1);
        let queue_limit = ((bps / 8) as usize / 10).max(4_000);
        tokio::select! {
            received = front.recv_from(&mut up) => {
                let Ok((len, source)) = received else { continue };
                client = Some(source);
                let _ = back.send_to(&up[..len], server).await;
            }
            received = back.recv_from(&mut down) => {
                let Ok((len, _)) = received else { continue };
                let fits = queued_bytes + len <= queue_limit;
                if fits {
                    queued_bytes += len;
                    queue.push_back(down[..len].to_vec());
                }
                if let Some(p) = rtp_header(&down[..len]) {
                    trace.lock().expect("trace").push(DownlinkPacket { dropped: !fits, ..p });
                }
            }
            _ = tokio::time::sleep_until(next_send.into()), if !queue.is_empty() => {
                let Some(packet) = queue.pop_front() else { continue };
                queued_bytes -= packet.len();
                if let Some(client) = client {
                    let _ = front.send_to(&packet, client).await;
                }
                let airtime = Duration::from_nanos(packet.len() as u64 * 8 * 1_000_000_000 / bps);
                next_send = next_send.max(Instant::now()) + airtime;
            }
        }
    }
}

/// The clear RTP header fields of an SRTP packet; `None` for STUN, DTLS and RTCP.
fn rtp_header(datagram: &[u8]) -> Option<DownlinkPacket> {
    if datagram.len() < 12 || datagram[0] >> 6 != 2 || (192..=223).contains(&datagram[1]) {
        return None;
    }
    Some(DownlinkPacket {
        at: Instant::now(),
        ssrc: u32::from_be_bytes([datagram[8], datagram[9], datagram[10], datagram[11]]),
        payload_type: datagram[1] & 0x7f,
        seq: u16::from_be_bytes([datagram[2], datagram[3]]),
        len: datagram.len(),
        dropped: false,
    })
}
