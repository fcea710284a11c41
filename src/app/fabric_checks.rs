//! What the owner checks in everything storage nodes send back, whatever carries it: store acks
//! counted toward a goal, get replies (BLAKE3 of every ciphertext against its addr), audit
//! verdicts and renew/delete replies, and how renew and delete requests are proven (with the
//! control secret when every secret has one). Every `ChunkFabric` adapter builds those requests
//! and runs its replies through here.

use crate::domain::audit::verify_audit;
use crate::domain::ids::{Addr, NodeId, RequestId};
use crate::domain::proof::{Commitment, ProofSecret, Purpose};
use crate::domain::wire::{
    request_hash, AuditBatchReply, AuditReply, AuditRequest, ControlReply, ControlRequest, GetReply,
    ProvenRequest, Status, StoreAck, MAX_CONTROL_ITEMS, MAX_ITEMS,
};
use crate::ports::fabric::{AuditVerdict, FabricError, StoreGoal};
use std::collections::{HashMap, HashSet};

/// Leaves requested per audit.
pub const AUDIT_LEAVES: u8 = 4;

/// A fresh random audit seed.
pub fn fresh_seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    crate::domain::random_bytes(&mut seed);
    seed
}

// ---------------------------------------------------------------------------------------------
// Store acks

/// Clock difference tolerated between the owner and a node when judging an ack's freshness.
const ACK_SKEW_MS: u64 = 120_000;

/// Shortest lease left that an ack of a lease held (shorter than asked) must state to count.
const ACK_MIN_LEASE_MS: u64 = 10 * 60 * 1000;

/// What a chunk is being stored under: its commitments and the lease asked for.
#[derive(Clone, Copy, Debug)]
pub struct StoreTerms {
    /// The read commitment P.
    pub commitment: Commitment,
    /// The control commitment Q sent with the store requests, if any.
    pub control: Option<Commitment>,
    /// When the store began (owner clock): an ack signed since then (give or take the clock
    /// skew nodes accept) is fresh even if its lease is the shorter one a node already held.
    pub since_ms: u64,
    /// The lease asked for; acks for an older lease are replays of an earlier store.
    pub min_lease_ms: u64,
}

/// Store acks judged replays so far (their warning is rate-limited: the 1st, 2nd, 4th, 8th…).
static REPLAYS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// What an ack is to the store it arrives for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckJudgement {
    /// Verified, for the lease asked or a fresh ack of the lease held: it counts.
    Counts,
    /// Not the node's signature over the chunk's commitments.
    BadSignature,
    /// Signed before this store began: an ack of an earlier store of the chunk.
    EarlierStore,
    /// Signed for this store with an older lease than asked: it looks like a replay.
    Replay,
}

/// The verified acks collected for one chunk being stored, one per node.
#[derive(Debug)]
pub struct AckTally {
    terms: StoreTerms,
    acks: HashMap<NodeId, StoreAck>,
}

impl AckTally {
    /// A tally for a chunk stored on `terms`.
    pub fn new(terms: StoreTerms) -> Self {
        AckTally { terms, acks: HashMap::new() }
    }

    /// The control commitment the chunk is stored with, if any.
    pub fn control(&self) -> Option<Commitment> {
        self.terms.control
    }

    /// Records `ack` if its signature verifies against the commitments and its lease is current
    /// or a fresh ack of the lease held (dropped with a log line otherwise); the first ack of
    /// each node is kept. Returns whether it was recorded.
    pub fn accept(&mut self, ack: StoreAck) -> bool {
        match self.judge(&ack) {
            AckJudgement::Counts => {
                self.acks.entry(ack.node).or_insert(ack);
                return true;
            }
            AckJudgement::BadSignature => {
                tracing::warn!(node = ?ack.node, addr = ?ack.addr, "store ack with a bad signature dropped")
            }
            // The ack stream keeps acks the owner has not consumed: after a remount, those of an
            // earlier store of a chunk queued again arrive while it is stored anew.
            AckJudgement::EarlierStore => {
                tracing::debug!(node = ?ack.node, addr = ?ack.addr, "store ack of an earlier store ignored")
            }
            AckJudgement::Replay => {
                let seen = REPLAYS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if seen.is_power_of_two() || seen == 0 {
                    tracing::warn!(
                        node = ?ack.node, addr = ?ack.addr, seen = seen + 1,
                        "store ack signed for this store with an older lease than asked ignored (a replay?)"
                    );
                }
            }
        }
        false
    }

    /// What `ack` is to this store: counted, a forgery, an ack of an earlier store of the same
    /// chunk (signed before this one began: it proves nothing about the lease asked now), or a
    /// replay (signed since, for a lease older than asked and not the lease the node held).
    pub fn judge(&self, ack: &StoreAck) -> AckJudgement {
        if !self.ack_matches(ack) {
            AckJudgement::BadSignature
        } else if ack.lease_expiry_ms >= self.terms.min_lease_ms || self.held_lease_ack(ack) {
            AckJudgement::Counts
        } else if ack.signed_at_ms.saturating_add(ACK_SKEW_MS) < self.terms.since_ms {
            AckJudgement::EarlierStore
        } else {
            AckJudgement::Replay
        }
    }

    /// Whether an ack for a shorter lease than asked is a node's fresh ack of the lease it
    /// already held (nodes never raise a lease for a store request): signed since the store
    /// began, give or take the clock skew nodes accept, and for a lease with at least ten
    /// minutes left (the vault records the lease acked and renews the replica with a proof when
    /// a third of its term is left). Anything else is an old ack replayed.
    fn held_lease_ack(&self, ack: &StoreAck) -> bool {
        let since = self.terms.since_ms;
        let fresh = ack.signed_at_ms.saturating_add(ACK_SKEW_MS) >= since;
        fresh && ack.lease_expiry_ms >= since.saturating_add(ACK_MIN_LEASE_MS)
    }

    /// Whether `ack` is the node's signature over the commitments of the chunk being stored:
    /// with its control commitment, or, from a node that held the chunk before control
    /// commitments existed, without (the owner's next renew or audit attaches it there).
    fn ack_matches(&self, ack: &StoreAck) -> bool {
        let p = &self.terms.commitment;
        match &self.terms.control {
            Some(q) => ack.verify_held(p, Some(q)) || ack.verify(p),
            None => ack.verify(p),
        }
    }

    /// Nodes that acknowledged so far.
    pub fn len(&self) -> usize {
        self.acks.len()
    }

    /// Whether no node acknowledged yet.
    pub fn is_empty(&self) -> bool {
        self.acks.is_empty()
    }

    /// Distinct nodes counting toward `goal` and every slot claimed; see [`progress`].
    pub fn progress(&self, goal: &StoreGoal<'_>) -> (usize, HashSet<u8>) {
        progress(goal, Some(self))
    }

    /// The acks that count toward `goal` and are not for replicas it already held.
    pub fn counted(&self, goal: &StoreGoal<'_>) -> Vec<StoreAck> {
        let counting = counting_nodes(goal, Some(self));
        self.acks
            .values()
            .filter(|a| counting.contains(&a.node) && !goal.held.iter().any(|(n, _)| *n == a.node))
            .cloned()
            .collect()
    }
}

/// The nodes counting toward `goal`: held replicas, then acks from nodes neither held nor
/// excluded in the order they were signed; with a placement, only those its rule counts.
fn counting_nodes(goal: &StoreGoal<'_>, tally: Option<&AckTally>) -> HashSet<NodeId> {
    let mut acks: Vec<&StoreAck> = tally
        .into_iter()
        .flat_map(|t| t.acks.values())
        .filter(|a| !goal.exclude.contains(&a.node) && !goal.held.iter().any(|(n, _)| *n == a.node))
        .collect();
    acks.sort_by_key(|a| (a.signed_at_ms, a.node));
    let candidates = goal.held.iter().map(|(n, _)| *n).chain(acks.into_iter().map(|a| a.node));
    match goal.placement {
        Some(p) => p.counted(candidates).into_iter().collect(),
        None => candidates.collect(),
    }
}

/// Distinct nodes counting toward `goal` (held replicas plus acks from nodes neither held nor
/// excluded, by houses when it has a placement) and every slot claimed so far (held, acked, or
/// taken by a node that does not count).
pub fn progress(goal: &StoreGoal<'_>, tally: Option<&AckTally>) -> (usize, HashSet<u8>) {
    let mut claimed: HashSet<u8> = goal.held.iter().map(|(_, s)| *s).collect();
    claimed.extend(tally.into_iter().flat_map(|t| t.acks.values()).map(|a| a.slot));
    (counting_nodes(goal, tally).len(), claimed)
}

/// The next `n` replica slots to publish: the lowest ones nobody claimed.
pub fn slots_to_publish(claimed: &HashSet<u8>, n: usize) -> Vec<u8> {
    (0..=u8::MAX).filter(|s| !claimed.contains(s)).take(n).collect()
}

// ---------------------------------------------------------------------------------------------
// Gets

/// Collects the verified chunks of one get request from its reply messages.
#[derive(Debug)]
pub struct GetReplies {
    target: NodeId,
    wanted: HashSet<Addr>,
    answered: HashSet<Addr>,
    found: Vec<(Addr, bytes::Bytes)>,
}

impl GetReplies {
    /// For a request for `wanted` sent to `target` (or `NodeId::ANY`, a broadcast).
    pub fn new(target: NodeId, wanted: impl IntoIterator<Item = Addr>) -> Self {
        GetReplies {
            target,
            wanted: wanted.into_iter().collect(),
            answered: HashSet::new(),
            found: Vec::new(),
        }
    }

    /// Whether every addr asked for has its answer.
    pub fn complete(&self) -> bool {
        self.answered.len() >= self.wanted.len()
    }

    /// Takes one reply message: a chunk asked for whose bytes hash to its addr is kept; a
    /// targeted node's "not found" settles its addr; anything else (malformed, unasked, from
    /// another node, wrong bytes) is ignored with a log line.
    pub fn offer(&mut self, payload: &bytes::Bytes) {
        let reply = match GetReply::decode_head(payload) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "malformed get reply dropped");
                return;
            }
        };
        if !self.wanted.contains(&reply.addr) || self.answered.contains(&reply.addr) {
            return;
        }
        if self.target != NodeId::ANY && reply.node != self.target {
            tracing::warn!(from = ?reply.node, "get reply from a node that was not asked; ignored");
            return;
        }
        let ciphertext = payload.slice(reply.ciphertext);
        match reply.status {
            Status::Ok if Addr::of(&ciphertext) == reply.addr => {
                self.answered.insert(reply.addr);
                self.found.push((reply.addr, ciphertext));
            }
            Status::Ok => {
                tracing::warn!(node = ?reply.node, addr = ?reply.addr, "node sent bytes that do not match the addr; ignored")
            }
            _ if self.target != NodeId::ANY => {
                self.answered.insert(reply.addr);
            }
            _ => {}
        }
    }

    /// The verified chunks received.
    pub fn into_found(self) -> Vec<(Addr, bytes::Bytes)> {
        self.found
    }
}

// ---------------------------------------------------------------------------------------------
// Audits

/// The verdict on one audit reply: signed by the node challenged, for this very challenge (its
/// hash, proofs included, when the challenge carries a control proof), with leaves that verify
/// against the addr. A "not found" signed for another request with the same seed (a copy with a
/// garbage proof) is a failed reply, not a verdict.
pub fn judge(reply: &AuditReply, req: &AuditRequest, len: u64) -> AuditVerdict {
    let bound = req.control.is_some().then(|| request_hash(&req.encode()));
    let (node, addr, seed) = (req.target, req.addr, &req.seed);
    if reply.node != node || reply.addr != addr || reply.seed != *seed || !reply.verify_signature() {
        return AuditVerdict::Failed("reply not signed by the node for this challenge".into());
    }
    if reply.request != bound {
        return AuditVerdict::Failed("reply signed for another request than the one sent".into());
    }
    match reply.status {
        Status::Ok => match verify_audit(&addr.0, len, seed, AUDIT_LEAVES as usize, &reply.proofs) {
            Ok(()) => AuditVerdict::Passed,
            Err(e) => AuditVerdict::Failed(e.to_string()),
        },
        Status::NotFound => AuditVerdict::NotFound,
        other => AuditVerdict::Failed(format!("node answered {other:?}")),
    }
}

/// The verdict on the bytes answering the challenge `req` (of a chunk `len` bytes long).
pub fn judge_bytes(bytes: &[u8], req: &AuditRequest, len: u64) -> AuditVerdict {
    match AuditReply::decode(bytes) {
        Ok(reply) => judge(&reply, req, len),
        Err(e) => AuditVerdict::Failed(format!("malformed reply: {e}")),
    }
}

/// The verdicts on the bytes answering a batch of challenges (`part`: each challenge sent and
/// the ciphertext length of its chunk), one per challenge, in order.
pub fn judge_batch(bytes: &[u8], part: &[(&AuditRequest, u64)]) -> Vec<AuditVerdict> {
    let replies = match AuditBatchReply::decode(bytes) {
        Ok(r) if r.0.len() == part.len() => r.0,
        Ok(r) => {
            let why = format!("{} answers to {} challenges", r.0.len(), part.len());
            return part.iter().map(|_| AuditVerdict::Failed(why.clone())).collect();
        }
        Err(e) => {
            return part.iter().map(|_| AuditVerdict::Failed(format!("malformed reply: {e}"))).collect()
        }
    };
    part.iter().zip(&replies).map(|((req, len), reply)| judge(reply, req, *len)).collect()
}

// ---------------------------------------------------------------------------------------------
// Renew and delete

/// Which secret renew and delete requests are proven with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proving {
    /// Every secret carries a control secret (the owner's): `ControlRequest`s, whose replies
    /// are bound to the request sent.
    Control,
    /// Some secret has none (a share's): `ProvenRequest`s with read proofs; nodes then apply
    /// the legacy rule or refuse.
    Read,
}

impl Proving {
    /// How the renew or delete of `items` is proven.
    pub fn of(items: &[(Addr, ProofSecret)]) -> Self {
        if items.iter().all(|(_, s)| s.control().is_some()) {
            Proving::Control
        } else {
            Proving::Read
        }
    }

    /// Most items in one request.
    pub fn batch(self) -> usize {
        match self {
            Proving::Control => MAX_CONTROL_ITEMS,
            Proving::Read => MAX_ITEMS,
        }
    }
}

/// A renew or delete request for one batch, encoded, with what its reply must match.
#[derive(Clone, Debug)]
pub struct ControlSent {
    /// The encoded request.
    pub bytes: Vec<u8>,
    request_id: RequestId,
    addrs: Vec<Addr>,
    /// The request hash a bound reply carries (control requests only).
    bound: Option<[u8; 32]>,
}

impl ControlSent {
    /// The id of the request.
    pub fn request_id(&self) -> RequestId {
        self.request_id
    }

    /// Builds the request for `batch` (at most `proving.batch()` items) to `node`, stamped
    /// `now_ms`; `lease` is the new lease expiry for a renew, 0 for a delete.
    pub fn build(
        proving: Proving,
        purpose: Purpose,
        node: NodeId,
        now_ms: u64,
        lease: u64,
        batch: &[(Addr, ProofSecret)],
    ) -> Self {
        let addrs = batch.iter().map(|(a, _)| *a).collect();
        let controlled = match proving {
            Proving::Control => ControlRequest::build(purpose, node, now_ms, lease, batch),
            Proving::Read => None,
        };
        match controlled {
            Some(req) => {
                let bytes = req.encode();
                let bound = Some(request_hash(&bytes));
                ControlSent { bytes, request_id: req.request_id, addrs, bound }
            }
            None => {
                let req = ProvenRequest::build(purpose, node, now_ms, lease, batch);
                ControlSent { bytes: req.encode(), request_id: req.request_id, addrs, bound: None }
            }
        }
    }
}

/// The outcome per addr of a renew or delete, from the bytes `node` answered `sent` with: signed
/// by that node, for that request (bound to its hash when it was a control request), answering
/// exactly the chunks asked, in order.
pub fn check_control(
    bytes: &[u8],
    node: NodeId,
    sent: &ControlSent,
) -> Result<Vec<(Addr, Status)>, FabricError> {
    let bad = |why: &str| FabricError::BadReply { node, why: why.to_string() };
    let reply = ControlReply::decode(bytes).map_err(|e| bad(&e.to_string()))?;
    if reply.node != node || !reply.verify() || reply.request_id != sent.request_id {
        return Err(bad("signature, node or request id does not match"));
    }
    if reply.request != sent.bound {
        return Err(bad("reply signed for another request than the one sent"));
    }
    let got: Vec<Addr> = reply.results.iter().map(|(a, _)| *a).collect();
    if sent.addrs != got {
        return Err(bad("answers for other chunks than asked"));
    }
    Ok(reply.results)
}

#[cfg(test)]
#[path = "fabric_checks_tests.rs"]
mod tests;
