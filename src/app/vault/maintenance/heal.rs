//! The heal worker: brings chunks below N counted replicas (`domain::churn`) back to N, urgent
//! ones first and at most `repair_rate` bytes per second in the background, from a local copy
//! (the outbox, the disk cache, the memory cache re-sealed) or from a healthy replica; and
//! pauses while too many nodes vanished at once.
//! In a house, only replicas the placement rule counts are counted, and new ones go to other
//! houses.

use super::Pace;
use crate::app::report::AuditReport;
use crate::app::vault::vetting::{awaits_vetting, counted, fleet};
use crate::app::vault::Vault;
use crate::domain::churn::{Fleet, Repair};
use crate::domain::fs::{ChunkRecord, ChunkState, FsError, Replica};
use crate::domain::ids::{Addr, NodeId};
use crate::ports::fabric::{ChunkFabric, Publish, StoreGoal};
use futures::StreamExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Chunks healed at once (each waits for one node's fsync and signed ack).
const HEAL_CONCURRENCY: usize = 32;

/// Re-replicates chunks that have fewer than N healthy replicas.
#[derive(Clone, Copy, Debug, Default)]
pub struct HealWorker;

/// Whether repair is paused (too many nodes vanished at once); says so in the log when that
/// changes.
pub(super) fn repair_paused<F: ChunkFabric + 'static>(v: &Vault<F>, fleet: &Fleet) -> bool {
    let paused = fleet.link_down.is_some();
    let was = v.health_stats.repair_paused.swap(paused, Ordering::Relaxed);
    match (was, fleet.link_down) {
        (false, Some((gone, known))) => tracing::warn!(
            gone,
            known,
            "repair paused: {gone} of {known} nodes stopped answering at once; this machine's own link \
             is the likelier cause, so nothing is re-replicated or written off until they answer again"
        ),
        (true, None) => tracing::info!("repair resumed: nodes answer again"),
        _ => {}
    }
    paused
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
        self.heal(v, fabric, &addrs, Pace::Foreground, &mut report).await?;
        Ok(report)
    }

    /// Brings every chunk of `addrs` that the churn policy says needs repair back to N counted
    /// replicas: those below the healthy floor first; in the background at most `repair_rate`
    /// bytes per second. Nothing while repair is paused.
    pub(in crate::app::vault) async fn heal<F: ChunkFabric + 'static>(
        &self,
        v: &Vault<F>,
        fabric: &Arc<F>,
        addrs: &[Addr],
        pace: Pace,
        report: &mut AuditReport,
    ) -> Result<(), FsError> {
        if let Some(why) = v.placement_blocked() {
            tracing::debug!("healing waits: {why}");
            return Ok(());
        }
        let fleet = fleet(v)?;
        if repair_paused(v, &fleet) {
            return Ok(());
        }
        let mut weak: Vec<(Repair, Addr, u64)> = {
            let rx = v.m.read()?;
            let mut weak = Vec::new();
            for a in addrs {
                let Some(c) = rx.chunk(a)? else { continue };
                let stored = c.state == ChunkState::Durable || awaits_vetting(&c, rx.upload_queued(a)?);
                if stored && c.refs > 0 {
                    let (_, repair) = counted(v, &fleet, &c);
                    if repair != Repair::None {
                        weak.push((repair, *a, c.ct_len as u64));
                    }
                }
            }
            weak
        };
        weak.sort_by_key(|(repair, _, _)| std::cmp::Reverse(*repair));
        let rate = v.opts.health.repair_rate.max(1) as f64;
        let start = tokio::time::Instant::now();
        let mut offset = 0u64;
        let paced: Vec<(Addr, u64)> = weak
            .into_iter()
            .map(|(_, a, len)| {
                offset += len;
                (a, offset - len)
            })
            .collect();
        let mut results = futures::stream::iter(paced)
            .map(|(addr, first)| {
                let fleet = &fleet;
                async move {
                    if pace == Pace::Background {
                        tokio::time::sleep_until(start + Duration::from_secs_f64(first as f64 / rate)).await;
                    }
                    (addr, heal_one(v, fabric, addr, fleet).await)
                }
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
    fleet: &Fleet,
) -> Result<u64, FsError> {
    let Some(_claim) = v.pipeline.claims.claim(addr) else { return Ok(0) };
    let Some(c) = v.m.read()?.chunk(&addr)? else { return Ok(0) };
    let (counted, repair) = counted(v, fleet, &c);
    if repair == Repair::None {
        return Ok(0);
    }
    let ct = ciphertext_for_heal(v, fabric, &addr, &c, &counted).await?;
    let held: Vec<(NodeId, u8)> = counted.iter().map(|r| (r.node, r.slot)).collect();
    let mut exclude: Vec<NodeId> = fleet.dead().into_iter().collect();
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
    if acks.iter().any(|a| !fleet.vetted(&a.node)) {
        v.vetting_due();
    }
    tracing::info!(?addr, new = acks.len(), ?repair, "chunk healed");
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
    // A chunk waiting for vetting keeps its outbox copy.
    if let Ok((buf, at)) = tokio::task::block_in_place(|| v.pipeline.outbox.read(addr)) {
        if buf.get(at.clone()).is_some_and(|ct| Addr::of(ct) == *addr) {
            return Ok(buf[at].to_vec());
        }
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
