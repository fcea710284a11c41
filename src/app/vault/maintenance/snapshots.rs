//! The snapshot worker: stores a manifest snapshot once `snapshot_interval` has passed since the
//! last one kept (and the vault changed since).

use crate::app::vault::{SnapshotOutcome, Vault};
use crate::domain::fs::FsError;
use crate::ports::fabric::ChunkFabric;
use std::time::Duration;

/// How long a periodic snapshot waits for its pieces to become quorum-durable.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(600);

/// Takes periodic snapshots; remembers when the last one was taken.
#[derive(Clone, Copy, Debug)]
pub struct SnapshotWorker {
    /// When the last snapshot was taken (unix ms, from the vault's clock).
    last_ms: u64,
}

impl SnapshotWorker {
    /// The next snapshot is due one interval after the newest one kept (at once when that is
    /// long past, e.g. the last mount ended with uploads pending); a vault without any, one
    /// interval after now.
    pub fn new<F: ChunkFabric + 'static>(v: &Vault<F>) -> Self {
        let newest = v.snapshots().ok().and_then(|s| s.iter().map(|s| s.taken_ms).max());
        SnapshotWorker { last_ms: newest.unwrap_or_else(|| v.clock.now_ms()) }
    }

    /// Takes a snapshot if one is due; `None` when none was due. A pending outcome (uploads
    /// still running) is tried again at the next pass.
    pub async fn run_once<F: ChunkFabric + 'static>(
        &mut self,
        v: &Vault<F>,
    ) -> Result<Option<SnapshotOutcome>, FsError> {
        let interval = v.opts.health.snapshot_interval;
        if interval.is_zero() || !v.clock.elapsed_since(self.last_ms, interval) {
            return Ok(None);
        }
        let outcome = v.snapshot(SNAPSHOT_WAIT).await?;
        if !matches!(outcome, SnapshotOutcome::Pending) {
            self.last_ms = v.clock.now_ms();
        }
        Ok(Some(outcome))
    }
}
