//! Fetching from the fabric: bounded waits, chunks that just failed, and a broker known down.

use crate::app::vault::{FsError, Vault};
use crate::domain::fs::Extent;
use crate::ports::fabric::ChunkFabric;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

impl<F: ChunkFabric + 'static> Vault<F> {
    /// Fetches a chunk from the fabric. Fails at once when the chunk failed within the last few
    /// seconds or the broker connection is known down (after [`misses::DOWN_GRACE`] for it to
    /// come back); otherwise waits up to `fetch_timeout` for an answer.
    pub(super) async fn fetch(&self, e: &Extent) -> Result<bytes::Bytes, FsError> {
        let unavailable = |why: &str| FsError::Unavailable(format!("chunk {:?}: {why}", e.addr));
        let got = match self.fabric_for_read(&e.addr).await {
            Ok(fabric) => {
                self.fetch_from(&fabric, e).await.inspect_err(|why| self.reader.misses.record(e.addr, why))
            }
            Err(why) => Err(why),
        };
        if got.is_err() {
            self.read_stats.fetch_failures.fetch_add(1, Ordering::Relaxed);
        } else {
            self.reader.misses.forget(&e.addr);
        }
        got.map_err(|why| unavailable(&why))
    }

    /// The fabric, if a read may use it now; otherwise why not.
    async fn fabric_for_read(&self, addr: &crate::domain::ids::Addr) -> Result<Arc<F>, String> {
        if let Some((ago, why)) = self.reader.misses.get(addr) {
            return Err(format!("{why} {} ms ago; not asked again so soon", ago.as_millis()));
        }
        let wait = if self.reader.offline.load(Ordering::Relaxed) {
            Duration::ZERO
        } else {
            self.opts.fetch_timeout
        };
        let Some(fabric) = self.fabric_within(wait).await else {
            self.reader.offline.store(true, Ordering::Relaxed);
            return Err("the fabric is unreachable (never connected since the mount started)".into());
        };
        let Some(down) = down_for(&*fabric, &*self.clock).await else { return Ok(fabric) };
        let why = format!("the broker connection has been down for {:.1} s", down.as_secs_f64());
        self.reader.misses.record(*addr, &why);
        Err(why)
    }

    /// Asks the fabric for one chunk, waiting up to `fetch_timeout`.
    async fn fetch_from(&self, fabric: &F, e: &Extent) -> Result<bytes::Bytes, String> {
        let mut hints: Vec<_> = self
            .m
            .read()
            .map_err(|err| err.to_string())?
            .chunk(&e.addr)
            .map_err(|err| err.to_string())?
            .map(|c| c.replicas.iter().map(|r| r.node).collect())
            .unwrap_or_default();
        // Spread reads over the replicas (the first one asked differs from chunk to chunk).
        if !hints.is_empty() {
            let first = e.addr.0[0] as usize % hints.len();
            hints.rotate_left(first);
        }
        let items = [(e.addr, self.proof_secret(&e.addr).map_err(|err| err.to_string())?)];
        let started = std::time::Instant::now();
        let got = match tokio::time::timeout(self.opts.fetch_timeout, fabric.get(&items, &hints)).await {
            Ok(Ok(got)) if !got.is_empty() => match got.into_iter().find(|(a, _)| *a == e.addr) {
                Some((_, ct)) => Ok(ct),
                None => Err("the fabric returned another chunk".to_string()),
            },
            Ok(Ok(_)) => Err("no node returned it".to_string()),
            Ok(Err(err)) => Err(err.to_string()),
            Err(_) => Err(format!("timed out after {} s", self.opts.fetch_timeout.as_secs())),
        };
        self.read_stats.fetches.observe(started.elapsed());
        got
    }

    /// The fabric with its broker connection up, waiting up to `within` for a first connection
    /// (and a moment for a lost one to come back); else why not, for `quloud snapshot`, `audit`.
    pub async fn reachable_fabric(&self, within: Duration) -> Result<Arc<F>, FsError> {
        let Some(fabric) = self.fabric_within(within).await else {
            return Err(FsError::Unavailable("the fabric is unreachable (is the broker up?)".into()));
        };
        match down_for(&*fabric, &*self.clock).await {
            None => Ok(fabric),
            Some(down) => Err(FsError::Unavailable(format!(
                "the broker is unreachable: the connection to it has been down for {} s",
                down.as_secs()
            ))),
        }
    }

    /// The fabric, waiting up to `within` for it to connect.
    pub async fn fabric_within(&self, within: std::time::Duration) -> Option<Arc<F>> {
        let mut rx = self.fabric.subscribe();
        let found = match tokio::time::timeout(within, rx.wait_for(|f| f.is_some())).await {
            Ok(Ok(f)) => f.clone(),
            _ => None,
        };
        found
    }
}

/// How long the fabric's broker connection has been down, or `None` if it is up or comes back
/// within what is left of [`DOWN_GRACE`](super::misses::DOWN_GRACE) since it went down (so once
/// it has been down that long, callers fail at once).
async fn down_for<F: ChunkFabric>(fabric: &F, clock: &dyn crate::ports::clock::Clock) -> Option<Duration> {
    let link = fabric.link();
    if link.connected {
        return None;
    }
    let now = clock.now_ms();
    let down = Duration::from_millis(now.saturating_sub(link.since_ms));
    if fabric.up_within(super::misses::DOWN_GRACE.saturating_sub(down)).await {
        return None;
    }
    Some(down.max(super::misses::DOWN_GRACE))
}
