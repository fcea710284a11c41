//! Staging of file data: open files and their handles, the staging area, writes, fsync and
//! truncation. A file being written lives in `staging/<ino>`; writes are local `pwrite`s and
//! never wait for the network. An existing file is staged in part on its first write or truncate
//! (a sparse copy; unwritten bytes come from its chunks, docs/DESIGN.md §12). fsync makes the
//! staging file and the manifest durable; after the last writer closes, the pipeline chunks the
//! file into the outbox and drops the staging copy.

mod recover;
mod write;

use super::namespace::{Content, NewNode};
use super::{Caller, Fh, FsError, Vault};
use crate::domain::fs::{Attr, Ino, Kind, Time};
use crate::domain::partial::Partial;
use crate::ports::fabric::ChunkFabric;
use crate::ports::local_disk::{StagedFile, StagedName, Staging};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// What a handle may do with its file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Access {
    /// Read only.
    Read,
    /// Write (and read).
    Write,
}

impl Access {
    /// The access that open(2) flags ask for.
    fn of_flags(flags: i32) -> Self {
        if flags & libc::O_ACCMODE == libc::O_RDONLY {
            Access::Read
        } else {
            Access::Write
        }
    }
}

/// A freed inode's staging copy waiting for removal, with its handle if one was open.
type Retiring = (Ino, Option<Arc<dyn StagedFile>>);

/// The writer part's state: the staging area and the open files and handles.
pub(super) struct Writer {
    /// The staging area (one staged file per inode).
    pub(super) staging: Arc<dyn Staging>,
    /// Files that are open or staged.
    pub(super) files: Mutex<HashMap<Ino, OpenFile>>,
    /// Open handles: their file and what they may do.
    pub(super) handles: Mutex<HashMap<Fh, (Ino, Access)>>,
    /// The next handle number (also names temporary staging files).
    pub(super) next_fh: AtomicU64,
    /// Files unlinked while open: deleted at their last release.
    pub(super) orphans: Mutex<Vec<Ino>>,
    /// Staging copies of freed inodes, removed after the next durable checkpoint: until then a
    /// crash may undo the removal, and the inode must come back with the content it had.
    pub(super) retiring: Mutex<Vec<Retiring>>,
}

impl Writer {
    /// A writer staging into `staging`.
    pub(super) fn new(staging: Arc<dyn Staging>) -> Self {
        Writer {
            staging,
            files: Mutex::default(),
            handles: Mutex::default(),
            next_fh: AtomicU64::new(1),
            orphans: Mutex::default(),
            retiring: Mutex::default(),
        }
    }

    /// Inodes whose content is staged right now.
    pub(super) fn staged_inos(&self) -> std::collections::HashSet<Ino> {
        let files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        files.iter().filter(|(_, f)| f.staging.is_some()).map(|(i, _)| *i).collect()
    }
}

/// In-memory state of a file that is open or staged.
#[derive(Debug, Default)]
pub(super) struct OpenFile {
    /// Open handles.
    pub handles: usize,
    /// Open handles that may write.
    pub writers: usize,
    /// The staging file, when the content is staged.
    pub staging: Option<Arc<dyn StagedFile>>,
    /// Current size (authoritative while staged).
    pub size: u64,
    /// Current modification time (authoritative while staged).
    pub mtime: Time,
    /// Bumped by every change to the staged content.
    pub generation: u64,
    /// Mode and times set while staged, not yet in the manifest (see [`StagedMeta`]).
    pub meta: Option<StagedMeta>,
    /// Generation last written to the manifest.
    pub flushed: u64,
    /// For a file staged in part, which of its bytes are in the staging copy (the others come
    /// from its chunks); `None` when the staging copy holds the whole file.
    pub partial: Option<Partial>,
    /// Generation whose `partial` the manifest holds (written only once the staging copy is
    /// synced up to it).
    pub partial_synced: u64,
}

/// chmod and utimes of a staged file, kept with its staged content and written to the manifest
/// with it (when it is chunked, or at fsync): rsync, cp -a and tar set them on every file they
/// write, and a manifest commit each would double the cost of a small file. The owner and group
/// are not deferred (ownership decisions read the manifest).
#[derive(Clone, Copy, Debug)]
pub(super) struct StagedMeta {
    /// Permission bits.
    pub perm: u16,
    /// Access time.
    pub atime: Time,
    /// Change time of the last deferred change.
    pub ctime: Time,
}

impl StagedMeta {
    /// Lays the deferred values over the manifest's.
    pub fn apply(&self, a: &mut Attr) {
        a.perm = self.perm;
        a.atime = self.atime;
        a.ctime = a.ctime.max(self.ctime);
    }
}

impl<F: ChunkFabric + 'static> Vault<F> {
    /// Removes the staging copy of a freed inode once the manifest change that freed it is
    /// durable (at the next checkpoint, at most a second later).
    pub(super) fn discard_staging(&self, ino: Ino) {
        let open = Self::lock(&self.writer.files).remove(&ino).and_then(|f| f.staging);
        // Only a copy a reader still holds stays open meanwhile (no descriptor per freed file).
        let open = open.filter(|f| Arc::strong_count(f) > 1);
        Self::lock(&self.writer.retiring).push((ino, open));
    }

    fn open_handle(&self, ino: Ino, access: Access) -> Fh {
        let mut files = Self::lock(&self.writer.files);
        let f = files.entry(ino).or_default();
        f.handles += 1;
        if access == Access::Write {
            f.writers += 1;
        }
        drop(files);
        let fh = self.writer.next_fh.fetch_add(1, Ordering::Relaxed);
        Self::lock(&self.writer.handles).insert(fh, (ino, access));
        fh
    }

    /// Creates and opens a regular file.
    pub fn create(
        &self,
        caller: Caller,
        parent: Ino,
        name: &[u8],
        mode: u32,
        umask: u32,
        _flags: i32,
    ) -> Result<(Attr, Fh), FsError> {
        self.writable()?;
        let new = NewNode { content: Content::Staged, ..NewNode::plain(Kind::File, mode, umask) };
        let attr = self.make(caller, parent, name, new)?;
        let file = self.writer.staging.create(StagedName::Staged(attr.ino))?;
        let fh = self.open_handle(attr.ino, Access::Write);
        let mut files = Self::lock(&self.writer.files);
        let f = files.entry(attr.ino).or_default();
        f.staging = Some(file);
        f.size = 0;
        f.mtime = attr.mtime;
        Ok((attr, fh))
    }

    /// Opens a file.
    pub fn open(&self, ino: Ino, flags: i32) -> Result<Fh, FsError> {
        if flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0 {
            self.writable()?;
        }
        let attr = self.getattr(ino)?;
        if attr.kind == Kind::Dir && flags & libc::O_ACCMODE != libc::O_RDONLY {
            return Err(FsError::IsDir);
        }
        Ok(self.open_handle(ino, Access::of_flags(flags)))
    }

    fn handle_ino(&self, fh: Fh) -> Result<Ino, FsError> {
        Self::lock(&self.writer.handles).get(&fh).map(|h| h.0).ok_or(FsError::BadHandle)
    }

    /// Closes a handle; the last writer's close queues the file for chunking.
    pub fn release(&self, _ino: Ino, fh: Fh) -> Result<(), FsError> {
        let Some((ino, access)) = Self::lock(&self.writer.handles).remove(&fh) else {
            return Err(FsError::BadHandle);
        };
        let mut files = Self::lock(&self.writer.files);
        let Some(f) = files.get_mut(&ino) else { return Ok(()) };
        f.handles = f.handles.saturating_sub(1);
        if access == Access::Write {
            f.writers = f.writers.saturating_sub(1);
        }
        let (staged, handles) = (f.staging.is_some(), f.handles);
        if !staged && handles == 0 {
            files.remove(&ino);
        }
        drop(files);
        if handles == 0 {
            let orphan = {
                let mut o = Self::lock(&self.writer.orphans);
                let pos = o.iter().position(|&i| i == ino);
                pos.map(|p| o.swap_remove(p))
            };
            if orphan.is_some() {
                self.m.write(|tx| tx.delete_inode(ino))?;
                self.discard_staging(ino);
                return Ok(());
            }
        }
        if staged && handles == 0 {
            Self::lock(&self.pipeline.chunk_queue).push(ino);
            self.pipeline.chunk_work.notify_one();
        }
        Ok(())
    }

    /// Writes the staged size and times to the manifest (made durable by the caller), and the
    /// local part of a file staged in part as it was when its staging copy was last synced
    /// (`synced`: that part and its generation).
    pub(super) fn persist_attrs(&self, ino: Ino, synced: Option<(Partial, u64)>) -> Result<(), FsError> {
        let mut files = Self::lock(&self.writer.files);
        let Some(f) = files.get_mut(&ino).filter(|f| f.staging.is_some()) else { return Ok(()) };
        let synced = synced.filter(|(_, generation)| *generation > f.partial_synced);
        if f.generation == f.flushed && f.meta.is_none() && synced.is_none() {
            return Ok(());
        }
        // Under the files lock, so no deferred change slips in between the commit and the reset.
        self.m.write(|tx| {
            let mut a = tx.inode(ino)?;
            a.size = f.size;
            a.mtime = f.mtime;
            a.ctime = a.ctime.max(f.mtime);
            if let Some(meta) = &f.meta {
                meta.apply(&mut a);
            }
            if let Some((p, _)) = &synced {
                tx.set_partial(ino, Some(p))?;
            }
            tx.put_inode(&a)
        })?;
        if let Some((_, generation)) = synced {
            f.partial_synced = generation;
        }
        f.flushed = f.flushed.max(f.generation);
        f.meta = None;
        Ok(())
    }

    /// Makes the file durable locally (or, with `sync_quorum`, in the fabric).
    pub async fn fsync(&self, ino: Ino, _fh: Fh, _datasync: bool) -> Result<(), FsError> {
        let staging = Self::lock(&self.writer.files)
            .get(&ino)
            .and_then(|f| f.staging.clone().map(|s| (s, f.partial.clone().map(|p| (p, f.generation)))));
        if let Some((file, part)) = staging {
            // The ranges are taken before the sync, so every range recorded is on disk.
            tokio::task::block_in_place(|| file.sync_data())?;
            self.persist_attrs(ino, part)?;
        }
        tokio::task::block_in_place(|| self.m.sync())?;
        if self.opts.sync_quorum {
            self.wait_durable(ino).await?;
        }
        Ok(())
    }

    /// Waits until `ino` is chunked and every one of its chunks is quorum-durable.
    async fn wait_durable(&self, ino: Ino) -> Result<(), FsError> {
        Self::lock(&self.pipeline.chunk_queue).push(ino);
        self.pipeline.chunk_work.notify_one();
        loop {
            let notified = self.pipeline.uploaded.notified();
            let staged = Self::lock(&self.writer.files).get(&ino).is_some_and(|f| f.staging.is_some());
            if !staged {
                let rx = self.m.read()?;
                let mut all = true;
                for e in rx.extents(ino, 0, u64::MAX)? {
                    if rx.chunk(&e.addr)?.is_none_or(|c| c.state != crate::domain::fs::ChunkState::Durable) {
                        all = false;
                        break;
                    }
                }
                if all {
                    return Ok(());
                }
            }
            notified.await;
        }
    }
}
