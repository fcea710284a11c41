//! The upper read layers: [`MemoryCached`] keeps decrypted chunks in memory and shares one load
//! per chunk among concurrent readers; [`LocalCopies`] opens a chunk from the outbox or the disk
//! cache, each copy checked against its address, before asking the layer below.

use super::cache::{ChunkCache, Plain};
use super::open::Checked;
use super::ChunkSource;
use crate::app::vault::{FsError, Vault};
use crate::domain::fs::Extent;
use crate::domain::ids::ChunkId;
use crate::ports::fabric::ChunkFabric;
use crate::ports::local_disk::DiskCache;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

/// Chunk loads in flight at once: each holds up to ~2 MiB (ciphertext and plaintext).
const MAX_LOADS: usize = 16;

/// One chunk load, shared by every reader waiting for that chunk.
pub(super) type ChunkLoad = tokio::sync::OnceCell<Arc<Plain>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The LRU of decrypted chunks over `S`: concurrent readers of one chunk (several kernel read
/// requests per chunk, plus read-ahead) share a single load, and loads in flight are bounded.
pub(in crate::app::vault) struct MemoryCached<S> {
    inner: S,
    /// Decrypted chunks in memory, and the pool of read buffers.
    cache: Arc<Mutex<ChunkCache>>,
    /// Chunk loads allowed at once (bounds read memory beyond the cache).
    loads: tokio::sync::Semaphore,
    /// Chunk loads in progress, shared by concurrent readers.
    fetching: Mutex<HashMap<ChunkId, Arc<ChunkLoad>>>,
}

impl<S> MemoryCached<S> {
    /// `inner` behind the memory cache `cache`.
    pub(super) fn new(inner: S, cache: Arc<Mutex<ChunkCache>>) -> Self {
        MemoryCached {
            inner,
            cache,
            loads: tokio::sync::Semaphore::new(MAX_LOADS),
            fetching: Mutex::default(),
        }
    }

    /// The layer below.
    pub(super) fn inner(&self) -> &S {
        &self.inner
    }
}

impl<F: ChunkFabric + 'static, S: ChunkSource<F>> ChunkSource<F> for MemoryCached<S> {
    /// The cached plaintext, or a load shared with every concurrent reader of the chunk.
    async fn chunk(&self, v: &Vault<F>, e: &Extent) -> Result<Arc<Plain>, FsError> {
        if let Some(p) = lock(&self.cache).get(&e.id) {
            v.read_stats.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(p);
        }
        v.read_stats.cache_misses.fetch_add(1, Ordering::Relaxed);
        let cell = self.claim(e.id);
        let result = cell.get_or_try_init(|| self.load(v, e)).await.cloned();
        self.release(e.id, &cell);
        result
    }
}

impl<S> MemoryCached<S> {
    /// The load of chunk `id`, shared with every concurrent reader of it (a new one if none is
    /// in progress); whoever initialises it first loads the chunk.
    pub(super) fn claim(&self, id: ChunkId) -> Arc<ChunkLoad> {
        lock(&self.fetching).entry(id).or_default().clone()
    }

    /// Forgets `cell` as the load of `id` once it is done (unless a newer load took its place).
    pub(super) fn release(&self, id: ChunkId, cell: &Arc<ChunkLoad>) {
        let mut fetching = lock(&self.fetching);
        if fetching.get(&id).is_some_and(|c| Arc::ptr_eq(c, cell)) {
            fetching.remove(&id);
        }
    }

    /// One load from the layer below, kept in the cache.
    async fn load<F: ChunkFabric + 'static>(&self, v: &Vault<F>, e: &Extent) -> Result<Arc<Plain>, FsError>
    where
        S: ChunkSource<F>,
    {
        if let Some(p) = lock(&self.cache).get(&e.id) {
            return Ok(p);
        }
        // Bounds the memory of loads in flight (ciphertext + plaintext per load) beside the cache.
        let _slot = self.loads.acquire().await.map_err(|_| FsError::Unavailable("shutting down".into()))?;
        let plain = self.inner.chunk(v, e).await?;
        v.read_stats.loaded_bytes.fetch_add(plain.len() as u64, Ordering::Relaxed);
        lock(&self.cache).put(e.id, plain.clone());
        Ok(plain)
    }
}

/// The local copies over `S`: the outbox (chunks not uploaded yet) and the disk cache of sealed
/// chunks. A disk cache copy that does not open is dropped (the fabric has the chunk).
pub(in crate::app::vault) struct LocalCopies<S> {
    inner: S,
    /// The pool of read buffers (in the memory cache).
    pool: Arc<Mutex<ChunkCache>>,
    /// Sealed chunks on local disk (none for read-only vaults).
    disk: Option<Arc<dyn DiskCache>>,
}

impl<S> LocalCopies<S> {
    /// `inner` behind the local copies; read buffers come from `pool`.
    pub(super) fn new(inner: S, pool: Arc<Mutex<ChunkCache>>, disk: Option<Arc<dyn DiskCache>>) -> Self {
        LocalCopies { inner, pool, disk }
    }

    /// The layer below.
    pub(super) fn inner(&self) -> &S {
        &self.inner
    }
}

impl<F: ChunkFabric + 'static, S: ChunkSource<F>> ChunkSource<F> for LocalCopies<S> {
    /// A local copy's plaintext, else the layer below's.
    async fn chunk(&self, v: &Vault<F>, e: &Extent) -> Result<Arc<Plain>, FsError> {
        match self.load_local(v, e).await? {
            Some(plain) => Ok(Arc::new(plain)),
            None => self.inner.chunk(v, e).await,
        }
    }
}

impl<S> LocalCopies<S> {
    /// The plaintext from the outbox or the disk cache, if either has the chunk.
    async fn load_local<F: ChunkFabric + 'static>(
        &self,
        v: &Vault<F>,
        e: &Extent,
    ) -> Result<Option<Plain>, FsError> {
        let small = v.m.view().small_outbox(&e.addr)?;
        let outbox = match small {
            Some(ct) => Some(ct),
            None => {
                let (outbox, addr) = (v.pipeline.outbox.clone(), e.addr);
                tokio::task::spawn_blocking(move || outbox.read_plain(&addr)).await.ok().and_then(|r| r.ok())
            }
        };
        if let Some(ct) = outbox {
            return v.open_chunk(e, ct).map(|p| Some(p.into()));
        }
        let Some(disk) = &self.disk else { return Ok(None) };
        // Read and decrypted in place in a pooled buffer, which becomes the cache entry.
        let mut buf = lock(&self.pool).take_buffer();
        let opened = tokio::task::block_in_place(|| {
            let ct = disk.read_into(&e.addr, &mut buf)?;
            Some(v.open_in(e, &mut buf[ct.clone()], Checked::No).map(|len| ct.start..ct.start + len))
        });
        match opened {
            Some(Ok(plain)) => {
                v.read_stats.disk_hits.fetch_add(1, Ordering::Relaxed);
                Ok(Some(Plain::within(buf, plain)))
            }
            Some(Err(err)) => {
                lock(&self.pool).give_back(buf);
                tracing::warn!(addr = ?e.addr, error = %err, "damaged chunk in the disk cache dropped; fetching it");
                disk.forget(&e.addr);
                Ok(None)
            }
            None => {
                lock(&self.pool).give_back(buf);
                Ok(None)
            }
        }
    }
}
