//! Sealed chunks kept on the owner's disk, bounded in bytes: uploaded chunks move here from the
//! outbox and fetched ones are written here, so reads of recent data need no fabric round trip.
//!
//! Only ciphertext is kept (as in the outbox), one file per chunk named by its address. Nothing
//! here is fsynced: it is a cache, and every file is checked against its address (and decrypted
//! with its tag checked) before use, so a torn or damaged file is dropped and fetched again.
//! Eviction is least recently used; after a restart the order is rebuilt from file mtimes.
//!
//! The read path reads and writes chunks with direct I/O (`direct_io.rs`) from and into a
//! buffer the caller owns (a pooled one, see `app::vault::reader::cache`): the chunk is not copied through the
//! page cache, which a decrypted copy in the memory cache would only duplicate.

use super::direct_io::Direct;
use super::space::{SpaceGauge, Use};
use crate::domain::ids::Addr;
use crate::ports::local_disk::{DiskCache, DiskCacheUsage};
use lru::LruCache;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Sealed chunks on local disk, at most `capacity` bytes, and never below the home's free-space
/// floor for the cache (see `space.rs`): it does not grow into space a person freed.
pub struct FileDiskCache {
    dir: PathBuf,
    capacity: u64,
    state: Mutex<State>,
    io: Direct,
    space: Option<Arc<SpaceGauge>>,
}

struct State {
    lru: LruCache<Addr, u64>,
    bytes: u64,
}

impl FileDiskCache {
    /// Opens (creating) the cache in `dir`: indexes the chunks there, oldest first, removes
    /// leftovers of interrupted writes and anything not named like a chunk, and evicts down to
    /// `capacity`. A capacity of 0 empties the directory and keeps nothing.
    pub fn open(dir: &Path, capacity: u64) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir)?.flatten() {
            let path = entry.path();
            let addr = path.file_name().and_then(|n| n.to_str()).and_then(Addr::from_hex);
            let meta = entry.metadata();
            match (addr, meta) {
                (Some(addr), Ok(meta)) if meta.is_file() => {
                    found.push((meta.modified().ok(), addr, meta.len()));
                }
                _ => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        found.sort();
        let cache = FileDiskCache {
            dir: dir.to_path_buf(),
            capacity,
            state: Mutex::new(State { lru: LruCache::unbounded(), bytes: 0 }),
            io: Direct::new(dir),
            space: None,
        };
        for (_, addr, len) in found {
            cache.admit(addr, len);
        }
        Ok(cache)
    }

    /// The cache, growing only while `space` leaves the cache's floor free.
    pub fn with_space(mut self, space: Arc<SpaceGauge>) -> Self {
        self.space = Some(space);
        self
    }

    /// Whether `len` more bytes may be kept.
    fn room_for(&self, len: u64) -> bool {
        self.space.as_ref().is_none_or(|s| s.admits(Use::Cache, len))
    }

    /// Chunks and bytes in a cache directory, read without opening (nor changing) it: for
    /// `quloud status` of an unmounted vault.
    pub fn measure(dir: &Path, capacity: u64) -> DiskCacheUsage {
        let mut usage = DiskCacheUsage { capacity, ..Default::default() };
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let named = entry.file_name().to_str().and_then(Addr::from_hex).is_some();
            if let (true, Ok(meta)) = (named, entry.metadata()) {
                usage.chunks += 1;
                usage.bytes += meta.len();
            }
        }
        usage
    }

    fn path(&self, addr: &Addr) -> PathBuf {
        self.dir.join(addr.to_hex())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The ciphertext kept for `addr`, if any. The caller verifies it (the chunk opener checks
    /// the address and the tag) and calls [`FileDiskCache::forget`] when it does not verify.
    pub fn get(&self, addr: &Addr) -> Option<Vec<u8>> {
        self.lock().lru.get(addr)?; // also marks it most recently used
        match std::fs::read(self.path(addr)) {
            Ok(ct) => Some(ct),
            Err(e) => {
                tracing::debug!(?addr, error = %e, "disk cache file unreadable; dropped");
                self.forget(addr);
                None
            }
        }
    }

    /// Reads the ciphertext kept for `addr` into `buf`, at a block-aligned offset, and returns
    /// where it is; `None` when it is not kept (a file that cannot be read, or is larger than
    /// `buf` holds, is dropped). As with [`FileDiskCache::get`], the caller verifies it.
    pub fn read_into(&self, addr: &Addr, buf: &mut [u8]) -> Option<Range<usize>> {
        self.lock().lru.get(addr)?;
        match self.io.read_into(&self.path(addr), buf) {
            Ok(range) => Some(range),
            Err(e) => {
                tracing::debug!(?addr, error = %e, "disk cache file unreadable; dropped");
                self.forget(addr);
                None
            }
        }
    }

    /// Takes over an uploaded chunk's outbox file (a rename: no copy); removes it when the
    /// cache keeps nothing, the home is low on space or the rename fails. A missing file is
    /// ignored.
    pub fn adopt(&self, addr: &Addr, from: &Path) {
        let len = std::fs::metadata(from).map(|m| m.len());
        match len {
            Ok(len)
                if len <= self.capacity
                    && self.room_for(0)
                    && std::fs::rename(from, self.path(addr)).is_ok() =>
            {
                self.admit(*addr, len);
            }
            _ => {
                let _ = std::fs::remove_file(from);
            }
        }
    }

    /// Keeps a copy of a verified ciphertext (written through a temporary name, not fsynced).
    pub fn put(&self, addr: &Addr, ciphertext: &[u8]) {
        self.keep(addr, ciphertext.len(), |tmp| std::fs::write(tmp, ciphertext));
    }

    /// [`FileDiskCache::put`] of a verified ciphertext at `at` in `buf`, where `at` starts
    /// block-aligned: written with direct I/O from there (see [`Direct::write_aligned`]).
    pub fn put_aligned(&self, addr: &Addr, buf: &mut [u8], at: Range<usize>) {
        let len = at.len();
        self.keep(addr, len, |tmp| self.io.write_aligned(tmp, buf, at));
    }

    /// Writes a chunk of `len` bytes with `write` to a temporary name, renames it into place and
    /// indexes it; does nothing when the chunk is kept already or larger than the budget.
    fn keep(&self, addr: &Addr, len: usize, write: impl FnOnce(&Path) -> std::io::Result<()>) {
        if len as u64 > self.capacity || self.lock().lru.contains(addr) || !self.room_for(len as u64) {
            return;
        }
        let path = self.path(addr);
        let tmp = path.with_extension("tmp");
        match write(&tmp).and_then(|()| std::fs::rename(&tmp, &path)) {
            Ok(()) => self.admit(*addr, len as u64),
            Err(e) => {
                tracing::debug!(?addr, error = %e, "cannot keep a chunk in the disk cache");
                let _ = std::fs::remove_file(&tmp);
            }
        }
    }

    /// Drops a chunk (deleted from the vault, or its file did not verify).
    pub fn forget(&self, addr: &Addr) {
        let mut s = self.lock();
        if let Some(len) = s.lru.pop(addr) {
            s.bytes -= len;
        }
        drop(s);
        let _ = std::fs::remove_file(self.path(addr));
    }

    /// Chunks, bytes and budget.
    pub fn usage(&self) -> DiskCacheUsage {
        let s = self.lock();
        DiskCacheUsage { chunks: s.lru.len() as u64, bytes: s.bytes, capacity: self.capacity }
    }

    /// Records a chunk file and evicts the least recently used ones past the budget.
    fn admit(&self, addr: Addr, len: u64) {
        let mut evicted = Vec::new();
        let mut s = self.lock();
        if let Some(old) = s.lru.put(addr, len) {
            s.bytes -= old;
        }
        s.bytes += len;
        while s.bytes > self.capacity {
            match s.lru.pop_lru() {
                Some((a, l)) => {
                    s.bytes -= l;
                    evicted.push(a);
                }
                None => break,
            }
        }
        drop(s);
        for a in evicted {
            let _ = std::fs::remove_file(self.path(&a));
        }
    }
}

impl DiskCache for FileDiskCache {
    fn get(&self, addr: &Addr) -> Option<Vec<u8>> {
        FileDiskCache::get(self, addr)
    }

    fn read_into(&self, addr: &Addr, buf: &mut [u8]) -> Option<Range<usize>> {
        FileDiskCache::read_into(self, addr, buf)
    }

    fn adopt(&self, addr: &Addr, from: &Path) {
        FileDiskCache::adopt(self, addr, from)
    }

    fn put(&self, addr: &Addr, ciphertext: &[u8]) {
        FileDiskCache::put(self, addr, ciphertext)
    }

    fn put_aligned(&self, addr: &Addr, buf: &mut [u8], at: Range<usize>) {
        FileDiskCache::put_aligned(self, addr, buf, at)
    }

    fn forget(&self, addr: &Addr) {
        FileDiskCache::forget(self, addr)
    }

    fn usage(&self) -> DiskCacheUsage {
        FileDiskCache::usage(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::local::direct_io::BLOCK;

    fn chunk(i: u8, len: usize) -> (Addr, Vec<u8>) {
        let ct = vec![i; len];
        (Addr::of(&ct), ct)
    }

    #[test]
    fn keeps_within_its_budget_and_evicts_the_least_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let c = FileDiskCache::open(dir.path(), 250).unwrap();
        let (a, ca) = chunk(1, 100);
        let (b, cb) = chunk(2, 100);
        let (d, cd) = chunk(3, 100);
        c.put(&a, &ca);
        c.put(&b, &cb);
        assert_eq!(c.get(&a), Some(ca.clone()), "a is now the most recently used");
        c.put(&d, &cd);
        assert_eq!(c.usage(), DiskCacheUsage { chunks: 2, bytes: 200, capacity: 250 });
        assert!(c.get(&b).is_none(), "b was the least recently used");
        assert!(!dir.path().join(b.to_hex()).exists(), "its file is gone");
        assert_eq!(c.get(&d), Some(cd));
        let (big, cbig) = chunk(4, 300);
        c.put(&big, &cbig);
        assert!(c.get(&big).is_none(), "a chunk larger than the budget is not kept");
    }

    #[test]
    fn survives_a_restart_and_cleans_up_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let (a, ca) = chunk(1, 100);
        FileDiskCache::open(dir.path(), 1000).unwrap().put(&a, &ca);
        std::fs::write(dir.path().join("junk"), b"x").unwrap();
        std::fs::write(dir.path().join(format!("{}.tmp", a.to_hex())), b"torn").unwrap();
        let c = FileDiskCache::open(dir.path(), 1000).unwrap();
        assert_eq!(c.get(&a), Some(ca));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "only the chunk is left");
        assert_eq!(
            FileDiskCache::measure(dir.path(), 7),
            DiskCacheUsage { chunks: 1, bytes: 100, capacity: 7 }
        );
        let empty = FileDiskCache::open(dir.path(), 0).unwrap();
        assert_eq!(empty.usage().chunks, 0);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "capacity 0 keeps nothing");
    }

    /// Reads land block-aligned in the caller's buffer, whether the filesystem takes direct I/O
    /// (the temp dir) or not; a file larger than the buffer holds is dropped, not read.
    #[test]
    fn reads_into_a_block_aligned_area_of_the_callers_buffer() {
        let mut dirs = vec![tempfile::tempdir().unwrap()];
        if let Ok(shm) = tempfile::tempdir_in("/dev/shm") {
            dirs.push(shm);
        }
        for dir in dirs {
            let c = FileDiskCache::open(dir.path(), 1 << 20).unwrap();
            let mut buf = vec![0u8; 3 * BLOCK + 1];
            for len in [1, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK] {
                let (a, ca) = chunk(len as u8, len);
                let ca: Vec<u8> = ca.iter().enumerate().map(|(i, b)| b ^ i as u8).collect();
                c.put(&a, &ca);
                let at = c.read_into(&a, &mut buf).expect("kept");
                assert_eq!((buf.as_ptr() as usize + at.start) % BLOCK, 0, "block-aligned");
                assert_eq!(&buf[at], &ca[..], "{len} bytes in {}", dir.path().display());
            }
            let (big, cbig) = chunk(9, 3 * BLOCK + 1);
            c.put(&big, &cbig);
            assert!(c.read_into(&big, &mut buf).is_none(), "too large for the buffer");
            assert!(c.get(&big).is_none(), "and dropped");
            let (absent, _) = chunk(10, 5);
            assert!(c.read_into(&absent, &mut buf).is_none());
        }
    }

    /// A chunk kept from an aligned buffer is written whole blocks at a time, but its file holds
    /// exactly its bytes, and what followed it in the buffer (an earlier plaintext, say) is
    /// zeroed, never written out; an unaligned one is kept through the page cache.
    #[test]
    fn keeps_chunks_from_an_aligned_buffer_without_what_follows_them() {
        let dir = tempfile::tempdir().unwrap();
        let c = FileDiskCache::open(dir.path(), 1 << 20).unwrap();
        let mut buf = vec![0xEE; 4 * BLOCK];
        let start = buf.as_ptr().align_offset(BLOCK);
        for (i, len) in [1, BLOCK - 1, BLOCK, BLOCK + 3].into_iter().enumerate() {
            buf.fill(0xEE);
            let (a, ca) = chunk(i as u8, len);
            buf[start..start + len].copy_from_slice(&ca);
            c.put_aligned(&a, &mut buf, start..start + len);
            assert_eq!(std::fs::read(dir.path().join(a.to_hex())).unwrap(), ca, "{len} bytes");
            assert!(buf[start + len..start + len.next_multiple_of(BLOCK)].iter().all(|&b| b == 0));
            assert_eq!(c.get(&a), Some(ca));
        }
        let (u, cu) = chunk(7, 100);
        buf[start + 1..start + 101].copy_from_slice(&cu);
        c.put_aligned(&u, &mut buf, start + 1..start + 101);
        assert_eq!(c.get(&u), Some(cu), "unaligned: through the page cache");
    }

    #[test]
    fn adopts_outbox_files_by_renaming_them() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = tempfile::tempdir().unwrap();
        let c = FileDiskCache::open(&dir.path().join("cache"), 1000).unwrap();
        let (a, ca) = chunk(7, 100);
        let from = outbox.path().join(a.to_hex());
        std::fs::write(&from, &ca).unwrap();
        c.adopt(&a, &from);
        assert!(!from.exists());
        assert_eq!(c.get(&a), Some(ca));
        c.forget(&a);
        assert!(c.get(&a).is_none());
        assert_eq!(c.usage().bytes, 0);
    }
}
