//! What the owner checks in everything storage nodes send back, whatever carries it: store acks
//! counted toward a goal, get replies (BLAKE3 of every ciphertext against its addr), audit
//! verdicts and renew/delete replies. Every `ChunkFabric` adapter runs its replies through here.

use crate::domain::audit::verify_audit;
use crate::domain::ids::{Addr, NodeId};
use crate::domain::proof::Commitment;
use crate::domain::wire::{
    AuditBatchReply, AuditReply, ControlReply, GetReply, ProvenRequest, Status, StoreAck,
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

/// The verified acks collected for one chunk being stored, one per node.
#[derive(Debug)]
pub struct AckTally {
    commitment: Commitment,
    min_lease_ms: u64,
    acks: HashMap<NodeId, StoreAck>,
}

impl AckTally {
    /// A tally for a chunk stored under `commitment`, whose acks must be for a lease ending at
    /// `min_lease_ms` or later (older acks are replays of an earlier store).
    pub fn new(commitment: Commitment, min_lease_ms: u64) -> Self {
        AckTally { commitment, min_lease_ms, acks: HashMap::new() }
    }

    /// Records `ack` if its signature verifies against the commitment and its lease is current
    /// (dropped with a log line otherwise); the first ack of each node is kept. Returns whether
    /// it was recorded.
    pub fn accept(&mut self, ack: StoreAck) -> bool {
        if !ack.verify(&self.commitment) {
            tracing::warn!(node = ?ack.node, addr = ?ack.addr, "store ack with a bad signature dropped");
            return false;
        }
        if ack.lease_expiry_ms < self.min_lease_ms {
            tracing::warn!(node = ?ack.node, "store ack for an older lease (a replay?) ignored");
            return false;
        }
        self.acks.entry(ack.node).or_insert(ack);
        true
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
        self.acks
            .values()
            .filter(|a| !goal.exclude.contains(&a.node) && !goal.held.iter().any(|(n, _)| *n == a.node))
            .cloned()
            .collect()
    }
}

/// Distinct nodes counting toward `goal` (held replicas plus acks from nodes neither held nor
/// excluded) and every slot claimed so far (held, acked or taken by an excluded node).
pub fn progress(goal: &StoreGoal<'_>, tally: Option<&AckTally>) -> (usize, HashSet<u8>) {
    let mut claimed: HashSet<u8> = goal.held.iter().map(|(_, s)| *s).collect();
    let mut nodes: HashSet<NodeId> = goal.held.iter().map(|(n, _)| *n).collect();
    for a in tally.into_iter().flat_map(|t| t.acks.values()) {
        claimed.insert(a.slot);
        if !goal.exclude.contains(&a.node) {
            nodes.insert(a.node);
        }
    }
    (nodes.len(), claimed)
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

/// The verdict on one audit reply: signed by the node challenged, for this chunk and this seed,
/// with leaves that verify against the addr.
pub fn judge(reply: &AuditReply, node: NodeId, addr: Addr, seed: &[u8; 32], len: u64) -> AuditVerdict {
    if reply.node != node || reply.addr != addr || reply.seed != *seed || !reply.verify_signature() {
        return AuditVerdict::Failed("reply not signed by the node for this challenge".into());
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

/// The verdict on the bytes answering one challenge.
pub fn judge_bytes(bytes: &[u8], node: NodeId, addr: Addr, seed: &[u8; 32], len: u64) -> AuditVerdict {
    match AuditReply::decode(bytes) {
        Ok(reply) => judge(&reply, node, addr, seed, len),
        Err(e) => AuditVerdict::Failed(format!("malformed reply: {e}")),
    }
}

/// The verdicts on the bytes answering a batch of challenges (`part`: addr and ciphertext
/// length; `seeds`: the seed sent for each), one per challenge, in order.
pub fn judge_batch(
    bytes: &[u8],
    node: NodeId,
    part: &[(Addr, u64)],
    seeds: &[[u8; 32]],
) -> Vec<AuditVerdict> {
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
    part.iter()
        .zip(seeds)
        .zip(&replies)
        .map(|(((addr, len), seed), reply)| judge(reply, node, *addr, seed, *len))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Renew and delete

/// The outcome per addr of a renew or delete, from the bytes `node` answered `req` with: signed
/// by that node, for that request, answering exactly the chunks asked, in order.
pub fn check_control(
    bytes: &[u8],
    node: NodeId,
    req: &ProvenRequest,
) -> Result<Vec<(Addr, Status)>, FabricError> {
    let bad = |why: &str| FabricError::BadReply { node, why: why.to_string() };
    let reply = ControlReply::decode(bytes).map_err(|e| bad(&e.to_string()))?;
    if reply.node != node || !reply.verify() || reply.request_id != req.request_id {
        return Err(bad("signature, node or request id does not match"));
    }
    let expected: Vec<Addr> = req.items.iter().map(|it| it.addr).collect();
    let got: Vec<Addr> = reply.results.iter().map(|(a, _)| *a).collect();
    if expected != got {
        return Err(bad("answers for other chunks than asked"));
    }
    Ok(reply.results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::identity::NodeIdentity;
    use crate::domain::proof::ProofSecret;

    fn node(i: u8) -> NodeIdentity {
        NodeIdentity::from_bytes(&[i; 64])
    }

    #[test]
    fn a_tally_keeps_one_verified_current_ack_per_node() {
        let c = ProofSecret::from_seed(&[1; 32]).commitment();
        let other = ProofSecret::from_seed(&[2; 32]).commitment();
        let addr = Addr([7; 32]);
        let mut t = AckTally::new(c, 1000);
        assert!(
            !t.accept(StoreAck::sign(&node(1), addr, &other, 0, 2000, 5)),
            "signed for another commitment"
        );
        assert!(!t.accept(StoreAck::sign(&node(1), addr, &c, 0, 999, 5)), "an older lease");
        assert!(t.accept(StoreAck::sign(&node(1), addr, &c, 0, 2000, 5)));
        assert!(t.accept(StoreAck::sign(&node(1), addr, &c, 3, 2000, 6)), "a second ack of a node");
        assert!(t.accept(StoreAck::sign(&node(2), addr, &c, 1, 2000, 5)));
        assert!(t.accept(StoreAck::sign(&node(3), addr, &c, 2, 2000, 5)));
        assert_eq!(t.len(), 3, "one ack per node");
        // Node 1 is held already, node 3 is excluded: its slot is claimed, it does not count.
        let held = [(node(1).id(), 0)];
        let exclude = [node(3).id()];
        let goal = StoreGoal { replicas: 3, held: &held, exclude: &exclude };
        let (distinct, claimed) = t.progress(&goal);
        assert_eq!(distinct, 2);
        assert_eq!(claimed, HashSet::from([0, 1, 2]));
        let counted: Vec<NodeId> = t.counted(&goal).iter().map(|a| a.node).collect();
        assert_eq!(counted, vec![node(2).id()]);
        assert_eq!(slots_to_publish(&claimed, 2), vec![3, 4]);
        assert_eq!(progress(&goal, None), (1, HashSet::from([0])));
    }

    #[test]
    fn get_replies_keep_only_asked_chunks_whose_bytes_match() {
        let ct = b"ciphertext".to_vec();
        let addr = Addr::of(&ct);
        let (asked, stranger) = (node(1), node(2));
        let reply = |n: &NodeIdentity, status, bytes: &[u8]| {
            bytes::Bytes::from(GetReply { node: n.id(), addr, status, ciphertext: bytes.to_vec() }.encode())
        };
        let mut r = GetReplies::new(asked.id(), [addr]);
        r.offer(&bytes::Bytes::from_static(b"garbage"));
        r.offer(&reply(&stranger, Status::Ok, &ct));
        r.offer(&reply(&asked, Status::Ok, b"other bytes"));
        assert!(!r.complete(), "nothing acceptable yet");
        r.offer(&reply(&asked, Status::Ok, &ct));
        assert!(r.complete());
        assert_eq!(r.into_found(), vec![(addr, bytes::Bytes::from(ct.clone()))]);
        // A targeted "not found" settles the addr; on a broadcast it is ignored.
        let mut r = GetReplies::new(asked.id(), [addr]);
        r.offer(&reply(&asked, Status::NotFound, b""));
        assert!(r.complete() && r.into_found().is_empty());
        let mut r = GetReplies::new(NodeId::ANY, [addr]);
        r.offer(&reply(&asked, Status::NotFound, b""));
        assert!(!r.complete());
    }
}
