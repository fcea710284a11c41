//! Reading file data: from the staging copy, or chunk by chunk through layers: the memory cache
//! of decrypted chunks (`cache.rs`), the local copies (outbox and disk cache), then the fabric
//! with misses and offline handling (`fetch.rs`); `load.rs` stacks them and read-ahead warms
//! the cache for sequential readers.

pub(super) mod cache;
mod fetch;
mod load;
pub(super) mod misses;

use super::{Fh, FsError, Vault};
use crate::domain::fs::{Extent, Ino};
use crate::ports::fabric::ChunkFabric;
use crate::ports::local_disk::DiskCache;
use cache::{ChunkCache, Plain, ReadData};
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

/// Chunks fetched ahead of a sequential reader (from different replicas, in parallel).
const READ_AHEAD_CHUNKS: usize = 12;
/// Chunk loads in flight at once: each holds up to ~2 MiB (ciphertext and plaintext).
const MAX_LOADS: usize = 16;

/// One chunk load, shared by every reader waiting for that chunk.
type ChunkLoad = tokio::sync::OnceCell<Arc<Plain>>;

/// The reader part's state: the caches and what the fabric lately failed to deliver.
pub(super) struct Reader {
    /// Decrypted chunks in memory.
    pub(super) cache: Mutex<ChunkCache>,
    /// Sealed chunks on local disk (none for read-only vaults).
    pub(super) disk_cache: Option<Arc<dyn DiskCache>>,
    /// A read already waited out `fetch_timeout` for a first connection: until one comes, reads
    /// that need the fabric fail at once instead of each waiting again.
    pub(super) offline: AtomicBool,
    /// Chunks the fabric just failed to deliver: asked again soon, they fail at once.
    pub(super) misses: misses::RecentMisses,
    /// Chunk loads allowed at once (bounds read memory beyond the cache).
    pub(super) loads: tokio::sync::Semaphore,
    /// Chunk loads in progress, shared by concurrent readers.
    pub(super) fetching: Mutex<HashMap<crate::domain::ids::ChunkId, Arc<ChunkLoad>>>,
}

impl Reader {
    /// A reader with `cache_bytes` of memory cache over `disk_cache`.
    pub(super) fn new(cache_bytes: u64, disk_cache: Option<Arc<dyn DiskCache>>) -> Self {
        Reader {
            cache: Mutex::new(ChunkCache::new(cache_bytes)),
            disk_cache,
            offline: AtomicBool::new(false),
            misses: misses::RecentMisses::default(),
            loads: tokio::sync::Semaphore::new(MAX_LOADS),
            fetching: Mutex::default(),
        }
    }
}

impl<F: ChunkFabric + 'static> Vault<F> {
    /// Reads from staging, the cache, the outbox or the fabric.
    pub async fn read(
        self: &Arc<Self>,
        ino: Ino,
        _fh: Fh,
        offset: u64,
        size: u32,
    ) -> Result<ReadData, FsError> {
        let staged =
            Self::lock(&self.writer.files).get(&ino).and_then(|f| f.staging.clone().map(|s| (s, f.size)));
        if let Some((file, len)) = staged {
            let end = (offset + size as u64).min(len);
            if offset >= end {
                return Ok(ReadData::Owned(Vec::new()));
            }
            let mut buf = vec![0u8; (end - offset) as usize];
            let n = tokio::task::block_in_place(|| read_full_at(&file, &mut buf, offset))?;
            buf.truncate(n);
            return Ok(ReadData::Owned(buf));
        }
        let attr = self.m.view().inode(ino)?;
        let end = (offset + size as u64).min(attr.size);
        if offset >= end {
            return Ok(ReadData::Owned(Vec::new()));
        }
        let extents = self.m.view().extents(ino, offset, end)?;
        // A read that lies in one chunk (the kernel asks 128 KiB to 1 MiB, chunks average
        // ~640 KiB) is answered from the cached chunk itself, without a copy.
        if let [e] = extents.as_slice() {
            if e.offset <= offset && end <= e.offset + u64::from(e.len) {
                let data = self.plaintext(e).await?;
                let range = (offset - e.offset) as usize..(end - e.offset) as usize;
                if range.end <= data.len() {
                    self.read_ahead(ino, end);
                    return Ok(ReadData::Shared(data, range));
                }
            }
        }
        let fetched = futures::future::join_all(extents.iter().map(|e| self.plaintext(e))).await;
        let mut buf = vec![0u8; (end - offset) as usize];
        for (e, data) in extents.iter().zip(fetched) {
            let data = data?;
            let from = offset.max(e.offset);
            let to = end.min(e.offset + data.len() as u64);
            if from < to {
                buf[(from - offset) as usize..(to - offset) as usize]
                    .copy_from_slice(&data[(from - e.offset) as usize..(to - e.offset) as usize]);
            }
        }
        self.read_ahead(ino, end);
        Ok(ReadData::Owned(buf))
    }

    /// Starts fetching the chunks after `end` so sequential readers find them cached.
    fn read_ahead(self: &Arc<Self>, ino: Ino, end: u64) {
        let Ok(rx) = self.m.read() else { return };
        let window = READ_AHEAD_CHUNKS as u64 * crate::domain::chunker::MAX_CHUNK as u64;
        let Ok(next) = rx.extents(ino, end, end + window) else { return };
        let next: Vec<Extent> =
            next.into_iter().filter(|e| e.offset >= end).take(READ_AHEAD_CHUNKS).collect();
        let cached = |e: &Extent| Self::lock(&self.reader.cache).get(&e.id).is_some();
        for e in next.into_iter().filter(|e| !cached(e)) {
            let me = self.clone();
            tokio::spawn(async move {
                let _ = me.plaintext(&e).await;
            });
        }
    }
}

fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64)? {
            0 => break,
            n => done += n,
        }
    }
    Ok(done)
}
