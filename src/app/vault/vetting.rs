//! Which replicas of a chunk count toward N now (churn, vetting and houses together), and the
//! step that makes a chunk durable once the nodes holding it passed their vetting audit
//! (`domain::vetting`). Shared by the uploader, which records an upload as durable only when its
//! replicas count, and by maintenance, which vets new nodes and heals.

use super::Vault;
use crate::domain::churn::{Fleet, Repair};
use crate::domain::fs::{ChunkRecord, ChunkState, FsError, Replica};
use crate::domain::ids::Addr;
use crate::ports::fabric::ChunkFabric;
use std::collections::HashSet;
use std::sync::atomic::Ordering;

/// Every known node's state now, under the vault's churn policy.
pub(super) fn fleet<F: ChunkFabric + 'static>(v: &Vault<F>) -> Result<Fleet, FsError> {
    let records = v.m.read()?.nodes()?;
    Ok(Fleet::new(&v.opts.health.churn, &records, v.clock.now_ms()))
}

/// The replicas of a chunk that count toward N, healthy ones first, and what the chunk needs.
pub(super) fn counted<'r, F: ChunkFabric + 'static>(
    v: &Vault<F>,
    fleet: &Fleet,
    c: &'r ChunkRecord,
) -> (Vec<&'r Replica>, Repair) {
    let verdict = fleet.judge(&v.opts.health.churn, c, v.opts.replicas);
    let counted = v.placed(verdict.counted.iter().map(|i| &c.replicas[*i]).collect());
    // Replicas the placement rule does not count (a second one in a house, one in the owner's
    // own house) leave the chunk short of N even where the churn policy is content.
    let repair = match verdict.repair {
        Repair::None if counted.len() + verdict.waiting < v.opts.replicas => Repair::Lazy,
        r => r,
    };
    (counted, repair)
}

/// Whether a chunk was stored but waits for vetting: acknowledged replicas on record, yet not
/// durable and not in the upload queue (its outbox copy is kept meanwhile).
pub(super) fn awaits_vetting(c: &ChunkRecord, queued: bool) -> bool {
    c.state == ChunkState::Pending && !c.replicas.is_empty() && !queued
}

impl<F: ChunkFabric + 'static> Vault<F> {
    /// Makes durable every chunk that waited for vetting and now has N counted replicas: one
    /// durable commit, then its outbox copy goes. Returns how many.
    pub(super) fn promote_vetted(&self) -> Result<usize, FsError> {
        let fleet = fleet(self)?;
        let done: HashSet<Addr> = Self::lock(&self.pipeline.uploads_done).iter().map(|(a, _)| *a).collect();
        let ready: Vec<Addr> = {
            let rx = self.m.read()?;
            let mut ready = Vec::new();
            for (addr, c) in rx.summary()?.chunks {
                if !done.contains(&addr)
                    && awaits_vetting(&c, rx.upload_queued(&addr)?)
                    && counted(self, &fleet, &c).0.len() >= self.opts.replicas
                {
                    ready.push(addr);
                }
            }
            ready
        };
        if ready.is_empty() {
            return Ok(0);
        }
        self.m.write_durable(|tx| {
            for addr in &ready {
                let Some(mut c) = tx.chunk(addr)? else { continue };
                if c.state == ChunkState::Pending && !c.replicas.is_empty() {
                    c.state = ChunkState::Durable;
                    tx.put_chunk(addr, &c)?;
                    tx.set_small_outbox(addr, None)?;
                }
            }
            Ok(())
        })?;
        for addr in &ready {
            self.retire_outbox(addr);
        }
        self.pipeline.uploaded.notify_waiters();
        tracing::info!(
            chunks = ready.len(),
            "chunks durable: the nodes holding them passed their vetting audit"
        );
        Ok(ready.len())
    }

    /// Asks for a vetting pass soon: replicas on nodes not vetted yet were recorded.
    pub(super) fn vetting_due(&self) {
        self.pipeline.vet_due.store(true, Ordering::Relaxed);
        self.pipeline.vet_work.notify_one();
    }
}
