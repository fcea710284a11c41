//! The vault manifest (DESIGN §6) on redb: inodes, directory entries, symlinks, extents, chunks
//! with replicas, xattrs, the staged set and the upload queue — one file per vault.
//!
//! Operations compose inside one write transaction (`Manifest::write`) so each filesystem call is
//! atomic. Ordinary calls commit without fsync (`Durability::None`); `write_durable` and the
//! periodic `checkpoint` make everything before them durable. fsync(2) on a file therefore costs
//! one durable commit, and a crash loses at most what no fsync acknowledged.

use super::{
    CHUNKS, DIRENTS, EXTENTS, INODES, META, NODES, SHARES, SHARE_SECRETS, SMALL_OUTBOX, SNAPSHOTS, STAGED,
    SYMLINKS, UNREFERENCED, UPLOADS, XATTRS,
};
use crate::domain::fs::{Attr, ChunkRecord, Extent, FsError, Ino, Kind, ROOT_INO};
use crate::domain::health::NodeRecord;
use crate::domain::ids::{Addr, NodeId};
use crate::domain::snapshot::BlobRow;
use redb::{Database, Durability, ReadTransaction, ReadableTable, ReadableTableMetadata, WriteTransaction};
use std::path::Path;

pub(super) fn err<E: Into<redb::Error>>(e: E) -> FsError {
    FsError::Io(format!("manifest: {}", e.into()))
}

/// Directory entry key: parent (big-endian) ‖ name.
pub fn dirent_key(parent: Ino, name: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + name.len());
    k.extend_from_slice(&parent.to_be_bytes());
    k.extend_from_slice(name);
    k
}

/// Counts and chunk records for status.
pub struct Summary {
    /// Inodes.
    pub inodes: u64,
    /// Queued uploads.
    pub uploads: u64,
    /// Every chunk record.
    pub chunks: Vec<(Addr, ChunkRecord)>,
}

/// The manifest database.
pub struct Manifest {
    db: Database,
    read_only: bool,
}

/// A write transaction with typed helpers.
pub struct Tx<'a>(&'a WriteTransaction);

/// A read transaction with typed helpers.
pub struct Rx(ReadTransaction);

macro_rules! readers {
    () => {
        /// An inode's attributes.
        pub fn inode(&self, ino: Ino) -> Result<Attr, FsError> {
            let t = self.0.open_table(INODES).map_err(err)?;
            let v = t.get(ino).map_err(err)?.ok_or(FsError::NotFound)?;
            Attr::decode(ino, v.value()).ok_or_else(|| FsError::Io(format!("inode {ino} record is damaged")))
        }

        /// The child named `name` in `parent`.
        pub fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Option<Ino>, FsError> {
            let t = self.0.open_table(DIRENTS).map_err(err)?;
            let v = t.get(dirent_key(parent, name).as_slice()).map_err(err)?;
            Ok(v.map(|g| g.value()))
        }

        /// Entries of `dir` in name order: (name, ino).
        pub fn children(&self, dir: Ino) -> Result<Vec<(Vec<u8>, Ino)>, FsError> {
            let t = self.0.open_table(DIRENTS).map_err(err)?;
            let lo = dir.to_be_bytes();
            let hi = (dir + 1).to_be_bytes();
            let mut out = Vec::new();
            for row in t.range::<&[u8]>(lo.as_slice()..hi.as_slice()).map_err(err)? {
                let (k, v) = row.map_err(err)?;
                out.push((k.value()[8..].to_vec(), v.value()));
            }
            Ok(out)
        }

        /// Whether `dir` has any entry.
        pub fn has_children(&self, dir: Ino) -> Result<bool, FsError> {
            let t = self.0.open_table(DIRENTS).map_err(err)?;
            let lo = dir.to_be_bytes();
            let hi = (dir + 1).to_be_bytes();
            let found = t.range::<&[u8]>(lo.as_slice()..hi.as_slice()).map_err(err)?.next().is_some();
            Ok(found)
        }

        /// A symlink's target.
        pub fn symlink(&self, ino: Ino) -> Result<Vec<u8>, FsError> {
            let t = self.0.open_table(SYMLINKS).map_err(err)?;
            let v = t.get(ino).map_err(err)?.ok_or(FsError::Invalid("not a symlink"))?;
            Ok(v.value().to_vec())
        }

        /// A file's extents overlapping `[start, end)`, in offset order.
        pub fn extents(&self, ino: Ino, start: u64, end: u64) -> Result<Vec<Extent>, FsError> {
            let t = self.0.open_table(EXTENTS).map_err(err)?;
            let mut out = Vec::new();
            // The extent containing `start` begins at or before it.
            if let Some(row) = t.range((ino, 0)..=(ino, start)).map_err(err)?.next_back() {
                let (k, v) = row.map_err(err)?;
                if let Some(e) = Extent::decode(k.value().1, v.value()) {
                    if e.offset + e.len as u64 > start {
                        out.push(e);
                    }
                }
            }
            if start < u64::MAX {
                for row in t.range((ino, start + 1)..(ino, end.max(start + 1))).map_err(err)? {
                    let (k, v) = row.map_err(err)?;
                    out.extend(Extent::decode(k.value().1, v.value()));
                }
            }
            Ok(out)
        }

        /// A chunk's record.
        pub fn chunk(&self, addr: &Addr) -> Result<Option<ChunkRecord>, FsError> {
            let t = self.0.open_table(CHUNKS).map_err(err)?;
            let v = t.get(&addr.0).map_err(err)?;
            Ok(v.and_then(|g| ChunkRecord::decode(g.value())))
        }

        /// An extended attribute.
        pub fn xattr(&self, ino: Ino, name: &[u8]) -> Result<Option<Vec<u8>>, FsError> {
            let t = self.0.open_table(XATTRS).map_err(err)?;
            let v = t.get(dirent_key(ino, name).as_slice()).map_err(err)?;
            Ok(v.map(|g| g.value().to_vec()))
        }

        /// All extended attribute names of an inode.
        pub fn xattr_names(&self, ino: Ino) -> Result<Vec<Vec<u8>>, FsError> {
            let t = self.0.open_table(XATTRS).map_err(err)?;
            let lo = ino.to_be_bytes();
            let hi = (ino + 1).to_be_bytes();
            let mut out = Vec::new();
            for row in t.range::<&[u8]>(lo.as_slice()..hi.as_slice()).map_err(err)? {
                out.push(row.map_err(err)?.0.value()[8..].to_vec());
            }
            Ok(out)
        }

        /// The ciphertext of a small queued chunk kept in the manifest.
        pub fn small_outbox(&self, addr: &Addr) -> Result<Option<Vec<u8>>, FsError> {
            let t = self.0.open_table(SMALL_OUTBOX).map_err(err)?;
            let v = t.get(&addr.0).map_err(err)?;
            Ok(v.map(|g| g.value().to_vec()))
        }

        /// A counter or setting from the meta table.
        pub fn meta(&self, key: &str) -> Result<Option<u64>, FsError> {
            Ok(self.0.open_table(META).map_err(err)?.get(key).map_err(err)?.map(|g| g.value()))
        }

        /// What the owner knows about a node.
        pub fn node(&self, node: &NodeId) -> Result<Option<NodeRecord>, FsError> {
            let t = self.0.open_table(NODES).map_err(err)?;
            let v = t.get(&node.0).map_err(err)?;
            Ok(v.and_then(|g| NodeRecord::decode(g.value())))
        }

        /// Every node the owner has a record of.
        pub fn nodes(&self) -> Result<Vec<(NodeId, NodeRecord)>, FsError> {
            let t = self.0.open_table(NODES).map_err(err)?;
            let mut out = Vec::new();
            for row in t.iter().map_err(err)? {
                let (k, v) = row.map_err(err)?;
                if let Some(n) = NodeRecord::decode(v.value()) {
                    out.push((NodeId(*k.value()), n));
                }
            }
            Ok(out)
        }

        /// Nodes written off after repeated audit failures.
        pub fn written_off(&self) -> Result<std::collections::HashSet<NodeId>, FsError> {
            Ok(self.nodes()?.into_iter().filter(|(_, n)| n.written_off).map(|(id, _)| id).collect())
        }

        /// Chunks unreferenced since at or before `before_ms` (up to `limit`).
        pub fn unreferenced(&self, before_ms: u64, limit: usize) -> Result<Vec<Addr>, FsError> {
            let t = self.0.open_table(UNREFERENCED).map_err(err)?;
            let mut out = Vec::new();
            for row in t.iter().map_err(err)? {
                let (k, v) = row.map_err(err)?;
                if v.value() <= before_ms {
                    out.push(Addr(*k.value()));
                    if out.len() >= limit {
                        break;
                    }
                }
            }
            Ok(out)
        }

        /// Snapshots (or shares) the owner keeps in the fabric, oldest first.
        pub fn blobs(&self, shares: bool) -> Result<Vec<BlobRow>, FsError> {
            let t = self.0.open_table(if shares { SHARES } else { SNAPSHOTS }).map_err(err)?;
            let mut out = Vec::new();
            for row in t.iter().map_err(err)? {
                let (k, v) = row.map_err(err)?;
                out.push(
                    BlobRow::decode(v.value())
                        .ok_or_else(|| FsError::Io(format!("snapshot/share row {} is damaged", k.value())))?,
                );
            }
            Ok(out)
        }

        /// A shared chunk's content key and proof-secret seed (in a share's manifest).
        pub fn share_secret(&self, addr: &Addr) -> Result<Option<([u8; 32], [u8; 32])>, FsError> {
            let t = self.0.open_table(SHARE_SECRETS).map_err(err)?;
            let Some(v) = t.get(&addr.0).map_err(err)? else { return Ok(None) };
            let v = v.value();
            match (v.get(..32).and_then(|k| k.try_into().ok()), v.get(32..64).and_then(|s| s.try_into().ok()))
            {
                (Some(k), Some(s)) if v.len() == 64 => Ok(Some((k, s))),
                _ => Err(FsError::Io("shared chunk secret is damaged".into())),
            }
        }

        /// Whether an inode's content is staged locally.
        pub fn is_staged(&self, ino: Ino) -> Result<bool, FsError> {
            Ok(self.0.open_table(STAGED).map_err(err)?.get(ino).map_err(err)?.is_some())
        }
    };
}

impl Rx {
    readers!();

    pub(super) fn raw(&self) -> &ReadTransaction {
        &self.0
    }

    /// Up to `limit` queued uploads.
    pub fn uploads(&self, limit: usize) -> Result<Vec<Addr>, FsError> {
        let t = self.0.open_table(UPLOADS).map_err(err)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(err)?.take(limit) {
            out.push(Addr(*row.map_err(err)?.0.value()));
        }
        Ok(out)
    }

    /// Inodes other than directories with no links left: files unlinked while open whose
    /// process died before the last close.
    pub fn unlinked_inodes(&self) -> Result<Vec<Ino>, FsError> {
        let t = self.0.open_table(INODES).map_err(err)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(err)? {
            let (k, v) = row.map_err(err)?;
            if let Some(a) = Attr::decode(k.value(), v.value()) {
                if a.nlink == 0 && a.kind != Kind::Dir {
                    out.push(a.ino);
                }
            }
        }
        Ok(out)
    }

    /// Whether a chunk is in the upload queue.
    pub fn upload_queued(&self, addr: &Addr) -> Result<bool, FsError> {
        Ok(self.0.open_table(UPLOADS).map_err(err)?.get(&addr.0).map_err(err)?.is_some())
    }

    /// Inodes staged locally (to re-queue after a restart).
    pub fn staged(&self) -> Result<Vec<Ino>, FsError> {
        let t = self.0.open_table(STAGED).map_err(err)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(err)? {
            out.push(row.map_err(err)?.0.value());
        }
        Ok(out)
    }

    /// Number of inodes and of queued uploads, and every chunk record (for status).
    pub fn summary(&self) -> Result<Summary, FsError> {
        let inodes = self.0.open_table(INODES).map_err(err)?.len().map_err(err)?;
        let uploads = self.0.open_table(UPLOADS).map_err(err)?.len().map_err(err)?;
        let t = self.0.open_table(CHUNKS).map_err(err)?;
        let mut chunks = Vec::new();
        for row in t.iter().map_err(err)? {
            let (k, v) = row.map_err(err)?;
            if let Some(c) = ChunkRecord::decode(v.value()) {
                chunks.push((Addr(*k.value()), c));
            }
        }
        Ok(Summary { inodes, uploads, chunks })
    }
}

impl Tx<'_> {
    readers!();

    pub(super) fn raw(&self) -> &WriteTransaction {
        self.0
    }

    /// Writes an inode.
    pub fn put_inode(&self, a: &Attr) -> Result<(), FsError> {
        self.0.open_table(INODES).map_err(err)?.insert(a.ino, a.encode().as_slice()).map_err(err)?;
        Ok(())
    }

    /// Keeps (or drops) the ciphertext of a small queued chunk.
    pub fn set_small_outbox(&self, addr: &Addr, ct: Option<&[u8]>) -> Result<(), FsError> {
        let mut t = self.0.open_table(SMALL_OUTBOX).map_err(err)?;
        match ct {
            Some(ct) => t.insert(&addr.0, ct).map(|_| ()).map_err(err),
            None => t.remove(&addr.0).map(|_| ()).map_err(err),
        }
    }

    /// Sets a counter or setting in the meta table.
    pub fn set_meta(&self, key: &str, value: u64) -> Result<(), FsError> {
        self.0.open_table(META).map_err(err)?.insert(key, value).map_err(err)?;
        Ok(())
    }

    /// Allocates a fresh inode number.
    pub fn next_ino(&self) -> Result<Ino, FsError> {
        let mut t = self.0.open_table(META).map_err(err)?;
        let next = t.get("next_ino").map_err(err)?.map(|g| g.value()).unwrap_or(ROOT_INO + 1);
        t.insert("next_ino", next + 1).map_err(err)?;
        Ok(next)
    }

    /// Adds a directory entry.
    pub fn put_dirent(&self, parent: Ino, name: &[u8], ino: Ino) -> Result<(), FsError> {
        self.0
            .open_table(DIRENTS)
            .map_err(err)?
            .insert(dirent_key(parent, name).as_slice(), ino)
            .map_err(err)?;
        Ok(())
    }

    /// Removes a directory entry.
    pub fn del_dirent(&self, parent: Ino, name: &[u8]) -> Result<(), FsError> {
        self.0.open_table(DIRENTS).map_err(err)?.remove(dirent_key(parent, name).as_slice()).map_err(err)?;
        Ok(())
    }

    /// Sets a symlink's target.
    pub fn put_symlink(&self, ino: Ino, target: &[u8]) -> Result<(), FsError> {
        self.0.open_table(SYMLINKS).map_err(err)?.insert(ino, target).map_err(err)?;
        Ok(())
    }

    /// Writes a chunk record.
    pub fn put_chunk(&self, addr: &Addr, c: &ChunkRecord) -> Result<(), FsError> {
        self.0.open_table(CHUNKS).map_err(err)?.insert(&addr.0, c.encode().as_slice()).map_err(err)?;
        Ok(())
    }

    /// Replaces a file's extents, adjusting chunk reference counts.
    pub fn set_extents(&self, ino: Ino, new: &[Extent]) -> Result<(), FsError> {
        let old = self.extents(ino, 0, u64::MAX)?;
        {
            let mut t = self.0.open_table(EXTENTS).map_err(err)?;
            for e in &old {
                t.remove((ino, e.offset)).map_err(err)?;
            }
            for e in new {
                t.insert((ino, e.offset), e.encode().as_slice()).map_err(err)?;
            }
        }
        for e in new {
            self.adjust_refs(&e.addr, 1)?;
        }
        for e in &old {
            self.adjust_refs(&e.addr, -1)?;
        }
        Ok(())
    }

    /// Adjusts a chunk's reference count; a chunk that drops to zero references starts its
    /// garbage-collection grace period, one referenced again leaves it.
    pub fn adjust_refs(&self, addr: &Addr, delta: i64) -> Result<(), FsError> {
        if let Some(mut c) = self.chunk(addr)? {
            let before = c.refs;
            c.refs = (c.refs as i64 + delta).max(0) as u64;
            self.put_chunk(addr, &c)?;
            let mut t = self.0.open_table(UNREFERENCED).map_err(err)?;
            if c.refs == 0 && before > 0 {
                let now = crate::domain::unix_ms(std::time::SystemTime::now());
                t.insert(&addr.0, now).map_err(err)?;
            } else if c.refs > 0 && before == 0 {
                t.remove(&addr.0).map_err(err)?;
            }
        }
        Ok(())
    }

    /// Forgets a chunk entirely: its record, grace-period entry, queued upload and small outbox copy.
    pub fn forget_chunk(&self, addr: &Addr) -> Result<(), FsError> {
        self.0.open_table(CHUNKS).map_err(err)?.remove(&addr.0).map_err(err)?;
        self.0.open_table(UNREFERENCED).map_err(err)?.remove(&addr.0).map_err(err)?;
        self.set_upload(addr, None)?;
        self.set_small_outbox(addr, None)
    }

    /// Records a snapshot (or a share) and pins its addrs, or drops one and unpins them.
    pub fn put_blob(&self, shares: bool, row: &BlobRow, keep: bool) -> Result<(), FsError> {
        let mut t = self.0.open_table(if shares { SHARES } else { SNAPSHOTS }).map_err(err)?;
        let had = t.get(row.info.id).map_err(err)?.is_some();
        if keep && !had {
            t.insert(row.info.id, row.encode().as_slice()).map_err(err)?;
        } else if !keep && had {
            t.remove(row.info.id).map_err(err)?;
        }
        drop(t);
        if keep != had {
            for a in &row.pins {
                self.adjust_refs(a, if keep { 1 } else { -1 })?;
            }
        }
        Ok(())
    }

    /// Writes what the owner knows about a node.
    pub fn put_node(&self, node: &NodeId, n: &NodeRecord) -> Result<(), FsError> {
        self.0.open_table(NODES).map_err(err)?.insert(&node.0, n.encode().as_slice()).map_err(err)?;
        Ok(())
    }

    /// Sets or removes an xattr.
    pub fn put_xattr(&self, ino: Ino, name: &[u8], value: Option<&[u8]>) -> Result<(), FsError> {
        let mut t = self.0.open_table(XATTRS).map_err(err)?;
        let key = dirent_key(ino, name);
        match value {
            Some(v) => t.insert(key.as_slice(), v).map(|_| ()).map_err(err),
            None => t.remove(key.as_slice()).map(|_| ()).map_err(err),
        }
    }

    /// Marks an inode's content as staged (or not).
    pub fn set_staged(&self, ino: Ino, staged: bool) -> Result<(), FsError> {
        let mut t = self.0.open_table(STAGED).map_err(err)?;
        if staged {
            t.insert(ino, 0).map_err(err)?;
        } else {
            t.remove(ino).map_err(err)?;
        }
        Ok(())
    }

    /// Queues or dequeues an upload.
    pub fn set_upload(&self, addr: &Addr, queued_at: Option<u64>) -> Result<(), FsError> {
        let mut t = self.0.open_table(UPLOADS).map_err(err)?;
        match queued_at {
            Some(at) => t.insert(&addr.0, at).map(|_| ()).map_err(err),
            None => t.remove(&addr.0).map(|_| ()).map_err(err),
        }
    }

    /// Deletes an inode and everything hanging off it (extents, xattrs, symlink, staged mark).
    pub fn delete_inode(&self, ino: Ino) -> Result<(), FsError> {
        self.set_extents(ino, &[])?;
        for name in self.xattr_names(ino)? {
            self.put_xattr(ino, &name, None)?;
        }
        self.0.open_table(SYMLINKS).map_err(err)?.remove(ino).map_err(err)?;
        self.set_staged(ino, false)?;
        self.0.open_table(INODES).map_err(err)?.remove(ino).map_err(err)?;
        Ok(())
    }
}

impl Manifest {
    /// Opens (creating if needed) the manifest at `path`, with a root directory owned by the
    /// mounting user.
    pub fn open(path: &Path, uid: u32, gid: u32) -> Result<Manifest, FsError> {
        let db = Database::create(path).map_err(err)?;
        let m = Manifest::from_db(db);
        m.write_durable(|tx| {
            for t in [INODES, SYMLINKS] {
                let _ = tx.0.open_table(t).map_err(err)?;
            }
            let _ = tx.0.open_table(DIRENTS).map_err(err)?;
            let _ = tx.0.open_table(XATTRS).map_err(err)?;
            let _ = tx.0.open_table(EXTENTS).map_err(err)?;
            let _ = tx.0.open_table(CHUNKS).map_err(err)?;
            let _ = tx.0.open_table(STAGED).map_err(err)?;
            let _ = tx.0.open_table(UPLOADS).map_err(err)?;
            let _ = tx.0.open_table(META).map_err(err)?;
            let _ = tx.0.open_table(SMALL_OUTBOX).map_err(err)?;
            let _ = tx.0.open_table(UNREFERENCED).map_err(err)?;
            let _ = tx.0.open_table(NODES).map_err(err)?;
            let _ = tx.0.open_table(SNAPSHOTS).map_err(err)?;
            let _ = tx.0.open_table(SHARES).map_err(err)?;
            let _ = tx.0.open_table(SHARE_SECRETS).map_err(err)?;
            if matches!(tx.inode(ROOT_INO), Err(FsError::NotFound)) {
                tx.put_inode(&Attr::new(ROOT_INO, Kind::Dir, 0o755, uid, gid))?;
            }
            Ok(())
        })?;
        Ok(m)
    }

    pub(super) fn from_db(db: Database) -> Manifest {
        Manifest { db, read_only: false }
    }

    /// Opens an existing manifest that no call may change (a snapshot or a share).
    pub fn open_read_only(path: &Path) -> Result<Manifest, FsError> {
        let m = Manifest::open(path, 0, 0)?;
        Ok(Manifest { read_only: true, ..m })
    }

    /// Whether changes are refused.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// A read transaction.
    pub fn read(&self) -> Result<Rx, FsError> {
        Ok(Rx(self.db.begin_read().map_err(err)?))
    }

    fn commit<T>(
        &self,
        durability: Durability,
        f: impl FnOnce(&Tx) -> Result<T, FsError>,
    ) -> Result<T, FsError> {
        if self.read_only {
            return Err(FsError::ReadOnly);
        }
        let mut txn = self.db.begin_write().map_err(err)?;
        txn.set_durability(durability);
        let out = f(&Tx(&txn));
        match out {
            Ok(v) => {
                txn.commit().map_err(err)?;
                Ok(v)
            }
            Err(e) => {
                let _ = txn.abort();
                Err(e)
            }
        }
    }

    /// Runs `f` in one atomic transaction, committed without fsync.
    pub fn write<T>(&self, f: impl FnOnce(&Tx) -> Result<T, FsError>) -> Result<T, FsError> {
        self.commit(Durability::None, f)
    }

    /// Runs `f` in one atomic transaction and makes it, and everything before it, durable.
    pub fn write_durable<T>(&self, f: impl FnOnce(&Tx) -> Result<T, FsError>) -> Result<T, FsError> {
        self.commit(Durability::Immediate, f)
    }

    /// Makes every earlier commit durable.
    pub fn checkpoint(&self) -> Result<(), FsError> {
        self.write_durable(|_| Ok(()))
    }
}
