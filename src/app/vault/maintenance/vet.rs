//! The vetting worker (`domain::vetting`): challenges the replicas of nodes not vetted yet soon
//! after their acks, makes chunks durable once their nodes passed, and places elsewhere the
//! chunks of nodes that failed or stayed silent. Runs right after uploads record such replicas
//! and every quarter of `--vet-within`.

use super::audit::{AuditWorker, Target};
use super::{HealWorker, Pace, Replicas};
use crate::app::report::AuditReport;
use crate::app::vault::vetting::{awaits_vetting, fleet};
use crate::app::vault::Vault;
use crate::domain::fs::FsError;
use crate::domain::ids::{Addr, NodeId};
use crate::domain::vetting::{needs_vetting, vet_every, Trust};
use crate::ports::fabric::ChunkFabric;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Replicas of one node challenged per vetting pass (one batch).
const VET_BATCH: usize = 32;

/// Vets new nodes: one pass at a time.
#[derive(Clone, Copy, Debug, Default)]
pub struct VetWorker;

/// What a vetting pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VetReport {
    /// Challenges sent to nodes not vetted yet.
    pub challenged: u64,
    /// Of them, passed.
    pub passed: u64,
    /// Chunks made durable because their nodes passed.
    pub promoted: u64,
    /// Chunks placed elsewhere because a node failed or stayed silent.
    pub healed: u64,
}

impl VetWorker {
    /// One pass: challenges up to a batch of replicas of each node that still needs vetting,
    /// records the outcomes, makes durable what now counts, and heals the chunks whose waiting
    /// replicas were refused. Clears the vault's "vetting due" mark when nothing waits.
    pub async fn run_once<F: ChunkFabric + 'static>(
        &self,
        v: &Vault<F>,
        fabric: &Arc<F>,
    ) -> Result<VetReport, FsError> {
        let (targets, touched) = scan(v)?;
        if targets.is_empty() && touched.is_empty() {
            v.pipeline.vet_due.store(false, Ordering::Relaxed);
            return Ok(VetReport::default());
        }
        let mut audit = AuditReport::default();
        let audit_worker = AuditWorker { replicas: Replicas::All, pace: Pace::Foreground };
        audit_worker.challenge(v, fabric, targets, &|_, _| {}, &mut audit).await?;
        let mut report = VetReport { challenged: audit.checked, passed: audit.passed, ..Default::default() };
        report.promoted += v.promote_vetted()? as u64;
        HealWorker.heal(v, fabric, &touched, Pace::Foreground, &mut audit).await?;
        report.healed = audit.healed;
        report.promoted += v.promote_vetted()? as u64;
        Ok(report)
    }
}

/// The replicas to challenge (on nodes that still need vetting, a batch per node) and the chunks
/// vetting touches (a replica on a node not vetted, or stored and waiting).
fn scan<F: ChunkFabric + 'static>(v: &Vault<F>) -> Result<(Vec<Target>, Vec<Addr>), FsError> {
    let fleet = fleet(v)?;
    let rx = v.m.read()?;
    let mut per_node: HashMap<NodeId, usize> = HashMap::new();
    let (mut targets, mut touched) = (Vec::new(), Vec::new());
    for (addr, c) in rx.summary()?.chunks.into_iter().filter(|(_, c)| c.refs > 0) {
        let mut touches = awaits_vetting(&c, rx.upload_queued(&addr)?);
        for r in &c.replicas {
            if fleet.trust(r) == Trust::Vetted {
                continue;
            }
            touches = true;
            if needs_vetting(fleet.record(&r.node)) {
                let sent = per_node.entry(r.node).or_default();
                if *sent < VET_BATCH {
                    *sent += 1;
                    targets.push(Target { addr, node: r.node, ct_len: c.ct_len as u64 });
                }
            }
        }
        if touches {
            touched.push(addr);
        }
    }
    Ok((targets, touched))
}

/// Runs vetting passes until `cancel`: when uploads or healing record replicas on nodes not
/// vetted yet, and every quarter of `--vet-within` while any wait.
pub async fn run_vetting<F: ChunkFabric + 'static>(vault: Arc<Vault<F>>, cancel: CancellationToken) {
    let every = vet_every(vault.opts.health.churn.vet_within);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = vault.pipeline.vet_work.notified() => {}
            _ = tokio::time::sleep(every) => {}
        }
        if !vault.pipeline.vet_due.load(Ordering::Relaxed) {
            continue;
        }
        let Some(fabric) = vault.fabric_within(Duration::ZERO).await else { continue };
        let pass = VetWorker.run_once(&vault, &fabric);
        let result = tokio::select! {
            _ = cancel.cancelled() => return,
            r = pass => r,
        };
        match result {
            Ok(r) if r.challenged > 0 || r.promoted > 0 || r.healed > 0 => tracing::info!(
                challenged = r.challenged,
                passed = r.passed,
                durable = r.promoted,
                healed = r.healed,
                "vetting of new nodes"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "vetting pass failed; retrying later"),
        }
    }
}
