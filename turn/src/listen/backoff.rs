//! Pacing for loops over fallible socket calls.
//!
//! A UDP socket reports an ICMP error from an earlier send once, on the next
//! call, so a few failures in a row are normal and retried at once. An error
//! that comes back on every call (a runtime being shut down, descriptors
//! exhausted) must not turn the loop into a busy spin that starves the other
//! tasks of its thread: after a few immediate retries the loop sleeps, 1 ms
//! doubling to 100 ms, until a call succeeds.

use std::time::Duration;

/// Failures in a row retried without waiting.
const IMMEDIATE_RETRIES: u32 = 8;
/// The first wait.
const FIRST_WAIT: Duration = Duration::from_millis(1);
/// The longest wait.
pub(crate) const MAX_WAIT: Duration = Duration::from_millis(100);

/// Counts consecutive failures of one loop's socket call.
#[derive(Debug, Default)]
pub(crate) struct ErrorBackoff {
    failures: u32,
}

impl ErrorBackoff {
    /// Records a failure; returns how long to wait before the next call.
    pub(crate) fn failed(&mut self) -> Option<Duration> {
        self.failures = self.failures.saturating_add(1);
        let slow = self.failures.checked_sub(IMMEDIATE_RETRIES + 1)?;
        Some(
            FIRST_WAIT
                .saturating_mul(2u32.saturating_pow(slow.min(16)))
                .min(MAX_WAIT),
        )
    }

    /// Records a success: the next failure is retried at once again.
    pub(crate) fn succeeded(&mut self) {
        self.failures = 0;
    }

    /// Waits as [`ErrorBackoff::failed`] says (yielding to the other tasks
    /// either way, so even the immediate retries cannot starve them).
    pub(crate) async fn after_failure(&mut self) {
        match self.failed() {
            Some(wait) => tokio::time::sleep(wait).await,
            None => tokio::task::yield_now().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_failures_are_retried_at_once_then_waits_grow_to_the_cap() {
        let mut b = ErrorBackoff::default();
        for _ in 0..IMMEDIATE_RETRIES {
            assert_eq!(b.failed(), None);
        }
        let waits: Vec<u64> = (0..10)
            .map(|_| b.failed().map_or(0, |d| d.as_millis() as u64))
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 100, 100, 100]);
        for _ in 0..1000 {
            assert_eq!(b.failed(), Some(MAX_WAIT));
        }
        b.succeeded();
        assert_eq!(b.failed(), None, "a success starts over");
    }

    /// A call that fails forever costs a bounded number of attempts per
    /// second and leaves the thread to its other tasks.
    #[tokio::test(start_paused = true)]
    async fn a_persistent_error_is_paced_and_other_tasks_run() {
        let other = tokio::spawn(async {});
        let mut b = ErrorBackoff::default();
        let start = tokio::time::Instant::now();
        let mut attempts = 0u32;
        while start.elapsed() < Duration::from_secs(2) {
            attempts += 1;
            b.after_failure().await;
        }
        // 8 at once, 7 on the way up to 100 ms (127 ms), then ~19 per 1.9 s
        assert!(attempts < 40, "{attempts} attempts in 2 s");
        assert!(other.is_finished(), "the other task ran meanwhile");
    }
}
