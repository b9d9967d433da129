//! Scalable video coding: one encoded stream carrying several spatial and temporal layers,
//! of which each subscriber gets the ones its allocation allows. `vp9.rs` reads the VP9
//! payload descriptor once per packet; `selector.rs` decides, per subscriber, which packets
//! to forward and where the end of each picture now is. `temporal.rs` does the temporal
//! part for VP8, whose simulcast streams each carry temporal layers.

mod selector;
mod temporal;
mod vp9;

pub use selector::{SvcLayers, SvcSelector, SvcVerdict};
pub use temporal::{TemporalFilter, TemporalLevel};
pub use vp9::{Vp9Descriptor, MAX_SPATIAL_LAYERS};
