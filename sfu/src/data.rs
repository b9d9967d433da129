//! Application data between participants (chat, reactions, app state): what one message may
//! be and how often a participant may send one.
//!
//! The SFU carries each message as opaque text from its sender's worker to the workers and
//! nodes of its recipients, beside the room's other events (`relay.rs`), so it reaches the
//! whole room however the room is spread. The sender's id and name are stamped by the SFU from
//! the participant that sent it, never taken from the message.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ids::ParticipantId;

/// Largest payload, in bytes of its text.
pub const MAX_DATA_BYTES: usize = 16 * 1024;
/// Messages a participant may send per second, sustained...
pub const DATA_RATE_PER_SEC: f64 = 20.0;
/// ...and in a burst.
pub const DATA_BURST: f64 = 40.0;

/// One message as delivered: who sent it (stamped by the SFU) and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppData {
    pub from: ParticipantId,
    /// The sender's display name when it joined.
    pub name: String,
    /// `None`: everyone in the room but the sender; otherwise only these participants.
    pub to: Option<Vec<ParticipantId>>,
    /// Opaque to the SFU; our signaling carries JSON text.
    pub payload: Arc<str>,
}

impl AppData {
    /// Whether `participant` is a recipient (never the sender itself).
    pub fn is_for(&self, participant: ParticipantId) -> bool {
        participant != self.from && self.to.as_ref().is_none_or(|to| to.contains(&participant))
    }
}

/// A token bucket: [`DATA_BURST`] messages at once, refilled at [`DATA_RATE_PER_SEC`].
#[derive(Debug, Clone)]
pub struct DataBudget {
    tokens: f64,
    refilled: Option<Instant>,
}

impl Default for DataBudget {
    fn default() -> Self {
        Self {
            tokens: DATA_BURST,
            refilled: None,
        }
    }
}

impl DataBudget {
    /// Take one message's worth; `false` when the participant is over its rate.
    pub fn take(&mut self, now: Instant) -> bool {
        if let Some(at) = self.refilled {
            let elapsed = now.saturating_duration_since(at).as_secs_f64();
            self.tokens = (self.tokens + elapsed * DATA_RATE_PER_SEC).min(DATA_BURST);
        }
        self.refilled = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// How long until one more message is allowed (for error messages).
    pub fn wait(&self) -> Duration {
        Duration::from_secs_f64(((1.0 - self.tokens).max(0.0)) / DATA_RATE_PER_SEC)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let start = Instant::now();
        let mut budget = DataBudget::default();
        let burst = (0..100).take_while(|_| budget.take(start)).count();
        assert_eq!(burst, DATA_BURST as usize);
        assert!(budget.wait() > Duration::ZERO);
        // One second later, a second's worth more.
        let later = start + Duration::from_secs(1);
        let more = (0..100).take_while(|_| budget.take(later)).count();
        assert_eq!(more, DATA_RATE_PER_SEC as usize);
        // An idle minute refills only up to the burst.
        let idle = later + Duration::from_secs(60);
        let refilled = (0..100).take_while(|_| budget.take(idle)).count();
        assert_eq!(refilled, DATA_BURST as usize);
    }

    #[test]
    fn recipients() {
        let (a, b, c) = (
            ParticipantId::from_u64(1),
            ParticipantId::from_u64(2),
            ParticipantId::from_u64(3),
        );
        let mut data = AppData {
            from: a,
            name: "A".into(),
            to: None,
            payload: "x".into(),
        };
        assert!(!data.is_for(a), "never back to the sender");
        assert!(data.is_for(b) && data.is_for(c));
        data.to = Some(vec![a, c]);
        assert!(!data.is_for(a) && !data.is_for(b) && data.is_for(c));
    }
}
