//! One writer per vault (docs/DESIGN.md §11): the writer lease this home holds, the fence that
//! refuses changes once another home took it, and the closing of a fenced lineage.
//!
//! The lease lives in the fabric and is swapped by compare-and-set, so the broker orders
//! take-overs. A home learns that it lost the lease by reading it: every `writer_check` (on its
//! own clock), and always right before it publishes a root record or deletes chunks. A mount that
//! cannot reach the fabric keeps accepting changes under the lease it last held; it cannot
//! publish or delete then either, so nothing it does harms the other writer.

use super::{FsError, SnapshotOutcome, Vault};
use crate::app::report::WriterState;
use crate::domain::lease::{standing, Standing, WriterLease};
use crate::domain::snapshot::root_locator;
use crate::ports::fabric::{ChunkFabric, LeaseSwap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// Manifest meta key: the epoch of the lease this home last held.
pub(super) const WRITER_EPOCH: &str = "writer_epoch";
/// Manifest meta key: when (this machine's clock) this home took the lease from another home
/// whose closed record it has not adopted yet; 0 when none is awaited.
pub(super) const AWAITING_SINCE: &str = "lineage_awaited_ms";
/// Manifest meta key: the epoch of that other home's lease.
pub(super) const AWAITING_EPOCH: &str = "lineage_awaited_epoch";

/// How a mount claims the writer lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Take it if nobody holds it, keep it if this home does; else mount read-only.
    Keep,
    /// Take it whoever holds it (`restore`, `mount --take-over`): the holder is fenced.
    TakeOver,
}

/// The fence's state: what this home may do.
pub(super) struct Fence {
    state: watch::Sender<WriterState>,
    /// Mirrors `state.is_fenced()` for the write path.
    fenced: AtomicBool,
}

impl Fence {
    /// Writing under the lease of `epoch`, unchecked.
    pub(super) fn new(epoch: u64) -> Self {
        Fence { state: watch::channel(WriterState::Unchecked { epoch }).0, fenced: AtomicBool::new(false) }
    }
}

fn fs_err(e: impl std::fmt::Display) -> FsError {
    FsError::Unavailable(e.to_string())
}

impl<F: ChunkFabric + 'static> Vault<F> {
    /// Refuses a change with EROFS when another home holds the writer lease.
    pub fn writable(&self) -> Result<(), FsError> {
        if self.fence.fenced.load(Ordering::Acquire) {
            return Err(FsError::ReadOnly);
        }
        Ok(())
    }

    /// What this home may do now.
    pub fn writer_state(&self) -> WriterState {
        self.fence.state.borrow().clone()
    }

    /// This home's standing once it has been checked with the fabric, waiting up to `within`
    /// (still `Unchecked` when the fabric did not answer in time).
    pub async fn writer_settled(&self, within: Duration) -> WriterState {
        let mut rx = self.fence.state.subscribe();
        let settled = rx.wait_for(|s| !matches!(s, WriterState::Unchecked { .. }));
        // On a timeout the state is still `Unchecked`, which is the answer.
        let _ = tokio::time::timeout(within, settled).await;
        self.writer_state()
    }

    pub(super) fn set_writer(&self, s: WriterState) {
        self.fence.fenced.store(s.is_fenced(), Ordering::Release);
        let old = self.fence.state.send_replace(s.clone());
        if old != s {
            match &s {
                WriterState::Fenced { .. } => tracing::warn!("{}", s.describe()),
                _ => tracing::info!("{}", s.describe()),
            }
        }
    }

    /// The epoch this home writes under (held or last held).
    pub(super) fn my_epoch(&self) -> u64 {
        match self.writer_state() {
            WriterState::Unchecked { epoch }
            | WriterState::Holder { epoch }
            | WriterState::Fenced { epoch, .. } => epoch,
        }
    }

    /// Reads the lease and settles this home's standing, taking the lease as `claim` says.
    pub async fn claim_writer(&self, claim: Claim) -> Result<WriterState, FsError> {
        let fabric = self.reachable_fabric(self.opts.fetch_timeout).await?;
        self.claim_on(&*fabric, claim).await
    }

    /// `claim_writer` on `fabric`.
    async fn claim_on(&self, fabric: &F, claim: Claim) -> Result<WriterState, FsError> {
        let vk = self.keys.root_signing_key().verifying_key();
        let locator = root_locator(&vk);
        for _ in 0..5 {
            let held = fabric.lease(&locator).await.map_err(fs_err)?;
            let (revision, lease) = match &held {
                Some(h) => match WriterLease::open(&h.record, &vk) {
                    Ok(l) => (h.revision, Some(l)),
                    Err(e) => {
                        tracing::warn!(error = %e, "refused the writer lease the broker holds; replacing it");
                        (h.revision, None)
                    }
                },
                None => (0, None),
            };
            let state = match (standing(lease.as_ref(), self.opts.writer), claim) {
                (Standing::Holder(epoch), _) => self.held(epoch)?,
                (Standing::Other(l), Claim::Keep) => self.fenced_by(&l),
                (standing, _) => {
                    let previous = match standing {
                        Standing::Other(l) => Some(l.epoch),
                        _ => None,
                    };
                    match self.take(fabric, &locator, revision, lease.map_or(0, |l| l.epoch)).await? {
                        Some(epoch) => self.taken(epoch, previous)?,
                        None => continue, // someone swapped first: read again
                    }
                }
            };
            self.set_writer(state.clone());
            return Ok(state);
        }
        Err(FsError::Unavailable("the writer lease keeps changing; try again".into()))
    }

    /// Swaps in a lease for this home one epoch above every one seen; `None` on a conflict.
    async fn take(
        &self,
        fabric: &F,
        locator: &str,
        revision: u64,
        seen: u64,
    ) -> Result<Option<u64>, FsError> {
        let roots = super::find_root(fabric, &self.keys).await?.map_or(0, |f| f.record.epoch);
        let epoch = seen.max(roots).max(self.my_epoch()) + 1;
        let lease = WriterLease { epoch, writer: self.opts.writer, taken_ms: self.clock.now_ms() };
        let record = lease.seal(self.keys.root_signing_key());
        match fabric.swap_lease(locator, &record, revision).await.map_err(fs_err)? {
            LeaseSwap::Swapped(_) => Ok(Some(epoch)),
            LeaseSwap::Conflict => Ok(None),
        }
    }

    fn held(&self, epoch: u64) -> Result<WriterState, FsError> {
        self.m.write_durable(|tx| tx.set_meta(WRITER_EPOCH, epoch))?;
        Ok(WriterState::Holder { epoch })
    }

    /// Took the lease in `epoch`; `previous` names the epoch of the home it was taken from, whose
    /// closed record garbage collection now waits for.
    fn taken(&self, epoch: u64, previous: Option<u64>) -> Result<WriterState, FsError> {
        let now = self.clock.now_ms();
        self.m.write_durable(|tx| {
            tx.set_meta(WRITER_EPOCH, epoch)?;
            if let Some(p) = previous {
                tx.set_meta(AWAITING_SINCE, now.max(1))?;
                tx.set_meta(AWAITING_EPOCH, p)?;
            }
            Ok(())
        })?;
        tracing::info!(epoch, "took the writer lease");
        Ok(WriterState::Holder { epoch })
    }

    fn fenced_by(&self, l: &WriterLease) -> WriterState {
        let (since_ms, closed) = match self.writer_state() {
            WriterState::Fenced { since_ms, closed, .. } => (since_ms, closed),
            _ => (self.clock.now_ms(), false),
        };
        WriterState::Fenced {
            epoch: self.my_epoch(),
            holder_epoch: l.epoch,
            holder: l.writer.to_hex(),
            since_ms,
            closed,
        }
    }

    /// Reads the lease again: a home that lost it is fenced (changes fail with EROFS). Returns
    /// whether this home still holds it.
    pub async fn check_writer(&self) -> Result<bool, FsError> {
        let fabric = self.reachable_fabric(self.opts.fetch_timeout).await?;
        Ok(self.ensure_writer(&*fabric).await.is_ok())
    }

    /// Checks the lease on `fabric` before an act only the writer may do (publishing a root
    /// record, deleting chunks): `Err(ReadOnly)` once another home holds it.
    pub(super) async fn ensure_writer(&self, fabric: &F) -> Result<u64, FsError> {
        if self.writer_state().is_fenced() || self.claim_on(fabric, Claim::Keep).await?.is_fenced() {
            return Err(FsError::ReadOnly);
        }
        Ok(self.my_epoch())
    }

    /// Marks the fenced lineage closed (its closed record is published).
    pub(super) fn lineage_closed(&self) {
        if let WriterState::Fenced { epoch, holder_epoch, holder, since_ms, .. } = self.writer_state() {
            self.set_writer(WriterState::Fenced { epoch, holder_epoch, holder, since_ms, closed: true });
        }
    }

    /// For a fenced home: publishes its lineage's last state as a closed root record (a final
    /// snapshot when anything changed), so the writer that took over adopts it. `Ok(false)` while
    /// uploads are still pending.
    pub async fn close_lineage(&self, wait: Duration) -> Result<bool, FsError> {
        let WriterState::Fenced { closed, .. } = self.writer_state() else { return Ok(false) };
        if closed {
            return Ok(true);
        }
        match self.snapshot(wait).await? {
            SnapshotOutcome::Pending => return Ok(false),
            SnapshotOutcome::Taken(s) => {
                tracing::info!(id = s.id, "closing snapshot of this home's lineage stored")
            }
            SnapshotOutcome::Unchanged => self.publish_kept().await?,
        }
        Ok(true)
    }

    /// Whether garbage collection must wait: this home took the lease from another one whose
    /// closed record it has not adopted, and `lineage_wait` has not passed since.
    pub(super) fn awaiting_lineage(&self) -> Result<bool, FsError> {
        let since = self.m.read()?.meta(AWAITING_SINCE)?.unwrap_or(0);
        Ok(since != 0 && !self.clock.elapsed_since(since, self.opts.health.lineage_wait))
    }
}
