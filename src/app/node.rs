//! The storage node's use cases (docs/DESIGN.md §5, §7): validate, store, serve, audit, renew, delete.
//!
//! Transport-free: the NATS adapter hands raw message bytes in and sends what comes back. Every
//! method is synchronous and may block on disk I/O, so callers run it on a blocking thread.
//! Nothing a peer sends can make it panic; anything malformed is dropped with a log line and a
//! counter.

use crate::app::rate::{RateLimit, SourceLimiter};
use crate::app::replay::{Freshness, ReplayGuard};
use crate::domain::audit::Verified;
use crate::domain::identity::NodeIdentity;
use crate::domain::ids::{AckToken, Addr, NodeId};
use crate::domain::proof::{Commitment, ProofSecret, Purpose};
use crate::domain::snapshot::RootRecord;
use crate::domain::wire::{
    peek_kind, ControlReply, GetReply, Kind, ProvenRequest, Status, StoreAck, StoreRequest, MAX_MESSAGE,
    MAX_REQUEST,
};
use crate::ports::chunk_store::{ChunkStore, StoreError, StoredChunk};
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

#[path = "node_metrics.rs"]
mod metrics;
pub use metrics::{NodeStats, Op, Reason};

#[path = "node_audit.rs"]
mod audit;
#[path = "node_stale.rs"]
mod stale;
pub use stale::{STALE_BURST, STALE_PER_SECOND};
#[path = "node_authority.rs"]
mod authority;
use authority::{ProofClaim, Right};

/// Node policy knobs.
#[derive(Clone, Debug)]
pub struct NodePolicy {
    /// Accepted clock difference for proof timestamps.
    pub window_ms: u64,
    /// Longest lease a store or renew may ask for.
    pub max_lease_ms: u64,
    /// Most request ids remembered for replay protection.
    pub replay_capacity: usize,
    /// Most request ids remembered for any one request source (reply inbox prefix), so that
    /// one source cannot fill the replay memory for everyone.
    pub replay_per_source: usize,
    /// Highest replica slot accepted.
    pub max_slot: u8,
    /// Store bytes per second each vault (ack token) may send this node.
    pub store_rate: RateLimit,
    /// Proof items per second each request source (reply inbox prefix) may ask this node to
    /// check: gets, audits, renews and deletes.
    pub request_rate: RateLimit,
    /// Sources whose rate is tracked at once (least recently seen forgotten first).
    pub rate_sources: usize,
    /// Vaults (ack tokens) backed up from this node's own house: their store requests are
    /// declined, so another house's node takes them (a copy in the owner's own house would not
    /// count, and would cost the house's downlink).
    pub own_vaults: Vec<AckToken>,
}

impl Default for NodePolicy {
    fn default() -> Self {
        NodePolicy {
            window_ms: 120_000,
            max_lease_ms: 400 * 24 * 3600 * 1000,
            replay_capacity: 1 << 20,
            replay_per_source: 1 << 14,
            max_slot: 63,
            store_rate: RateLimit::per_second(256 << 20),
            request_rate: RateLimit::per_second(4096),
            rate_sources: 4096,
            own_vaults: Vec::new(),
        }
    }
}

/// What to do with a store request message.
#[derive(Debug)]
pub enum StoreDecision {
    /// Stored now: publish the ack on the vault's ack subject, then acknowledge the message.
    Stored(StoreAck, AckToken),
    /// Already held for this very slot (a redelivery): publish the ack again, then acknowledge.
    AlreadyHeld(StoreAck, AckToken),
    /// Let another node take it (held for another slot, or no space): negative-acknowledge.
    Decline(&'static str),
    /// Held for another slot: publish the ack of the slot held (so the owner learns of this
    /// holder even when that slot was already claimed by another node), then negative-acknowledge
    /// so that another node takes the slot asked for.
    DeclineHeld(StoreAck, AckToken),
    /// Malformed or invalid: drop it for good (terminate), never store.
    Reject(String),
}

/// What to do with a store request before its body is fetched.
#[derive(Debug)]
pub enum Claim {
    /// Fetch the ciphertext from the chunk's body subject and hand it to `store_body`.
    Fetch(ClaimedSlot),
    /// Decided without the body (held already, declined, rejected).
    Decided(StoreDecision),
}

/// A store request this node has taken on: its addr is reserved against the chunk's other slots
/// until the claim is dropped (stored, declined, or the body could not be fetched).
#[derive(Debug)]
pub struct ClaimedSlot {
    /// The validated request.
    pub request: StoreRequest,
    storing: Arc<Mutex<HashSet<Addr>>>,
}

impl Drop for ClaimedSlot {
    fn drop(&mut self) {
        self.storing.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.request.addr);
    }
}

/// Where a proof-gated request arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// On this node's own subject: answer every item.
    Targeted,
    /// On the broadcast subject: answer only what is held and proven, stay silent otherwise.
    Broadcast,
}

/// Replies to a proof-gated request.
#[derive(Debug)]
pub enum ProvenOutcome {
    /// Chunks to send back, one message each (see `NodeService::get_reply`), so a request never
    /// holds more than one chunk in memory.
    Get(Vec<(Addr, bool)>),
    /// One signed reply for a renew or delete.
    Control(ControlReply),
    /// Nothing to send (dropped, or a broadcast this node cannot answer).
    Silent,
}

/// Why a store request was declined when its vault went over its store rate (the message is
/// offered again after a pause, or taken by another node).
pub const RATE_LIMITED: &str = "rate limited";

/// Why a store request was declined while this node stores the same chunk for another slot.
pub const HELD_NOW: &str = "storing this chunk for another slot right now";
/// Why a store request was declined when its vault is backed up from this node's own house.
pub const OWN_HOUSE: &str = "the vault is backed up from this node's house";

/// The cost, in proof items, of a request of `len` bytes (each item carries a 128-byte proof).
fn request_cost(len: usize) -> u64 {
    1 + (len / 128) as u64
}

/// Most vaults whose root records one node keeps (each at most `MAX_ROOT_RECORD` bytes).
pub const MAX_ROOTS_HELD: u64 = 10_000;

/// A storage node's request handling over a chunk store.
pub struct NodeService<S> {
    id: NodeIdentity,
    store: Arc<S>,
    policy: NodePolicy,
    replay: Mutex<ReplayGuard>,
    /// Stand-in commitment for proofs of chunks this node does not hold, drawn at random when
    /// the service starts: nobody can make a proof that verifies against it.
    dummy: Commitment,
    /// Addrs being stored right now, so concurrent slots of one chunk never both land here.
    storing: Arc<Mutex<HashSet<Addr>>>,
    /// Store bytes per vault.
    store_rate: Mutex<SourceLimiter>,
    /// Proof items per request source.
    request_rate: Mutex<SourceLimiter>,
    /// Stale answers per request source.
    stale_rate: Mutex<SourceLimiter>,
    /// Public counters.
    pub stats: NodeStats,
}

impl<S: ChunkStore> NodeService<S> {
    /// A service for identity `id` over `store`, started at `now_ms`.
    pub fn new(id: NodeIdentity, store: Arc<S>, policy: NodePolicy, now_ms: u64) -> Self {
        let replay = Mutex::new(ReplayGuard::new(
            policy.window_ms,
            now_ms,
            policy.replay_capacity,
            policy.replay_per_source,
        ));
        let mut seed = [0u8; 32];
        crate::domain::random_bytes(&mut seed);
        let dummy = ProofSecret::from_seed(&seed).commitment();
        let store_rate =
            Mutex::new(SourceLimiter::new(policy.store_rate, MAX_MESSAGE as u64, policy.rate_sources));
        let request_rate = Mutex::new(SourceLimiter::new(
            policy.request_rate,
            request_cost(MAX_REQUEST),
            policy.rate_sources,
        ));
        let stale_rate = RateLimit { per_sec: STALE_PER_SECOND, burst: STALE_BURST };
        NodeService {
            id,
            store,
            store_rate,
            request_rate,
            stale_rate: Mutex::new(SourceLimiter::new(stale_rate, 1, policy.rate_sources)),
            policy,
            replay,
            dummy,
            storing: Arc::default(),
            stats: NodeStats::new(now_ms),
        }
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.id.id()
    }

    /// The underlying store.
    pub fn store(&self) -> &S {
        &self.store
    }

    fn drop_msg(&self, reason: Reason, what: &str, why: impl std::fmt::Display) {
        self.stats.drop_for(reason);
        tracing::warn!(what, reason = reason.name(), %why, "dropped message");
    }

    /// First half of storing one replica slot (docs/DESIGN.md §5 Store): validates the request and
    /// decides everything that needs no ciphertext. `Fetch` means: get the body, then call
    /// `store_body`.
    pub fn claim_store(&self, bytes: &[u8], now_ms: u64) -> Claim {
        let reject = |reason: Reason, why: String| {
            self.drop_msg(reason, "store request", &why);
            Claim::Decided(StoreDecision::Reject(why))
        };
        if bytes.len() > MAX_REQUEST {
            let why = format!("{} bytes exceeds the {MAX_REQUEST}-byte limit", bytes.len());
            return reject(Reason::Oversized, why);
        }
        let req = match StoreRequest::decode(bytes) {
            Ok(r) => r,
            Err(e) => return reject(Reason::Malformed, e.to_string()),
        };
        if req.slot > self.policy.max_slot {
            return reject(Reason::Malformed, format!("slot {} above {}", req.slot, self.policy.max_slot));
        }
        if req.lease_expiry_ms <= now_ms {
            return reject(Reason::Expired, format!("lease expiry {} already passed", req.lease_expiry_ms));
        }
        if req.lease_expiry_ms > now_ms + self.policy.max_lease_ms {
            return reject(Reason::BadLease, format!("lease expiry {} too far out", req.lease_expiry_ms));
        }
        if self.policy.own_vaults.contains(&req.ack_token) {
            self.stats.decline_for(Reason::OwnHouse);
            return Claim::Decided(StoreDecision::Decline(OWN_HOUSE));
        }
        // Reserve the addr first, so that what is decided below (held or not) stays true until
        // the body is stored or the claim is dropped.
        if !self.storing.lock().unwrap_or_else(|p| p.into_inner()).insert(req.addr) {
            self.stats.decline_for(Reason::HeldOtherSlot);
            tracing::debug!(addr = ?req.addr, slot = req.slot, "declining: storing this chunk for another slot");
            return Claim::Decided(StoreDecision::Decline(HELD_NOW));
        }
        let claimed = ClaimedSlot { request: req, storing: self.storing.clone() };
        let req = &claimed.request;
        if let Some(decided) = self.held_decision(req, now_ms) {
            return Claim::Decided(decided);
        }
        let usage = self.store.usage();
        if usage.used.saturating_add(u64::from(req.len)) > usage.capacity {
            self.stats.decline_for(Reason::Full);
            return Claim::Decided(StoreDecision::Decline("node is full"));
        }
        let admitted = self.store_rate.lock().unwrap_or_else(|p| p.into_inner()).admit(
            &req.ack_token.0,
            u64::from(req.len) + bytes.len() as u64,
            now_ms,
        );
        if !admitted {
            self.stats.decline_for(Reason::RateLimited);
            return Claim::Decided(StoreDecision::Decline(RATE_LIMITED));
        }
        Claim::Fetch(claimed)
    }

    /// Second half: checks that `body` is the announced ciphertext (length and hash) and
    /// stores it durably.
    pub fn store_body(&self, claimed: ClaimedSlot, body: &[u8], now_ms: u64) -> StoreDecision {
        let Some(verified) = claimed.request.verify(body) else {
            let why = format!(
                "body of {} bytes is not the announced {}-byte ciphertext of {:?}",
                body.len(),
                claimed.request.len,
                claimed.request.addr
            );
            self.drop_msg(Reason::BadHash, "store body", &why);
            return StoreDecision::Reject(why);
        };
        self.store_locked(&claimed.request, &verified, now_ms)
    }

    /// Both halves with the body at hand (tests, and callers that already hold the body).
    pub fn handle_store(&self, bytes: &[u8], body: &[u8], now_ms: u64) -> StoreDecision {
        match self.claim_store(bytes, now_ms) {
            Claim::Fetch(claimed) => self.store_body(claimed, body, now_ms),
            Claim::Decided(d) => d,
        }
    }

    /// Whether a request of `len` bytes from `source` (its reply inbox prefix) is worth looking
    /// at: no larger than `MAX_REQUEST` and within the source's rate. Counts the reason if not.
    /// Checked before anything is decoded or any proof verified.
    pub fn admit_request(&self, source: &[u8], len: usize, now_ms: u64) -> bool {
        if len > MAX_REQUEST {
            self.stats.drop_for(Reason::Oversized);
            return false;
        }
        let ok = self.request_rate.lock().unwrap_or_else(|p| p.into_inner()).admit(
            source,
            request_cost(len),
            now_ms,
        );
        if !ok {
            self.stats.drop_for(Reason::RateLimited);
        }
        ok
    }

    /// The decision for a request whose addr this node already holds (or cannot look up);
    /// `None` when it is not held.
    fn held_decision(&self, req: &StoreRequest, now_ms: u64) -> Option<StoreDecision> {
        let held = match self.store.meta(&req.addr) {
            Ok(Some(held)) => held,
            Ok(None) => return None,
            Err(e) => {
                tracing::error!(error = %e, "index lookup failed; declining store");
                self.stats.decline_for(Reason::StorageError);
                return Some(StoreDecision::Decline("index error"));
            }
        };
        let other_control = matches!((held.control, req.control), (Some(h), Some(r)) if h != r);
        if held.commitment != req.commitment || other_control {
            // Someone else already stored these bytes under other commitments: never ack the
            // new ones for a chunk whose proofs would not match them.
            self.stats.decline_for(Reason::OtherCommitment);
            return Some(StoreDecision::Decline("holds this chunk under another commitment"));
        }
        // A store request proves nothing: it never raises the lease (the owner renews with a
        // proof) and never attaches a control commitment (a control request with proofs does).
        // The ack states the lease held, and covers Q only if this node holds the Q asked for.
        let control = held.control.filter(|_| req.control.is_some());
        let commitments = (&req.commitment, control.as_ref());
        let ack =
            StoreAck::sign_held(&self.id, req.addr, commitments, held.slot, held.lease_expiry_ms, now_ms);
        if held.slot == req.slot {
            return Some(StoreDecision::AlreadyHeld(ack, req.ack_token));
        }
        self.stats.decline_for(Reason::HeldOtherSlot);
        Some(StoreDecision::DeclineHeld(ack, req.ack_token))
    }

    /// Stores a claimed slot's verified body; the claim (checked not held, and reserved) keeps
    /// any other slot of the chunk from being stored here meanwhile.
    fn store_locked(&self, req: &StoreRequest, ciphertext: &Verified<'_>, now_ms: u64) -> StoreDecision {
        let meta = StoredChunk {
            addr: req.addr,
            slot: req.slot,
            commitment: req.commitment,
            control: req.control,
            lease_expiry_ms: req.lease_expiry_ms,
            len: req.len,
        };
        match self.store.put(&meta, ciphertext) {
            Ok(()) => {
                self.stats.stored.fetch_add(1, Ordering::Relaxed);
                let ack = StoreAck::sign_held(
                    &self.id,
                    req.addr,
                    (&req.commitment, req.control.as_ref()),
                    req.slot,
                    req.lease_expiry_ms,
                    now_ms,
                );
                StoreDecision::Stored(ack, req.ack_token)
            }
            Err(StoreError::Full { .. }) => {
                self.stats.decline_for(Reason::Full);
                StoreDecision::Decline("node is full")
            }
            Err(e) => {
                tracing::error!(error = %e, "storing chunk failed; declining");
                self.stats.decline_for(Reason::StorageError);
                StoreDecision::Decline("storage error")
            }
        }
    }

    /// Cheap checks before any proof work: addressed to this node (or, for a get, to any node)
    /// and timely. A renew, delete or audit must name this node: a request that names none
    /// would be good at every node that holds the chunk.
    fn timely(
        &self,
        ts: u64,
        target: &NodeId,
        purpose: Purpose,
        now_ms: u64,
    ) -> Result<(), (Reason, String)> {
        let any_allowed = purpose == Purpose::Get && *target == NodeId::ANY;
        if *target != self.id.id() && !any_allowed {
            return Err((
                Reason::Misaddressed,
                format!("{purpose:?} addressed to {target:?}, not this node"),
            ));
        }
        let guard = self.replay.lock().unwrap_or_else(|p| p.into_inner());
        guard.timely(ts, now_ms).map_err(|e: Freshness| (Reason::from(&e), e.to_string()))
    }

    /// Records a request id of `source` once at least one of its proofs verified, so strangers
    /// cannot fill the replay memory with proof-less requests; a second use of the id is refused.
    fn remember(
        &self,
        source: &[u8],
        request_id: [u8; 16],
        ts: u64,
        now_ms: u64,
    ) -> Result<(), (Reason, String)> {
        let mut guard = self.replay.lock().unwrap_or_else(|p| p.into_inner());
        guard.check(source, request_id, ts, now_ms).map_err(|e: Freshness| (Reason::from(&e), e.to_string()))
    }

    /// Handles a get, renew or delete request that arrived on the subject for `expected`, from
    /// an unnamed source.
    pub fn handle_proven(&self, bytes: &[u8], route: Route, expected: Purpose, now_ms: u64) -> ProvenOutcome {
        self.handle_proven_from(b"", bytes, route, expected, now_ms)
    }

    /// Handles a get, renew or delete request from `source` (its reply inbox prefix) that
    /// arrived on the subject for `expected`: a `Proven` request (read proofs; renew and delete
    /// only for chunks held without a control commitment) or a `Control` request.
    pub fn handle_proven_from(
        &self,
        source: &[u8],
        bytes: &[u8],
        route: Route,
        expected: Purpose,
        now_ms: u64,
    ) -> ProvenOutcome {
        if peek_kind(bytes) == Some(Kind::Control as u8) {
            return self.handle_control(source, bytes, route, expected, now_ms);
        }
        let req = match ProvenRequest::decode(bytes) {
            Ok(r) => r,
            Err(e) => {
                self.drop_msg(Reason::Malformed, "proven request", e);
                return ProvenOutcome::Silent;
            }
        };
        if req.purpose != expected {
            self.drop_msg(Reason::Malformed, "proven request", "purpose does not match the subject");
            return ProvenOutcome::Silent;
        }
        if route == Route::Broadcast && (req.target != NodeId::ANY || req.purpose != Purpose::Get) {
            self.drop_msg(Reason::Misaddressed, "broadcast request", "only untargeted gets may be broadcast");
            return ProvenOutcome::Silent;
        }
        if req.items.is_empty() {
            self.drop_msg(Reason::Malformed, "proven request", "no items");
            return ProvenOutcome::Silent;
        }
        if let Err((reason, why)) = self.timely(req.timestamp_ms, &req.target, req.purpose, now_ms) {
            self.drop_msg(reason, "proven request", why);
            return ProvenOutcome::Silent;
        }
        let right = if req.purpose.is_control() { Right::Control } else { Right::Read };
        let claims: Vec<ProofClaim> = req
            .items
            .iter()
            .map(|it| ProofClaim {
                addr: it.addr,
                ctx: req.context(&it.addr),
                read: it.proof,
                control: None,
                right,
            })
            .collect();
        let proven = self.authorise(&claims);
        if proven.iter().any(Option::is_some) {
            if let Err((reason, why)) = self.remember(source, req.request_id.0, req.timestamp_ms, now_ms) {
                self.drop_msg(reason, "proven request", why);
                return ProvenOutcome::Silent;
            }
        }
        let addrs: Vec<Addr> = req.items.iter().map(|it| it.addr).collect();
        match req.purpose {
            Purpose::Get => {
                ProvenOutcome::Get(addrs.into_iter().zip(proven).map(|(a, m)| (a, m.is_some())).collect())
            }
            purpose => self.control_outcome(
                purpose,
                &req.request_id,
                req.lease_expiry_ms,
                (&addrs, proven),
                None,
                now_ms,
            ),
        }
    }

    /// The reply for one item of a get plan: the chunk if it was proven and can be read, "not
    /// found" on a targeted request otherwise, and silence on a broadcast.
    pub fn get_reply(&self, addr: Addr, proven: bool, route: Route) -> Option<GetReply> {
        let node = self.id.id();
        match (proven.then(|| self.read_verified(&addr)).flatten(), route) {
            (Some(ciphertext), _) => {
                self.stats.served.fetch_add(1, Ordering::Relaxed);
                Some(GetReply { node, addr, status: Status::Ok, ciphertext })
            }
            (None, Route::Targeted) => {
                Some(GetReply { node, addr, status: Status::NotFound, ciphertext: Vec::new() })
            }
            (None, Route::Broadcast) => None,
        }
    }

    /// Reads a chunk; a copy that no longer verifies is removed (so the slot can be re-filled)
    /// and reported as not held.
    fn read_verified(&self, addr: &Addr) -> Option<Vec<u8>> {
        match self.store.read(addr) {
            Ok(found) => found,
            Err(StoreError::Corrupt(_)) => {
                tracing::error!(?addr, "stored chunk is corrupt; removing it so the owner re-replicates");
                let _ = self.store.remove(addr);
                None
            }
            Err(e) => {
                tracing::error!(?addr, error = %e, "reading chunk failed");
                None
            }
        }
    }

    /// Keeps a root record published under `locator` if it is validly signed by the vault it is
    /// filed under and newer than the one held. Anything else is dropped with a log line.
    /// Returns whether it was kept.
    pub fn keep_root(&self, locator: &str, record: &[u8]) -> bool {
        let version = match RootRecord::check_filed(record, locator) {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!(%locator, error = %e, "dropped a root record");
                self.stats.drop_for(Reason::BadSignature);
                return false;
            }
        };
        let held = match self.store.root(locator) {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %e, "reading a root record failed");
                return false;
            }
        };
        match held.as_deref().map(|h| RootRecord::check_filed(h, locator)) {
            Some(Ok(v)) if v >= version => return false,
            None if matches!(self.store.roots_held(), Ok(n) if n >= MAX_ROOTS_HELD) => {
                tracing::warn!(%locator, "root record of a new vault dropped: this node keeps {MAX_ROOTS_HELD} vaults' records");
                return false;
            }
            _ => {}
        }
        match self.store.put_root(locator, record) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "keeping a root record failed");
                false
            }
        }
    }

    /// The root record held for `locator`, if any.
    pub fn root(&self, locator: &str) -> Option<Vec<u8>> {
        self.store.root(locator).ok().flatten()
    }

    /// Drops every chunk whose lease has ended; returns how many.
    pub fn sweep_expired(&self, now_ms: u64) -> usize {
        let expired = match self.store.expired(now_ms) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "lease sweep failed");
                return 0;
            }
        };
        let n = expired.iter().filter(|a| matches!(self.store.remove(a), Ok(true))).count();
        self.stats.expired.fetch_add(n as u64, Ordering::Relaxed);
        n
    }
}

#[cfg(test)]
#[path = "node_tests.rs"]
mod tests;
