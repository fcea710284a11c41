//! The storage node's on-disk chunk store (DESIGN §7).
//!
//! Layout of the data directory:
//! - `index.redb` — locator → record sealed with XChaCha20-Poly1305 under the node's record key
//!   (addr, slot, commitment, lease, length). Nothing in it is readable without the at-rest key.
//! - `chunks/ab/<locator>` — nonce ‖ XChaCha20-Poly1305(body key(addr), owner ciphertext),
//!   zero-padded to whole 4 KiB blocks when written with direct I/O (the record's length says
//!   where the body ends). The locator is a keyed hash of the addr, so a stolen disk cannot even
//!   be searched for a known chunk.
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

use crate::adapters::redb::{NODE_CHUNKS, NODE_ROOTS};
use crate::domain::audit::{prove_leaves, prove_leaves_from_segments, LeafProof, Verified, SEGMENT};
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
    /// Whether bodies are still written with `O_DIRECT` (off once the filesystem refused it).
    direct: std::sync::atomic::AtomicBool,
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

/// Direct I/O writes whole blocks from block-aligned memory.
const BLOCK: usize = 4096;

/// Length of the sealed body of a `len`-byte ciphertext.
fn sealed_len(len: u32) -> usize {
    NONCE_LEN + len as usize + 16
}

/// What a body of a `len`-byte ciphertext counts against the capacity: whole blocks, as the
/// disk allocates them either way.
fn charge(len: u32) -> u64 {
    sealed_len(len).next_multiple_of(BLOCK) as u64
}

/// The sealed body within a body file of `file_len` bytes: all of it, or its start when the
/// file was padded to whole blocks. `None` when the length fits neither.
fn body_end(file_len: usize, len: u32) -> Option<usize> {
    let sealed = sealed_len(len);
    (file_len == sealed || file_len == sealed.next_multiple_of(BLOCK)).then_some(sealed)
}

thread_local! {
    /// Each store thread's body buffer, reused so that a put does not fault in fresh pages.
    static BODY_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Seals `ciphertext` (nonce ‖ XChaCha20-Poly1305 under `key`, `aad` bound) into `buf` and calls
/// `f` with the block-aligned, zero-padded file image and the sealed body's length within it.
fn with_sealed_body<R>(
    buf: &mut Vec<u8>,
    key: &[u8; 32],
    aad: &[u8],
    ciphertext: &[u8],
    f: impl FnOnce(&[u8], usize) -> R,
) -> R {
    use chacha20poly1305::AeadInPlace;
    let sealed = NONCE_LEN + ciphertext.len() + 16;
    let padded = sealed.next_multiple_of(BLOCK);
    if buf.len() < padded + BLOCK {
        buf.resize(padded + BLOCK, 0);
    }
    let start = buf.as_ptr().align_offset(BLOCK);
    let image = &mut buf[start..start + padded];
    let (nonce, rest) = image.split_at_mut(NONCE_LEN);
    crate::domain::random_bytes(nonce);
    let (body, rest) = rest.split_at_mut(ciphertext.len());
    body.copy_from_slice(ciphertext);
    let tag = XChaCha20Poly1305::new(key.into())
        .encrypt_in_place_detached(XNonce::from_slice(nonce), aad, body)
        .unwrap_or_else(|_| unreachable!("XChaCha20 input limit exceeded"));
    let (tag_out, padding) = rest.split_at_mut(16);
    tag_out.copy_from_slice(&tag);
    padding.fill(0);
    f(image, sealed)
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
            direct: std::sync::atomic::AtomicBool::new(true),
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
                        used += charge(m.len);
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
    pub fn without_direct_io(self) -> Self {
        self.direct.store(false, Ordering::SeqCst);
        self
    }

    /// Writes the sealed body durably; returns the audit aids of a multi-segment chunk.
    fn write_body(
        &self,
        locator: &[u8; 32],
        addr: &Addr,
        ciphertext: &Verified<'_>,
    ) -> Result<Option<Audit>, StoreError> {
        let dst = self.body_path(locator);
        let key = self.id.body_key(addr);
        let multi_segment = !ciphertext.cvs().is_empty();
        let (result, mac) = BODY_BUF.with_borrow_mut(|buf| {
            with_sealed_body(buf, &key, &addr.0, ciphertext.bytes(), |image, sealed| {
                let mac = multi_segment
                    .then(|| *blake3::keyed_hash(&self.id.body_mac_key(), &image[..sealed]).as_bytes());
                (self.write_file(&dst, image, sealed), mac)
            })
        });
        let result = result.and_then(|()| fsync_dir(dst.parent().unwrap_or(&self.dir)));
        if result.is_err() {
            let _ = fs::remove_file(&dst);
        }
        result?;
        Ok(mac.map(|mac| Audit { mac, cvs: ciphertext.cvs().to_vec() }))
    }

    /// Writes `image` (block-aligned, padded) with direct I/O, or its first `sealed` bytes through
    /// the page cache where direct I/O is refused; then fsyncs the file.
    fn write_file(&self, path: &Path, image: &[u8], sealed: usize) -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let refused = |e: &std::io::Error| e.raw_os_error() == Some(libc::EINVAL);
        if self.direct.load(Ordering::Relaxed) {
            let opened = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .custom_flags(libc::O_DIRECT)
                .open(path);
            let written = opened.and_then(|mut f| f.write_all(image).and_then(|()| f.sync_all()));
            match written {
                Err(e) if refused(&e) => {
                    self.direct.store(false, Ordering::Relaxed);
                    tracing::info!(dir = %self.dir.display(), "the filesystem refuses direct I/O; writing chunk bodies through the page cache");
                }
                other => return other,
            }
        }
        let mut f = File::create(path)?;
        f.write_all(&image[..sealed])?;
        f.sync_all()
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

    /// The sealed body of a chunk that has an index record of `len` ciphertext bytes, without
    /// any block padding (missing or of another length = corrupt).
    fn read_body(&self, addr: &Addr, len: u32) -> Result<Vec<u8>, StoreError> {
        let mut body = match fs::read(self.body_path(&self.id.locator(addr))) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(StoreError::Corrupt(*addr)),
            Err(e) => return Err(e.into()),
        };
        let end = body_end(body.len(), len).ok_or(StoreError::Corrupt(*addr))?;
        body.truncate(end);
        Ok(body)
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

    fn put(&self, meta: &StoredChunk, ciphertext: &Verified<'_>) -> Result<(), StoreError> {
        if ciphertext.addr() != &meta.addr.0 || ciphertext.bytes().len() != meta.len as usize {
            return Err(StoreError::Corrupt(meta.addr));
        }
        let charge = charge(meta.len);
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
        let Some(meta) = self.meta(addr)? else {
            return Ok(None);
        };
        let sealed = self.read_body(addr, meta.len)?;
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
        let sealed = self.read_body(addr, meta.len)?;
        // Every stored byte is checked (one keyed BLAKE3 pass), so any damage is caught now, not
        // only damage inside the challenged leaves.
        let mac = blake3::keyed_hash(&self.id.body_mac_key(), &sealed);
        if mac != blake3::Hash::from_bytes(audit.mac) {
            return Err(StoreError::Corrupt(*addr));
        }
        let (nonce, ct) = (&sealed[..NONCE_LEN], &sealed[NONCE_LEN..sealed.len() - 16]);
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
        if self.record(addr).is_ok_and(|r| r.is_none()) {
            return Ok(false);
        }
        // The body goes first: a put of this chunk starts only once the entry is gone, and
        // must not find its new body deleted. An entry left without a body by a crash right
        // here is dropped at the next open.
        match fs::remove_file(self.body_path(&loc)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
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
        self.chunks.fetch_sub(1, Ordering::SeqCst);
        if let Some(m) = meta {
            self.used.fetch_sub(charge(m.len), Ordering::SeqCst);
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
