//! LRU cache of decrypted chunks, bounded in bytes, and the pool of read buffers it recycles.
//!
//! A chunk read from the disk cache is read (with direct I/O) and decrypted in place in one
//! buffer of [`READ_BUF`] bytes, which then becomes the cache entry: no copy, and no fresh pages
//! to fault in. When such an entry is evicted and no reader holds it any more, its buffer goes
//! back to a small pool for the next read, so a long sequential read turns over the same memory.

use crate::domain::ids::ChunkId;
use lru::LruCache;
use std::ops::{Deref, Range};
use std::sync::Arc;

/// Size of a pooled read buffer: the largest sealed chunk, at a block-aligned offset, padded
/// to whole blocks.
pub const READ_BUF: usize = crate::domain::chunker::MAX_CHUNK + 3 * 4096;
/// Pooled buffers kept at most (beside the cache's budget).
const POOL_MAX: usize = 16;

/// A decrypted chunk: `range` of `buf`.
pub struct Plain {
    buf: Vec<u8>,
    range: Range<usize>,
}

impl Plain {
    /// The plaintext at `range` of `buf` (a pooled read buffer).
    pub fn within(buf: Vec<u8>, range: Range<usize>) -> Self {
        debug_assert!(range.end <= buf.len());
        Plain { buf, range }
    }

    /// Bytes of memory it holds.
    fn footprint(&self) -> u64 {
        self.buf.capacity() as u64
    }
}

impl From<Vec<u8>> for Plain {
    fn from(buf: Vec<u8>) -> Self {
        let range = 0..buf.len();
        Plain { buf, range }
    }
}

impl Deref for Plain {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[self.range.clone()]
    }
}

/// The bytes a read returns: part of one cached chunk (shared, not copied) or a buffer of its
/// own (a read spanning chunks, or of a staged file).
pub enum ReadData {
    /// `range` of a decrypted chunk.
    Shared(Arc<Plain>, Range<usize>),
    /// Bytes of its own.
    Owned(Vec<u8>),
}

impl Deref for ReadData {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            ReadData::Shared(p, r) => &p[r.clone()],
            ReadData::Owned(v) => v,
        }
    }
}

/// Decrypted chunks by id, evicting least recently used ones past `capacity` bytes (counted as
/// the memory each holds).
pub struct ChunkCache {
    lru: LruCache<ChunkId, Arc<Plain>>,
    bytes: u64,
    capacity: u64,
    pool: Vec<Vec<u8>>,
}

impl ChunkCache {
    /// An empty cache holding at most `capacity` bytes.
    pub fn new(capacity: u64) -> Self {
        ChunkCache { lru: LruCache::unbounded(), bytes: 0, capacity, pool: Vec::new() }
    }

    /// A cached chunk.
    pub fn get(&mut self, id: &ChunkId) -> Option<Arc<Plain>> {
        self.lru.get(id).cloned()
    }

    /// Chunks, bytes and byte budget.
    pub fn usage(&self) -> crate::app::vault::CacheUsage {
        crate::app::vault::CacheUsage {
            chunks: self.lru.len() as u64,
            bytes: self.bytes,
            capacity: self.capacity,
        }
    }

    /// Caches a chunk, evicting old ones to stay within capacity.
    pub fn put(&mut self, id: ChunkId, data: Arc<Plain>) {
        if data.footprint() > self.capacity {
            return;
        }
        self.bytes += data.footprint();
        if let Some(old) = self.lru.put(id, data) {
            self.retire(old);
        }
        while self.bytes > self.capacity {
            match self.lru.pop_lru() {
                Some((_, v)) => self.retire(v),
                None => break,
            }
        }
    }

    /// A read buffer of [`READ_BUF`] bytes: a recycled one, or a new one.
    pub fn take_buffer(&mut self) -> Vec<u8> {
        self.pool.pop().unwrap_or_else(|| vec![0; READ_BUF])
    }

    /// A copy of `data` in a read buffer when it is chunk-sized (at least the minimum chunk), so
    /// such entries share one size and the memory of evicted ones serves the next; a small chunk
    /// (a small file's, or a file's last) is copied to a buffer of its own size, so the cache's
    /// budget holds many of them.
    pub fn copy_in(&mut self, data: &[u8]) -> Plain {
        if !(crate::domain::chunker::MIN_CHUNK..=READ_BUF).contains(&data.len()) {
            return Plain::from(data.to_vec());
        }
        let mut buf = self.take_buffer();
        buf[..data.len()].copy_from_slice(data);
        Plain::within(buf, 0..data.len())
    }

    /// Gives back a read buffer that did not become an entry.
    pub fn give_back(&mut self, buf: Vec<u8>) {
        if buf.len() == READ_BUF && self.pool.len() < POOL_MAX {
            self.pool.push(buf);
        }
    }

    /// Uncounts an entry that left the cache; its buffer is recycled unless a reader holds it.
    fn retire(&mut self, old: Arc<Plain>) {
        self.bytes -= old.footprint();
        if let Ok(plain) = Arc::try_unwrap(old) {
            self.give_back(plain.buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(byte: u8, len: usize) -> Arc<Plain> {
        Arc::new(Plain::from(vec![byte; len]))
    }

    #[test]
    fn stays_within_its_byte_budget() {
        let mut c = ChunkCache::new(250);
        for i in 0..10u8 {
            c.put(ChunkId([i; 32]), plain(i, 100));
        }
        assert!(c.bytes <= 250);
        assert!(c.get(&ChunkId([9; 32])).is_some());
        assert!(c.get(&ChunkId([0; 32])).is_none());
        c.put(ChunkId([99; 32]), plain(0, 1000));
        assert!(c.get(&ChunkId([99; 32])).is_none(), "oversized entries are not cached");
        c.put(ChunkId([9; 32]), plain(7, 100));
        assert_eq!(c.get(&ChunkId([9; 32])).unwrap()[0], 7, "a replaced entry is replaced");
        assert_eq!(c.usage().bytes, c.lru.iter().map(|(_, v)| v.footprint()).sum::<u64>());
    }

    #[test]
    fn read_buffers_are_recycled_only_when_no_reader_holds_them() {
        let mut c = ChunkCache::new(3 * READ_BUF as u64);
        let entry = |c: &mut ChunkCache, fill: u8| {
            let mut buf = c.take_buffer();
            buf[4096..4100].fill(fill);
            Arc::new(Plain::within(buf, 4096..4100))
        };
        let a = entry(&mut c, 1);
        assert_eq!(&a[..], &[1; 4]);
        let held = a.clone();
        c.put(ChunkId([1; 32]), a);
        for i in 2..6u8 {
            let e = entry(&mut c, i);
            c.put(ChunkId([i; 32]), e);
        }
        assert!(c.usage().bytes <= 3 * READ_BUF as u64);
        assert_eq!(&held[..], &[1; 4], "an evicted entry a reader holds is left alone");
        assert_eq!(c.pool.len(), 1, "the entry nobody held went back to the pool");
        let reused = c.take_buffer();
        assert_eq!(reused.len(), READ_BUF);
        assert!(c.pool.is_empty());
        c.give_back(vec![0; 10]);
        assert!(c.pool.is_empty(), "only read buffers are pooled");
    }

    #[test]
    fn written_chunks_are_copied_into_read_buffers_so_entries_share_one_size() {
        let mut c = ChunkCache::new(8 * READ_BUF as u64);
        let chunk = vec![3u8; crate::domain::chunker::MIN_CHUNK];
        let copy = c.copy_in(&chunk);
        assert_eq!(&copy[..], &chunk[..]);
        assert_eq!(copy.footprint(), READ_BUF as u64, "chunk-sized: a read buffer");
        let e = Arc::new(copy);
        c.put(ChunkId([1; 32]), e);
        let small = c.copy_in(b"a small file");
        assert_eq!(&small[..], b"a small file");
        assert_eq!(small.footprint(), 12, "small: its own size");
        let huge = c.copy_in(&vec![5u8; READ_BUF + 1]);
        assert_eq!(huge.len(), READ_BUF + 1, "larger than a read buffer: kept as is");
    }
}
