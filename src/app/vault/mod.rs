//! The filesystem service (DESIGN §6): POSIX semantics over the manifest, the local staging
//! area and the fabric. It knows nothing of FUSE; `adapters::fuse` is a thin shell around it.
//!
//! - Namespace operations (this file) are manifest transactions.
//! - File data (`data.rs`): writes go to a staging file per inode and never wait for the
//!   network; reads come from staging, the chunk cache, the local outbox or the fabric.
//! - The pipeline (`pipeline.rs`) chunks and seals closed files into the outbox and uploads the
//!   outbox with quorum in the background.

mod cache;
mod data;
mod direct_io;
mod dirs;
mod disk_cache;
mod health;
mod metrics;
mod misses;
mod pipeline;
mod snapshot;
mod spares;
mod status;
mod uploader;
#[cfg(test)]
mod uploader_tests;

use crate::adapters::redb::manifest::Manifest;
pub use crate::domain::fs::FsError;
use crate::domain::fs::{Attr, Ino, Kind, Time, NAME_MAX};
use crate::domain::keys::VaultKeys;
use crate::ports::fabric::ChunkFabric;
use cache::{ChunkCache, Plain};
use data::OpenFile;
use disk_cache::DiskCache;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};

pub use crate::app::report::{AuditReport, DiskCacheUsage, FabricLink, VaultStatus};
pub use cache::ReadData;
pub use health::{nodes_view, run_maintenance, HealthOptions, HealthStats, Scope};
pub use metrics::{CacheUsage, ReadStats};
pub use pipeline::{run_pipeline, PipelineStats};
pub use snapshot::{
    fetch_blob, find_root, materialize_share, materialize_snapshot, RootFound, SnapshotOutcome,
};

/// A file handle.
pub type Fh = u64;

/// Chunk loads in flight at once: each holds up to ~2 MiB (ciphertext and plaintext).
const MAX_LOADS: usize = 16;

/// One chunk load, shared by every reader waiting for that chunk.
type ChunkLoad = tokio::sync::OnceCell<Arc<Plain>>;

/// Who is calling.
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// How a timestamp is set.
#[derive(Clone, Copy, Debug)]
pub enum TimeSet {
    /// The current time.
    Now,
    /// A given time.
    At(Time),
}

impl TimeSet {
    /// The time this sets, with `now` standing for [`TimeSet::Now`].
    pub fn resolve(self, now: Time) -> Time {
        match self {
            TimeSet::Now => now,
            TimeSet::At(t) => t,
        }
    }
}

/// Attribute changes of a setattr call.
#[derive(Clone, Debug, Default)]
pub struct SetAttr {
    /// New mode (permission bits are taken).
    pub mode: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size (truncate or extend).
    pub size: Option<u64>,
    /// New access time.
    pub atime: Option<TimeSet>,
    /// New modification time.
    pub mtime: Option<TimeSet>,
    /// New change time.
    pub ctime: Option<Time>,
    /// The handle it came through, if any.
    pub fh: Option<Fh>,
}

/// One directory entry.
#[derive(Clone, Debug)]
pub struct DirEntry {
    /// Its inode.
    pub ino: Ino,
    /// Its kind.
    pub kind: Kind,
    /// Its name.
    pub name: Vec<u8>,
    /// Offset to continue after this entry.
    pub cookie: u64,
}

/// statfs figures.
#[derive(Clone, Copy, Debug)]
pub struct StatFs {
    /// Total blocks.
    pub blocks: u64,
    /// Free blocks.
    pub bfree: u64,
    /// Free blocks for unprivileged users.
    pub bavail: u64,
    /// Inodes in use.
    pub files: u64,
    /// Free inodes.
    pub ffree: u64,
    /// Block size.
    pub bsize: u32,
    /// Longest name.
    pub namelen: u32,
    /// Fragment size.
    pub frsize: u32,
}

/// Vault settings.
#[derive(Clone, Debug)]
pub struct VaultOptions {
    /// Replicas per chunk (N).
    pub replicas: usize,
    /// Bytes of decrypted chunks kept in memory.
    pub cache_bytes: u64,
    /// Bytes of sealed chunks kept on local disk after upload or fetch (0: none).
    pub disk_cache_bytes: u64,
    /// fsync waits until the file's chunks are quorum-durable.
    pub sync_quorum: bool,
    /// How long a read waits for the fabric before failing with EIO.
    pub fetch_timeout: Duration,
    /// Chunks uploaded at once.
    pub upload_concurrency: usize,
    /// Chunks uploaded at once while files are being created, renamed, removed or changed in
    /// quick succession (at least 1).
    pub foreground_uploads: usize,
    /// How long after the last such call uploads go back to full speed.
    pub foreground_quiet: Duration,
    /// Names and attributes changed within this long share one manifest commit (`None`:
    /// every call commits on its own). A kill -9 of the mount may lose the changes of this
    /// last moment that no fsync covered, as a power cut does on a local filesystem.
    pub group_commit: Option<Duration>,
    /// Audits, healing, leases and garbage collection.
    pub health: HealthOptions,
}

impl Default for VaultOptions {
    fn default() -> Self {
        VaultOptions {
            replicas: 3,
            cache_bytes: 256 << 20,
            disk_cache_bytes: 2 << 30,
            sync_quorum: false,
            fetch_timeout: Duration::from_secs(10),
            upload_concurrency: 32,
            foreground_uploads: 2,
            foreground_quiet: Duration::from_millis(300),
            group_commit: Some(Duration::from_millis(5)),
            health: HealthOptions::default(),
        }
    }
}

/// The filesystem service of one vault.
pub struct Vault<F> {
    m: Manifest,
    keys: Arc<VaultKeys>,
    fabric: watch::Sender<Option<Arc<F>>>,
    opts: VaultOptions,
    staging: PathBuf,
    /// Empty staging files for reuse.
    spares: spares::Spares,
    outbox: PathBuf,
    /// Outbox files are written and read back with direct I/O.
    outbox_io: direct_io::Direct,
    files: Mutex<HashMap<Ino, OpenFile>>,
    handles: Mutex<HashMap<Fh, (Ino, bool)>>,
    /// Snapshots of open directory handles.
    listings: Mutex<dirs::Listings>,
    next_fh: AtomicU64,
    cache: Mutex<ChunkCache>,
    /// Sealed chunks on local disk (none for read-only vaults).
    disk_cache: Option<DiskCache>,
    /// A read already waited out `fetch_timeout` for a first connection: until one comes, reads
    /// that need the fabric fail at once instead of each waiting again.
    offline: std::sync::atomic::AtomicBool,
    /// Chunks the fabric just failed to deliver: asked again soon, they fail at once.
    misses: misses::RecentMisses,
    /// Chunk loads allowed at once (bounds read memory beyond the cache).
    loads: tokio::sync::Semaphore,
    /// Uploads acknowledged by quorum, waiting for their durable manifest commit.
    uploads_done: Mutex<Vec<(crate::domain::ids::Addr, Vec<crate::domain::fs::Replica>)>>,
    /// Chunk loads in progress, shared by concurrent readers.
    fetching: Mutex<HashMap<crate::domain::ids::ChunkId, Arc<ChunkLoad>>>,
    /// Wakes the chunker (files closed) and the uploader (chunks queued / durable).
    chunk_queue: Mutex<Vec<Ino>>,
    /// Files whose chunking failed (a full or failing disk): queued again after `CHUNK_RETRY`.
    chunk_retry: Mutex<Vec<Ino>>,
    chunk_work: Notify,
    upload_work: Notify,
    uploaded: Notify,
    /// Files unlinked while open: deleted at their last release.
    orphans: Mutex<Vec<Ino>>,
    /// Staging copies of freed inodes, removed after the next durable checkpoint: until then a
    /// crash may undo the removal, and the inode must come back with the content it had.
    retiring: Mutex<Vec<(Ino, Option<Arc<std::fs::File>>)>>,
    /// When a file or directory was last created, renamed, removed or had its attributes set
    /// (unix ms): while that keeps happening, uploads step back (see `pipeline`).
    last_namespace_op: AtomicU64,
    /// Chunks being uploaded, healed or collected (one of these at a time per chunk).
    busy: Mutex<std::collections::HashSet<crate::domain::ids::Addr>>,
    /// The maintenance schedule (a copy of `opts.health`).
    health: HealthOptions,
    /// Maintenance counters.
    pub health_stats: HealthStats,
    /// Read-path counters (cache, fabric fetches).
    pub read_stats: ReadStats,
    /// Whose secrets open the chunks: the owner's keys, or a share's per-chunk secrets.
    secrets: Secrets,
    /// One snapshot at a time.
    snapshotting: tokio::sync::Mutex<()>,
}

/// Where a vault's chunk secrets come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Secrets {
    /// Derived from the owner's master key.
    Owner,
    /// Listed per chunk in a share's manifest (a recipient mounting a capability).
    Shared,
}

/// What to create in `make`.
pub(super) struct NewNode<'a> {
    kind: Kind,
    perm: u16,
    rdev: u32,
    target: Option<&'a [u8]>,
    /// A regular file created open for writing: its (empty) content starts out staged.
    staged: bool,
}

impl NewNode<'_> {
    fn plain(kind: Kind, mode: u32, umask: u32) -> Self {
        NewNode { kind, perm: (mode & !umask & 0o7777) as u16, rdev: 0, target: None, staged: false }
    }
}

fn check_name(name: &[u8]) -> Result<(), FsError> {
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0) {
        return Err(FsError::Invalid("bad name"));
    }
    if name.len() > NAME_MAX {
        return Err(FsError::NameTooLong);
    }
    Ok(())
}

impl<F: ChunkFabric + 'static> Vault<F> {
    /// Opens the vault whose state lives in `home` (manifest, staging, outbox, disk cache).
    pub fn load(home: &Path, keys: Arc<VaultKeys>, opts: VaultOptions) -> Result<Self, FsError> {
        let staging = home.join("staging");
        let outbox = home.join("outbox");
        std::fs::create_dir_all(&staging)?;
        std::fs::create_dir_all(&outbox)?;
        // SAFETY: getuid/getgid have no preconditions.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let mut m = Manifest::open(&home.join("manifest.redb"), uid, gid)?;
        if let Some(delay) = opts.group_commit {
            m.group_commits(delay)?;
        }
        m.write_durable(|tx| {
            tx.set_meta("replicas", opts.replicas as u64)?;
            tx.set_meta("disk_cache_bytes", opts.disk_cache_bytes)
        })?;
        let disk_cache = DiskCache::open(&home.join("chunks"), opts.disk_cache_bytes)?;
        let mut vault = Self::build(m, keys, opts, staging, outbox, Secrets::Owner);
        vault.disk_cache = Some(disk_cache);
        vault.recover()?;
        Ok(vault)
    }

    /// Opens a snapshot's or a share's manifest read-only: every change fails with EROFS, and
    /// nothing is staged, uploaded or maintained.
    pub fn load_read_only(
        manifest: &Path,
        keys: Arc<VaultKeys>,
        opts: VaultOptions,
        secrets: Secrets,
    ) -> Result<Self, FsError> {
        let m = Manifest::open_read_only(manifest)?;
        let none = manifest.with_extension("no-local-data");
        Ok(Self::build(m, keys, opts, none.clone(), none, secrets))
    }

    /// Whether this vault refuses changes.
    pub fn is_read_only(&self) -> bool {
        self.m.is_read_only()
    }

    fn build(
        m: Manifest,
        keys: Arc<VaultKeys>,
        opts: VaultOptions,
        staging: PathBuf,
        outbox: PathBuf,
        secrets: Secrets,
    ) -> Self {
        let opts_health = opts.health.clone();
        Vault {
            m,
            keys,
            fabric: watch::channel(None).0,
            cache: Mutex::new(ChunkCache::new(opts.cache_bytes)),
            disk_cache: None,
            offline: std::sync::atomic::AtomicBool::new(false),
            misses: misses::RecentMisses::default(),
            fetching: Mutex::default(),
            loads: tokio::sync::Semaphore::new(MAX_LOADS),
            uploads_done: Mutex::default(),
            opts,
            spares: spares::Spares::new(&staging),
            staging,
            outbox_io: direct_io::Direct::new(&outbox),
            outbox,
            files: Mutex::default(),
            handles: Mutex::default(),
            listings: Mutex::default(),
            next_fh: AtomicU64::new(1),
            chunk_queue: Mutex::default(),
            chunk_retry: Mutex::default(),
            chunk_work: Notify::new(),
            upload_work: Notify::new(),
            uploaded: Notify::new(),
            orphans: Mutex::default(),
            retiring: Mutex::default(),
            last_namespace_op: AtomicU64::new(0),
            busy: Mutex::default(),
            health: opts_health,
            health_stats: HealthStats::default(),
            read_stats: ReadStats::default(),
            secrets,
            snapshotting: tokio::sync::Mutex::new(()),
        }
    }

    /// Hands the vault a connected fabric (it starts without one, e.g. when offline).
    pub fn set_fabric(&self, fabric: Arc<F>) {
        self.fabric.send_replace(Some(fabric));
        self.offline.store(false, Ordering::Relaxed);
        self.upload_work.notify_one();
    }

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Current attributes: a staged file's size and mtime live in memory until the chunker
    /// commits them. The in-memory state is read *before* the manifest: the chunker commits the
    /// manifest before it clears the in-memory state, so a file seen as no longer staged is
    /// already committed in any manifest snapshot taken afterwards.
    pub(super) fn current_attr(&self, ino: Ino) -> Result<Attr, FsError> {
        let staged = Self::lock(&self.files)
            .get(&ino)
            .filter(|f| f.staging.is_some())
            .map(|f| (f.size, f.mtime, f.meta));
        let mut a = self.m.view().inode(ino)?;
        if let Some((size, mtime, meta)) = staged {
            a.size = size;
            a.mtime = mtime;
            a.ctime = a.ctime.max(mtime);
            if let Some(meta) = meta {
                meta.apply(&mut a);
            }
        }
        Ok(a)
    }

    /// Looks up `name` in `parent`.
    pub fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Attr, FsError> {
        // A name that could never exist: ENAMETOOLONG, as POSIX wants, not ENOENT.
        if name.len() > NAME_MAX {
            return Err(FsError::NameTooLong);
        }
        let view = self.m.view();
        let dir = view.inode(parent)?;
        if dir.kind != Kind::Dir {
            return Err(FsError::NotDir);
        }
        let ino = if name == b"." { parent } else { view.lookup(parent, name)?.ok_or(FsError::NotFound)? };
        self.current_attr(ino)
    }

    /// An inode's attributes.
    pub fn getattr(&self, ino: Ino) -> Result<Attr, FsError> {
        self.current_attr(ino)
    }

    /// A symlink's target.
    pub fn readlink(&self, ino: Ino) -> Result<Vec<u8>, FsError> {
        self.m.view().symlink(ino)
    }

    fn make(&self, caller: Caller, parent: Ino, name: &[u8], new: NewNode<'_>) -> Result<Attr, FsError> {
        self.namespace_op();
        let NewNode { kind, perm, rdev, target, staged } = new;
        check_name(name)?;
        self.m.write_grouped(|tx| {
            let mut dir = tx.inode(parent)?;
            if dir.kind != Kind::Dir {
                return Err(FsError::NotDir);
            }
            if tx.lookup(parent, name)?.is_some() {
                return Err(FsError::Exists);
            }
            let ino = tx.next_ino()?;
            // New entries inherit the group of a setgid directory.
            let gid = if dir.perm & 0o2000 != 0 { dir.gid } else { caller.gid };
            let mut perm = perm;
            if kind == Kind::Dir && dir.perm & 0o2000 != 0 {
                perm |= 0o2000;
            }
            let mut a = Attr::new(ino, kind, perm, caller.uid, gid);
            a.rdev = rdev;
            if let Some(t) = target {
                a.size = t.len() as u64;
                tx.put_symlink(ino, t)?;
            }
            tx.put_inode(&a)?;
            if staged {
                tx.set_staged(ino, true)?;
            }
            tx.put_dirent(parent, name, ino)?;
            dir.mtime = a.mtime;
            dir.ctime = a.mtime;
            if kind == Kind::Dir {
                dir.nlink += 1;
            }
            tx.put_inode(&dir)?;
            Ok(a)
        })
    }

    /// Creates a device node, fifo, socket or regular file.
    pub fn mknod(
        &self,
        caller: Caller,
        parent: Ino,
        name: &[u8],
        mode: u32,
        umask: u32,
        rdev: u32,
    ) -> Result<Attr, FsError> {
        let kind = Kind::from_mode(mode).ok_or(FsError::Invalid("file type"))?;
        if kind == Kind::Dir || kind == Kind::Symlink {
            return Err(FsError::Invalid("mknod of a directory or symlink"));
        }
        self.make(caller, parent, name, NewNode { rdev, ..NewNode::plain(kind, mode, umask) })
    }

    /// Creates a directory.
    pub fn mkdir(
        &self,
        caller: Caller,
        parent: Ino,
        name: &[u8],
        mode: u32,
        umask: u32,
    ) -> Result<Attr, FsError> {
        self.make(caller, parent, name, NewNode::plain(Kind::Dir, mode, umask))
    }

    /// Creates a symbolic link.
    pub fn symlink(&self, caller: Caller, parent: Ino, name: &[u8], target: &[u8]) -> Result<Attr, FsError> {
        if target.is_empty() || target.len() > 4096 {
            return Err(FsError::Invalid("symlink target length"));
        }
        self.make(
            caller,
            parent,
            name,
            NewNode { target: Some(target), ..NewNode::plain(Kind::Symlink, 0o777, 0) },
        )
    }

    /// Adds a hard link.
    pub fn link(&self, ino: Ino, newparent: Ino, newname: &[u8]) -> Result<Attr, FsError> {
        check_name(newname)?;
        self.namespace_op();
        let a = self.m.write_grouped(|tx| {
            let mut a = tx.inode(ino)?;
            if a.kind == Kind::Dir {
                return Err(FsError::Permission);
            }
            let mut dir = tx.inode(newparent)?;
            if dir.kind != Kind::Dir {
                return Err(FsError::NotDir);
            }
            if tx.lookup(newparent, newname)?.is_some() {
                return Err(FsError::Exists);
            }
            tx.put_dirent(newparent, newname, ino)?;
            let now = Time::now();
            a.nlink += 1;
            a.ctime = now;
            tx.put_inode(&a)?;
            dir.mtime = now;
            dir.ctime = now;
            tx.put_inode(&dir)?;
            Ok(a)
        })?;
        self.current_attr(a.ino)
    }

    /// Drops one link to `ino` inside a transaction; returns whether the inode must be freed.
    fn drop_link(tx: &crate::adapters::redb::manifest::Tx<'_>, ino: Ino, now: Time) -> Result<bool, FsError> {
        let mut a = tx.inode(ino)?;
        let gone = a.kind == Kind::Dir || a.nlink <= 1;
        a.nlink = a.nlink.saturating_sub(if a.kind == Kind::Dir { 2 } else { 1 });
        a.ctime = now;
        tx.put_inode(&a)?;
        Ok(gone)
    }

    /// Notes a create, rename, removal or attribute change (for `namespace_busy`).
    fn namespace_op(&self) {
        self.last_namespace_op.store(crate::domain::unix_ms(std::time::SystemTime::now()), Ordering::Relaxed);
    }

    /// Whether files were created, renamed, removed or had attributes set within `within`.
    pub(super) fn namespace_busy(&self, within: Duration) -> bool {
        let last = self.last_namespace_op.load(Ordering::Relaxed);
        crate::domain::unix_ms(std::time::SystemTime::now()).saturating_sub(last) < within.as_millis() as u64
    }

    /// Frees inodes whose last link went away (or defers it while they are open).
    fn free_inodes(&self, inos: Vec<Ino>) -> Result<(), FsError> {
        for ino in inos {
            if Self::lock(&self.files).get(&ino).is_some_and(|f| f.handles > 0) {
                Self::lock(&self.orphans).push(ino);
                continue;
            }
            self.m.write(|tx| tx.delete_inode(ino))?;
            self.discard_staging(ino);
        }
        Ok(())
    }

    /// Removes a non-directory entry.
    pub fn unlink(&self, parent: Ino, name: &[u8]) -> Result<(), FsError> {
        self.namespace_op();
        let freed = self.m.write_grouped(|tx| {
            let ino = tx.lookup(parent, name)?.ok_or(FsError::NotFound)?;
            if tx.inode(ino)?.kind == Kind::Dir {
                return Err(FsError::IsDir);
            }
            tx.del_dirent(parent, name)?;
            let now = Time::now();
            let mut dir = tx.inode(parent)?;
            dir.mtime = now;
            dir.ctime = now;
            tx.put_inode(&dir)?;
            Ok(if Self::drop_link(tx, ino, now)? { vec![ino] } else { vec![] })
        })?;
        self.free_inodes(freed)
    }

    /// Removes an empty directory.
    pub fn rmdir(&self, parent: Ino, name: &[u8]) -> Result<(), FsError> {
        self.namespace_op();
        if name == b"." {
            return Err(FsError::Invalid("rmdir ."));
        }
        let freed = self.m.write_grouped(|tx| {
            let ino = tx.lookup(parent, name)?.ok_or(FsError::NotFound)?;
            if tx.inode(ino)?.kind != Kind::Dir {
                return Err(FsError::NotDir);
            }
            if tx.has_children(ino)? {
                return Err(FsError::NotEmpty);
            }
            tx.del_dirent(parent, name)?;
            let now = Time::now();
            let mut dir = tx.inode(parent)?;
            dir.nlink = dir.nlink.saturating_sub(1);
            dir.mtime = now;
            dir.ctime = now;
            tx.put_inode(&dir)?;
            Ok(vec![ino])
        })?;
        self.free_inodes(freed)
    }

    /// Renames atomically, replacing an existing target (flags: RENAME_NOREPLACE,
    /// RENAME_EXCHANGE).
    pub fn rename(
        &self,
        parent: Ino,
        name: &[u8],
        newparent: Ino,
        newname: &[u8],
        flags: u32,
    ) -> Result<(), FsError> {
        check_name(newname)?;
        self.namespace_op();
        let noreplace = flags & libc::RENAME_NOREPLACE != 0;
        let exchange = flags & libc::RENAME_EXCHANGE != 0;
        let freed = self.m.write_grouped(|tx| {
            let src = tx.lookup(parent, name)?.ok_or(FsError::NotFound)?;
            let src_attr = tx.inode(src)?;
            let dst = tx.lookup(newparent, newname)?;
            if tx.inode(newparent)?.kind != Kind::Dir {
                return Err(FsError::NotDir);
            }
            if src_attr.kind == Kind::Dir && self.is_ancestor(tx, src, newparent)? {
                return Err(FsError::Invalid("cannot move a directory into itself"));
            }
            let now = Time::now();
            let mut freed = Vec::new();
            match dst {
                Some(d) if d == src => return Ok(freed),
                Some(_) if noreplace => return Err(FsError::Exists),
                Some(d) if exchange => {
                    tx.put_dirent(parent, name, d)?;
                    tx.put_dirent(newparent, newname, src)?;
                    self.fix_dir_links(tx, parent, newparent, &src_attr, Some(&tx.inode(d)?), now)?;
                    return Ok(freed);
                }
                Some(d) => {
                    let dattr = tx.inode(d)?;
                    match (src_attr.kind == Kind::Dir, dattr.kind == Kind::Dir) {
                        (true, false) => return Err(FsError::NotDir),
                        (false, true) => return Err(FsError::IsDir),
                        (true, true) if tx.has_children(d)? => return Err(FsError::NotEmpty),
                        _ => {}
                    }
                    if dattr.kind == Kind::Dir {
                        let mut np = tx.inode(newparent)?;
                        np.nlink = np.nlink.saturating_sub(1);
                        tx.put_inode(&np)?;
                    }
                    if Self::drop_link(tx, d, now)? {
                        freed.push(d);
                    }
                }
                None if exchange => return Err(FsError::NotFound),
                None => {}
            }
            tx.del_dirent(parent, name)?;
            tx.put_dirent(newparent, newname, src)?;
            self.fix_dir_links(tx, parent, newparent, &src_attr, None, now)?;
            Ok(freed)
        })?;
        self.free_inodes(freed)
    }

    /// Whether `node` is `dir` or lies somewhere below it (a directory may not move into itself).
    fn is_ancestor(
        &self,
        tx: &crate::adapters::redb::manifest::Tx<'_>,
        dir: Ino,
        node: Ino,
    ) -> Result<bool, FsError> {
        let mut stack = vec![dir];
        while let Some(d) = stack.pop() {
            if d == node {
                return Ok(true);
            }
            for (_, child) in tx.children(d)? {
                if tx.inode(child)?.kind == Kind::Dir {
                    stack.push(child);
                }
            }
        }
        Ok(false)
    }

    fn fix_dir_links(
        &self,
        tx: &crate::adapters::redb::manifest::Tx<'_>,
        parent: Ino,
        newparent: Ino,
        moved: &Attr,
        swapped: Option<&Attr>,
        now: Time,
    ) -> Result<(), FsError> {
        let mut p = tx.inode(parent)?;
        let delta_src =
            i64::from(moved.kind == Kind::Dir) - i64::from(swapped.is_some_and(|s| s.kind == Kind::Dir));
        if parent != newparent {
            p.nlink = (p.nlink as i64 - delta_src).max(2) as u32;
        }
        p.mtime = now;
        p.ctime = now;
        tx.put_inode(&p)?;
        if parent != newparent {
            let mut np = tx.inode(newparent)?;
            np.nlink = (np.nlink as i64 + delta_src).max(2) as u32;
            np.mtime = now;
            np.ctime = now;
            tx.put_inode(&np)?;
        }
        let mut m = tx.inode(moved.ino)?;
        m.ctime = now;
        tx.put_inode(&m)
    }

    /// Filesystem figures for df: 1 PiB free of 1 PiB, and 2^32 inodes free beside those in use
    /// (the fabric has no central capacity figure). Nothing is shown as used, so a NAS's
    /// fill-level alarm never fires on made-up numbers; the inode count is the real one and
    /// stays consistent (`files` ≥ `ffree`). Reads a stored count only, never the network.
    pub fn statfs(&self) -> StatFs {
        const BLOCK: u32 = 4096;
        const FREE_BLOCKS: u64 = (1 << 50) / BLOCK as u64;
        const FREE_INODES: u64 = 1 << 32;
        let used_inodes = self.m.read().and_then(|rx| rx.inode_count()).unwrap_or(0);
        StatFs {
            blocks: FREE_BLOCKS,
            bfree: FREE_BLOCKS,
            bavail: FREE_BLOCKS,
            files: used_inodes + FREE_INODES,
            ffree: FREE_INODES,
            bsize: BLOCK,
            namelen: NAME_MAX as u32,
            frsize: BLOCK,
        }
    }

    /// Sets an extended attribute (flags: XATTR_CREATE, XATTR_REPLACE).
    pub fn setxattr(&self, ino: Ino, name: &[u8], value: &[u8], flags: i32) -> Result<(), FsError> {
        if name.is_empty() || name.len() > 255 {
            return Err(FsError::Range);
        }
        if value.len() > 64 * 1024 {
            return Err(FsError::Range);
        }
        self.m.write_grouped(|tx| {
            let exists = tx.xattr(ino, name)?.is_some();
            if flags & libc::XATTR_CREATE != 0 && exists {
                return Err(FsError::Exists);
            }
            if flags & libc::XATTR_REPLACE != 0 && !exists {
                return Err(FsError::NoXattr);
            }
            tx.put_xattr(ino, name, Some(value))?;
            let mut a = tx.inode(ino)?;
            a.ctime = Time::now();
            tx.put_inode(&a)
        })
    }

    /// An extended attribute's value.
    pub fn getxattr(&self, ino: Ino, name: &[u8]) -> Result<Vec<u8>, FsError> {
        let view = self.m.view();
        view.inode(ino)?;
        view.xattr(ino, name)?.ok_or(FsError::NoXattr)
    }

    /// Extended attribute names, each NUL-terminated.
    pub fn listxattr(&self, ino: Ino) -> Result<Vec<u8>, FsError> {
        let view = self.m.view();
        view.inode(ino)?;
        let mut out = Vec::new();
        for n in view.xattr_names(ino)? {
            out.extend_from_slice(&n);
            out.push(0);
        }
        Ok(out)
    }

    /// Removes an extended attribute.
    pub fn removexattr(&self, ino: Ino, name: &[u8]) -> Result<(), FsError> {
        self.m.write_grouped(|tx| {
            if tx.xattr(ino, name)?.is_none() {
                return Err(FsError::NoXattr);
            }
            tx.put_xattr(ino, name, None)?;
            let mut a = tx.inode(ino)?;
            a.ctime = Time::now();
            tx.put_inode(&a)
        })
    }

    /// Makes namespace changes durable.
    pub fn fsyncdir(&self) -> Result<(), FsError> {
        self.m.sync()
    }

    /// Makes every manifest change so far durable (called periodically and at unmount).
    pub fn checkpoint(&self) -> Result<(), FsError> {
        if self.m.is_read_only() {
            return Ok(());
        }
        let retiring = std::mem::take(&mut *Self::lock(&self.retiring));
        if let Err(e) = self.m.checkpoint() {
            Self::lock(&self.retiring).extend(retiring);
            return Err(e);
        }
        for (ino, open) in retiring {
            self.spares.retire(&self.staging_path(ino), open);
        }
        Ok(())
    }

    fn new_fh(&self, ino: Ino, writer: bool) -> Fh {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        Self::lock(&self.handles).insert(fh, (ino, writer));
        fh
    }
}
