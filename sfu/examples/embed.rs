//! Embedding the SFU without Switchboard's signaling or sockets.
//!
//! Two str0m peers ("Alice" and "Bob", standing in for browsers) join one room of a sans-IO
//! `Sfu`. SDP goes straight between the values, and datagrams travel over an in-memory network
//! in virtual time, so this runs instantly and deterministically. Alice sends Opus frames;
//! Bob receives them through the SFU on the transceiver the SFU offered him.
//!
//! Run with `cargo run -p switchboard-sfu --example embed`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sfu::{ParticipantId, Protocol, Sfu, SfuConfig, SfuEvent, SfuOutput};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, MediaTime, Mid};
use str0m::net::Receive;
use str0m::{Candidate, Event, Input, Output, Rtc};

const SFU_ADDR: &str = "10.0.0.1:5000";
const FRAME: Duration = Duration::from_millis(20);

/// A client peer: a plain str0m `Rtc`, as a browser would be.
struct Peer {
    name: &'static str,
    addr: SocketAddr,
    rtc: Rtc,
    id: Option<ParticipantId>,
    pending: Option<SdpPendingOffer>,
    audio_mid: Option<Mid>,
    next_timeout: Instant,
    frames_received: usize,
}

impl Peer {
    fn new(name: &'static str, addr: &str, now: Instant) -> Self {
        let addr: SocketAddr = addr.parse().expect("literal address");
        let mut rtc = Rtc::builder()
            .clear_codecs()
            .enable_opus(true, false)
            .build(now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").expect("host candidate"));
        Self {
            name,
            addr,
            rtc,
            id: None,
            pending: None,
            audio_mid: None,
            next_timeout: now,
            frames_received: 0,
        }
    }

    /// Offer one send-only audio track, as a browser publishing its microphone would.
    fn offer_microphone(&mut self) -> String {
        let mut api = self.rtc.sdp_api();
        self.audio_mid =
            Some(api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None));
        let (offer, pending) = api.apply().expect("a change to offer");
        self.pending = Some(pending);
        offer.to_sdp_string()
    }
}

/// What happened during a call.
pub struct CallSummary {
    /// Audio frames Bob received from Alice through the SFU.
    pub frames_received_by_bob: usize,
    /// Every event the SFU emitted, in order.
    pub events: Vec<SfuEvent>,
    pub alice: ParticipantId,
    pub bob: ParticipantId,
}

/// Runs the call for `duration` of virtual time. From `bob_silent_after` on, the network drops
/// everything Bob sends, as if his machine had lost its connection.
pub fn run(duration: Duration, bob_silent_after: Option<Duration>) -> CallSummary {
    let start = Instant::now();
    let mut now = start;
    let sfu_addr: SocketAddr = SFU_ADDR.parse().expect("literal address");
    let mut sfu = Sfu::new(SfuConfig::new(sfu_addr, None), now);
    let mut peers = [
        Peer::new("Alice", "10.0.0.2:1000", now),
        Peer::new("Bob", "10.0.0.3:1000", now),
    ];

    // Signaling, in-process: join, offer, answer.
    for peer in &mut peers {
        let joined = sfu
            .join("demo", peer.name, sfu::Permissions::ALL, now)
            .expect("within the limits");
        peer.id = Some(joined.participant);
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

    // The network: datagrams in flight (from, to, bytes), delivered at once.
    let mut network: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)> = VecDeque::new();
    let mut next_frame = start;
    let mut frame_no: u64 = 0;
    let mut events = Vec::new();
    let bob_addr = peers[1].addr;

    while now < start + duration {
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
                        peer.frames_received += 1;
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
                // The SFU adds the other participants' tracks by renegotiating.
                SfuOutput::Event(SfuEvent::Offer { to, sdp, .. })
                    if peers.iter().any(|p| p.id == Some(to)) =>
                {
                    let peer = peers
                        .iter_mut()
                        .find(|p| p.id == Some(to))
                        .expect("known participant");
                    let offer = SdpOffer::from_sdp_string(&sdp).expect("valid offer");
                    let answer = peer
                        .rtc
                        .sdp_api()
                        .accept_offer(offer)
                        .expect("offer accepted");
                    sfu.accept_answer(to, &answer.to_sdp_string(), now)
                        .expect("answer accepted");
                }
                SfuOutput::Event(event) => events.push(event),
                // Only with several `Sfu`s sharing rooms (`SfuConfig::workers`).
                SfuOutput::RelayControl { .. } | SfuOutput::RelayMedia { .. } => {}
            }
        }
        if let Some((from, to, bytes)) = network.pop_front() {
            let bob_silent = bob_silent_after.is_some_and(|after| now >= start + after);
            if bob_silent && from == bob_addr {
                continue;
            }
            if to == sfu_addr {
                sfu.handle_receive(now, Protocol::Udp, from, to, &bytes);
            } else if let Some(peer) = peers.iter_mut().find(|p| p.addr == to) {
                let receive =
                    Receive::new(Protocol::Udp, from, to, &bytes).expect("valid datagram");
                peer.rtc
                    .handle_input(Input::Receive(now, receive))
                    .expect("input accepted");
            }
            continue;
        }

        // Nothing in flight: advance virtual time to the next thing that happens.
        let next = peers
            .iter()
            .map(|p| p.next_timeout)
            .chain([sfu.next_timeout(), next_frame])
            .min();
        // At least a millisecond per step, so the clock always moves.
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
        if now >= next_frame {
            next_frame = now + FRAME;
            let alice = &mut peers[0];
            if let Some(mid) = alice.audio_mid {
                if let Some(writer) = alice.rtc.writer(mid) {
                    let pt = writer
                        .payload_params()
                        .find(|p| p.spec().codec == Codec::Opus)
                        .map(|p| p.pt());
                    if let Some(pt) = pt {
                        let time = MediaTime::new(
                            frame_no * 960,
                            str0m::media::Frequency::FORTY_EIGHT_KHZ,
                        );
                        // A talking level (RFC 6464, -20 dBov): the SFU reports Alice as
                        // the active speaker.
                        let _ = writer.audio_level(-20, true).write(
                            pt,
                            now,
                            time,
                            vec![0xf8, frame_no as u8, 0xfe, 0xed],
                        );
                        frame_no += 1;
                    }
                }
            }
        }
    }
    CallSummary {
        frames_received_by_bob: peers[1].frames_received,
        events,
        alice: peers[0].id.expect("joined"),
        bob: peers[1].id.expect("joined"),
    }
}

#[allow(dead_code)] // `main` is unused when the integration test includes this file.
fn main() {
    let call = run(Duration::from_secs(5), None);
    println!(
        "Bob received {} audio frames from Alice through the SFU in 5 s of virtual time",
        call.frames_received_by_bob
    );
}
