//! The writer worker (docs/DESIGN.md §11): reads the writer lease on the owner's clock, so a home
//! that lost it stops writing within `writer_check`, and has a fenced home close its lineage
//! (publish its last state as a closed root record for the writer that took over).

use crate::app::report::WriterState;
use crate::app::vault::Vault;
use crate::domain::fs::FsError;
use crate::ports::fabric::ChunkFabric;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long a closing snapshot waits for its pieces per pass.
const CLOSE_WAIT: Duration = Duration::from_secs(60);

/// Checks the lease when due; remembers when it last did.
#[derive(Clone, Copy, Debug, Default)]
pub struct WriterWorker {
    /// When the lease was last read (Unix ms on the vault's clock; 0: never).
    last_ms: u64,
}

impl WriterWorker {
    /// One pass: a fenced home closes its lineage; a writing one reads the lease once
    /// `writer_check` has passed since it last did. Until the mount's first claim the state is
    /// `Unchecked` and nothing is done (that claim says how: keep or take over).
    pub async fn run_once<F: ChunkFabric + 'static>(&mut self, v: &Vault<F>) -> Result<WriterState, FsError> {
        if v.fabric_within(Duration::ZERO).await.is_none() {
            return Ok(v.writer_state());
        }
        match v.writer_state() {
            WriterState::Unchecked { .. } | WriterState::Fenced { closed: true, .. } => {}
            WriterState::Fenced { closed: false, .. } => {
                v.close_lineage(CLOSE_WAIT).await?;
            }
            WriterState::Holder { .. } => {
                if self.last_ms == 0 || v.clock.elapsed_since(self.last_ms, v.opts.health.writer_check) {
                    self.last_ms = v.clock.now_ms().max(1);
                    v.check_writer().await?;
                }
            }
        }
        Ok(v.writer_state())
    }
}

/// Runs the writer worker every `writer_check` until `cancel` fires.
pub async fn run_writer_watch<F: ChunkFabric + 'static>(vault: Arc<Vault<F>>, cancel: CancellationToken) {
    let every = vault.opts.health.writer_check.max(Duration::from_millis(100));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut worker = WriterWorker::default();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let pass = worker.run_once(&*vault);
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = pass => if let Err(e) = r {
                tracing::info!(error = %e, "cannot check the writer lease now; retrying");
            },
        }
    }
}
