//! Writes of the redb manifest: the write transaction `Tx` with its typed changes, each of which
//! records how to undo itself inside a group commit.

use super::super::{
    CHUNKS, DIRENTS, EXTENTS, INODES, META, NODES, SEALING, SHARES, SHARE_SECRETS, SMALL_OUTBOX, SNAPSHOTS,
    STAGED, STAGED_RANGES, SYMLINKS, UNREFERENCED, UPLOADS, XATTRS,
};
use super::read::readers;
use super::{dirent_key, err, FILES, FILE_BYTES};
use crate::domain::fs::{Attr, ChunkRecord, Extent, FsError, Ino};
use crate::domain::fs::{Kind, ROOT_INO};
use crate::domain::health::NodeRecord;
use crate::domain::ids::{Addr, NodeId};
use crate::domain::partial::Partial;
use crate::domain::snapshot::BlobRow;
use redb::{Key, ReadableTable, TableDefinition, Value, WriteTransaction};
use std::borrow::Borrow;
use std::cell::RefCell;

/// How to put back one change of a failed call inside a group.
pub(super) type Undo = Box<dyn FnOnce(&WriteTransaction) -> Result<(), FsError> + Send>;

/// A write transaction with typed helpers. Inside a group commit it records how to undo each
/// change, so that a failing call can be taken back without the calls before it.
pub struct Tx<'a> {
    pub(super) txn: &'a WriteTransaction,
    pub(super) undo: Option<RefCell<Vec<Undo>>>,
}

/// Puts `key` back to `old` (or removes it) in `table`.
fn put_back<'k, 'v, K: Key + 'static, V: Value + 'static>(
    w: &WriteTransaction,
    table: TableDefinition<K, V>,
    key: impl Borrow<K::SelfType<'k>>,
    old: Option<impl Borrow<V::SelfType<'v>>>,
) -> Result<(), FsError> {
    let mut t = w.open_table(table).map_err(err)?;
    match old {
        Some(v) => drop(t.insert(key, v).map_err(err)?),
        None => drop(t.remove(key).map_err(err)?),
    }
    Ok(())
}

impl Tx<'_> {
    readers!(txn);

    /// The transaction itself, for bulk loads; not for calls that may run inside a group
    /// commit (their changes would not be undone).
    pub(in crate::adapters::redb) fn raw(&self) -> &WriteTransaction {
        debug_assert!(self.undo.is_none(), "raw writes inside a group commit cannot be undone");
        self.txn
    }

    /// Records how to undo a change, when inside a group commit.
    fn remember(&self, undo: impl FnOnce(&WriteTransaction) -> Result<(), FsError> + Send + 'static) {
        if let Some(log) = &self.undo {
            log.borrow_mut().push(Box::new(undo));
        }
    }

    fn recording(&self) -> bool {
        self.undo.is_some()
    }

    /// Writes an inode.
    pub fn put_inode(&self, a: &Attr) -> Result<(), FsError> {
        let mut t = self.txn.open_table(INODES).map_err(err)?;
        let old = t.insert(a.ino, a.encode().as_slice()).map_err(err)?.map(|g| g.value().to_vec());
        drop(t);
        let ino = a.ino;
        self.count_files(ino, old.as_deref(), Some(a))?;
        self.remember(move |w| put_back(w, INODES, ino, old.as_deref()));
        Ok(())
    }

    /// Keeps the regular-file counters in step with inode `ino` going from `old` (its record)
    /// to `new` (`None`: deleted). A manifest without counters yet is counted when opened.
    fn count_files(&self, ino: Ino, old: Option<&[u8]>, new: Option<&Attr>) -> Result<(), FsError> {
        let weight = |a: Option<&Attr>| match a {
            Some(a) if a.kind == Kind::File => (1, a.size),
            _ => (0, 0),
        };
        let before = weight(old.and_then(|b| Attr::decode(ino, b)).as_ref());
        let after = weight(new);
        if before == after {
            return Ok(());
        }
        let (Some(files), Some(bytes)) = (self.meta(FILES)?, self.meta(FILE_BYTES)?) else { return Ok(()) };
        self.set_meta(FILES, files.saturating_sub(before.0).saturating_add(after.0))?;
        self.set_meta(FILE_BYTES, bytes.saturating_sub(before.1).saturating_add(after.1))
    }

    /// Keeps (or drops) the ciphertext of a small queued chunk.
    pub fn set_small_outbox(&self, addr: &Addr, ct: Option<&[u8]>) -> Result<(), FsError> {
        let mut t = self.txn.open_table(SMALL_OUTBOX).map_err(err)?;
        let old = match ct {
            Some(ct) => t.insert(&addr.0, ct),
            None => t.remove(&addr.0),
        }
        .map_err(err)?
        .filter(|_| self.recording())
        .map(|g| g.value().to_vec());
        let a = addr.0;
        self.remember(move |w| put_back(w, SMALL_OUTBOX, &a, old.as_deref()));
        Ok(())
    }

    /// Sets a counter or setting in the meta table.
    pub fn set_meta(&self, key: &str, value: u64) -> Result<(), FsError> {
        let old = self.txn.open_table(META).map_err(err)?.insert(key, value).map_err(err)?.map(|g| g.value());
        let key = key.to_string();
        self.remember(move |w| put_back(w, META, key.as_str(), old));
        Ok(())
    }

    /// Allocates a fresh inode number.
    pub fn next_ino(&self) -> Result<Ino, FsError> {
        let next = self.meta("next_ino")?.unwrap_or(ROOT_INO + 1);
        self.set_meta("next_ino", next + 1)?;
        Ok(next)
    }

    /// Adds a directory entry.
    pub fn put_dirent(&self, parent: Ino, name: &[u8], ino: Ino) -> Result<(), FsError> {
        let key = dirent_key(parent, name);
        let old = self
            .txn
            .open_table(DIRENTS)
            .map_err(err)?
            .insert(key.as_slice(), ino)
            .map_err(err)?
            .map(|g| g.value());
        self.remember(move |w| put_back(w, DIRENTS, key.as_slice(), old));
        Ok(())
    }

    /// Removes a directory entry.
    pub fn del_dirent(&self, parent: Ino, name: &[u8]) -> Result<(), FsError> {
        let key = dirent_key(parent, name);
        let old = self
            .txn
            .open_table(DIRENTS)
            .map_err(err)?
            .remove(key.as_slice())
            .map_err(err)?
            .map(|g| g.value());
        self.remember(move |w| put_back(w, DIRENTS, key.as_slice(), old));
        Ok(())
    }

    /// Sets a symlink's target.
    pub fn put_symlink(&self, ino: Ino, target: &[u8]) -> Result<(), FsError> {
        let mut t = self.txn.open_table(SYMLINKS).map_err(err)?;
        let old = t.insert(ino, target).map_err(err)?.map(|g| g.value().to_vec());
        self.remember(move |w| put_back(w, SYMLINKS, ino, old.as_deref()));
        Ok(())
    }

    /// Writes a chunk record.
    pub fn put_chunk(&self, addr: &Addr, c: &ChunkRecord) -> Result<(), FsError> {
        let mut t = self.txn.open_table(CHUNKS).map_err(err)?;
        let old = t.insert(&addr.0, c.encode().as_slice()).map_err(err)?.map(|g| g.value().to_vec());
        let a = addr.0;
        self.remember(move |w| put_back(w, CHUNKS, &a, old.as_deref()));
        Ok(())
    }

    /// Replaces a file's extents, adjusting chunk reference counts.
    pub fn set_extents(&self, ino: Ino, new: &[Extent]) -> Result<(), FsError> {
        let old = self.extents(ino, 0, u64::MAX)?;
        {
            let mut t = self.txn.open_table(EXTENTS).map_err(err)?;
            for e in &old {
                t.remove((ino, e.offset)).map_err(err)?;
            }
            for e in new {
                t.insert((ino, e.offset), e.encode().as_slice()).map_err(err)?;
            }
        }
        if self.recording() {
            let (gone, added): (Vec<_>, Vec<_>) = (
                old.iter().map(|e| (e.offset, e.encode())).collect(),
                new.iter().map(|e| e.offset).collect(),
            );
            self.remember(move |w| {
                let mut t = w.open_table(EXTENTS).map_err(err)?;
                for off in added {
                    t.remove((ino, off)).map_err(err)?;
                }
                for (off, v) in gone {
                    t.insert((ino, off), v.as_slice()).map_err(err)?;
                }
                Ok(())
            });
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
            if c.refs == 0 && before > 0 {
                let now = crate::domain::unix_ms(std::time::SystemTime::now());
                self.set_unreferenced(addr, Some(now))?;
            } else if c.refs > 0 && before == 0 {
                self.set_unreferenced(addr, None)?;
            }
        }
        Ok(())
    }

    fn set_unreferenced(&self, addr: &Addr, since: Option<u64>) -> Result<(), FsError> {
        self.set_addr_time(UNREFERENCED, addr, since)
    }

    /// Marks a chunk as queued while its file is still being sealed (no file references it yet).
    pub fn set_sealing(&self, addr: &Addr, since: Option<u64>) -> Result<(), FsError> {
        self.set_addr_time(SEALING, addr, since)
    }

    /// Releases a chunk queued while sealing: one that no file came to reference starts its
    /// garbage-collection grace period like any chunk that lost its last reference.
    pub fn release_sealed(&self, addr: &Addr) -> Result<(), FsError> {
        self.set_sealing(addr, None)?;
        if self.chunk(addr)?.is_some_and(|c| c.refs == 0) {
            let now = crate::domain::unix_ms(std::time::SystemTime::now());
            self.set_unreferenced(addr, Some(now))?;
        }
        Ok(())
    }

    /// Forgets a chunk entirely: its record, grace-period entry, queued upload and small outbox copy.
    pub fn forget_chunk(&self, addr: &Addr) -> Result<(), FsError> {
        let old = self
            .txn
            .open_table(CHUNKS)
            .map_err(err)?
            .remove(&addr.0)
            .map_err(err)?
            .filter(|_| self.recording())
            .map(|g| g.value().to_vec());
        let a = addr.0;
        self.remember(move |w| put_back(w, CHUNKS, &a, old.as_deref()));
        self.set_unreferenced(addr, None)?;
        self.set_upload(addr, None)?;
        self.set_small_outbox(addr, None)
    }

    /// Records a snapshot (or a share) and pins its addrs, or drops one and unpins them.
    pub fn put_blob(&self, shares: bool, row: &BlobRow, keep: bool) -> Result<(), FsError> {
        let table = if shares { SHARES } else { SNAPSHOTS };
        let mut t = self.txn.open_table(table).map_err(err)?;
        let had = t.get(row.info.id).map_err(err)?.map(|g| g.value().to_vec());
        let id = row.info.id;
        if keep && had.is_none() {
            t.insert(id, row.encode().as_slice()).map_err(err)?;
        } else if !keep && had.is_some() {
            t.remove(id).map_err(err)?;
        }
        drop(t);
        let changed = keep != had.is_some();
        self.remember(move |w| put_back(w, table, id, had.as_deref()));
        if changed {
            for a in &row.pins {
                self.adjust_refs(a, if keep { 1 } else { -1 })?;
            }
        }
        Ok(())
    }

    /// Writes what the owner knows about a node.
    pub fn put_node(&self, node: &NodeId, n: &NodeRecord) -> Result<(), FsError> {
        let mut t = self.txn.open_table(NODES).map_err(err)?;
        let old = t.insert(&node.0, n.encode().as_slice()).map_err(err)?.map(|g| g.value().to_vec());
        let id = node.0;
        self.remember(move |w| put_back(w, NODES, &id, old.as_deref()));
        Ok(())
    }

    /// Sets or removes an xattr.
    pub fn put_xattr(&self, ino: Ino, name: &[u8], value: Option<&[u8]>) -> Result<(), FsError> {
        let mut t = self.txn.open_table(XATTRS).map_err(err)?;
        let key = dirent_key(ino, name);
        let old = match value {
            Some(v) => t.insert(key.as_slice(), v),
            None => t.remove(key.as_slice()),
        }
        .map_err(err)?
        .filter(|_| self.recording())
        .map(|g| g.value().to_vec());
        self.remember(move |w| put_back(w, XATTRS, key.as_slice(), old.as_deref()));
        Ok(())
    }

    /// Marks an inode's content as staged (or not).
    pub fn set_staged(&self, ino: Ino, staged: bool) -> Result<(), FsError> {
        let mut t = self.txn.open_table(STAGED).map_err(err)?;
        let old = if staged { t.insert(ino, 0) } else { t.remove(ino) }.map_err(err)?.map(|g| g.value());
        self.remember(move |w| put_back(w, STAGED, ino, old));
        if !staged {
            self.set_partial(ino, None)?;
        }
        Ok(())
    }

    /// Records (or drops) the local part of a file staged in part.
    pub fn set_partial(&self, ino: Ino, p: Option<&Partial>) -> Result<(), FsError> {
        let mut t = self.txn.open_table(STAGED_RANGES).map_err(err)?;
        let old = match p {
            Some(p) => t.insert(ino, p.encode().as_slice()),
            None => t.remove(ino),
        }
        .map_err(err)?
        .filter(|_| self.recording())
        .map(|g| g.value().to_vec());
        self.remember(move |w| put_back(w, STAGED_RANGES, ino, old.as_deref()));
        Ok(())
    }

    /// Sets (or removes) `addr`'s time in one of the addr → Unix ms tables.
    fn set_addr_time(
        &self,
        table: TableDefinition<'static, &'static [u8; 32], u64>,
        addr: &Addr,
        ms: Option<u64>,
    ) -> Result<(), FsError> {
        let mut t = self.txn.open_table(table).map_err(err)?;
        let old = match ms {
            Some(ms) => t.insert(&addr.0, ms),
            None => t.remove(&addr.0),
        }
        .map_err(err)?
        .map(|g| g.value());
        let a = addr.0;
        self.remember(move |w| put_back(w, table, &a, old));
        Ok(())
    }

    /// Queues or dequeues an upload.
    pub fn set_upload(&self, addr: &Addr, queued_at: Option<u64>) -> Result<(), FsError> {
        self.set_addr_time(UPLOADS, addr, queued_at)
    }

    /// Deletes an inode and everything hanging off it (extents, xattrs, symlink, staged mark).
    pub fn delete_inode(&self, ino: Ino) -> Result<(), FsError> {
        self.set_extents(ino, &[])?;
        for name in self.xattr_names(ino)? {
            self.put_xattr(ino, &name, None)?;
        }
        let old =
            self.txn.open_table(SYMLINKS).map_err(err)?.remove(ino).map_err(err)?.map(|g| g.value().to_vec());
        self.remember(move |w| put_back(w, SYMLINKS, ino, old.as_deref()));
        self.set_staged(ino, false)?;
        let old =
            self.txn.open_table(INODES).map_err(err)?.remove(ino).map_err(err)?.map(|g| g.value().to_vec());
        self.count_files(ino, old.as_deref(), None)?;
        self.remember(move |w| put_back(w, INODES, ino, old.as_deref()));
        Ok(())
    }
}
