//! Chunk loads: the memory cache, then a local copy (outbox, disk cache), then the fabric; every copy is checked against its address and opened with the vault's secrets.

use super::cache::Plain;
use crate::app::vault::{FsError, Secrets, Vault};
use crate::domain::fs::Extent;
use crate::ports::fabric::ChunkFabric;
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl<F: ChunkFabric + 'static> Vault<F> {
    /// The plaintext of one extent's chunk: cache, then outbox, then fabric (bounded wait).
    /// Concurrent readers of one chunk (several kernel read requests per chunk, plus
    /// read-ahead) share a single load.
    pub(in crate::app::vault) async fn plaintext(&self, e: &Extent) -> Result<Arc<Plain>, FsError> {
        if let Some(p) = Self::lock(&self.reader.cache).get(&e.id) {
            self.read_stats.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(p);
        }
        self.read_stats.cache_misses.fetch_add(1, Ordering::Relaxed);
        let cell = Self::lock(&self.reader.fetching).entry(e.id).or_default().clone();
        let result = cell.get_or_try_init(|| self.load_chunk(e)).await.cloned();
        let mut fetching = Self::lock(&self.reader.fetching);
        if fetching.get(&e.id).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            fetching.remove(&e.id);
        }
        result
    }

    async fn load_chunk(&self, e: &Extent) -> Result<Arc<Plain>, FsError> {
        if let Some(p) = Self::lock(&self.reader.cache).get(&e.id) {
            return Ok(p);
        }
        // Bounds the memory of loads in flight (ciphertext + plaintext per load) beside the cache.
        let _slot =
            self.reader.loads.acquire().await.map_err(|_| FsError::Unavailable("shutting down".into()))?;
        let plain = match self.load_local(e).await? {
            Some(plain) => plain,
            None => {
                let ct = self.fetch(e).await?;
                self.open_fetched(e, &ct)?
            }
        };
        let plain = Arc::new(plain);
        Self::lock(&self.reader.cache).put(e.id, plain.clone());
        Ok(plain)
    }

    /// The plaintext from a local copy: the outbox (not uploaded yet) or the disk cache. A disk
    /// cache copy that does not open is dropped (the fabric has the chunk).
    async fn load_local(&self, e: &Extent) -> Result<Option<Plain>, FsError> {
        let small = self.m.view().small_outbox(&e.addr)?;
        let outbox = match small {
            Some(ct) => Some(ct),
            None => {
                let (outbox, addr) = (self.pipeline.outbox.clone(), e.addr);
                tokio::task::spawn_blocking(move || outbox.read_plain(&addr)).await.ok().and_then(|r| r.ok())
            }
        };
        if let Some(ct) = outbox {
            return self.open_chunk(e, ct).map(|p| Some(p.into()));
        }
        let Some(disk) = &self.reader.disk_cache else { return Ok(None) };
        // Read and decrypted in place in a pooled buffer, which becomes the cache entry.
        let mut buf = Self::lock(&self.reader.cache).take_buffer();
        let opened = tokio::task::block_in_place(|| {
            let ct = disk.read_into(&e.addr, &mut buf)?;
            Some(self.open_in(e, &mut buf[ct.clone()], Checked::No).map(|len| ct.start..ct.start + len))
        });
        match opened {
            Some(Ok(plain)) => {
                self.read_stats.disk_hits.fetch_add(1, Ordering::Relaxed);
                Ok(Some(Plain::within(buf, plain)))
            }
            Some(Err(err)) => {
                Self::lock(&self.reader.cache).give_back(buf);
                tracing::warn!(addr = ?e.addr, error = %err, "damaged chunk in the disk cache dropped; fetching it");
                disk.forget(&e.addr);
                Ok(None)
            }
            None => {
                Self::lock(&self.reader.cache).give_back(buf);
                Ok(None)
            }
        }
    }

    /// A fetched ciphertext (the fabric verified it against its addr), copied block-aligned into
    /// a pooled buffer, kept in the disk cache from there for the next read (as uploads are) and
    /// decrypted in place: the buffer becomes the cache entry.
    fn open_fetched(&self, e: &Extent, ct: &[u8]) -> Result<Plain, FsError> {
        let mut buf = Self::lock(&self.reader.cache).take_buffer();
        let start = buf.as_ptr().align_offset(crate::ports::local_disk::BLOCK);
        let at = start..start + ct.len();
        let Some(area) = buf.get_mut(at.clone()) else {
            Self::lock(&self.reader.cache).give_back(buf);
            return Err(FsError::Unavailable(format!("chunk {:?}: larger than a chunk", e.addr)));
        };
        area.copy_from_slice(ct);
        if let Some(disk) = &self.reader.disk_cache {
            tokio::task::block_in_place(|| disk.put_aligned(&e.addr, &mut buf, at.clone()));
        }
        match self.open_in(e, &mut buf[at], Checked::Already) {
            Ok(len) => Ok(Plain::within(buf, start..start + len)),
            Err(err) => {
                Self::lock(&self.reader.cache).give_back(buf);
                Err(err)
            }
        }
    }

    /// Verifies a ciphertext against its address and decrypts it with this vault's secrets.
    fn open_chunk(&self, e: &Extent, mut ct: Vec<u8>) -> Result<Vec<u8>, FsError> {
        let len = self.open_in(e, &mut ct, Checked::No)?;
        ct.truncate(len);
        Ok(ct)
    }

    /// [`Vault::open_chunk`] in place; returns the plaintext's length. `checked`: whether the
    /// ciphertext was checked against its address already (by the fabric).
    fn open_in(&self, e: &Extent, ct: &mut [u8], checked: Checked) -> Result<usize, FsError> {
        use crate::domain::seal::{decrypt_checked_in_place, decrypt_in_place};
        let opened = match (&self.secrets, checked) {
            (Secrets::Owner, Checked::No) => self.keys.data().open_in_place(&e.id, &e.addr, ct),
            (Secrets::Owner, Checked::Already) => self.keys.data().open_checked_in_place(&e.id, ct),
            (Secrets::Shared, checked) => {
                let (key, _) = self.shared_secret(&e.addr)?;
                match checked {
                    Checked::No => decrypt_in_place(&key, &e.addr, ct),
                    Checked::Already => decrypt_checked_in_place(&key, ct),
                }
            }
        };
        opened.map_err(|err| FsError::Unavailable(err.to_string()))
    }

    /// A shared chunk's content key and proof-secret seed, from the share's manifest.
    fn shared_secret(&self, addr: &crate::domain::ids::Addr) -> Result<([u8; 32], [u8; 32]), FsError> {
        self.m
            .read()?
            .share_secret(addr)?
            .ok_or_else(|| FsError::Unavailable(format!("chunk {addr:?} is not part of this share")))
    }

    /// The proof secret that lets this vault fetch `addr`.
    pub(in crate::app::vault) fn proof_secret(
        &self,
        addr: &crate::domain::ids::Addr,
    ) -> Result<crate::domain::proof::ProofSecret, FsError> {
        match self.secrets {
            Secrets::Owner => Ok(self.keys.proof_secret(addr)),
            Secrets::Shared => Ok(crate::domain::proof::ProofSecret::from_seed(&self.shared_secret(addr)?.1)),
        }
    }
}

/// Whether a ciphertext was checked against its address before it reached the opener.
#[derive(Clone, Copy)]
enum Checked {
    /// Not yet: a local copy (outbox, disk cache).
    No,
    /// By the fabric, which returns only ciphertexts it checked.
    Already,
}
