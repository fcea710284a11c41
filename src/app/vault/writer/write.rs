//! Writes and attribute changes of staged files: staging a file in part, pwrite, truncate, and chmod/utimes deferred while staged.

use super::StagedMeta;
use crate::app::vault::{Fh, FsError, SetAttr, TimeSet, Vault};
use crate::domain::acl::ACCESS_XATTR;
use crate::domain::fs::{Attr, Ino, Kind, Time};
use crate::domain::partial::Partial;
use crate::ports::fabric::ChunkFabric;
use crate::ports::local_disk::{StagedFile, StagedName};
use std::sync::Arc;

impl<F: ChunkFabric + 'static> Vault<F> {
    /// Gives a file a staging copy, unless it has one. A file with content is staged in part:
    /// its staging copy starts sparse and nothing is fetched; bytes not written since come from
    /// its chunks (docs/DESIGN.md §12). Bytes from `keep_bytes` on are dropped (a truncate).
    fn ensure_staged(&self, ino: Ino, keep_bytes: u64) -> Result<Arc<dyn StagedFile>, FsError> {
        if let Some(f) = Self::lock(&self.writer.files).get(&ino).and_then(|f| f.staging.clone()) {
            return Ok(f);
        }
        let attr = self.m.view().inode(ino)?;
        if attr.kind != Kind::File {
            return Err(FsError::Invalid("not a regular file"));
        }
        let n = self.writer.next_fh.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let file = self.writer.staging.create(StagedName::Tmp(ino, n))?;
        file.set_len(attr.size)?;
        let partial = (attr.size > 0).then(|| {
            let mut p = Partial::new(attr.size);
            p.truncate(keep_bytes);
            p
        });
        let mut files = Self::lock(&self.writer.files);
        let f = files.entry(ino).or_default();
        if let Some(existing) = f.staging.clone() {
            drop(files);
            self.writer.staging.retire(StagedName::Tmp(ino, n), Some(file));
            return Ok(existing);
        }
        self.writer.staging.publish(ino, n)?;
        f.staging = Some(file.clone());
        f.size = attr.size;
        f.mtime = attr.mtime;
        f.partial = partial.clone();
        // The record says what the staging copy holds: nothing yet, so it is safe at once.
        self.m.write(|tx| {
            tx.set_staged(ino, true)?;
            tx.set_partial(ino, partial.as_ref())
        })?;
        drop(files);
        Ok(file)
    }

    /// Writes data at an offset (to the staging copy; never waits for the network: an existing
    /// file is staged in part, with nothing fetched).
    pub async fn write(
        self: &Arc<Self>,
        ino: Ino,
        fh: Fh,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<u32, FsError> {
        self.writable()?;
        self.handle_ino(fh)?;
        let file = self.ensure_staged(ino, u64::MAX)?;
        tokio::task::block_in_place(|| self.write_to(&*file, ino, offset, &data))
    }

    /// Writes to a file that already has a staging copy, at once (local disk only); `None`
    /// when the file must first be fetched, which [`Vault::write`] does.
    pub fn write_staged(&self, ino: Ino, fh: Fh, offset: u64, data: &[u8]) -> Option<Result<u32, FsError>> {
        if let Err(e) = self.writable() {
            return Some(Err(e));
        }
        if let Err(e) = self.handle_ino(fh) {
            return Some(Err(e));
        }
        let file = Self::lock(&self.writer.files).get(&ino).and_then(|f| f.staging.clone())?;
        Some(self.write_to(&*file, ino, offset, data))
    }

    fn write_to(&self, file: &dyn StagedFile, ino: Ino, offset: u64, data: &[u8]) -> Result<u32, FsError> {
        file.write_all_at(data, offset)?;
        self.read_stats.staged_bytes.fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let end = offset + data.len() as u64;
        let mut files = Self::lock(&self.writer.files);
        if let Some(f) = files.get_mut(&ino) {
            if let Some(p) = &mut f.partial {
                p.add(offset, end);
            }
            f.size = f.size.max(end);
            f.mtime = Time::now();
            f.generation += 1;
        }
        Ok(data.len() as u32)
    }

    /// Changes attributes; a size change truncates or extends the staged copy.
    pub async fn setattr(self: &Arc<Self>, ino: Ino, c: SetAttr) -> Result<Attr, FsError> {
        self.writable()?;
        if let Some(size) = c.size {
            if self.getattr(ino)?.kind == Kind::Dir {
                return Err(FsError::IsDir);
            }
            let file = self.ensure_staged(ino, size)?;
            tokio::task::block_in_place(|| file.set_len(size))?;
            let mut files = Self::lock(&self.writer.files);
            if let Some(f) = files.get_mut(&ino) {
                if let Some(p) = &mut f.partial {
                    p.truncate(size);
                }
                f.size = size;
                f.mtime = Time::now();
                f.generation += 1;
            }
            let handles = files.get(&ino).map_or(0, |f| f.handles);
            drop(files);
            if handles == 0 {
                Self::lock(&self.pipeline.chunk_queue).push(ino);
                self.pipeline.chunk_work.notify_one();
            }
        }
        self.setattr_meta(ino, c)
    }

    /// Changes attributes other than the size (local state only, never the network); the
    /// size part of a [`SetAttr`] is left to [`Vault::setattr`].
    pub fn setattr_meta(&self, ino: Ino, c: SetAttr) -> Result<Attr, FsError> {
        self.writable()?;
        self.namespace_op();
        let now = Time::now();
        let pick = |t: TimeSet| t.resolve(now);
        if c.size.is_none() && c.uid.is_none() && c.gid.is_none() && self.defer_meta(ino, &c, now)? {
            return self.current_attr(ino);
        }
        let staged_mtime = c.mtime.map(pick);
        // A deferred change is folded into this commit (its values would otherwise win later).
        let deferred = Self::lock(&self.writer.files).get_mut(&ino).and_then(|f| f.meta.take());
        let a = self.m.write_grouped(|tx| {
            let mut a = tx.inode(ino)?;
            if let Some(meta) = &deferred {
                meta.apply(&mut a);
            }
            if let Some(m) = c.mode {
                a.perm = (m & 0o7777) as u16;
                crate::app::vault::namespace::chmod_acl(tx, &a)?;
            }
            if let Some(u) = c.uid {
                a.uid = u;
            }
            if let Some(g) = c.gid {
                a.gid = g;
            }
            if let Some(s) = c.size {
                a.size = s;
                a.mtime = now;
            }
            if let Some(t) = c.atime {
                a.atime = pick(t);
            }
            if let Some(t) = staged_mtime {
                a.mtime = t;
            }
            a.ctime = c.ctime.unwrap_or(now);
            tx.put_inode(&a)?;
            Ok(a)
        })?;
        if let Some(t) = staged_mtime {
            if let Some(f) = Self::lock(&self.writer.files).get_mut(&ino) {
                f.mtime = t;
                f.generation += 1;
            }
        }
        self.current_attr(a.ino)
    }

    /// Records a chmod/utimes of a staged file in memory (see [`StagedMeta`]); `false` when the
    /// file is not staged and the change must go to the manifest.
    fn defer_meta(&self, ino: Ino, c: &SetAttr, now: Time) -> Result<bool, FsError> {
        let mut files = Self::lock(&self.writer.files);
        let Some(f) = files.get_mut(&ino).filter(|f| f.staging.is_some()) else { return Ok(false) };
        // A chmod of a file with an access ACL changes the ACL too: that goes to the manifest.
        if c.mode.is_some() && self.m.view().xattr(ino, ACCESS_XATTR)?.is_some() {
            return Ok(false);
        }
        let mut meta = match f.meta {
            Some(m) => m,
            None => {
                let a = self.m.view().inode(ino)?;
                StagedMeta { perm: a.perm, atime: a.atime, ctime: a.ctime }
            }
        };
        if let Some(m) = c.mode {
            meta.perm = (m & 0o7777) as u16;
        }
        if let Some(t) = c.atime {
            meta.atime = t.resolve(now);
        }
        if let Some(t) = c.mtime {
            f.mtime = t.resolve(now);
            f.generation += 1;
        }
        meta.ctime = c.ctime.unwrap_or(now);
        f.meta = Some(meta);
        Ok(true)
    }
}
