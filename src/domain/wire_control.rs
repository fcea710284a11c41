//! Renew and delete proven with the control secret (`Kind::Control`), and the hash that binds a
//! node's signed reply to the exact request it answers.
//!
//! A `ControlRequest` item carries two proofs for the same statement: one with the chunk's read
//! secret `x` (against P) and one with its control secret `y` (against Q, which the item names).
//! A node holding the chunk with Q checks only the control proof; a node holding it without Q
//! (stored before control commitments existed) applies the legacy rule, checks both, and from
//! then on holds Q (docs/SECURITY.md §5.5).

use super::{proven_context, Kind, WireError, MAX_ITEMS, R, W};
use crate::domain::ids::{Addr, NodeId, RequestId};
use crate::domain::proof::{
    prove, Commitment, Proof, ProofContext, ProofSecret, Purpose, COMMITMENT_LEN, PROOF_LEN,
};

/// Most items in one `ControlRequest` (each is 288 bytes, so a full request stays under
/// `MAX_REQUEST`).
pub const MAX_CONTROL_ITEMS: usize = 48;

/// The hash a bound reply carries: BLAKE3 (derive-key mode, `"quloud v1 answered request"`) of
/// the request's encoding, proofs included. Decoding is exact and every field canonical, so a
/// decoded request re-encodes to the bytes that were sent.
pub fn request_hash(request: &[u8]) -> [u8; 32] {
    blake3::derive_key("quloud v1 answered request", request)
}

/// One chunk of a `ControlRequest`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControlItem {
    /// The chunk.
    pub addr: Addr,
    /// Proof with the read secret `x` (for nodes holding the chunk without Q).
    pub read: Proof,
    /// The chunk's control commitment Q.
    pub control: Commitment,
    /// Proof with the control secret `y`.
    pub proof: Proof,
}

/// A renew or delete for up to `MAX_CONTROL_ITEMS` chunks, proven with their control secrets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlRequest {
    /// Renew or Delete.
    pub purpose: Purpose,
    /// Random, for replay protection.
    pub request_id: RequestId,
    /// Sender's clock, Unix milliseconds; nodes refuse stale requests.
    pub timestamp_ms: u64,
    /// The node addressed (never a broadcast).
    pub target: NodeId,
    /// New lease expiry for Renew; 0 otherwise.
    pub lease_expiry_ms: u64,
    /// The chunks and their proofs.
    pub items: Vec<ControlItem>,
}

const ITEM_LEN: usize = 32 + PROOF_LEN + COMMITMENT_LEN + PROOF_LEN;

impl ControlRequest {
    /// Builds a request and proves, for each chunk, knowledge of its read and control secrets;
    /// `None` if a secret has no control secret (a share's).
    pub fn build(
        purpose: Purpose,
        target: NodeId,
        timestamp_ms: u64,
        lease_expiry_ms: u64,
        items: &[(Addr, ProofSecret)],
    ) -> Option<Self> {
        let mut req = ControlRequest {
            purpose,
            request_id: RequestId::random(),
            timestamp_ms,
            target,
            lease_expiry_ms,
            items: Vec::with_capacity(items.len()),
        };
        for (addr, secret) in items {
            let ctx = req.context(addr);
            let y = secret.control()?;
            let item = ControlItem {
                addr: *addr,
                read: prove(secret, &ctx),
                control: y.commitment(),
                proof: prove(y, &ctx),
            };
            req.items.push(item);
        }
        Some(req)
    }

    /// The statement both proofs of an item are bound to (the same as a `ProvenRequest`'s).
    pub fn context(&self, addr: &Addr) -> ProofContext {
        proven_context(
            self.purpose,
            &self.request_id,
            self.timestamp_ms,
            &self.target,
            self.lease_expiry_ms,
            addr,
        )
    }

    /// Encodes the request.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = W::new(Kind::Control, 64 + self.items.len() * ITEM_LEN);
        w.u8(self.purpose as u8)
            .raw(&self.request_id.0)
            .u64(self.timestamp_ms)
            .raw(&self.target.0)
            .u64(self.lease_expiry_ms)
            .u16(self.items.len() as u16);
        for it in &self.items {
            w.raw(&it.addr.0).raw(&it.read.to_bytes()).raw(&it.control.to_bytes()).raw(&it.proof.to_bytes());
        }
        w.0
    }

    /// Decodes a request; proofs are checked by the node, not here.
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = R::open(buf, Kind::Control)?;
        let purpose = match r.u8()? {
            3 => Purpose::Renew,
            4 => Purpose::Delete,
            _ => return Err(WireError::Invalid("purpose")),
        };
        let request_id = RequestId(r.arr()?);
        let timestamp_ms = r.u64()?;
        let target = NodeId(r.arr()?);
        let lease_expiry_ms = r.u64()?;
        let n = r.u16()? as usize;
        if n > MAX_CONTROL_ITEMS.min(MAX_ITEMS) {
            return Err(WireError::TooLarge { what: "item count", len: n, max: MAX_CONTROL_ITEMS });
        }
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            let item = ControlItem {
                addr: Addr(r.arr()?),
                read: r.proof()?,
                control: r.commitment()?,
                proof: r.proof()?,
            };
            items.push(item);
        }
        r.finish()?;
        Ok(ControlRequest { purpose, request_id, timestamp_ms, target, lease_expiry_ms, items })
    }
}
