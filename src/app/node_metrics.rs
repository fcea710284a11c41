//! The storage node's counters (`NodeStats`): requests and latency per operation, every refusal
//! and drop by reason, and the node's health (broker connection, usable store).
//!
//! Plain atomics owned by `NodeService`; `adapters::metrics` renders them. The legacy totals
//! (`stored`, `declined`, `dropped`, `refused`, `served`, `audits`) keep their meaning; every
//! `declined`, `dropped` or `refused` also counts one reason.

use super::NodeService;
use crate::app::metrics::{Histogram, REQUEST_BUCKETS};
use crate::app::replay::Freshness;
use crate::ports::chunk_store::ChunkStore;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// A kind of request a node handles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// A store request from the shared work queue.
    Store,
    /// A proof-gated get (targeted or broadcast).
    Get,
    /// An audit challenge or a batch of them.
    Audit,
    /// A lease renewal.
    Renew,
    /// A delete.
    Delete,
    /// A query for a vault's root record (`quloud.v1.roots.<locator>`).
    Roots,
}

impl Op {
    /// Every operation, in rendering order.
    pub const ALL: [Op; 6] = [Op::Store, Op::Get, Op::Audit, Op::Renew, Op::Delete, Op::Roots];

    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            Op::Store => "store",
            Op::Get => "get",
            Op::Audit => "audit",
            Op::Renew => "renew",
            Op::Delete => "delete",
            Op::Roots => "roots",
        }
    }
}

/// Why a message was dropped, a store declined or an item refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Larger than the message limit.
    Oversized,
    /// Does not decode, empty, wrong purpose for its subject, or a slot out of range.
    Malformed,
    /// The ciphertext does not hash to its addr.
    BadHash,
    /// A lease longer than the node allows.
    BadLease,
    /// A lease that has already ended.
    Expired,
    /// A timestamp outside the window (or from before the node started).
    Stale,
    /// A request id seen before.
    Replayed,
    /// The replay memory is full of live request ids.
    ReplayFull,
    /// Addressed to another node, or targeted/non-get on the broadcast subject.
    Misaddressed,
    /// A retrieval proof that does not verify against the held commitment.
    BadProof,
    /// No space left for a new chunk.
    Full,
    /// Held (or being stored right now) for another replica slot.
    HeldOtherSlot,
    /// Held under another commitment.
    OtherCommitment,
    /// The disk or index failed.
    StorageError,
    /// A root record that is malformed, not validly signed, or filed under another vault.
    BadSignature,
    /// A request for an operation this node does not know.
    UnknownOp,
    /// Too many requests from one source (reserved for the per-source rate limits).
    RateLimited,
    /// A store request whose chunk body is no longer on the broker.
    NoBody,
    /// A store request of a vault backed up from this node's own house (its copy would not
    /// count: replicas go to other houses).
    OwnHouse,
}

impl Reason {
    /// Every reason, in rendering order.
    pub const ALL: [Reason; 19] = [
        Reason::Oversized,
        Reason::Malformed,
        Reason::BadHash,
        Reason::BadLease,
        Reason::Expired,
        Reason::Stale,
        Reason::Replayed,
        Reason::ReplayFull,
        Reason::Misaddressed,
        Reason::BadProof,
        Reason::Full,
        Reason::HeldOtherSlot,
        Reason::OtherCommitment,
        Reason::StorageError,
        Reason::BadSignature,
        Reason::UnknownOp,
        Reason::RateLimited,
        Reason::NoBody,
        Reason::OwnHouse,
    ];

    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            Reason::Oversized => "oversized",
            Reason::Malformed => "malformed",
            Reason::BadHash => "bad_hash",
            Reason::BadLease => "bad_lease",
            Reason::Expired => "expired",
            Reason::Stale => "stale",
            Reason::Replayed => "replayed",
            Reason::ReplayFull => "replay_full",
            Reason::Misaddressed => "misaddressed",
            Reason::BadProof => "bad_proof",
            Reason::Full => "full",
            Reason::HeldOtherSlot => "held_other_slot",
            Reason::OtherCommitment => "other_commitment",
            Reason::StorageError => "storage_error",
            Reason::BadSignature => "bad_signature",
            Reason::UnknownOp => "unknown_op",
            Reason::RateLimited => "rate_limited",
            Reason::NoBody => "no_body",
            Reason::OwnHouse => "own_house",
        }
    }

    fn index(self) -> usize {
        Reason::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

impl From<&Freshness> for Reason {
    fn from(f: &Freshness) -> Reason {
        match f {
            Freshness::Stale { .. } => Reason::Stale,
            Freshness::Replayed => Reason::Replayed,
            Freshness::Busy => Reason::ReplayFull,
        }
    }
}

/// Counters, for logs, tests and the metrics endpoint.
#[derive(Debug)]
pub struct NodeStats {
    /// Chunks stored.
    pub stored: AtomicU64,
    /// Store requests declined (held for another slot, or full).
    pub declined: AtomicU64,
    /// Messages dropped as malformed, invalid, stale, replayed or misaddressed.
    pub dropped: AtomicU64,
    /// Items refused: a proof that did not verify, or a chunk not held.
    pub refused: AtomicU64,
    /// Chunks served.
    pub served: AtomicU64,
    /// Audits answered.
    pub audits: AtomicU64,
    /// Items refused because the chunk is not held here (a part of `refused`).
    pub not_held: AtomicU64,
    /// Chunks dropped because their lease ended.
    pub expired: AtomicU64,
    /// Stale targeted requests answered with this node's clock.
    pub stale_answers: AtomicU64,
    /// Whether the node is connected to its broker (set by the transport adapter).
    pub connected: AtomicBool,
    /// When the service started (Unix ms).
    pub started_ms: u64,
    by_reason: [AtomicU64; Reason::ALL.len()],
    by_op: [AtomicU64; Op::ALL.len()],
    latency: [Histogram; Op::ALL.len()],
}

impl NodeStats {
    /// Zeroed counters for a service started at `started_ms`.
    pub fn new(started_ms: u64) -> Self {
        NodeStats {
            stored: AtomicU64::new(0),
            declined: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            served: AtomicU64::new(0),
            audits: AtomicU64::new(0),
            not_held: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            stale_answers: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            started_ms,
            by_reason: std::array::from_fn(|_| AtomicU64::new(0)),
            by_op: std::array::from_fn(|_| AtomicU64::new(0)),
            latency: std::array::from_fn(|_| Histogram::new(REQUEST_BUCKETS)),
        }
    }

    /// A message dropped for `reason` (counts `dropped`).
    pub fn drop_for(&self, reason: Reason) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        self.by_reason[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// A store request declined for `reason` (counts `declined`).
    pub fn decline_for(&self, reason: Reason) {
        self.declined.fetch_add(1, Ordering::Relaxed);
        self.by_reason[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// An item whose proof did not verify (counts `refused`).
    pub fn refuse_bad_proof(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        self.by_reason[Reason::BadProof.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// An item asked for that is not held (counts `refused` and `not_held`).
    pub fn refuse_not_held(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        self.not_held.fetch_add(1, Ordering::Relaxed);
    }

    /// One request of `op` handled (whatever its outcome) in `took`.
    pub fn request(&self, op: Op, took: Duration) {
        let i = Op::ALL.iter().position(|o| *o == op).unwrap_or(0);
        self.by_op[i].fetch_add(1, Ordering::Relaxed);
        self.latency[i].observe(took);
    }

    /// Refusals and drops counted for `reason`.
    pub fn refusals(&self, reason: Reason) -> u64 {
        self.by_reason[reason.index()].load(Ordering::Relaxed)
    }

    /// Requests of `op` handled.
    pub fn requests(&self, op: Op) -> u64 {
        let i = Op::ALL.iter().position(|o| *o == op).unwrap_or(0);
        self.by_op[i].load(Ordering::Relaxed)
    }

    /// The latency histogram of `op`.
    pub fn latency(&self, op: Op) -> &Histogram {
        let i = Op::ALL.iter().position(|o| *o == op).unwrap_or(0);
        &self.latency[i]
    }
}

impl Default for NodeStats {
    fn default() -> Self {
        NodeStats::new(0)
    }
}

impl<S: ChunkStore> NodeService<S> {
    /// Whether the node can do its job: connected to the broker and its store's index readable.
    /// The error is a one-line reason. Blocks on a read of the index.
    pub fn health(&self) -> Result<(), String> {
        if !self.stats.connected.load(Ordering::Relaxed) {
            return Err("not connected to the NATS broker".into());
        }
        self.store.roots_held().map(|_| ()).map_err(|e| format!("chunk store unusable: {e}"))
    }
}
