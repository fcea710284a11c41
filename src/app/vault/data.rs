//! File data: open handles, the staging area, reads and writes.
//!
//! A file being written lives in `staging/<ino>`; writes are local `pwrite`s and never wait for
//! the network. An existing file is materialized into staging on its first write or truncate.
//! fsync makes the staging file and the manifest durable; after the last writer closes, the
//! pipeline chunks the file into the outbox and drops the staging copy.

use super::cache::{Plain, ReadData};
use super::{Caller, Fh, FsError, Secrets, SetAttr, TimeSet, Vault};
use crate::domain::fs::{Attr, Extent, Ino, Kind, Time};
use crate::ports::fabric::ChunkFabric;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Chunks fetched ahead of a sequential reader (from different replicas, in parallel).
const READ_AHEAD_CHUNKS: usize = 12;

/// In-memory state of a file that is open or staged.
#[derive(Debug, Default)]
pub(super) struct OpenFile {
    /// Open handles.
    pub handles: usize,
    /// Open handles that may write.
    pub writers: usize,
    /// The staging file, when the content is staged.
    pub staging: Option<Arc<File>>,
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
    pub(super) fn staging_path(&self, ino: Ino) -> PathBuf {
        self.staging.join(ino.to_string())
    }

    /// Removes the staging copy of a freed inode once the manifest change that freed it is
    /// durable (at the next checkpoint, at most a second later).
    pub(super) fn discard_staging(&self, ino: Ino) {
        let open = Self::lock(&self.files).remove(&ino).and_then(|f| f.staging);
        // Only a copy a reader still holds stays open meanwhile (no descriptor per freed file).
        let open = open.filter(|f| Arc::strong_count(f) > 1);
        Self::lock(&self.retiring).push((ino, open));
    }

    /// Re-opens staged files after a restart and queues them for chunking.
    pub(super) fn recover(&self) -> Result<(), FsError> {
        // Files unlinked while open when the previous mount died: nothing can have them open now.
        let orphans = self.m.read()?.unlinked_inodes()?;
        if !orphans.is_empty() {
            tracing::info!(
                count = orphans.len(),
                "freeing files that were deleted while open before a crash"
            );
            self.m.write(|tx| orphans.iter().try_for_each(|&ino| tx.delete_inode(ino)))?;
            for &ino in &orphans {
                self.discard_staging(ino);
            }
        }
        // Chunks queued ahead of a commit that never came: the files they were sealed from are
        // still staged and are sealed again below, and any chunk no file takes is collected.
        let sealing = self.m.read()?.sealing()?;
        if !sealing.is_empty() {
            tracing::info!(chunks = sealing.len(), "releasing chunks queued by an interrupted chunking pass");
            self.m.write(|tx| sealing.iter().try_for_each(|a| tx.release_sealed(a)))?;
        }
        let rx = self.m.read()?;
        let staged: std::collections::HashSet<Ino> = rx.staged()?.into_iter().collect();
        // Leftovers of interrupted materializations, and staging copies of inodes freed before
        // the crash (their removal was durable, the copy's retirement had not happened yet).
        for e in std::fs::read_dir(&self.staging)?.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.ends_with(".tmp") || name.parse::<Ino>().is_ok_and(|ino| !staged.contains(&ino)) {
                let _ = std::fs::remove_file(e.path());
            }
        }
        for ino in staged {
            let path = self.staging_path(ino);
            let attr = match rx.inode(ino) {
                Ok(a) => a,
                Err(_) => {
                    let _ = std::fs::remove_file(&path);
                    continue;
                }
            };
            let file = match std::fs::OpenOptions::new().read(true).write(true).open(&path) {
                Ok(f) => f,
                Err(e) => {
                    tracing::error!(ino, error = %e, "staged file is missing; keeping the last uploaded version");
                    continue;
                }
            };
            let size = file.metadata()?.len().max(attr.size);
            let entry = OpenFile {
                staging: Some(Arc::new(file)),
                size,
                mtime: attr.mtime,
                generation: 1,
                flushed: 1,
                ..OpenFile::default()
            };
            Self::lock(&self.files).insert(ino, entry);
            Self::lock(&self.chunk_queue).push(ino);
        }
        // Outbox files that are not queued: a chunking pass interrupted before its commit, or
        // an upload whose durable commit happened but whose file was not yet removed.
        for e in std::fs::read_dir(&self.outbox)?.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let queued =
                crate::domain::ids::Addr::from_hex(&name).map(|a| rx.upload_queued(&a)).transpose()?;
            if queued != Some(true) {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(())
    }

    fn open_handle(&self, ino: Ino, writer: bool) -> Fh {
        let mut files = Self::lock(&self.files);
        let f = files.entry(ino).or_default();
        f.handles += 1;
        if writer {
            f.writers += 1;
        }
        drop(files);
        self.new_fh(ino, writer)
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
        let new = super::NewNode { staged: true, ..super::NewNode::plain(Kind::File, mode, umask) };
        let attr = self.make(caller, parent, name, new)?;
        let file = self.spares.create(&self.staging_path(attr.ino))?;
        let fh = self.open_handle(attr.ino, true);
        let mut files = Self::lock(&self.files);
        let f = files.entry(attr.ino).or_default();
        f.staging = Some(Arc::new(file));
        f.size = 0;
        f.mtime = attr.mtime;
        Ok((attr, fh))
    }

    /// Opens a file.
    pub fn open(&self, ino: Ino, flags: i32) -> Result<Fh, FsError> {
        let attr = self.getattr(ino)?;
        if attr.kind == Kind::Dir && flags & libc::O_ACCMODE != libc::O_RDONLY {
            return Err(FsError::IsDir);
        }
        let writer = flags & libc::O_ACCMODE != libc::O_RDONLY;
        Ok(self.open_handle(ino, writer))
    }

    fn handle_ino(&self, fh: Fh) -> Result<Ino, FsError> {
        Self::lock(&self.handles).get(&fh).map(|h| h.0).ok_or(FsError::BadHandle)
    }

    /// Closes a handle; the last writer's close queues the file for chunking.
    pub fn release(&self, _ino: Ino, fh: Fh) -> Result<(), FsError> {
        let Some((ino, writer)) = Self::lock(&self.handles).remove(&fh) else {
            return Err(FsError::BadHandle);
        };
        let mut files = Self::lock(&self.files);
        let Some(f) = files.get_mut(&ino) else { return Ok(()) };
        f.handles = f.handles.saturating_sub(1);
        if writer {
            f.writers = f.writers.saturating_sub(1);
        }
        let (staged, handles) = (f.staging.is_some(), f.handles);
        if !staged && handles == 0 {
            files.remove(&ino);
        }
        drop(files);
        if handles == 0 {
            let orphan = {
                let mut o = Self::lock(&self.orphans);
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
            Self::lock(&self.chunk_queue).push(ino);
            self.chunk_work.notify_one();
        }
        Ok(())
    }

    /// Writes the staged size and times to the manifest (made durable by the caller).
    fn persist_attrs(&self, ino: Ino) -> Result<(), FsError> {
        let mut files = Self::lock(&self.files);
        let Some(f) = files.get_mut(&ino).filter(|f| f.staging.is_some()) else { return Ok(()) };
        if f.generation == f.flushed && f.meta.is_none() {
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
            tx.put_inode(&a)
        })?;
        f.flushed = f.flushed.max(f.generation);
        f.meta = None;
        Ok(())
    }

    /// Makes the file durable locally (or, with `sync_quorum`, in the fabric).
    pub async fn fsync(&self, ino: Ino, _fh: Fh, _datasync: bool) -> Result<(), FsError> {
        let staging = Self::lock(&self.files).get(&ino).and_then(|f| f.staging.clone());
        if let Some(file) = staging {
            tokio::task::block_in_place(|| file.sync_data())?;
            self.persist_attrs(ino)?;
        }
        tokio::task::block_in_place(|| self.m.sync())?;
        if self.opts.sync_quorum {
            self.wait_durable(ino).await?;
        }
        Ok(())
    }

    /// Waits until `ino` is chunked and every one of its chunks is quorum-durable.
    async fn wait_durable(&self, ino: Ino) -> Result<(), FsError> {
        Self::lock(&self.chunk_queue).push(ino);
        self.chunk_work.notify_one();
        loop {
            let notified = self.uploaded.notified();
            let staged = Self::lock(&self.files).get(&ino).is_some_and(|f| f.staging.is_some());
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

    /// Brings a file's content into staging (fetching its chunks), unless it is already there.
    async fn ensure_staged(self: &Arc<Self>, ino: Ino, keep_bytes: u64) -> Result<Arc<File>, FsError> {
        if let Some(f) = Self::lock(&self.files).get(&ino).and_then(|f| f.staging.clone()) {
            return Ok(f);
        }
        let attr = self.m.view().inode(ino)?;
        if attr.kind != Kind::File {
            return Err(FsError::Invalid("not a regular file"));
        }
        let tmp = self
            .staging
            .join(format!("{ino}.{}.tmp", self.next_fh.fetch_add(1, std::sync::atomic::Ordering::Relaxed)));
        let file = self.spares.create(&tmp)?;
        let keep = keep_bytes.min(attr.size);
        if keep > 0 {
            let extents = self.m.view().extents(ino, 0, keep)?;
            for e in extents {
                let data = self.plaintext(&e).await?;
                let take = (keep - e.offset).min(data.len() as u64) as usize;
                file.write_all_at(&data[..take], e.offset)?;
            }
        }
        file.set_len(attr.size)?;
        let file = Arc::new(file);
        let mut files = Self::lock(&self.files);
        let f = files.entry(ino).or_default();
        if let Some(existing) = f.staging.clone() {
            drop(files);
            self.spares.retire(&tmp, Some(file));
            return Ok(existing);
        }
        std::fs::rename(&tmp, self.staging_path(ino))?;
        f.staging = Some(file.clone());
        f.size = attr.size;
        f.mtime = attr.mtime;
        drop(files);
        self.m.write(|tx| tx.set_staged(ino, true))?;
        Ok(file)
    }

    /// Writes data at an offset (to the staging copy; never waits for the network unless an
    /// existing file must first be fetched).
    pub async fn write(
        self: &Arc<Self>,
        ino: Ino,
        fh: Fh,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<u32, FsError> {
        self.handle_ino(fh)?;
        let file = self.ensure_staged(ino, u64::MAX).await?;
        tokio::task::block_in_place(|| self.write_to(&file, ino, offset, &data))
    }

    /// Writes to a file that already has a staging copy, at once (local disk only); `None`
    /// when the file must first be fetched, which [`Vault::write`] does.
    pub fn write_staged(&self, ino: Ino, fh: Fh, offset: u64, data: &[u8]) -> Option<Result<u32, FsError>> {
        if let Err(e) = self.handle_ino(fh) {
            return Some(Err(e));
        }
        let file = Self::lock(&self.files).get(&ino).and_then(|f| f.staging.clone())?;
        Some(self.write_to(&file, ino, offset, data))
    }

    fn write_to(&self, file: &File, ino: Ino, offset: u64, data: &[u8]) -> Result<u32, FsError> {
        file.write_all_at(data, offset)?;
        let mut files = Self::lock(&self.files);
        if let Some(f) = files.get_mut(&ino) {
            f.size = f.size.max(offset + data.len() as u64);
            f.mtime = Time::now();
            f.generation += 1;
        }
        Ok(data.len() as u32)
    }

    /// Reads from staging, the cache, the outbox or the fabric.
    pub async fn read(
        self: &Arc<Self>,
        ino: Ino,
        _fh: Fh,
        offset: u64,
        size: u32,
    ) -> Result<ReadData, FsError> {
        let staged = Self::lock(&self.files).get(&ino).and_then(|f| f.staging.clone().map(|s| (s, f.size)));
        if let Some((file, len)) = staged {
            let end = (offset + size as u64).min(len);
            if offset >= end {
                return Ok(ReadData::Owned(Vec::new()));
            }
            let mut buf = vec![0u8; (end - offset) as usize];
            let n = tokio::task::block_in_place(|| read_full_at(&file, &mut buf, offset))?;
            buf.truncate(n);
            return Ok(ReadData::Owned(buf));
        }
        let attr = self.m.view().inode(ino)?;
        let end = (offset + size as u64).min(attr.size);
        if offset >= end {
            return Ok(ReadData::Owned(Vec::new()));
        }
        let extents = self.m.view().extents(ino, offset, end)?;
        // A read that lies in one chunk (the kernel asks 128 KiB to 1 MiB, chunks average
        // ~640 KiB) is answered from the cached chunk itself, without a copy.
        if let [e] = extents.as_slice() {
            if e.offset <= offset && end <= e.offset + u64::from(e.len) {
                let data = self.plaintext(e).await?;
                let range = (offset - e.offset) as usize..(end - e.offset) as usize;
                if range.end <= data.len() {
                    self.read_ahead(ino, end);
                    return Ok(ReadData::Shared(data, range));
                }
            }
        }
        let fetched = futures::future::join_all(extents.iter().map(|e| self.plaintext(e))).await;
        let mut buf = vec![0u8; (end - offset) as usize];
        for (e, data) in extents.iter().zip(fetched) {
            let data = data?;
            let from = offset.max(e.offset);
            let to = end.min(e.offset + data.len() as u64);
            if from < to {
                buf[(from - offset) as usize..(to - offset) as usize]
                    .copy_from_slice(&data[(from - e.offset) as usize..(to - e.offset) as usize]);
            }
        }
        self.read_ahead(ino, end);
        Ok(ReadData::Owned(buf))
    }

    /// Starts fetching the chunks after `end` so sequential readers find them cached.
    fn read_ahead(self: &Arc<Self>, ino: Ino, end: u64) {
        let Ok(rx) = self.m.read() else { return };
        let window = READ_AHEAD_CHUNKS as u64 * crate::domain::chunker::MAX_CHUNK as u64;
        let Ok(next) = rx.extents(ino, end, end + window) else { return };
        let next: Vec<Extent> =
            next.into_iter().filter(|e| e.offset >= end).take(READ_AHEAD_CHUNKS).collect();
        let cached = |e: &Extent| Self::lock(&self.cache).get(&e.id).is_some();
        for e in next.into_iter().filter(|e| !cached(e)) {
            let me = self.clone();
            tokio::spawn(async move {
                let _ = me.plaintext(&e).await;
            });
        }
    }

    /// Changes attributes; a size change truncates or extends the staged copy.
    pub async fn setattr(self: &Arc<Self>, ino: Ino, c: SetAttr) -> Result<Attr, FsError> {
        if let Some(size) = c.size {
            if self.getattr(ino)?.kind == Kind::Dir {
                return Err(FsError::IsDir);
            }
            let file = self.ensure_staged(ino, size).await?;
            tokio::task::block_in_place(|| file.set_len(size))?;
            let mut files = Self::lock(&self.files);
            if let Some(f) = files.get_mut(&ino) {
                f.size = size;
                f.mtime = Time::now();
                f.generation += 1;
            }
            let handles = files.get(&ino).map_or(0, |f| f.handles);
            drop(files);
            if handles == 0 {
                Self::lock(&self.chunk_queue).push(ino);
                self.chunk_work.notify_one();
            }
        }
        self.setattr_meta(ino, c)
    }

    /// Changes attributes other than the size (local state only, never the network); the
    /// size part of a [`SetAttr`] is left to [`Vault::setattr`].
    pub fn setattr_meta(&self, ino: Ino, c: SetAttr) -> Result<Attr, FsError> {
        self.namespace_op();
        let now = Time::now();
        let pick = |t: TimeSet| t.resolve(now);
        if c.size.is_none() && c.uid.is_none() && c.gid.is_none() && self.defer_meta(ino, &c, now)? {
            return self.current_attr(ino);
        }
        let staged_mtime = c.mtime.map(pick);
        // A deferred change is folded into this commit (its values would otherwise win later).
        let deferred = Self::lock(&self.files).get_mut(&ino).and_then(|f| f.meta.take());
        let a = self.m.write_grouped(|tx| {
            let mut a = tx.inode(ino)?;
            if let Some(meta) = &deferred {
                meta.apply(&mut a);
            }
            if let Some(m) = c.mode {
                a.perm = (m & 0o7777) as u16;
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
            if let Some(f) = Self::lock(&self.files).get_mut(&ino) {
                f.mtime = t;
                f.generation += 1;
            }
        }
        self.current_attr(a.ino)
    }

    /// Records a chmod/utimes of a staged file in memory (see [`StagedMeta`]); `false` when the
    /// file is not staged and the change must go to the manifest.
    fn defer_meta(&self, ino: Ino, c: &SetAttr, now: Time) -> Result<bool, FsError> {
        let mut files = Self::lock(&self.files);
        let Some(f) = files.get_mut(&ino).filter(|f| f.staging.is_some()) else { return Ok(false) };
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

    /// The plaintext of one extent's chunk: cache, then outbox, then fabric (bounded wait).
    /// Concurrent readers of one chunk (several kernel read requests per chunk, plus
    /// read-ahead) share a single load.
    pub(super) async fn plaintext(&self, e: &Extent) -> Result<Arc<Plain>, FsError> {
        if let Some(p) = Self::lock(&self.cache).get(&e.id) {
            self.read_stats.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(p);
        }
        self.read_stats.cache_misses.fetch_add(1, Ordering::Relaxed);
        let cell = Self::lock(&self.fetching).entry(e.id).or_default().clone();
        let result = cell.get_or_try_init(|| self.load_chunk(e)).await.cloned();
        let mut fetching = Self::lock(&self.fetching);
        if fetching.get(&e.id).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            fetching.remove(&e.id);
        }
        result
    }

    async fn load_chunk(&self, e: &Extent) -> Result<Arc<Plain>, FsError> {
        if let Some(p) = Self::lock(&self.cache).get(&e.id) {
            return Ok(p);
        }
        // Bounds the memory of loads in flight (ciphertext + plaintext per load) beside the cache.
        let _slot = self.loads.acquire().await.map_err(|_| FsError::Unavailable("shutting down".into()))?;
        let plain = match self.load_local(e).await? {
            Some(plain) => plain,
            None => {
                let ct = self.fetch(e).await?;
                self.open_fetched(e, &ct)?
            }
        };
        let plain = Arc::new(plain);
        Self::lock(&self.cache).put(e.id, plain.clone());
        Ok(plain)
    }

    /// The plaintext from a local copy: the outbox (not uploaded yet) or the disk cache. A disk
    /// cache copy that does not open is dropped (the fabric has the chunk).
    async fn load_local(&self, e: &Extent) -> Result<Option<Plain>, FsError> {
        let small = self.m.view().small_outbox(&e.addr)?;
        let outbox = match small {
            Some(ct) => Some(ct),
            None => tokio::fs::read(self.outbox.join(e.addr.to_hex())).await.ok(),
        };
        if let Some(ct) = outbox {
            return self.open_chunk(e, ct).map(|p| Some(p.into()));
        }
        let Some(disk) = &self.disk_cache else { return Ok(None) };
        // Read and decrypted in place in a pooled buffer, which becomes the cache entry.
        let mut buf = Self::lock(&self.cache).take_buffer();
        let opened = tokio::task::block_in_place(|| {
            let ct = disk.read_into(&e.addr, &mut buf)?;
            Some(self.open_in(e, &mut buf[ct.clone()], Checked::No).map(|len| ct.start..ct.start + len))
        });
        match opened {
            Some(Ok(plain)) => {
                self.read_stats.disk_hits.fetch_add(1, Ordering::Relaxed);
                Ok(Some(Plain::within(buf, plain)))
            }
            Some(Err(err)) => {
                Self::lock(&self.cache).give_back(buf);
                tracing::warn!(addr = ?e.addr, error = %err, "damaged chunk in the disk cache dropped; fetching it");
                disk.forget(&e.addr);
                Ok(None)
            }
            None => {
                Self::lock(&self.cache).give_back(buf);
                Ok(None)
            }
        }
    }

    /// A fetched ciphertext (the fabric verified it against its addr), copied block-aligned into
    /// a pooled buffer, kept in the disk cache from there for the next read (as uploads are) and
    /// decrypted in place: the buffer becomes the cache entry.
    fn open_fetched(&self, e: &Extent, ct: &[u8]) -> Result<Plain, FsError> {
        let mut buf = Self::lock(&self.cache).take_buffer();
        let start = buf.as_ptr().align_offset(super::direct_io::BLOCK);
        let at = start..start + ct.len();
        let Some(area) = buf.get_mut(at.clone()) else {
            Self::lock(&self.cache).give_back(buf);
            return Err(FsError::Unavailable(format!("chunk {:?}: larger than a chunk", e.addr)));
        };
        area.copy_from_slice(ct);
        if let Some(disk) = &self.disk_cache {
            tokio::task::block_in_place(|| disk.put_aligned(&e.addr, &mut buf, at.clone()));
        }
        match self.open_in(e, &mut buf[at], Checked::Already) {
            Ok(len) => Ok(Plain::within(buf, start..start + len)),
            Err(err) => {
                Self::lock(&self.cache).give_back(buf);
                Err(err)
            }
        }
    }

    /// Verifies a ciphertext against its address and decrypts it with this vault's secrets.
    fn open_chunk(&self, e: &Extent, mut ct: Vec<u8>) -> Result<Vec<u8>, FsError> {
        let len = self.open_in(e, &mut ct, Checked::No)?;
        ct.truncate(len);
        Ok(ct)
    }

    /// [`Vault::open_chunk`] in place; returns the plaintext's length. `checked`: whether the
    /// ciphertext was checked against its address already (by the fabric).
    fn open_in(&self, e: &Extent, ct: &mut [u8], checked: Checked) -> Result<usize, FsError> {
        use crate::domain::seal::{decrypt_checked_in_place, decrypt_in_place};
        let opened = match (&self.secrets, checked) {
            (Secrets::Owner, Checked::No) => self.keys.data().open_in_place(&e.id, &e.addr, ct),
            (Secrets::Owner, Checked::Already) => self.keys.data().open_checked_in_place(&e.id, ct),
            (Secrets::Shared, checked) => {
                let (key, _) = self.shared_secret(&e.addr)?;
                match checked {
                    Checked::No => decrypt_in_place(&key, &e.addr, ct),
                    Checked::Already => decrypt_checked_in_place(&key, ct),
                }
            }
        };
        opened.map_err(|err| FsError::Unavailable(err.to_string()))
    }

    /// Fetches a chunk from the fabric. Fails at once when the chunk failed within the last few
    /// seconds or the broker connection is known down (after [`misses::DOWN_GRACE`] for it to
    /// come back); otherwise waits up to `fetch_timeout` for an answer.
    async fn fetch(&self, e: &Extent) -> Result<bytes::Bytes, FsError> {
        let unavailable = |why: &str| FsError::Unavailable(format!("chunk {:?}: {why}", e.addr));
        let got = match self.fabric_for_read(&e.addr).await {
            Ok(fabric) => {
                self.fetch_from(&fabric, e).await.inspect_err(|why| self.misses.record(e.addr, why))
            }
            Err(why) => Err(why),
        };
        if got.is_err() {
            self.read_stats.fetch_failures.fetch_add(1, Ordering::Relaxed);
        } else {
            self.misses.forget(&e.addr);
        }
        got.map_err(|why| unavailable(&why))
    }

    /// The fabric, if a read may use it now; otherwise why not.
    async fn fabric_for_read(&self, addr: &crate::domain::ids::Addr) -> Result<Arc<F>, String> {
        if let Some((ago, why)) = self.misses.get(addr) {
            return Err(format!("{why} {} ms ago; not asked again so soon", ago.as_millis()));
        }
        let wait =
            if self.offline.load(Ordering::Relaxed) { Duration::ZERO } else { self.opts.fetch_timeout };
        let Some(fabric) = self.fabric_within(wait).await else {
            self.offline.store(true, Ordering::Relaxed);
            return Err("the fabric is unreachable (never connected since the mount started)".into());
        };
        let Some(down) = down_for(&*fabric).await else { return Ok(fabric) };
        let why = format!("the broker connection has been down for {:.1} s", down.as_secs_f64());
        self.misses.record(*addr, &why);
        Err(why)
    }

    /// Asks the fabric for one chunk, waiting up to `fetch_timeout`.
    async fn fetch_from(&self, fabric: &F, e: &Extent) -> Result<bytes::Bytes, String> {
        let mut hints: Vec<_> = self
            .m
            .read()
            .map_err(|err| err.to_string())?
            .chunk(&e.addr)
            .map_err(|err| err.to_string())?
            .map(|c| c.replicas.iter().map(|r| r.node).collect())
            .unwrap_or_default();
        // Spread reads over the replicas (the first one asked differs from chunk to chunk).
        if !hints.is_empty() {
            let first = e.addr.0[0] as usize % hints.len();
            hints.rotate_left(first);
        }
        let items = [(e.addr, self.proof_secret(&e.addr).map_err(|err| err.to_string())?)];
        let started = std::time::Instant::now();
        let got = match tokio::time::timeout(self.opts.fetch_timeout, fabric.get(&items, &hints)).await {
            Ok(Ok(got)) if !got.is_empty() => match got.into_iter().find(|(a, _)| *a == e.addr) {
                Some((_, ct)) => Ok(ct),
                None => Err("the fabric returned another chunk".to_string()),
            },
            Ok(Ok(_)) => Err("no node returned it".to_string()),
            Ok(Err(err)) => Err(err.to_string()),
            Err(_) => Err(format!("timed out after {} s", self.opts.fetch_timeout.as_secs())),
        };
        self.read_stats.fetches.observe(started.elapsed());
        got
    }

    /// A shared chunk's content key and proof-secret seed, from the share's manifest.
    fn shared_secret(&self, addr: &crate::domain::ids::Addr) -> Result<([u8; 32], [u8; 32]), FsError> {
        self.m
            .read()?
            .share_secret(addr)?
            .ok_or_else(|| FsError::Unavailable(format!("chunk {addr:?} is not part of this share")))
    }

    /// The proof secret that lets this vault fetch `addr`.
    pub(super) fn proof_secret(
        &self,
        addr: &crate::domain::ids::Addr,
    ) -> Result<crate::domain::proof::ProofSecret, FsError> {
        match self.secrets {
            Secrets::Owner => Ok(self.keys.proof_secret(addr)),
            Secrets::Shared => Ok(crate::domain::proof::ProofSecret::from_seed(&self.shared_secret(addr)?.1)),
        }
    }

    /// The fabric with its broker connection up, waiting up to `within` for a first connection
    /// (and a moment for a lost one to come back); else why not, for `quloud snapshot`, `audit`.
    pub async fn reachable_fabric(&self, within: Duration) -> Result<Arc<F>, FsError> {
        let Some(fabric) = self.fabric_within(within).await else {
            return Err(FsError::Unavailable("the fabric is unreachable (is the broker up?)".into()));
        };
        match down_for(&*fabric).await {
            None => Ok(fabric),
            Some(down) => Err(FsError::Unavailable(format!(
                "the broker is unreachable: the connection to it has been down for {} s",
                down.as_secs()
            ))),
        }
    }

    /// The fabric, waiting up to `within` for it to connect.
    pub async fn fabric_within(&self, within: std::time::Duration) -> Option<Arc<F>> {
        let mut rx = self.fabric.subscribe();
        let found = match tokio::time::timeout(within, rx.wait_for(|f| f.is_some())).await {
            Ok(Ok(f)) => f.clone(),
            _ => None,
        };
        found
    }
}

/// How long the fabric's broker connection has been down, or `None` if it is up or comes back
/// within what is left of [`DOWN_GRACE`](super::misses::DOWN_GRACE) since it went down (so once
/// it has been down that long, callers fail at once).
async fn down_for<F: ChunkFabric>(fabric: &F) -> Option<Duration> {
    let link = fabric.link();
    if link.connected {
        return None;
    }
    let now = crate::domain::unix_ms(std::time::SystemTime::now());
    let down = Duration::from_millis(now.saturating_sub(link.since_ms));
    if fabric.up_within(super::misses::DOWN_GRACE.saturating_sub(down)).await {
        return None;
    }
    Some(down.max(super::misses::DOWN_GRACE))
}

/// Whether a ciphertext was checked against its address before it reached the opener.
#[derive(Clone, Copy)]
enum Checked {
    /// Not yet: a local copy (outbox, disk cache).
    No,
    /// By the fabric, which returns only ciphertexts it checked.
    Already,
}

fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64)? {
            0 => break,
            n => done += n,
        }
    }
    Ok(done)
}
