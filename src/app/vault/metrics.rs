//! The mount's read-path counters (`ReadStats`: cache hits and misses, fabric fetch latency) and
//! the cheap live figures an exporter reads without touching the manifest.

use super::Vault;
use crate::app::metrics::{Histogram, FETCH_BUCKETS};
use crate::ports::fabric::ChunkFabric;
use std::sync::atomic::AtomicU64;

/// Counters of the data paths: reads, and the bytes that writes stage.
#[derive(Debug)]
pub struct ReadStats {
    /// Plaintext bytes of chunks loaded below the memory cache (outbox, disk cache or fabric),
    /// for reads and for rechunking files staged in part.
    pub loaded_bytes: AtomicU64,
    /// Bytes written into staging copies (writes; nothing else fills them).
    pub staged_bytes: AtomicU64,
    /// Chunk reads served from the LRU cache of decrypted chunks.
    pub cache_hits: AtomicU64,
    /// Chunk reads that had to load the chunk (outbox, disk cache or fabric), read-ahead included.
    pub cache_misses: AtomicU64,
    /// Chunk loads served from the disk cache of sealed chunks.
    pub disk_hits: AtomicU64,
    /// Fetches of one chunk from the fabric, successful or not.
    pub fetches: Histogram,
    /// Fabric fetches that failed (unreachable, timed out, no node had it).
    pub fetch_failures: AtomicU64,
    /// Batched get requests sent to prefetch a directory's small files.
    pub prefetch_requests: AtomicU64,
    /// Chunks those requests brought into the memory cache.
    pub prefetched: AtomicU64,
}

impl Default for ReadStats {
    fn default() -> Self {
        ReadStats {
            loaded_bytes: AtomicU64::new(0),
            staged_bytes: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            disk_hits: AtomicU64::new(0),
            fetches: Histogram::new(FETCH_BUCKETS),
            fetch_failures: AtomicU64::new(0),
            prefetch_requests: AtomicU64::new(0),
            prefetched: AtomicU64::new(0),
        }
    }
}

/// The read cache's occupancy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheUsage {
    /// Chunks cached.
    pub chunks: u64,
    /// Plaintext bytes cached.
    pub bytes: u64,
    /// The byte budget (`--cache-size`).
    pub capacity: u64,
}

impl<F: ChunkFabric + 'static> Vault<F> {
    /// The read cache's occupancy (holds the cache lock for a moment).
    pub fn cache_usage(&self) -> CacheUsage {
        Self::lock(&self.reader.cache).usage()
    }

    /// The disk cache's occupancy (zero for a read-only vault, which keeps none).
    pub fn disk_cache_usage(&self) -> super::DiskCacheUsage {
        self.reader.disk_cache.as_ref().map(|d| d.usage()).unwrap_or_default()
    }

    /// Whether the vault has a connected fabric (it starts without one and gets one once the
    /// broker answers).
    pub fn has_fabric(&self) -> bool {
        self.fabric.borrow().is_some()
    }

    /// Whether the manifest can be read (one read transaction).
    pub fn manifest_readable(&self) -> Result<(), String> {
        self.m.read().map(|_| ()).map_err(|e| format!("manifest unreadable: {e}"))
    }
}
