//! Keyframe requests toward publishers. Every subscriber that starts, loses packets or switches
//! layers asks for a keyframe; the publisher should see at most one request per interval per
//! track, or it spends its bitrate on keyframes.

use std::time::{Duration, Instant};

/// Merges keyframe requests for one published track (or one simulcast layer of it).
#[derive(Debug, Clone)]
pub struct KeyframeThrottle {
    min_interval: Duration,
    last_sent: Option<Instant>,
}

impl KeyframeThrottle {
    pub fn new(min_interval: Duration) -> Self {
        Self {
            min_interval,
            last_sent: None,
        }
    }

    /// Whether a request may go to the publisher now; if so, it counts as sent.
    pub fn try_request(&mut self, now: Instant) -> bool {
        let allowed = self
            .last_sent
            .is_none_or(|last| now.saturating_duration_since(last) >= self.min_interval);
        if allowed {
            self.last_sent = Some(now);
        }
        allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_inside_the_interval_are_merged() {
        let t0 = Instant::now();
        let mut throttle = KeyframeThrottle::new(Duration::from_millis(500));
        assert!(throttle.try_request(t0));
        assert!(!throttle.try_request(t0 + Duration::from_millis(10)));
        assert!(!throttle.try_request(t0 + Duration::from_millis(499)));
        assert!(throttle.try_request(t0 + Duration::from_millis(500)));
        assert!(!throttle.try_request(t0 + Duration::from_millis(600)));
    }
}
