//! Scalable video coding: one encoded stream carrying several spatial and temporal layers,
//! of which each subscriber gets the ones its allocation allows. Each packet's layers are
//! read once: `vp9.rs` from the VP9 payload descriptor, `av1.rs` from AV1's Dependency
//! Descriptor header extension (`dependency_descriptor.rs`, stateful: its template
//! structure comes with keyframes). `selector.rs` decides, per subscriber, which packets to
//! forward and where the end of each picture now is, the same way for both.
//! `temporal.rs` does the temporal part for VP8, whose simulcast streams each carry
//! temporal layers.

mod av1;
mod dependency_descriptor;
mod selector;
mod temporal;
mod vp9;

pub use av1::{
    av1_starts_keyframe, Av1Layers, DependencyDescriptorExtension, RawDependencyDescriptor,
};
pub use dependency_descriptor::{
    DecodeTargetIndication, DependencyDescriptor, DependencyStructure, DescriptorError,
    DEPENDENCY_DESCRIPTOR_URI,
};
pub use selector::{
    ScalabilityStructure, SvcLayers, SvcPacket, SvcSelector, SvcVerdict, MAX_SPATIAL_LAYERS,
};
pub use temporal::{TemporalFilter, TemporalLevel};
pub use vp9::Vp9Descriptor;
