//! Freshness and replay protection for proof-gated requests (docs/DESIGN.md §4).
//!
//! A request is fresh when its timestamp is within `window` of the node's clock and not older
//! than the node's start (the replay memory is not persisted, so a node refuses requests from
//! before it started). A fresh request id is remembered until it could no longer be fresh.
//!
//! The memory is bounded twice: in total, and per request source (the requester's reply inbox
//! prefix), so one source sending valid proofs as fast as its rate allows fills only its own
//! share and the node keeps accepting every other source's requests.

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
    /// The replay memory (in total, or this source's share of it) is full of live entries.
    #[error("replay cache full")]
    Busy,
}

/// A request source as the guard counts it (a hash of its name).
type SourceKey = [u8; 16];

/// Remembers recently seen request ids.
#[derive(Debug)]
pub struct ReplayGuard {
    window_ms: u64,
    started_ms: u64,
    capacity: usize,
    per_source: usize,
    /// Request id → (when it can be forgotten, the source that sent it).
    seen: HashMap<[u8; 16], (u64, SourceKey)>,
    /// Live entries per source.
    counts: HashMap<SourceKey, usize>,
}

fn source_key(source: &[u8]) -> SourceKey {
    let mut k = [0u8; 16];
    k.copy_from_slice(&blake3::hash(source).as_bytes()[..16]);
    k
}

impl ReplayGuard {
    /// A guard accepting timestamps within `window_ms` of now, remembering at most `capacity` ids
    /// in total and `per_source` ids of any one source.
    pub fn new(window_ms: u64, started_ms: u64, capacity: usize, per_source: usize) -> Self {
        ReplayGuard {
            window_ms,
            started_ms,
            capacity,
            per_source,
            seen: HashMap::new(),
            counts: HashMap::new(),
        }
    }

    /// Whether `ts` is within the window of `now` and not older than the node's start.
    pub fn timely(&self, ts: u64, now: u64) -> Result<(), Freshness> {
        let w = self.window_ms;
        if ts.saturating_add(w) < now || ts > now.saturating_add(w) || ts < self.started_ms {
            return Err(Freshness::Stale { ts, now });
        }
        Ok(())
    }

    /// Checks freshness and records the id for `source`; `Ok` means "first time seen, within the
    /// window". A replayed id is refused whichever source sends it again.
    pub fn check(&mut self, source: &[u8], request_id: [u8; 16], ts: u64, now: u64) -> Result<(), Freshness> {
        self.timely(ts, now)?;
        if self.seen.contains_key(&request_id) {
            return Err(Freshness::Replayed);
        }
        let key = source_key(source);
        let full =
            |g: &Self| g.seen.len() >= g.capacity || g.counts.get(&key).copied().unwrap_or(0) >= g.per_source;
        if full(self) {
            self.forget_expired(now);
            if full(self) {
                return Err(Freshness::Busy);
            }
        }
        // Remember until the timestamp can no longer pass the window check.
        self.seen.insert(request_id, (ts.saturating_add(self.window_ms), key));
        *self.counts.entry(key).or_default() += 1;
        Ok(())
    }

    fn forget_expired(&mut self, now: u64) {
        let counts = &mut self.counts;
        self.seen.retain(|_, (exp, source)| {
            let keep = *exp >= now;
            if !keep {
                if let Some(n) = counts.get_mut(source) {
                    *n -= 1;
                }
            }
            keep
        });
        counts.retain(|_, n| *n > 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_once_and_refuses_stale() {
        let mut g = ReplayGuard::new(1000, 0, 10, 10);
        assert_eq!(g.check(b"a", [1; 16], 5000, 5000), Ok(()));
        assert_eq!(g.check(b"a", [1; 16], 5000, 5001), Err(Freshness::Replayed));
        assert_eq!(
            g.check(b"b", [1; 16], 5000, 5001),
            Err(Freshness::Replayed),
            "replayed by another source"
        );
        assert!(matches!(g.check(b"a", [2; 16], 3000, 5000), Err(Freshness::Stale { .. })));
        assert!(matches!(g.check(b"a", [2; 16], 7000, 5000), Err(Freshness::Stale { .. })));
        let mut g = ReplayGuard::new(1000, 10_000, 10, 10);
        assert!(matches!(g.check(b"a", [3; 16], 9_999, 10_000), Err(Freshness::Stale { .. })));
    }

    #[test]
    fn full_cache_prunes_expired_then_refuses() {
        let mut g = ReplayGuard::new(100, 0, 2, 2);
        g.check(b"a", [1; 16], 1000, 1000).unwrap();
        g.check(b"b", [2; 16], 1000, 1000).unwrap();
        assert_eq!(g.check(b"c", [3; 16], 1000, 1000), Err(Freshness::Busy));
        assert_eq!(g.check(b"c", [3; 16], 1200, 1200), Ok(()));
    }

    /// Issue 24 item 1: one source with valid proofs filling the replay memory must not lock
    /// the others out. (The memory was one pool: the source's fill made every request Busy.)
    #[test]
    fn one_source_fills_only_its_own_share() {
        let mut g = ReplayGuard::new(100_000, 0, 1000, 100);
        for i in 0..1000u32 {
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&i.to_le_bytes());
            let r = g.check(b"flooder", id, 1000, 1000);
            assert_eq!(r.is_ok(), i < 100, "request {i}");
        }
        for i in 0..50u8 {
            let mut id = [0xab; 16];
            id[0] = i;
            assert_eq!(g.check(b"owner", id, 1000, 1000), Ok(()), "owner's request {i}");
        }
        // Once the flooder's entries expire it is served again.
        assert_eq!(g.check(b"flooder", [0xff; 16], 101_001, 101_001), Ok(()));
    }
}
