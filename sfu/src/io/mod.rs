//! The SFU's I/O edge: the UDP socket, the ICE-TCP listener on the same port, and the thread
//! that owns the sans-IO [`Sfu`](crate::Sfu) and feeds it. Async code talks to it through
//! [`SfuHandle`]. The batched datagram I/O under the socket is the `datagram` crate's.

mod handle;
mod server;
mod tcp;

pub use handle::{PlaybackJoin, SfuHandle, SfuStats};
pub use server::{RelayInbox, RelayPort, SfuServer, SfuServerConfig};
