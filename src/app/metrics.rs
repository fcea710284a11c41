//! Transport-free measurement primitives the use cases own: a latency histogram on plain atomics.
//!
//! No global registry: each service owns its counters and histograms, and an adapter
//! (`adapters::metrics`) reads them to render a text format. Recording is a few relaxed atomic
//! adds, so it never blocks a request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bucket upper bounds (seconds) for a node's request handling: sub-millisecond proof checks up
/// to multi-second fsyncs on a slow disk.
pub const REQUEST_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Bucket upper bounds (seconds) for an owner's fetch of one chunk from the fabric (a round trip
/// through the broker, up to the fetch timeout).
pub const FETCH_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// A latency histogram with fixed buckets.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative); the last one is above every bound.
    buckets: Box<[AtomicU64]>,
    sum_ns: AtomicU64,
}

/// A histogram's values at one moment, cumulative as Prometheus wants them.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSnapshot {
    /// (upper bound in seconds, observations at or below it), ascending.
    pub buckets: Vec<(f64, u64)>,
    /// Every observation (the `+Inf` bucket).
    pub count: u64,
    /// Sum of every observation, in seconds.
    pub sum: f64,
}

impl Histogram {
    /// An empty histogram over `bounds` (seconds, ascending).
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = self.bounds.iter().position(|b| secs <= *b).unwrap_or(self.bounds.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Cumulative counts. `count` is the sum of the buckets, so it always equals the `+Inf`
    /// bucket even while other threads record.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut total = 0;
        let mut buckets = Vec::with_capacity(self.bounds.len());
        for (i, b) in self.bounds.iter().enumerate() {
            total += self.buckets[i].load(Ordering::Relaxed);
            buckets.push((*b, total));
        }
        total += self.buckets[self.bounds.len()].load(Ordering::Relaxed);
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        HistogramSnapshot { buckets, count: total, sum }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_count_matches() {
        let h = Histogram::new(&[0.001, 0.01, 0.1]);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(1)); // on a bound: counted in it (le = less or equal)
        h.observe(Duration::from_millis(50));
        h.observe(Duration::from_secs(3));
        let s = h.snapshot();
        assert_eq!(s.buckets, vec![(0.001, 2), (0.01, 2), (0.1, 3)]);
        assert_eq!(s.count, 4);
        assert!((s.sum - 3.0515).abs() < 1e-9, "sum {}", s.sum);
    }

    #[test]
    fn an_empty_histogram_is_all_zero() {
        let s = Histogram::new(REQUEST_BUCKETS).snapshot();
        assert_eq!(s.count, 0);
        assert_eq!(s.sum, 0.0);
        assert!(s.buckets.iter().all(|(_, c)| *c == 0));
        assert_eq!(s.buckets.len(), REQUEST_BUCKETS.len());
    }
}
