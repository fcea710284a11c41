//! The background pipeline: the chunker seals closed files into the outbox (durably, before their
//! staging copy goes), the uploader stores the outbox with quorum, and the manifest is
//! checkpointed every second. Stats and the outbox are shared by both halves; neither half
//! imports the other.

mod chunker;
mod stats;
mod uploader;

pub(super) use chunker::{queue_upload, SMALL_CHUNK};
pub use stats::PipelineStats;

use super::claims::Claims;
use super::Vault;
use crate::domain::backoff::Backoff;
use crate::domain::fs::{Ino, Replica};
use crate::domain::ids::Addr;
use crate::ports::fabric::ChunkFabric;
use crate::ports::local_disk::Outbox;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The pipeline part's state: the outbox, the work queues between the halves, and the claims
/// that keep an upload, a heal and a collection of one chunk apart.
pub(super) struct Queues {
    /// Sealed chunks waiting for upload.
    pub(super) outbox: Arc<dyn Outbox>,
    /// Closed files waiting for the chunker.
    pub(super) chunk_queue: Mutex<Vec<Ino>>,
    /// Files whose chunking failed (a full or failing disk): queued again after `CHUNK_RETRY`.
    pub(super) chunk_retry: Mutex<Vec<Ino>>,
    /// Wakes the chunker (files closed).
    pub(super) chunk_work: Notify,
    /// Wakes the uploader (chunks queued).
    pub(super) upload_work: Notify,
    /// Wakes those waiting for chunks to become durable.
    pub(super) uploaded: Notify,
    /// Uploads acknowledged by quorum, waiting for their durable manifest commit.
    pub(super) uploads_done: Mutex<Vec<(Addr, Vec<Replica>)>>,
    /// Chunks being uploaded, healed or collected (one of these at a time per chunk).
    pub(super) claims: Claims,
    /// Retries of background work that failed (a full disk): recording finished uploads,
    /// chunking closed files, checkpoints.
    pub(super) backoff: Backoffs,
    /// Wakes the vetting of new nodes (replicas on nodes not vetted yet were recorded).
    pub(super) vet_work: Notify,
    /// Whether replicas may wait for vetting (set at load and when one is recorded; cleared by
    /// a vetting pass that found none).
    pub(super) vet_due: std::sync::atomic::AtomicBool,
}

/// One backoff per background job that writes to the home.
pub(super) struct Backoffs {
    pub(super) record: Mutex<Backoff>,
    pub(super) chunk: Mutex<Backoff>,
    pub(super) checkpoint: Mutex<Backoff>,
}

/// The first retry of failed background work; doubled up to [`RETRY_MAX`].
const RETRY_BASE: Duration = Duration::from_secs(1);
/// The longest wait between retries of failed background work.
const RETRY_MAX: Duration = Duration::from_secs(60);

impl Default for Backoffs {
    fn default() -> Self {
        let b = || Mutex::new(Backoff::new(RETRY_BASE, RETRY_MAX));
        Backoffs { record: b(), chunk: b(), checkpoint: b() }
    }
}

impl Queues {
    /// Empty queues over `outbox`.
    pub(super) fn new(outbox: Arc<dyn Outbox>) -> Self {
        Queues {
            outbox,
            chunk_queue: Mutex::default(),
            chunk_retry: Mutex::default(),
            chunk_work: Notify::new(),
            upload_work: Notify::new(),
            uploaded: Notify::new(),
            uploads_done: Mutex::default(),
            claims: Claims::default(),
            backoff: Backoffs::default(),
            vet_work: Notify::new(),
            vet_due: std::sync::atomic::AtomicBool::new(true),
        }
    }
}

/// Runs the chunker, the uploader, the vetting of new nodes and the checkpointer until `cancel`
/// fires.
pub async fn run_pipeline<F: ChunkFabric + 'static>(
    vault: Arc<Vault<F>>,
    stats: Arc<PipelineStats>,
    cancel: CancellationToken,
) {
    let chunker = tokio::spawn(chunker::chunk_loop(vault.clone(), stats.clone(), cancel.clone()));
    let uploader = tokio::spawn(uploader::upload_loop(vault.clone(), stats, cancel.clone()));
    // Uploads to nodes not vetted yet become durable only after their vetting audit, so the
    // pipeline runs it.
    let vetting = tokio::spawn(super::maintenance::run_vetting(vault.clone(), cancel.clone()));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {
                if !Vault::<F>::lock(&vault.pipeline.backoff.checkpoint).ready(vault.clock.now_ms()) {
                    continue;
                }
                let v = vault.clone();
                let result = tokio::task::spawn_blocking(move || v.checkpoint()).await;
                let mut backoff = Vault::<F>::lock(&vault.pipeline.backoff.checkpoint);
                match result {
                    Ok(Err(e)) if backoff.failed(vault.clock.now_ms()) => {
                        tracing::error!(error = %e, "manifest checkpoint failed; retrying with backoff (up to {RETRY_MAX:?})");
                    }
                    Ok(Err(e)) => tracing::debug!(error = %e, "manifest checkpoint failed again"),
                    _ if backoff.succeeded() => tracing::info!("manifest checkpoints work again"),
                    _ => {}
                }
            }
        }
    }
    let _ = chunker.await;
    let _ = uploader.await;
    let _ = vetting.await;
    let _ = vault.checkpoint();
}

impl<F: ChunkFabric + 'static> Vault<F> {
    /// Makes everything written into the outbox durable.
    pub(super) fn sync_outbox(&self) -> Result<(), crate::domain::fs::FsError> {
        Ok(self.pipeline.outbox.sync()?)
    }
}

#[cfg(test)]
pub(super) mod uploader_tests;
