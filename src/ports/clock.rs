//! The clock port: wall-clock time for leases, grace periods, audit schedules and snapshots,
//! so that time-based behaviour is tested with a fake clock instead of with sleeps.

use std::time::Duration;

/// Wall-clock time.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;

    /// Whether `since_ms` lies at least `d` in the past (a clock that went backwards says no).
    fn elapsed_since(&self, since_ms: u64, d: Duration) -> bool {
        self.now_ms().saturating_sub(since_ms) >= d.as_millis() as u64
    }
}
