//! A bounded exponential backoff for background work that keeps failing (a full disk, a broken
//! manifest), with episodes: the first failure of an episode is the one to log, and the first
//! success after it ends the episode (docs/SEMANTICS.md, full disk).

use std::time::Duration;

/// When a failing job may run again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    base_ms: u64,
    max_ms: u64,
    failures: u32,
    next_ms: u64,
}

impl Backoff {
    /// A backoff that waits `base` after the first failure, doubling up to `max`.
    pub const fn new(base: Duration, max: Duration) -> Backoff {
        Backoff { base_ms: base.as_millis() as u64, max_ms: max.as_millis() as u64, failures: 0, next_ms: 0 }
    }

    /// Whether the job may run at `now_ms`.
    pub fn ready(&self, now_ms: u64) -> bool {
        now_ms >= self.next_ms
    }

    /// Records a failure at `now_ms`; true when it starts an episode (log it then, not on
    /// every retry).
    pub fn failed(&mut self, now_ms: u64) -> bool {
        let first = self.failures == 0;
        self.failures = self.failures.saturating_add(1);
        self.next_ms = now_ms.saturating_add(self.delay().as_millis() as u64);
        first
    }

    /// Records a success; true when it ends an episode.
    pub fn succeeded(&mut self) -> bool {
        let ended = self.failures > 0;
        self.failures = 0;
        self.next_ms = 0;
        ended
    }

    /// Whether the job is failing.
    pub fn failing(&self) -> bool {
        self.failures > 0
    }

    /// The wait after the failures so far.
    pub fn delay(&self) -> Duration {
        if self.failures == 0 {
            return Duration::ZERO;
        }
        let doublings = (self.failures - 1).min(32);
        Duration::from_millis(self.base_ms.saturating_mul(1 << doublings).min(self.max_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_bound_and_logs_once_per_episode() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        assert!(b.ready(0) && !b.failing());
        assert!(b.failed(1_000), "the first failure starts an episode");
        assert!(!b.ready(1_999) && b.ready(2_000));
        let starts: Vec<bool> = (0..10).map(|_| b.failed(2_000)).collect();
        assert!(starts.iter().all(|s| !s), "retries are not new episodes");
        assert_eq!(b.delay(), Duration::from_secs(60), "bounded");
        assert!(b.succeeded(), "the first success ends the episode");
        assert!(!b.succeeded() && b.ready(0));
        assert!(b.failed(5), "a new failure starts a new episode");
        assert_eq!(b.delay(), Duration::from_secs(1));
    }
}
