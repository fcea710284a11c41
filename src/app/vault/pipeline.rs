//! The background pipeline: chunk and seal closed files into the outbox (durably, before their
//! staging copy goes), upload the outbox with quorum, and checkpoint the manifest.

use super::Vault;
use crate::domain::chunker::chunk_stream;
use crate::domain::fs::{ChunkRecord, ChunkState, Extent, FsError, Ino, Replica};
use crate::domain::ids::Addr;
use crate::domain::unix_ms;
use crate::ports::fabric::{ChunkFabric, Publish};
use futures::StreamExt;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;

/// Counters of the pipeline, for status.
#[derive(Debug, Default)]
pub struct PipelineStats {
    /// Files chunked.
    pub files_chunked: AtomicU64,
    /// Chunks made durable.
    pub chunks_uploaded: AtomicU64,
    /// Upload attempts that failed.
    pub upload_failures: AtomicU64,
}

/// Reads a file from offset 0 with positional reads (no shared cursor).
struct PosReader<'a> {
    file: &'a File,
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

/// Runs the chunker, the uploader and the checkpointer until `cancel` fires.
pub async fn run_pipeline<F: ChunkFabric + 'static>(
    vault: Arc<Vault<F>>,
    stats: Arc<PipelineStats>,
    cancel: CancellationToken,
) {
    let chunker = tokio::spawn(chunk_loop(vault.clone(), stats.clone(), cancel.clone()));
    let uploader = tokio::spawn(upload_loop(vault.clone(), stats, cancel.clone()));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {
                let v = vault.clone();
                if let Ok(Err(e)) = tokio::task::spawn_blocking(move || v.checkpoint()).await {
                    tracing::error!(error = %e, "manifest checkpoint failed");
                }
            }
        }
    }
    let _ = chunker.await;
    let _ = uploader.await;
    let _ = vault.checkpoint();
}

async fn chunk_loop<F: ChunkFabric + 'static>(
    vault: Arc<Vault<F>>,
    stats: Arc<PipelineStats>,
    cancel: CancellationToken,
) {
    loop {
        let queued: Vec<Ino> = std::mem::take(&mut *Vault::<F>::lock(&vault.chunk_queue));
        if queued.is_empty() {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = vault.chunk_work.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
            continue;
        }
        let mut seen = std::collections::HashSet::new();
        for ino in queued.into_iter().filter(|i| seen.insert(*i)) {
            let v = vault.clone();
            match tokio::task::spawn_blocking(move || v.chunk_file(ino)).await {
                Ok(Ok(true)) => {
                    stats.files_chunked.fetch_add(1, Ordering::Relaxed);
                    vault.upload_work.notify_one();
                }
                Ok(Ok(false)) => {}
                Ok(Err(e)) => tracing::error!(ino, error = %e, "chunking a file failed; it stays staged"),
                Err(e) => tracing::error!(ino, error = %e, "chunking task failed"),
            }
        }
        vault.uploaded.notify_waiters();
    }
}

async fn upload_loop<F: ChunkFabric + 'static>(
    vault: Arc<Vault<F>>,
    stats: Arc<PipelineStats>,
    cancel: CancellationToken,
) {
    let mut backoff = Duration::from_millis(200);
    while !cancel.is_cancelled() {
        let queue = vault.m.read().and_then(|rx| rx.uploads(1024)).unwrap_or_default();
        let fabric = if queue.is_empty() { None } else { vault.fabric_within(Duration::from_secs(1)).await };
        let Some(fabric) = fabric else {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = vault.upload_work.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
            continue;
        };
        let before = stats.chunks_uploaded.load(Ordering::Relaxed);
        futures::stream::iter(queue)
            .for_each_concurrent(vault.opts.upload_concurrency, |addr| {
                let (vault, fabric, stats) = (vault.clone(), fabric.clone(), stats.clone());
                async move {
                    match vault.upload_one(&*fabric, addr).await {
                        Ok(()) => {
                            stats.chunks_uploaded.fetch_add(1, Ordering::Relaxed);
                            vault.uploaded.notify_waiters();
                        }
                        Err(e) => {
                            stats.upload_failures.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(?addr, error = %e, "upload failed; will retry");
                        }
                    }
                }
            })
            .await;
        if stats.chunks_uploaded.load(Ordering::Relaxed) == before {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        } else {
            backoff = Duration::from_millis(200);
        }
    }
}

impl<F: ChunkFabric + 'static> Vault<F> {
    fn outbox_path(&self, addr: &Addr) -> std::path::PathBuf {
        self.outbox.join(addr.to_hex())
    }

    /// Chunks and seals a staged file into the outbox and commits its new extents; returns
    /// false when the file is still being written (it is queued again at its last close).
    pub(super) fn chunk_file(&self, ino: Ino) -> Result<bool, FsError> {
        let snapshot = {
            let files = Self::lock(&self.files);
            match files.get(&ino) {
                Some(f) if f.writers == 0 => f.staging.clone().map(|s| (s, f.size, f.mtime, f.generation)),
                _ => None,
            }
        };
        let Some((file, size, mtime, generation)) = snapshot else { return Ok(false) };
        let mut extents = Vec::new();
        let mut fresh: Vec<(Addr, ChunkRecord)> = Vec::new();
        let reader = PosReader { file: &file, pos: 0, end: size };
        for chunk in chunk_stream(reader, self.keys.chunker_seed()) {
            let (offset, data) = chunk?;
            let sealed = self.keys.seal(&data);
            extents.push(Extent { offset, len: data.len() as u32, id: sealed.id, addr: sealed.addr });
            // Just-written data is the likeliest to be read next.
            Self::lock(&self.cache).put(sealed.id, Arc::new(data));
            let known =
                self.m.read()?.chunk(&sealed.addr)?.is_some() || fresh.iter().any(|(a, _)| *a == sealed.addr);
            if !known {
                let path = self.outbox_path(&sealed.addr);
                if !path.exists() {
                    let tmp = path.with_extension("tmp");
                    let mut f = File::create(&tmp)?;
                    f.write_all(&sealed.ciphertext)?;
                    f.sync_all()?;
                    std::fs::rename(&tmp, &path)?;
                }
                let record = ChunkRecord {
                    id: sealed.id,
                    ct_len: sealed.ciphertext.len() as u32,
                    refs: 0,
                    state: ChunkState::Pending,
                    replicas: Vec::new(),
                };
                fresh.push((sealed.addr, record));
            }
        }
        File::open(&self.outbox)?.sync_all()?;
        // Commit only if nothing changed while we read; hold the lock so no write slips in.
        let mut files = Self::lock(&self.files);
        let unchanged = files.get(&ino).is_some_and(|f| f.generation == generation && f.writers == 0);
        if !unchanged {
            drop(files);
            // Not committed: drop the outbox copies this pass made (the next pass rewrites them).
            let rx = self.m.read()?;
            for (addr, _) in &fresh {
                if !rx.upload_queued(addr)? {
                    let _ = std::fs::remove_file(self.outbox_path(addr));
                }
            }
            return Ok(false);
        }
        let now = unix_ms(SystemTime::now());
        let committed = self.m.write_durable(|tx| {
            let mut a = tx.inode(ino)?;
            for (addr, rec) in &fresh {
                if tx.chunk(addr)?.is_none() {
                    tx.put_chunk(addr, rec)?;
                    tx.set_upload(addr, Some(now))?;
                }
            }
            tx.set_extents(ino, &extents)?;
            a.size = size;
            a.mtime = mtime;
            tx.put_inode(&a)?;
            tx.set_staged(ino, false)
        });
        match committed {
            Ok(()) => {}
            Err(FsError::NotFound) => {
                // Deleted while we chunked.
                files.remove(&ino);
                drop(files);
                let _ = std::fs::remove_file(self.staging_path(ino));
                return Ok(false);
            }
            Err(e) => return Err(e),
        }
        let drop_entry = match files.get_mut(&ino) {
            Some(f) => {
                f.staging = None;
                f.handles == 0
            }
            None => false,
        };
        if drop_entry {
            files.remove(&ino);
        }
        drop(files);
        std::fs::remove_file(self.staging_path(ino))?;
        Ok(true)
    }

    /// Stores one outbox chunk with quorum and records its replicas.
    async fn upload_one(&self, fabric: &F, addr: Addr) -> Result<(), FsError> {
        let path = self.outbox_path(&addr);
        let ct = match tokio::fs::read(&path).await {
            Ok(ct) => ct,
            Err(e) => {
                tracing::error!(?addr, error = %e, "outbox chunk missing; dropping it from the queue");
                self.m.write(|tx| tx.set_upload(&addr, None))?;
                return Ok(());
            }
        };
        if Addr::of(&ct) != addr {
            return Err(FsError::Io(format!("outbox chunk {addr:?} is corrupt")));
        }
        let commitment = self.keys.proof_secret(&addr).commitment();
        let acks = fabric
            .store(Publish { addr, commitment, ciphertext: &ct }, self.opts.replicas)
            .await
            .map_err(|e| FsError::Unavailable(e.to_string()))?;
        let replicas: Vec<Replica> = acks
            .iter()
            .map(|a| Replica { node: a.node, slot: a.slot, lease_expiry_ms: a.lease_expiry_ms })
            .collect();
        self.m.write_durable(|tx| {
            if let Some(mut c) = tx.chunk(&addr)? {
                c.state = ChunkState::Durable;
                c.replicas = replicas.clone();
                tx.put_chunk(&addr, &c)?;
            }
            tx.set_upload(&addr, None)
        })?;
        let _ = tokio::fs::remove_file(&path).await;
        Ok(())
    }
}
