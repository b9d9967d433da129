//! The SFU's I/O edge: the UDP socket, the ICE-TCP listener on the same port, and the thread
//! that owns the sans-IO [`Sfu`](crate::Sfu) and feeds it. Async code talks to it through
//! [`SfuHandle`]. [`batch`] is the batched datagram I/O under the socket.

pub mod batch;
mod handle;
mod server;
mod tcp;

pub use handle::{SfuHandle, SfuStats};
pub use server::{SfuServer, SfuServerConfig};
