//! An in-memory manifest (the manifest port on `BTreeMap`s): every write runs on a copy of the
//! tables and replaces them only when it succeeds, so a write applies all or nothing; a read
//! snapshot shares the tables of its moment. Dumps use the same format as the redb manifest.

mod dump;

use crate::domain::dump::DumpWriter;
use crate::domain::fs::{Attr, ChunkRecord, Extent, FsError, Ino, Kind, ROOT_INO};
use crate::domain::health::NodeRecord;
use crate::domain::ids::{Addr, NodeId};
use crate::domain::partial::Partial;
use crate::domain::snapshot::BlobRow;
use crate::ports::manifest::{
    self as port, Commit, Dump, ManifestRead, ManifestSnapshot, ManifestStore, ManifestTx, ReadFn,
    ShareSecret, Summary, WriteFn,
};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

thread_local! {
    /// Set while this thread runs a write closure, which holds the manifest's lock.
    static IN_WRITE: Cell<bool> = const { Cell::new(false) };
}

/// Every table of the manifest.
#[derive(Clone, Default)]
pub(super) struct Tables {
    inodes: BTreeMap<Ino, Attr>,
    dirents: BTreeMap<(Ino, Vec<u8>), Ino>,
    symlinks: BTreeMap<Ino, Vec<u8>>,
    extents: BTreeMap<(Ino, u64), Extent>,
    chunks: BTreeMap<Addr, ChunkRecord>,
    xattrs: BTreeMap<(Ino, Vec<u8>), Vec<u8>>,
    staged: BTreeSet<Ino>,
    partial: BTreeMap<Ino, Partial>,
    uploads: BTreeMap<Addr, u64>,
    small_outbox: BTreeMap<Addr, Vec<u8>>,
    unreferenced: BTreeMap<Addr, u64>,
    sealing: BTreeMap<Addr, u64>,
    nodes: BTreeMap<NodeId, NodeRecord>,
    snapshots: BTreeMap<u64, BlobRow>,
    shares: BTreeMap<u64, BlobRow>,
    share_secrets: BTreeMap<Addr, Vec<u8>>,
    meta: BTreeMap<String, u64>,
}

/// The manifest in memory.
pub struct MemoryManifest {
    tables: Mutex<Arc<Tables>>,
    read_only: bool,
}

impl MemoryManifest {
    /// An empty manifest with a root directory owned by `uid`/`gid`.
    pub fn new(uid: u32, gid: u32) -> MemoryManifest {
        let mut t = Tables::default();
        t.inodes.insert(ROOT_INO, Attr::new(ROOT_INO, Kind::Dir, 0o755, uid, gid));
        MemoryManifest { tables: Mutex::new(Arc::new(t)), read_only: false }
    }

    /// A manifest built from a dump (as the redb manifest imports one).
    pub fn import(dump: &[u8]) -> Result<MemoryManifest, FsError> {
        let t = Tables::import(dump)?;
        Ok(MemoryManifest { tables: Mutex::new(Arc::new(t)), read_only: false })
    }

    /// This manifest, refusing every change from now on (a mounted snapshot or share).
    pub fn into_read_only(mut self) -> MemoryManifest {
        self.read_only = true;
        self
    }

    fn lock(&self) -> MutexGuard<'_, Arc<Tables>> {
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The tables of this moment (refused from inside a write, which holds the lock).
    fn now(&self) -> Result<Arc<Tables>, FsError> {
        if IN_WRITE.with(Cell::get) {
            return Err(FsError::Io("manifest used from inside its own write".into()));
        }
        Ok(self.lock().clone())
    }
}

impl ManifestStore for MemoryManifest {
    fn read(&self) -> Result<port::Rx, FsError> {
        Ok(Box::new(Snapshot(self.now()?)))
    }

    fn view_with(&self, f: &mut ReadFn<'_>) -> Result<(), FsError> {
        f(&*self.now()?)
    }

    fn write_with(&self, _commit: Commit, f: &mut WriteFn<'_>) -> Result<(), FsError> {
        if self.read_only {
            return Err(FsError::ReadOnly);
        }
        if IN_WRITE.with(Cell::get) {
            return Err(FsError::Io("manifest used from inside its own write".into()));
        }
        let mut tables = self.lock();
        let tx = MemoryTx(RefCell::new(Tables::clone(&tables)));
        IN_WRITE.with(|w| w.set(true));
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&tx)));
        IN_WRITE.with(|w| w.set(false));
        match out {
            Ok(Ok(())) => {
                *tables = Arc::new(tx.0.into_inner());
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(p) => {
                drop(tables);
                std::panic::resume_unwind(p)
            }
        }
    }

    fn start_group_commits(&self, _delay: Duration) -> Result<(), FsError> {
        Ok(())
    }

    fn flush(&self) -> Result<(), FsError> {
        Ok(())
    }

    fn checkpoint(&self) -> Result<(), FsError> {
        Ok(())
    }

    fn sync(&self) -> Result<(), FsError> {
        Ok(())
    }

    fn is_read_only(&self) -> bool {
        self.read_only
    }
}

/// A read snapshot: the tables of one moment.
struct Snapshot(Arc<Tables>);

/// A write transaction: a copy of the tables, kept if the write succeeds.
struct MemoryTx(RefCell<Tables>);

/// The rows of one inode in a table keyed by (ino, name), in name order.
fn keyed<V>(map: &BTreeMap<(Ino, Vec<u8>), V>, ino: Ino) -> impl Iterator<Item = (&Vec<u8>, &V)> {
    map.range((ino, Vec::new())..).take_while(move |((i, _), _)| *i == ino).map(|((_, k), v)| (k, v))
}

impl ManifestRead for Tables {
    fn inode(&self, ino: Ino) -> Result<Attr, FsError> {
        self.inodes.get(&ino).cloned().ok_or(FsError::NotFound)
    }

    fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Option<Ino>, FsError> {
        Ok(self.dirents.get(&(parent, name.to_vec())).copied())
    }

    fn children(&self, dir: Ino) -> Result<Vec<(Vec<u8>, Ino)>, FsError> {
        Ok(keyed(&self.dirents, dir).map(|(n, i)| (n.clone(), *i)).collect())
    }

    fn has_children(&self, dir: Ino) -> Result<bool, FsError> {
        Ok(keyed(&self.dirents, dir).next().is_some())
    }

    fn symlink(&self, ino: Ino) -> Result<Vec<u8>, FsError> {
        self.symlinks.get(&ino).cloned().ok_or(FsError::Invalid("not a symlink"))
    }

    fn extents(&self, ino: Ino, start: u64, end: u64) -> Result<Vec<Extent>, FsError> {
        let mut out = Vec::new();
        // The extent containing `start` begins at or before it.
        if let Some((_, e)) = self.extents.range((ino, 0)..=(ino, start)).next_back() {
            if e.offset + e.len as u64 > start {
                out.push(*e);
            }
        }
        if start < u64::MAX {
            out.extend(self.extents.range((ino, start + 1)..(ino, end.max(start + 1))).map(|(_, e)| *e));
        }
        Ok(out)
    }

    fn chunk(&self, addr: &Addr) -> Result<Option<ChunkRecord>, FsError> {
        Ok(self.chunks.get(addr).cloned())
    }

    fn xattr(&self, ino: Ino, name: &[u8]) -> Result<Option<Vec<u8>>, FsError> {
        Ok(self.xattrs.get(&(ino, name.to_vec())).cloned())
    }

    fn xattr_names(&self, ino: Ino) -> Result<Vec<Vec<u8>>, FsError> {
        Ok(keyed(&self.xattrs, ino).map(|(n, _)| n.clone()).collect())
    }

    fn small_outbox(&self, addr: &Addr) -> Result<Option<Vec<u8>>, FsError> {
        Ok(self.small_outbox.get(addr).cloned())
    }

    fn meta(&self, key: &str) -> Result<Option<u64>, FsError> {
        Ok(self.meta.get(key).copied())
    }

    fn node(&self, node: &NodeId) -> Result<Option<NodeRecord>, FsError> {
        Ok(self.nodes.get(node).copied())
    }

    fn nodes(&self) -> Result<Vec<(NodeId, NodeRecord)>, FsError> {
        Ok(self.nodes.iter().map(|(k, v)| (*k, *v)).collect())
    }

    fn unreferenced(&self, before_ms: u64, limit: usize) -> Result<Vec<Addr>, FsError> {
        Ok(self.unreferenced.iter().filter(|(_, t)| **t <= before_ms).map(|(a, _)| *a).take(limit).collect())
    }

    fn blobs(&self, shares: bool) -> Result<Vec<BlobRow>, FsError> {
        Ok(if shares { &self.shares } else { &self.snapshots }.values().cloned().collect())
    }

    fn share_secret(&self, addr: &Addr) -> Result<Option<ShareSecret>, FsError> {
        let Some(v) = self.share_secrets.get(addr) else { return Ok(None) };
        match (v.get(..32).and_then(|k| k.try_into().ok()), v.get(32..64).and_then(|s| s.try_into().ok())) {
            (Some(k), Some(s)) if v.len() == 64 => Ok(Some((k, s))),
            _ => Err(FsError::Io("shared chunk secret is damaged".into())),
        }
    }

    fn uploads(&self, limit: usize) -> Result<Vec<Addr>, FsError> {
        Ok(self.uploads.keys().take(limit).copied().collect())
    }

    fn is_staged(&self, ino: Ino) -> Result<bool, FsError> {
        Ok(self.staged.contains(&ino))
    }
}

/// The port's reader methods of a wrapper, forwarded to the tables it holds.
macro_rules! forward_reads {
    ($ty:ty, |$s:ident| $tables:expr) => {
        forward_reads!(@ $ty, $s, $tables;
            inode(ino: Ino) -> Attr;
            lookup(parent: Ino, name: &[u8]) -> Option<Ino>;
            children(dir: Ino) -> Vec<(Vec<u8>, Ino)>;
            has_children(dir: Ino) -> bool;
            symlink(ino: Ino) -> Vec<u8>;
            extents(ino: Ino, start: u64, end: u64) -> Vec<Extent>;
            chunk(addr: &Addr) -> Option<ChunkRecord>;
            xattr(ino: Ino, name: &[u8]) -> Option<Vec<u8>>;
            xattr_names(ino: Ino) -> Vec<Vec<u8>>;
            small_outbox(addr: &Addr) -> Option<Vec<u8>>;
            meta(key: &str) -> Option<u64>;
            node(node: &NodeId) -> Option<NodeRecord>;
            nodes() -> Vec<(NodeId, NodeRecord)>;
            unreferenced(before_ms: u64, limit: usize) -> Vec<Addr>;
            blobs(shares: bool) -> Vec<BlobRow>;
            share_secret(addr: &Addr) -> Option<ShareSecret>;
            uploads(limit: usize) -> Vec<Addr>;
            is_staged(ino: Ino) -> bool;
        );
    };
    (@ $ty:ty, $s:ident, $tables:expr; $($name:ident($($arg:ident: $t:ty),*) -> $ret:ty;)*) => {
        impl ManifestRead for $ty {
            $(
                fn $name(&self, $($arg: $t),*) -> Result<$ret, FsError> {
                    let $s = self;
                    $tables.$name($($arg),*)
                }
            )*
        }
    };
}

forward_reads!(Snapshot, |s| s.0);
forward_reads!(MemoryTx, |s| s.0.borrow());

impl ManifestSnapshot for Snapshot {
    fn unlinked_inodes(&self) -> Result<Vec<Ino>, FsError> {
        Ok(self.0.inodes.values().filter(|a| a.nlink == 0 && a.kind != Kind::Dir).map(|a| a.ino).collect())
    }

    fn upload_queued(&self, addr: &Addr) -> Result<bool, FsError> {
        Ok(self.0.uploads.contains_key(addr))
    }

    fn sealing(&self) -> Result<Vec<Addr>, FsError> {
        Ok(self.0.sealing.keys().copied().collect())
    }

    fn staged(&self) -> Result<Vec<Ino>, FsError> {
        Ok(self.0.staged.iter().copied().collect())
    }

    fn partial(&self, ino: Ino) -> Result<Option<Partial>, FsError> {
        Ok(self.0.partial.get(&ino).cloned())
    }

    fn inode_count(&self) -> Result<u64, FsError> {
        Ok(self.0.inodes.len() as u64)
    }

    fn summary(&self) -> Result<Summary, FsError> {
        let chunks = self.0.chunks.iter().map(|(a, c)| (*a, c.clone())).collect();
        let files = self.0.inodes.values().filter(|a| a.kind == Kind::File);
        let (files, file_bytes) = files.fold((0, 0), |(n, b), a| (n + 1, b + a.size));
        let inodes = self.0.inodes.len() as u64;
        Ok(Summary { inodes, files, file_bytes, uploads: self.0.uploads.len() as u64, chunks })
    }

    fn content_hash(&self) -> Result<[u8; 32], FsError> {
        let mut w = DumpWriter::default();
        self.0.write_files(&mut w);
        let mut h = blake3::Hasher::new_derive_key("quloud v1 snapshot content hash (memory)");
        h.update(&w.finish());
        Ok(*h.finalize().as_bytes())
    }

    fn dump(&self) -> Result<Dump, FsError> {
        Ok(self.0.dump())
    }
}

fn now_ms() -> u64 {
    crate::domain::unix_ms(std::time::SystemTime::now())
}

impl MemoryTx {
    fn t(&self) -> std::cell::RefMut<'_, Tables> {
        self.0.borrow_mut()
    }

    fn set_unreferenced(&self, addr: &Addr, since: Option<u64>) {
        match since {
            Some(ms) => self.t().unreferenced.insert(*addr, ms),
            None => self.t().unreferenced.remove(addr),
        };
    }
}

/// Inserts `value` at `key`, or removes `key` when there is no value.
fn set<K: Ord, V>(map: &mut BTreeMap<K, V>, key: K, value: Option<V>) {
    match value {
        Some(v) => drop(map.insert(key, v)),
        None => drop(map.remove(&key)),
    }
}

impl ManifestTx for MemoryTx {
    fn put_inode(&self, a: &Attr) -> Result<(), FsError> {
        self.t().inodes.insert(a.ino, a.clone());
        Ok(())
    }

    fn delete_inode(&self, ino: Ino) -> Result<(), FsError> {
        self.set_extents(ino, &[])?;
        let mut t = self.t();
        t.xattrs.retain(|(i, _), _| *i != ino);
        t.symlinks.remove(&ino);
        t.staged.remove(&ino);
        t.partial.remove(&ino);
        t.inodes.remove(&ino);
        Ok(())
    }

    fn next_ino(&self) -> Result<Ino, FsError> {
        let next = self.meta("next_ino")?.unwrap_or(ROOT_INO + 1);
        self.set_meta("next_ino", next + 1)?;
        Ok(next)
    }

    fn set_meta(&self, key: &str, value: u64) -> Result<(), FsError> {
        self.t().meta.insert(key.to_string(), value);
        Ok(())
    }

    fn put_dirent(&self, parent: Ino, name: &[u8], ino: Ino) -> Result<(), FsError> {
        self.t().dirents.insert((parent, name.to_vec()), ino);
        Ok(())
    }

    fn del_dirent(&self, parent: Ino, name: &[u8]) -> Result<(), FsError> {
        self.t().dirents.remove(&(parent, name.to_vec()));
        Ok(())
    }

    fn put_symlink(&self, ino: Ino, target: &[u8]) -> Result<(), FsError> {
        self.t().symlinks.insert(ino, target.to_vec());
        Ok(())
    }

    fn put_xattr(&self, ino: Ino, name: &[u8], value: Option<&[u8]>) -> Result<(), FsError> {
        set(&mut self.t().xattrs, (ino, name.to_vec()), value.map(<[u8]>::to_vec));
        Ok(())
    }

    fn set_staged(&self, ino: Ino, staged: bool) -> Result<(), FsError> {
        let mut t = self.t();
        if staged {
            t.staged.insert(ino);
        } else {
            t.staged.remove(&ino);
            t.partial.remove(&ino);
        }
        Ok(())
    }

    fn set_partial(&self, ino: Ino, p: Option<&Partial>) -> Result<(), FsError> {
        set(&mut self.t().partial, ino, p.cloned());
        Ok(())
    }

    fn put_chunk(&self, addr: &Addr, c: &ChunkRecord) -> Result<(), FsError> {
        self.t().chunks.insert(*addr, c.clone());
        Ok(())
    }

    fn set_extents(&self, ino: Ino, new: &[Extent]) -> Result<(), FsError> {
        let old = self.extents(ino, 0, u64::MAX)?;
        {
            let mut t = self.t();
            for e in &old {
                t.extents.remove(&(ino, e.offset));
            }
            for e in new {
                t.extents.insert((ino, e.offset), *e);
            }
        }
        new.iter().try_for_each(|e| self.adjust_refs(&e.addr, 1))?;
        old.iter().try_for_each(|e| self.adjust_refs(&e.addr, -1))
    }

    fn adjust_refs(&self, addr: &Addr, delta: i64) -> Result<(), FsError> {
        let Some(mut c) = self.chunk(addr)? else { return Ok(()) };
        let before = c.refs;
        c.refs = (c.refs as i64 + delta).max(0) as u64;
        let refs = c.refs;
        self.t().chunks.insert(*addr, c);
        if refs == 0 && before > 0 {
            self.set_unreferenced(addr, Some(now_ms()));
        } else if refs > 0 && before == 0 {
            self.set_unreferenced(addr, None);
        }
        Ok(())
    }

    fn forget_chunk(&self, addr: &Addr) -> Result<(), FsError> {
        let mut t = self.t();
        t.chunks.remove(addr);
        t.unreferenced.remove(addr);
        t.uploads.remove(addr);
        t.small_outbox.remove(addr);
        Ok(())
    }

    fn set_upload(&self, addr: &Addr, queued_at: Option<u64>) -> Result<(), FsError> {
        set(&mut self.t().uploads, *addr, queued_at);
        Ok(())
    }

    fn set_small_outbox(&self, addr: &Addr, ct: Option<&[u8]>) -> Result<(), FsError> {
        set(&mut self.t().small_outbox, *addr, ct.map(<[u8]>::to_vec));
        Ok(())
    }

    fn set_sealing(&self, addr: &Addr, since: Option<u64>) -> Result<(), FsError> {
        set(&mut self.t().sealing, *addr, since);
        Ok(())
    }

    fn release_sealed(&self, addr: &Addr) -> Result<(), FsError> {
        self.set_sealing(addr, None)?;
        if self.chunk(addr)?.is_some_and(|c| c.refs == 0) {
            self.set_unreferenced(addr, Some(now_ms()));
        }
        Ok(())
    }

    fn put_blob(&self, shares: bool, row: &BlobRow, keep: bool) -> Result<(), FsError> {
        let had = {
            let mut t = self.t();
            let table = if shares { &mut t.shares } else { &mut t.snapshots };
            let had = table.contains_key(&row.info.id);
            if keep && !had {
                table.insert(row.info.id, row.clone());
            } else if !keep && had {
                table.remove(&row.info.id);
            }
            had
        };
        if keep != had {
            row.pins.iter().try_for_each(|a| self.adjust_refs(a, if keep { 1 } else { -1 }))?;
        }
        Ok(())
    }

    fn put_node(&self, node: &NodeId, n: &NodeRecord) -> Result<(), FsError> {
        self.t().nodes.insert(*node, *n);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::MemoryManifest;
    use crate::domain::fs::FsError;
    use crate::ports::manifest::Manifest;
    use crate::ports::manifest_contract::{manifest_contract, Harness};
    use std::sync::Arc;

    /// Memory manifests for the contract suite.
    struct Memory;

    impl Harness for Memory {
        fn fresh(&self) -> Manifest {
            Arc::new(MemoryManifest::new(1000, 1000))
        }

        fn import(&self, dump: &[u8]) -> Result<Manifest, FsError> {
            Ok(Arc::new(MemoryManifest::import(dump)?))
        }

        fn import_read_only(&self, dump: &[u8]) -> Result<Manifest, FsError> {
            Ok(Arc::new(MemoryManifest::import(dump)?.into_read_only()))
        }
    }

    manifest_contract!(Memory);
}
