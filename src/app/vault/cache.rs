//! LRU cache of decrypted chunks, bounded in bytes.

use crate::domain::ids::ChunkId;
use lru::LruCache;
use std::sync::Arc;

/// Decrypted chunks by id, evicting least recently used ones past `capacity` bytes.
pub struct ChunkCache {
    lru: LruCache<ChunkId, Arc<Vec<u8>>>,
    bytes: u64,
    capacity: u64,
}

impl ChunkCache {
    /// An empty cache holding at most `capacity` bytes.
    pub fn new(capacity: u64) -> Self {
        ChunkCache { lru: LruCache::unbounded(), bytes: 0, capacity }
    }

    /// A cached chunk.
    pub fn get(&mut self, id: &ChunkId) -> Option<Arc<Vec<u8>>> {
        self.lru.get(id).cloned()
    }

    /// Chunks, bytes and byte budget.
    pub fn usage(&self) -> super::metrics::CacheUsage {
        super::metrics::CacheUsage {
            chunks: self.lru.len() as u64,
            bytes: self.bytes,
            capacity: self.capacity,
        }
    }

    /// Caches a chunk, evicting old ones to stay within capacity.
    pub fn put(&mut self, id: ChunkId, data: Arc<Vec<u8>>) {
        if data.len() as u64 > self.capacity {
            return;
        }
        if let Some(old) = self.lru.put(id, data.clone()) {
            self.bytes -= old.len() as u64;
        }
        self.bytes += data.len() as u64;
        while self.bytes > self.capacity {
            match self.lru.pop_lru() {
                Some((_, v)) => self.bytes -= v.len() as u64,
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_within_its_byte_budget() {
        let mut c = ChunkCache::new(250);
        for i in 0..10u8 {
            c.put(ChunkId([i; 32]), Arc::new(vec![i; 100]));
        }
        assert!(c.bytes <= 250);
        assert!(c.get(&ChunkId([9; 32])).is_some());
        assert!(c.get(&ChunkId([0; 32])).is_none());
        c.put(ChunkId([99; 32]), Arc::new(vec![0; 1000]));
        assert!(c.get(&ChunkId([99; 32])).is_none(), "oversized entries are not cached");
    }
}
