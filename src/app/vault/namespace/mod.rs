//! Names and attributes (docs/DESIGN.md §6): lookups, creation of every kind of node, links, removal,
//! directory listings (`dirs.rs`), renames (`rename.rs`) and extended attributes (`xattr.rs`).
//! Every change is one manifest transaction.

mod dirs;
mod rename;
mod xattr;

pub use dirs::DirFh;
pub(in crate::app::vault) use xattr::chmod_acl;

use super::Tx;
use super::{Caller, FsError, StatFs, Vault};
use crate::domain::fs::{Attr, Ino, Kind, Time, NAME_MAX};
use crate::ports::fabric::ChunkFabric;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// The namespace part's own state: open directory listings and when the namespace last changed.
#[derive(Debug, Default)]
pub(super) struct Namespace {
    /// Snapshots of open directory handles.
    pub(super) listings: Mutex<dirs::Listings>,
    /// When a file or directory was last created, renamed, removed or had its attributes set
    /// (unix ms): while that keeps happening, uploads step back (see `pipeline`).
    pub(super) last_op: AtomicU64,
}

/// Where a new node's content starts out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::app::vault) enum Content {
    /// In the manifest (empty, or a symlink's target).
    Manifest,
    /// Staged: a regular file created open for writing.
    Staged,
}

/// What to create in `make`.
pub(in crate::app::vault) struct NewNode<'a> {
    pub(in crate::app::vault) kind: Kind,
    /// The permission bits asked for (before the umask or a default ACL applies).
    pub(in crate::app::vault) perm: u16,
    /// The caller's umask, applied unless the directory has a default ACL.
    pub(in crate::app::vault) umask: u16,
    pub(in crate::app::vault) rdev: u32,
    pub(in crate::app::vault) target: Option<&'a [u8]>,
    /// Where its content starts out.
    pub(in crate::app::vault) content: Content,
}

impl NewNode<'_> {
    /// A node of `kind` with the permission bits of `mode`, less `umask` or as a default ACL of
    /// its directory says.
    pub(in crate::app::vault) fn plain(kind: Kind, mode: u32, umask: u32) -> Self {
        let (perm, umask) = ((mode & 0o7777) as u16, (umask & 0o777) as u16);
        NewNode { kind, perm, umask, rdev: 0, target: None, content: Content::Manifest }
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
    /// Current attributes: a staged file's size and mtime live in memory until the chunker
    /// commits them. The in-memory state is read *before* the manifest: the chunker commits the
    /// manifest before it clears the in-memory state, so a file seen as no longer staged is
    /// already committed in any manifest snapshot taken afterwards.
    pub(super) fn current_attr(&self, ino: Ino) -> Result<Attr, FsError> {
        let staged = Self::lock(&self.writer.files)
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
        let attr = self.current_attr(ino)?;
        if attr.kind == Kind::File {
            self.reader.prefetch.looked_up(parent, ino);
        }
        Ok(attr)
    }

    /// An inode's attributes.
    pub fn getattr(&self, ino: Ino) -> Result<Attr, FsError> {
        self.current_attr(ino)
    }

    /// A symlink's target.
    pub fn readlink(&self, ino: Ino) -> Result<Vec<u8>, FsError> {
        self.m.view().symlink(ino)
    }

    pub(super) fn make(
        &self,
        caller: Caller,
        parent: Ino,
        name: &[u8],
        new: NewNode<'_>,
    ) -> Result<Attr, FsError> {
        self.namespace_op();
        let NewNode { kind, perm, umask, rdev, target, content } = new;
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
            let inherited = xattr::inherit(tx, parent, kind, perm, umask)?;
            let mut perm = inherited.perm;
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
            xattr::put_inherited(tx, ino, &inherited)?;
            if content == Content::Staged {
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
        self.writable()?;
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
        self.writable()?;
        self.make(caller, parent, name, NewNode::plain(Kind::Dir, mode, umask))
    }

    /// Creates a symbolic link.
    pub fn symlink(&self, caller: Caller, parent: Ino, name: &[u8], target: &[u8]) -> Result<Attr, FsError> {
        self.writable()?;
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
        self.writable()?;
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
    pub(super) fn drop_link(tx: &Tx<'_>, ino: Ino, now: Time) -> Result<bool, FsError> {
        let mut a = tx.inode(ino)?;
        let gone = a.kind == Kind::Dir || a.nlink <= 1;
        a.nlink = a.nlink.saturating_sub(if a.kind == Kind::Dir { 2 } else { 1 });
        a.ctime = now;
        tx.put_inode(&a)?;
        Ok(gone)
    }

    /// Notes a create, rename, removal or attribute change (for `namespace_busy`).
    pub(super) fn namespace_op(&self) {
        self.namespace.last_op.store(self.clock.now_ms(), Ordering::Relaxed);
    }

    /// Whether files were created, renamed, removed or had attributes set within `within`.
    pub(super) fn namespace_busy(&self, within: Duration) -> bool {
        let last = self.namespace.last_op.load(Ordering::Relaxed);
        self.clock.now_ms().saturating_sub(last) < within.as_millis() as u64
    }

    /// Frees inodes whose last link went away (or defers it while they are open).
    pub(super) fn free_inodes(&self, inos: Vec<Ino>) -> Result<(), FsError> {
        for ino in inos {
            if Self::lock(&self.writer.files).get(&ino).is_some_and(|f| f.handles > 0) {
                Self::lock(&self.writer.orphans).push(ino);
                continue;
            }
            self.m.write(|tx| tx.delete_inode(ino))?;
            self.discard_staging(ino);
        }
        Ok(())
    }

    /// Removes a non-directory entry.
    pub fn unlink(&self, parent: Ino, name: &[u8]) -> Result<(), FsError> {
        self.writable()?;
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
        self.writable()?;
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

    /// Resolves a vault path ("/a/b") to its inode.
    pub(super) fn resolve(&self, path: &str) -> Result<Ino, FsError> {
        let rx = self.m.read()?;
        let mut ino = crate::domain::fs::ROOT_INO;
        for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
            ino = rx.lookup(ino, part.as_bytes())?.ok_or(FsError::NotFound)?;
        }
        Ok(ino)
    }
}
