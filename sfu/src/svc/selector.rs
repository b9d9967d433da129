//! Which packets of one scalable stream (VP9 SVC, or AV1 with the Dependency Descriptor) one
//! subscriber gets: every packet of the spatial and
//! temporal layers up to its current ones, with the current layers moving toward the target
//! only where the subscriber's decoder can follow.
//!
//! - Spatial up: only at a keyframe (the layer's frames predict from its own earlier
//!   frames, which the subscriber never had). Chromium's k-SVC (`L3T3_KEY`) and full SVC
//!   (`L3T3`) both give every layer a fresh start at a keyframe; the selector asks for one
//!   while an up-switch waits.
//! - Lower spatial layers: sent when the subscriber's layer needs them. In full SVC (`L3T3`)
//!   every frame of layer `n` predicts from the layers below it in the same picture, so they
//!   all go. In k-SVC (`L3T3_KEY`) layer `n` predicts from the layers below only in a
//!   keyframe picture, so outside keyframes a subscriber of layer 2 gets layer 2 alone, not
//!   the 0 and 1 it would only throw away (mediasoup does the same): the packet says which
//!   (`SvcPacket::needed_above`).
//! - Spatial down: at the next picture when the lower layers' frames were all sent since the
//!   last keyframe (full SVC); otherwise (k-SVC) their chain is broken, and the switch waits
//!   for a keyframe, which the selector asks for, while the current layer keeps going.
//! - Temporal up: at the start of a picture that is a switching point for the new temporal
//!   layer (VP9's U bit on a frame of that layer; for AV1, a base layer frame whose decode
//!   target indication for it is `Switch`), or at a keyframe. Temporal down: at the next
//!   picture.
//! - The marker bit goes on the last packet of the highest forwarded spatial layer of each
//!   picture (its E bit) when the layers above it, which carried the publisher's marker, are
//!   dropped.
//!
//! Picture IDs pass through unchanged, as LiveKit and mediasoup do for VP9: the receiver's
//! VP9 reference finder follows frames by picture ID plus TL0PICIDX and temporal index, and
//! tolerates the gaps left by dropped temporal layers; only whole pictures are ever
//! dropped, never some of a forwarded layer's packets.

/// Spatial layers whose sizes are kept; VP9 allows eight and AV1 four, browsers send at most
/// three.
pub const MAX_SPATIAL_LAYERS: usize = 3;

/// A scalable stream's spatial layers, as its keyframes announce them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScalabilityStructure {
    pub spatial_layers: u8,
    /// Their sizes, lowest first, when the structure gives them.
    pub sizes: Option<[(u16, u16); MAX_SPATIAL_LAYERS]>,
}

/// What the selector reads of one packet, whichever codec's descriptor said it
/// (`Vp9Descriptor::svc_packet`, `Av1Layers::read`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SvcPacket {
    pub spatial: u8,
    pub temporal: u8,
    /// The first packet of a picture (all spatial layers of one instant): where layer
    /// choices may change without cutting a picture in half.
    pub starts_picture: bool,
    /// The first packet of a keyframe: every layer can start here.
    pub starts_keyframe: bool,
    /// The last packet of its spatial layer's frame.
    pub ends_frame: bool,
    /// Bit `t`: at this picture, a subscriber that had only the temporal layers below `t`
    /// may start taking those up to `t`.
    pub switch_points: u8,
    /// The stream's spatial layers, when this packet announces them.
    pub structure: Option<ScalabilityStructure>,
    /// The spatial layers above this frame's predict from it (full SVC, or any keyframe
    /// picture); false for a k-SVC frame outside keyframes, which a subscriber of a higher
    /// layer does not need.
    pub needed_above: bool,
}

/// Spatial and temporal layer indices, lowest 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SvcLayers {
    pub spatial: u8,
    pub temporal: u8,
}

/// What to do with one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SvcVerdict {
    /// Send it, with this marker bit. `wants_keyframe`: a spatial up-switch waits for one.
    Forward { marker: bool, wants_keyframe: bool },
    /// Not for this subscriber: a layer above its current ones.
    Drop,
    /// Nothing can be sent before a keyframe starts the stream.
    NeedKeyframe,
}

#[derive(Debug, Clone, Default)]
pub struct SvcSelector {
    /// The layers forwarded now; `None` until a keyframe starts the stream.
    current: Option<SvcLayers>,
    /// A frame of a layer below the current one was not sent since the last keyframe
    /// (k-SVC): a spatial down-switch has to wait for the next keyframe.
    lower_layers_broken: bool,
}

impl SvcSelector {
    pub fn current(&self) -> Option<SvcLayers> {
        self.current
    }

    /// Forget the stream: the next packet sent will be a keyframe's.
    pub fn reset(&mut self) {
        self.current = None;
        self.lower_layers_broken = false;
    }

    /// The verdict on one packet. `in_order`: it is newer than every packet seen before; a
    /// late one (reordered, or a publisher's retransmission) never moves the layers, or a
    /// retransmitted keyframe packet would switch a layer up in the middle of its chain.
    pub fn select(
        &mut self,
        target: SvcLayers,
        packet: &SvcPacket,
        marker: bool,
        in_order: bool,
    ) -> SvcVerdict {
        if in_order && packet.starts_keyframe {
            self.lower_layers_broken = false;
        }
        let current = match self.current {
            None if packet.starts_keyframe => target,
            None => return SvcVerdict::NeedKeyframe,
            Some(current) if in_order && packet.starts_picture => {
                next_layers(current, target, packet, !self.lower_layers_broken)
            }
            Some(current) => current,
        };
        self.current = Some(current);
        if packet.spatial > current.spatial || packet.temporal > current.temporal {
            return SvcVerdict::Drop;
        }
        if packet.spatial < current.spatial && !packet.needed_above {
            self.lower_layers_broken = true;
            return SvcVerdict::Drop;
        }
        SvcVerdict::Forward {
            marker: marker || (packet.ends_frame && packet.spatial == current.spatial),
            wants_keyframe: target.spatial > current.spatial
                || (target.spatial < current.spatial && self.lower_layers_broken),
        }
    }
}

/// The layers to forward from the picture that `first` starts.
fn next_layers(
    current: SvcLayers,
    target: SvcLayers,
    first: &SvcPacket,
    lower_layers_whole: bool,
) -> SvcLayers {
    let keyframe = first.starts_keyframe;
    let spatial = if keyframe || (target.spatial < current.spatial && lower_layers_whole) {
        target.spatial
    } else {
        current.spatial
    };
    let temporal = if target.temporal < current.temporal || keyframe {
        target.temporal
    } else {
        // The highest switching point within reach: a point speaks for its own layer only
        // (VP9's U), since the layers between may still need frames the subscriber never got.
        (current.temporal + 1..=target.temporal.min(7))
            .rev()
            .find(|&t| first.switch_points & (1 << t) != 0)
            .unwrap_or(current.temporal)
    };
    SvcLayers { spatial, temporal }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: SvcLayers = SvcLayers {
        spatial: 2,
        temporal: 2,
    };

    fn layers(spatial: u8, temporal: u8) -> SvcLayers {
        SvcLayers { spatial, temporal }
    }

    /// One packet carrying a whole layer frame (B and E set).
    fn frame(spatial: u8, temporal: u8, key: bool, switching_up: bool) -> SvcPacket {
        SvcPacket {
            spatial,
            temporal,
            starts_picture: spatial == 0,
            starts_keyframe: key && spatial == 0,
            ends_frame: true,
            switch_points: if switching_up { 1 << temporal } else { 0 },
            structure: None,
            needed_above: true,
        }
    }

    /// The verdicts for a picture of three spatial layers, each of two packets; the
    /// publisher's marker on the last one.
    fn picture(
        selector: &mut SvcSelector,
        target: SvcLayers,
        temporal: u8,
        key: bool,
        switching_up: bool,
    ) -> Vec<SvcVerdict> {
        let mut out = Vec::new();
        for spatial in 0..3 {
            let mut first = frame(spatial, temporal, key, switching_up);
            first.ends_frame = false;
            let mut last = frame(spatial, temporal, key, switching_up);
            (last.starts_picture, last.starts_keyframe) = (false, false);
            out.push(selector.select(target, &first, false, true));
            out.push(selector.select(target, &last, spatial == 2, true));
        }
        out
    }

    const SEND: SvcVerdict = SvcVerdict::Forward {
        marker: false,
        wants_keyframe: false,
    };
    const END: SvcVerdict = SvcVerdict::Forward {
        marker: true,
        wants_keyframe: false,
    };
    const DROP: SvcVerdict = SvcVerdict::Drop;

    #[test]
    fn nothing_is_sent_before_a_keyframe_then_every_layer_up_to_the_target() {
        let mut s = SvcSelector::default();
        assert_eq!(
            picture(&mut s, ALL, 0, false, false),
            vec![SvcVerdict::NeedKeyframe; 6]
        );
        assert_eq!(
            picture(&mut s, ALL, 0, true, false),
            vec![SEND, SEND, SEND, SEND, SEND, END]
        );
        assert_eq!(s.current(), Some(ALL));
    }

    #[test]
    fn dropped_upper_layers_move_the_marker_to_the_top_forwarded_layer() {
        let mut s = SvcSelector::default();
        assert_eq!(
            picture(&mut s, layers(1, 2), 0, true, false),
            vec![SEND, SEND, SEND, END, DROP, DROP]
        );
        assert_eq!(
            picture(&mut s, layers(0, 2), 1, false, false),
            vec![SEND, END, DROP, DROP, DROP, DROP],
            "down at the next picture, no keyframe needed"
        );
    }

    #[test]
    fn spatial_up_waits_for_a_keyframe_and_asks_for_one() {
        let mut s = SvcSelector::default();
        picture(&mut s, layers(0, 2), 0, true, false);
        let waiting = SvcVerdict::Forward {
            marker: false,
            wants_keyframe: true,
        };
        let waiting_end = SvcVerdict::Forward {
            marker: true,
            wants_keyframe: true,
        };
        assert_eq!(
            picture(&mut s, ALL, 2, false, true),
            vec![waiting, waiting_end, DROP, DROP, DROP, DROP]
        );
        assert_eq!(
            picture(&mut s, ALL, 0, true, false),
            vec![SEND, SEND, SEND, SEND, SEND, END]
        );
    }

    #[test]
    fn temporal_up_only_at_a_switching_up_point_down_at_any_picture() {
        let mut s = SvcSelector::default();
        picture(&mut s, layers(0, 0), 0, true, false);
        // Temporal layer 2 and 1 pictures are dropped whole while the target is 0.
        assert_eq!(picture(&mut s, layers(0, 0), 2, false, true), vec![DROP; 6]);
        // Target raised to TL1: a TL1 picture without U is still dropped, and a TL2 one
        // with U too (above the target, and U does not speak for TL1).
        let target = layers(0, 1);
        assert_eq!(picture(&mut s, target, 1, false, false), vec![DROP; 6]);
        assert_eq!(picture(&mut s, target, 2, false, true), vec![DROP; 6]);
        assert_eq!(s.current(), Some(layers(0, 0)));
        assert_eq!(
            picture(&mut s, target, 1, false, true)[..2],
            [SEND, END],
            "TL1 opens at its own switching-up point"
        );
        assert_eq!(picture(&mut s, target, 1, false, false)[..2], [SEND, END]);
        // Down to TL0 at the next picture, whatever it is.
        assert_eq!(
            picture(&mut s, layers(0, 0), 1, false, false),
            vec![DROP; 6]
        );
        assert_eq!(
            picture(&mut s, layers(0, 0), 0, false, false)[..2],
            [SEND, END]
        );
    }

    /// A k-SVC picture: outside keyframes the upper layers do not predict from the lower ones.
    fn k_svc_picture(selector: &mut SvcSelector, target: SvcLayers, key: bool) -> Vec<SvcVerdict> {
        (0..3)
            .map(|spatial| {
                let mut p = frame(spatial, 0, key, false);
                p.needed_above = key;
                selector.select(target, &p, spatial == 2, true)
            })
            .collect()
    }

    #[test]
    fn k_svc_sends_the_lower_layers_only_in_keyframes_and_steps_down_at_one() {
        let mut s = SvcSelector::default();
        assert_eq!(k_svc_picture(&mut s, ALL, true), vec![SEND, SEND, END]);
        // Layer 2 alone between keyframes.
        assert_eq!(k_svc_picture(&mut s, ALL, false), vec![DROP, DROP, END]);
        // Stepping down to layer 0: its frames were not sent since the keyframe, so layer 2
        // keeps going, asking for a keyframe, and the switch is made there.
        let down = layers(0, 2);
        let asking = SvcVerdict::Forward {
            marker: true,
            wants_keyframe: true,
        };
        assert_eq!(k_svc_picture(&mut s, down, false), vec![DROP, DROP, asking]);
        assert_eq!(s.current(), Some(ALL));
        assert_eq!(k_svc_picture(&mut s, down, true), vec![END, DROP, DROP]);
        assert_eq!(k_svc_picture(&mut s, down, false), vec![END, DROP, DROP]);
        // Up again at the next keyframe, as always.
        assert_eq!(k_svc_picture(&mut s, ALL, true), vec![SEND, SEND, END]);
    }

    #[test]
    fn layers_change_only_at_a_picture_start() {
        let mut s = SvcSelector::default();
        let mut key = frame(0, 0, true, false);
        key.ends_frame = false;
        assert!(matches!(
            s.select(ALL, &key, false, true),
            SvcVerdict::Forward { .. }
        ));
        // Mid-picture, the target drops to layer 0: the picture in progress keeps its
        // spatial layer 1 and 2 packets, or the decoder would get half a picture.
        let target = layers(0, 2);
        assert_eq!(
            s.select(target, &frame(1, 0, true, false), false, true),
            SEND
        );
        assert_eq!(s.select(target, &frame(2, 0, true, false), true, true), END);
        assert_eq!(
            s.select(target, &frame(0, 1, false, false), false, true),
            END,
            "the next picture: layer 0 only, whose E bit now ends it"
        );
        assert_eq!(
            s.select(target, &frame(1, 1, false, false), false, true),
            DROP
        );
        // A late keyframe packet (a retransmission) does not move the layers back up; the
        // up-switch still waits for a keyframe of its own.
        let waiting_end = SvcVerdict::Forward {
            marker: true,
            wants_keyframe: true,
        };
        assert_eq!(
            s.select(ALL, &frame(0, 0, true, false), false, false),
            waiting_end
        );
        assert_eq!(s.select(ALL, &frame(1, 0, true, false), false, false), DROP);
        assert_eq!(s.current(), Some(layers(0, 2)));
        s.reset();
        assert_eq!(
            s.select(target, &frame(0, 0, false, false), false, true),
            SvcVerdict::NeedKeyframe
        );
    }
}
