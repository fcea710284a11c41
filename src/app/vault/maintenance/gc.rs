//! The garbage-collection worker: deletes chunks unreferenced for longer than the grace period
//! from their replicas, then forgets them.

use crate::app::vault::Vault;
use crate::domain::fs::{ChunkState, FsError};
use crate::domain::ids::Addr;
use crate::ports::fabric::ChunkFabric;
use std::sync::atomic::Ordering;

/// Collects chunks no file (and no retained snapshot) references any more.
#[derive(Clone, Copy, Debug, Default)]
pub struct GcWorker;

/// Unreferenced chunks looked at per pass.
const GC_BATCH: usize = 1024;

impl GcWorker {
    /// Deletes chunks unreferenced for longer than the grace period from their replicas, then
    /// forgets them. Returns how many were collected.
    /// Only the holder of the writer lease collects, after adopting the closed lineages of
    /// earlier writers, and not while it still waits for the one it took the lease from.
    pub async fn run_once<F: ChunkFabric + 'static>(&self, v: &Vault<F>, fabric: &F) -> Result<u64, FsError> {
        match v.ensure_writer(fabric).await {
            Ok(_) => {}
            Err(FsError::ReadOnly) => return Ok(0),
            Err(e) => return Err(e),
        }
        v.adopt_lineages(fabric).await?;
        if v.awaiting_lineage()? {
            tracing::info!(
                "garbage collection waits for the closed record of the writer this home took the lease from"
            );
            return Ok(0);
        }
        let mut before = v.clock.now_ms().saturating_sub(v.opts.health.gc_grace.as_millis() as u64);
        // A chunk unreferenced after the oldest retained snapshot this home took may be named by
        // it: it stays until retention drops every such snapshot older than its unreferencing.
        // Restored and adopted snapshots pin what they name and bound nothing.
        if let Some(oldest) = v.oldest_snapshot_ms()? {
            before = before.min(oldest);
        }
        let candidates = v.m.read()?.unreferenced(before, GC_BATCH)?;
        let mut collected = 0;
        for addr in candidates {
            if collect_one(v, fabric, addr).await? {
                collected += 1;
            }
        }
        v.health_stats.collected.fetch_add(collected, Ordering::Relaxed);
        Ok(collected)
    }
}

/// Deletes one unreferenced chunk from its replicas and forgets it; `false` when it is busy,
/// referenced again, or its fresh replicas are not recorded yet.
async fn collect_one<F: ChunkFabric + 'static>(
    v: &Vault<F>,
    fabric: &F,
    addr: Addr,
) -> Result<bool, FsError> {
    let Some(_claim) = v.pipeline.claims.claim(addr) else { return Ok(false) };
    // Uploaded but not recorded yet: its replicas are not in the manifest, so forgetting it now
    // would leave them on the nodes until their leases end. The next round gets it.
    if Vault::<F>::lock(&v.pipeline.uploads_done).iter().any(|(a, _)| *a == addr) {
        return Ok(false);
    }
    let Some(c) = v.m.read()?.chunk(&addr)? else {
        v.m.write(|tx| tx.forget_chunk(&addr))?;
        return Ok(false);
    };
    if c.refs > 0 {
        return Ok(false);
    }
    let secret = [(addr, v.keys.proof_secret(&addr))];
    for r in &c.replicas {
        if let Err(e) = fabric.delete(r.node, &secret).await {
            tracing::info!(node = ?r.node, ?addr, error = %e, "delete not confirmed; the copy expires with its lease");
        }
    }
    let forgotten = v.m.write(|tx| match tx.chunk(&addr)? {
        Some(c) if c.refs == 0 => tx.forget_chunk(&addr).map(|_| true),
        // Referenced again while its replicas were being deleted: the file that references it
        // queued a fresh upload, which runs once this claim is released.
        Some(mut c) => {
            c.replicas.clear();
            c.state = ChunkState::Pending;
            tx.put_chunk(&addr, &c).map(|_| false)
        }
        None => Ok(false),
    })?;
    if forgotten {
        // Its outbox file, if any, stays: the chunker may have just sealed the same content
        // again into it, to queue it as a new chunk. Unqueued outbox files go at the next mount.
        if let Some(disk) = &v.reader.disk_cache {
            disk.forget(&addr);
        }
    }
    Ok(forgotten)
}
