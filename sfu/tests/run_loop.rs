//! What the SFU relies on instead of str0m's run-loop contract, pinned with str0m's own
//! peers in virtual time.
//!
//! str0m documents that every mutation of an `Rtc`, a write included, is followed by
//! draining `poll_output` until it returns a timeout, before the next mutation. The SFU
//! does not keep to that on the send side: it feeds a whole receive batch to the engine and
//! fans each packet out (`Sfu::handle_receive`), writing several packets to a subscriber's
//! send streams (several layers' worth of video, a keyframe burst, audio) before draining
//! that subscriber once; draining after every write was most of the per-packet cost with
//! many subscribers.
//!
//! Why that is safe, from str0m's code: `StreamTx::write_rtp` only appends to the stream's
//! send queue, with a queue time fixed at the next timeout ("only drive time forward from
//! handle_input"), and taking the `Rtc` mutably through `direct_api()` re-arms its poll, so
//! the next `poll_output` sees every packet written since the last drain, as if all had
//! been written in the same instant. These tests fail if a str0m upgrade changes that: a
//! packet lost, reordered or held back, or a NACK no longer answered.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::bwe::Bitrate;
use str0m::change::SdpOffer;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, Ssrc};
use str0m::{Candidate, Event, Input, Output, Rtc};

const SENDER: &str = "10.0.0.1:5000";
const RECEIVER: &str = "10.0.0.2:6000";

struct Peer {
    addr: SocketAddr,
    rtc: Rtc,
    next_timeout: Instant,
    /// (ssrc, sequence number, when) of every RTP packet received, in arrival order.
    received: Vec<(Ssrc, u16, Instant)>,
}

impl Peer {
    fn new(addr: &str, rtc: Rtc) -> Self {
        let addr: SocketAddr = addr.parse().expect("literal address");
        let mut peer = Self {
            addr,
            rtc,
            next_timeout: Instant::now(),
            received: Vec::new(),
        };
        peer.rtc
            .add_local_candidate(Candidate::host(addr, "udp").expect("host candidate"));
        peer
    }

    /// Drains `poll_output` until a timeout in the future, handling those already due on the
    /// way, as the SFU drains a participant (`Sfu::drain_rtc`). Returns how many datagrams
    /// it sent and how many due timeouts it handled.
    fn drain(
        &mut self,
        now: Instant,
        network: &mut VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>,
    ) -> (usize, usize) {
        let mut due_timeouts = 0;
        let mut sent = 0;
        loop {
            match self.rtc.poll_output().expect("no error") {
                Output::Timeout(at) if at <= now && due_timeouts < 1000 => {
                    due_timeouts += 1;
                    self.rtc
                        .handle_input(Input::Timeout(now))
                        .expect("timeout handled");
                }
                Output::Timeout(at) => {
                    self.next_timeout = at;
                    return (sent, due_timeouts);
                }
                Output::Transmit(t) => {
                    sent += 1;
                    network.push_back((t.source, t.destination, t.contents.to_vec()))
                }
                Output::Event(Event::RtpPacket(p)) => {
                    self.received
                        .push((p.header.ssrc, p.header.sequence_number, now))
                }
                Output::Event(_) => {}
            }
        }
    }
}

/// The sender as the SFU configures a subscriber's connection: RTP mode, bandwidth
/// estimation (so the pacer holds video to the estimate), ICE lite.
fn sfu_like_sender() -> Rtc {
    Rtc::builder()
        .set_ice_lite(true)
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true)
        .enable_bwe(Some(Bitrate::kbps(800)))
        .build(Instant::now())
}

fn receiver() -> Rtc {
    Rtc::builder()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true)
        .build(Instant::now())
}

struct Call {
    sender: Peer,
    receiver: Peer,
    network: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>,
    now: Instant,
    /// The sender's streams: (mid, ssrc, payload type, next sequence number).
    streams: Vec<(Mid, Ssrc, Pt, u64)>,
    /// Drop the sender's next video datagram (the only ones this large).
    drop_next_video: bool,
    /// Where RTP time starts.
    start: Instant,
}

impl Call {
    /// The receiver offers to receive two videos and one audio (as a subscriber's browser
    /// answers the SFU's tracks); the sender answers; both connect.
    fn connect() -> Self {
        let mut sender = Peer::new(SENDER, sfu_like_sender());
        let mut receiver = Peer::new(RECEIVER, receiver());
        let mut api = receiver.rtc.sdp_api();
        let kinds = [MediaKind::Video, MediaKind::Video, MediaKind::Audio];
        let mids: Vec<Mid> = kinds
            .iter()
            .map(|k| api.add_media(*k, Direction::RecvOnly, None, None, None))
            .collect();
        let (offer, pending) = api.apply().expect("an offer");
        let offer = SdpOffer::from_sdp_string(&offer.to_sdp_string()).expect("offer parses");
        let answer = sender
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .expect("offer accepted");
        receiver
            .rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .expect("answer accepted");
        let now = Instant::now();
        let mut call = Self {
            sender,
            receiver,
            network: VecDeque::new(),
            now,
            streams: Vec::new(),
            drop_next_video: false,
            start: now,
        };
        let connected_by = call.now + Duration::from_secs(5);
        while !(call.sender.rtc.is_connected() && call.receiver.rtc.is_connected()) {
            assert!(
                call.now < connected_by,
                "ICE and DTLS connect in virtual time"
            );
            call.step();
        }
        let config = call.sender.rtc.codec_config().clone();
        let pt_of = |codec: Codec| {
            config
                .params()
                .iter()
                .find(|p| p.spec().codec == codec)
                .map(|p| p.pt())
                .expect("negotiated")
        };
        for (mid, kind) in mids.into_iter().zip(kinds) {
            let mut api = call.sender.rtc.direct_api();
            let stream = api
                .stream_tx_by_mid(mid, None)
                .expect("a send stream per m-line");
            let ssrc = stream.ssrc();
            let pt = if kind == MediaKind::Audio {
                pt_of(Codec::Opus)
            } else {
                pt_of(Codec::Vp8)
            };
            call.streams.push((mid, ssrc, pt, 1000));
        }
        call
    }

    /// Writes `count` packets to stream `index` without draining: as the SFU's fan-out does.
    fn write(&mut self, index: usize, count: usize, keyframe_start: bool) {
        let wallclock = self.now;
        let (_, ssrc, pt, seq) = &mut self.streams[index];
        let mut api = self.sender.rtc.direct_api();
        let stream = api.stream_tx(ssrc).expect("stream exists");
        let video = index < 2;
        for i in 0..count {
            let size = if video { 1100 } else { 80 };
            let mut payload = vec![0u8; size];
            // A VP8 payload descriptor: S bit on the first packet of a frame, and a
            // keyframe's P bit clear.
            payload[0] = if i == 0 { 0x10 } else { 0x00 };
            payload[1] = if keyframe_start && i == 0 { 0x00 } else { 0x01 };
            let rtp_time = (wallclock.duration_since(self.start).as_millis() * 90) as u32;
            let write = RtpWrite::new(*pt, (*seq).into(), rtp_time, wallclock, payload)
                .marker(i + 1 == count)
                .nackable(video);
            stream.write_rtp(write);
            *seq += 1;
        }
    }

    /// Drains both peers, delivers what is in flight, and moves virtual time to the next
    /// timeout when nothing is.
    fn step(&mut self) {
        self.sender.drain(self.now, &mut self.network);
        self.receiver.drain(self.now, &mut self.network);
        if let Some((from, to, bytes)) = self.network.pop_front() {
            if from == self.sender.addr && bytes.len() > 1000 && self.drop_next_video {
                self.drop_next_video = false;
                return;
            }
            let peer = if to == self.sender.addr {
                &mut self.sender
            } else {
                &mut self.receiver
            };
            let receive = Receive::new(Protocol::Udp, from, to, &bytes).expect("a datagram");
            peer.rtc
                .handle_input(Input::Receive(self.now, receive))
                .expect("input accepted");
            return;
        }
        let next = self.sender.next_timeout.min(self.receiver.next_timeout);
        self.now = next.max(self.now + Duration::from_millis(1));
        for peer in [&mut self.sender, &mut self.receiver] {
            if self.now >= peer.next_timeout {
                peer.rtc
                    .handle_input(Input::Timeout(self.now))
                    .expect("timeout handled");
            }
        }
    }

    /// Hands what the sender has sent to the receiver at once, without moving time or
    /// draining the sender, and says how many RTP packets of each SSRC the receiver got
    /// (padding and RTCP aside).
    fn deliver_now(&mut self) -> Vec<(Ssrc, usize)> {
        let before = self.receiver.received.len();
        let mut back = VecDeque::new();
        while let Some((from, to, bytes)) = self.network.pop_front() {
            if to != self.receiver.addr {
                back.push_back((from, to, bytes));
                continue;
            }
            let receive = Receive::new(Protocol::Udp, from, to, &bytes).expect("a datagram");
            self.receiver
                .rtc
                .handle_input(Input::Receive(self.now, receive))
                .expect("input accepted");
            self.receiver.drain(self.now, &mut back);
        }
        self.network = back;
        let mut per: Vec<(Ssrc, usize)> = Vec::new();
        for (ssrc, _, _) in &self.receiver.received[before..] {
            match per.iter_mut().find(|(s, _)| s == ssrc) {
                Some((_, n)) => *n += 1,
                None => per.push((*ssrc, 1)),
            }
        }
        per
    }

    /// Runs until `until` in virtual time.
    fn run_until(&mut self, until: Instant) {
        while self.now < until {
            self.step();
        }
    }

    /// Sequence numbers the receiver got per SSRC, in arrival order (duplicates removed).
    fn received_per_ssrc(&self) -> BTreeMap<u32, Vec<u16>> {
        let mut per: BTreeMap<u32, Vec<u16>> = BTreeMap::new();
        for (ssrc, seq, _) in &self.receiver.received {
            let list = per.entry(**ssrc).or_default();
            if !list.contains(seq) {
                list.push(*seq);
            }
        }
        per
    }
}

/// 50 rounds of what one receive batch makes the SFU write to one subscriber: a keyframe
/// burst on one video every tenth round, a few packets of the other video, audio, all
/// before one drain. Every packet arrives, each stream in order.
#[test]
fn several_writes_before_one_drain_all_leave_in_order() {
    let mut call = Call::connect();
    let mut written = [0usize; 3];
    for round in 0..50 {
        let burst = round % 10 == 0;
        let first = if burst { 12 } else { 3 };
        call.write(0, first, burst);
        call.write(1, 2, round == 0);
        call.write(2, 2, false);
        written[0] += first;
        written[1] += 2;
        written[2] += 2;
        let next_batch = call.now + Duration::from_millis(20);
        call.run_until(next_batch);
    }
    call.run_until(call.now + Duration::from_secs(2));

    let per_ssrc = call.received_per_ssrc();
    for (index, (_, ssrc, _, _)) in call.streams.iter().enumerate() {
        let got = per_ssrc.get(&**ssrc).cloned().unwrap_or_default();
        assert_eq!(
            got.len(),
            written[index],
            "stream {index}: every packet written arrives"
        );
        let expected: Vec<u16> = (1000..1000 + written[index] as u16).collect();
        assert_eq!(got, expected, "stream {index}: in the order written");
    }
}

/// Packets written between two drains leave with the next drain, not at some later timer:
/// audio (unpaced) in that very drain, video within the pacer's next few milliseconds
/// (which is what re-arming the poll on `direct_api()` guarantees).
#[test]
fn writes_between_drains_leave_at_the_next_drain() {
    let mut call = Call::connect();
    // Let the first keyframes go, so the pacer has nothing queued.
    call.write(0, 1, true);
    call.write(1, 1, true);
    call.run_until(call.now + Duration::from_millis(500));
    let (audio, video) = (call.streams[2].1, call.streams[0].1);
    for _ in 0..20 {
        let before = call.receiver.received.len();
        let written_at = call.now;
        call.write(2, 1, false);
        call.write(0, 1, false);
        call.run_until(call.now + Duration::from_millis(40));
        let arrived: Vec<_> = call.receiver.received[before..].to_vec();
        let delay_of = |ssrc: Ssrc| {
            arrived
                .iter()
                .find(|(s, _, _)| *s == ssrc)
                .map(|(_, _, at)| at.duration_since(written_at))
        };
        assert_eq!(
            delay_of(audio),
            Some(Duration::ZERO),
            "audio leaves in the drain after its write: {arrived:?}"
        );
        let video_delay = delay_of(video).expect("the video packet arrives");
        assert!(
            video_delay <= Duration::from_millis(5),
            "video leaves within the pacer's next steps, not at a later timer: {video_delay:?}"
        );
    }
}

/// A packet lost on the way is still answered from the NACK history when it was written in
/// a batch: the receiver gets it, by retransmission.
#[test]
fn a_packet_written_in_a_batch_and_lost_is_retransmitted() {
    let mut call = Call::connect();
    call.write(0, 1, true);
    call.run_until(call.now + Duration::from_millis(500));
    // The first video packet of this batch is lost on the way.
    call.drop_next_video = true;
    call.write(0, 6, false);
    for _ in 0..25 {
        call.write(0, 2, false);
        call.run_until(call.now + Duration::from_millis(40));
    }
    let ssrc = call.streams[0].1;
    let got = call.received_per_ssrc().remove(&*ssrc).unwrap_or_default();
    let written = 1 + 6 + 50;
    let mut sorted = got.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (1000..1000 + written as u16).collect::<Vec<_>>(),
        "every packet arrives, the lost one by retransmission"
    );
    assert_ne!(got, sorted, "one packet arrived late, retransmitted");
}

/// What the vendored str0m's patches 5 and 6 (vendor/PATCHES.md) buy the fan-out, which
/// writes one audio packet, or a video frame, to each subscriber and drains it once: audio
/// leaves without a timeout pass, and a frame's packets after one, in the same drain. Before
/// them, every packet waited for a pass of its own (a queue snapshot of every stream, the
/// bandwidth estimator, every timer), and a frame's second packet for the next timer.
#[test]
fn a_drain_sends_audio_without_a_timeout_pass_and_a_frame_after_one() {
    let mut call = Call::connect();
    call.write(0, 1, true);
    call.write(1, 1, true);
    call.run_until(call.now + Duration::from_millis(500));
    let (video, audio) = (call.streams[0].1, call.streams[2].1);
    for _ in 0..10 {
        call.write(2, 2, false);
        let (_, passes) = call.sender.drain(call.now, &mut call.network);
        assert_eq!(passes, 0, "audio needs no timeout pass");
        assert_eq!(
            call.deliver_now(),
            [(audio, 2)],
            "both audio packets left in the drain"
        );
        call.run_until(call.now + Duration::from_millis(20));

        call.write(0, 4, false);
        let (_, passes) = call.sender.drain(call.now, &mut call.network);
        assert_eq!(passes, 1, "a frame needs one timeout pass");
        assert_eq!(
            call.deliver_now(),
            [(video, 4)],
            "the frame's four packets left in the drain"
        );
        call.run_until(call.now + Duration::from_millis(40));
    }
}
