//! The owner's view of the fabric: quorum store, proof-gated retrieval, audit, renew, delete.

use crate::domain::ids::{Addr, NodeId};
use crate::domain::placement::{HouseListing, Placement};
use crate::domain::proof::{Commitment, ProofSecret};
use crate::domain::wire::{Status, StoreAck};
use std::future::Future;

/// Errors the fabric reports to the owner.
#[derive(Debug, thiserror::Error)]
pub enum FabricError {
    /// The broker cannot be reached.
    #[error("cannot reach NATS at {url}: {reason} (is nats-server running?)")]
    Unreachable {
        /// The URL tried.
        url: String,
        /// What the client said.
        reason: String,
    },
    /// The broker refused this client's credentials (or required some and got none).
    #[error("NATS at {url} refused {who}: {reason}; {hint}")]
    Refused {
        /// The URL tried.
        url: String,
        /// Which credentials, as given on the command line.
        who: String,
        /// What the server said.
        reason: String,
        /// What to check.
        hint: String,
    },
    /// Fewer than N distinct nodes acknowledged in time.
    #[error("quorum not reached for {addr:?}: {got} of {want} replicas acknowledged in time")]
    Quorum {
        /// The chunk.
        addr: Addr,
        /// Distinct nodes that acked.
        got: usize,
        /// Replicas wanted.
        want: usize,
    },
    /// No node answered with a verified copy in time.
    #[error("chunk {0:?} could not be retrieved from any node in time")]
    NotRetrieved(Addr),
    /// The node did not answer in time.
    #[error("node {0:?} did not answer in time")]
    Timeout(NodeId),
    /// The node's answer failed verification (bad signature, wrong data, wrong proof of storage).
    #[error("node {node:?} answered with an invalid reply: {why}")]
    BadReply {
        /// Who answered.
        node: NodeId,
        /// What was wrong.
        why: String,
    },
    /// The connection settings are unusable (bad URL, missing credentials or certificate file).
    #[error("NATS connection settings: {0}")]
    Config(String),
    /// The broker or the stream refused the operation.
    #[error("NATS operation failed: {0}")]
    Broker(String),
}

/// A chunk as published: its address, commitment and ciphertext.
#[derive(Clone, Copy, Debug)]
pub struct Publish<'a> {
    /// `blake3(ciphertext)`.
    pub addr: Addr,
    /// The proof commitment P.
    pub commitment: Commitment,
    /// The owner-encrypted chunk.
    pub ciphertext: &'a [u8],
}

/// What a store must achieve: `replicas` distinct nodes holding the chunk, counting the
/// replicas already `held` (node, slot) and never counting acks from `exclude` (nodes written off
/// or suspected of having lost the chunk). A first upload holds nothing and excludes nothing;
/// healing holds the healthy replicas, so only the missing slots are published. With a
/// `placement`, replicas count by houses (`Placement::counted`: held replicas first, then acks in
/// the order they were signed); without one, every distinct node counts.
#[derive(Clone, Copy, Debug)]
pub struct StoreGoal<'a> {
    /// Distinct nodes wanted in total.
    pub replicas: usize,
    /// Replicas known to be healthy: their slots are not published again.
    pub held: &'a [(NodeId, u8)],
    /// Nodes whose acks do not count (their slots are claimed, so other slots are published).
    pub exclude: &'a [NodeId],
    /// The verified houses of the fabric's nodes, when the vault lives in a house.
    pub placement: Option<&'a Placement>,
}

impl StoreGoal<'_> {
    /// A first upload: `replicas` fresh acks.
    pub fn fresh(replicas: usize) -> StoreGoal<'static> {
        StoreGoal { replicas, held: &[], exclude: &[], placement: None }
    }
}

/// Root records as served: (source name, records it holds, oldest first).
pub type RootsServed = Vec<(String, Vec<Vec<u8>>)>;

/// A vault's writer lease as the fabric holds it (docs/DESIGN.md §11).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseHeld {
    /// The broker's revision of the lease: a swap names it, so take-overs are serialised.
    pub revision: u64,
    /// The signed lease (the caller verifies it: the broker is not trusted).
    pub record: Vec<u8>,
}

/// The outcome of a compare-and-set of the writer lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseSwap {
    /// The lease is now the new record, at this revision.
    Swapped(u64),
    /// The lease was not at the expected revision (someone else swapped first): read it again.
    Conflict,
}

/// The outcome of one audit of one replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditVerdict {
    /// The node proved it holds the chunk.
    Passed,
    /// The node says it does not hold the chunk.
    NotFound,
    /// The node answered with something that does not verify.
    Failed(String),
}

/// What the fabric client measured of its nodes' clocks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClockReport {
    /// Nodes whose clock is off by a second or more, with node clock minus own clock (ms).
    pub skewed: Vec<(NodeId, i64)>,
    /// Gets aimed at one node that waited the whole reply timeout for it.
    pub get_timeouts: u64,
}

/// The broker connection as the fabric client last saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    /// Whether it is connected now.
    pub connected: bool,
    /// Since when (Unix ms) it has been connected, or disconnected.
    pub since_ms: u64,
}

/// The owner-side fabric port.
pub trait ChunkFabric: Send + Sync {
    /// The broker connection now.
    fn link(&self) -> Link;
    /// Its nodes' clocks as measured (fabrics without clocks to measure report none).
    fn clocks(&self) -> ClockReport {
        ClockReport::default()
    }
    /// Whether the broker connection is up now or comes back within `within`.
    fn up_within(&self, within: std::time::Duration) -> impl Future<Output = bool> + Send;
    /// Publishes `chunk` for the slots `goal` still needs and waits until, with the replicas
    /// already held, `goal.replicas` distinct nodes have it. Returns the new verified acks.
    fn store(
        &self,
        chunk: Publish<'_>,
        goal: StoreGoal<'_>,
    ) -> impl Future<Output = Result<Vec<StoreAck>, FabricError>> + Send;
    /// Like `store`, with the chunk's control commitment Q (the owner's: `ProofSecret::
    /// control_commitment`) sent beside P, so that nodes require proofs against Q for renew,
    /// delete and audit from the start. Fabrics that do not carry Q store as `store` does.
    fn store_controlled(
        &self,
        chunk: Publish<'_>,
        control: Option<Commitment>,
        goal: StoreGoal<'_>,
    ) -> impl Future<Output = Result<Vec<StoreAck>, FabricError>> + Send {
        let _ = control;
        self.store(chunk, goal)
    }
    /// Retrieves verified ciphertexts, asking `hints` first and then any holder.
    /// Returns the chunks found; addrs missing from the result could not be retrieved. The
    /// bytes may share the buffer they were received in (no copy on the way).
    fn get(
        &self,
        items: &[(Addr, ProofSecret)],
        hints: &[NodeId],
    ) -> impl Future<Output = Result<Vec<(Addr, bytes::Bytes)>, FabricError>> + Send;
    /// Challenges `node` to prove it still holds `addr` (whose ciphertext is `len` bytes long).
    fn audit(
        &self,
        node: NodeId,
        addr: Addr,
        secret: &ProofSecret,
        len: u64,
    ) -> impl Future<Output = Result<AuditVerdict, FabricError>> + Send;
    /// Challenges `node` for several chunks (addr, secret, ciphertext length) at once; returns
    /// one verdict per item, in order. Each is judged exactly like a single `audit`.
    fn audit_many(
        &self,
        node: NodeId,
        items: &[(Addr, ProofSecret, u64)],
    ) -> impl Future<Output = Result<Vec<AuditVerdict>, FabricError>> + Send;
    /// Extends leases at `node`; returns the node's per-addr outcome.
    fn renew(
        &self,
        node: NodeId,
        items: &[(Addr, ProofSecret)],
        lease_expiry_ms: u64,
    ) -> impl Future<Output = Result<Vec<(Addr, Status)>, FabricError>> + Send;
    /// Publishes a vault's signed root record under `locator` (kept with its predecessors).
    fn publish_root(
        &self,
        locator: &str,
        record: &[u8],
    ) -> impl Future<Output = Result<(), FabricError>> + Send;
    /// Every root record the fabric holds under `locator`, per source (e.g. the broker's history,
    /// oldest first). The caller verifies them: sources are not trusted.
    fn fetch_roots(&self, locator: &str) -> impl Future<Output = Result<RootsServed, FabricError>> + Send;
    /// The writer lease kept under `locator`, if any.
    fn lease(&self, locator: &str) -> impl Future<Output = Result<Option<LeaseHeld>, FabricError>> + Send;
    /// Replaces the writer lease under `locator` with `record` if it is still at revision
    /// `expect` (0: no lease yet), atomically at the broker.
    fn swap_lease(
        &self,
        locator: &str,
        record: &[u8],
        expect: u64,
    ) -> impl Future<Output = Result<LeaseSwap, FabricError>> + Send;
    /// The hub's list of house certificates, unverified (the caller verifies them against the
    /// hub key it trusts). Fabrics without a hub list none.
    fn houses(&self) -> impl Future<Output = Result<Vec<HouseListing>, FabricError>> + Send {
        std::future::ready(Ok(Vec::new()))
    }
    /// Asks `node` to delete chunks; returns the node's per-addr outcome.
    fn delete(
        &self,
        node: NodeId,
        items: &[(Addr, ProofSecret)],
    ) -> impl Future<Output = Result<Vec<(Addr, Status)>, FabricError>> + Send;
}
