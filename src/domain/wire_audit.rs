//! Proof-of-storage messages (PROTOCOL.md 4.6–4.9): challenges, with a control proof or without,
//! signed answers, bound to the challenge's hash or not, and their batches.

use super::{bind_request, Kind, Status, WireError, MAX_AUDIT_BATCH, MAX_BATCH_LEAVES, MAX_PATH, R, W};
use crate::domain::audit::{LeafProof, LEAF_SIZE, MAX_LEAVES_PER_AUDIT};
use crate::domain::identity::{verify_signature, NodeIdentity, SIGNATURE_LEN};
use crate::domain::ids::{Addr, NodeId, RequestId};
use crate::domain::proof::{prove, Commitment, Proof, ProofContext, ProofSecret, Purpose};

/// A proof-of-storage challenge for one chunk at one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRequest {
    /// Random, for replay protection.
    pub request_id: RequestId,
    /// Sender's clock, Unix milliseconds.
    pub timestamp_ms: u64,
    /// The node challenged (audits are always targeted).
    pub target: NodeId,
    /// The chunk.
    pub addr: Addr,
    /// Proof of knowledge of the chunk's secret, so strangers cannot probe who stores what.
    pub proof: Proof,
    /// Fresh randomness selecting the leaves.
    pub seed: [u8; 32],
    /// How many leaves to return.
    pub leaves: u8,
    /// The chunk's control commitment Q and a proof of its secret for the same statement (kind
    /// `AuditControlled`): what a node holding Q requires. `proof` then serves chunks held
    /// without Q (the legacy rule), which it upgrades to Q.
    pub control: Option<ControlProof>,
}

/// A control commitment Q and a proof of knowledge of its secret `y`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControlProof {
    /// The chunk's control commitment Q.
    pub commitment: Commitment,
    /// Proof for the same statement as the item's read proof, with `y`.
    pub proof: Proof,
}

impl ControlProof {
    /// Proves with `secret`'s control secret, if it has one, for `ctx`.
    pub fn prove(secret: &ProofSecret, ctx: &ProofContext) -> Option<Self> {
        let y = secret.control()?;
        Some(ControlProof { commitment: y.commitment(), proof: prove(y, ctx) })
    }
}

/// The statement an audit's proof is bound to (covers the seed and leaf count).
fn audit_context(
    request_id: &RequestId,
    ts: u64,
    target: &NodeId,
    addr: &Addr,
    seed: &[u8; 32],
    leaves: u8,
) -> ProofContext {
    let mut extra = seed.to_vec();
    extra.push(leaves);
    ProofContext {
        purpose: Purpose::Audit,
        addr: addr.0,
        target: target.0,
        timestamp_ms: ts,
        request_id: bind_request(request_id, &extra),
    }
}

impl AuditRequest {
    /// Builds a challenge for `target` with a fresh request id and proves knowledge of the secret.
    pub fn build(
        secret: &ProofSecret,
        target: NodeId,
        addr: Addr,
        seed: [u8; 32],
        leaves: u8,
        timestamp_ms: u64,
    ) -> Self {
        let request_id = RequestId::random();
        let ctx = audit_context(&request_id, timestamp_ms, &target, &addr, &seed, leaves);
        let (proof, control) = (prove(secret, &ctx), ControlProof::prove(secret, &ctx));
        AuditRequest { request_id, timestamp_ms, target, addr, proof, seed, leaves, control }
    }

    /// The statement the proof must be bound to (covers the seed and leaf count).
    pub fn context(&self) -> ProofContext {
        audit_context(&self.request_id, self.timestamp_ms, &self.target, &self.addr, &self.seed, self.leaves)
    }

    /// Encodes the request (kind `AuditControlled` when it carries a control proof).
    pub fn encode(&self) -> Vec<u8> {
        let kind = if self.control.is_some() { Kind::AuditControlled } else { Kind::Audit };
        let mut w = W::new(kind, 400);
        w.raw(&self.request_id.0)
            .u64(self.timestamp_ms)
            .raw(&self.target.0)
            .raw(&self.addr.0)
            .raw(&self.proof.to_bytes())
            .raw(&self.seed)
            .u8(self.leaves);
        if let Some(c) = &self.control {
            w.raw(&c.commitment.to_bytes()).raw(&c.proof.to_bytes());
        }
        w.0
    }

    /// Decodes a request of either kind.
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let (mut r, controlled) = R::open_either(buf, Kind::Audit, Kind::AuditControlled)?;
        let mut req = AuditRequest {
            request_id: RequestId(r.arr()?),
            timestamp_ms: r.u64()?,
            target: NodeId(r.arr()?),
            addr: Addr(r.arr()?),
            proof: r.proof()?,
            seed: r.arr()?,
            leaves: r.u8()?,
            control: None,
        };
        if controlled {
            req.control = Some(ControlProof { commitment: r.commitment()?, proof: r.proof()? });
        }
        if req.leaves as usize > MAX_LEAVES_PER_AUDIT || req.leaves == 0 {
            return Err(WireError::Invalid("leaf count"));
        }
        r.finish()?;
        Ok(req)
    }
}

/// A node's signed answer to an audit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditReply {
    /// The node answering.
    pub node: NodeId,
    /// The chunk.
    pub addr: Addr,
    /// The seed being answered (ties the reply to the fresh challenge).
    pub seed: [u8; 32],
    /// [`request_hash`] of the challenge answered, proofs included (kind `AuditReplyBound`);
    /// `None` in the answer to an `Audit` without a control proof.
    pub request: Option<[u8; 32]>,
    /// Ok with proofs, or why not.
    pub status: Status,
    /// Selected leaves with Merkle paths (empty unless Ok).
    pub proofs: Vec<LeafProof>,
    /// Signature over all of the above.
    pub signature: [u8; SIGNATURE_LEN],
}

impl AuditReply {
    fn body(
        node: &NodeId,
        (addr, seed, request): (&Addr, &[u8; 32], Option<&[u8; 32]>),
        status: Status,
        proofs: &[LeafProof],
    ) -> W {
        let size: usize = proofs.iter().map(|p| 12 + p.leaf.len() + p.path.len() * 32).sum();
        let kind = if request.is_some() { Kind::AuditReplyBound } else { Kind::AuditReply };
        let mut w = W::new(kind, 172 + size);
        w.raw(&node.0).raw(&addr.0).raw(seed);
        if let Some(h) = request {
            w.raw(h);
        }
        w.u8(status as u8).u8(proofs.len() as u8);
        for p in proofs {
            w.u64(p.index).u16(p.leaf.len() as u16).raw(&p.leaf).u8(p.path.len() as u8);
            for h in &p.path {
                w.raw(h);
            }
        }
        w
    }

    /// Creates and signs a reply not bound to its request's bytes (answers an `Audit` without a
    /// control proof).
    pub fn sign(
        id: &NodeIdentity,
        addr: Addr,
        seed: [u8; 32],
        status: Status,
        proofs: Vec<LeafProof>,
    ) -> Self {
        Self::sign_bound(id, (addr, seed, None), status, proofs)
    }

    /// Creates and signs a reply; with a request hash (see [`request_hash`]) the signature binds
    /// it to that exact challenge.
    pub fn sign_bound(
        id: &NodeIdentity,
        (addr, seed, request): (Addr, [u8; 32], Option<[u8; 32]>),
        status: Status,
        proofs: Vec<LeafProof>,
    ) -> Self {
        let node = id.id();
        let signature = id.sign(&Self::body(&node, (&addr, &seed, request.as_ref()), status, &proofs).0);
        AuditReply { node, addr, seed, request, status, proofs, signature }
    }

    fn signed_body(&self) -> W {
        Self::body(&self.node, (&self.addr, &self.seed, self.request.as_ref()), self.status, &self.proofs)
    }

    /// Whether the node's signature covers these fields.
    pub fn verify_signature(&self) -> bool {
        verify_signature(&self.node, &self.signed_body().0, &self.signature)
    }

    /// Encodes the reply.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = self.signed_body();
        w.raw(&self.signature);
        w.0
    }

    /// Decodes a reply of either kind (signature and proofs are checked by the owner).
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let (mut r, bound) = R::open_either(buf, Kind::AuditReply, Kind::AuditReplyBound)?;
        let node = NodeId(r.arr()?);
        let addr = Addr(r.arr()?);
        let seed = r.arr()?;
        let request = if bound { Some(r.arr()?) } else { None };
        let status = Status::from_u8(r.u8()?)?;
        let n = r.u8()? as usize;
        if n > MAX_LEAVES_PER_AUDIT {
            return Err(WireError::TooLarge { what: "leaf count", len: n, max: MAX_LEAVES_PER_AUDIT });
        }
        let mut proofs = Vec::with_capacity(n);
        for _ in 0..n {
            let index = r.u64()?;
            let len = r.u16()? as usize;
            let leaf = r.bounded(len, "leaf", LEAF_SIZE)?.to_vec();
            let plen = r.u8()? as usize;
            if plen > MAX_PATH {
                return Err(WireError::TooLarge { what: "path", len: plen, max: MAX_PATH });
            }
            let mut path = Vec::with_capacity(plen);
            for _ in 0..plen {
                path.push(r.arr()?);
            }
            proofs.push(LeafProof { index, leaf, path });
        }
        let signature = r.arr()?;
        r.finish()?;
        Ok(AuditReply { node, addr, seed, request, status, proofs, signature })
    }
}

/// Bound on one encoded `AuditRequest` inside a batch (with a control proof: 379 bytes).
const AUDIT_REQUEST_MAX: usize = 512;
/// Bound on one encoded `AuditReply` inside a batch reply: 16 leaves, each with a full path.
const AUDIT_REPLY_MAX: usize = 232 + MAX_LEAVES_PER_AUDIT * (12 + LEAF_SIZE + MAX_PATH * 32);

/// Several complete `AuditRequest`s to one node in one message, so the node can verify their
/// proofs as a batch and the bus carries one request and one reply instead of many. Each
/// challenge keeps its own request id, timestamp, seed and proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditBatch(pub Vec<AuditRequest>);

impl AuditBatch {
    /// Encodes the batch.
    pub fn encode(&self) -> Vec<u8> {
        encode_list(Kind::AuditBatch, self.0.iter().map(AuditRequest::encode), self.0.len(), 200)
    }

    /// Decodes a batch of 1..=`MAX_AUDIT_BATCH` challenges asking for at most
    /// `MAX_BATCH_LEAVES` leaves in total.
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let list = List { kind: Kind::AuditBatch, what: "audit batch", min: 1, item: "audit request" };
        let reqs = list.decode(buf, AUDIT_REQUEST_MAX, AuditRequest::decode)?;
        let leaves: usize = reqs.iter().map(|q| q.leaves as usize).sum();
        if leaves > MAX_BATCH_LEAVES {
            return Err(WireError::TooLarge {
                what: "leaves in a batch",
                len: leaves,
                max: MAX_BATCH_LEAVES,
            });
        }
        Ok(AuditBatch(reqs))
    }
}

/// A node's answers to an `AuditBatch`: one complete signed `AuditReply` per challenge, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditBatchReply(pub Vec<AuditReply>);

impl AuditBatchReply {
    /// Encodes the replies.
    pub fn encode(&self) -> Vec<u8> {
        encode_list(Kind::AuditBatchReply, self.0.iter().map(AuditReply::encode), self.0.len(), 6000)
    }

    /// Decodes the replies (each is checked by the owner like a single audit reply).
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let list =
            List { kind: Kind::AuditBatchReply, what: "audit batch reply", min: 0, item: "audit reply" };
        Ok(AuditBatchReply(list.decode(buf, AUDIT_REPLY_MAX, AuditReply::decode)?))
    }
}

/// A message that is a count (u8) of complete inner messages, each prefixed by its u32 length.
fn encode_list(kind: Kind, items: impl Iterator<Item = Vec<u8>>, n: usize, each: usize) -> Vec<u8> {
    let mut w = W::new(kind, 1 + n * each);
    w.u8(n as u8);
    for b in items {
        w.u32(b.len() as u32).raw(&b);
    }
    w.0
}

/// How to read an `encode_list` message: its kind, between `min` and `MAX_AUDIT_BATCH` items.
struct List {
    kind: Kind,
    what: &'static str,
    min: usize,
    item: &'static str,
}

impl List {
    fn decode<T>(
        &self,
        buf: &[u8],
        item_max: usize,
        decode: fn(&[u8]) -> Result<T, WireError>,
    ) -> Result<Vec<T>, WireError> {
        let mut r = R::open(buf, self.kind)?;
        let n = r.u8()? as usize;
        if n < self.min || n > MAX_AUDIT_BATCH {
            return Err(WireError::TooLarge { what: self.what, len: n, max: MAX_AUDIT_BATCH });
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let len = r.u32()? as usize;
            out.push(decode(r.bounded(len, self.item, item_max)?)?);
        }
        r.finish()?;
        Ok(out)
    }
}
