//! The in-memory owner-side fabric: a `ChunkFabric` over storage nodes in this process, each a
//! real `NodeService<MemoryChunkStore>`, with switches to take a node offline, drop, delay or
//! corrupt its replies, corrupt what it stores, and cut the link to the "broker" (tests only).
//!
//! Requests and replies cross as encoded wire messages: nodes validate, prove, sign and audit
//! exactly as on the real fabric, and the owner checks every reply with the same
//! `app::fabric_checks` as the NATS adapter. What differs is timing: the memory fabric knows
//! when every node has answered, so it returns at once instead of waiting out a reply timeout;
//! it waits only for a node that is silent (dropped or late replies), as the NATS owner does.

use super::MemoryChunkStore;
use crate::adapters::clock::SystemClock;
use crate::app::fabric_checks::{
    check_control, fresh_seed, judge_batch, judge_bytes, slots_to_publish, AckTally, ControlSent, GetReplies,
    Proving, StoreTerms, AUDIT_LEAVES,
};
use crate::app::node::{NodePolicy, NodeService, Op, ProvenOutcome, Route, StoreDecision};
use crate::domain::identity::{NodeIdentity, IDENTITY_LEN};
use crate::domain::ids::{to_hex, AckToken, Addr, NodeId};
use crate::domain::placement::HouseListing;
use crate::domain::proof::{Commitment, ProofSecret, Purpose};
use crate::domain::snapshot::MAX_ROOT_RECORD;
use crate::domain::wire::{
    AuditBatch, AuditRequest, ProvenRequest, Status, StoreAck, StoreRequest, MAX_AUDIT_BATCH, MAX_ITEMS,
};
use crate::ports::chunk_store::ChunkStore;
use crate::ports::clock::Clock;
use crate::ports::fabric::{
    AuditVerdict, ChunkFabric, FabricError, LeaseHeld, LeaseSwap, Link, Publish, RootsServed, StoreGoal,
};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

#[path = "fabric_node.rs"]
mod node;
use node::MemoryNode;
pub use node::NodeFault;

/// Owner-side knobs of the memory fabric.
#[derive(Clone, Debug)]
pub struct MemoryFabricOptions {
    /// Storage nodes.
    pub nodes: usize,
    /// Capacity of each node, bytes.
    pub capacity: u64,
    /// Node policy (the same for every node).
    pub policy: NodePolicy,
    /// Seeds the nodes' identities (the same seed, the same node ids).
    pub seed: u64,
    /// Lease requested for newly stored chunks.
    pub lease: Duration,
    /// Offer unacknowledged slots again after this long.
    pub retry_after: Duration,
    /// Give up on quorum for one chunk after this long.
    pub store_deadline: Duration,
    /// Wait this long for a node's reply before giving up on it.
    pub reply_timeout: Duration,
}

impl MemoryFabricOptions {
    /// `nodes` nodes of 1 GiB with short timeouts.
    pub fn new(nodes: usize) -> Self {
        MemoryFabricOptions {
            nodes,
            capacity: 1 << 30,
            policy: NodePolicy::default(),
            seed: 0,
            lease: Duration::from_secs(90 * 24 * 3600),
            retry_after: Duration::from_millis(100),
            store_deadline: Duration::from_secs(5),
            reply_timeout: Duration::from_millis(500),
        }
    }
}

/// The owner's request source as nodes rate-limit it (a NATS owner's inbox prefix).
const SOURCE: &[u8] = b"_INBOX_memory_owner";

/// The vault's ack token on store requests (acks are routed in memory, not by token).
const TOKEN: AckToken = AckToken([0x51; 16]);

/// Storage nodes in this process behind the owner's fabric port.
pub struct MemoryFabric {
    nodes: Vec<MemoryNode>,
    /// Root records as the broker keeps them, per locator, oldest first.
    roots: Mutex<HashMap<String, Vec<Vec<u8>>>>,
    /// Writer leases as the broker keeps them: (revision, record) per locator.
    leases: Mutex<HashMap<String, (u64, Vec<u8>)>>,
    link: watch::Sender<Link>,
    opts: MemoryFabricOptions,
    clock: Arc<dyn Clock>,
    /// The node a store request is offered to first (the work queue hands them round).
    next: AtomicUsize,
    /// The broker's message sequence, which lease revisions are taken from.
    lease_revision: AtomicU64,
    /// The house certificates a hub would list (`set_houses`).
    houses: Mutex<Vec<HouseListing>>,
}

impl MemoryFabric {
    /// `nodes` healthy nodes on the system clock, with the default options.
    pub fn new(nodes: usize) -> Self {
        Self::with(MemoryFabricOptions::new(nodes), Arc::new(SystemClock))
    }

    /// Nodes as `opts` says, all on `clock` (the owner's clock too).
    pub fn with(opts: MemoryFabricOptions, clock: Arc<dyn Clock>) -> Self {
        let now = clock.now_ms();
        let nodes = (0..opts.nodes)
            .map(|i| {
                let mut seed = [0u8; IDENTITY_LEN];
                let key = blake3::derive_key("quloud v1 memory fabric node", &opts.seed.to_le_bytes());
                blake3::Hasher::new_keyed(&key)
                    .update(&(i as u64).to_le_bytes())
                    .finalize_xof()
                    .fill(&mut seed);
                let store = Arc::new(MemoryChunkStore::new(opts.capacity));
                let svc = NodeService::new(NodeIdentity::from_bytes(&seed), store, opts.policy.clone(), now);
                MemoryNode::new(svc)
            })
            .collect();
        MemoryFabric {
            nodes,
            roots: Mutex::default(),
            leases: Mutex::default(),
            link: watch::channel(Link { connected: true, since_ms: now }).0,
            opts,
            clock,
            next: AtomicUsize::new(0),
            lease_revision: AtomicU64::new(0),
            houses: Mutex::default(),
        }
    }

    /// Every node's id, in creation order.
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.nodes.iter().map(|n| n.svc.node_id()).collect()
    }

    fn find(&self, node: NodeId) -> Option<&MemoryNode> {
        self.nodes.iter().find(|n| n.svc.node_id() == node)
    }

    /// A node's service (its store, stats and policy), to look at or to drive directly.
    pub fn node(&self, node: NodeId) -> Option<&NodeService<MemoryChunkStore>> {
        self.find(node).map(|n| &n.svc)
    }

    /// Sets what is wrong with `node`. A node coming back online catches up on the root
    /// records published meanwhile, as a NATS node reads them from its durable consumer.
    pub fn set_fault(&self, node: NodeId, fault: NodeFault) {
        let Some(n) = self.find(node) else { return };
        let was = n.set_fault(fault);
        if was == NodeFault::Offline && fault != NodeFault::Offline {
            let roots = self.roots.lock().unwrap_or_else(|p| p.into_inner()).clone();
            for (locator, records) in roots {
                for r in records {
                    n.svc.keep_root(&locator, &r);
                }
            }
        }
    }

    /// Flips a bit of `node`'s stored copy of `addr` (disk corruption).
    pub fn corrupt_stored(&self, node: NodeId, addr: &Addr) {
        if let Some(n) = self.find(node) {
            n.svc.store().corrupt(addr);
        }
    }

    /// Nodes that hold `addr` now.
    pub fn holders(&self, addr: &Addr) -> Vec<NodeId> {
        let held = |n: &&MemoryNode| matches!(n.svc.store().meta(addr), Ok(Some(_)));
        self.nodes.iter().filter(held).map(|n| n.svc.node_id()).collect()
    }

    /// Requests of kind `op` that reached `node` (not those sent while it was offline).
    pub fn requests(&self, node: NodeId, op: Op) -> u64 {
        self.node(node).map_or(0, |s| s.stats.requests(op))
    }

    /// Requests of kind `op` that reached any node.
    pub fn requests_all(&self, op: Op) -> u64 {
        self.nodes.iter().map(|n| n.svc.stats.requests(op)).sum()
    }

    /// Every online node drops the chunks whose lease has ended; returns how many in all.
    pub fn sweep_expired(&self) -> usize {
        let now = self.clock.now_ms();
        self.nodes.iter().filter(|n| n.online()).map(|n| n.svc.sweep_expired(now)).sum()
    }

    /// The broker connection drops: requests wait for it, and fail after the reply timeout.
    pub fn disconnect(&self) {
        self.set_link(false);
    }

    /// The house certificates the fabric lists from now on, as a hub's membership service would.
    pub fn set_houses(&self, listing: Vec<HouseListing>) {
        *self.houses.lock().unwrap_or_else(|p| p.into_inner()) = listing;
    }

    /// The broker connection is back.
    pub fn reconnect(&self) {
        self.set_link(true);
    }

    fn set_link(&self, connected: bool) {
        let since_ms = self.clock.now_ms();
        self.link.send_if_modified(|l| {
            let changed = l.connected != connected;
            if changed {
                *l = Link { connected, since_ms };
            }
            changed
        });
    }

    async fn link_up(&self) -> bool {
        self.up_within(self.opts.reply_timeout).await
    }

    /// Sends `request` to `node` and waits for its one answer, as a NATS request does: at once
    /// `Timeout` when nobody listens, after the reply timeout when the node stays silent.
    async fn request(
        &self,
        node: NodeId,
        op: Op,
        request: &[u8],
        handle: impl FnOnce(&NodeService<MemoryChunkStore>, u64) -> Option<Vec<u8>>,
    ) -> Result<Vec<u8>, FabricError> {
        if !self.link_up().await {
            return Err(FabricError::Timeout(node));
        }
        let Some(n) = self.find(node).filter(|n| n.online()) else { return Err(FabricError::Timeout(node)) };
        let now = self.clock.now_ms();
        let answer = if n.svc.admit_request(SOURCE, request.len(), now) {
            let started = Instant::now();
            let answer = handle(&n.svc, now);
            n.svc.stats.request(op, started.elapsed());
            answer
        } else {
            None
        };
        let Some(bytes) = answer else {
            tokio::time::sleep(self.opts.reply_timeout).await;
            return Err(FabricError::Timeout(node));
        };
        n.reply(bytes, self.opts.reply_timeout).await.ok_or(FabricError::Timeout(node))
    }

    /// Offers one slot's store request to the online nodes in turn until one takes it (or
    /// rejects it for good), recording the acks that reach the owner.
    async fn offer_slot(&self, chunk: &Publish<'_>, slot: u8, lease: u64, tally: &mut AckTally) {
        let req = StoreRequest::for_body(TOKEN, chunk.ciphertext, slot, chunk.commitment, lease)
            .with_control(tally.control())
            .encode();
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..self.nodes.len() {
            let n = &self.nodes[(first + i) % self.nodes.len()];
            if !n.online() {
                continue;
            }
            let started = Instant::now();
            let decision = n.svc.handle_store(&req, chunk.ciphertext, self.clock.now_ms());
            n.svc.stats.request(Op::Store, started.elapsed());
            match decision {
                StoreDecision::Stored(ack, _) | StoreDecision::AlreadyHeld(ack, _) => {
                    return self.deliver_ack(n, ack, tally).await;
                }
                StoreDecision::DeclineHeld(ack, _) => self.deliver_ack(n, ack, tally).await,
                StoreDecision::Decline(_) => {}
                StoreDecision::Reject(why) => {
                    tracing::warn!(addr = ?chunk.addr, slot, %why, "store request rejected");
                    return;
                }
            }
        }
    }

    /// Records the ack `n` sent, if it reaches the owner through the ack stream.
    async fn deliver_ack(&self, n: &MemoryNode, ack: StoreAck, tally: &mut AckTally) {
        if n.fault() == NodeFault::ForgesAcks {
            let _ = n.svc.store().remove(&ack.addr);
        }
        let Some(bytes) = n.ack(ack.encode()).await else { return };
        match StoreAck::decode(&bytes) {
            Ok(ack) => {
                tally.accept(ack);
            }
            Err(e) => tracing::warn!(error = %e, "malformed store ack dropped"),
        }
    }

    async fn store_inner(
        &self,
        chunk: Publish<'_>,
        control: Option<Commitment>,
        goal: StoreGoal<'_>,
    ) -> Result<Vec<StoreAck>, FabricError> {
        let since_ms = self.clock.now_ms();
        let lease = since_ms + self.opts.lease.as_millis() as u64;
        let terms = StoreTerms { commitment: chunk.commitment, control, since_ms, min_lease_ms: lease };
        let mut tally = AckTally::new(terms);
        let deadline = tokio::time::Instant::now() + self.opts.store_deadline;
        loop {
            let (distinct, claimed) = tally.progress(&goal);
            if distinct >= goal.replicas {
                return Ok(tally.counted(&goal));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(FabricError::Quorum { addr: chunk.addr, got: distinct, want: goal.replicas });
            }
            if self.link.borrow().connected {
                let slots = slots_to_publish(&claimed, goal.replicas - distinct);
                for &slot in &slots {
                    self.offer_slot(&chunk, slot, lease, &mut tally).await;
                }
                // Every slot offered was taken (some by excluded nodes): offer the next ones now.
                let (_, claimed) = tally.progress(&goal);
                if !slots.is_empty() && slots.iter().all(|s| claimed.contains(s)) {
                    continue;
                }
            }
            let retry_at = (tokio::time::Instant::now() + self.opts.retry_after).min(deadline);
            tokio::time::sleep_until(retry_at).await;
        }
    }

    /// Sends one get request (to `target`, or to every node) and collects the verified chunks.
    async fn get_from(&self, target: NodeId, items: &[(Addr, ProofSecret)]) -> Vec<(Addr, bytes::Bytes)> {
        let mut replies = GetReplies::new(target, items.iter().map(|(a, _)| *a));
        if !self.link_up().await {
            return replies.into_found();
        }
        let now = self.clock.now_ms();
        let req = ProvenRequest::build(Purpose::Get, target, now, 0, items).encode();
        let (route, asked): (Route, Vec<&MemoryNode>) = if target == NodeId::ANY {
            (Route::Broadcast, self.nodes.iter().filter(|n| n.online()).collect())
        } else {
            (Route::Targeted, self.find(target).filter(|n| n.online()).into_iter().collect())
        };
        // (delay, messages) per node that answers; whether any stayed silent.
        let mut arrivals: Vec<(Duration, Vec<Vec<u8>>)> = Vec::new();
        let mut silent = false;
        for n in asked {
            let msgs = self.answer_get(n, &req, route, now);
            silent |= route == Route::Targeted && msgs.len() < items.len();
            match n.scheduled(msgs) {
                Some(arrival) => arrivals.push(arrival),
                None => silent = true,
            }
        }
        arrivals.sort_by_key(|(d, _)| *d);
        let mut waited = Duration::ZERO;
        for (delay, msgs) in arrivals {
            if replies.complete() {
                break;
            }
            if delay.saturating_sub(waited) >= self.opts.reply_timeout {
                silent = true;
                break;
            }
            tokio::time::sleep(delay.saturating_sub(waited)).await;
            waited = delay;
            for m in msgs {
                replies.offer(&bytes::Bytes::from(m));
            }
        }
        // A node that stays silent is waited for, as the NATS owner does.
        if silent && !replies.complete() {
            tokio::time::sleep(self.opts.reply_timeout).await;
        }
        replies.into_found()
    }

    /// A node's reply messages to a get request, one per chunk (none when it stays silent).
    fn answer_get(&self, n: &MemoryNode, req: &[u8], route: Route, now: u64) -> Vec<Vec<u8>> {
        if !n.svc.admit_request(SOURCE, req.len(), now) {
            return Vec::new();
        }
        let started = Instant::now();
        let msgs = match n.svc.handle_proven_from(SOURCE, req, route, Purpose::Get, now) {
            ProvenOutcome::Get(plan) => plan
                .into_iter()
                .filter_map(|(addr, proven)| n.svc.get_reply(addr, proven, route))
                .map(|r| r.encode())
                .collect(),
            ProvenOutcome::Control(_) | ProvenOutcome::Silent => Vec::new(),
        };
        n.svc.stats.request(Op::Get, started.elapsed());
        msgs
    }

    async fn control(
        &self,
        purpose: Purpose,
        node: NodeId,
        items: &[(Addr, ProofSecret)],
        lease: u64,
    ) -> Result<Vec<(Addr, Status)>, FabricError> {
        let op = if purpose == Purpose::Renew { Op::Renew } else { Op::Delete };
        let mut out = Vec::with_capacity(items.len());
        // Proven with the control secrets when every secret carries one, as the NATS owner does.
        let proving = Proving::of(items);
        for batch in items.chunks(proving.batch()) {
            let sent = ControlSent::build(proving, purpose, node, self.clock.now_ms(), lease, batch);
            let bytes = self
                .request(node, op, &sent.bytes, |svc, now| {
                    match svc.handle_proven_from(SOURCE, &sent.bytes, Route::Targeted, purpose, now) {
                        ProvenOutcome::Control(c) => Some(c.encode()),
                        ProvenOutcome::Get(_) | ProvenOutcome::Silent => None,
                    }
                })
                .await?;
            out.extend(check_control(&bytes, node, &sent)?);
        }
        Ok(out)
    }
}

impl ChunkFabric for MemoryFabric {
    async fn houses(&self) -> Result<Vec<HouseListing>, FabricError> {
        Ok(self.houses.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    fn link(&self) -> Link {
        *self.link.borrow()
    }

    async fn up_within(&self, within: Duration) -> bool {
        let mut rx = self.link.subscribe();
        tokio::time::timeout(within, rx.wait_for(|l| l.connected)).await.is_ok_and(|r| r.is_ok())
    }

    async fn store(&self, chunk: Publish<'_>, goal: StoreGoal<'_>) -> Result<Vec<StoreAck>, FabricError> {
        self.store_inner(chunk, None, goal).await
    }

    async fn store_controlled(
        &self,
        chunk: Publish<'_>,
        control: Option<Commitment>,
        goal: StoreGoal<'_>,
    ) -> Result<Vec<StoreAck>, FabricError> {
        self.store_inner(chunk, control, goal).await
    }

    async fn get(
        &self,
        items: &[(Addr, ProofSecret)],
        hints: &[NodeId],
    ) -> Result<Vec<(Addr, bytes::Bytes)>, FabricError> {
        let mut remaining: Vec<(Addr, ProofSecret)> = items.to_vec();
        let mut found = Vec::with_capacity(items.len());
        for target in hints.iter().copied().chain(std::iter::once(NodeId::ANY)) {
            if remaining.is_empty() {
                break;
            }
            for batch in remaining.clone().chunks(MAX_ITEMS) {
                found.extend(self.get_from(target, batch).await);
            }
            let have: HashSet<Addr> = found.iter().map(|(a, _)| *a).collect();
            remaining.retain(|(a, _)| !have.contains(a));
        }
        Ok(found)
    }

    async fn audit(
        &self,
        node: NodeId,
        addr: Addr,
        secret: &ProofSecret,
        len: u64,
    ) -> Result<AuditVerdict, FabricError> {
        let req = AuditRequest::build(secret, node, addr, fresh_seed(), AUDIT_LEAVES, self.clock.now_ms());
        let sent = req.encode();
        let bytes = self
            .request(node, Op::Audit, &sent, |svc, now| {
                svc.handle_audit_from(SOURCE, &sent, now).map(|r| r.encode())
            })
            .await?;
        Ok(judge_bytes(&bytes, &req, len))
    }

    async fn audit_many(
        &self,
        node: NodeId,
        items: &[(Addr, ProofSecret, u64)],
    ) -> Result<Vec<AuditVerdict>, FabricError> {
        let mut out = Vec::with_capacity(items.len());
        for part in items.chunks(MAX_AUDIT_BATCH) {
            let ts = self.clock.now_ms();
            let reqs = part
                .iter()
                .map(|(addr, secret, _)| {
                    AuditRequest::build(secret, node, *addr, fresh_seed(), AUDIT_LEAVES, ts)
                })
                .collect();
            let batch = AuditBatch(reqs);
            let sent = batch.encode();
            let bytes = self
                .request(node, Op::Audit, &sent, |svc, now| {
                    svc.handle_audit_batch_from(SOURCE, &sent, now).map(|r| r.encode())
                })
                .await?;
            let judged: Vec<(&AuditRequest, u64)> =
                batch.0.iter().zip(part).map(|(r, (_, _, len))| (r, *len)).collect();
            out.extend(judge_batch(&bytes, &judged));
        }
        Ok(out)
    }

    async fn renew(
        &self,
        node: NodeId,
        items: &[(Addr, ProofSecret)],
        lease_expiry_ms: u64,
    ) -> Result<Vec<(Addr, Status)>, FabricError> {
        self.control(Purpose::Renew, node, items, lease_expiry_ms).await
    }

    async fn publish_root(&self, locator: &str, record: &[u8]) -> Result<(), FabricError> {
        if !self.link_up().await {
            return Err(FabricError::Broker("not connected to the broker".into()));
        }
        self.roots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(locator.to_string())
            .or_default()
            .push(record.to_vec());
        for n in self.nodes.iter().filter(|n| n.online()) {
            n.svc.keep_root(locator, record);
        }
        Ok(())
    }

    async fn lease(&self, locator: &str) -> Result<Option<LeaseHeld>, FabricError> {
        if !self.link_up().await {
            return Err(FabricError::Broker("not connected to the broker".into()));
        }
        let leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        Ok(leases
            .get(locator)
            .map(|(revision, record)| LeaseHeld { revision: *revision, record: record.clone() }))
    }

    async fn swap_lease(&self, locator: &str, record: &[u8], expect: u64) -> Result<LeaseSwap, FabricError> {
        if !self.link_up().await {
            return Err(FabricError::Broker("not connected to the broker".into()));
        }
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        let now = leases.get(locator).map_or(0, |(r, _)| *r);
        if now != expect {
            return Ok(LeaseSwap::Conflict);
        }
        let revision = self.lease_revision.fetch_add(1, Ordering::Relaxed) + 1;
        leases.insert(locator.to_string(), (revision, record.to_vec()));
        Ok(LeaseSwap::Swapped(revision))
    }

    async fn fetch_roots(&self, locator: &str) -> Result<RootsServed, FabricError> {
        if !self.link_up().await {
            return Err(FabricError::Broker("not connected to the broker".into()));
        }
        let history = self.roots.lock().unwrap_or_else(|p| p.into_inner()).get(locator).cloned();
        let kept = history.unwrap_or_default().into_iter().filter(|r| r.len() <= MAX_ROOT_RECORD).collect();
        let mut served = vec![("the broker".to_string(), kept)];
        for n in self.nodes.iter().filter(|n| n.online()) {
            let started = Instant::now();
            let held = n.svc.root(locator);
            n.svc.stats.request(Op::Roots, started.elapsed());
            let Some(record) = held else { continue };
            let mut msg = n.svc.node_id().0.to_vec();
            msg.extend_from_slice(&record);
            // Nodes are heard for up to a second, as the NATS owner collects them.
            let Some(msg) = n.heard_within(msg, Duration::from_secs(1)).await else { continue };
            if msg.len() > 32 && msg.len() <= 32 + MAX_ROOT_RECORD {
                served.push((format!("node {}…", to_hex(&msg[..6])), vec![msg[32..].to_vec()]));
            }
        }
        Ok(served)
    }

    async fn delete(
        &self,
        node: NodeId,
        items: &[(Addr, ProofSecret)],
    ) -> Result<Vec<(Addr, Status)>, FabricError> {
        self.control(Purpose::Delete, node, items, 0).await
    }
}

#[cfg(test)]
#[path = "fabric_tests.rs"]
mod tests;
