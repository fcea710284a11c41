//! The root records a storage node keeps: the newest validly signed one of every vault, read
//! from the root stream and served on `quloud.v1.roots.<locator>`.

use crate::adapters::nats::{ensure_root_stream, Layout};
use crate::app::node::{NodeService, Op};
use crate::ports::chunk_store::ChunkStore;
use crate::ports::fabric::FabricError;
use async_nats::jetstream;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Keeps the newest validly signed root record of every vault (read from the root stream with
/// this node's own durable consumer, so records published while it was down arrive later) and
/// answers `quloud.v1.roots.<locator>` with it: a second source, so a broker that loses or
/// withholds newer records is caught. Retries after broker trouble until cancelled.
pub(super) async fn roots_loop<S: ChunkStore>(
    svc: Arc<NodeService<S>>,
    client: async_nats::Client,
    js: jetstream::Context,
    layout: Layout,
    cancel: CancellationToken,
) {
    while !cancel.is_cancelled() {
        let served = tokio::select! {
            _ = cancel.cancelled() => break,
            r = serve_roots(&svc, &client, &js, &layout, &cancel) => r,
        };
        if let Err(e) = served {
            tracing::warn!(error = %e, "root record service interrupted; retrying in 2 s");
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

async fn serve_roots<S: ChunkStore>(
    svc: &Arc<NodeService<S>>,
    client: &async_nats::Client,
    js: &jetstream::Context,
    layout: &Layout,
    cancel: &CancellationToken,
) -> Result<(), FabricError> {
    let broker = |e: &dyn std::fmt::Display| FabricError::Broker(e.to_string());
    let stream = ensure_root_stream(js, layout).await?;
    let name = crate::adapters::nats::permissions::node_roots_consumer(&svc.node_id());
    let config = jetstream::consumer::pull::Config {
        durable_name: Some(name.clone()),
        deliver_policy: jetstream::consumer::DeliverPolicy::All,
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        inactive_threshold: Duration::from_secs(30 * 24 * 3600),
        ..Default::default()
    };
    let consumer = stream.get_or_create_consumer(&name, config).await.map_err(|e| broker(&e))?;
    let mut records = consumer.messages().await.map_err(|e| broker(&e))?;
    let mut requests = client.subscribe("quloud.v1.roots.*").await.map_err(|e| broker(&e))?;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            m = records.next() => {
                let m = match m {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => return Err(broker(&e)),
                    None => return Err(FabricError::Broker("root record feed ended".into())),
                };
                let locator = m.subject.rsplit('.').next().unwrap_or_default().to_string();
                let (worker, payload) = (svc.clone(), m.payload.clone());
                let _ = tokio::task::spawn_blocking(move || worker.keep_root(&locator, &payload)).await;
                let _ = m.ack().await;
            }
            r = requests.next() => {
                let Some(r) = r else { return Err(FabricError::Broker("subscription ended".into())) };
                let Some(reply) = r.reply else { continue };
                let started = std::time::Instant::now();
                let locator = r.subject.rsplit('.').next().unwrap_or_default().to_string();
                let worker = svc.clone();
                if let Ok(Some(record)) = tokio::task::spawn_blocking(move || worker.root(&locator)).await {
                    let mut out = svc.node_id().0.to_vec();
                    out.extend_from_slice(&record);
                    let _ = client.publish(reply, out.into()).await;
                }
                svc.stats.request(Op::Roots, started.elapsed());
            }
        }
    }
}
