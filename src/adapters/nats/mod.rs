//! The fabric over NATS JetStream (DESIGN §5, docs/PROTOCOL.md): subjects, stream and consumer
//! layout, connecting, and the node-side and owner-side adapters.

pub mod connect;
pub mod fabric;
pub mod node;
pub mod permissions;

pub use connect::{connect, BrokerConfig};

use crate::domain::ids::{AckToken, NodeId};
use crate::domain::wire::MAX_MESSAGE;
use crate::ports::fabric::FabricError;
use async_nats::jetstream::{self, consumer, stream};
use std::time::Duration;

/// Subject of store requests (captured by the store stream).
pub const STORE_SUBJECT: &str = "quloud.v1.store";
/// Pull requests the store consumer keeps waiting: one per node, so the most nodes served.
pub const STORE_MAX_WAITING: i64 = 16_384;
/// Work-queue stream holding store requests.
pub const STORE_STREAM: &str = "QULOUD_STORE_V1";
/// The one durable pull consumer all storage nodes share.
pub const STORE_CONSUMER: &str = "quloud-nodes-v1";
/// Stream keeping signed store acks until their vault's owner collects them.
pub const ACK_STREAM: &str = "QULOUD_ACKS_V1";
/// Stream keeping each vault's signed root records (its recent history, per subject).
pub const ROOT_STREAM: &str = "QULOUD_ROOTS_V1";
/// Root records kept per vault: enough history to see a replayed older record for what it is.
pub const ROOTS_KEPT: i64 = 64;
/// Broadcast subject for get requests any holder may answer.
pub const BROADCAST_GET: &str = "quloud.v1.any.get";

/// The subject a vault's acks are published on.
pub fn ack_subject(token: &AckToken) -> String {
    format!("quloud.v1.ack.{token}")
}

/// The subject a vault's root records are published on (`locator` from the root key).
pub fn root_subject(locator: &str) -> String {
    format!("quloud.v1.root.{locator}")
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
    /// Bytes of pending store requests the broker may hold.
    pub store_max_bytes: i64,
    /// Keep pending store requests in broker memory rather than on its disk. The owner keeps
    /// every chunk staged until it is quorum-durable and re-publishes what is not acknowledged,
    /// so a broker restart loses no data, and the broker's disk is not written twice per replica.
    pub store_in_memory: bool,
}

impl Layout {
    /// Replicas of a stream created now.
    pub fn replicas(&self) -> usize {
        self.stream_replicas.unwrap_or(1)
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

fn store_stream_config(layout: &Layout) -> stream::Config {
    stream::Config {
        name: STORE_STREAM.into(),
        description: Some("Quloud store requests (one message per replica slot)".into()),
        subjects: vec![STORE_SUBJECT.into()],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: if layout.store_in_memory { stream::StorageType::Memory } else { stream::StorageType::File },
        discard: stream::DiscardPolicy::New,
        max_bytes: layout.store_max_bytes,
        max_age: Duration::from_secs(24 * 3600),
        max_message_size: MAX_MESSAGE as i32,
        duplicate_window: Duration::from_secs(120),
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

/// Creates the store and ack streams, or binds to them (idempotent; drift is logged).
pub async fn ensure_streams(
    js: &jetstream::Context,
    layout: &Layout,
) -> Result<(stream::Stream, stream::Stream), FabricError> {
    let store = ensure_stream(js, store_stream_config(layout), layout).await?;
    let acks = ensure_stream(js, ack_stream_config(layout), layout).await?;
    Ok((store, acks))
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
        // Every node keeps one pull waiting; the server's default of 512 would turn away the
        // pulls of a fabric with more nodes than that (docs/SCALE.md).
        max_waiting: STORE_MAX_WAITING,
        ..Default::default()
    };
    store.get_or_create_consumer(STORE_CONSUMER, config).await.map_err(broker("binding store consumer"))
}
