//! The heal worker: brings chunks below N healthy replicas back to N, from a local copy (the
//! outbox, the disk cache, the memory cache re-sealed) or from a healthy replica. In a house,
//! only replicas the placement rule counts are healthy ones, and new ones go to other houses.

use crate::app::report::AuditReport;
use crate::app::vault::Vault;
use crate::domain::fs::{ChunkRecord, ChunkState, FsError, Replica};
use crate::domain::health::is_healthy;
use crate::domain::ids::{Addr, NodeId};
use crate::ports::fabric::{ChunkFabric, Publish, StoreGoal};
use futures::StreamExt;
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Chunks healed at once (each waits for one node's fsync and signed ack).
const HEAL_CONCURRENCY: usize = 32;

/// Re-replicates chunks that have fewer than N healthy replicas.
#[derive(Clone, Copy, Debug, Default)]
pub struct HealWorker;

/// Nodes written off by audits.
pub(super) fn written_off<F: ChunkFabric + 'static>(v: &Vault<F>) -> Result<HashSet<NodeId>, FsError> {
    v.m.read()?.written_off()
}

/// Healthy replicas of a chunk.
pub(super) fn healthy<'r>(c: &'r ChunkRecord, off: &HashSet<NodeId>) -> Vec<&'r Replica> {
    c.replicas.iter().filter(|r| is_healthy(r, &|n: &NodeId| off.contains(n))).collect()
}

impl HealWorker {
    /// Heals every referenced chunk of the vault; returns what it did.
    pub async fn run_once<F: ChunkFabric + 'static>(
        &self,
        v: &Vault<F>,
        fabric: &Arc<F>,
    ) -> Result<AuditReport, FsError> {
        let addrs: Vec<Addr> =
            v.m.read()?.summary()?.chunks.into_iter().filter(|(_, c)| c.refs > 0).map(|(a, _)| a).collect();
        let mut report = AuditReport::default();
        self.heal(v, fabric, &addrs, &mut report).await?;
        Ok(report)
    }

    /// Brings every chunk of `addrs` that has fewer than N healthy replicas back to N.
    pub(in crate::app::vault) async fn heal<F: ChunkFabric + 'static>(
        &self,
        v: &Vault<F>,
        fabric: &Arc<F>,
        addrs: &[Addr],
        report: &mut AuditReport,
    ) -> Result<(), FsError> {
        if let Some(why) = v.placement_blocked() {
            tracing::debug!("healing waits: {why}");
            return Ok(());
        }
        let off = written_off(v)?;
        let wanted = v.opts.replicas;
        let weak: Vec<Addr> = {
            let rx = v.m.read()?;
            let mut weak = Vec::new();
            for a in addrs {
                if let Some(c) = rx.chunk(a)? {
                    if c.state == ChunkState::Durable
                        && c.refs > 0
                        && v.placed(healthy(&c, &off)).len() < wanted
                    {
                        weak.push(*a);
                    }
                }
            }
            weak
        };
        let mut results = futures::stream::iter(weak)
            .map(|addr| {
                let off = &off;
                async move { (addr, heal_one(v, fabric, addr, off).await) }
            })
            .buffer_unordered(HEAL_CONCURRENCY);
        while let Some((addr, r)) = results.next().await {
            match r {
                Ok(0) => {}
                Ok(bytes) => {
                    report.healed += 1;
                    report.healed_bytes += bytes;
                    v.health_stats.healed.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => tracing::warn!(?addr, error = %e, "healing failed; will retry"),
            }
        }
        Ok(())
    }
}

/// Re-replicates one chunk; returns the bytes stored anew (0: nothing to do).
async fn heal_one<F: ChunkFabric + 'static>(
    v: &Vault<F>,
    fabric: &Arc<F>,
    addr: Addr,
    off: &HashSet<NodeId>,
) -> Result<u64, FsError> {
    let Some(_claim) = v.pipeline.claims.claim(addr) else { return Ok(0) };
    let Some(c) = v.m.read()?.chunk(&addr)? else { return Ok(0) };
    let healthy = v.placed(healthy(&c, off));
    if healthy.len() >= v.opts.replicas {
        return Ok(0);
    }
    let ct = ciphertext_for_heal(v, fabric, &addr, &c, &healthy).await?;
    let held: Vec<(NodeId, u8)> = healthy.iter().map(|r| (r.node, r.slot)).collect();
    let mut exclude: Vec<NodeId> = off.iter().copied().collect();
    exclude.extend(c.replicas.iter().filter(|r| !held.iter().any(|(n, _)| *n == r.node)).map(|r| r.node));
    let placement = v.placement();
    let goal = StoreGoal {
        replicas: v.opts.replicas,
        held: &held,
        exclude: &exclude,
        placement: placement.as_deref(),
    };
    let secret = v.keys.proof_secret(&addr);
    let (commitment, control) = (secret.commitment(), secret.control_commitment());
    let acks = fabric
        .store_controlled(Publish { addr, commitment, ciphertext: &ct }, control, goal)
        .await
        .map_err(|e| FsError::Unavailable(e.to_string()))?;
    let now = v.clock.now_ms();
    v.m.write(|tx| {
        let Some(mut c) = tx.chunk(&addr)? else { return Ok(()) };
        for a in &acks {
            c.replicas.retain(|r| r.node != a.node);
            c.replicas.push(Replica::acked(a.node, a.slot, a.lease_expiry_ms, now));
        }
        tx.put_chunk(&addr, &c)
    })?;
    tracing::info!(?addr, new = acks.len(), "chunk healed");
    Ok(ct.len() as u64 * acks.len() as u64)
}

/// A verified copy of a chunk's ciphertext: from the outbox or the disk cache, re-sealed from the
/// cached plaintext (sealing is deterministic), or fetched from a replica.
async fn ciphertext_for_heal<F: ChunkFabric + 'static>(
    v: &Vault<F>,
    fabric: &Arc<F>,
    addr: &Addr,
    c: &ChunkRecord,
    healthy: &[&Replica],
) -> Result<Vec<u8>, FsError> {
    if let Some(ct) = v.m.read()?.small_outbox(addr)? {
        return Ok(ct);
    }
    if let Some(disk) = &v.reader.disk_cache {
        match tokio::task::block_in_place(|| disk.get(addr)) {
            Some(ct) if Addr::of(&ct) == *addr => return Ok(ct),
            Some(_) => disk.forget(addr),
            None => {}
        }
    }
    if let Some(plain) = Vault::<F>::lock(&v.reader.cache).get(&c.id) {
        let sealed = v.keys.seal(&plain);
        if sealed.addr == *addr {
            return Ok(sealed.ciphertext);
        }
    }
    let mut hints: Vec<NodeId> = healthy.iter().map(|r| r.node).collect();
    for r in &c.replicas {
        if !hints.contains(&r.node) {
            hints.push(r.node);
        }
    }
    let items = [(*addr, v.keys.proof_secret(addr))];
    let got = tokio::time::timeout(v.opts.fetch_timeout * 2, fabric.get(&items, &hints))
        .await
        .map_err(|_| FsError::Unavailable("no replica answered in time".into()))?
        .map_err(|e| FsError::Unavailable(e.to_string()))?;
    got.into_iter()
        .find(|(a, ct)| a == addr && Addr::of(ct) == *addr)
        .map(|(_, ct)| Vec::from(ct))
        .ok_or_else(|| FsError::Unavailable("no copy left that could be fetched".into()))
}
