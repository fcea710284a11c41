//! Freshness and replay protection for proof-gated requests (DESIGN §4).
//!
//! A request is fresh when its timestamp is within `window` of the node's clock and not older
//! than the node's start (the replay memory is not persisted, so a node refuses requests from
//! before it started). A fresh request id is remembered until it could no longer be fresh.

use std::collections::HashMap;

/// Why a request was not accepted as fresh.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Freshness {
    /// Timestamp outside the accepted window.
    #[error("stale request (timestamp {ts} ms, node clock {now} ms)")]
    Stale {
        /// Request timestamp.
        ts: u64,
        /// Node clock.
        now: u64,
    },
    /// The request id was seen before.
    #[error("replayed request")]
    Replayed,
    /// The replay memory is full of live entries.
    #[error("replay cache full")]
    Busy,
}

/// Remembers recently seen request ids.
#[derive(Debug)]
pub struct ReplayGuard {
    window_ms: u64,
    started_ms: u64,
    capacity: usize,
    seen: HashMap<[u8; 16], u64>,
}

impl ReplayGuard {
    /// A guard accepting timestamps within `window_ms` of now, remembering at most `capacity` ids.
    pub fn new(window_ms: u64, started_ms: u64, capacity: usize) -> Self {
        ReplayGuard { window_ms, started_ms, capacity, seen: HashMap::new() }
    }

    /// Whether `ts` is within the window of `now` and not older than the node's start.
    pub fn timely(&self, ts: u64, now: u64) -> Result<(), Freshness> {
        let w = self.window_ms;
        if ts.saturating_add(w) < now || ts > now.saturating_add(w) || ts < self.started_ms {
            return Err(Freshness::Stale { ts, now });
        }
        Ok(())
    }

    /// Checks freshness and records the id; `Ok` means "first time seen, within the window".
    pub fn check(&mut self, request_id: [u8; 16], ts: u64, now: u64) -> Result<(), Freshness> {
        self.timely(ts, now)?;
        if self.seen.len() >= self.capacity {
            self.seen.retain(|_, exp| *exp >= now);
            if self.seen.len() >= self.capacity {
                return Err(Freshness::Busy);
            }
        }
        // Remember until the timestamp can no longer pass the window check.
        let forget_at = ts.saturating_add(self.window_ms);
        match self.seen.insert(request_id, forget_at) {
            Some(_) => Err(Freshness::Replayed),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_once_and_refuses_stale() {
        let mut g = ReplayGuard::new(1000, 0, 10);
        assert_eq!(g.check([1; 16], 5000, 5000), Ok(()));
        assert_eq!(g.check([1; 16], 5000, 5001), Err(Freshness::Replayed));
        assert!(matches!(g.check([2; 16], 3000, 5000), Err(Freshness::Stale { .. })));
        assert!(matches!(g.check([2; 16], 7000, 5000), Err(Freshness::Stale { .. })));
        let mut g = ReplayGuard::new(1000, 10_000, 10);
        assert!(matches!(g.check([3; 16], 9_999, 10_000), Err(Freshness::Stale { .. })));
    }

    #[test]
    fn full_cache_prunes_expired_then_refuses() {
        let mut g = ReplayGuard::new(100, 0, 2);
        g.check([1; 16], 1000, 1000).unwrap();
        g.check([2; 16], 1000, 1000).unwrap();
        assert_eq!(g.check([3; 16], 1000, 1000), Err(Freshness::Busy));
        assert_eq!(g.check([3; 16], 1200, 1200), Ok(()));
    }
}
