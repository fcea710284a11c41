//! The chunker: seals closed files' chunks into the outbox (durably, before their staging copy
//! goes), queues new chunks for upload and commits the files' new extents.

use super::PipelineStats;
use crate::app::vault::Tx;
use crate::app::vault::Vault;
use crate::domain::chunker::chunk_stream;
use crate::domain::fs::{ChunkRecord, Extent, FsError, Ino};
use crate::domain::ids::Addr;
use crate::ports::fabric::ChunkFabric;
use crate::ports::local_disk::StagedFile;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A staged file sealed into the outbox, waiting to be committed.
pub(in crate::app::vault) struct Prepared {
    pub(in crate::app::vault) ino: Ino,
    size: u64,
    mtime: crate::domain::fs::Time,
    generation: u64,
    extents: Vec<Extent>,
    fresh: Vec<(Addr, ChunkRecord)>,
    /// Ciphertexts of small new chunks, committed into the manifest instead of outbox files.
    small: Vec<(Addr, Vec<u8>)>,
}

/// Chunks up to this size wait in the manifest rather than in an outbox file of their own
/// (creating and deleting many tiny files costs more than the data).
pub(in crate::app::vault) const SMALL_CHUNK: usize = 64 * 1024;

/// Once this much new ciphertext is sealed, it is queued for upload before the rest of the
/// batch is sealed: a large file starts uploading at once instead of after all of it is sealed.
const SEAL_SEGMENT: usize = 32 << 20;

/// New chunks of a batch sealed but not yet queued, and those queued early (their files are
/// still being sealed, so no file references them yet).
#[derive(Default)]
pub(in crate::app::vault) struct Early {
    waiting: Vec<(Addr, ChunkRecord, Option<Vec<u8>>)>,
    waiting_bytes: usize,
    /// New ciphertext after which the waiting chunks are queued (`SEAL_SEGMENT`, less in tests).
    segment: usize,
    queued: HashSet<Addr>,
}

impl Early {
    fn new(segment: usize) -> Self {
        Early { segment, ..Early::default() }
    }
}

/// Reads a file from offset 0 with positional reads (no shared cursor).
struct PosReader<'a> {
    file: &'a dyn StagedFile,
    pos: u64,
    end: u64,
}

impl std::io::Read for PosReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = (self.end - self.pos).min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// How long files whose chunking failed wait before they are tried again.
const CHUNK_RETRY: Duration = Duration::from_secs(5);

pub(super) async fn chunk_loop<F: ChunkFabric + 'static>(
    vault: Arc<Vault<F>>,
    stats: Arc<PipelineStats>,
    cancel: CancellationToken,
) {
    let mut last_retry = tokio::time::Instant::now();
    loop {
        let ready = Vault::<F>::lock(&vault.pipeline.backoff.chunk).ready(vault.clock.now_ms());
        if last_retry.elapsed() >= CHUNK_RETRY && ready {
            last_retry = tokio::time::Instant::now();
            let retry = std::mem::take(&mut *Vault::<F>::lock(&vault.pipeline.chunk_retry));
            Vault::<F>::lock(&vault.pipeline.chunk_queue).extend(retry);
        }
        // Let closes accumulate briefly (a batch shares one syncfs and one durable commit), unless
        // plenty are already waiting.
        if Vault::<F>::lock(&vault.pipeline.chunk_queue).len() < 256 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let queued: Vec<Ino> = std::mem::take(&mut *Vault::<F>::lock(&vault.pipeline.chunk_queue));
        if queued.is_empty() {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = vault.pipeline.chunk_work.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
            continue;
        }
        let mut seen = HashSet::new();
        let batch: Vec<Ino> = queued.into_iter().filter(|i| seen.insert(*i)).collect();
        let v = vault.clone();
        let chunked = tokio::task::spawn_blocking(move || (v.chunk_files(&batch), batch)).await;
        match chunked.map(|(result, batch)| result.map_err(|e| (e, batch))) {
            Ok(Ok(n)) if n > 0 => {
                stats.files_chunked.fetch_add(n as u64, Ordering::Relaxed);
                vault.pipeline.upload_work.notify_one();
                vault.chunking_went(Ok(()));
            }
            Ok(Ok(_)) => {}
            Ok(Err((e, batch))) => {
                Vault::<F>::lock(&vault.pipeline.chunk_retry).extend(batch);
                vault.chunking_went(Err(&e));
            }
            Err(e) => tracing::error!(error = %e, "chunking task failed"),
        }
        vault.pipeline.uploaded.notify_waiters();
    }
}

/// Records a sealed chunk (if new) and queues it for upload, unless it is already stored and
/// referenced. A chunk waiting for garbage collection is uploaded again (holders re-ack, and a
/// copy deleted meanwhile is stored anew). A small chunk's ciphertext (`small`) is kept in the
/// manifest; a larger one must already be in the outbox.
pub(in crate::app::vault) fn queue_upload(
    tx: &Tx<'_>,
    addr: &Addr,
    rec: &ChunkRecord,
    small: Option<&[u8]>,
    now: u64,
) -> Result<(), FsError> {
    let queue = match tx.chunk(addr)? {
        None => {
            tx.put_chunk(addr, rec)?;
            true
        }
        Some(c) => c.refs == 0,
    };
    if queue {
        tx.set_upload(addr, Some(now))?;
        if let Some(ct) = small {
            tx.set_small_outbox(addr, Some(ct))?;
        }
    }
    Ok(())
}

impl<F: ChunkFabric + 'static> Vault<F> {
    /// Seals a staged file's chunks into the outbox (not yet fsynced) and returns what to commit;
    /// `None` when the file is still being written (it is queued again at its last close).
    fn prepare(&self, ino: Ino, early: &mut Early) -> Result<Option<Prepared>, FsError> {
        let snapshot = {
            let files = Self::lock(&self.writer.files);
            match files.get(&ino) {
                Some(f) if f.writers == 0 => {
                    f.staging.clone().map(|s| (s, f.size, f.mtime, f.generation, f.partial.clone()))
                }
                _ => None,
            }
        };
        let Some((file, size, mtime, generation, partial)) = snapshot else { return Ok(None) };
        let mut p = Prepared {
            ino,
            size,
            mtime,
            generation,
            extents: Vec::new(),
            fresh: Vec::new(),
            small: Vec::new(),
        };
        let mut fresh = HashSet::new();
        match partial {
            Some(part) => self.rechunk(&mut p, &mut fresh, early, &*file, &part)?,
            None => {
                let reader = PosReader { file: &*file, pos: 0, end: size };
                for chunk in chunk_stream(reader, self.keys.chunker_seed()) {
                    let (offset, data) = chunk?;
                    self.seal_into(&mut p, &mut fresh, early, offset, data)?;
                }
            }
        }
        Ok(Some(p))
    }

    /// Seals one chunk of a file at `offset` into the outbox, unless it is known already.
    fn seal_into(
        &self,
        p: &mut Prepared,
        fresh: &mut HashSet<Addr>,
        early: &mut Early,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<(), FsError> {
        let sealed = self.keys.seal(&data);
        p.extents.push(Extent { offset, len: data.len() as u32, id: sealed.id, addr: sealed.addr });
        // Just-written data is the likeliest to be read next.
        let mut cache = Self::lock(&self.reader.cache);
        let plain = Arc::new(cache.copy_in(&data));
        cache.put(sealed.id, plain);
        drop(cache);
        // A chunk waiting for garbage collection (no references) may be deleted from its
        // replicas at any moment, so it is sealed again as if new.
        let known =
            fresh.contains(&sealed.addr) || self.m.view().chunk(&sealed.addr)?.is_some_and(|c| c.refs > 0);
        if known {
            return Ok(());
        }
        let small = sealed.ciphertext.len() <= SMALL_CHUNK;
        if small {
            p.small.push((sealed.addr, sealed.ciphertext.clone()));
        } else {
            self.pipeline.outbox.write(&sealed.addr, &sealed.ciphertext)?;
        }
        let rec = ChunkRecord::pending(sealed.id, sealed.ciphertext.len());
        fresh.insert(sealed.addr);
        early.waiting_bytes += sealed.ciphertext.len();
        early.waiting.push((sealed.addr, rec.clone(), small.then_some(sealed.ciphertext)));
        p.fresh.push((sealed.addr, rec));
        if early.waiting_bytes >= early.segment {
            self.queue_early(early)?;
        }
        Ok(())
    }

    /// Queues the new chunks sealed so far for upload, ahead of their files' commit: makes
    /// their outbox files durable, then records them as pending and sealing (so garbage
    /// collection leaves them alone until the files commit or the next mount releases them).
    /// Chunks that have a record already are left to the files' commit.
    /// On failure everything stays waiting, for the batch's commit to sync and queue.
    fn queue_early(&self, early: &mut Early) -> Result<(), FsError> {
        if early.waiting.iter().any(|(_, _, small)| small.is_none()) {
            self.sync_outbox()?;
        }
        let now = self.clock.now_ms();
        let queued = self.m.write(|tx| {
            let mut queued = Vec::new();
            for (addr, rec, small) in &early.waiting {
                if tx.chunk(addr)?.is_none() {
                    queue_upload(tx, addr, rec, small.as_deref(), now)?;
                    tx.set_sealing(addr, Some(now))?;
                    queued.push(*addr);
                }
            }
            Ok(queued)
        })?;
        early.waiting.clear();
        early.waiting_bytes = 0;
        early.queued.extend(queued);
        self.pipeline.upload_work.notify_one();
        Ok(())
    }

    /// Chunks a batch of staged files: seals them into the outbox, makes the outbox durable with
    /// one `syncfs`, commits all their new extents in one durable transaction, and only then
    /// drops their staging copies. Returns how many files were committed.
    pub(in crate::app::vault) fn chunk_files(&self, inos: &[Ino]) -> Result<usize, FsError> {
        let (prepared, early) = self.seal_batch(inos, SEAL_SEGMENT);
        self.commit_batch(prepared, early)
    }

    /// Notes how chunking went: failures back off (logged once per episode), a success ends
    /// the episode.
    fn chunking_went(&self, result: Result<(), &FsError>) {
        let mut backoff = Self::lock(&self.pipeline.backoff.chunk);
        match result {
            Err(e) if backoff.failed(self.clock.now_ms()) => {
                let retry = backoff.delay().max(CHUNK_RETRY);
                tracing::error!(error = %e, "chunking closed files failed; they stay staged and are tried again (with backoff, first in {retry:?})");
            }
            Err(e) => tracing::debug!(error = %e, "chunking closed files failed again"),
            Ok(()) if backoff.succeeded() => tracing::info!("chunking closed files works again"),
            Ok(()) => {}
        }
    }

    /// Seals a batch of staged files into the outbox, queueing new chunks for upload every
    /// `segment` bytes of new ciphertext.
    pub(in crate::app::vault) fn seal_batch(&self, inos: &[Ino], segment: usize) -> (Vec<Prepared>, Early) {
        let mut early = Early::new(segment);
        let mut prepared = Vec::new();
        for &ino in inos {
            match self.prepare(ino, &mut early) {
                Ok(Some(p)) => prepared.push(p),
                Ok(None) => {}
                Err(e) => {
                    Self::lock(&self.pipeline.chunk_retry).push(ino);
                    self.chunking_went(Err(&e));
                }
            }
        }
        (prepared, early)
    }

    /// Commits a sealed batch: see [`Vault::chunk_files`].
    pub(in crate::app::vault) fn commit_batch(
        &self,
        prepared: Vec<Prepared>,
        early: Early,
    ) -> Result<usize, FsError> {
        if prepared.is_empty() && early.queued.is_empty() {
            return Ok(0);
        }
        if early.waiting.iter().any(|(_, _, small)| small.is_none()) {
            self.sync_outbox()?;
        }
        // Commit only files unchanged since they were read; hold the lock so no write slips in.
        let mut files = Self::lock(&self.writer.files);
        let (ready, stale): (Vec<Prepared>, Vec<Prepared>) = prepared
            .into_iter()
            .partition(|p| files.get(&p.ino).is_some_and(|f| f.generation == p.generation && f.writers == 0));
        let now = self.clock.now_ms();
        let (committed, retry) = self.m.write_durable(|tx| {
            let (mut done, mut retry) = (Vec::new(), Vec::new());
            for p in &ready {
                // Deleted meanwhile: nothing to commit.
                let Ok(mut a) = tx.inode(p.ino) else { continue };
                // A chunk seen as known while sealing (or queued early) may have been
                // garbage-collected since: leave the file staged and seal it again.
                let ours: HashSet<&Addr> =
                    p.fresh.iter().map(|(a, _)| a).filter(|a| !early.queued.contains(a)).collect();
                let mut gone = false;
                for e in &p.extents {
                    gone |= !ours.contains(&e.addr) && tx.chunk(&e.addr)?.is_none();
                }
                if gone {
                    retry.push(p.ino);
                    continue;
                }
                let small: HashMap<&Addr, &[u8]> = p.small.iter().map(|(a, ct)| (a, ct.as_slice())).collect();
                for (addr, rec) in p.fresh.iter().filter(|(a, _)| ours.contains(a)) {
                    queue_upload(tx, addr, rec, small.get(addr).copied(), now)?;
                }
                tx.set_extents(p.ino, &p.extents)?;
                a.size = p.size;
                a.mtime = p.mtime;
                if let Some(meta) = files.get(&p.ino).and_then(|f| f.meta) {
                    meta.apply(&mut a);
                }
                tx.put_inode(&a)?;
                tx.set_staged(p.ino, false)?;
                done.push(p.ino);
            }
            // After every file's references are in: an early chunk no file took (its file
            // changed or went meanwhile) is unreferenced from now on.
            for addr in &early.queued {
                tx.release_sealed(addr)?;
            }
            Ok((done, retry))
        })?;
        let mut retired = Vec::new();
        for p in &ready {
            if retry.contains(&p.ino) {
                continue; // still staged; sealed again below
            }
            let (open, drop_entry) = match files.get_mut(&p.ino) {
                Some(f) if committed.contains(&p.ino) => {
                    f.meta = None; // written with the file
                    (f.staging.take(), f.handles == 0)
                }
                Some(f) => (f.staging.take(), true), // deleted meanwhile
                None => (None, false),
            };
            if drop_entry {
                files.remove(&p.ino);
            }
            retired.push((p.ino, open));
        }
        // Files changed while they were sealed (say, a utimes right after close) and no longer
        // open for writing are sealed again; nothing else would queue them before a remount.
        let mut retry = retry;
        retry.extend(
            stale
                .iter()
                .map(|p| p.ino)
                .filter(|i| files.get(i).is_some_and(|f| f.writers == 0 && f.staging.is_some())),
        );
        drop(files);
        for (ino, open) in retired {
            self.writer.staging.retire(crate::ports::local_disk::StagedName::Staged(ino), open);
        }
        if !retry.is_empty() {
            Self::lock(&self.pipeline.chunk_queue).extend(&retry);
            self.pipeline.chunk_work.notify_one();
        }
        // Outbox copies nobody queued (a lost race with a writer or with garbage collection).
        let rx = self.m.read()?;
        for p in stale.iter().chain(&ready) {
            // (Those queued early belong to the uploader, which retires them into the disk cache.)
            for (addr, _) in p.fresh.iter().filter(|(a, _)| !early.queued.contains(a)) {
                if !rx.upload_queued(addr)? {
                    self.pipeline.outbox.remove(addr);
                }
            }
        }
        Ok(committed.len())
    }
}

#[path = "rechunk.rs"]
mod rechunk;

#[cfg(test)]
#[path = "chunker_tests.rs"]
mod tests;
