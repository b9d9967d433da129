//! Tests of the sans-IO core: a fake relay binder and a tiny STUN client built
//! on stun-rs drive `Server` in virtual time, with no sockets.

mod client;
mod errors;
mod relay;
mod rfc5769;
