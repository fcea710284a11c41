//! Wire messages of the fabric protocol (docs/DESIGN.md §5, docs/PROTOCOL.md), encoded and decoded.
//!
//! Every message starts with a version byte and a kind byte. Integers are little-endian, lengths
//! are explicit and bounded, and a message must be consumed exactly: trailing bytes are an error.
//! Decoding never panics and never allocates more than the declared (bounded) lengths.

use crate::domain::audit::Verified;
use crate::domain::chunker::MAX_CHUNK;
use crate::domain::identity::{verify_signature, NodeIdentity, SIGNATURE_LEN};
use crate::domain::ids::{AckToken, Addr, NodeId, RequestId};
use crate::domain::proof::{
    prove, Commitment, Proof, ProofContext, ProofSecret, Purpose, COMMITMENT_LEN, PROOF_LEN,
};
use crate::domain::seal::TAG_LEN;

/// Protocol version carried by every message.
pub const VERSION: u8 = 1;
/// Largest ciphertext a store request or get reply may carry.
pub const MAX_CIPHERTEXT: usize = MAX_CHUNK + TAG_LEN;
/// Most addrs in one get, renew or delete request.
pub const MAX_ITEMS: usize = 64;
/// Most challenges in one `AuditBatch`.
pub const MAX_AUDIT_BATCH: usize = 32;
/// Most leaves asked for by one `AuditBatch` in total, so that the reply (≤ ~3.1 KiB per leaf with
/// its path) stays under NATS's default 1 MiB payload.
pub const MAX_BATCH_LEAVES: usize = 256;
/// Longest Merkle path accepted in an audit reply.
pub const MAX_PATH: usize = 64;
/// Upper bound on any encoded message, for transports that check before decoding.
pub const MAX_MESSAGE: usize = MAX_CIPHERTEXT + 1024;
/// Upper bound on a request to a node (get, renew, delete, audit), above the largest valid one
/// (~14 KiB, a full [`ControlRequest`]), so a node drops an oversized request before looking at it.
pub const MAX_REQUEST: usize = 16 * 1024;

/// Message kinds (second byte of every message).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Owner → slot stream: store a chunk for one replica slot (its ciphertext waits once, for
    /// every slot, on the chunk's body subject). Kind 1 is retired: it was a store request that
    /// carried the ciphertext in every slot's message.
    Store = 10,
    /// Node → vault ack subject: signed acknowledgement of a stored chunk.
    StoreAck = 2,
    /// Owner → node(s): proof-gated request for chunks, or renew/delete of chunks.
    Proven = 3,
    /// Node → requester: one chunk (or why not).
    GetReply = 4,
    /// Owner → node: proof-of-storage challenge.
    Audit = 5,
    /// Node → owner: signed Merkle leaves answering an audit.
    AuditReply = 6,
    /// Node → owner: signed per-addr outcome of a renew or delete.
    ControlReply = 7,
    /// Owner → node: several proof-of-storage challenges in one message.
    AuditBatch = 8,
    /// Node → owner: the answers to an `AuditBatch`, in order.
    AuditBatchReply = 9,
    /// Owner → slot stream: a `Store` that also carries the chunk's control commitment Q.
    StoreControlled = 11,
    /// Owner → node: renew or delete proven with the control secret ([`ControlRequest`]).
    Control = 12,
    /// Owner → node: an `Audit` that also carries a proof with the control secret.
    AuditControlled = 13,
    /// Node → owner: a `ControlReply` bound to a hash of the request it answers.
    ControlReplyBound = 14,
    /// Node → owner: an `AuditReply` bound to a hash of the request it answers.
    AuditReplyBound = 15,
    /// Node → owner: a targeted request was outside the node's window; the node's clock, signed.
    Stale = 16,
}

/// What went wrong decoding a message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// Ended before a field was complete.
    #[error("message truncated")]
    Truncated,
    /// Bytes left after the last field.
    #[error("{0} trailing bytes after message")]
    Trailing(usize),
    /// A version this build does not speak.
    #[error("unsupported protocol version {0} (this build speaks {VERSION})")]
    Version(u8),
    /// The kind byte is not the expected one.
    #[error("unexpected message kind {0}")]
    Kind(u8),
    /// A length field above its bound.
    #[error("{what} of {len} exceeds the limit of {max}")]
    TooLarge { what: &'static str, len: usize, max: usize },
    /// A field with an invalid value.
    #[error("invalid {0}")]
    Invalid(&'static str),
}

/// Outcome of one item in a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// Done / here it is.
    Ok = 0,
    /// This node does not hold the chunk.
    NotFound = 1,
    /// The proof was invalid, stale or replayed.
    Refused = 2,
    /// The node is overloaded or failed internally; try elsewhere.
    Busy = 3,
}

impl Status {
    fn from_u8(b: u8) -> Result<Self, WireError> {
        Ok(match b {
            0 => Status::Ok,
            1 => Status::NotFound,
            2 => Status::Refused,
            3 => Status::Busy,
            _ => return Err(WireError::Invalid("status")),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Byte writer / reader

struct W(Vec<u8>);

impl W {
    fn new(kind: Kind, cap: usize) -> Self {
        let mut v = Vec::with_capacity(cap + 2);
        v.push(VERSION);
        v.push(kind as u8);
        W(v)
    }
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
}

struct R<'a>(&'a [u8]);

impl<'a> R<'a> {
    fn open(buf: &'a [u8], kind: Kind) -> Result<Self, WireError> {
        Self::open_either(buf, kind, kind).map(|(r, _)| r)
    }
    /// Opens a message of kind `a` or `b`; says which it is (`true` for `b`).
    fn open_either(buf: &'a [u8], a: Kind, b: Kind) -> Result<(Self, bool), WireError> {
        let mut r = R(buf);
        let v = r.u8()?;
        if v != VERSION {
            return Err(WireError::Version(v));
        }
        match r.u8()? {
            k if k == a as u8 => Ok((r, false)),
            k if k == b as u8 => Ok((r, true)),
            k => Err(WireError::Kind(k)),
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.0.len() < n {
            return Err(WireError::Truncated);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn arr<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.arr()?))
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.arr()?))
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.arr()?))
    }
    fn bounded(&mut self, len: usize, what: &'static str, max: usize) -> Result<&'a [u8], WireError> {
        if len > max {
            return Err(WireError::TooLarge { what, len, max });
        }
        self.take(len)
    }
    fn commitment(&mut self) -> Result<Commitment, WireError> {
        Commitment::from_bytes(self.take(COMMITMENT_LEN)?).map_err(|_| WireError::Invalid("commitment"))
    }
    fn proof(&mut self) -> Result<Proof, WireError> {
        Proof::from_bytes(self.take(PROOF_LEN)?).map_err(|_| WireError::Invalid("proof"))
    }
    fn finish(self) -> Result<(), WireError> {
        match self.0.len() {
            0 => Ok(()),
            n => Err(WireError::Trailing(n)),
        }
    }
}

/// Reads the kind of a message without decoding it; `None` if too short or of another version.
pub fn peek_kind(buf: &[u8]) -> Option<u8> {
    match buf {
        [VERSION, k, ..] => Some(*k),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Store

/// A request to store one replica slot of a chunk. The ciphertext is not in it: it is published
/// once per chunk, raw, on the body subject named by `addr`, and fetched by the node that takes
/// the slot, so N slots cross the broker as N small messages and one body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreRequest {
    /// Names the subject the signed ack goes to.
    pub ack_token: AckToken,
    /// `blake3(ciphertext)`; also names the body subject.
    pub addr: Addr,
    /// Replica slot 0..N-1.
    pub slot: u8,
    /// The chunk's proof commitment P.
    pub commitment: Commitment,
    /// Lease expiry, Unix milliseconds.
    pub lease_expiry_ms: u64,
    /// Length of the ciphertext, at most `MAX_CIPHERTEXT`: what the node reserves before it
    /// fetches the body, and what the body must measure.
    pub len: u32,
    /// The chunk's control commitment Q (kind `StoreControlled`); `None` in a plain `Store`,
    /// which leaves the chunk under the legacy rule (P authorises everything).
    pub control: Option<Commitment>,
}

/// Encoded size of a `StoreRequest` without a control commitment.
pub const STORE_REQUEST_LEN: usize = 2 + 16 + 32 + 1 + COMMITMENT_LEN + 8 + 4;

impl StoreRequest {
    /// The request for one slot of `ciphertext`.
    pub fn for_body(
        ack_token: AckToken,
        ciphertext: &[u8],
        slot: u8,
        commitment: Commitment,
        lease_expiry_ms: u64,
    ) -> Self {
        StoreRequest {
            ack_token,
            addr: Addr::of(ciphertext),
            slot,
            commitment,
            lease_expiry_ms,
            len: ciphertext.len() as u32,
            control: None,
        }
    }

    /// The same request carrying the chunk's control commitment (or none).
    pub fn with_control(mut self, control: Option<Commitment>) -> Self {
        self.control = control;
        self
    }

    /// Encodes the request (kind `StoreControlled` when it carries a control commitment).
    pub fn encode(&self) -> Vec<u8> {
        let kind = if self.control.is_some() { Kind::StoreControlled } else { Kind::Store };
        let mut w = W::new(kind, STORE_REQUEST_LEN + COMMITMENT_LEN);
        w.raw(&self.ack_token.0)
            .raw(&self.addr.0)
            .u8(self.slot)
            .raw(&self.commitment.to_bytes())
            .u64(self.lease_expiry_ms)
            .u32(self.len);
        if let Some(q) = &self.control {
            w.raw(&q.to_bytes());
        }
        w.0
    }

    /// Decodes and bounds-checks a request of either kind.
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let (mut r, controlled) = R::open_either(buf, Kind::Store, Kind::StoreControlled)?;
        let ack_token = AckToken(r.arr()?);
        let addr = Addr(r.arr()?);
        let slot = r.u8()?;
        let commitment = r.commitment()?;
        let lease_expiry_ms = r.u64()?;
        let len = r.u32()?;
        if len as usize > MAX_CIPHERTEXT {
            return Err(WireError::TooLarge { what: "ciphertext", len: len as usize, max: MAX_CIPHERTEXT });
        }
        if len == 0 {
            return Err(WireError::Invalid("empty ciphertext"));
        }
        let control = if controlled { Some(r.commitment()?) } else { None };
        if control == Some(commitment) {
            return Err(WireError::Invalid("control commitment equal to the read commitment"));
        }
        r.finish()?;
        Ok(StoreRequest { ack_token, addr, slot, commitment, lease_expiry_ms, len, control })
    }

    /// `body`, verified, if it is the ciphertext this request announced: its length and its hash.
    pub fn verify<'a>(&self, body: &'a [u8]) -> Option<Verified<'a>> {
        (body.len() == self.len as usize).then(|| Verified::check(&self.addr.0, body)).flatten()
    }
}

/// A node's signed acknowledgement that it durably stored one replica slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreAck {
    /// The storing node.
    pub node: NodeId,
    /// What it stored.
    pub addr: Addr,
    /// For which slot.
    pub slot: u8,
    /// Until when it promises to keep it.
    pub lease_expiry_ms: u64,
    /// When it signed, Unix milliseconds.
    pub signed_at_ms: u64,
    /// ed25519 signature over everything above.
    pub signature: [u8; SIGNATURE_LEN],
}

impl StoreAck {
    /// The signed statement; with a control commitment it is a statement of its own kind
    /// (`quloud v2 store ack`), so an ack for a chunk held without Q never passes for one with Q.
    fn signed_bytes(
        node: &NodeId,
        addr: &Addr,
        commitments: (&Commitment, Option<&Commitment>),
        slot: u8,
        lease: u64,
        at: u64,
    ) -> Vec<u8> {
        let (commitment, control) = commitments;
        let mut v = match control {
            Some(_) => b"quloud v2 store ack".to_vec(),
            None => b"quloud v1 store ack".to_vec(),
        };
        v.extend_from_slice(&node.0);
        v.extend_from_slice(&addr.0);
        v.extend_from_slice(&commitment.to_bytes());
        if let Some(q) = control {
            v.extend_from_slice(&q.to_bytes());
        }
        v.push(slot);
        v.extend_from_slice(&lease.to_le_bytes());
        v.extend_from_slice(&at.to_le_bytes());
        v
    }

    /// Like [`StoreAck::sign`] for a chunk held with the control commitment `control` (if any):
    /// the signature covers it too.
    pub fn sign_held(
        id: &NodeIdentity,
        addr: Addr,
        commitments: (&Commitment, Option<&Commitment>),
        slot: u8,
        lease_expiry_ms: u64,
        now_ms: u64,
    ) -> Self {
        let node = id.id();
        let msg = Self::signed_bytes(&node, &addr, commitments, slot, lease_expiry_ms, now_ms);
        let signature = id.sign(&msg);
        StoreAck { node, addr, slot, lease_expiry_ms, signed_at_ms: now_ms, signature }
    }

    /// Whether the signature is the node's over these fields, `commitment` and `control`.
    pub fn verify_held(&self, commitment: &Commitment, control: Option<&Commitment>) -> bool {
        let msg = Self::signed_bytes(
            &self.node,
            &self.addr,
            (commitment, control),
            self.slot,
            self.lease_expiry_ms,
            self.signed_at_ms,
        );
        verify_signature(&self.node, &msg, &self.signature)
    }

    /// Creates and signs an ack. The signature also covers the commitment the node stored (which
    /// is not sent back: the owner checks the ack against the commitment it published).
    pub fn sign(
        id: &NodeIdentity,
        addr: Addr,
        commitment: &Commitment,
        slot: u8,
        lease_expiry_ms: u64,
        now_ms: u64,
    ) -> Self {
        Self::sign_held(id, addr, (commitment, None), slot, lease_expiry_ms, now_ms)
    }

    /// Whether the signature is the node's over these fields and `commitment` (a chunk held
    /// without a control commitment).
    pub fn verify(&self, commitment: &Commitment) -> bool {
        self.verify_held(commitment, None)
    }

    /// Encodes the ack.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = W::new(Kind::StoreAck, 160);
        w.raw(&self.node.0)
            .raw(&self.addr.0)
            .u8(self.slot)
            .u64(self.lease_expiry_ms)
            .u64(self.signed_at_ms)
            .raw(&self.signature);
        w.0
    }

    /// Decodes an ack (the signature is checked separately with `verify`).
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = R::open(buf, Kind::StoreAck)?;
        let ack = StoreAck {
            node: NodeId(r.arr()?),
            addr: Addr(r.arr()?),
            slot: r.u8()?,
            lease_expiry_ms: r.u64()?,
            signed_at_ms: r.u64()?,
            signature: r.arr()?,
        };
        r.finish()?;
        Ok(ack)
    }
}

// ---------------------------------------------------------------------------------------------
// Proof-gated requests: get, renew, delete

/// Binds request-specific parameters into the proof's request id, so a proof for one renewal
/// lease or one audit seed cannot be reused with another.
pub fn bind_request(request_id: &RequestId, extra: &[u8]) -> [u8; 16] {
    let mut h = blake3::Hasher::new_derive_key("quloud v1 request binding");
    h.update(&request_id.0);
    h.update(extra);
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.finalize().as_bytes()[..16]);
    out
}

/// The statement a get, renew or delete proof is bound to (covers the lease asked for).
pub(crate) fn proven_context(
    purpose: Purpose,
    request_id: &RequestId,
    timestamp_ms: u64,
    target: &NodeId,
    lease_expiry_ms: u64,
    addr: &Addr,
) -> ProofContext {
    ProofContext {
        purpose,
        addr: addr.0,
        target: target.0,
        timestamp_ms,
        request_id: bind_request(request_id, &lease_expiry_ms.to_le_bytes()),
    }
}

/// One addr with its proof of knowledge of the chunk's secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProvenItem {
    /// The chunk.
    pub addr: Addr,
    /// Schnorr proof bound to this request.
    pub proof: Proof,
}

/// A get, renew or delete request for up to `MAX_ITEMS` chunks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProvenRequest {
    /// Get, Renew or Delete.
    pub purpose: Purpose,
    /// Random, for replay protection.
    pub request_id: RequestId,
    /// Sender's clock, Unix milliseconds; nodes refuse stale requests.
    pub timestamp_ms: u64,
    /// The node addressed, or `NodeId::ANY` for a broadcast.
    pub target: NodeId,
    /// New lease expiry for Renew; 0 otherwise.
    pub lease_expiry_ms: u64,
    /// The chunks and their proofs.
    pub items: Vec<ProvenItem>,
}

impl ProvenRequest {
    /// Builds a request and proves knowledge of each chunk's secret for it.
    pub fn build(
        purpose: Purpose,
        target: NodeId,
        timestamp_ms: u64,
        lease_expiry_ms: u64,
        items: &[(Addr, ProofSecret)],
    ) -> Self {
        let mut req = ProvenRequest {
            purpose,
            request_id: RequestId::random(),
            timestamp_ms,
            target,
            lease_expiry_ms,
            items: Vec::with_capacity(items.len()),
        };
        for (addr, secret) in items {
            let proof = prove(secret, &req.context(addr));
            req.items.push(ProvenItem { addr: *addr, proof });
        }
        req
    }

    /// The statement each item's proof must be bound to.
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
        let mut w = W::new(Kind::Proven, 64 + self.items.len() * (32 + PROOF_LEN));
        w.u8(self.purpose as u8)
            .raw(&self.request_id.0)
            .u64(self.timestamp_ms)
            .raw(&self.target.0)
            .u64(self.lease_expiry_ms)
            .u16(self.items.len() as u16);
        for it in &self.items {
            w.raw(&it.addr.0).raw(&it.proof.to_bytes());
        }
        w.0
    }

    /// Decodes a request; proofs are checked by the node, not here.
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = R::open(buf, Kind::Proven)?;
        let purpose = match r.u8()? {
            1 => Purpose::Get,
            3 => Purpose::Renew,
            4 => Purpose::Delete,
            _ => return Err(WireError::Invalid("purpose")),
        };
        let request_id = RequestId(r.arr()?);
        let timestamp_ms = r.u64()?;
        let target = NodeId(r.arr()?);
        let lease_expiry_ms = r.u64()?;
        let n = r.u16()? as usize;
        if n > MAX_ITEMS {
            return Err(WireError::TooLarge { what: "item count", len: n, max: MAX_ITEMS });
        }
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(ProvenItem { addr: Addr(r.arr()?), proof: r.proof()? });
        }
        r.finish()?;
        Ok(ProvenRequest { purpose, request_id, timestamp_ms, target, lease_expiry_ms, items })
    }
}

/// One chunk sent back for a get (one message per addr keeps each under `max_payload`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetReply {
    /// The node answering.
    pub node: NodeId,
    /// Which chunk.
    pub addr: Addr,
    /// Found, not found, refused or busy.
    pub status: Status,
    /// The ciphertext when `status` is Ok; empty otherwise. The requester verifies it against addr.
    pub ciphertext: Vec<u8>,
}

impl GetReply {
    /// Encodes the reply.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = W::new(Kind::GetReply, 80 + self.ciphertext.len());
        w.raw(&self.node.0)
            .raw(&self.addr.0)
            .u8(self.status as u8)
            .u32(self.ciphertext.len() as u32)
            .raw(&self.ciphertext);
        w.0
    }

    /// Decodes a reply.
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let h = Self::decode_head(buf)?;
        Ok(GetReply { node: h.node, addr: h.addr, status: h.status, ciphertext: buf[h.ciphertext].to_vec() })
    }

    /// Decodes a reply without copying its ciphertext: [`GetReplyHead::ciphertext`] says where
    /// in `buf` it is (the requester keeps the received buffer and slices it).
    pub fn decode_head(buf: &[u8]) -> Result<GetReplyHead, WireError> {
        let mut r = R::open(buf, Kind::GetReply)?;
        let node = NodeId(r.arr()?);
        let addr = Addr(r.arr()?);
        let status = Status::from_u8(r.u8()?)?;
        let len = r.u32()? as usize;
        let start = buf.len() - r.0.len();
        r.bounded(len, "ciphertext", MAX_CIPHERTEXT)?;
        r.finish()?;
        Ok(GetReplyHead { node, addr, status, ciphertext: start..start + len })
    }
}

/// A [`GetReply`] decoded in place: everything but the ciphertext, and where that is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetReplyHead {
    /// The node answering.
    pub node: NodeId,
    /// Which chunk.
    pub addr: Addr,
    /// Found, not found, refused or busy.
    pub status: Status,
    /// The ciphertext's bytes in the decoded buffer.
    pub ciphertext: std::ops::Range<usize>,
}

/// A node's signed answer to a renew or delete: the outcome per addr.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlReply {
    /// The node answering.
    pub node: NodeId,
    /// The request answered.
    pub request_id: RequestId,
    /// [`request_hash`] of the whole request answered, proofs included (kind
    /// `ControlReplyBound`); `None` in the answer to an older `Proven` renew or delete.
    pub request: Option<[u8; 32]>,
    /// Outcome per addr, in request order.
    pub results: Vec<(Addr, Status)>,
    /// Signature over all of the above.
    pub signature: [u8; SIGNATURE_LEN],
}

impl ControlReply {
    fn body(
        node: &NodeId,
        request_id: &RequestId,
        request: Option<&[u8; 32]>,
        results: &[(Addr, Status)],
    ) -> W {
        let kind = if request.is_some() { Kind::ControlReplyBound } else { Kind::ControlReply };
        let mut w = W::new(kind, 96 + results.len() * 33 + SIGNATURE_LEN);
        w.raw(&node.0).raw(&request_id.0);
        if let Some(h) = request {
            w.raw(h);
        }
        w.u16(results.len() as u16);
        for (a, s) in results {
            w.raw(&a.0).u8(*s as u8);
        }
        w
    }

    /// Creates and signs a reply not bound to its request's bytes (answers an older request).
    pub fn sign(id: &NodeIdentity, request_id: RequestId, results: Vec<(Addr, Status)>) -> Self {
        Self::sign_bound(id, request_id, None, results)
    }

    /// Creates and signs a reply; with `request` (the [`request_hash`] of the request answered),
    /// the signature binds it to that exact request.
    pub fn sign_bound(
        id: &NodeIdentity,
        request_id: RequestId,
        request: Option<[u8; 32]>,
        results: Vec<(Addr, Status)>,
    ) -> Self {
        let node = id.id();
        let signature = id.sign(&Self::body(&node, &request_id, request.as_ref(), &results).0);
        ControlReply { node, request_id, request, results, signature }
    }

    /// Whether the node's signature covers these fields.
    pub fn verify(&self) -> bool {
        let body = Self::body(&self.node, &self.request_id, self.request.as_ref(), &self.results);
        verify_signature(&self.node, &body.0, &self.signature)
    }

    /// Encodes the reply.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Self::body(&self.node, &self.request_id, self.request.as_ref(), &self.results);
        w.raw(&self.signature);
        w.0
    }

    /// Decodes a reply of either kind (signature checked with `verify`).
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let (mut r, bound) = R::open_either(buf, Kind::ControlReply, Kind::ControlReplyBound)?;
        let node = NodeId(r.arr()?);
        let request_id = RequestId(r.arr()?);
        let request = if bound { Some(r.arr()?) } else { None };
        let n = r.u16()? as usize;
        if n > MAX_ITEMS {
            return Err(WireError::TooLarge { what: "result count", len: n, max: MAX_ITEMS });
        }
        let mut results = Vec::with_capacity(n);
        for _ in 0..n {
            results.push((Addr(r.arr()?), Status::from_u8(r.u8()?)?));
        }
        let signature = r.arr()?;
        r.finish()?;
        Ok(ControlReply { node, request_id, request, results, signature })
    }
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;

#[path = "wire_control.rs"]
mod control;
pub use control::{request_hash, ControlItem, ControlRequest, MAX_CONTROL_ITEMS};

#[path = "wire_audit.rs"]
mod audit;
pub use audit::{AuditBatch, AuditBatchReply, AuditReply, AuditRequest, ControlProof};

#[path = "wire_stale.rs"]
mod stale;
pub use stale::{StaleReply, STALE_REPLY_LEN};
