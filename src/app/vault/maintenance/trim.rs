//! Trimming: once a chunk has more than N replicas proven on answering nodes (a node came back
//! after its chunks were repaired elsewhere), the surplus copies are deleted from their nodes
//! and forgotten, those of the node that came back first, so its disk space is reclaimed. In a
//! house only replicas the placement rule counts are weighed.

use crate::app::vault::vetting::fleet;
use crate::app::vault::Vault;
use crate::domain::fs::{ChunkRecord, ChunkState, FsError};
use crate::domain::ids::Addr;
use crate::domain::wire::Status;
use crate::ports::fabric::ChunkFabric;
use std::sync::atomic::Ordering;

/// Deletes the surplus replicas of the chunks of `addrs`; returns how many were deleted.
pub(super) async fn trim<F: ChunkFabric + 'static>(
    v: &Vault<F>,
    fabric: &F,
    addrs: &[Addr],
) -> Result<u64, FsError> {
    let fleet = fleet(v)?;
    let mut trimmed = 0;
    for addr in addrs {
        let Some(c) = v.m.read()?.chunk(addr)? else { continue };
        if c.state != ChunkState::Durable || c.refs == 0 {
            continue;
        }
        // In a house only the replicas the placement rule counts are weighed against N: a copy
        // it does not count (a revoked house's, the owner's own house's) never pushes a counted
        // one out.
        let placed = ChunkRecord {
            replicas: v.placed(c.replicas.iter().collect()).into_iter().copied().collect(),
            ..c
        };
        let surplus = fleet.surplus(&placed, v.opts.replicas);
        if surplus.is_empty() {
            continue;
        }
        let Some(_claim) = v.pipeline.claims.claim(*addr) else { continue };
        let secret = [(*addr, v.keys.proof_secret(addr))];
        for node in surplus {
            match fabric.delete(node, &secret).await {
                Ok(r) if r.iter().all(|(a, s)| a != addr || matches!(s, Status::Ok | Status::NotFound)) => {}
                Ok(r) => {
                    tracing::info!(?node, ?addr, answer = ?r, "surplus replica not deleted; trying again later");
                    continue;
                }
                Err(e) => {
                    tracing::info!(?node, ?addr, error = %e, "surplus replica not deleted; trying again later");
                    continue;
                }
            }
            v.m.write(|tx| {
                let Some(mut c) = tx.chunk(addr)? else { return Ok(()) };
                c.replicas.retain(|r| r.node != node);
                tx.put_chunk(addr, &c)
            })?;
            tracing::info!(?node, ?addr, "surplus replica deleted");
            trimmed += 1;
        }
    }
    v.health_stats.trimmed.fetch_add(trimmed, Ordering::Relaxed);
    Ok(trimmed)
}
