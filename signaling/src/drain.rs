//! Taking a server out of service: once draining, joins and resumes are refused with
//! `server_draining`, every WebSocket is closed with 1012 (clients join again, through a load
//! balancer elsewhere), and `/healthz` answers 503. The binary decides when to exit.

use std::sync::Arc;

use tokio::sync::watch;

/// WebSocket close code for connections closed by a drain: "service restart" (RFC 6455
/// registry), which tells a client to reconnect.
pub const CLOSE_DRAINING: u16 = 1012;

/// The drain switch, shared by every connection; it only ever goes from off to on.
#[derive(Debug, Clone)]
pub struct Drain(Arc<watch::Sender<bool>>);

impl Default for Drain {
    fn default() -> Self {
        Self(Arc::new(watch::channel(false).0))
    }
}

impl Drain {
    /// Start draining; `true` if this call started it, `false` if it had already begun.
    pub fn start(&self, by: &str) -> bool {
        let started = self
            .0
            .send_if_modified(|draining| !std::mem::replace(draining, true));
        if started {
            tracing::warn!(by, "draining: refusing new joins and closing every WebSocket with 1012 so that clients reconnect elsewhere");
        }
        started
    }

    pub fn is_draining(&self) -> bool {
        *self.0.borrow()
    }

    /// Notified when the drain starts.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.0.subscribe()
    }

    /// Resolves once draining (at once if it already is).
    pub async fn started(&self) {
        let mut rx = self.0.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|draining| *draining).await;
    }
}
