//! The fuser adapter: a thin translation between kernel FUSE requests and the vault service.
//!
//! Each callback converts its arguments, calls [`Vault`], and replies or maps the error (the one
//! mapping lives in [`errno`]). It holds no filesystem logic: no permission checks (the kernel
//! checks them from our attributes, `default_permissions`), no paths, no caching.
//!
//! Threading: synchronous vault calls touch only local state (redb, local disk) and run inline on
//! the FUSE thread; so do a write to a file that already has a staging copy and a setattr that
//! changes no size (the commonest calls of rsync and cp). Calls that may reach the network
//! (`read`, other `write`s, truncating `setattr`s, `fsync`) run as tasks on the tokio runtime
//! with the reply moved in, bounded by a semaphore, so a FUSE thread never waits on the network.

pub mod errno;

use crate::app::vault::{Caller, FsError, SetAttr, TimeSet, Vault};
use crate::domain::fs::{Attr, Kind, Time};
use crate::ports::fabric::ChunkFabric;
use errno::errno;
use fuser::{
    AccessFlags, BackgroundSession, BsdFileFlags, Config, Errno, FileAttr, FileHandle, FileType, Filesystem,
    FopenFlags, Generation, INodeNo, InitFlags, KernelConfig, LockOwner, MountOption, OpenFlags, RenameFlags,
    ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs,
    ReplyWrite, ReplyXattr, Request, SessionACL, TimeOrNow, WriteFlags,
};
use std::ffi::OsStr;
use std::future::Future;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::runtime::Handle;
use tokio::sync::Semaphore;
use tracing::span::EnteredSpan;
use tracing::Instrument;

/// How long the kernel may cache entries and attributes.
const TTL: Duration = Duration::from_secs(1);
/// How long the kernel may remember that a name does not exist. Only this mount changes the
/// vault's names, and the kernel forgets a negative entry itself when it makes the name, so this
/// can be long: rsync looks every name up before it writes any file, then renames each temporary
/// file onto its name seconds later.
const NEGATIVE_TTL: Duration = Duration::from_secs(30);
/// The generation sent with every entry (fixed; the vault is not exported over NFS).
const GENERATION: Generation = Generation(0);
/// Most network-bound requests (reads, writes, truncations, fsyncs) running at once.
pub const MAX_INFLIGHT: usize = 64;

/// How to mount the vault.
#[derive(Clone, Debug)]
pub struct MountSettings {
    /// Let other users in (`allow_other`; needs `user_allow_other` in /etc/fuse.conf unless root).
    pub allow_other: bool,
    /// Mount read-only.
    pub read_only: bool,
    /// FUSE worker threads (at least 1).
    pub threads: usize,
    /// The source name shown in the mount table.
    pub fsname: String,
}

/// Mounts `vault` at `mountpoint`; the vault stays mounted until the returned session is dropped.
pub fn mount<F: ChunkFabric + 'static>(
    vault: Arc<Vault<F>>,
    rt: Handle,
    mountpoint: &Path,
    opts: &MountSettings,
) -> io::Result<BackgroundSession> {
    let mut options = vec![
        MountOption::FSName(opts.fsname.clone()),
        MountOption::Subtype("quloud".into()),
        MountOption::DefaultPermissions,
        if opts.read_only { MountOption::RO } else { MountOption::RW },
    ];
    // fuser only accepts auto_unmount together with allow_other (fusermount3 needs it).
    if opts.allow_other {
        options.push(MountOption::AutoUnmount);
    }
    let mut config = Config::default();
    config.mount_options = options;
    config.acl = if opts.allow_other { SessionACL::All } else { SessionACL::Owner };
    config.n_threads = Some(opts.threads.max(1));
    fuser::spawn_mount(FuseAdapter::new(vault, rt, MAX_INFLIGHT), mountpoint, &config)
}

/// Read-ahead the kernel is asked to do for the mount, in KiB: 1 MiB, the most one FUSE read
/// request carries (256 pages), instead of the kernel's default 128 KiB.
pub const READ_AHEAD_KIB: u32 = 1024;

/// Sets the kernel's read-ahead for the FUSE mount at `mountpoint` to [`READ_AHEAD_KIB`]: fewer
/// and larger read requests for sequential reads (a cold 1 GiB read: 3.35 s with 128 KiB, 3.13 s
/// with 1 MiB, and 12 % less CPU in the mount). Needs write access to the mount's
/// `/sys/class/bdi/<major>:<minor>/read_ahead_kb`, which only root has; the error says why not.
pub fn raise_read_ahead(mountpoint: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(mountpoint)?.dev();
    let knob = format!("/sys/class/bdi/{}:{}/read_ahead_kb", libc::major(dev), libc::minor(dev));
    std::fs::write(&knob, READ_AHEAD_KIB.to_string())
        .map_err(|e| io::Error::new(e.kind(), format!("{knob}: {e}")))
}

/// The `fuser::Filesystem` over a [`Vault`].
pub struct FuseAdapter<F: ChunkFabric + 'static> {
    vault: Arc<Vault<F>>,
    rt: Handle,
    inflight: Arc<Semaphore>,
}

impl<F: ChunkFabric + 'static> FuseAdapter<F> {
    /// An adapter running network-bound calls on `rt`, at most `max_inflight` at once.
    pub fn new(vault: Arc<Vault<F>>, rt: Handle, max_inflight: usize) -> Self {
        FuseAdapter { vault, rt, inflight: Arc::new(Semaphore::new(max_inflight.max(1))) }
    }

    /// Runs `task` (which owns its reply) on the runtime once a permit is free, in the current
    /// request's span. If the runtime is gone the task is dropped and fuser replies `EIO`.
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let inflight = self.inflight.clone();
        let work = async move {
            let _permit = inflight.acquire_owned().await; // Err only if closed, and it never is
            task.await
        };
        self.rt.spawn(work.instrument(tracing::Span::current()));
    }
}

/// The span of one FUSE request.
fn span(op: &'static str, ino: INodeNo) -> EnteredSpan {
    tracing::debug_span!("fuse", op, ino = ino.0).entered()
}

fn caller(req: &Request) -> Caller {
    Caller { uid: req.uid(), gid: req.gid() }
}

fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
        Kind::Fifo => FileType::NamedPipe,
        Kind::Socket => FileType::Socket,
        Kind::CharDev => FileType::CharDevice,
        Kind::BlockDev => FileType::BlockDevice,
    }
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.atime.into(),
        mtime: a.mtime.into(),
        ctime: a.ctime.into(),
        crtime: a.ctime.into(),
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: 4096,
        flags: 0,
    }
}

fn time_set(t: TimeOrNow) -> TimeSet {
    match t {
        TimeOrNow::Now => TimeSet::Now,
        TimeOrNow::SpecificTime(t) => TimeSet::At(t.into()),
    }
}

/// The attributes of a negative entry: node id 0 means "no such name" to the kernel.
fn negative_entry() -> FileAttr {
    FileAttr {
        ino: INodeNo(0),
        size: 0,
        blocks: 0,
        atime: SystemTime::UNIX_EPOCH,
        mtime: SystemTime::UNIX_EPOCH,
        ctime: SystemTime::UNIX_EPOCH,
        crtime: SystemTime::UNIX_EPOCH,
        kind: FileType::RegularFile,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 0,
        flags: 0,
    }
}

fn reply_entry(reply: ReplyEntry, result: Result<Attr, FsError>) {
    match result {
        Ok(a) => reply.entry(&TTL, &file_attr(&a), GENERATION),
        Err(e) => reply.error(errno(&e)),
    }
}

fn reply_attr(reply: ReplyAttr, result: Result<Attr, FsError>) {
    match result {
        Ok(a) => reply.attr(&TTL, &file_attr(&a)),
        Err(e) => reply.error(errno(&e)),
    }
}

fn reply_data(reply: ReplyData, result: Result<impl std::ops::Deref<Target = [u8]>, FsError>) {
    match result {
        Ok(d) => reply.data(&d),
        Err(e) => reply.error(errno(&e)),
    }
}

fn reply_empty(reply: ReplyEmpty, result: Result<(), FsError>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(&e)),
    }
}

/// The xattr size protocol: `size == 0` asks for the length, a too-small buffer is `ERANGE`.
fn reply_xattr(reply: ReplyXattr, size: u32, result: Result<Vec<u8>, FsError>) {
    match result {
        Ok(v) if size == 0 => match u32::try_from(v.len()) {
            Ok(n) => reply.size(n),
            Err(_) => reply.error(Errno::E2BIG),
        },
        Ok(v) if v.len() > size as usize => reply.error(Errno::ERANGE),
        Ok(v) => reply.data(&v),
        Err(e) => reply.error(errno(&e)),
    }
}

/// What the mount asks of the kernel: POSIX ACLs checked by the kernel (it reads them through
/// getxattr), and the umask left to the vault, which applies it unless the directory has a
/// default ACL. A kernel without them keeps ACLs as stored xattrs, not enforced.
const ACL_CAPABILITIES: InitFlags = InitFlags::FUSE_POSIX_ACL.union(InitFlags::FUSE_DONT_MASK);

impl<F: ChunkFabric + 'static> Filesystem for FuseAdapter<F> {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        if let Err(missing) = config.add_capabilities(ACL_CAPABILITIES) {
            tracing::warn!(
                ?missing,
                "the kernel's FUSE lacks POSIX ACL support: ACLs are stored, not enforced"
            );
            let _ = config.add_capabilities(ACL_CAPABILITIES & !missing);
        }
        Ok(())
    }

    /// A missing name is answered as a negative entry (node id 0) valid for [`NEGATIVE_TTL`], so
    /// the kernel does not ask again (rsync looks a name up, then renames its temporary file onto
    /// it). Only this mount changes the vault, and the kernel drops the negative entry itself
    /// when it creates the name.
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let _s = span("lookup", parent);
        match self.vault.lookup(parent.0, name.as_bytes()) {
            Err(FsError::NotFound) => reply.entry(&NEGATIVE_TTL, &negative_entry(), GENERATION),
            result => reply_entry(reply, result),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let _s = span("getattr", ino);
        reply_attr(reply, self.vault.getattr(ino.0));
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let _s = span("setattr", ino);
        let changes = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: atime.map(time_set),
            mtime: mtime.map(time_set),
            ctime: ctime.map(Time::from),
            fh: fh.map(|f| f.0),
        };
        if changes.size.is_none() {
            return reply_attr(reply, self.vault.setattr_meta(ino.0, changes));
        }
        let vault = self.vault.clone();
        self.spawn(async move { reply_attr(reply, vault.setattr(ino.0, changes).await) });
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let _s = span("readlink", ino);
        reply_data(reply, self.vault.readlink(ino.0));
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let _s = span("mknod", parent);
        reply_entry(reply, self.vault.mknod(caller(req), parent.0, name.as_bytes(), mode, umask, rdev));
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let _s = span("mkdir", parent);
        reply_entry(reply, self.vault.mkdir(caller(req), parent.0, name.as_bytes(), mode, umask));
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _s = span("unlink", parent);
        reply_empty(reply, self.vault.unlink(parent.0, name.as_bytes()));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _s = span("rmdir", parent);
        reply_empty(reply, self.vault.rmdir(parent.0, name.as_bytes()));
    }

    fn symlink(&self, req: &Request, parent: INodeNo, link: &OsStr, target: &Path, reply: ReplyEntry) {
        let _s = span("symlink", parent);
        let target = target.as_os_str().as_bytes();
        reply_entry(reply, self.vault.symlink(caller(req), parent.0, link.as_bytes(), target));
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let _s = span("rename", parent);
        let result =
            self.vault.rename(parent.0, name.as_bytes(), newparent.0, newname.as_bytes(), flags.bits());
        reply_empty(reply, result);
    }

    fn link(&self, _req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        let _s = span("link", ino);
        reply_entry(reply, self.vault.link(ino.0, newparent.0, newname.as_bytes()));
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let _s = span("open", ino);
        match self.vault.open(ino.0, flags.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let _s = span("read", ino);
        let vault = self.vault.clone();
        self.spawn(async move { reply_data(reply, vault.read(ino.0, fh.0, offset, size).await) });
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let _s = span("write", ino);
        match self.vault.write_staged(ino.0, fh.0, offset, data) {
            Some(Ok(n)) => return reply.written(n),
            Some(Err(e)) => return reply.error(errno(&e)),
            None => {}
        }
        let (vault, data) = (self.vault.clone(), data.to_vec());
        self.spawn(async move {
            match vault.write(ino.0, fh.0, offset, data).await {
                Ok(n) => reply.written(n),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    /// Nothing is done at close(2) of one descriptor (a staged file's size and times live in
    /// memory, getattr reads them there, and `release` queues the file), so flush is declined:
    /// on ENOSYS the kernel stops sending it (two fewer round trips per file rsync writes).
    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let _s = span("flush", ino);
        reply.error(Errno::ENOSYS);
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let _s = span("release", ino);
        reply_empty(reply, self.vault.release(ino.0, fh.0));
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, fh: FileHandle, datasync: bool, reply: ReplyEmpty) {
        let _s = span("fsync", ino);
        let vault = self.vault.clone();
        self.spawn(async move { reply_empty(reply, vault.fsync(ino.0, fh.0, datasync).await) });
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let _s = span("opendir", ino);
        match self.vault.opendir(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let _s = span("readdir", ino);
        if offset == 0 {
            let vault = self.vault.clone();
            self.rt.spawn(async move { vault.prefetch_dir(ino.0).await });
        }
        let listed = self.vault.readdir(ino.0, fh.0, offset, |e| {
            reply.add(INodeNo(e.ino), e.cookie, file_type(e.kind), OsStr::from_bytes(&e.name))
        });
        match listed {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn releasedir(&self, _req: &Request, ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        let _s = span("releasedir", ino);
        self.vault.releasedir(fh.0);
        reply.ok();
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        let _s = span("fsyncdir", ino);
        reply_empty(reply, self.vault.fsyncdir());
    }

    fn statfs(&self, _req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        let _s = span("statfs", ino);
        let s = self.vault.statfs();
        reply.statfs(s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.frsize);
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let _s = span("setxattr", ino);
        reply_empty(reply, self.vault.setxattr(ino.0, name.as_bytes(), value, flags));
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let _s = span("getxattr", ino);
        reply_xattr(reply, size, self.vault.getxattr(ino.0, name.as_bytes()));
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let _s = span("listxattr", ino);
        reply_xattr(reply, size, self.vault.listxattr(ino.0));
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _s = span("removexattr", ino);
        reply_empty(reply, self.vault.removexattr(ino.0, name.as_bytes()));
    }

    /// Not called under `default_permissions` (the kernel checks); answered for completeness.
    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let _s = span("create", parent);
        match self.vault.create(caller(req), parent.0, name.as_bytes(), mode, umask, flags) {
            Ok((a, fh)) => {
                reply.created(&TTL, &file_attr(&a), GENERATION, FileHandle(fh), FopenFlags::empty())
            }
            Err(e) => reply.error(errno(&e)),
        }
    }
}
