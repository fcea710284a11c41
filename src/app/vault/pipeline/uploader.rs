//! The uploader: stores the outbox's chunks with quorum as a continuous pipeline, records them
//! as durable, and steps back while the filesystem is busy with many small files.

use super::PipelineStats;
use crate::app::vault::vetting::{counted, fleet};
use crate::app::vault::Vault;
use crate::domain::fs::{ChunkState, FsError, Replica};
use crate::domain::ids::Addr;
use crate::ports::fabric::{ChunkFabric, Publish, StoreGoal};
use futures::StreamExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long a chunk whose upload failed, or that was busy, waits before it is tried again.
const UPLOAD_RETRY: Duration = Duration::from_secs(2);
/// How often finished uploads are recorded (one durable commit) at the latest; sooner once 256
/// are waiting.
const UPLOAD_COMMIT_EVERY: Duration = Duration::from_millis(250);

/// What became of one queued chunk.
enum Upload {
    /// Stored with quorum: `bytes` of ciphertext.
    Stored { bytes: u64 },
    /// Its outbox copy was missing: dropped from the queue.
    Dropped,
    /// Another task holds it: try again later.
    Busy,
}

/// Uploads the outbox as a continuous pipeline: up to `upload_concurrency` chunks in flight, and
/// each finished upload makes room for the next queued chunk at once. (Working in fixed batches
/// made every batch wait for its slowest chunk: with thousands of small files, most of the time
/// went to those tails.)
///
/// Uploads step back (to `foreground_uploads` at once) while files are being created and renamed
/// in quick succession (`foreground_quiet` apart or less): each small
/// file's upload costs the broker and the nodes far more CPU than writing it locally, and on a
/// machine that also runs them (a NAS, `quloud up`) a full-speed upload halves the speed of the
/// rsync feeding it. Everything is staged durably meanwhile; the upload catches up once the
/// namespace calls pause. Writes of file data do not count, so a large copy uploads as it goes.
pub(super) async fn upload_loop<F: ChunkFabric + 'static>(
    vault: Arc<Vault<F>>,
    stats: Arc<PipelineStats>,
    cancel: CancellationToken,
) {
    let mut inflight = futures::stream::FuturesUnordered::new();
    // Chunks in flight, and chunks that failed or were busy with when to try them again.
    let mut active = std::collections::HashSet::new();
    let mut later: std::collections::HashMap<Addr, tokio::time::Instant> = std::collections::HashMap::new();
    let mut commit_tick = tokio::time::interval(UPLOAD_COMMIT_EVERY);
    let mut retry_tick = tokio::time::interval(UPLOAD_RETRY);
    let concurrency = vault.opts.upload_concurrency.max(1);
    loop {
        let limit = if vault.namespace_busy(vault.opts.foreground_quiet) {
            vault.opts.foreground_uploads.clamp(1, concurrency)
        } else {
            concurrency
        };
        if inflight.len() < limit {
            let now = tokio::time::Instant::now();
            later.retain(|_, at| *at > now);
            // Too few houses for the placement rule: the chunks stay queued (status says why).
            let next = match vault.placement_blocked() {
                Some(_) => Vec::new(),
                None => vault.next_uploads(limit - inflight.len(), &active, &later),
            };
            let fabric =
                if next.is_empty() { None } else { vault.fabric_within(Duration::from_secs(1)).await };
            if let Some(fabric) = fabric {
                for addr in next {
                    active.insert(addr);
                    let (vault, fabric) = (vault.clone(), fabric.clone());
                    inflight.push(async move { (addr, vault.upload_one(&*fabric, addr).await) });
                }
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            Some((addr, result)) = inflight.next() => {
                active.remove(&addr);
                match result {
                    Ok(Upload::Stored { bytes }) => {
                        stats.chunks_uploaded.fetch_add(1, Ordering::Relaxed);
                        stats.uploaded_bytes.fetch_add(bytes, Ordering::Relaxed);
                        if Vault::<F>::lock(&vault.pipeline.uploads_done).len() >= 256 {
                            vault.commit_uploads();
                        }
                    }
                    Ok(Upload::Dropped) => {}
                    Ok(Upload::Busy) => {
                        later.insert(addr, tokio::time::Instant::now() + UPLOAD_RETRY); // busy
                    }
                    Err(e) => {
                        stats.upload_failures.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(?addr, error = %e, "upload failed; will retry");
                        later.insert(addr, tokio::time::Instant::now() + UPLOAD_RETRY);
                    }
                }
            }
            _ = vault.pipeline.upload_work.notified(), if inflight.len() < concurrency => {}
            _ = commit_tick.tick() => vault.commit_uploads(),
            _ = retry_tick.tick() => {}
        }
    }
    // An unmount does not wait for stores that cannot reach quorum (too few nodes): the chunks
    // stay queued, and the next mount publishes them again (nodes re-ack what they hold).
    vault.commit_uploads();
}

impl<F: ChunkFabric + 'static> Vault<F> {
    /// Up to `n` queued chunks to upload next: neither in flight (`active`), nor waiting to be
    /// tried again (`later`), nor uploaded and waiting to be recorded.
    fn next_uploads(
        &self,
        n: usize,
        active: &std::collections::HashSet<Addr>,
        later: &std::collections::HashMap<Addr, tokio::time::Instant>,
    ) -> Vec<Addr> {
        let done: std::collections::HashSet<Addr> =
            Self::lock(&self.pipeline.uploads_done).iter().map(|(a, _)| *a).collect();
        let skip = active.len() + later.len() + done.len();
        let queue = match self.m.view().uploads(n + skip) {
            Ok(q) => q,
            Err(e) => {
                tracing::error!(error = %e, "reading the upload queue failed");
                return Vec::new();
            }
        };
        queue
            .into_iter()
            .filter(|a| !active.contains(a) && !later.contains_key(a) && !done.contains(a))
            .take(n)
            .collect()
    }

    /// Records finished uploads in one durable transaction, then removes their outbox copies.
    /// They stay listed in `uploads_done` until the transaction has succeeded, so that garbage
    /// collection never forgets a chunk whose fresh replicas are not recorded yet, and a failed
    /// record (a full disk) is retried with backoff instead of uploading them again.
    pub(in crate::app::vault) fn commit_uploads(&self) {
        let done = Self::lock(&self.pipeline.uploads_done).clone();
        if done.is_empty() || !Self::lock(&self.pipeline.backoff.record).ready(self.clock.now_ms()) {
            return;
        }
        let fleet = match fleet(self) {
            Ok(f) => f,
            Err(e) => return tracing::debug!(error = %e, "reading node records failed; recording later"),
        };
        // Chunks whose replicas do not count yet (nodes not vetted): stored, out of the queue,
        // but pending with their local copy kept until the vetting audit.
        let mut waiting: std::collections::HashSet<Addr> = std::collections::HashSet::new();
        let result = self.m.write_durable(|tx| {
            for (addr, replicas) in &done {
                if let Some(mut c) = tx.chunk(addr)? {
                    c.replicas = replicas.clone();
                    c.state = if counted(self, &fleet, &c).0.len() >= self.opts.replicas {
                        ChunkState::Durable
                    } else {
                        waiting.insert(*addr);
                        ChunkState::Pending
                    };
                    tx.put_chunk(addr, &c)?;
                }
                tx.set_upload(addr, None)?;
                if !waiting.contains(addr) {
                    tx.set_small_outbox(addr, None)?;
                }
            }
            Ok(())
        });
        let mut backoff = Self::lock(&self.pipeline.backoff.record);
        match result {
            Ok(()) => {
                if backoff.succeeded() {
                    tracing::info!(chunks = done.len(), "finished uploads are recorded again");
                }
                drop(backoff);
                let ended: std::collections::HashSet<Addr> = done.iter().map(|(a, _)| *a).collect();
                Self::lock(&self.pipeline.uploads_done).retain(|(a, _)| !ended.contains(a));
                for (addr, _) in done.iter().filter(|(a, _)| !waiting.contains(a)) {
                    self.retire_outbox(addr);
                }
                if !waiting.is_empty() {
                    tracing::debug!(
                        chunks = waiting.len(),
                        "stored on nodes not vetted yet; durable once they pass"
                    );
                    self.vetting_due();
                }
                self.pipeline.uploaded.notify_waiters();
            }
            Err(e) if backoff.failed(self.clock.now_ms()) => {
                let retry = backoff.delay();
                tracing::error!(error = %e, chunks = done.len(), "recording finished uploads failed; they are kept and recorded later (retried with backoff, first in {retry:?})");
            }
            Err(e) => tracing::debug!(error = %e, "recording finished uploads failed again"),
        }
    }

    /// An uploaded chunk leaves the outbox: into the disk cache when there is one. (A small
    /// chunk, kept in the manifest until uploaded, was written to the disk cache by
    /// `upload_one`: a file's small tail chunk must read offline like the rest of it.)
    pub(in crate::app::vault) fn retire_outbox(&self, addr: &Addr) {
        match &self.reader.disk_cache {
            Some(disk) => disk.adopt(addr, &self.pipeline.outbox.path(addr)),
            None => self.pipeline.outbox.remove(addr),
        }
    }

    /// Stores one outbox chunk with quorum and records its replicas; `false` when the chunk is
    /// busy (its replicas are being deleted by garbage collection) and must wait.
    async fn upload_one(&self, fabric: &F, addr: Addr) -> Result<Upload, FsError> {
        let Some(_claim) = self.pipeline.claims.claim(addr) else { return Ok(Upload::Busy) };
        let small = self.m.view().small_outbox(&addr)?;
        let is_small = small.is_some();
        let read = match small {
            Some(ct) => Ok((0..ct.len(), ct)),
            None => {
                tokio::task::block_in_place(|| self.pipeline.outbox.read(&addr)).map(|(buf, at)| (at, buf))
            }
        };
        let (at, buf) = match read {
            Ok(read) => read,
            Err(e) => {
                tracing::error!(?addr, error = %e, "outbox chunk missing; dropping it from the queue");
                self.m.write(|tx| tx.set_upload(&addr, None))?;
                return Ok(Upload::Dropped);
            }
        };
        let ct = &buf[at];
        if Addr::of(ct) != addr {
            return Err(FsError::Io(format!("outbox chunk {addr:?} is corrupt")));
        }
        let secret = self.keys.proof_secret(&addr);
        let (commitment, control) = (secret.commitment(), secret.control_commitment());
        let placement = self.placement();
        if let Some(why) = self.placement_blocked() {
            return Err(FsError::Unavailable(why));
        }
        // Nodes written off (a failed vetting audit among them) are not asked again.
        let dead: Vec<crate::domain::ids::NodeId> = fleet(self)?.dead().into_iter().collect();
        let goal = StoreGoal {
            placement: placement.as_deref(),
            exclude: &dead,
            ..StoreGoal::fresh(self.opts.replicas)
        };
        let acks = fabric
            .store_controlled(Publish { addr, commitment, ciphertext: ct }, control, goal)
            .await
            .map_err(|e| FsError::Unavailable(e.to_string()))?;
        if let Some(disk) = self.reader.disk_cache.as_ref().filter(|_| is_small) {
            tokio::task::block_in_place(|| disk.put(&addr, ct));
        }
        let now = self.clock.now_ms();
        let replicas: Vec<Replica> =
            acks.iter().map(|a| Replica::acked(a.node, a.slot, a.lease_expiry_ms, now)).collect();
        Self::lock(&self.pipeline.uploads_done).push((addr, replicas));
        Ok(Upload::Stored { bytes: ct.len() as u64 })
    }
}
