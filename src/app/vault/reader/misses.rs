//! Chunks the fabric just failed to deliver: a read that asks again soon (the kernel retries a
//! failed read-ahead as a plain read; `cp` of a directory may reach the same chunk twice) fails at
//! once instead of waiting out the fetch timeout a second time.

use crate::domain::ids::Addr;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a failed fetch answers for its chunk.
pub const MISS_MEMORY: Duration = Duration::from_secs(5);

/// How long a read that needs the fabric waits for a lost broker connection to come back before
/// it fails: long enough to ride out a reconnect to another server of a cluster.
pub const DOWN_GRACE: Duration = Duration::from_millis(1500);

/// Recently failed fetches, by chunk, with when each failed and why.
#[derive(Default)]
pub(in crate::app::vault) struct RecentMisses(Mutex<HashMap<Addr, (Instant, String)>>);

impl RecentMisses {
    /// Why `addr` failed to load within the last [`MISS_MEMORY`], and how long ago.
    pub(in crate::app::vault) fn get(&self, addr: &Addr) -> Option<(Duration, String)> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (at, why) = map.get(addr)?;
        let ago = at.elapsed();
        (ago < MISS_MEMORY).then(|| (ago, why.clone()))
    }

    /// Remembers that `addr` could not be fetched (and forgets misses that are too old).
    pub(in crate::app::vault) fn record(&self, addr: Addr, why: &str) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, (at, _)| at.elapsed() < MISS_MEMORY);
        map.insert(addr, (Instant::now(), why.to_string()));
    }

    /// Forgets `addr` (it was fetched after all).
    pub(in crate::app::vault) fn forget(&self, addr: &Addr) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_miss_is_remembered_then_forgotten() {
        let misses = RecentMisses::default();
        let (a, b) = (Addr::of(b"a"), Addr::of(b"b"));
        misses.record(a, "timed out");
        let (ago, why) = misses.get(&a).unwrap();
        assert!(ago < MISS_MEMORY && why == "timed out");
        assert!(misses.get(&b).is_none());
        misses.forget(&a);
        assert!(misses.get(&a).is_none());
    }
}
