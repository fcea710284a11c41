//! The storage node's answers to proof-of-storage challenges (docs/DESIGN.md §5 Audit): single and
//! batched, each signed, and bound to the challenge's hash when it carries a control proof.

use super::authority::ProofClaim;
use super::{NodeService, Reason};
use crate::domain::audit::select_leaves;
use crate::domain::proof::Purpose;
use crate::domain::wire::{request_hash, AuditBatch, AuditBatchReply, AuditReply, AuditRequest, Status};
use crate::ports::chunk_store::{ChunkStore, StoreError, StoredChunk};
use std::sync::atomic::Ordering;

impl<S: ChunkStore> NodeService<S> {
    /// Answers a proof-of-storage challenge from an unnamed source; `None` when dropped.
    pub fn handle_audit(&self, bytes: &[u8], now_ms: u64) -> Option<AuditReply> {
        self.handle_audit_from(b"", bytes, now_ms)
    }

    /// Answers a proof-of-storage challenge from `source`; `None` when the request is dropped.
    pub fn handle_audit_from(&self, source: &[u8], bytes: &[u8], now_ms: u64) -> Option<AuditReply> {
        let req = match AuditRequest::decode(bytes) {
            Ok(r) => r,
            Err(e) => {
                self.drop_msg(Reason::Malformed, "audit request", e);
                return None;
            }
        };
        self.check_audit(&req, now_ms)?;
        let proven = self.authorise(&[ProofClaim::audit(&req)]);
        self.answer_audit(source, &req, proven.into_iter().next().flatten(), now_ms)
    }

    /// Answers a batch of challenges: their proofs are verified together; each is then answered
    /// exactly as if it had come alone. `None` when the batch is dropped (malformed, addressed to
    /// another node, or stale).
    pub fn handle_audit_batch(&self, bytes: &[u8], now_ms: u64) -> Option<AuditBatchReply> {
        self.handle_audit_batch_from(b"", bytes, now_ms)
    }

    /// [`NodeService::handle_audit_batch`] for a batch from `source`.
    pub fn handle_audit_batch_from(
        &self,
        source: &[u8],
        bytes: &[u8],
        now_ms: u64,
    ) -> Option<AuditBatchReply> {
        let batch = match AuditBatch::decode(bytes) {
            Ok(b) => b,
            Err(e) => {
                self.drop_msg(Reason::Malformed, "audit batch", e);
                return None;
            }
        };
        for req in &batch.0 {
            self.check_audit(req, now_ms)?;
        }
        let claims: Vec<ProofClaim> = batch.0.iter().map(ProofClaim::audit).collect();
        let proven = self.authorise(&claims);
        let replies = batch
            .0
            .iter()
            .zip(proven)
            .map(|(req, meta)| self.answer_audit(source, req, meta, now_ms))
            .collect::<Option<Vec<_>>>()?;
        Some(AuditBatchReply(replies))
    }

    /// Target and freshness of a challenge; `None` (logged) if it must be dropped.
    fn check_audit(&self, req: &AuditRequest, now_ms: u64) -> Option<()> {
        if req.target != self.id.id() {
            self.drop_msg(Reason::Misaddressed, "audit request", "not addressed to this node");
            return None;
        }
        if let Err((reason, why)) = self.timely(req.timestamp_ms, &req.target, Purpose::Audit, now_ms) {
            self.drop_msg(reason, "audit request", why);
            return None;
        }
        Some(())
    }

    /// The signed answer to one challenge whose proof verified (`proven`) or not; bound to the
    /// challenge's hash when it carries a control proof.
    fn answer_audit(
        &self,
        source: &[u8],
        req: &AuditRequest,
        proven: Option<StoredChunk>,
        now_ms: u64,
    ) -> Option<AuditReply> {
        let bound = req.control.is_some().then(|| request_hash(&req.encode()));
        let sign = |status, proofs| {
            Some(AuditReply::sign_bound(&self.id, (req.addr, req.seed, bound), status, proofs))
        };
        let Some(meta) = proven else { return sign(Status::NotFound, Vec::new()) };
        if let Err((reason, why)) = self.remember(source, req.request_id.0, req.timestamp_ms, now_ms) {
            self.drop_msg(reason, "audit request", why);
            return None;
        }
        let picks = select_leaves(&req.seed, meta.len as u64, req.leaves as usize);
        match self.store.audit_proofs(&req.addr, &picks) {
            Ok(Some(proofs)) => {
                self.stats.audits.fetch_add(1, Ordering::Relaxed);
                sign(Status::Ok, proofs)
            }
            Ok(None) => sign(Status::NotFound, Vec::new()),
            Err(StoreError::Corrupt(_)) => {
                tracing::error!(addr = ?req.addr, "stored chunk is corrupt; removing it so the owner re-replicates");
                let _ = self.store.remove(&req.addr);
                sign(Status::NotFound, Vec::new())
            }
            Err(e) => {
                tracing::error!(error = %e, "building audit proof failed");
                sign(Status::Busy, Vec::new())
            }
        }
    }
}
