//! The bottom read layer, [`FabricFetch`]: fetching from the fabric with bounded waits, chunks
//! that just failed, and a broker known down; a fetched chunk is kept in the disk cache and
//! decrypted with the vault's or a share's secrets. Also the vault's waits for its fabric.

use super::cache::{ChunkCache, Plain};
use super::misses::RecentMisses;
use super::open::Checked;
use super::ChunkSource;
use crate::app::vault::{FsError, Vault};
use crate::domain::fs::Extent;
use crate::ports::fabric::ChunkFabric;
use crate::ports::local_disk::DiskCache;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Chunks from the fabric `F`: what it lately failed to deliver, and whether it is known
/// unreachable; fetched ciphertexts go to the disk cache and are opened in pooled buffers.
pub(in crate::app::vault) struct FabricFetch<F> {
    /// The fabric, once connected.
    fabric: watch::Receiver<Option<Arc<F>>>,
    /// A read already waited out `fetch_timeout` for a first connection: until one comes, reads
    /// that need the fabric fail at once instead of each waiting again.
    offline: AtomicBool,
    /// Chunks the fabric just failed to deliver: asked again soon, they fail at once.
    misses: RecentMisses,
    /// The pool of read buffers (in the memory cache).
    pool: Arc<Mutex<ChunkCache>>,
    /// Where fetched chunks are kept for the next read (none for read-only vaults).
    disk: Option<Arc<dyn DiskCache>>,
}

impl<F: ChunkFabric + 'static> ChunkSource<F> for FabricFetch<F> {
    /// Fetches the chunk (the fabric checks it against its address) and opens it.
    async fn chunk(&self, v: &Vault<F>, e: &Extent) -> Result<Arc<Plain>, FsError> {
        let ct = self.fetch(v, e).await?;
        self.open_fetched(v, e, &ct).map(Arc::new)
    }
}

impl<F: ChunkFabric + 'static> FabricFetch<F> {
    /// Fetches from the fabric `fabric` announces; buffers from `pool`, copies kept in `disk`.
    pub(super) fn new(
        fabric: watch::Receiver<Option<Arc<F>>>,
        pool: Arc<Mutex<ChunkCache>>,
        disk: Option<Arc<dyn DiskCache>>,
    ) -> Self {
        FabricFetch { fabric, offline: AtomicBool::new(false), misses: RecentMisses::default(), pool, disk }
    }

    /// A fabric connected: reads may wait for it again.
    pub(super) fn fabric_back(&self) {
        self.offline.store(false, Ordering::Relaxed);
    }

    /// Fetches a chunk from the fabric. Fails at once when the chunk failed within the last few
    /// seconds or the broker connection is known down (after [`misses::DOWN_GRACE`] for it to
    /// come back); otherwise waits up to `fetch_timeout` for an answer.
    async fn fetch(&self, v: &Vault<F>, e: &Extent) -> Result<bytes::Bytes, FsError> {
        let unavailable = |why: &str| FsError::Unavailable(format!("chunk {:?}: {why}", e.addr));
        let got = match self.fabric_for_read(v, &e.addr).await {
            Ok(fabric) => {
                Self::fetch_from(v, &fabric, e).await.inspect_err(|why| self.misses.record(e.addr, why))
            }
            Err(why) => Err(why),
        };
        if got.is_err() {
            v.read_stats.fetch_failures.fetch_add(1, Ordering::Relaxed);
        } else {
            self.misses.forget(&e.addr);
        }
        got.map_err(|why| unavailable(&why))
    }

    /// The fabric, if a read may use it now; otherwise why not.
    async fn fabric_for_read(&self, v: &Vault<F>, addr: &crate::domain::ids::Addr) -> Result<Arc<F>, String> {
        if let Some((ago, why)) = self.misses.get(addr) {
            return Err(format!("{why} {} ms ago; not asked again so soon", ago.as_millis()));
        }
        let wait = if self.offline.load(Ordering::Relaxed) { Duration::ZERO } else { v.opts.fetch_timeout };
        let Some(fabric) = fabric_within(self.fabric.clone(), wait).await else {
            self.offline.store(true, Ordering::Relaxed);
            return Err("the fabric is unreachable (never connected since the mount started)".into());
        };
        let Some(down) = down_for(&*fabric, &*v.clock).await else { return Ok(fabric) };
        let why = format!("the broker connection has been down for {:.1} s", down.as_secs_f64());
        self.misses.record(*addr, &why);
        Err(why)
    }

    /// Asks the fabric for one chunk, waiting up to `fetch_timeout`.
    async fn fetch_from(v: &Vault<F>, fabric: &F, e: &Extent) -> Result<bytes::Bytes, String> {
        let mut hints: Vec<_> =
            v.m.read()
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
        let items = [(e.addr, v.proof_secret(&e.addr).map_err(|err| err.to_string())?)];
        let started = std::time::Instant::now();
        let got = match tokio::time::timeout(v.opts.fetch_timeout, fabric.get(&items, &hints)).await {
            Ok(Ok(got)) if !got.is_empty() => match got.into_iter().find(|(a, _)| *a == e.addr) {
                Some((_, ct)) => Ok(ct),
                None => Err("the fabric returned another chunk".to_string()),
            },
            Ok(Ok(_)) => Err("no node returned it".to_string()),
            Ok(Err(err)) => Err(err.to_string()),
            Err(_) => Err(format!("timed out after {} s", v.opts.fetch_timeout.as_secs())),
        };
        v.read_stats.fetches.observe(started.elapsed());
        got
    }

    /// A fetched ciphertext (the fabric verified it against its addr), copied block-aligned into
    /// a pooled buffer, kept in the disk cache from there for the next read (as uploads are) and
    /// decrypted in place: the buffer becomes the cache entry.
    fn open_fetched(&self, v: &Vault<F>, e: &Extent, ct: &[u8]) -> Result<Plain, FsError> {
        let mut buf = lock(&self.pool).take_buffer();
        let start = buf.as_ptr().align_offset(crate::ports::local_disk::BLOCK);
        let at = start..start + ct.len();
        let Some(area) = buf.get_mut(at.clone()) else {
            lock(&self.pool).give_back(buf);
            return Err(FsError::Unavailable(format!("chunk {:?}: larger than a chunk", e.addr)));
        };
        area.copy_from_slice(ct);
        if let Some(disk) = &self.disk {
            tokio::task::block_in_place(|| disk.put_aligned(&e.addr, &mut buf, at.clone()));
        }
        match v.open_in(e, &mut buf[at], Checked::Already) {
            Ok(len) => Ok(Plain::within(buf, start..start + len)),
            Err(err) => {
                lock(&self.pool).give_back(buf);
                Err(err)
            }
        }
    }
}

impl<F: ChunkFabric + 'static> Vault<F> {
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
        fabric_within(self.fabric.subscribe(), within).await
    }
}

/// The fabric `rx` announces, waiting up to `within` for it to connect.
async fn fabric_within<F>(mut rx: watch::Receiver<Option<Arc<F>>>, within: Duration) -> Option<Arc<F>> {
    let found = match tokio::time::timeout(within, rx.wait_for(|f| f.is_some())).await {
        Ok(Ok(f)) => f.clone(),
        _ => None,
    };
    found
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
