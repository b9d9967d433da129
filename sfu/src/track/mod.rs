//! Tracks: what a publisher sends (`UpTrack`) and each subscriber's copy of it (`DownTrack`).

mod downtrack;
mod uptrack;

pub use downtrack::{DownTrack, ForwardDecision, PacketInfo};
#[cfg(test)]
pub(crate) use uptrack::NOMINAL;
pub use uptrack::{vp8_keyframe_size, TrackSource, UpTrack};
