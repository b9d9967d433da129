//! RED for audio through the SFU in virtual time: Alice publishes Opus with RFC 2198
//! redundancy (str0m sends RED once both sides negotiated it), Bob negotiated RED, Carol did
//! not. One RTP datagram in ten toward Bob and Carol is lost. Bob gets RED, so str0m fills each
//! lost frame from the next packet's redundant block; Carol gets the primary block alone, as
//! plain Opus, and misses the lost frames. Both get exactly the frames Alice wrote.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sfu::{Protocol, Sfu, SfuConfig, SfuEvent, SfuOutput};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, MediaTime, Mid};
use str0m::net::Receive;
use str0m::{Candidate, Event, Input, Output, Rtc};

const SFU_ADDR: &str = "10.0.0.1:5000";
const FRAME: Duration = Duration::from_millis(20);
const FRAMES: u64 = 200;

struct Peer {
    name: &'static str,
    addr: SocketAddr,
    rtc: Rtc,
    pending: Option<SdpPendingOffer>,
    audio_mid: Option<Mid>,
    next_timeout: Instant,
    /// The frames received from others, as their payloads.
    received: Vec<Vec<u8>>,
    rtp_datagrams_in: u64,
}

impl Peer {
    fn new(name: &'static str, addr: &str, red: bool, now: Instant) -> Self {
        let addr: SocketAddr = addr.parse().expect("literal address");
        let mut rtc = Rtc::builder()
            .clear_codecs()
            .enable_opus(true, red)
            .build(now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").expect("host candidate"));
        Self {
            name,
            addr,
            rtc,
            pending: None,
            audio_mid: None,
            next_timeout: now,
            received: Vec::new(),
            rtp_datagrams_in: 0,
        }
    }

    fn offer_microphone(&mut self) -> String {
        let mut api = self.rtc.sdp_api();
        self.audio_mid =
            Some(api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None));
        let (offer, pending) = api.apply().expect("a change to offer");
        self.pending = Some(pending);
        offer.to_sdp_string()
    }
}

/// An SRTP packet (not RTCP, DTLS or STUN): RTP version 2, and a second byte that is not an
/// RTCP packet type (RFC 5761 4).
fn is_rtp(bytes: &[u8]) -> bool {
    matches!(bytes, [first, second, ..] if first & 0xc0 == 0x80 && !(192..=223).contains(second))
}

fn frame_payload(frame_no: u64) -> Vec<u8> {
    vec![0xf8, frame_no as u8, (frame_no >> 8) as u8, 0xed]
}

#[test]
fn red_reaches_red_subscribers_as_red_and_others_as_opus() {
    let start = Instant::now();
    let mut now = start;
    let sfu_addr: SocketAddr = SFU_ADDR.parse().expect("literal address");
    let mut sfu = Sfu::new(SfuConfig::new(sfu_addr, None), now);
    let mut peers = [
        Peer::new("Alice", "10.0.0.2:1000", true, now),
        Peer::new("Bob", "10.0.0.3:1000", true, now),
        Peer::new("Carol", "10.0.0.4:1000", false, now),
    ];
    let mut ids = Vec::new();
    for peer in &mut peers {
        let joined = sfu
            .join("red", peer.name, sfu::Permissions::ALL, now)
            .expect("within the limits");
        ids.push(joined.participant);
        let offer = peer.offer_microphone();
        let answer = sfu
            .accept_offer(joined.participant, &offer, now)
            .expect("SFU answers");
        let answer = SdpAnswer::from_sdp_string(&answer).expect("valid answer");
        let pending = peer.pending.take().expect("offer pending");
        peer.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .expect("answer accepted");
    }

    let mut network: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)> = VecDeque::new();
    let mut next_frame = start + Duration::from_secs(1);
    let mut frame_no: u64 = 0;
    let end = next_frame + FRAME * FRAMES as u32 + Duration::from_secs(1);

    while now < end {
        for peer in &mut peers {
            loop {
                match peer.rtc.poll_output() {
                    Ok(Output::Timeout(t)) => {
                        peer.next_timeout = t;
                        break;
                    }
                    Ok(Output::Transmit(t)) => {
                        network.push_back((t.source, t.destination, t.contents.to_vec()))
                    }
                    Ok(Output::Event(Event::MediaData(data)))
                        if Some(data.mid) != peer.audio_mid =>
                    {
                        peer.received.push(data.data.to_vec());
                    }
                    Ok(Output::Event(_)) => {}
                    Err(e) => panic!("{}: {e}", peer.name),
                }
            }
        }
        while let Some(output) = sfu.poll_output() {
            match output {
                SfuOutput::Transmit(t) => {
                    network.push_back((t.source, t.destination, t.contents.to_vec()))
                }
                SfuOutput::Event(SfuEvent::Offer { to, sdp, .. }) => {
                    let at = ids
                        .iter()
                        .position(|id| *id == to)
                        .expect("known participant");
                    let offer = SdpOffer::from_sdp_string(&sdp).expect("valid offer");
                    let answer = peers[at]
                        .rtc
                        .sdp_api()
                        .accept_offer(offer)
                        .expect("offer accepted");
                    sfu.accept_answer(to, &answer.to_sdp_string(), now)
                        .expect("answer accepted");
                }
                _ => {}
            }
        }
        if let Some((from, to, bytes)) = network.pop_front() {
            if to == sfu_addr {
                sfu.handle_receive(now, Protocol::Udp, from, to, &bytes);
            } else if let Some(peer) = peers.iter_mut().find(|p| p.addr == to) {
                if is_rtp(&bytes) && from == sfu_addr {
                    peer.rtp_datagrams_in += 1;
                    // One in ten lost, never two in a row: what one level of RED repairs.
                    if peer.rtp_datagrams_in % 10 == 5 {
                        continue;
                    }
                }
                let receive =
                    Receive::new(Protocol::Udp, from, to, &bytes).expect("valid datagram");
                peer.rtc
                    .handle_input(Input::Receive(now, receive))
                    .expect("input accepted");
            }
            continue;
        }

        let next = peers
            .iter()
            .map(|p| p.next_timeout)
            .chain([sfu.next_timeout(), next_frame])
            .min();
        now = next
            .unwrap_or(now + FRAME)
            .max(now + Duration::from_millis(1));
        if now >= sfu.next_timeout() {
            sfu.handle_timeout(now);
        }
        for peer in &mut peers {
            if now >= peer.next_timeout {
                peer.rtc
                    .handle_input(Input::Timeout(now))
                    .expect("timeout handled");
            }
        }
        if now >= next_frame && frame_no < FRAMES {
            next_frame = now + FRAME;
            let alice = &mut peers[0];
            let mid = alice.audio_mid.expect("offered");
            let writer = alice.rtc.writer(mid).expect("a writer for the microphone");
            let pt = writer
                .payload_params()
                .find(|p| p.spec().codec == Codec::Opus)
                .map(|p| p.pt())
                .expect("opus negotiated");
            let time = MediaTime::new(frame_no * 960, str0m::media::Frequency::FORTY_EIGHT_KHZ);
            writer
                .audio_level(-20, true)
                .write(pt, now, time, frame_payload(frame_no))
                .expect("frame written");
            frame_no += 1;
        }
    }

    let sent: Vec<Vec<u8>> = (0..FRAMES).map(frame_payload).collect();
    let [_, bob, carol] = &peers;
    for peer in [bob, carol] {
        assert!(
            peer.received.iter().all(|f| sent.contains(f)),
            "{} received a frame Alice did not write (RED bytes as Opus?): {:?}",
            peer.name,
            peer.received.iter().find(|f| !sent.contains(f))
        );
        assert!(
            peer.rtp_datagrams_in >= FRAMES - 5,
            "{}: {} RTP datagrams",
            peer.name,
            peer.rtp_datagrams_in
        );
    }
    let mut bob_frames = bob.received.clone();
    bob_frames.sort();
    bob_frames.dedup();
    let lost = (FRAMES / 10) as usize;
    assert!(
        bob_frames.len() + 2 >= FRAMES as usize,
        "Bob (RED) recovered the lost frames: {} of {FRAMES}",
        bob_frames.len()
    );
    assert!(
        carol.received.len() + lost - 2 <= FRAMES as usize
            && carol.received.len() + lost + 2 >= FRAMES as usize,
        "Carol (Opus) misses what was lost: {} of {FRAMES}",
        carol.received.len()
    );
}
