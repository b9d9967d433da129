//! The floor: the least work an SFU must do per packet on this machine. One thread receives
//! with `recvmmsg`, decrypts each SRTP packet once, encrypts one copy per subscriber (own SSRC,
//! own key) and sends the copies with `sendmmsg`. No ICE, DTLS, RTCP, pacing or rewriting
//! beyond the SSRC. It is fed the same synthetic traffic with the same fan-out as the SFU run
//! and measured the same way: receivers check sequence numbers and send stamps, and the
//! forwarding thread's CPU comes from /proc.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use datagram::{DatagramBatch, MAX_BATCH};
use tokio::net::UdpSocket;

use crate::driver::{open_window, PhaseSettings};
use crate::procstat;
use crate::report::{self, PeerCounts, PhaseCosts, PhaseReport};
use crate::scenario::{FloorSource, Plan};
use crate::srtp::{rtp_header, rtp_header_len, GcmContext, TAG};
use crate::stats::{now_micros, Counters, SharedCounters, Streams};
use crate::traffic::{read_stamp, AudioSource, MediaPacket, VideoSource};

const MAX_DATAGRAM: usize = 1500;
/// Incoming SSRCs are this plus the track index; outgoing ones are unique per copy.
const IN_SSRC_BASE: u32 = 0x1000_0000;
const OPUS_PT: u8 = 111;
const VP8_PT: u8 = 96;

fn publisher_key(p: usize) -> GcmContext {
    GcmContext::from_seed(0xf100_0000 + p as u64)
}

fn subscriber_key(s: usize) -> GcmContext {
    GcmContext::from_seed(0x5b00_0000 + s as u64)
}

/// The SSRC of subscriber `s`'s copy of track `t`: distinct per copy, as an SFU's are.
fn out_ssrc(s: usize, t: usize) -> u32 {
    0x2000_0000u32
        .wrapping_add((s as u32) << 10)
        .wrapping_add(t as u32)
}

/// One track's fan-out as the forwarding thread sees it.
struct FwdTrack {
    publisher: usize,
    copies: Vec<(SocketAddr, usize, u32)>,
}

/// Run the floor for `plan` and measure it.
pub async fn run(plan: &Plan, s: &PhaseSettings) -> anyhow::Result<PhaseReport> {
    let counters: SharedCounters = Rc::new(RefCell::new(Counters::default()));
    let receivers: BTreeSet<usize> = plan
        .floor_tracks
        .iter()
        .flat_map(|t| t.subscribers.iter().copied())
        .collect();
    // Receivers first: the forwarder needs their addresses.
    let mut sink_addrs = vec![None; plan.peers.len()];
    let mut sinks = Vec::new();
    for &r in &receivers {
        let socket = bind_loopback()?;
        sink_addrs[r] = Some(socket.local_addr()?);
        sinks.push((r, UdpSocket::from_std(socket)?));
    }
    let tracks: Vec<FwdTrack> = plan
        .floor_tracks
        .iter()
        .enumerate()
        .map(|(t, track)| FwdTrack {
            publisher: track.publisher,
            copies: track
                .subscribers
                .iter()
                .filter_map(|&sub| Some((sink_addrs[sub]?, sub, out_ssrc(sub, t))))
                .collect(),
        })
        .collect();

    let forward_socket = StdUdpSocket::bind("127.0.0.1:0")?;
    forward_socket.set_read_timeout(Some(Duration::from_millis(50)))?;
    let forward_addr = forward_socket.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let publishers = plan.peers.len();
    let thread = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("floor".into())
            .spawn(move || {
                let _ = tid_tx.send(procstat::current_tid());
                forward_loop(&forward_socket, &tracks, publishers, &stop)
            })
            .context("starting the floor thread")?
    };
    let tid = tid_rx.recv().context("floor thread id")?;

    let flowing = Rc::new(std::cell::Cell::new(0usize));
    let done = Rc::new(std::cell::Cell::new(false));
    let mut tasks = Vec::new();
    for (r, socket) in sinks {
        tasks.push(tokio::task::spawn_local(sink(
            r,
            socket,
            counters.clone(),
            flowing.clone(),
            done.clone(),
        )));
    }
    let start = Instant::now();
    for (p, _) in plan.peers.iter().enumerate() {
        let owned: Vec<(usize, FloorSource)> = plan
            .floor_tracks
            .iter()
            .enumerate()
            .filter(|(_, t)| t.publisher == p)
            .map(|(i, t)| (i, t.source.clone()))
            .collect();
        if owned.is_empty() {
            continue;
        }
        // Publishers start one join interval apart, as in the SFU run: started together,
        // their keyframes would coincide forever and overflow socket buffers in bursts.
        tasks.push(tokio::task::spawn_local(publish(
            p,
            owned,
            forward_addr,
            start + s.join_interval * p as u32,
            counters.clone(),
            done.clone(),
        )));
    }

    // Streams flow within a frame or two of their publisher's start; then the same window as
    // the SFU's.
    let ready_deadline =
        start + s.join_interval * plan.peers.len() as u32 + Duration::from_secs(10);
    while flowing.get() < plan.expected_streams && Instant::now() < ready_deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(s.settle).await;
    open_window(&mut counters.borrow_mut());
    let floor_cpu0 = procstat::thread_cpu(tid).unwrap_or_default();
    let self_cpu0 = procstat::self_cpu().unwrap_or_default();
    let machine0 = procstat::machine_busy().unwrap_or_default();
    let window_start = Instant::now();
    while window_start.elapsed() < s.duration {
        tokio::time::sleep(Duration::from_secs(1).min(s.duration)).await;
        let elapsed = window_start.elapsed();
        let cpu = procstat::thread_cpu(tid)
            .unwrap_or_default()
            .saturating_sub(floor_cpu0);
        let extra = format!(
            "floor {:.0}%",
            cpu.as_secs_f64() * 100.0 / elapsed.as_secs_f64()
        );
        report::progress("floor", elapsed, s.duration, &counters.borrow(), &extra);
    }
    let window = window_start.elapsed();
    counters.borrow_mut().recording = false;
    let floor_cpu = procstat::thread_cpu(tid)
        .unwrap_or_default()
        .saturating_sub(floor_cpu0);
    let own_cpu = procstat::self_cpu()
        .unwrap_or_default()
        .saturating_sub(self_cpu0)
        .saturating_sub(floor_cpu);
    let machine_cpu = procstat::machine_busy()
        .unwrap_or_default()
        .saturating_sub(machine0);
    report::end_progress();
    done.set(true);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    stop.store(true, Ordering::Relaxed);
    let _ = thread.join();

    let c = counters.borrow();
    Ok(PhaseReport::new(
        &c,
        &PhaseCosts {
            window,
            server_cpu: floor_cpu,
            loadgen_cpu: own_cpu,
            machine_cpu,
            server_rss_start_kib: None,
            server_peak_rss_kib: None,
            receivers: receivers.len(),
            settled_after: s.settle,
        },
        &PeerCounts {
            total: plan.peers.len(),
            connected: plan.peers.len(),
            failed: 0,
            streams_expected: plan.expected_streams,
            streams_flowing: flowing.get(),
            send_drops: 0,
        },
    ))
}

fn bind_loopback() -> anyhow::Result<StdUdpSocket> {
    let socket = StdUdpSocket::bind("127.0.0.1:0")?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// One publisher: its tracks' synthetic media, SRTP-sealed, to the forwarder.
async fn publish(
    p: usize,
    tracks: Vec<(usize, FloorSource)>,
    to: SocketAddr,
    start: Instant,
    counters: SharedCounters,
    done: Rc<std::cell::Cell<bool>>,
) {
    let Ok(socket) = bind_loopback().and_then(|s| Ok(UdpSocket::from_std(s)?)) else {
        return;
    };
    let key = publisher_key(p);
    enum Src {
        Audio(AudioSource),
        Video(VideoSource),
    }
    let mut sources: Vec<(u32, u8, Src, u16)> = tracks
        .into_iter()
        .map(|(t, source)| {
            let seed = (p as u64 + 1) * 7919 + t as u64;
            let ssrc = IN_SSRC_BASE + t as u32;
            match source {
                FloorSource::Audio(kbps) => (
                    ssrc,
                    OPUS_PT,
                    Src::Audio(AudioSource::new(kbps, start, seed)),
                    1,
                ),
                FloorSource::Video(layer) => (
                    ssrc,
                    VP8_PT,
                    Src::Video(VideoSource::new(layer, Duration::from_secs(3), start, seed)),
                    1,
                ),
            }
        })
        .collect();
    let mut buf = vec![0u8; MAX_DATAGRAM + TAG];
    while !done.get() {
        let now = Instant::now();
        let mut packets: Vec<(u32, u8, u16, MediaPacket)> = Vec::new();
        for (ssrc, pt, src, seq) in &mut sources {
            match src {
                Src::Audio(a) => {
                    while let Some(pkt) = a.poll(now) {
                        packets.push((*ssrc, *pt, *seq, pkt));
                        *seq = seq.wrapping_add(1);
                    }
                }
                Src::Video(v) => {
                    while let Some(frame) = v.poll(now) {
                        for pkt in frame {
                            packets.push((*ssrc, *pt, *seq, pkt));
                            *seq = seq.wrapping_add(1);
                        }
                    }
                }
            }
        }
        for (ssrc, pt, seq, pkt) in packets {
            let len = 12 + pkt.payload.len();
            buf[..12].copy_from_slice(&rtp_header(pt, pkt.marker, seq, pkt.rtp_time, ssrc));
            buf[12..len].copy_from_slice(&pkt.payload);
            let Some(len) = key.seal(&mut buf, 12, len) else {
                continue;
            };
            if socket.send_to(&buf[..len], to).await.is_ok() {
                let mut c = counters.borrow_mut();
                if c.recording {
                    c.sent_packets += 1;
                    c.sent_bytes += pkt.payload.len() as u64;
                }
            }
        }
        let next = sources
            .iter()
            .map(|(_, _, s, _)| match s {
                Src::Audio(a) => a.next_at,
                Src::Video(v) => v.clock.next_at,
            })
            .min()
            .unwrap_or(now + Duration::from_millis(20));
        tokio::time::sleep_until(next.min(now + Duration::from_millis(50)).into()).await;
    }
}

/// One receiver: open each copy with its key and measure it like an SFU subscriber's packets.
async fn sink(
    r: usize,
    socket: UdpSocket,
    counters: SharedCounters,
    flowing: Rc<std::cell::Cell<usize>>,
    done: Rc<std::cell::Cell<bool>>,
) {
    let key = subscriber_key(r);
    let mut streams = Streams::default();
    let mut buf = vec![0u8; MAX_DATAGRAM + TAG];
    while !done.get() {
        let received =
            tokio::time::timeout(Duration::from_millis(100), socket.recv_from(&mut buf)).await;
        let Ok(Ok((len, _))) = received else {
            continue;
        };
        let packet = &mut buf[..len];
        let Some(header_len) = rtp_header_len(packet) else {
            continue;
        };
        let Some(plain) = key.open(packet, header_len) else {
            continue;
        };
        let seq = u64::from(u16::from_be_bytes([packet[2], packet[3]]));
        let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
        let Some(sent) = read_stamp(&packet[header_len..plain]) else {
            continue;
        };
        let stream = streams.get(ssrc);
        if !stream.seen() {
            flowing.set(flowing.get() + 1);
        }
        let mut c = counters.borrow_mut();
        if c.recording {
            c.udp_bytes += len as u64;
        }
        stream.on_packet(&mut c, seq, Some(sent), now_micros());
    }
    streams.report_jitter(&mut counters.borrow_mut());
}

/// The forwarding thread: batch in, decrypt once, seal a copy per subscriber, batch out;
/// the same batched I/O as the SFU's (the `datagram` crate).
fn forward_loop(socket: &StdUdpSocket, tracks: &[FwdTrack], publishers: usize, stop: &AtomicBool) {
    let in_keys: Vec<GcmContext> = (0..publishers).map(publisher_key).collect();
    let max_sub = tracks
        .iter()
        .flat_map(|t| t.copies.iter().map(|c| c.1))
        .max()
        .unwrap_or(0);
    let out_keys: Vec<GcmContext> = (0..=max_sub).map(subscriber_key).collect();
    let mut rx = DatagramBatch::new(MAX_BATCH, MAX_DATAGRAM + TAG);
    let mut tx = DatagramBatch::new(MAX_BATCH, MAX_DATAGRAM + TAG);
    while !stop.load(Ordering::Relaxed) {
        // Waits up to the socket's read timeout, so `stop` is seen.
        let n = rx.recv_wait(socket).unwrap_or(0);
        for i in 0..n {
            let Some((packet, _)) = rx.get_mut(i) else {
                continue;
            };
            let Some(header_len) = rtp_header_len(packet) else {
                continue;
            };
            let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
            let Some(track) = ssrc
                .checked_sub(IN_SSRC_BASE)
                .and_then(|t| tracks.get(t as usize))
            else {
                continue;
            };
            let Some(key) = in_keys.get(track.publisher) else {
                continue;
            };
            let Some(plain) = key.open(packet, header_len) else {
                continue;
            };
            let packet = &packet[..plain];
            for (addr, sub, copy_ssrc) in &track.copies {
                if tx.is_full() {
                    let _ = tx.send(socket);
                }
                let Some(out) = tx.next_buffer() else {
                    continue;
                };
                out[..plain].copy_from_slice(packet);
                out[8..12].copy_from_slice(&copy_ssrc.to_be_bytes());
                let Some(sealed) = out_keys[*sub].seal(out, header_len, plain) else {
                    continue;
                };
                tx.commit(sealed, *addr);
            }
        }
        let _ = tx.send(socket);
    }
}
