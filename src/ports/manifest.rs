//! The manifest port (docs/DESIGN.md §6): the vault's metadata — inodes, directory entries, symlinks,
//! extents, chunks with replicas, xattrs, the staged set, the upload queue, nodes, snapshots —
//! as read views, write transactions and a store that runs them atomically.
//!
//! The traits are object safe; the generic conveniences app code calls (`write`, `view`, …) live
//! on `dyn ManifestStore`, so a vault holds a [`Manifest`] (`Arc<dyn ManifestStore>`) and
//! writes `m.write(|tx| tx.put_inode(&a))` or `m.view().inode(ino)`. Every call's error is the
//! filesystem's own [`FsError`].
//!
//! Durability: `write` commits without fsync, `write_durable` and `checkpoint` make everything
//! before them durable, `write_grouped` may share one commit with the calls around it (a store
//! without group commits commits it at once). A write whose closure fails leaves nothing behind.

use crate::domain::fs::{Attr, ChunkRecord, Extent, FsError, Ino};
use crate::domain::health::NodeRecord;
use crate::domain::ids::{Addr, NodeId};
use crate::domain::partial::Partial;
use crate::domain::snapshot::BlobRow;
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A manifest as the vault holds it.
pub type Manifest = Arc<dyn ManifestStore>;
/// A write transaction, as the closures of [`ManifestStore`] writes see it.
pub type Tx<'a> = dyn ManifestTx + 'a;
/// A consistent read snapshot (see [`ManifestStore::read`]).
pub type Rx = Box<dyn ManifestSnapshot + Send + Sync>;

/// Counts and chunk records for status.
pub struct Summary {
    /// Inodes.
    pub inodes: u64,
    /// Regular files (kept as a counter: no scan).
    pub files: u64,
    /// Their logical bytes (the sum of their sizes).
    pub file_bytes: u64,
    /// Queued uploads.
    pub uploads: u64,
    /// Every chunk record.
    pub chunks: Vec<(Addr, ChunkRecord)>,
}

/// A shared chunk's content key and proof-secret seed.
pub type ShareSecret = ([u8; 32], [u8; 32]);

/// The manifest as one dump (what a snapshot stores), with its regular files and their bytes.
pub type Dump = (Vec<u8>, u64, u64);

/// Reads every view of the manifest offers: a snapshot, a write transaction, a [`View`].
pub trait ManifestRead {
    /// An inode's attributes (`NotFound` if there is none).
    fn inode(&self, ino: Ino) -> Result<Attr, FsError>;
    /// The child named `name` in `parent`.
    fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Option<Ino>, FsError>;
    /// Entries of `dir` in name (byte) order: (name, ino).
    fn children(&self, dir: Ino) -> Result<Vec<(Vec<u8>, Ino)>, FsError>;
    /// Whether `dir` has any entry.
    fn has_children(&self, dir: Ino) -> Result<bool, FsError>;
    /// A symlink's target (`Invalid` if `ino` is no symlink).
    fn symlink(&self, ino: Ino) -> Result<Vec<u8>, FsError>;
    /// A file's extents overlapping `[start, end)`, in offset order.
    fn extents(&self, ino: Ino, start: u64, end: u64) -> Result<Vec<Extent>, FsError>;
    /// A chunk's record.
    fn chunk(&self, addr: &Addr) -> Result<Option<ChunkRecord>, FsError>;
    /// An extended attribute.
    fn xattr(&self, ino: Ino, name: &[u8]) -> Result<Option<Vec<u8>>, FsError>;
    /// All extended attribute names of an inode, in byte order.
    fn xattr_names(&self, ino: Ino) -> Result<Vec<Vec<u8>>, FsError>;
    /// The ciphertext of a small queued chunk kept in the manifest.
    fn small_outbox(&self, addr: &Addr) -> Result<Option<Vec<u8>>, FsError>;
    /// A counter or setting.
    fn meta(&self, key: &str) -> Result<Option<u64>, FsError>;
    /// What the owner knows about a node.
    fn node(&self, node: &NodeId) -> Result<Option<NodeRecord>, FsError>;
    /// Every node the owner has a record of, in id order.
    fn nodes(&self) -> Result<Vec<(NodeId, NodeRecord)>, FsError>;
    /// Chunks unreferenced since at or before `before_ms` (up to `limit`), in addr order.
    fn unreferenced(&self, before_ms: u64, limit: usize) -> Result<Vec<Addr>, FsError>;
    /// Snapshots (or, with `shares`, shares) the owner keeps in the fabric, oldest first.
    fn blobs(&self, shares: bool) -> Result<Vec<BlobRow>, FsError>;
    /// A shared chunk's content key and proof-secret seed (in a share's manifest).
    fn share_secret(&self, addr: &Addr) -> Result<Option<ShareSecret>, FsError>;
    /// Up to `limit` queued uploads, in addr order.
    fn uploads(&self, limit: usize) -> Result<Vec<Addr>, FsError>;
    /// Whether an inode's content is staged locally.
    fn is_staged(&self, ino: Ino) -> Result<bool, FsError>;

    /// Nodes written off after repeated audit failures.
    fn written_off(&self) -> Result<HashSet<NodeId>, FsError> {
        Ok(self.nodes()?.into_iter().filter(|(_, n)| n.written_off).map(|(id, _)| id).collect())
    }
}

/// Reads over the whole manifest, offered by a consistent snapshot ([`ManifestStore::read`]).
pub trait ManifestSnapshot: ManifestRead {
    /// Inodes other than directories with no links left: files unlinked while open whose
    /// process died before the last close.
    fn unlinked_inodes(&self) -> Result<Vec<Ino>, FsError>;
    /// Whether a chunk is in the upload queue.
    fn upload_queued(&self, addr: &Addr) -> Result<bool, FsError>;
    /// Chunks queued while their files were being sealed and not yet released.
    fn sealing(&self) -> Result<Vec<Addr>, FsError>;
    /// Inodes staged locally (to re-queue after a restart), in ino order.
    fn staged(&self) -> Result<Vec<Ino>, FsError>;
    /// The local part of a file staged in part (`None`: staged whole, or not staged).
    fn partial(&self, ino: Ino) -> Result<Option<Partial>, FsError>;
    /// How many inodes the vault has.
    fn inode_count(&self) -> Result<u64, FsError>;
    /// Number of inodes, regular files and their bytes, and of queued uploads, and every chunk
    /// record (for status).
    fn summary(&self) -> Result<Summary, FsError>;
    /// A hash of what a restore shows as files: inodes, names, symlink targets, extents and
    /// xattrs (not replicas, leases, audit history or node statistics).
    fn content_hash(&self) -> Result<[u8; 32], FsError>;
    /// The whole manifest but local-only state (staged set, upload queue, outbox) as a dump in
    /// the format of `crate::domain::dump`.
    fn dump(&self) -> Result<Dump, FsError>;
}

/// A write transaction: every change of one filesystem call.
pub trait ManifestTx: ManifestRead {
    /// Writes an inode.
    fn put_inode(&self, a: &Attr) -> Result<(), FsError>;
    /// Deletes an inode and everything hanging off it (extents, xattrs, symlink, staged mark).
    fn delete_inode(&self, ino: Ino) -> Result<(), FsError>;
    /// Allocates a fresh inode number.
    fn next_ino(&self) -> Result<Ino, FsError>;
    /// Sets a counter or setting.
    fn set_meta(&self, key: &str, value: u64) -> Result<(), FsError>;
    /// Adds (or replaces) a directory entry.
    fn put_dirent(&self, parent: Ino, name: &[u8], ino: Ino) -> Result<(), FsError>;
    /// Removes a directory entry.
    fn del_dirent(&self, parent: Ino, name: &[u8]) -> Result<(), FsError>;
    /// Sets a symlink's target.
    fn put_symlink(&self, ino: Ino, target: &[u8]) -> Result<(), FsError>;
    /// Sets or removes an xattr.
    fn put_xattr(&self, ino: Ino, name: &[u8], value: Option<&[u8]>) -> Result<(), FsError>;
    /// Marks an inode's content as staged (or not).
    fn set_staged(&self, ino: Ino, staged: bool) -> Result<(), FsError>;
    /// Records (or drops) the local part of a file staged in part; unstaging drops it too.
    fn set_partial(&self, ino: Ino, p: Option<&Partial>) -> Result<(), FsError>;
    /// Writes a chunk record.
    fn put_chunk(&self, addr: &Addr, c: &ChunkRecord) -> Result<(), FsError>;
    /// Replaces a file's extents, adjusting chunk reference counts.
    fn set_extents(&self, ino: Ino, new: &[Extent]) -> Result<(), FsError>;
    /// Adjusts a chunk's reference count; a chunk that drops to zero references starts its
    /// garbage-collection grace period, one referenced again leaves it.
    fn adjust_refs(&self, addr: &Addr, delta: i64) -> Result<(), FsError>;
    /// Forgets a chunk: its record, grace-period entry, queued upload and small outbox copy.
    fn forget_chunk(&self, addr: &Addr) -> Result<(), FsError>;
    /// Queues (with the time queued) or dequeues an upload.
    fn set_upload(&self, addr: &Addr, queued_at: Option<u64>) -> Result<(), FsError>;
    /// Keeps (or drops) the ciphertext of a small queued chunk.
    fn set_small_outbox(&self, addr: &Addr, ct: Option<&[u8]>) -> Result<(), FsError>;
    /// Marks a chunk as queued while its file is still being sealed (no file references it yet).
    fn set_sealing(&self, addr: &Addr, since: Option<u64>) -> Result<(), FsError>;
    /// Releases a chunk queued while sealing: one no file came to reference starts its
    /// garbage-collection grace period.
    fn release_sealed(&self, addr: &Addr) -> Result<(), FsError>;
    /// Records a snapshot (or a share) and pins its addrs, or (`keep` false) drops one and
    /// unpins them.
    fn put_blob(&self, shares: bool, row: &BlobRow, keep: bool) -> Result<(), FsError>;
    /// Writes what the owner knows about a node.
    fn put_node(&self, node: &NodeId, n: &NodeRecord) -> Result<(), FsError>;
}

/// How a write is committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Commit {
    /// May share a commit with the calls around it, made soon after (group commits).
    Grouped,
    /// Committed (with any open group) before the call returns, without fsync.
    Now,
    /// Committed and made durable, with everything before it.
    Durable,
}

/// A read closure handed to [`ManifestStore::view_with`].
pub type ReadFn<'f> = dyn FnMut(&dyn ManifestRead) -> Result<(), FsError> + 'f;
/// A write closure handed to [`ManifestStore::write_with`].
pub type WriteFn<'f> = dyn FnMut(&dyn ManifestTx) -> Result<(), FsError> + 'f;

/// A manifest store. App code calls the generic forms on `dyn ManifestStore` below.
pub trait ManifestStore: Send + Sync {
    /// A consistent read snapshot that includes every call made so far.
    fn read(&self) -> Result<Rx, FsError>;
    /// Runs `f` once on reads that see every call made so far, without committing anything.
    fn view_with(&self, f: &mut ReadFn<'_>) -> Result<(), FsError>;
    /// Runs `f` once in one atomic transaction; if it fails, nothing it changed is kept.
    /// A read-only store refuses with `ReadOnly`.
    fn write_with(&self, commit: Commit, f: &mut WriteFn<'_>) -> Result<(), FsError>;
    /// Turns group commits on: grouped writes share one commit made at most `delay` later.
    fn start_group_commits(&self, delay: Duration) -> Result<(), FsError>;
    /// Commits an open group (without fsync).
    fn flush(&self) -> Result<(), FsError>;
    /// Makes every earlier commit durable.
    fn checkpoint(&self) -> Result<(), FsError>;
    /// `checkpoint` for fsync(2): also fails (once) when a group commit failed since the last
    /// `sync`, because the calls it held were acknowledged and then lost.
    fn sync(&self) -> Result<(), FsError>;
    /// Whether changes are refused.
    fn is_read_only(&self) -> bool;
}

/// Opens manifests by file (the vault's home names them) and builds them from dumps.
pub trait ManifestFiles: Send + Sync {
    /// Opens (creating if needed) the manifest at `path`, with a root directory owned by
    /// `uid`/`gid`.
    fn open(&self, path: &Path, uid: u32, gid: u32) -> Result<Manifest, FsError>;
    /// Opens an existing manifest that no call may change (a snapshot or a share).
    fn open_read_only(&self, path: &Path) -> Result<Manifest, FsError>;
    /// Creates the manifest at `path` (which must not exist) from a dump.
    fn import(&self, path: &Path, dump: &[u8]) -> Result<Manifest, FsError>;
}

fn not_run() -> FsError {
    FsError::Io("manifest: the call's closure did not run".into())
}

impl<'s> dyn ManifestStore + 's {
    /// Runs `f` with the given commit, returning its value.
    pub fn write_as<T>(
        &self,
        commit: Commit,
        f: impl FnOnce(&Tx) -> Result<T, FsError>,
    ) -> Result<T, FsError> {
        let mut f = Some(f);
        let mut out = None;
        self.write_with(commit, &mut |tx| {
            let f = f.take().ok_or_else(not_run)?;
            out = Some(f(tx)?);
            Ok(())
        })?;
        out.ok_or_else(not_run)
    }

    /// Runs `f` in one atomic transaction, committed without fsync (with any open group).
    pub fn write<T>(&self, f: impl FnOnce(&Tx) -> Result<T, FsError>) -> Result<T, FsError> {
        self.write_as(Commit::Now, f)
    }

    /// Runs `f` atomically in the open group (or a new one), committed soon after.
    pub fn write_grouped<T>(&self, f: impl FnOnce(&Tx) -> Result<T, FsError>) -> Result<T, FsError> {
        self.write_as(Commit::Grouped, f)
    }

    /// Runs `f` in one atomic transaction and makes it, and everything before it, durable.
    pub fn write_durable<T>(&self, f: impl FnOnce(&Tx) -> Result<T, FsError>) -> Result<T, FsError> {
        self.write_as(Commit::Durable, f)
    }

    /// Reads that see every call made so far, including an open group, without committing it.
    /// Each call reads the state of that moment; use `read` for several reads that must agree.
    pub fn view(&self) -> View<'_> {
        View(self)
    }

    /// Turns group commits on (see [`ManifestStore::start_group_commits`]).
    pub fn group_commits(&self, delay: Duration) -> Result<(), FsError> {
        self.start_group_commits(delay)
    }
}

/// Reads through the open group, if any (see `view` on `dyn ManifestStore`).
pub struct View<'a>(&'a dyn ManifestStore);

impl View<'_> {
    /// Runs `f` on the reads of this moment.
    pub fn with<T>(&self, f: impl FnOnce(&dyn ManifestRead) -> Result<T, FsError>) -> Result<T, FsError> {
        let mut f = Some(f);
        let mut out = None;
        self.0.view_with(&mut |r| {
            let f = f.take().ok_or_else(not_run)?;
            out = Some(f(r)?);
            Ok(())
        })?;
        out.ok_or_else(not_run)
    }
}

/// The [`View`] form of the reader methods: each runs on the reads of that moment.
macro_rules! view_readers {
    ($($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        impl View<'_> {
            $(
                $(#[$doc])*
                pub fn $name(&self, $($arg: $ty),*) -> Result<$ret, FsError> {
                    self.with(move |r| r.$name($($arg),*))
                }
            )*
        }
    };
}

view_readers! {
    /// An inode's attributes.
    fn inode(ino: Ino) -> Attr;
    /// The child named `name` in `parent`.
    fn lookup(parent: Ino, name: &[u8]) -> Option<Ino>;
    /// Entries of `dir` in name order.
    fn children(dir: Ino) -> Vec<(Vec<u8>, Ino)>;
    /// Whether `dir` has any entry.
    fn has_children(dir: Ino) -> bool;
    /// A symlink's target.
    fn symlink(ino: Ino) -> Vec<u8>;
    /// A file's extents overlapping `[start, end)`.
    fn extents(ino: Ino, start: u64, end: u64) -> Vec<Extent>;
    /// A chunk's record.
    fn chunk(addr: &Addr) -> Option<ChunkRecord>;
    /// An xattr's value.
    fn xattr(ino: Ino, name: &[u8]) -> Option<Vec<u8>>;
    /// An inode's xattr names.
    fn xattr_names(ino: Ino) -> Vec<Vec<u8>>;
    /// The ciphertext of a small queued chunk.
    fn small_outbox(addr: &Addr) -> Option<Vec<u8>>;
    /// A counter or setting.
    fn meta(key: &str) -> Option<u64>;
    /// What the owner knows about a node.
    fn node(node: &NodeId) -> Option<NodeRecord>;
    /// Every node the owner has a record of.
    fn nodes() -> Vec<(NodeId, NodeRecord)>;
    /// Up to `limit` queued uploads.
    fn uploads(limit: usize) -> Vec<Addr>;
    /// Whether an inode's content is staged locally.
    fn is_staged(ino: Ino) -> bool;
}
