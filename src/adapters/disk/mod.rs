//! The storage node's on-disk chunk store (DESIGN §7).
//!
//! Layout of the data directory:
//! - `index.redb` — locator → record sealed with XChaCha20-Poly1305 under the node's record key
//!   (addr, slot, commitment, lease, length). Nothing in it is readable without the at-rest key.
//! - `chunks/ab/<locator>` — nonce ‖ XChaCha20-Poly1305(body key(addr), owner ciphertext).
//!   The locator is a keyed hash of the addr, so a stolen disk cannot even be searched for a
//!   known chunk.
//! - `tmp/` — bodies being written.
//!
//! Crash safety: a body is written to `tmp/`, fsynced, renamed into place and its directory
//! fsynced before the index commit (redb, immediate durability). At open, leftovers in `tmp/`
//! and bodies without an index entry are removed, and index entries without a body are dropped.

use crate::adapters::redb::{NODE_CHUNKS, NODE_ROOTS};
use crate::domain::audit::{prove_leaves, prove_leaves_from_segments, segment_cvs, LeafProof, SEGMENT};
use crate::domain::identity::NodeIdentity;
use crate::domain::ids::{to_hex, Addr};
use crate::domain::proof::{Commitment, COMMITMENT_LEN};
use crate::ports::chunk_store::{ChunkStore, StoreError, StoredChunk, Usage};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use redb::{Database, ReadableTable, ReadableTableMetadata};
use std::collections::HashSet;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

const NONCE_LEN: usize = 24;
const BODY_OVERHEAD: u64 = (NONCE_LEN + 16) as u64;
const RECORD_LEN: usize = 32 + 1 + COMMITMENT_LEN + 8 + 4;

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

/// A record: the chunk's metadata; for chunks longer than one segment, then a keyed BLAKE3 MAC of
/// the sealed body and the BLAKE3 chaining values of its 16 KiB segments. Those let an audit
/// check every stored byte with one BLAKE3 pass and decrypt only the challenged segments.
fn encode_record(m: &StoredChunk, audit: Option<&Audit>) -> Vec<u8> {
    let mut v = Vec::with_capacity(RECORD_LEN + audit.map_or(0, |a| 32 * (a.cvs.len() + 1)));
    v.extend_from_slice(&m.addr.0);
    v.push(m.slot);
    v.extend_from_slice(&m.commitment.to_bytes());
    v.extend_from_slice(&m.lease_expiry_ms.to_le_bytes());
    v.extend_from_slice(&m.len.to_le_bytes());
    if let Some(a) = audit {
        v.extend_from_slice(&a.mac);
        for cv in &a.cvs {
            v.extend_from_slice(cv);
        }
    }
    v
}

/// What a record keeps to answer audits cheaply.
#[derive(Clone, Debug)]
struct Audit {
    /// Keyed BLAKE3 of the sealed body file.
    mac: [u8; 32],
    /// Segment chaining values of the owner ciphertext.
    cvs: Vec<[u8; 32]>,
}

fn decode_record(v: &[u8]) -> Option<StoredChunk> {
    decode_record_cvs(v).map(|(m, _)| m)
}

/// An index record: the chunk's metadata and, for multi-segment chunks, its audit aids.
type Record = (StoredChunk, Option<Audit>);

fn decode_record_cvs(v: &[u8]) -> Option<Record> {
    if v.len() < RECORD_LEN || (v.len() - RECORD_LEN) % 32 != 0 || v.len() == RECORD_LEN + 32 {
        return None;
    }
    let (v, extra) = v.split_at(RECORD_LEN);
    let mut words = extra.chunks_exact(32).map(|c| c.try_into().ok());
    let audit = match words.next() {
        None => None,
        Some(mac) => Some(Audit { mac: mac?, cvs: words.collect::<Option<Vec<[u8; 32]>>>()? }),
    };
    let (addr, rest) = v.split_at(32);
    let (slot, rest) = rest.split_at(1);
    let (commitment, rest) = rest.split_at(COMMITMENT_LEN);
    let (lease, len) = rest.split_at(8);
    let m = StoredChunk {
        addr: Addr(addr.try_into().ok()?),
        slot: slot[0],
        commitment: Commitment::from_bytes(commitment).ok()?,
        lease_expiry_ms: u64::from_le_bytes(lease.try_into().ok()?),
        len: u32::from_le_bytes(len.try_into().ok()?),
    };
    Some((m, audit))
}

/// Decrypts `ct[start..start + len]` of a body sealed under `key` and `nonce` (XChaCha20 is a
/// stream cipher: the payload keystream starts at block 1).
fn decrypt_range(key: &[u8; 32], nonce: &[u8], ct: &[u8], start: usize, len: usize) -> Option<Vec<u8>> {
    use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
    let mut out = ct.get(start..start + len)?.to_vec();
    let mut cipher = chacha20::XChaCha20::new(key.into(), nonce.into());
    cipher.seek(64 + start as u64);
    cipher.apply_keystream(&mut out);
    Some(out)
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
                let meta = unseal(&key, &loc, v.value()).and_then(|p| decode_record(&p));
                match meta {
                    Some(m) if self.body_path(&loc).exists() => {
                        used += m.len as u64 + BODY_OVERHEAD;
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

    /// Writes the sealed body durably; returns the audit aids of a multi-segment chunk.
    fn write_body(
        &self,
        locator: &[u8; 32],
        addr: &Addr,
        ciphertext: &[u8],
    ) -> Result<Option<Audit>, StoreError> {
        let body = seal(&self.id.body_key(addr), &addr.0, ciphertext);
        let cvs = segment_cvs(ciphertext);
        let audit = (!cvs.is_empty())
            .then(|| Audit { mac: *blake3::keyed_hash(&self.id.body_mac_key(), &body).as_bytes(), cvs });
        let mut rnd = [0u8; 8];
        crate::domain::random_bytes(&mut rnd);
        let tmp = self.dir.join("tmp").join(format!("{}.{}", to_hex(locator), to_hex(&rnd)));
        let result = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(&body)?;
            f.sync_all()?;
            let dst = self.body_path(locator);
            fs::rename(&tmp, &dst)?;
            fsync_dir(dst.parent().unwrap_or(&self.dir))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result?;
        Ok(audit)
    }

    /// Inserts a new record durably, sharing one commit (one fsync) with concurrent puts: the
    /// first waiter becomes the leader and commits everything queued so far.
    fn insert_record_grouped(
        &self,
        locator: &[u8; 32],
        meta: &StoredChunk,
        audit: Option<&Audit>,
    ) -> Result<(), StoreError> {
        let sealed = self.sealed_record(locator, meta, audit);
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

    fn write_record(
        &self,
        locator: &[u8; 32],
        meta: &StoredChunk,
        audit: Option<&Audit>,
    ) -> Result<(), StoreError> {
        self.commit_records(&[(*locator, self.sealed_record(locator, meta, audit))])
    }

    /// A record sealed under the record key, bound to its locator.
    fn sealed_record(&self, locator: &[u8; 32], meta: &StoredChunk, audit: Option<&Audit>) -> Vec<u8> {
        seal(&self.id.record_key(), locator, &encode_record(meta, audit))
    }

    /// The sealed body file of a chunk that has an index record (missing = corrupt).
    fn read_body(&self, addr: &Addr) -> Result<Vec<u8>, StoreError> {
        match fs::read(self.body_path(&self.id.locator(addr))) {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StoreError::Corrupt(*addr)),
            Err(e) => Err(e.into()),
        }
    }

    /// A chunk's index record and segment chaining values.
    fn record(&self, addr: &Addr) -> Result<Option<Record>, StoreError> {
        let loc = self.id.locator(addr);
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(NODE_CHUNKS).map_err(db_err)?;
        let Some(v) = table.get(&loc).map_err(db_err)? else {
            return Ok(None);
        };
        match unseal(&self.id.record_key(), &loc, v.value()).and_then(|p| decode_record_cvs(&p)) {
            Some((m, cvs)) if m.addr == *addr => Ok(Some((m, cvs))),
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
        Ok(self.record(addr)?.map(|(m, _)| m))
    }

    fn put(&self, meta: &StoredChunk, ciphertext: &[u8]) -> Result<(), StoreError> {
        let charge = ciphertext.len() as u64 + BODY_OVERHEAD;
        self.reserve(charge)?;
        let loc = self.id.locator(&meta.addr);
        let r = self
            .write_body(&loc, &meta.addr, ciphertext)
            .and_then(|audit| self.insert_record_grouped(&loc, meta, audit.as_ref()));
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
        if self.meta(addr)?.is_none() {
            return Ok(None);
        }
        let sealed = self.read_body(addr)?;
        match unseal(&self.id.body_key(addr), &addr.0, &sealed) {
            Some(ct) if Addr::of(&ct) == *addr => Ok(Some(ct)),
            _ => Err(StoreError::Corrupt(*addr)),
        }
    }

    fn set_lease(&self, addr: &Addr, lease_expiry_ms: u64) -> Result<bool, StoreError> {
        let (meta, audit) = match self.record(addr) {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(false),
            Err(e) => return Err(e),
        };
        self.write_record(&self.id.locator(addr), &StoredChunk { lease_expiry_ms, ..meta }, audit.as_ref())?;
        Ok(true)
    }

    /// Checks the whole stored copy (its at-rest tag) but decrypts only the segments holding the
    /// selected leaves, and takes the other Merkle siblings from the record's segment chaining
    /// values instead of hashing the body.
    fn audit_proofs(&self, addr: &Addr, picks: &[u64]) -> Result<Option<Vec<LeafProof>>, StoreError> {
        let Some((meta, audit)) = self.record(addr)? else { return Ok(None) };
        let Some(audit) = audit else {
            let Some(ct) = self.read(addr)? else { return Ok(None) };
            return prove_leaves(&ct, picks).map(Some).map_err(|e| StoreError::Io(e.to_string()));
        };
        let sealed = self.read_body(addr)?;
        // Every stored byte is checked (one keyed BLAKE3 pass), so any damage is caught now, not
        // only damage inside the challenged leaves.
        let mac = blake3::keyed_hash(&self.id.body_mac_key(), &sealed);
        let expected_len = NONCE_LEN + meta.len as usize + 16;
        if mac != blake3::Hash::from_bytes(audit.mac) || sealed.len() != expected_len {
            return Err(StoreError::Corrupt(*addr));
        }
        let (nonce, ct) = (&sealed[..NONCE_LEN], &sealed[NONCE_LEN..expected_len - 16]);
        let key = self.id.body_key(addr);
        let mut segment = |i: u64| {
            let start = i as usize * SEGMENT;
            decrypt_range(&key, nonce, ct, start, SEGMENT.min(ct.len().saturating_sub(start)))
        };
        match prove_leaves_from_segments(ct.len() as u64, &audit.cvs, &mut segment, picks) {
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
            old.map(|v| unseal(&self.id.record_key(), &loc, v.value()).and_then(|p| decode_record(&p)))
        };
        txn.commit().map_err(db_err)?;
        let Some(meta) = removed else {
            return Ok(false);
        };
        let _ = fs::remove_file(self.body_path(&loc));
        self.chunks.fetch_sub(1, Ordering::SeqCst);
        if let Some(m) = meta {
            self.used.fetch_sub(m.len as u64 + BODY_OVERHEAD, Ordering::SeqCst);
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
            if let Some(m) = unseal(&key, k.value(), v.value()).and_then(|p| decode_record(&p)) {
                if m.lease_expiry_ms <= now_ms {
                    out.push(m.addr);
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
