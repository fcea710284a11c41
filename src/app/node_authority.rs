//! Who may do what to a held chunk (docs/SECURITY.md §5.5): the read right (a proof against the
//! read commitment P) allows gets; the control right (a proof against the control commitment Q)
//! allows renew, delete and audit. A chunk held without Q (stored before control commitments
//! existed) follows the legacy rule, P authorises everything, until a control request or audit
//! proves both secrets and names Q, which the node then attaches for good.

use super::{NodeService, ProvenOutcome, Reason, Route};
use crate::domain::ids::{Addr, RequestId};
use crate::domain::proof::{batch_verify, verify, Commitment, Proof, ProofContext, Purpose};
use crate::domain::wire::{request_hash, AuditRequest, ControlReply, ControlRequest, Status};
use crate::ports::chunk_store::{ChunkStore, StoredChunk};

/// Which right a request needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Right {
    /// Get.
    Read,
    /// Renew, delete, audit.
    Control,
}

/// One proof-gated item as the node checks it.
#[derive(Clone, Copy, Debug)]
pub(super) struct ProofClaim {
    pub addr: Addr,
    pub ctx: ProofContext,
    /// Proof with the read secret.
    pub read: Proof,
    /// The control commitment the request names and the proof with its secret, if any.
    pub control: Option<(Commitment, Proof)>,
    pub right: Right,
}

impl ProofClaim {
    pub fn audit(req: &AuditRequest) -> ProofClaim {
        ProofClaim {
            addr: req.addr,
            ctx: req.context(),
            read: req.proof,
            control: req.control.map(|c| (c.commitment, c.proof)),
            right: Right::Control,
        }
    }
}

/// The proofs one claim must pass, and the control commitment to attach once they do.
struct Checks {
    held: Option<StoredChunk>,
    proofs: Vec<(Commitment, ProofContext, Proof)>,
    upgrade: Option<Commitment>,
}

impl<S: ChunkStore> NodeService<S> {
    /// What `claim` must prove for the chunk as held (`None`: not held).
    fn checks(&self, claim: &ProofClaim, held: Option<StoredChunk>) -> Checks {
        let ProofClaim { ctx, read, control, .. } = *claim;
        let mut checks = Checks { held, proofs: Vec::with_capacity(2), upgrade: None };
        match (held, claim.right) {
            // Not held: one proof against a commitment nobody knows the secret of, as much work
            // as for a chunk held with Q, so the time spent does not say what is held.
            (None, _) => checks.proofs.push((self.dummy, ctx, control.map_or(read, |c| c.1))),
            (Some(m), Right::Read) => checks.proofs.push((m.commitment, ctx, read)),
            (Some(m), Right::Control) => match (m.control, control) {
                (Some(q), Some((_, proof))) => checks.proofs.push((q, ctx, proof)),
                // A request without a control proof for a chunk held with Q: refused (the read
                // proof cannot verify against Q; checked all the same, for even timing).
                (Some(q), None) => checks.proofs.push((q, ctx, read)),
                // The legacy rule; a control commitment named and proven is attached.
                (None, named) => {
                    checks.proofs.push((m.commitment, ctx, read));
                    if let Some((q, proof)) = named.filter(|(q, _)| *q != m.commitment) {
                        checks.proofs.push((q, ctx, proof));
                        checks.upgrade = Some(q);
                    }
                }
            },
        }
        checks
    }

    /// Looks up each claim's chunk and verifies its proofs (all of them as one batch when they
    /// all pass); returns the index entry of each claim that holds. A proven claim naming a
    /// control commitment for a chunk held without one attaches it. Unheld chunks and failed
    /// proofs both come back `None`.
    pub(super) fn authorise(&self, claims: &[ProofClaim]) -> Vec<Option<StoredChunk>> {
        let all: Vec<Checks> =
            claims.iter().map(|c| self.checks(c, self.store.meta(&c.addr).ok().flatten())).collect();
        let batch: Vec<_> = all.iter().flat_map(|c| c.proofs.iter().copied()).collect();
        let all_ok = batch_verify(&batch).is_ok();
        claims
            .iter()
            .zip(all)
            .map(|(claim, c)| {
                let ok = all_ok || c.proofs.iter().all(|(p, ctx, proof)| verify(p, ctx, proof).is_ok());
                match c.held {
                    Some(m) if ok => Some(self.upgrade(claim, m, c.upgrade)),
                    Some(_) => {
                        self.stats.refuse_bad_proof();
                        None
                    }
                    None => {
                        self.stats.refuse_not_held();
                        None
                    }
                }
            })
            .collect()
    }

    /// Attaches a proven control commitment to a chunk held without one.
    fn upgrade(&self, claim: &ProofClaim, mut meta: StoredChunk, q: Option<Commitment>) -> StoredChunk {
        let Some(q) = q else { return meta };
        match self.store.set_control(&claim.addr, &q) {
            Ok(true) => {
                tracing::info!(addr = ?claim.addr, "control commitment attached to a chunk stored without one");
                meta.control = Some(q);
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(addr = ?claim.addr, error = %e, "attaching a control commitment failed"),
        }
        meta
    }

    /// Handles a `Control` request (renew or delete proven with control secrets); answered with a
    /// reply bound to its bytes.
    pub(super) fn handle_control(
        &self,
        source: &[u8],
        bytes: &[u8],
        route: Route,
        expected: Purpose,
        now_ms: u64,
    ) -> ProvenOutcome {
        let req = match ControlRequest::decode(bytes) {
            Ok(r) => r,
            Err(e) => {
                self.drop_msg(Reason::Malformed, "control request", e);
                return ProvenOutcome::Silent;
            }
        };
        if req.purpose != expected || req.items.is_empty() {
            self.drop_msg(
                Reason::Malformed,
                "control request",
                "purpose does not match the subject, or no items",
            );
            return ProvenOutcome::Silent;
        }
        if route == Route::Broadcast {
            self.drop_msg(Reason::Misaddressed, "broadcast request", "only untargeted gets may be broadcast");
            return ProvenOutcome::Silent;
        }
        if let Err((reason, why)) = self.timely(req.timestamp_ms, &req.target, req.purpose, now_ms) {
            self.drop_msg(reason, "control request", why);
            return ProvenOutcome::Silent;
        }
        let claims: Vec<ProofClaim> = req
            .items
            .iter()
            .map(|it| ProofClaim {
                addr: it.addr,
                ctx: req.context(&it.addr),
                read: it.read,
                control: Some((it.control, it.proof)),
                right: Right::Control,
            })
            .collect();
        let proven = self.authorise(&claims);
        if proven.iter().any(Option::is_some) {
            if let Err((reason, why)) = self.remember(source, req.request_id.0, req.timestamp_ms, now_ms) {
                self.drop_msg(reason, "control request", why);
                return ProvenOutcome::Silent;
            }
        }
        let addrs: Vec<Addr> = req.items.iter().map(|it| it.addr).collect();
        let bound = Some(request_hash(bytes));
        self.control_outcome(
            req.purpose,
            &req.request_id,
            req.lease_expiry_ms,
            (&addrs, proven),
            bound,
            now_ms,
        )
    }

    /// Renews or deletes each proven chunk; the signed reply is bound to the request's hash when
    /// `bound` is given.
    pub(super) fn control_outcome(
        &self,
        purpose: Purpose,
        request_id: &RequestId,
        lease: u64,
        (addrs, proven): (&[Addr], Vec<Option<StoredChunk>>),
        bound: Option<[u8; 32]>,
        now_ms: u64,
    ) -> ProvenOutcome {
        let lease = lease.min(now_ms + self.policy.max_lease_ms);
        let op = |a: &Addr| match purpose {
            Purpose::Renew => self.store.set_lease(a, lease),
            Purpose::Delete => self.store.remove(a),
            Purpose::Get | Purpose::Audit => Ok(false),
        };
        let results = addrs
            .iter()
            .zip(proven)
            .map(|(addr, m)| {
                let status = match m.map(|_| op(addr)) {
                    None | Some(Ok(false)) => Status::NotFound,
                    Some(Ok(true)) => Status::Ok,
                    Some(Err(e)) => {
                        tracing::error!(?addr, error = %e, "renew/delete failed");
                        Status::Busy
                    }
                };
                (*addr, status)
            })
            .collect();
        ProvenOutcome::Control(ControlReply::sign_bound(&self.id, *request_id, bound, results))
    }
}

#[cfg(test)]
#[path = "node_authority_tests.rs"]
mod tests;
