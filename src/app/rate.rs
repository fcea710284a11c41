//! Per-source rate limits for a storage node: a token bucket per request source, the sources
//! kept in a bounded LRU so that a publisher inventing new sources costs memory only up to the
//! bound. Pure and synchronous: time comes in as milliseconds.
//!
//! What a source is depends on the request: a store request's source is the vault it names (its
//! ack token), a request/reply's is the first token of its reply subject (the client's inbox
//! prefix, which Quloud clients make their own). A fresh source starts with a full bucket, so
//! these limits give fairness between well-behaved sources; the hard bounds against a flood from
//! ever-new sources are the node's fixed concurrency, its capacity and the broker's limits.

use lru::LruCache;
use std::num::NonZeroUsize;

/// A sustained rate and a burst, in units per second (bytes for stores, proof items for
/// requests). A rate of 0 means unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Units refilled per second.
    pub per_sec: u64,
    /// Most units a source may spend at once.
    pub burst: u64,
}

impl RateLimit {
    /// No limit.
    pub const UNLIMITED: RateLimit = RateLimit { per_sec: 0, burst: 0 };

    /// `per_sec` with a burst of two seconds' worth.
    pub fn per_second(per_sec: u64) -> RateLimit {
        RateLimit { per_sec, burst: per_sec.saturating_mul(2) }
    }
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    /// Available units, in thousandths.
    milli: u128,
    at_ms: u64,
}

/// Token buckets for up to `sources` sources.
pub struct SourceLimiter {
    limit: RateLimit,
    buckets: LruCache<[u8; 16], Bucket>,
}

impl SourceLimiter {
    /// A limiter for `limit`, remembering at most `sources` sources (at least 1). The burst is
    /// raised to `min_burst` so that the largest single request can ever be admitted.
    pub fn new(limit: RateLimit, min_burst: u64, sources: usize) -> Self {
        let limit = RateLimit { per_sec: limit.per_sec, burst: limit.burst.max(min_burst) };
        let cap = NonZeroUsize::new(sources.max(1)).unwrap_or(NonZeroUsize::MIN);
        SourceLimiter { limit, buckets: LruCache::new(cap) }
    }

    /// Whether `source` may spend `cost` units now; spends them if so.
    pub fn admit(&mut self, source: &[u8], cost: u64, now_ms: u64) -> bool {
        if self.limit.per_sec == 0 {
            return true;
        }
        let key: [u8; 16] = blake3::hash(source).as_bytes()[..16].try_into().unwrap_or([0; 16]);
        let full = u128::from(self.limit.burst) * 1000;
        let bucket = self.buckets.get_or_insert_mut(key, || Bucket { milli: full, at_ms: now_ms });
        let elapsed = u128::from(now_ms.saturating_sub(bucket.at_ms));
        bucket.milli = (bucket.milli + elapsed * u128::from(self.limit.per_sec)).min(full);
        bucket.at_ms = bucket.at_ms.max(now_ms);
        let want = u128::from(cost) * 1000;
        if bucket.milli >= want {
            bucket.milli -= want;
            true
        } else {
            false
        }
    }

    /// Sources remembered now.
    pub fn sources(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_gets_its_burst_then_its_rate() {
        let mut l = SourceLimiter::new(RateLimit { per_sec: 10, burst: 20 }, 1, 8);
        let admitted = (0..100).filter(|_| l.admit(b"a", 1, 1_000)).count();
        assert_eq!(admitted, 20);
        assert!(!l.admit(b"a", 1, 1_050), "half a token is not a token");
        assert!(l.admit(b"a", 1, 1_100));
        // A second later: ten more, not more than the burst after a long pause.
        assert_eq!((0..100).filter(|_| l.admit(b"a", 1, 2_100)).count(), 10);
        assert_eq!((0..100).filter(|_| l.admit(b"a", 1, 60_000)).count(), 20);
    }

    #[test]
    fn sources_are_limited_independently_and_bounded_in_number() {
        let mut l = SourceLimiter::new(RateLimit { per_sec: 1, burst: 1 }, 1, 4);
        assert!(l.admit(b"a", 1, 0));
        assert!(!l.admit(b"a", 1, 0));
        assert!(l.admit(b"b", 1, 0), "another source is not held back by the first");
        for i in 0..1000u32 {
            l.admit(&i.to_le_bytes(), 1, 0);
        }
        assert_eq!(l.sources(), 4);
    }

    #[test]
    fn the_largest_request_fits_the_burst_and_zero_means_unlimited() {
        let mut l = SourceLimiter::new(RateLimit { per_sec: 1, burst: 1 }, 64, 4);
        assert!(l.admit(b"a", 64, 0));
        let mut u = SourceLimiter::new(RateLimit::UNLIMITED, 1, 4);
        assert!((0..10_000).all(|_| u.admit(b"a", u64::MAX, 0)));
        assert_eq!(u.sources(), 0);
    }

    #[test]
    fn a_clock_going_backwards_grants_nothing() {
        let mut l = SourceLimiter::new(RateLimit { per_sec: 1000, burst: 1 }, 1, 4);
        assert!(l.admit(b"a", 1, 10_000));
        assert!(!l.admit(b"a", 1, 5_000));
        assert!(!l.admit(b"a", 1, 10_000));
        assert!(l.admit(b"a", 1, 10_001));
    }
}
