//! Reading file data: from the staging copy, or chunk by chunk through a stack of
//! [`ChunkSource`] layers, each decorating the one below: [`MemoryCached`] (the LRU of decrypted
//! chunks, `cache.rs`, and one shared load per chunk) over [`LocalCopies`] (outbox and disk
//! cache, `load.rs`) over [`FabricFetch`] (the fabric with misses and offline handling,
//! `fetch.rs`); `open.rs` opens a ciphertext with the vault's or a share's secrets. Read-ahead
//! warms the memory cache for sequential readers; `prefetch.rs` fetches a directory's small files
//! in batched gets when it is listed or its first file is read.

pub(super) mod cache;
mod fetch;
mod load;
pub(super) mod misses;
mod open;
mod prefetch;

use super::{Fh, FsError, Vault};
use crate::domain::fs::{Extent, Ino};
use crate::domain::partial::Run;
use crate::ports::fabric::ChunkFabric;
use crate::ports::local_disk::{DiskCache, StagedFile};
use cache::{ChunkCache, Plain, ReadData};
pub(super) use fetch::FabricFetch;
pub(super) use load::{LocalCopies, MemoryCached};
pub use prefetch::PREFETCH_FILE_MAX;
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Chunks fetched ahead of a sequential reader (from different replicas, in parallel).
const READ_AHEAD_CHUNKS: usize = 12;

/// A layer of the read path: gives the verified, decrypted chunk of an extent. `v` lends the
/// vault-wide handles a layer reads with (manifest, keys, outbox, clock, options, stats).
pub(super) trait ChunkSource<F: ChunkFabric + 'static>: Send + Sync {
    /// The plaintext of `e`'s chunk, checked against its address.
    fn chunk(&self, v: &Vault<F>, e: &Extent) -> impl Future<Output = Result<Arc<Plain>, FsError>> + Send;
}

/// The read stack of a vault.
type Stack<F> = MemoryCached<LocalCopies<FabricFetch<F>>>;

/// The reader part: the layered chunk source, and handles on the memory cache and the disk
/// cache for the parts that fill or consult them (chunker, uploader, healer, metrics).
pub(super) struct Reader<F> {
    /// Decrypted chunks in memory (shared with [`MemoryCached`], which keeps it).
    pub(super) cache: Arc<Mutex<ChunkCache>>,
    /// Sealed chunks on local disk (none for read-only vaults).
    pub(super) disk_cache: Option<Arc<dyn DiskCache>>,
    /// The layers, top first.
    chunks: Stack<F>,
    /// Which directories were prefetched lately, and where files were looked up.
    pub(super) prefetch: prefetch::Prefetch,
}

impl<F: ChunkFabric + 'static> Reader<F> {
    /// A reader with `cache_bytes` of memory cache over `disk_cache`, fetching from the fabric
    /// that `fabric` announces.
    pub(super) fn new(
        cache_bytes: u64,
        disk_cache: Option<Arc<dyn DiskCache>>,
        fabric: watch::Receiver<Option<Arc<F>>>,
    ) -> Self {
        let cache = Arc::new(Mutex::new(ChunkCache::new(cache_bytes)));
        let fetch = FabricFetch::new(fabric, cache.clone(), disk_cache.clone());
        let local = LocalCopies::new(fetch, cache.clone(), disk_cache.clone());
        let chunks = MemoryCached::new(local, cache.clone());
        Reader { chunks, cache, disk_cache, prefetch: prefetch::Prefetch::default() }
    }

    /// A fabric connected: reads may wait for it again.
    pub(super) fn fabric_back(&self) {
        self.chunks.inner().inner().fabric_back();
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
        let staged = Self::lock(&self.writer.files).get(&ino).and_then(|f| {
            let end = (offset + size as u64).min(f.size);
            let runs = f.partial.as_ref().map(|p| p.runs(offset, end));
            f.staging.clone().map(|s| (s, end, runs))
        });
        if let Some((file, end, runs)) = staged {
            if offset >= end {
                return Ok(ReadData::Owned(Vec::new()));
            }
            let mut buf = vec![0u8; (end - offset) as usize];
            match runs {
                Some(runs) => self.read_runs(ino, &*file, &runs, offset, &mut buf).await?,
                None => {
                    let n = tokio::task::block_in_place(|| read_full_at(&*file, &mut buf, offset))?;
                    buf.truncate(n);
                }
            }
            return Ok(ReadData::Owned(buf));
        }
        let attr = self.m.view().inode(ino)?;
        let end = (offset + size as u64).min(attr.size);
        if offset >= end {
            return Ok(ReadData::Owned(Vec::new()));
        }
        if offset == 0 && attr.size <= PREFETCH_FILE_MAX {
            self.prefetch_parent(ino);
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
        place(&extents, fetched, offset, &mut buf)?;
        self.read_ahead(ino, end);
        Ok(ReadData::Owned(buf))
    }

    /// Fills `buf` (the file's bytes from `offset`) run by run: local runs from the staging
    /// copy of a file staged in part (zeros past its end), the others from its chunks.
    pub(in crate::app::vault) async fn read_runs(
        &self,
        ino: Ino,
        file: &dyn StagedFile,
        runs: &[Run],
        offset: u64,
        buf: &mut [u8],
    ) -> Result<(), FsError> {
        for run in runs {
            match *run {
                Run::Local { start, end } => {
                    let part = &mut buf[(start - offset) as usize..(end - offset) as usize];
                    let n = tokio::task::block_in_place(|| read_full_at(file, part, start))?;
                    part[n..].fill(0);
                }
                Run::Chunks { start, end } => {
                    let part = &mut buf[(start - offset) as usize..(end - offset) as usize];
                    self.read_chunks(ino, start, part).await?;
                }
            }
        }
        Ok(())
    }

    /// Fills `buf` with the bytes of `ino`'s committed chunks from `start` (zeros where none).
    pub(in crate::app::vault) async fn read_chunks(
        &self,
        ino: Ino,
        start: u64,
        buf: &mut [u8],
    ) -> Result<(), FsError> {
        let end = start + buf.len() as u64;
        let extents = self.m.view().extents(ino, start, end)?;
        let fetched = futures::future::join_all(extents.iter().map(|e| self.plaintext(e))).await;
        buf.fill(0);
        place(&extents, fetched, start, buf)
    }

    /// The plaintext of one extent's chunk, through the reader's layers.
    pub(in crate::app::vault) async fn plaintext(&self, e: &Extent) -> Result<Arc<Plain>, FsError> {
        self.reader.chunks.chunk(self, e).await
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

pub(in crate::app::vault) fn read_full_at(
    file: &dyn StagedFile,
    buf: &mut [u8],
    offset: u64,
) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64)? {
            0 => break,
            n => done += n,
        }
    }
    Ok(done)
}

/// Copies what each fetched extent holds of `buf` (the file's bytes from `start`) into it.
fn place(
    extents: &[Extent],
    fetched: Vec<Result<Arc<Plain>, FsError>>,
    start: u64,
    buf: &mut [u8],
) -> Result<(), FsError> {
    let end = start + buf.len() as u64;
    for (e, data) in extents.iter().zip(fetched) {
        let data = data?;
        let from = start.max(e.offset);
        let to = end.min(e.offset + data.len() as u64);
        if from < to {
            buf[(from - start) as usize..(to - start) as usize]
                .copy_from_slice(&data[(from - e.offset) as usize..(to - e.offset) as usize]);
        }
    }
    Ok(())
}
