//! Storage node side of the NATS fabric: pulls store requests from the shared work-queue
//! consumer and answers proof-gated requests on its own subject and on the broadcast subject.

use super::{
    ack_subject, body_subject, connect, ensure_streams, store_consumer, BrokerConfig, Layout, BROADCAST_GET,
};
use crate::app::node::{
    Claim, ClaimedSlot, NodeService, Op, ProvenOutcome, Reason, Route, StoreDecision, HELD_NOW, OWN_HOUSE,
    RATE_LIMITED,
};
use crate::domain::proof::Purpose;
use crate::ports::chunk_store::ChunkStore;
use crate::ports::clock::Clock;
use crate::ports::fabric::FabricError;
use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

#[path = "node_roots.rs"]
mod roots;

/// How a node runs.
#[derive(Clone, Debug)]
pub struct NodeRunOptions {
    /// Broker servers, TLS and credentials.
    pub broker: BrokerConfig,
    /// Stream layout.
    pub layout: Layout,
    /// Store requests processed at once.
    pub store_concurrency: usize,
    /// Other requests processed at once.
    pub request_concurrency: usize,
    /// How often expired leases are swept.
    pub sweep_interval: Duration,
}

impl NodeRunOptions {
    /// Defaults for `broker` (a URL, a comma-separated list, or a full `BrokerConfig`).
    pub fn new(broker: impl Into<BrokerConfig>) -> Self {
        NodeRunOptions {
            broker: broker.into(),
            layout: Layout::default(),
            store_concurrency: 8,
            request_concurrency: 8,
            sweep_interval: Duration::from_secs(60),
        }
    }
}

/// Requests a node buffers per subscription while its handlers are busy (beyond that the client
/// drops them as a slow consumer): at most 256 MiB even if every one were a 1 MiB message.
pub const NODE_SUBSCRIPTION_CAPACITY: usize = 256;

fn now_ms() -> u64 {
    crate::adapters::clock::SystemClock.now_ms()
}

/// Runs a node until `cancel` fires. Returns an error when the broker cannot be reached.
pub async fn run_node<S: ChunkStore>(
    svc: Arc<NodeService<S>>,
    opts: NodeRunOptions,
    cancel: CancellationToken,
) -> Result<(), FabricError> {
    let mut broker = opts.broker.clone();
    broker.inbox_prefix.get_or_insert_with(|| super::permissions::node_inbox(&svc.node_id()));
    broker.subscription_capacity.get_or_insert(NODE_SUBSCRIPTION_CAPACITY);
    let name = format!("quloud-node-{}", svc.node_id());
    let (client, violations, _) = tokio::select! {
        c = connect(&broker, &name) => c?,
        _ = cancel.cancelled() => return Ok(()),
    };
    let js = super::connect::jetstream(&broker, client.clone());
    let setup = async {
        let store = bind_store_consumer(&js, &opts.layout, &cancel).await?;
        let own = client
            .subscribe(format!("quloud.v1.node.{}.>", svc.node_id()))
            .await
            .map_err(|e| FabricError::Broker(e.to_string()))?;
        let broadcast =
            client.subscribe(BROADCAST_GET).await.map_err(|e| FabricError::Broker(e.to_string()))?;
        client.flush().await.map_err(|e| FabricError::Broker(e.to_string()))?;
        Ok::<_, FabricError>((store, own, broadcast))
    };
    // A user without the subjects a node needs: say so now rather than retry for a minute.
    let (store, own, broadcast) = tokio::select! {
        ready = setup => ready?,
        v = violations.first() => return Err(broker.lacks_permission(v, "node")),
        _ = cancel.cancelled() => return Ok(()),
    };
    if let Some(v) = violations.last() {
        return Err(broker.lacks_permission(v, "node"));
    }
    svc.stats.connected.store(true, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(node = %svc.node_id(), servers = %opts.broker.display(), "storage node serving");

    let mut tasks = JoinSet::new();
    let layout = opts.layout.clone();
    tasks.spawn(store_loop(svc.clone(), store, js.clone(), layout, opts.store_concurrency, cancel.clone()));
    let limit = Arc::new(Semaphore::new(opts.request_concurrency));
    tasks.spawn(request_loop(
        svc.clone(),
        client.clone(),
        own,
        Route::Targeted,
        limit.clone(),
        cancel.clone(),
    ));
    tasks.spawn(request_loop(
        svc.clone(),
        client.clone(),
        broadcast,
        Route::Broadcast,
        limit,
        cancel.clone(),
    ));
    tasks.spawn(sweep_loop(svc.clone(), opts.sweep_interval, cancel.clone()));
    tasks.spawn(roots::roots_loop(
        svc.clone(),
        client.clone(),
        js.clone(),
        opts.layout.clone(),
        cancel.clone(),
    ));
    tasks.spawn(watch_connection(svc.clone(), client.clone(), cancel.clone()));
    stop(&mut tasks, &client, &cancel).await;
    svc.stats.connected.store(false, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(node = %svc.node_id(), "storage node stopped");
    Ok(())
}

/// Longest a node's tasks get to finish after `cancel`, and longest it spends sending what its
/// client still buffers: a broker that is down must not keep a node from stopping.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Waits for the node's tasks until `cancel`, then at most [`SHUTDOWN_GRACE`] for them to end
/// (the rest are aborted: a JetStream request to a broker that is down only times out after
/// 10 s), and flushes the client only while it is connected (a flush waits for a connection).
async fn stop(tasks: &mut JoinSet<()>, client: &async_nats::Client, cancel: &CancellationToken) {
    {
        let all = async { while tasks.join_next().await.is_some() {} };
        tokio::pin!(all);
        tokio::select! {
            _ = &mut all => {}
            _ = cancel.cancelled() => {
                if tokio::time::timeout(SHUTDOWN_GRACE, &mut all).await.is_err() {
                    tracing::info!("node tasks still waiting on the broker at shutdown: stopped");
                }
            }
        }
    }
    tasks.abort_all();
    if client.connection_state() == async_nats::connection::State::Connected
        && tokio::time::timeout(SHUTDOWN_GRACE, client.flush()).await.is_err()
    {
        tracing::info!("could not flush the last replies to the broker at shutdown");
    }
}

/// How long one pull for a store request waits on the broker before it is renewed.
const PULL_EXPIRES: Duration = Duration::from_secs(2);

/// Pulls store requests one message per pull, with one pull outstanding per free handler slot.
///
/// One message per pull matters: the broker hands a message to the oldest waiting pull, and a
/// pull that still wants more stays in front. With batched pulls, a slot that every holder
/// declines bounced between the holders' half-filled pulls while the one node that could take it
/// kept renewing its pull at the back of the queue, until the owner re-published 10 s later. A
/// one-message pull leaves the queue when served, so a declined slot visits every node in turn.
async fn store_loop<S: ChunkStore>(
    svc: Arc<NodeService<S>>,
    mut store: StoreSide,
    js: jetstream::Context,
    layout: super::Layout,
    concurrency: usize,
    cancel: CancellationToken,
) {
    let limit = Arc::new(Semaphore::new(concurrency));
    let mut inflight = JoinSet::new();
    let idle_pulls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut last_check = std::time::Instant::now();
    while !cancel.is_cancelled() {
        // A broker restart loses the in-memory work queue and its consumer: when pulls come back
        // empty, check now and then that the consumer still exists and re-create it.
        if idle_pulls.swap(0, std::sync::atomic::Ordering::Relaxed) > 0
            && last_check.elapsed() > Duration::from_secs(5)
        {
            last_check = std::time::Instant::now();
            let gone = tokio::select! {
                _ = cancel.cancelled() => break,
                info = store.consumer.info() => info.is_err(),
            };
            if gone {
                let rebound = tokio::select! {
                    _ = cancel.cancelled() => break,
                    r = rebind(&js, &layout) => r,
                };
                match rebound {
                    Ok(c) => {
                        tracing::info!("store consumer re-created after a broker restart");
                        store = c;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "store consumer is gone and cannot be re-created yet")
                    }
                }
            }
        }
        while inflight.try_join_next().is_some() {}
        let permit = tokio::select! {
            _ = cancel.cancelled() => break,
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let (svc, js, consumer, bodies) =
            (svc.clone(), js.clone(), store.consumer.clone(), store.bodies.clone());
        let (cancel, idle) = (cancel.clone(), idle_pulls.clone());
        inflight.spawn(async move {
            let fetch = consumer.fetch().max_messages(1).expires(PULL_EXPIRES).messages();
            let mut batch = tokio::select! {
                _ = cancel.cancelled() => return,
                b = fetch => match b {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot pull store requests; retrying");
                        idle.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tokio::select! {
                            _ = cancel.cancelled() => {}
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                        return;
                    }
                },
            };
            let next = tokio::select! { _ = cancel.cancelled() => None, n = batch.next() => n };
            match next {
                Some(Ok(msg)) => handle_store_message(svc, js, bodies, msg).await,
                Some(Err(e)) => tracing::debug!(error = %e, "store pull hiccup"),
                None => {
                    idle.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            drop(permit);
        });
    }
    while inflight.join_next().await.is_some() {}
}

/// A new cluster may still be electing stream and consumer leaders when a node starts: JetStream
/// requests time out for a while. Keep trying for a minute (logging why) before giving up.
async fn bind_store_consumer(
    js: &jetstream::Context,
    layout: &super::Layout,
    cancel: &CancellationToken,
) -> Result<StoreSide, FabricError> {
    let started = std::time::Instant::now();
    loop {
        match rebind(js, layout).await {
            Ok(c) => return Ok(c),
            Err(e) if started.elapsed() < Duration::from_secs(60) && !cancel.is_cancelled() => {
                tracing::warn!(error = %e, "cannot bind the store stream yet (a cluster electing leaders?); retrying");
                tokio::select! {
                    _ = cancel.cancelled() => return Err(e),
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Where a node takes store requests from and fetches their bodies.
struct StoreSide {
    consumer: jetstream::consumer::PullConsumer,
    bodies: jetstream::stream::Stream,
}

async fn rebind(js: &jetstream::Context, layout: &super::Layout) -> Result<StoreSide, FabricError> {
    let streams = ensure_streams(js, layout).await?;
    Ok(StoreSide { consumer: store_consumer(&streams.store).await?, bodies: streams.bodies })
}

/// Keeps `stats.connected` in step with the broker connection (read by the health endpoint).
async fn watch_connection<S: ChunkStore>(
    svc: Arc<NodeService<S>>,
    client: async_nats::Client,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let up = client.connection_state() == async_nats::connection::State::Connected;
        svc.stats.connected.store(up, std::sync::atomic::Ordering::Relaxed);
    }
}

async fn handle_store_message<S: ChunkStore>(
    svc: Arc<NodeService<S>>,
    js: jetstream::Context,
    bodies: jetstream::stream::Stream,
    msg: jetstream::Message,
) {
    let started = std::time::Instant::now();
    store_message(&svc, js, bodies, msg).await;
    svc.stats.request(Op::Store, started.elapsed());
}

/// Deliveries of one store request whose body is missing before the request is dropped: the body
/// may lag on a cluster member that has not caught up yet; after that, the owner has withdrawn it
/// (the chunk is durable, or the owner re-publishes both later).
pub const BODY_MISSING_DELIVERIES: i64 = 5;

/// Deliveries of a slot this node declines because it holds the chunk for another slot before
/// it also re-sends the ack of the slot it holds. The owner normally has that ack already; a
/// slot that keeps coming back means every node may hold the chunk, and the owner must learn
/// of this holder to count it.
pub const HELD_ACK_AFTER: i64 = 3;

/// How long a slot this node passes on (it holds the chunk for another slot) waits before it is
/// offered again: at once the first time, so the next waiting pull (usually another node's)
/// takes it, then 2, 8 and 32 ms, and 100 ms from the fifth delivery on, for a slot no node can
/// take (fewer nodes than replicas).
pub fn pass_on(delivered: i64) -> Option<Duration> {
    match delivered {
        ..=1 => None,
        2..=4 => Some(Duration::from_millis(1 << (2 * delivered - 3))),
        _ => Some(Duration::from_millis(100)),
    }
}

/// Runs a blocking node handler; `None` (logged) if its thread panicked.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::error!(error = %e, "store handler failed");
            None
        }
    }
}

/// Fetches a claimed slot's body and stores it; `Err` carries the JetStream action when the body
/// could not be had.
async fn fetch_and_store<S: ChunkStore>(
    svc: &Arc<NodeService<S>>,
    bodies: &jetstream::stream::Stream,
    claimed: ClaimedSlot,
    delivered: i64,
) -> Result<StoreDecision, AckKind> {
    let addr = claimed.request.addr;
    tracing::debug!(?addr, slot = claimed.request.slot, delivered, "claimed; fetching the body");
    let body = match bodies.direct_get_last_for_subject(body_subject(&addr)).await {
        Ok(m) if !m.payload.is_empty() => m.payload,
        Ok(_) | Err(_) if delivered >= BODY_MISSING_DELIVERIES => {
            svc.stats.drop_for(Reason::NoBody);
            tracing::warn!(?addr, delivered, "store request whose body is gone: dropped");
            return Err(AckKind::Term);
        }
        Ok(_) => return Err(AckKind::Nak(Some(Duration::from_millis(500)))),
        Err(e) => {
            tracing::debug!(?addr, error = %e, "cannot fetch the body yet; will be redelivered");
            return Err(AckKind::Nak(Some(Duration::from_millis(500))));
        }
    };
    let worker = svc.clone();
    blocking(move || worker.store_body(claimed, &body, now_ms()))
        .await
        .ok_or(AckKind::Nak(Some(Duration::from_secs(1))))
}

async fn store_message<S: ChunkStore>(
    svc: &Arc<NodeService<S>>,
    js: jetstream::Context,
    bodies: jetstream::stream::Stream,
    msg: jetstream::Message,
) {
    let payload = msg.payload.clone();
    let worker = svc.clone();
    let started = std::time::Instant::now();
    let retry_later = AckKind::Nak(Some(Duration::from_secs(1)));
    let delivered = msg.info().map(|i| i.delivered).unwrap_or(1);
    let decided = match blocking(move || worker.claim_store(&payload, now_ms())).await {
        Some(Claim::Decided(d)) => Ok(d),
        Some(Claim::Fetch(claimed)) => fetch_and_store(svc, &bodies, claimed, delivered).await,
        None => Err(retry_later),
    };
    let decision = match decided {
        Ok(d) => d,
        Err(kind) => {
            if let Err(e) = msg.ack_with(kind).await {
                tracing::warn!(error = %e, "acknowledging store request failed");
            }
            return;
        }
    };
    let handled = started.elapsed();
    let outcome = match decision {
        StoreDecision::Stored(ack, token) | StoreDecision::AlreadyHeld(ack, token) => {
            // The signed ack must be durable in the ack stream before the request is acknowledged.
            let published = match js.publish(ack_subject(&token), ack.encode().into()).await {
                Ok(fut) => fut.await.map(|_| ()).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            tracing::debug!(?handled, total = ?started.elapsed(), addr = ?ack.addr, slot = ack.slot, "stored and acked");
            match published {
                Ok(()) => msg.ack().await,
                Err(e) => {
                    tracing::warn!(error = %e, "publishing store ack failed; will be redelivered");
                    msg.ack_with(AckKind::Nak(Some(Duration::from_millis(500)))).await
                }
            }
        }
        StoreDecision::Decline(why) => {
            tracing::debug!(why, "declining store request");
            // Over its rate, a vault's request waits a second (or goes to another node);
            // otherwise another node should take it at once.
            let pause = match why {
                RATE_LIMITED => Some(Duration::from_secs(1)),
                HELD_NOW | OWN_HOUSE => pass_on(delivered),
                _ => Some(Duration::from_millis(100)),
            };
            msg.ack_with(AckKind::Nak(pause)).await
        }
        StoreDecision::DeclineHeld(ack, token) => {
            // Once a slot keeps coming back, tell the owner about the copy held for another
            // slot (every node may hold the chunk already), then let another node take this
            // one. The ack is best effort: the nak happens either way.
            if delivered >= HELD_ACK_AFTER {
                match js.publish(ack_subject(&token), ack.encode().into()).await {
                    Ok(fut) => {
                        if let Err(e) = fut.await {
                            tracing::debug!(error = %e, "publishing the held slot's ack failed");
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "publishing the held slot's ack failed"),
                }
            }
            tracing::debug!(addr = ?ack.addr, slot = ack.slot, delivered, "declining: holds this chunk for another slot");
            msg.ack_with(AckKind::Nak(pass_on(delivered))).await
        }
        StoreDecision::Reject(_) => msg.ack_with(AckKind::Term).await,
    };
    if let Err(e) = outcome {
        tracing::warn!(error = %e, "acknowledging store request failed");
    }
}

async fn request_loop<S: ChunkStore>(
    svc: Arc<NodeService<S>>,
    client: async_nats::Client,
    mut sub: async_nats::Subscriber,
    route: Route,
    limit: Arc<Semaphore>,
    cancel: CancellationToken,
) {
    let mut inflight = JoinSet::new();
    loop {
        let msg = tokio::select! {
            _ = cancel.cancelled() => break,
            m = sub.next() => match m { Some(m) => m, None => break },
        };
        let Some(reply) = msg.reply.clone() else {
            tracing::debug!(subject = %msg.subject, "request without reply subject dropped");
            continue;
        };
        // The source is the client's inbox prefix (Quloud clients each have their own).
        let source = reply.split('.').next().unwrap_or_default();
        if !svc.admit_request(source.as_bytes(), msg.payload.len(), now_ms()) {
            tracing::debug!(
                source,
                len = msg.payload.len(),
                "oversized request, or over its source's rate: dropped"
            );
            continue;
        }
        let Ok(permit) = limit.clone().acquire_owned().await else { break };
        let (svc, client, source) = (svc.clone(), client.clone(), source.to_string());
        inflight.spawn(async move {
            let op = msg.subject.rsplit('.').next().unwrap_or("").to_string();
            let (started, counted) = (std::time::Instant::now(), op_of(&op));
            let request = Request { op, source, payload: msg.payload };
            answer(svc.clone(), client, request, reply, route).await;
            if let Some(op) = counted {
                svc.stats.request(op, started.elapsed());
            }
            drop(permit);
        });
        while inflight.try_join_next().is_some() {}
    }
    let _ = sub.unsubscribe().await;
    while inflight.join_next().await.is_some() {}
}

/// The operation a request subject names, for the counters (`None`: unknown).
fn op_of(op: &str) -> Option<Op> {
    match op {
        "get" => Some(Op::Get),
        "audit" | "audits" => Some(Op::Audit),
        "renew" => Some(Op::Renew),
        "delete" => Some(Op::Delete),
        _ => None,
    }
}

/// A request as the node's handlers take it: the operation its subject names, its source (reply
/// inbox prefix, which bounds its share of the replay memory) and its bytes.
struct Request {
    op: String,
    source: String,
    payload: bytes::Bytes,
}

async fn answer<S: ChunkStore>(
    svc: Arc<NodeService<S>>,
    client: async_nats::Client,
    request: Request,
    reply: async_nats::Subject,
    route: Route,
) {
    let worker = svc.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let Request { op, source, payload } = request;
        let source = source.as_bytes();
        let answer = handle(&worker, &op, source, &payload, route);
        // Dropped on this node's own subject: say so if only the clock was wrong.
        match answer {
            None if route == Route::Targeted => {
                worker.stale_answer(source, &payload, now_ms()).map(|r| Answer::Single(r.encode()))
            }
            answer => answer,
        }
    })
    .await;
    match outcome {
        Ok(Some(Answer::Single(bytes))) => {
            let _ = client.publish(reply, bytes.into()).await;
        }
        Ok(Some(Answer::Chunks(plan))) => {
            for (addr, proven) in plan {
                let worker = svc.clone();
                let r = tokio::task::spawn_blocking(move || worker.get_reply(addr, proven, route)).await;
                if let Ok(Some(r)) = r {
                    if let Err(e) = client.publish(reply.clone(), r.encode().into()).await {
                        tracing::warn!(error = %e, "sending chunk failed");
                        break;
                    }
                }
            }
        }
        Ok(None) => {}
        Err(e) => tracing::error!(error = %e, "request handler failed"),
    }
}

/// The node's answer to one request, `None` when it is dropped.
fn handle<S: ChunkStore>(
    worker: &NodeService<S>,
    op: &str,
    source: &[u8],
    payload: &[u8],
    route: Route,
) -> Option<Answer> {
    match op {
        "audit" if route == Route::Targeted => {
            worker.handle_audit_from(source, payload, now_ms()).map(|r| Answer::Single(r.encode()))
        }
        "audits" if route == Route::Targeted => {
            worker.handle_audit_batch_from(source, payload, now_ms()).map(|r| Answer::Single(r.encode()))
        }
        "get" | "renew" | "delete" => {
            match worker.handle_proven_from(source, payload, route, purpose_of(op), now_ms()) {
                ProvenOutcome::Silent => None,
                ProvenOutcome::Control(c) => Some(Answer::Single(c.encode())),
                ProvenOutcome::Get(plan) => Some(Answer::Chunks(plan)),
            }
        }
        other => {
            worker.stats.drop_for(Reason::UnknownOp);
            tracing::warn!(op = other, "request for unknown operation dropped");
            None
        }
    }
}

fn purpose_of(op: &str) -> Purpose {
    match op {
        "renew" => Purpose::Renew,
        "delete" => Purpose::Delete,
        _ => Purpose::Get,
    }
}

/// What a request handler sends back: one message, or one message per chunk.
enum Answer {
    Single(Vec<u8>),
    Chunks(Vec<(crate::domain::ids::Addr, bool)>),
}

async fn sweep_loop<S: ChunkStore>(svc: Arc<NodeService<S>>, every: Duration, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let worker = svc.clone();
        if let Ok(n) = tokio::task::spawn_blocking(move || worker.sweep_expired(now_ms())).await {
            if n > 0 {
                tracing::info!(dropped = n, "dropped chunks whose lease ended");
            }
        }
        let s = &svc.stats;
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        let usage = svc.store().usage();
        tracing::info!(
            stored = load(&s.stored),
            declined = load(&s.declined),
            dropped = load(&s.dropped),
            refused = load(&s.refused),
            served = load(&s.served),
            audits = load(&s.audits),
            rate_limited = s.refusals(Reason::RateLimited),
            chunks = usage.chunks,
            used = usage.used,
            capacity = usage.capacity,
            "node counters"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_declined_slot_is_passed_on_at_once_then_backs_off_to_100_ms() {
        let ms = |d| pass_on(d).map(|p| p.as_millis());
        assert_eq!(ms(0), None);
        assert_eq!(ms(1), None);
        assert_eq!([ms(2), ms(3), ms(4)], [Some(2), Some(8), Some(32)]);
        assert_eq!([ms(5), ms(200), ms(i64::MAX)], [Some(100); 3]);
    }
}
