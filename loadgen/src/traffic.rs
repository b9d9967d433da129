//! Synthetic media without encoders: Opus-sized audio every 20 ms, VP8 layers at realistic
//! bitrates, frame rates and packet sizes, with real RFC 7741 payload descriptors and valid
//! keyframe headers every few seconds, so the SFU's keyframe logic sees what a browser sends;
//! and one scalable VP9 stream (`SvcSource`) shaped like Chromium's `L3T3_KEY`, with real
//! RFC 9628 payload descriptors, so the SFU's layer selection has to read every packet.
//! Every payload ends in an 8-byte send time (microseconds since the epoch) for latency.

use std::time::{Duration, Instant};

use crate::stats::now_micros;

/// Largest RTP payload we produce; browsers stay near 1,200 bytes to fit the path MTU.
const MAX_PAYLOAD: usize = 1_150;
/// VP8 payload descriptor size with X, I (15-bit), L and T set: 6 bytes.
const VP8_DESCRIPTOR: usize = 6;
/// The stamp at the end of every payload.
pub const STAMP: usize = 8;
const OPUS_FRAME: Duration = Duration::from_millis(20);

/// A video layer: its rid (for simulcast), frame size, rate and bitrate.
#[derive(Debug, Clone, Copy)]
pub struct Layer {
    pub rid: &'static str,
    pub width: u16,
    pub height: u16,
    pub kbps: u32,
    pub fps: u32,
}

/// One RTP packet's worth of synthetic media.
#[derive(Debug)]
pub struct MediaPacket {
    pub payload: Vec<u8>,
    pub marker: bool,
    /// RTP timestamp in the codec's clock (48 kHz Opus, 90 kHz VP8).
    pub rtp_time: u32,
}

/// A tiny deterministic generator (xorshift): sizes vary like real media without a `rand`
/// dependency or syscalls.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }
}

/// Opus at 20 ms: one packet per frame, sized around `kbps`.
#[derive(Debug)]
pub struct AudioSource {
    pub next_at: Instant,
    rtp_time: u32,
    mean_bytes: usize,
    rng: Rng,
}

impl AudioSource {
    pub fn new(kbps: u32, start: Instant, seed: u64) -> Self {
        // kbps * 1000 / 8 bits / 50 frames per second.
        let mean_bytes = (kbps as usize * 1000 / 8 / 50).clamp(STAMP + 2, MAX_PAYLOAD);
        Self {
            next_at: start,
            rtp_time: seed as u32,
            mean_bytes,
            rng: Rng(seed | 1),
        }
    }

    /// The next frame, if it is due; frames are never skipped, only sent late.
    pub fn poll(&mut self, now: Instant) -> Option<MediaPacket> {
        if now < self.next_at {
            return None;
        }
        self.next_at += OPUS_FRAME;
        // Speech frames vary +-25% around the mean, as Opus VBR does.
        let spread = self.mean_bytes / 4;
        let len = self
            .rng
            .range(self.mean_bytes - spread, self.mean_bytes + spread)
            .max(STAMP + 1);
        let mut payload = vec![0u8; len];
        // TOC byte: config 31 (CELT FB 20 ms), stereo flag clear, one frame.
        payload[0] = 31 << 3;
        for b in &mut payload[1..len - STAMP] {
            *b = self.rng.next() as u8;
        }
        stamp(&mut payload);
        let rtp_time = self.rtp_time;
        self.rtp_time = self.rtp_time.wrapping_add(960);
        Some(MediaPacket {
            payload,
            marker: false,
            rtp_time,
        })
    }
}

/// One VP8 layer: frames at `fps`, a keyframe every `keyframe_interval` or on request.
#[derive(Debug)]
pub struct VideoSource {
    pub layer: Layer,
    pub clock: FrameClock,
    picture_id: u16,
    tl0_pic_idx: u8,
    rtp_time: u32,
    delta_bytes: usize,
    key_bytes: usize,
    rng: Rng,
}

/// When frames are due, and which are keyframes: every `keyframe_interval`, and the next one
/// after a request.
#[derive(Debug)]
pub struct FrameClock {
    pub next_at: Instant,
    frame_interval: Duration,
    frames_per_keyframe: u64,
    /// Frames since the last keyframe.
    since_keyframe: u64,
    force_keyframe: bool,
}

impl FrameClock {
    fn new(fps: u32, keyframe_interval: Duration, start: Instant) -> Self {
        let fps = fps.max(1);
        Self {
            next_at: start,
            frame_interval: Duration::from_secs_f64(1.0 / f64::from(fps)),
            frames_per_keyframe: (keyframe_interval.as_secs_f64() * f64::from(fps))
                .round()
                .max(1.0) as u64,
            since_keyframe: 0,
            force_keyframe: true,
        }
    }

    /// A receiver asked for a keyframe (PLI/FIR): the next frame is one.
    pub fn request_keyframe(&mut self) {
        self.force_keyframe = true;
    }

    /// `Some(keyframe)` when a frame is due, with the frames since the last keyframe
    /// before it (0 for a keyframe).
    fn tick(&mut self, now: Instant) -> Option<(bool, u64)> {
        if now < self.next_at {
            return None;
        }
        self.next_at += self.frame_interval;
        let keyframe = self.force_keyframe || self.since_keyframe >= self.frames_per_keyframe;
        self.force_keyframe = false;
        if keyframe {
            self.since_keyframe = 0;
        }
        let position = self.since_keyframe;
        self.since_keyframe += 1;
        Some((keyframe, position))
    }
}

/// Keyframes are about this many times a delta frame, as with libvpx at camera content.
const KEY_TO_DELTA: usize = 6;

impl VideoSource {
    pub fn new(layer: Layer, keyframe_interval: Duration, start: Instant, seed: u64) -> Self {
        let clock = FrameClock::new(layer.fps, keyframe_interval, start);
        let delta_bytes = delta_frame_bytes(&layer, clock.frames_per_keyframe, VP8_DESCRIPTOR);
        Self {
            layer,
            clock,
            picture_id: (seed as u16) & 0x7fff,
            tl0_pic_idx: seed as u8,
            rtp_time: seed as u32,
            delta_bytes,
            key_bytes: delta_bytes * KEY_TO_DELTA,
            rng: Rng(seed | 1),
        }
    }

    /// The next frame's packets, if it is due.
    pub fn poll(&mut self, now: Instant) -> Option<Vec<MediaPacket>> {
        let (keyframe, _) = self.clock.tick(now)?;
        let base = if keyframe {
            self.key_bytes
        } else {
            self.delta_bytes
        };
        // Frame sizes vary +-20% around the mean.
        let spread = base / 5;
        let size = self.rng.range(base - spread, base + spread);
        let packets = self.packetize(size, keyframe);
        self.picture_id = (self.picture_id + 1) & 0x7fff;
        self.tl0_pic_idx = self.tl0_pic_idx.wrapping_add(1);
        self.rtp_time = self.rtp_time.wrapping_add(90_000 / self.layer.fps.max(1));
        Some(packets)
    }

    fn packetize(&mut self, frame_bytes: usize, keyframe: bool) -> Vec<MediaPacket> {
        let per_packet = MAX_PAYLOAD - VP8_DESCRIPTOR - STAMP;
        let count = frame_bytes.div_ceil(per_packet).max(1);
        // Even packet sizes, as libwebrtc's VP8 packetizer balances them.
        let body = frame_bytes.div_ceil(count).max(10);
        (0..count)
            .map(|i| {
                let first = i == 0;
                let mut payload = Vec::with_capacity(VP8_DESCRIPTOR + body + STAMP);
                payload.extend_from_slice(&vp8_descriptor(
                    first,
                    self.picture_id,
                    self.tl0_pic_idx,
                ));
                if first {
                    payload.extend_from_slice(&vp8_frame_header(
                        keyframe,
                        body as u32,
                        self.layer.width,
                        self.layer.height,
                    ));
                }
                while payload.len() < VP8_DESCRIPTOR + body {
                    payload.push(self.rng.next() as u8);
                }
                payload.extend_from_slice(&[0; STAMP]);
                stamp(&mut payload);
                MediaPacket {
                    payload,
                    marker: i + 1 == count,
                    rtp_time: self.rtp_time,
                }
            })
            .collect()
    }
}

/// A delta frame's mean size: one keyframe (`KEY_TO_DELTA` deltas' worth) plus the deltas
/// between two keyframes add up to the layer's bitrate.
fn delta_frame_bytes(layer: &Layer, frames_per_keyframe: u64, descriptor: usize) -> usize {
    let mean = layer.kbps as f64 * 1000.0 / 8.0 / f64::from(layer.fps.max(1));
    let n = frames_per_keyframe as f64;
    let delta = mean * n / (n - 1.0 + KEY_TO_DELTA as f64);
    (delta as usize).max(descriptor + STAMP + 4)
}

/// The longest VP9 descriptor `SvcSource` writes: 5 bytes, and the scalability structure
/// of three spatial layers with their sizes (13 more) on keyframes.
const VP9_DESCRIPTOR_MAX: usize = 5 + 13;

/// Chromium's temporal pattern with three temporal layers: T0, T2, T1, T2.
const TEMPORAL_PATTERN: [u8; 4] = [0, 2, 1, 2];

/// One scalable VP9 stream with a spatial layer per `Layer` (lowest first) and three temporal
/// layers, as Chromium's k-SVC (`L3T3_KEY`) sends it: each picture carries a frame of every
/// spatial layer; on keyframes the upper layers predict from the one below (D bit) and the
/// first packet carries the scalability structure with the layers' sizes; otherwise each
/// layer predicts only from itself. A keyframe every `keyframe_interval` or on request.
#[derive(Debug)]
pub struct SvcSource {
    pub clock: FrameClock,
    picture_id: u16,
    tl0_pic_idx: u8,
    rtp_time: u32,
    fps: u32,
    /// Per spatial layer: its size and mean delta frame size.
    layers: Vec<(Layer, usize)>,
    rng: Rng,
}

impl SvcSource {
    pub fn new(layers: &[Layer], keyframe_interval: Duration, start: Instant, seed: u64) -> Self {
        let fps = layers.first().map_or(30, |l| l.fps.max(1));
        let clock = FrameClock::new(fps, keyframe_interval, start);
        let layers = layers
            .iter()
            .take(3)
            .map(|l| {
                let delta = delta_frame_bytes(l, clock.frames_per_keyframe, VP9_DESCRIPTOR_MAX);
                (*l, delta)
            })
            .collect();
        Self {
            clock,
            picture_id: (seed as u16) & 0x7fff,
            tl0_pic_idx: seed as u8,
            rtp_time: seed as u32,
            fps,
            layers,
            rng: Rng(seed | 1),
        }
    }

    /// The next picture's packets (every spatial layer's frame), if it is due.
    pub fn poll(&mut self, now: Instant) -> Option<Vec<MediaPacket>> {
        // A keyframe restarts the temporal pattern, as libvpx does.
        let (keyframe, position) = self.clock.tick(now)?;
        let temporal = TEMPORAL_PATTERN[(position % 4) as usize];
        if temporal == 0 && !keyframe {
            self.tl0_pic_idx = self.tl0_pic_idx.wrapping_add(1);
        }
        let mut packets = Vec::new();
        let top = self.layers.len().saturating_sub(1);
        for spatial in 0..self.layers.len() {
            let (_, delta) = self.layers[spatial];
            let base = if keyframe {
                delta * KEY_TO_DELTA
            } else {
                delta
            };
            let spread = base / 5;
            let size = self.rng.range(base - spread, base + spread);
            self.packetize_layer(
                &mut packets,
                spatial,
                temporal,
                keyframe,
                size,
                spatial == top,
            );
        }
        self.picture_id = (self.picture_id + 1) & 0x7fff;
        self.rtp_time = self.rtp_time.wrapping_add(90_000 / self.fps);
        Some(packets)
    }

    fn packetize_layer(
        &mut self,
        out: &mut Vec<MediaPacket>,
        spatial: usize,
        temporal: u8,
        keyframe: bool,
        frame_bytes: usize,
        last_layer: bool,
    ) {
        let per_packet = MAX_PAYLOAD - VP9_DESCRIPTOR_MAX - STAMP;
        let count = frame_bytes.div_ceil(per_packet).max(1);
        let body = frame_bytes.div_ceil(count).max(10);
        for i in 0..count {
            let (begins, ends) = (i == 0, i + 1 == count);
            let mut payload = Vec::with_capacity(VP9_DESCRIPTOR_MAX + body + STAMP);
            // I (15-bit picture ID), P unless a keyframe, L (layer indices), B, E, V on a
            // keyframe's first packet.
            let structure = keyframe && spatial == 0 && begins;
            payload.push(
                0x80 | 0x20
                    | if keyframe { 0 } else { 0x40 }
                    | if begins { 0x08 } else { 0 }
                    | if ends { 0x04 } else { 0 }
                    | if structure { 0x02 } else { 0 },
            );
            payload.extend_from_slice(&(0x8000 | self.picture_id).to_be_bytes());
            // TID, U (every frame above the base is a switching-up point in this pattern),
            // SID, D (inter-layer prediction only on keyframes, as k-SVC does).
            let switching_up = temporal > 0;
            let inter_layer = keyframe && spatial > 0;
            payload.push(
                (temporal << 5)
                    | if switching_up { 0x10 } else { 0 }
                    | ((spatial as u8) << 1)
                    | u8::from(inter_layer),
            );
            payload.push(self.tl0_pic_idx);
            if structure {
                // N_S - 1, Y (sizes follow), no picture group description.
                payload.push(((self.layers.len() as u8 - 1) << 5) | 0x10);
                for (layer, _) in &self.layers {
                    payload.extend_from_slice(&layer.width.to_be_bytes());
                    payload.extend_from_slice(&layer.height.to_be_bytes());
                }
            }
            while payload.len() < VP9_DESCRIPTOR_MAX + body {
                payload.push(self.rng.next() as u8);
            }
            payload.extend_from_slice(&[0; STAMP]);
            stamp(&mut payload);
            out.push(MediaPacket {
                payload,
                marker: ends && last_layer,
                rtp_time: self.rtp_time,
            });
        }
    }
}

/// RFC 7741 descriptor: X=1, S on a frame's first packet, PID 0; I=1 with a 15-bit picture
/// ID, L=1 (TL0PICIDX) and T=1 (TID byte, TID 0): str0m rejects L without T.
fn vp8_descriptor(start: bool, picture_id: u16, tl0_pic_idx: u8) -> [u8; VP8_DESCRIPTOR] {
    [
        0x80 | if start { 0x10 } else { 0 },
        0x80 | 0x40 | 0x20,
        0x80 | ((picture_id >> 8) as u8 & 0x7f),
        picture_id as u8,
        tl0_pic_idx,
        0x00,
    ]
}

/// The VP8 frame tag (RFC 6386 section 9.1), plus the start code and dimensions on keyframes.
fn vp8_frame_header(keyframe: bool, first_part_size: u32, width: u16, height: u16) -> Vec<u8> {
    let inverse_key = u32::from(!keyframe);
    // P bit (0 = keyframe), version 0, show_frame 1, 19-bit first partition size.
    let tag = inverse_key | (1 << 4) | ((first_part_size & 0x7_ffff) << 5);
    let mut h = vec![tag as u8, (tag >> 8) as u8, (tag >> 16) as u8];
    if keyframe {
        h.extend_from_slice(&[0x9d, 0x01, 0x2a]);
        h.extend_from_slice(&(width & 0x3fff).to_le_bytes());
        h.extend_from_slice(&(height & 0x3fff).to_le_bytes());
    }
    h
}

fn stamp(payload: &mut [u8]) {
    let n = payload.len();
    payload[n - STAMP..].copy_from_slice(&now_micros().to_be_bytes());
}

/// The send time in a payload we produced.
pub fn read_stamp(payload: &[u8]) -> Option<u64> {
    let tail = payload.get(payload.len().checked_sub(STAMP)?..)?;
    let micros = u64::from_be_bytes(tail.try_into().ok()?);
    // Anything not within a minute of now is not our stamp (a foreign or padding packet).
    let now = now_micros();
    (micros <= now && now - micros < 60_000_000).then_some(micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: Layer = Layer {
        rid: "h",
        width: 640,
        height: 360,
        kbps: 500,
        fps: 30,
    };

    #[test]
    fn first_frame_is_a_keyframe_with_a_valid_header() {
        let start = Instant::now();
        let mut v = VideoSource::new(H, Duration::from_secs(3), start, 7);
        let packets = v.poll(start).expect("a frame is due at start");
        let p = &packets[0].payload;
        assert_eq!(p[0] & 0x10, 0x10, "S bit on the first packet");
        assert_eq!(p[1], 0xe0, "I, L and T set");
        assert_eq!(p[6] & 1, 0, "P bit clear on a keyframe");
        assert_eq!(&p[9..12], &[0x9d, 0x01, 0x2a]);
        assert_eq!(u16::from_le_bytes([p[12], p[13]]), 640);
        assert_eq!(u16::from_le_bytes([p[14], p[15]]), 360);
        assert!(packets.last().is_some_and(|p| p.marker));
        assert!(packets.iter().all(|p| p.payload.len() <= MAX_PAYLOAD));
        assert!(read_stamp(p).is_some());
    }

    #[test]
    fn video_bitrate_is_close_to_the_target() {
        let start = Instant::now();
        let mut v = VideoSource::new(H, Duration::from_secs(3), start, 7);
        let mut bytes = 0;
        let mut t = start;
        for _ in 0..300 {
            for p in v.poll(t).expect("due") {
                bytes += p.payload.len();
            }
            t += Duration::from_millis(34);
        }
        let kbps = bytes as f64 * 8.0 / 10.0 / 1000.0;
        assert!((400.0..650.0).contains(&kbps), "{kbps} kbps");
    }

    #[test]
    fn svc_pictures_carry_every_spatial_layer_with_valid_descriptors() {
        let layers = [
            Layer {
                rid: "q",
                width: 320,
                height: 180,
                kbps: 150,
                fps: 30,
            },
            Layer {
                rid: "h",
                width: 640,
                height: 360,
                kbps: 500,
                fps: 30,
            },
            Layer {
                rid: "f",
                width: 1280,
                height: 720,
                kbps: 1700,
                fps: 30,
            },
        ];
        let start = Instant::now();
        let mut v = SvcSource::new(&layers, Duration::from_secs(3), start, 9);
        let key = v.poll(start).expect("due");
        let p = &key[0].payload;
        assert_eq!(p[0] & !0x04, 0x80 | 0x20 | 0x08 | 0x02, "I, L, B, V; no P");
        assert_eq!(p[3] >> 1 & 0x07, 0, "spatial layer 0 first");
        assert_eq!(p[5], (2 << 5) | 0x10, "three spatial layers, sizes follow");
        assert_eq!(u16::from_be_bytes([p[10], p[11]]), 640);
        assert_eq!(u16::from_be_bytes([p[16], p[17]]), 720);
        // Each spatial layer begins and ends once; the marker is on the top layer's last.
        let begins: Vec<u8> = key
            .iter()
            .filter(|p| p.payload[0] & 0x08 != 0)
            .map(|p| p.payload[3] >> 1 & 0x07)
            .collect();
        assert_eq!(begins, [0, 1, 2]);
        assert_eq!(key.iter().filter(|p| p.marker).count(), 1);
        assert!(key
            .last()
            .is_some_and(|p| p.marker && p.payload[0] & 0x04 != 0));
        // Then T2, T1, T2, T0 pictures, predicted (P set), all with the same timestamp inside.
        let mut t = start;
        let mut temporal = Vec::new();
        for _ in 0..4 {
            t += Duration::from_millis(34);
            let picture = v.poll(t).expect("due");
            assert!(picture
                .iter()
                .all(|p| p.payload[0] & 0x40 != 0 && p.rtp_time == picture[0].rtp_time));
            temporal.push(picture[0].payload[3] >> 5);
        }
        assert_eq!(temporal, [2, 1, 2, 0]);
    }

    #[test]
    fn opus_frames_every_20_ms() {
        let start = Instant::now();
        let mut a = AudioSource::new(32, start, 3);
        assert!(a.poll(start).is_some());
        assert!(a.poll(start).is_none());
        let p = a.poll(start + OPUS_FRAME).expect("due");
        assert!((60..=100).contains(&p.payload.len()));
    }
}
