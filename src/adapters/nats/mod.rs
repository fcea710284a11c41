//! The fabric over NATS JetStream (docs/DESIGN.md §5, docs/PROTOCOL.md): subjects, stream and consumer
//! layout, connecting, and the node-side and owner-side adapters.

pub mod connect;
pub mod fabric;
pub mod houses;
pub mod node;
pub mod permissions;

pub use connect::{connect, BrokerConfig};

use crate::domain::ids::{AckToken, Addr, NodeId};
use crate::domain::wire::MAX_CIPHERTEXT;
use crate::ports::fabric::FabricError;
use async_nats::jetstream::{self, consumer, stream};
use std::time::Duration;

/// Subject of store requests, one per replica slot (captured by the store stream).
pub const STORE_SUBJECT: &str = "quloud.v1.slot";
/// Pull requests the store consumer keeps waiting: each node keeps one per free handler slot
/// (`--store-concurrency`, default 8), so 2048 nodes at the default.
pub const STORE_MAX_WAITING: i64 = 16_384;
/// Work-queue stream holding store requests.
pub const STORE_STREAM: &str = "QULOUD_SLOTS_V1";
/// The one durable pull consumer all storage nodes share.
pub const STORE_CONSUMER: &str = "quloud-slots-v1";
/// Stream holding each pending chunk's ciphertext once, on its body subject, for whichever
/// nodes take its slots (read with direct gets).
pub const BODY_STREAM: &str = "QULOUD_BODIES_V1";
/// How long a store request or body waits on the broker for nodes. The owner keeps every chunk
/// staged until it is quorum-durable and publishes both again on its next attempt, so an hour
/// only bounds what an owner that went away leaves behind (and the empty tombstones).
pub const PENDING_MAX_AGE: Duration = Duration::from_secs(3600);

/// Most bytes of store requests the broker holds (each is `STORE_REQUEST_LEN` bytes plus
/// headers): 64 MiB is about 300 000 pending slots.
pub const STORE_MAX_BYTES: i64 = 64 << 20;
/// Largest message the store stream accepts, headers included: a `STORE_REQUEST_LEN`-byte
/// request with its message-id header fits several times over.
pub const STORE_MESSAGE_MAX: usize = 1024;
/// Stream keeping signed store acks until their vault's owner collects them.
pub const ACK_STREAM: &str = "QULOUD_ACKS_V1";
/// Stream keeping each vault's signed root records (its recent history, per subject).
pub const ROOT_STREAM: &str = "QULOUD_ROOTS_V1";
/// Root records kept per vault: enough history to see a replayed older record for what it is.
pub const ROOTS_KEPT: i64 = 64;
/// Stream keeping each vault's writer lease; the owner swaps it with an expected last
/// subject sequence, so the broker serialises take-overs.
pub const LEASE_STREAM: &str = "QULOUD_LEASES_V1";
/// Lease records kept per vault (the newest is the lease; the rest is its recent history).
pub const LEASES_KEPT: i64 = 16;
/// Broadcast subject for get requests any holder may answer.
pub const BROADCAST_GET: &str = "quloud.v1.any.get";
/// The hub's membership service answers requests for its list of house certificates here.
pub const HOUSES_SUBJECT: &str = "quloud.v1.hub.houses";
/// Largest answer read on `HOUSES_SUBJECT` (a listing is ~300 bytes).
pub const MAX_HOUSES_REPLY: usize = 1 << 20;

/// The subject a pending chunk's ciphertext is published on, raw, once for all its slots.
pub fn body_subject(addr: &Addr) -> String {
    format!("quloud.v1.body.{addr}")
}

/// The subject a vault's acks are published on.
pub fn ack_subject(token: &AckToken) -> String {
    format!("quloud.v1.ack.{token}")
}

/// The subject a vault's root records are published on (`locator` from the root key).
pub fn root_subject(locator: &str) -> String {
    format!("quloud.v1.root.{locator}")
}

/// The subject a vault's writer lease is published on.
pub fn lease_subject(locator: &str) -> String {
    format!("quloud.v1.lease.{locator}")
}

/// The subject on which storage nodes answer with the root record they keep for `locator`
/// (every node keeps the newest validly signed record of every vault).
pub fn roots_request_subject(locator: &str) -> String {
    format!("quloud.v1.roots.{locator}")
}

/// A node's request subject for `op` (`get`, `audit`, `renew`, `delete`).
pub fn node_subject(node: &NodeId, op: &str) -> String {
    format!("quloud.v1.node.{node}.{op}")
}

/// How streams are laid out on the broker.
#[derive(Clone, Debug)]
pub struct Layout {
    /// JetStream replicas of each stream this process creates: 1 on one server, 3 on a cluster.
    /// `None`: create with 1 and accept whatever count an existing stream has. Consumers always
    /// inherit their stream's count.
    pub stream_replicas: Option<usize>,
    /// Bytes of pending store requests and chunk bodies the broker may hold together: a
    /// sixteenth (at most `STORE_MAX_BYTES`) for the requests, the rest for the bodies.
    pub store_max_bytes: i64,
    /// Keep pending store requests and bodies in broker memory rather than on its disk. The
    /// owner keeps every chunk staged until it is quorum-durable and re-publishes what is not
    /// acknowledged, so a broker restart loses no data, and the broker's disk is not written.
    pub store_in_memory: bool,
}

impl Layout {
    /// Replicas of a stream created now.
    pub fn replicas(&self) -> usize {
        self.stream_replicas.unwrap_or(1)
    }

    /// The store stream's share of `store_max_bytes`.
    fn slot_bytes(&self) -> i64 {
        (self.store_max_bytes / 16).min(STORE_MAX_BYTES)
    }

    /// The body stream's share of `store_max_bytes`.
    fn body_bytes(&self) -> i64 {
        self.store_max_bytes - self.slot_bytes()
    }
}

impl Default for Layout {
    fn default() -> Self {
        Layout { stream_replicas: None, store_max_bytes: 1 << 30, store_in_memory: true }
    }
}

fn broker<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> FabricError {
    move |e| FabricError::Broker(format!("{what}: {e}"))
}

fn pending_storage(layout: &Layout) -> stream::StorageType {
    if layout.store_in_memory {
        stream::StorageType::Memory
    } else {
        stream::StorageType::File
    }
}

fn store_stream_config(layout: &Layout) -> stream::Config {
    stream::Config {
        name: STORE_STREAM.into(),
        description: Some("Quloud store requests (one small message per replica slot)".into()),
        subjects: vec![STORE_SUBJECT.into()],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: pending_storage(layout),
        discard: stream::DiscardPolicy::New,
        max_bytes: layout.slot_bytes(),
        max_age: PENDING_MAX_AGE,
        max_message_size: STORE_MESSAGE_MAX as i32,
        duplicate_window: Duration::from_secs(120),
        num_replicas: layout.replicas(),
        ..Default::default()
    }
}

fn body_stream_config(layout: &Layout) -> stream::Config {
    stream::Config {
        name: BODY_STREAM.into(),
        description: Some("Quloud pending chunk ciphertexts, one per body subject".into()),
        subjects: vec!["quloud.v1.body.*".into()],
        retention: stream::RetentionPolicy::Limits,
        storage: pending_storage(layout),
        discard: stream::DiscardPolicy::New,
        max_bytes: layout.body_bytes(),
        max_age: PENDING_MAX_AGE,
        // A re-publish (or the owner's empty tombstone once the chunk is durable) replaces it.
        max_messages_per_subject: 1,
        max_message_size: MAX_CIPHERTEXT as i32,
        allow_direct: true,
        num_replicas: layout.replicas(),
        ..Default::default()
    }
}

fn ack_stream_config(layout: &Layout) -> stream::Config {
    stream::Config {
        name: ACK_STREAM.into(),
        description: Some("Quloud signed store acks, per vault subject".into()),
        subjects: vec!["quloud.v1.ack.*".into()],
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        max_age: Duration::from_secs(14 * 24 * 3600),
        max_message_size: 1024,
        num_replicas: layout.replicas(),
        ..Default::default()
    }
}

fn root_stream_config(layout: &Layout) -> stream::Config {
    stream::Config {
        name: ROOT_STREAM.into(),
        description: Some("Quloud signed root records, per vault subject".into()),
        subjects: vec!["quloud.v1.root.*".into()],
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        max_messages_per_subject: ROOTS_KEPT,
        max_message_size: crate::domain::snapshot::MAX_ROOT_RECORD as i32,
        num_replicas: layout.replicas(),
        ..Default::default()
    }
}

fn lease_stream_config(layout: &Layout) -> stream::Config {
    stream::Config {
        name: LEASE_STREAM.into(),
        description: Some("Quloud writer leases, per vault subject".into()),
        subjects: vec!["quloud.v1.lease.*".into()],
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        max_messages_per_subject: LEASES_KEPT,
        max_message_size: 1024,
        num_replicas: layout.replicas(),
        ..Default::default()
    }
}

/// Creates the writer lease stream, or binds to it.
pub async fn ensure_lease_stream(
    js: &jetstream::Context,
    layout: &Layout,
) -> Result<stream::Stream, FabricError> {
    ensure_stream(js, lease_stream_config(layout), layout).await
}

/// Creates the root record stream, or binds to it.
pub async fn ensure_root_stream(
    js: &jetstream::Context,
    layout: &Layout,
) -> Result<stream::Stream, FabricError> {
    ensure_stream(js, root_stream_config(layout), layout).await
}

async fn ensure_stream(
    js: &jetstream::Context,
    want: stream::Config,
    layout: &Layout,
) -> Result<stream::Stream, FabricError> {
    let name = want.name.clone();
    let mut s = match js.get_stream(&name).await {
        Ok(s) => s,
        Err(_) => match js.create_stream(want.clone()).await {
            Ok(s) => s,
            // Another process created it first: bind to theirs.
            Err(_) => js.get_stream(&name).await.map_err(broker("binding stream"))?,
        },
    };
    let have = s.info().await.map_err(broker("reading stream info"))?.config.clone();
    let drift = [
        (have.subjects != want.subjects, "subjects"),
        (have.retention != want.retention, "retention"),
        (have.storage != want.storage, "storage"),
        (layout.stream_replicas.is_some_and(|r| r != have.num_replicas), "replicas"),
        (have.max_message_size < want.max_message_size, "max message size"),
        (
            want.max_messages_per_subject > 0
                && have.max_messages_per_subject != want.max_messages_per_subject,
            "max messages per subject",
        ),
        (have.allow_direct != want.allow_direct, "direct get"),
    ];
    for (differs, what) in drift {
        if differs {
            tracing::warn!(stream = %name, setting = what,
                "existing stream differs from this version's layout; keeping it. \
                 To adopt the new layout, delete the stream when no uploads are pending (nats stream rm {name})");
        }
    }
    Ok(s)
}

/// Quloud's always-present streams, bound.
pub struct Streams {
    /// The work queue of store requests.
    pub store: stream::Stream,
    /// Pending chunk bodies.
    pub bodies: stream::Stream,
    /// Signed store acks.
    pub acks: stream::Stream,
}

/// Creates the store, body and ack streams, or binds to them (idempotent; drift is logged).
pub async fn ensure_streams(js: &jetstream::Context, layout: &Layout) -> Result<Streams, FabricError> {
    let store = ensure_stream(js, store_stream_config(layout), layout).await?;
    let bodies = ensure_stream(js, body_stream_config(layout), layout).await?;
    let acks = ensure_stream(js, ack_stream_config(layout), layout).await?;
    Ok(Streams { store, bodies, acks })
}

/// The shared durable consumer storage nodes pull store requests from.
pub async fn store_consumer(store: &stream::Stream) -> Result<consumer::PullConsumer, FabricError> {
    let config = consumer::pull::Config {
        durable_name: Some(STORE_CONSUMER.into()),
        description: Some("all Quloud storage nodes".into()),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: Duration::from_secs(30),
        max_deliver: 200,
        max_ack_pending: 4096,
        // Every node keeps a pull waiting per free handler; the server's default of 512 would
        // turn away the pulls of a fabric with more than 64 nodes (docs/SCALE.md).
        max_waiting: STORE_MAX_WAITING,
        ..Default::default()
    };
    store.get_or_create_consumer(STORE_CONSUMER, config).await.map_err(broker("binding store consumer"))
}
