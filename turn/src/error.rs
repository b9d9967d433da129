//! Errors surfaced to embedders: configuration and I/O failures at start-up.
//!
//! Protocol errors never appear here: they become STUN error responses (or
//! silently dropped datagrams) inside the sans-IO core.

use std::path::PathBuf;

/// Everything that can stop the TURN server from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum TurnError {
    /// A configuration value is inconsistent or out of range.
    #[error("invalid TURN configuration: {0}")]
    Config(String),
    /// Binding a listener socket failed.
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        /// Which listener ("UDP", "TCP", "TLS").
        what: &'static str,
        /// The address we tried.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Reading the TLS certificate or key failed.
    #[error("cannot load TLS {what} from {path}: {reason}")]
    Tls {
        /// "certificate" or "private key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Any other I/O error while running.
    #[error("TURN I/O error: {0}")]
    Io(#[from] std::io::Error),
}
