//! The three scenarios, modelled on LiveKit's published load test so figures compare:
//! `audio` (P publishers of Opus, N listeners), `meeting` (N participants each publishing
//! video and audio and receiving everyone), `livestream` (1 publisher, N viewers). A scenario
//! becomes a list of peers for the SFU run and the same tracks and fan-out for the floor run.

use std::time::Duration;

use crate::peer::PeerSpec;
use crate::traffic::Layer;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    Audio,
    Meeting,
    Livestream,
}

/// Which video layer a non-simulcast publisher sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerName {
    Q,
    H,
    F,
}

/// Traffic settings from the command line.
#[derive(Debug, Clone)]
pub struct Traffic {
    pub simulcast: bool,
    /// Video as one scalable VP9 stream with q, h and f as its spatial layers.
    pub svc: bool,
    pub audio_kbps: u32,
    pub q_kbps: u32,
    pub h_kbps: u32,
    pub f_kbps: u32,
    pub fps: u32,
    /// The single layer sent without simulcast; `None` picks per scenario.
    pub single_layer: Option<LayerName>,
    pub keyframe_interval: Duration,
    /// Publishers in the audio scenario.
    pub audio_publishers: usize,
    /// The size subscribers report for every video they receive.
    pub view: Option<(u32, u32)>,
}

impl Traffic {
    fn layer(&self, name: LayerName) -> Layer {
        match name {
            LayerName::Q => Layer {
                rid: "q",
                width: 320,
                height: 180,
                kbps: self.q_kbps,
                fps: self.fps,
            },
            LayerName::H => Layer {
                rid: "h",
                width: 640,
                height: 360,
                kbps: self.h_kbps,
                fps: self.fps,
            },
            LayerName::F => Layer {
                rid: "f",
                width: 1280,
                height: 720,
                kbps: self.f_kbps,
                fps: self.fps,
            },
        }
    }

    /// What a video publisher sends: q, h and f with simulcast (or as the spatial layers of
    /// one SVC stream); otherwise one layer (h in a
    /// meeting, where tiles are small; f for a livestream, which is watched full size).
    fn video(&self, scenario: Scenario) -> Vec<Layer> {
        if self.simulcast || self.svc {
            return [LayerName::Q, LayerName::H, LayerName::F]
                .map(|l| self.layer(l))
                .to_vec();
        }
        let default = match scenario {
            Scenario::Livestream => LayerName::F,
            _ => LayerName::H,
        };
        vec![self.layer(self.single_layer.unwrap_or(default))]
    }
}

/// One published track as the floor sees it: who sends it and who receives copies.
#[derive(Debug, Clone)]
pub struct FloorTrack {
    pub publisher: usize,
    pub source: FloorSource,
    pub subscribers: Vec<usize>,
}

#[derive(Debug, Clone)]
pub enum FloorSource {
    Audio(u32),
    Video(Layer),
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct Plan {
    pub peers: Vec<PeerSpec>,
    /// (subscriber, track) streams that should deliver packets once everyone is connected.
    pub expected_streams: usize,
    pub publishers: usize,
    /// Peers that publish nothing.
    pub subscribers_only: usize,
    pub floor_tracks: Vec<FloorTrack>,
}

impl Plan {
    /// The scenario run in `rooms` independent rooms at once, `bench-0`, `bench-1`, ...
    pub fn rooms(scenario: Scenario, n: usize, traffic: &Traffic, rooms: usize) -> Plan {
        let mut all = Plan {
            peers: Vec::new(),
            expected_streams: 0,
            publishers: 0,
            subscribers_only: 0,
            floor_tracks: Vec::new(),
        };
        for r in 0..rooms {
            let plan = Plan::new(scenario, n, traffic, &format!("bench-{r}"));
            let offset = all.peers.len();
            all.floor_tracks
                .extend(plan.floor_tracks.into_iter().map(|t| FloorTrack {
                    publisher: t.publisher + offset,
                    source: t.source,
                    subscribers: t.subscribers.iter().map(|s| s + offset).collect(),
                }));
            all.peers.extend(plan.peers);
            all.expected_streams += plan.expected_streams;
            all.publishers += plan.publishers;
            all.subscribers_only += plan.subscribers_only;
        }
        all
    }

    pub fn new(scenario: Scenario, n: usize, traffic: &Traffic, room: &str) -> Plan {
        let video = traffic.video(scenario);
        let publishes = |audio: bool, video: bool, i: usize, name: String| PeerSpec {
            room: room.to_owned(),
            name,
            audio_kbps: audio.then_some(traffic.audio_kbps),
            video: if video {
                traffic.video(scenario)
            } else {
                Vec::new()
            },
            simulcast: traffic.simulcast,
            svc: traffic.svc,
            keyframe_interval: traffic.keyframe_interval,
            view: traffic.view,
            // With several nodes (`--nodes`), peers take turns: the first publisher on
            // node 0, and so on.
            node: i,
            seed: 0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d),
        };
        // (audio, video) per publisher, then the number of receive-only peers.
        let (publisher_kinds, listeners) = match scenario {
            Scenario::Audio => (vec![(true, false); traffic.audio_publishers], n),
            Scenario::Meeting => (vec![(true, true); n], 0),
            Scenario::Livestream => (vec![(true, true)], n),
        };
        let mut peers = Vec::new();
        for (i, &(a, v)) in publisher_kinds.iter().enumerate() {
            peers.push(publishes(a, v, i, format!("pub{i}")));
        }
        for i in 0..listeners {
            peers.push(publishes(false, false, peers.len(), format!("sub{i}")));
        }
        let total = peers.len();
        let mut floor_tracks = Vec::new();
        for (p, &(a, v)) in publisher_kinds.iter().enumerate() {
            // The SFU forwards every track to everyone else in the room.
            let subscribers: Vec<usize> = (0..total).filter(|&s| s != p).collect();
            if a {
                floor_tracks.push(FloorTrack {
                    publisher: p,
                    source: FloorSource::Audio(traffic.audio_kbps),
                    subscribers: subscribers.clone(),
                });
            }
            if v {
                for layer in &video {
                    floor_tracks.push(FloorTrack {
                        publisher: p,
                        source: FloorSource::Video(*layer),
                        subscribers: subscribers.clone(),
                    });
                }
            }
        }
        // With simulcast the SFU sends one down-track per published video track, not per
        // layer; the floor forwards every layer (it has no layer selection), which is what
        // the SFU does too until per-subscriber layer selection lands.
        let expected_streams = publisher_kinds
            .iter()
            .map(|&(a, v)| (usize::from(a) + usize::from(v)) * (total - 1))
            .sum();
        Plan {
            peers,
            expected_streams,
            publishers: publisher_kinds.len(),
            subscribers_only: listeners,
            floor_tracks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn traffic(simulcast: bool) -> Traffic {
        Traffic {
            simulcast,
            svc: false,
            audio_kbps: 32,
            q_kbps: 150,
            h_kbps: 500,
            f_kbps: 1700,
            fps: 30,
            single_layer: None,
            keyframe_interval: Duration::from_secs(3),
            audio_publishers: 10,
            view: None,
        }
    }

    #[test]
    fn shapes_match_the_scenarios() {
        let a = Plan::new(Scenario::Audio, 5, &traffic(false), "r");
        assert_eq!(a.peers.len(), 15);
        assert_eq!(a.expected_streams, 10 * 14);
        let m = Plan::new(Scenario::Meeting, 4, &traffic(false), "r");
        assert_eq!(m.expected_streams, 4 * 3 * 2);
        assert_eq!(m.floor_tracks.len(), 8);
        let l = Plan::new(Scenario::Livestream, 100, &traffic(true), "r");
        assert_eq!(l.expected_streams, 200);
        assert_eq!(l.floor_tracks.len(), 4);
        assert_eq!(l.peers[0].video.len(), 3);
    }

    #[test]
    fn rooms_repeat_the_scenario_with_their_own_peers() {
        let one = Plan::new(Scenario::Meeting, 4, &traffic(false), "r");
        let three = Plan::rooms(Scenario::Meeting, 4, &traffic(false), 3);
        assert_eq!(three.peers.len(), 3 * one.peers.len());
        assert_eq!(three.expected_streams, 3 * one.expected_streams);
        assert_eq!(three.publishers, 12);
        assert_eq!(three.peers[4].room, "bench-1");
        // Room 1's tracks are published and received by room 1's peers only.
        let room1: Vec<&FloorTrack> = three
            .floor_tracks
            .iter()
            .filter(|t| (4..8).contains(&t.publisher))
            .collect();
        assert_eq!(room1.len(), one.floor_tracks.len());
        assert!(room1
            .iter()
            .all(|t| t.subscribers.iter().all(|s| (4..8).contains(s))));
    }
}
