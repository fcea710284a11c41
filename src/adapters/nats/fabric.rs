//! Owner side of the NATS fabric: quorum store with signed acks, proof-gated retrieval (targeted,
//! then broadcast), audits, renewals and deletes — with timeouts, retries and bounded concurrency.

use super::{
    ack_subject, body_subject, connect, ensure_lease_stream, ensure_root_stream, ensure_streams,
    lease_subject, node_subject, root_subject, BrokerConfig, Layout, ACK_STREAM, BROADCAST_GET,
    STORE_SUBJECT,
};
use crate::app::fabric_checks::{
    check_control, fresh_seed, judge_batch, judge_bytes, progress, slots_to_publish, AckTally, ControlSent,
    GetReplies, Proving, StoreTerms,
};
use crate::domain::ids::{AckToken, Addr, NodeId, RequestId};
use crate::domain::proof::{Commitment, ProofSecret, Purpose};
use crate::domain::skew::Aim;
use crate::domain::unix_ms;
use crate::domain::wire::{
    AuditBatch, AuditRequest, ProvenRequest, Status, StoreAck, StoreRequest, MAX_AUDIT_BATCH, MAX_ITEMS,
};
use crate::ports::fabric::{
    AuditVerdict, ChunkFabric, FabricError, LeaseHeld, LeaseSwap, Publish, RootsServed, StoreGoal,
};
use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::jetstream::{self, consumer, message::PublishMessage};
use futures::StreamExt;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_util::sync::CancellationToken;

pub use crate::app::fabric_checks::AUDIT_LEAVES;

/// Owner-side knobs.
#[derive(Clone, Debug)]
pub struct FabricOptions {
    /// Broker servers, TLS and credentials.
    pub broker: BrokerConfig,
    /// Stream layout.
    pub layout: Layout,
    /// Lease requested for newly stored chunks.
    pub lease: Duration,
    /// Re-publish unacknowledged slots after this long.
    pub retry_after: Duration,
    /// Give up on quorum for one chunk after this long.
    pub store_deadline: Duration,
    /// Wait this long for a node's next reply before giving up on it.
    pub reply_timeout: Duration,
    /// Chunks being stored at once.
    pub max_in_flight: usize,
    /// Collect this vault's store acks (off for read-only mounts, which never store: no durable
    /// consumer is left on the broker for them).
    pub collect_acks: bool,
}

impl FabricOptions {
    /// Defaults for `broker` (a URL, a comma-separated list, or a full `BrokerConfig`).
    pub fn new(broker: impl Into<BrokerConfig>) -> Self {
        FabricOptions {
            broker: broker.into(),
            layout: Layout::default(),
            lease: Duration::from_secs(90 * 24 * 3600),
            retry_after: Duration::from_secs(10),
            store_deadline: Duration::from_secs(120),
            reply_timeout: Duration::from_secs(5),
            max_in_flight: 64,
            collect_acks: true,
        }
    }
}

/// Acks collected for one chunk being stored. Shared by concurrent `store` calls of the same
/// addr (dedup inside a vault), removed when the last of them finishes.
struct Pending {
    tally: AckTally,
    changed: watch::Sender<usize>,
    users: usize,
    /// Whether a body was (or may have been) published for it, to withdraw when the last user ends.
    body_published: bool,
}

type PendingMap = Arc<Mutex<HashMap<Addr, Pending>>>;

/// Whether a round of store requests publishes the chunk's body first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Body {
    Publish,
    /// Nodes took every slot of the previous round, so they found the body on the broker.
    OnBroker,
}

/// The owner's connection to the fabric.
pub struct NatsFabric {
    client: async_nats::Client,
    link: super::connect::LinkState,
    js: jetstream::Context,
    token: AckToken,
    opts: FabricOptions,
    pending: PendingMap,
    store_slots: Arc<Semaphore>,
    cancel: CancellationToken,
    clocks: skew::Clocks,
}

#[path = "fabric_roots.rs"]
mod roots;
#[path = "fabric_skew.rs"]
mod skew;

fn now_ms() -> u64 {
    unix_ms(SystemTime::now())
}

fn broker(e: impl std::fmt::Display) -> FabricError {
    FabricError::Broker(e.to_string())
}

impl NatsFabric {
    /// Connects, ensures the streams, and starts collecting this vault's acks (including acks
    /// that arrived while the owner was offline). Acks for chunks not currently being stored are
    /// sent to `unsolicited`, if given.
    pub async fn connect(
        token: AckToken,
        opts: FabricOptions,
        unsolicited: Option<mpsc::Sender<StoreAck>>,
    ) -> Result<Self, FabricError> {
        let mut broker = opts.broker.clone();
        broker.inbox_prefix.get_or_insert_with(|| super::permissions::owner_inbox(&token));
        let (client, violations, link) = connect(&broker, "quloud-owner").await?;
        let js = super::connect::jetstream(&broker, client.clone());
        let pending: PendingMap = Arc::default();
        let cancel = CancellationToken::new();
        let setup = async {
            let streams = ensure_streams(&js, &opts.layout).await?;
            if opts.collect_acks {
                Self::collect_acks(&streams.acks, token, pending.clone(), unsolicited, cancel.clone())
                    .await?;
            }
            Ok::<_, FabricError>(())
        };
        // A user without the subjects an owner needs: say so rather than time out.
        tokio::select! {
            ready = setup => ready?,
            v = violations.first() => {
                cancel.cancel();
                return Err(broker.lacks_permission(v, "owner"));
            }
        }
        Ok(NatsFabric {
            client,
            link,
            js,
            token,
            store_slots: Arc::new(Semaphore::new(opts.max_in_flight)),
            opts,
            pending,
            cancel,
            clocks: skew::Clocks::default(),
        })
    }

    /// Binds this vault's durable ack consumer and collects its acks in the background.
    async fn collect_acks(
        acks: &jetstream::stream::Stream,
        token: AckToken,
        pending: PendingMap,
        unsolicited: Option<mpsc::Sender<StoreAck>>,
        cancel: CancellationToken,
    ) -> Result<(), FabricError> {
        let durable = super::permissions::owner_ack_consumer(&token);
        let config = consumer::pull::Config {
            durable_name: Some(durable.clone()),
            filter_subject: ack_subject(&token),
            ack_policy: consumer::AckPolicy::Explicit,
            deliver_policy: consumer::DeliverPolicy::All,
            inactive_threshold: Duration::from_secs(30 * 24 * 3600),
            ..Default::default()
        };
        let ack_consumer = acks.get_or_create_consumer(&durable, config).await.map_err(broker)?;
        tokio::spawn(ack_loop(ack_consumer, pending, unsolicited, cancel));
        tracing::debug!(stream = ACK_STREAM, %durable, "collecting store acks");
        Ok(())
    }

    /// Removes this vault's durable ack consumer from the broker (for throwaway vaults such as
    /// `quloud check`; a real vault keeps it so acks that arrive while it is offline wait).
    pub async fn delete_ack_consumer(&self) -> Result<(), FabricError> {
        let stream = self.js.get_stream(ACK_STREAM).await.map_err(broker)?;
        stream.delete_consumer(&super::permissions::owner_ack_consumer(&self.token)).await.map_err(broker)?;
        Ok(())
    }

    /// The underlying NATS client.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// One store request. Its JetStream message id (`addr-slot-call-attempt`) makes a re-sent
    /// publish of the same attempt a broker-side duplicate, while a later store of the same chunk
    /// (healing, re-upload) is a new message and is delivered.
    fn publish_slot(&self, chunk: &Publish<'_>, slot: u8, attempt: u32, lease: u64) -> PublishMessage {
        let control = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&chunk.addr)
            .and_then(|p| p.tally.control());
        let req = StoreRequest::for_body(self.token, chunk.ciphertext, slot, chunk.commitment, lease)
            .with_control(control);
        PublishMessage::build()
            .payload(req.encode().into())
            .message_id(format!("{}-{slot}-{:x}-{attempt}", chunk.addr, lease))
    }

    /// Publishes the chunk's body unless it is known to be on the broker (replacing any earlier
    /// copy or tombstone), then one store request per slot, and waits for the broker to have
    /// them all.
    async fn publish_slots(
        &self,
        chunk: &Publish<'_>,
        slots: &[u8],
        (attempt, body_state): (u32, Body),
        lease: u64,
    ) -> Result<(), FabricError> {
        if body_state == Body::Publish {
            let body = bytes::Bytes::copy_from_slice(chunk.ciphertext);
            if let Some(p) = self.pending.lock().unwrap_or_else(|p| p.into_inner()).get_mut(&chunk.addr) {
                p.body_published = true;
            }
            // The body must be on the broker before any node can take a slot.
            self.js.publish(body_subject(&chunk.addr), body).await.map_err(broker)?.await.map_err(broker)?;
        }
        let mut acks: Vec<PublishAckFuture> = Vec::with_capacity(slots.len());
        for &slot in slots {
            let msg = self.publish_slot(chunk, slot, attempt, lease);
            acks.push(self.js.send_publish(STORE_SUBJECT, msg).await.map_err(broker)?);
        }
        for a in acks {
            a.await.map_err(broker)?;
        }
        Ok(())
    }

    /// Replaces a durable chunk's body on the broker with an empty tombstone, so it stops using
    /// broker memory (best effort: it ages out after a day anyway).
    async fn withdraw_body(&self, addr: &Addr) {
        if let Err(e) = self.js.publish(body_subject(addr), bytes::Bytes::new()).await {
            tracing::debug!(?addr, error = %e, "withdrawing the stored chunk's body failed");
        }
    }

    async fn store_inner(
        &self,
        chunk: Publish<'_>,
        goal: StoreGoal<'_>,
        lease: u64,
        mut rx: watch::Receiver<usize>,
    ) -> Result<Vec<StoreAck>, FabricError> {
        let deadline = Instant::now() + self.opts.store_deadline;
        let replicas = goal.replicas;
        let mut attempt = 0u32;
        let mut body = Body::Publish;
        loop {
            let (distinct, claimed) = self.snapshot(&chunk.addr, &goal);
            if distinct >= replicas {
                return Ok(self.take_acks(&chunk.addr, &goal));
            }
            if Instant::now() >= deadline {
                return Err(FabricError::Quorum { addr: chunk.addr, got: distinct, want: replicas });
            }
            let slots = slots_to_publish(&claimed, replicas - distinct);
            // The body goes out again only after a retry time with slots left untaken (a failed
            // publish leaves them so; the broker may have lost it), never per round of slots,
            // which would send it once more for each excluded node that took a slot.
            if let Err(e) = self.publish_slots(&chunk, &slots, (attempt, body), lease).await {
                tracing::warn!(addr = ?chunk.addr, error = %e, "publishing store request failed; retrying");
                // After a broker restart the in-memory work queue is gone: re-create it.
                if let Err(e) = ensure_streams(&self.js, &self.opts.layout).await.map(drop) {
                    tracing::debug!(error = %e, "re-creating streams failed");
                }
            }
            attempt += 1;
            let retry_at = (Instant::now() + self.opts.retry_after).min(deadline);
            loop {
                let (distinct, claimed) = self.snapshot(&chunk.addr, &goal);
                // Done, or every slot just published was taken (some by excluded nodes, whose acks
                // do not count): publish the next slots now rather than at the retry time.
                if distinct >= replicas || slots.iter().all(|s| claimed.contains(s)) {
                    // Nodes just took every slot, so they fetched the body: it is on the broker.
                    body = Body::OnBroker;
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep_until(retry_at.into()) => { body = Body::Publish; break },
                    r = rx.changed() => if r.is_err() { body = Body::Publish; break },
                }
            }
        }
    }

    /// Distinct nodes counting toward `goal` (held replicas plus acks from nodes neither held
    /// nor excluded) and every slot claimed so far (held, acked or taken by an excluded node).
    fn snapshot(&self, addr: &Addr, goal: &StoreGoal<'_>) -> (usize, HashSet<u8>) {
        let map = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        progress(goal, map.get(addr).map(|p| &p.tally))
    }

    /// The acks that count toward `goal` and are not for replicas it already held.
    fn take_acks(&self, addr: &Addr, goal: &StoreGoal<'_>) -> Vec<StoreAck> {
        let map = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        map.get(addr).map(|p| p.tally.counted(goal)).unwrap_or_default()
    }

    fn proven_request(
        &self,
        purpose: Purpose,
        target: NodeId,
        items: &[(Addr, ProofSecret)],
        lease: u64,
    ) -> ProvenRequest {
        ProvenRequest::build(purpose, target, self.clocks.stamp(&target), lease, items)
    }

    /// Sends one get request and collects verified chunks until every addr is answered, the
    /// node falls silent for `reply_timeout`, or it answers "stale" (then at once).
    async fn get_from(
        &self,
        target: NodeId,
        items: &[(Addr, ProofSecret)],
    ) -> Result<Vec<(Addr, bytes::Bytes)>, FabricError> {
        let sent = now_ms();
        let req = self.proven_request(Purpose::Get, target, items, 0);
        let subject =
            if target == NodeId::ANY { BROADCAST_GET.to_string() } else { node_subject(&target, "get") };
        let inbox = self.client.new_inbox();
        let mut sub = self.client.subscribe(inbox.clone()).await.map_err(broker)?;
        self.client.publish_with_reply(subject, inbox, req.encode().into()).await.map_err(broker)?;
        let mut replies = GetReplies::new(target, items.iter().map(|(a, _)| *a));
        while !replies.complete() {
            let msg = match tokio::time::timeout(self.opts.reply_timeout, sub.next()).await {
                Ok(Some(m)) => m,
                _ => {
                    if target != NodeId::ANY {
                        self.clocks.timed_out();
                    }
                    break;
                }
            };
            if msg.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
                tracing::debug!(node = ?target, "no node listening; not waiting for it");
                break;
            }
            if self.clocks.stale(&target, &req.request_id, (req.timestamp_ms, sent), &msg.payload) {
                break;
            }
            replies.offer(&msg.payload);
        }
        let _ = sub.unsubscribe().await;
        let found = replies.into_found();
        if !found.is_empty() {
            self.clocks.answered(&target);
        }
        Ok(found)
    }

    async fn request(
        &self,
        subject: String,
        payload: Vec<u8>,
        node: NodeId,
    ) -> Result<bytes::Bytes, FabricError> {
        let req = async_nats::Request::new().payload(payload.into()).timeout(Some(self.opts.reply_timeout));
        match self.client.send_request(subject, req).await {
            Ok(m) => Ok(m.payload),
            Err(e) => match e.kind() {
                async_nats::RequestErrorKind::TimedOut | async_nats::RequestErrorKind::NoResponders => {
                    Err(FabricError::Timeout(node))
                }
                _ => Err(broker(e)),
            },
        }
    }

    async fn control(
        &self,
        purpose: Purpose,
        node: NodeId,
        items: &[(Addr, ProofSecret)],
        lease: u64,
    ) -> Result<Vec<(Addr, Status)>, FabricError> {
        let mut out = Vec::with_capacity(items.len());
        // The owner's secrets carry control secrets: renew and delete are proven with them (a
        // share's secrets carry none; nodes then apply the legacy rule or refuse).
        let proving = Proving::of(items);
        let op = if purpose == Purpose::Renew { "renew" } else { "delete" };
        for batch in items.chunks(proving.batch()) {
            let (bytes, sent) = self
                .ask(node, op, |ts| {
                    let sent = ControlSent::build(proving, purpose, node, ts, lease, batch);
                    (sent.bytes.clone(), sent.request_id(), sent)
                })
                .await?;
            out.extend(check_control(&bytes, node, &sent)?);
        }
        Ok(out)
    }
}

impl Drop for NatsFabric {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn ack_loop(
    consumer: consumer::PullConsumer,
    pending: PendingMap,
    unsolicited: Option<mpsc::Sender<StoreAck>>,
    cancel: CancellationToken,
) {
    while !cancel.is_cancelled() {
        let mut messages = match consumer.messages().await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read store acks; retrying");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        loop {
            let msg = tokio::select! {
                _ = cancel.cancelled() => return,
                m = messages.next() => match m { Some(Ok(m)) => m, Some(Err(_)) => continue, None => break },
            };
            match StoreAck::decode(&msg.payload) {
                Ok(ack) => deliver(&pending, &unsolicited, ack).await,
                Err(e) => tracing::warn!(error = %e, "malformed store ack dropped"),
            }
            if let Err(e) = msg.ack().await {
                tracing::debug!(error = %e, "acknowledging a store ack failed");
            }
        }
    }
}

/// Records a verified ack for a chunk being stored; acks for other chunks go to `unsolicited`
/// unverified (the receiver checks them against the commitment it recorded).
async fn deliver(pending: &PendingMap, unsolicited: &Option<mpsc::Sender<StoreAck>>, ack: StoreAck) {
    {
        let mut map = pending.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = map.get_mut(&ack.addr) {
            if p.tally.accept(ack) {
                p.changed.send_replace(p.tally.len());
            }
            return;
        }
    }
    if let Some(tx) = unsolicited {
        let _ = tx.send(ack).await;
    }
}

impl ChunkFabric for NatsFabric {
    async fn houses(&self) -> Result<Vec<crate::domain::placement::HouseListing>, FabricError> {
        super::houses::fetch(&self.client, self.opts.reply_timeout).await
    }

    fn clocks(&self) -> crate::ports::fabric::ClockReport {
        self.clocks.report()
    }

    fn link(&self) -> crate::ports::fabric::Link {
        let (connected, since_ms) = self.link.now();
        crate::ports::fabric::Link { connected, since_ms }
    }

    async fn up_within(&self, within: Duration) -> bool {
        self.link.up_within(within).await
    }

    async fn publish_root(&self, locator: &str, record: &[u8]) -> Result<(), FabricError> {
        ensure_root_stream(&self.js, &self.opts.layout).await?;
        let ack = self.js.publish(root_subject(locator), record.to_vec().into()).await.map_err(broker)?;
        ack.await.map_err(broker)?;
        Ok(())
    }

    async fn lease(&self, locator: &str) -> Result<Option<LeaseHeld>, FabricError> {
        let stream = ensure_lease_stream(&self.js, &self.opts.layout).await?;
        match stream.get_last_raw_message_by_subject(&lease_subject(locator)).await {
            Ok(m) => Ok(Some(LeaseHeld { revision: m.sequence, record: m.payload.to_vec() })),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(FabricError::Broker(format!("reading the writer lease: {e}"))),
        }
    }

    async fn swap_lease(&self, locator: &str, record: &[u8], expect: u64) -> Result<LeaseSwap, FabricError> {
        ensure_lease_stream(&self.js, &self.opts.layout).await?;
        let msg =
            PublishMessage::build().payload(record.to_vec().into()).expected_last_subject_sequence(expect);
        let ack = self.js.send_publish(lease_subject(locator), msg).await.map_err(broker)?;
        match ack.await {
            Ok(a) => Ok(LeaseSwap::Swapped(a.sequence)),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Ok(LeaseSwap::Conflict),
            Err(e) => Err(FabricError::Broker(format!("swapping the writer lease: {e}"))),
        }
    }

    async fn fetch_roots(&self, locator: &str) -> Result<RootsServed, FabricError> {
        let mut served = vec![("the broker".to_string(), self.broker_roots(locator).await?)];
        served.extend(self.node_roots(locator).await?);
        Ok(served)
    }

    async fn store(&self, chunk: Publish<'_>, goal: StoreGoal<'_>) -> Result<Vec<StoreAck>, FabricError> {
        self.store_controlled(chunk, None, goal).await
    }

    async fn store_controlled(
        &self,
        chunk: Publish<'_>,
        control: Option<Commitment>,
        goal: StoreGoal<'_>,
    ) -> Result<Vec<StoreAck>, FabricError> {
        let _slot = self.store_slots.acquire().await.map_err(broker)?;
        let since_ms = now_ms();
        let lease = since_ms + self.opts.lease.as_millis() as u64;
        let rx = {
            let mut map = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            let p = map.entry(chunk.addr).or_insert_with(|| Pending {
                tally: AckTally::new(StoreTerms {
                    commitment: chunk.commitment,
                    control,
                    since_ms,
                    min_lease_ms: lease,
                }),
                changed: watch::channel(0).0,
                users: 0,
                body_published: false,
            });
            p.users += 1;
            p.changed.subscribe()
        };
        let result = self.store_inner(chunk, goal, lease, rx).await;
        let withdraw = {
            let mut map = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            let last = map.get_mut(&chunk.addr).is_some_and(|p| {
                p.users -= 1;
                p.users == 0
            });
            last && map.remove(&chunk.addr).is_some_and(|p| p.body_published)
        };
        // Durable, or given up on (the uploader re-publishes it later): either way no node
        // needs the body now, and it would hold broker memory for an hour.
        if withdraw {
            self.withdraw_body(&chunk.addr).await;
        }
        result
    }

    async fn get(
        &self,
        items: &[(Addr, ProofSecret)],
        hints: &[NodeId],
    ) -> Result<Vec<(Addr, bytes::Bytes)>, FabricError> {
        let mut remaining: Vec<(Addr, ProofSecret)> = items.to_vec();
        let mut found = Vec::with_capacity(items.len());
        // A node whose clock cannot be matched now is passed over at once.
        let aimed = hints.iter().copied().filter(|n| self.clocks.aim(n) == Aim::Node);
        let targets = aimed.chain(std::iter::once(NodeId::ANY));
        for target in targets {
            if remaining.is_empty() {
                break;
            }
            for batch in remaining.clone().chunks(MAX_ITEMS) {
                match self.get_from(target, batch).await {
                    Ok(got) => found.extend(got),
                    Err(e) => tracing::warn!(node = ?target, error = %e, "get failed; trying elsewhere"),
                }
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
        let (bytes, req) = self
            .ask(node, "audit", |ts| {
                let req = AuditRequest::build(secret, node, addr, fresh_seed(), AUDIT_LEAVES, ts);
                (req.encode(), req.request_id, req)
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
            let (bytes, batch) = self
                .ask(node, "audits", |ts| {
                    let reqs: Vec<AuditRequest> = part
                        .iter()
                        .map(|(addr, secret, _)| {
                            AuditRequest::build(secret, node, *addr, fresh_seed(), AUDIT_LEAVES, ts)
                        })
                        .collect();
                    let first = reqs.first().map(|r| r.request_id).unwrap_or(RequestId([0; 16]));
                    let batch = AuditBatch(reqs);
                    (batch.encode(), first, batch)
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

    async fn delete(
        &self,
        node: NodeId,
        items: &[(Addr, ProofSecret)],
    ) -> Result<Vec<(Addr, Status)>, FabricError> {
        self.control(Purpose::Delete, node, items, 0).await
    }
}
