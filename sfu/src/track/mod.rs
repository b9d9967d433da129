//! Tracks: what a publisher sends (`UpTrack`) and each subscriber's copy of it (`DownTrack`).

mod downtrack;
mod uptrack;

pub use downtrack::{DownTrack, ForwardDecision};
pub use uptrack::UpTrack;
