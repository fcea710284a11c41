//! The storage node's on-disk chunk store (docs/DESIGN.md §7).
//!
//! Layout of the data directory:
//! - `index.redb` — locator → record sealed with XChaCha20-Poly1305 under the node's record key
//!   (addr, slot, read commitment, control commitment if any, lease, length). Nothing in it is readable without the at-rest key.
//! - `chunks/ab/<locator>` — nonce ‖ XChaCha20(body key(addr), owner ciphertext), zero-padded to
//!   whole 4 KiB blocks when written with direct I/O (the record's length says where the body
//!   ends); the record holds a keyed-BLAKE3 MAC of addr ‖ body (`body::Format::Mac`). Bodies
//!   written by older versions are XChaCha20-Poly1305 (`Format::Aead`) and stay readable. The
//!   locator is a keyed hash of the addr, so a stolen disk cannot even be searched for a known
//!   chunk.
//! - `tmp/` — emptied at open (older versions wrote bodies there first).
//!
//! Bodies are written with `O_DIRECT` where the filesystem supports it: the kernel then neither
//! copies them into the page cache nor writes them back later, which was a third of a node's CPU
//! while it stored (docs/PERFORMANCE.md §3). Elsewhere (tmpfs, some network filesystems) they are
//! written through the page cache.
//!
//! Crash safety: a body is written at its place, fsynced, and its directory fsynced before the
//! index commit (redb, immediate durability); no index entry points at it before then. At open,
//! bodies without an index entry (a put cut short) are removed, and index entries without a
//! body are dropped. A removal deletes the body before the index entry, so a put of the same
//! chunk, which waits for the entry to be gone, never has its new body deleted.

mod body;
mod record;

use crate::adapters::redb::{NODE_CHUNKS, NODE_ROOTS};
use crate::domain::audit::{prove_leaves, prove_leaves_from_segments, LeafProof, Verified, SEGMENT};
use crate::domain::identity::NodeIdentity;
use crate::domain::ids::{to_hex, Addr};
use crate::ports::chunk_store::{ChunkStore, StoreError, StoredChunk, Usage};
use body::Format;
use body::{charge, NONCE_LEN};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use record::Record;
use redb::{Database, ReadableTable, ReadableTableMetadata};
use std::collections::HashSet;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

fn db_err<E: Into<redb::Error>>(e: E) -> StoreError {
    StoreError::Io(format!("index: {}", e.into()))
}

/// Group commit: concurrent puts share one durable index transaction.
#[derive(Default)]
struct Group {
    queue: Vec<([u8; 32], Vec<u8>)>,
    queued: u64,
    committed: u64,
    leader: bool,
    failed: Option<(u64, u64, String)>,
}

/// Chunk bodies in files, an encrypted redb index, a capacity limit.
pub struct DiskChunkStore {
    group: std::sync::Mutex<Group>,
    group_done: std::sync::Condvar,
    dir: PathBuf,
    id: NodeIdentity,
    db: Database,
    capacity: u64,
    used: AtomicU64,
    chunks: AtomicU64,
    /// Whether bodies are still written with `O_DIRECT` (off once the filesystem refused it).
    direct: AtomicBool,
    /// The format new bodies are written in (`Mac`; tests write `Aead` as older versions did).
    format: Format,
}

thread_local! {
    /// Each store thread's body buffer, reused so that a put does not fault in fresh pages.
    static BODY_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl std::fmt::Debug for DiskChunkStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskChunkStore").field("dir", &self.dir).finish_non_exhaustive()
    }
}

fn seal(key: &[u8; 32], aad: &[u8], plain: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    crate::domain::random_bytes(&mut nonce);
    let cipher = XChaCha20Poly1305::new(key.into());
    let ct = cipher
        .encrypt(XNonce::from_slice(&nonce), Payload { msg: plain, aad })
        .unwrap_or_else(|_| unreachable!("XChaCha20 input limit exceeded"));
    let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out
}

fn unseal(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < NONCE_LEN + 16 {
        return None;
    }
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    XChaCha20Poly1305::new(key.into()).decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad }).ok()
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl DiskChunkStore {
    /// Opens (creating if needed) the store in `dir`, recovering from any crash.
    pub fn open(dir: &Path, id: NodeIdentity, capacity: u64) -> Result<Self, StoreError> {
        fs::create_dir_all(dir.join("tmp"))?;
        for i in 0..=255u8 {
            fs::create_dir_all(dir.join("chunks").join(to_hex(&[i])))?;
        }
        fsync_dir(&dir.join("chunks"))?;
        let db = Database::create(dir.join("index.redb")).map_err(db_err)?;
        {
            let txn = db.begin_write().map_err(db_err)?;
            txn.open_table(NODE_CHUNKS).map_err(db_err)?;
            txn.open_table(NODE_ROOTS).map_err(db_err)?;
            txn.commit().map_err(db_err)?;
        }
        let store = DiskChunkStore {
            group: std::sync::Mutex::default(),
            group_done: std::sync::Condvar::new(),
            dir: dir.to_path_buf(),
            id,
            db,
            capacity,
            used: AtomicU64::new(0),
            chunks: AtomicU64::new(0),
            direct: AtomicBool::new(true),
            format: Format::Mac,
        };
        store.recover()?;
        Ok(store)
    }

    fn body_path(&self, locator: &[u8; 32]) -> PathBuf {
        let hex = to_hex(locator);
        self.dir.join("chunks").join(&hex[..2]).join(hex)
    }

    /// Removes leftovers of interrupted writes and reconciles bodies with the index.
    fn recover(&self) -> Result<(), StoreError> {
        for e in fs::read_dir(self.dir.join("tmp"))? {
            let _ = fs::remove_file(e?.path());
        }
        let key = self.id.record_key();
        let mut indexed = HashSet::new();
        let mut missing = Vec::new();
        let (mut used, mut chunks) = (0u64, 0u64);
        {
            let txn = self.db.begin_read().map_err(db_err)?;
            let table = txn.open_table(NODE_CHUNKS).map_err(db_err)?;
            for row in table.iter().map_err(db_err)? {
                let (k, v) = row.map_err(db_err)?;
                let loc = *k.value();
                let record = unseal(&key, &loc, v.value()).and_then(|p| Record::decode(&p));
                match record {
                    Some(r) if self.body_path(&loc).exists() => {
                        used += charge(r.sealed_len());
                        chunks += 1;
                        indexed.insert(loc);
                    }
                    _ => missing.push(loc),
                }
            }
        }
        if !missing.is_empty() {
            tracing::warn!(count = missing.len(), "index entries without a readable body; dropping them");
            let txn = self.db.begin_write().map_err(db_err)?;
            {
                let mut table = txn.open_table(NODE_CHUNKS).map_err(db_err)?;
                for loc in &missing {
                    table.remove(loc).map_err(db_err)?;
                }
            }
            txn.commit().map_err(db_err)?;
        }
        for shard in fs::read_dir(self.dir.join("chunks"))? {
            for f in fs::read_dir(shard?.path())? {
                let path = f?.path();
                let known = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(crate::domain::ids::from_hex::<32>)
                    .is_some_and(|loc| indexed.contains(&loc));
                if !known {
                    tracing::info!(path = %path.display(), "removing body without index entry");
                    let _ = fs::remove_file(&path);
                }
            }
        }
        self.used.store(used, Ordering::SeqCst);
        self.chunks.store(chunks, Ordering::SeqCst);
        Ok(())
    }

    fn reserve(&self, bytes: u64) -> Result<(), StoreError> {
        let mut cur = self.used.load(Ordering::SeqCst);
        loop {
            let free = self.capacity.saturating_sub(cur);
            if bytes > free {
                return Err(StoreError::Full { needed: bytes, free });
            }
            match self.used.compare_exchange(cur, cur + bytes, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return Ok(()),
                Err(now) => cur = now,
            }
        }
    }

    /// Writes bodies through the page cache from now on (tests of the fallback path).
    #[cfg(test)]
    fn without_direct_io(self) -> Self {
        self.direct.store(false, Ordering::SeqCst);
        self
    }

    /// Writes bodies as older versions did (tests of reading their data).
    #[cfg(test)]
    fn writing_old_format(mut self) -> Self {
        self.format = Format::Aead;
        self
    }

    /// Writes the sealed body of `meta`'s verified ciphertext durably; returns its record.
    fn write_body(
        &self,
        locator: &[u8; 32],
        meta: &StoredChunk,
        ct: &Verified<'_>,
    ) -> Result<Record, StoreError> {
        let (dst, format, addr) = (self.body_path(locator), self.format, &meta.addr.0);
        let key = self.id.body_key(&meta.addr);
        let multi_segment = !ct.cvs().is_empty();
        let (result, mac) = BODY_BUF.with_borrow_mut(|buf| {
            body::with_sealed(buf, format, &key, addr, ct.bytes(), |image, sealed| {
                let mac = (format == Format::Mac || multi_segment)
                    .then(|| body::mac(format, &self.id.body_mac_key(), addr, &image[..sealed]));
                (body::write_file(&self.direct, &dst, image, sealed), mac)
            })
        });
        let result = result.and_then(|()| fsync_dir(dst.parent().unwrap_or(&self.dir)));
        if result.is_err() {
            let _ = fs::remove_file(&dst);
        }
        result?;
        Ok(Record { meta: *meta, format, mac, cvs: ct.cvs().to_vec() })
    }

    /// Inserts a new record durably, sharing one commit (one fsync) with concurrent puts: the
    /// first waiter becomes the leader and commits everything queued so far.
    fn insert_record_grouped(&self, locator: &[u8; 32], record: &Record) -> Result<(), StoreError> {
        let sealed = self.sealed_record(locator, record);
        let mut g = self.group_lock();
        g.queue.push((*locator, sealed));
        g.queued += 1;
        let mine = g.queued;
        loop {
            if g.committed >= mine {
                return match &g.failed {
                    Some((from, to, e)) if (*from..=*to).contains(&mine) => Err(StoreError::Io(e.clone())),
                    _ => Ok(()),
                };
            }
            if !g.leader {
                g.leader = true;
                let batch = std::mem::take(&mut g.queue);
                let (from, to) = (g.committed + 1, g.queued);
                drop(g);
                let result = self.commit_records(&batch);
                g = self.group_lock();
                g.leader = false;
                g.committed = to;
                if let Err(e) = result {
                    g.failed = Some((from, to, e.to_string()));
                }
                self.group_done.notify_all();
                continue;
            }
            g = self.group_done.wait(g).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn group_lock(&self) -> std::sync::MutexGuard<'_, Group> {
        self.group.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn commit_records(&self, batch: &[([u8; 32], Vec<u8>)]) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let mut table = txn.open_table(NODE_CHUNKS).map_err(db_err)?;
            for (loc, sealed) in batch {
                table.insert(loc, sealed.as_slice()).map_err(db_err)?;
            }
        }
        txn.commit().map_err(db_err)
    }

    /// Reads, changes and writes back `addr`'s record in one write transaction, so that two
    /// updates of one chunk (a renewal and a control upgrade) or an update and a removal never
    /// overwrite each other. `change` says whether it changed anything; false (and nothing
    /// written) when the chunk is not held or `change` declined.
    fn update_record(
        &self,
        addr: &Addr,
        change: impl FnOnce(&mut Record) -> bool,
    ) -> Result<bool, StoreError> {
        let loc = self.id.locator(addr);
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let mut table = txn.open_table(NODE_CHUNKS).map_err(db_err)?;
            let current = table.get(&loc).map_err(db_err)?.map(|v| v.value().to_vec());
            let Some(sealed) = current else { return Ok(false) };
            let mut r = match unseal(&self.id.record_key(), &loc, &sealed).and_then(|p| Record::decode(&p)) {
                Some(r) if r.meta.addr == *addr => r,
                _ => return Err(StoreError::Corrupt(*addr)),
            };
            if !change(&mut r) {
                return Ok(false);
            }
            table.insert(&loc, self.sealed_record(&loc, &r).as_slice()).map_err(db_err)?;
        }
        txn.commit().map_err(db_err)?;
        Ok(true)
    }

    /// A record sealed under the record key, bound to its locator.
    fn sealed_record(&self, locator: &[u8; 32], record: &Record) -> Vec<u8> {
        seal(&self.id.record_key(), locator, &record.encode())
    }

    /// The sealed body of a chunk with index record `r`: a buffer and where in it the body
    /// starts (missing, or a file of another length = corrupt).
    fn read_body(&self, r: &Record) -> Result<(Vec<u8>, usize), StoreError> {
        let addr = r.meta.addr;
        match body::read_file(&self.direct, &self.body_path(&self.id.locator(&addr)), r.sealed_len()) {
            Ok(Some(body)) => Ok(body),
            Ok(None) => Err(StoreError::Corrupt(addr)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StoreError::Corrupt(addr)),
            Err(e) => Err(e.into()),
        }
    }

    /// The ciphertext of a chunk with index record `r`, checked against its addr.
    fn read_record(&self, r: &Record) -> Result<Vec<u8>, StoreError> {
        let addr = r.meta.addr;
        let (buf, at) = self.read_body(r)?;
        match body::open(r.format, &self.id.body_key(&addr), &addr.0, buf, at..at + r.sealed_len()) {
            Some(ct) if Addr::of(&ct) == addr => Ok(ct),
            _ => Err(StoreError::Corrupt(addr)),
        }
    }

    /// A chunk's index record.
    fn record(&self, addr: &Addr) -> Result<Option<Record>, StoreError> {
        let loc = self.id.locator(addr);
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(NODE_CHUNKS).map_err(db_err)?;
        let Some(v) = table.get(&loc).map_err(db_err)? else {
            return Ok(None);
        };
        match unseal(&self.id.record_key(), &loc, v.value()).and_then(|p| Record::decode(&p)) {
            Some(r) if r.meta.addr == *addr => Ok(Some(r)),
            _ => Err(StoreError::Corrupt(*addr)),
        }
    }

    /// Number of index rows (for tests and status).
    pub fn index_len(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        txn.open_table(NODE_CHUNKS).map_err(db_err)?.len().map_err(db_err)
    }
}

impl ChunkStore for DiskChunkStore {
    fn meta(&self, addr: &Addr) -> Result<Option<StoredChunk>, StoreError> {
        Ok(self.record(addr)?.map(|r| r.meta))
    }

    fn put(&self, meta: &StoredChunk, ciphertext: &Verified<'_>) -> Result<(), StoreError> {
        if ciphertext.addr() != &meta.addr.0 || ciphertext.bytes().len() != meta.len as usize {
            return Err(StoreError::Corrupt(meta.addr));
        }
        let charge = charge(self.format.sealed_len(meta.len));
        self.reserve(charge)?;
        let loc = self.id.locator(&meta.addr);
        let r = self
            .write_body(&loc, meta, ciphertext)
            .and_then(|record| self.insert_record_grouped(&loc, &record));
        match r {
            Ok(()) => {
                self.chunks.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
            Err(e) => {
                self.used.fetch_sub(charge, Ordering::SeqCst);
                Err(e)
            }
        }
    }

    fn read(&self, addr: &Addr) -> Result<Option<Vec<u8>>, StoreError> {
        match self.record(addr)? {
            Some(r) => self.read_record(&r).map(Some),
            None => Ok(None),
        }
    }

    fn set_lease(&self, addr: &Addr, lease_expiry_ms: u64) -> Result<bool, StoreError> {
        self.update_record(addr, |r| {
            r.meta.lease_expiry_ms = lease_expiry_ms;
            true
        })
    }

    fn set_control(
        &self,
        addr: &Addr,
        control: &crate::domain::proof::Commitment,
    ) -> Result<bool, StoreError> {
        // Set once, never replaced.
        self.update_record(addr, |r| {
            let unset = r.meta.control.is_none();
            if unset {
                r.meta.control = Some(*control);
            }
            unset
        })
    }

    /// Checks the whole stored copy (its MAC) but decrypts only the segments holding the
    /// selected leaves, and takes the other Merkle siblings from the record's segment chaining
    /// values instead of hashing the body.
    fn audit_proofs(&self, addr: &Addr, picks: &[u64]) -> Result<Option<Vec<LeafProof>>, StoreError> {
        let Some(r) = self.record(addr)? else { return Ok(None) };
        let Some(mac) = r.mac.filter(|_| !r.cvs.is_empty()) else {
            let ct = self.read_record(&r)?;
            return prove_leaves(&ct, picks).map(Some).map_err(|e| StoreError::Io(e.to_string()));
        };
        let (buf, at) = self.read_body(&r)?;
        let sealed = &buf[at..at + r.sealed_len()];
        // Every stored byte is checked (one keyed BLAKE3 pass), so any damage is caught now, not
        // only damage inside the challenged leaves.
        if body::mac(r.format, &self.id.body_mac_key(), &addr.0, sealed) != mac {
            return Err(StoreError::Corrupt(*addr));
        }
        let (nonce, ct) = (&sealed[..NONCE_LEN], &sealed[NONCE_LEN..NONCE_LEN + r.meta.len as usize]);
        let key = self.id.body_key(addr);
        let mut segment = |i: u64| {
            let start = i as usize * SEGMENT;
            body::decrypt_range(&key, nonce, ct, start, SEGMENT.min(ct.len().saturating_sub(start)))
        };
        match prove_leaves_from_segments(ct.len() as u64, &r.cvs, &mut segment, picks) {
            Ok(Some(proofs)) => Ok(Some(proofs)),
            Ok(None) => Err(StoreError::Corrupt(*addr)),
            Err(e) => Err(StoreError::Io(e.to_string())),
        }
    }

    fn remove(&self, addr: &Addr) -> Result<bool, StoreError> {
        let loc = self.id.locator(addr);
        let txn = self.db.begin_write().map_err(db_err)?;
        let removed = {
            let mut table = txn.open_table(NODE_CHUNKS).map_err(db_err)?;
            let old = table.remove(&loc).map_err(db_err)?;
            old.map(|v| unseal(&self.id.record_key(), &loc, v.value()).and_then(|p| Record::decode(&p)))
        };
        // Not held: dropping the transaction leaves the index as it was.
        let Some(record) = removed else {
            return Ok(false);
        };
        // The body goes before the entry's removal commits: a put of this chunk starts only once
        // the entry is gone, and must not find its new body deleted. An entry left without a body
        // by a crash right here is dropped at the next open.
        match fs::remove_file(self.body_path(&loc)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        txn.commit().map_err(db_err)?;
        self.chunks.fetch_sub(1, Ordering::SeqCst);
        if let Some(r) = record {
            self.used.fetch_sub(charge(r.sealed_len()), Ordering::SeqCst);
        }
        Ok(true)
    }

    fn expired(&self, now_ms: u64) -> Result<Vec<Addr>, StoreError> {
        let key = self.id.record_key();
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(NODE_CHUNKS).map_err(db_err)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            if let Some(r) = unseal(&key, k.value(), v.value()).and_then(|p| Record::decode(&p)) {
                if r.meta.lease_expiry_ms <= now_ms {
                    out.push(r.meta.addr);
                }
            }
        }
        Ok(out)
    }

    fn usage(&self) -> Usage {
        Usage {
            used: self.used.load(Ordering::SeqCst),
            capacity: self.capacity,
            chunks: self.chunks.load(Ordering::SeqCst),
        }
    }

    fn root(&self, locator: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(NODE_ROOTS).map_err(db_err)?;
        Ok(table.get(locator).map_err(db_err)?.map(|v| v.value().to_vec()))
    }

    fn put_root(&self, locator: &str, record: &[u8]) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(db_err)?;
        txn.open_table(NODE_ROOTS).map_err(db_err)?.insert(locator, record).map_err(db_err)?;
        txn.commit().map_err(db_err)
    }

    fn roots_held(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        txn.open_table(NODE_ROOTS).map_err(db_err)?.len().map_err(db_err)
    }
}

#[cfg(test)]
#[path = "contract_tests.rs"]
mod contract_tests;
