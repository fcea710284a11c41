//! The in-memory chunk store: a `HashMap` behind the node's `ChunkStore` port.

use crate::domain::audit::Verified;
use crate::domain::ids::Addr;
use crate::domain::proof::Commitment;
use crate::ports::chunk_store::{ChunkStore, StoreError, StoredChunk, Usage};
use std::collections::HashMap;
use std::sync::Mutex;

/// A chunk store in a `HashMap`.
#[derive(Debug)]
pub struct MemoryChunkStore {
    capacity: u64,
    inner: Mutex<HashMap<Addr, (StoredChunk, Vec<u8>)>>,
    roots: Mutex<HashMap<String, Vec<u8>>>,
}

impl MemoryChunkStore {
    /// An empty store with a capacity limit in bytes.
    pub fn new(capacity: u64) -> Self {
        MemoryChunkStore { capacity, inner: Mutex::default(), roots: Mutex::default() }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Addr, (StoredChunk, Vec<u8>)>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Test hook: overwrite the stored bytes of a chunk (to simulate disk corruption).
    pub fn corrupt(&self, addr: &Addr) {
        if let Some((_, b)) = self.map().get_mut(addr) {
            if let Some(x) = b.first_mut() {
                *x ^= 1;
            }
        }
    }
}

impl ChunkStore for MemoryChunkStore {
    fn meta(&self, addr: &Addr) -> Result<Option<StoredChunk>, StoreError> {
        Ok(self.map().get(addr).map(|(m, _)| *m))
    }

    fn put(&self, meta: &StoredChunk, ciphertext: &Verified<'_>) -> Result<(), StoreError> {
        if ciphertext.addr() != &meta.addr.0 || ciphertext.bytes().len() != meta.len as usize {
            return Err(StoreError::Corrupt(meta.addr));
        }
        let ciphertext = ciphertext.bytes();
        let mut map = self.map();
        let used: u64 = map.values().map(|(_, b)| b.len() as u64).sum();
        let free = self.capacity.saturating_sub(used);
        if ciphertext.len() as u64 > free {
            return Err(StoreError::Full { needed: ciphertext.len() as u64, free });
        }
        map.insert(meta.addr, (*meta, ciphertext.to_vec()));
        Ok(())
    }

    fn read(&self, addr: &Addr) -> Result<Option<Vec<u8>>, StoreError> {
        match self.map().get(addr) {
            None => Ok(None),
            Some((_, b)) if Addr::of(b) == *addr => Ok(Some(b.clone())),
            Some(_) => Err(StoreError::Corrupt(*addr)),
        }
    }

    fn set_lease(&self, addr: &Addr, lease_expiry_ms: u64) -> Result<bool, StoreError> {
        Ok(self.map().get_mut(addr).map(|(m, _)| m.lease_expiry_ms = lease_expiry_ms).is_some())
    }

    fn set_control(&self, addr: &Addr, control: &Commitment) -> Result<bool, StoreError> {
        Ok(match self.map().get_mut(addr) {
            Some((m, _)) if m.control.is_none() => {
                m.control = Some(*control);
                true
            }
            _ => false,
        })
    }

    fn remove(&self, addr: &Addr) -> Result<bool, StoreError> {
        Ok(self.map().remove(addr).is_some())
    }

    fn expired(&self, now_ms: u64) -> Result<Vec<Addr>, StoreError> {
        Ok(self.map().values().filter(|(m, _)| m.lease_expiry_ms <= now_ms).map(|(m, _)| m.addr).collect())
    }

    fn usage(&self) -> Usage {
        let map = self.map();
        Usage {
            used: map.values().map(|(_, b)| b.len() as u64).sum(),
            capacity: self.capacity,
            chunks: map.len() as u64,
        }
    }

    fn root(&self, locator: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.roots.lock().unwrap_or_else(|p| p.into_inner()).get(locator).cloned())
    }

    fn put_root(&self, locator: &str, record: &[u8]) -> Result<(), StoreError> {
        self.roots.lock().unwrap_or_else(|p| p.into_inner()).insert(locator.to_string(), record.to_vec());
        Ok(())
    }

    fn roots_held(&self) -> Result<u64, StoreError> {
        Ok(self.roots.lock().unwrap_or_else(|p| p.into_inner()).len() as u64)
    }
}
