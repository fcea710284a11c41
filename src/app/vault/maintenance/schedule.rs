//! The maintenance loop: runs a pass of each worker on the owner's schedule until cancelled.

use super::{AuditWorker, GcWorker, SnapshotWorker};
use crate::app::vault::{Scope, Vault};
use crate::ports::fabric::ChunkFabric;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Runs background maintenance until `cancel` fires: snapshots when due, collects garbage,
/// audits replicas as they come due (rate limited), heals and renews leases.
pub async fn run_maintenance<F: ChunkFabric + 'static>(vault: Arc<Vault<F>>, cancel: CancellationToken) {
    let h = vault.opts.health.clone();
    let every = [Duration::from_secs(60), h.audit_interval / 4, h.gc_grace / 2, h.lease / 10]
        .into_iter()
        .min()
        .unwrap_or(Duration::from_secs(60))
        .max(Duration::from_secs(1));
    let every = if h.snapshot_interval.is_zero() { every } else { every.min(h.snapshot_interval) };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut snapshots = SnapshotWorker::new(&*vault);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(fabric) = vault.fabric_within(Duration::ZERO).await else { continue };
        let pass = async {
            if let Err(e) = snapshots.run_once(&*vault).await {
                tracing::warn!(error = %e, "periodic snapshot failed; retrying later");
            }
            if let Err(e) = GcWorker.run_once(&*vault, &*fabric).await {
                tracing::warn!(error = %e, "garbage collection failed");
            }
            match AuditWorker::background().run_once(&*vault, &Scope::All, &|_, _| {}).await {
                Ok(r) if r.checked > 0 || r.healed > 0 => tracing::info!(
                    checked = r.checked,
                    passed = r.passed,
                    healed = r.healed,
                    at_risk = r.at_risk.len(),
                    "background audit"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "background audit failed"),
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = pass => {}
        }
    }
}
