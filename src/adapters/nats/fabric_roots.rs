//! Root records as the owner finds them: the broker's history under a locator, and what the
//! storage nodes that keep one answer.

use super::{broker, NatsFabric};
use crate::adapters::nats::{ensure_root_stream, root_subject, roots_request_subject};
use crate::domain::snapshot::MAX_ROOT_RECORD;
use crate::ports::fabric::{FabricError, RootsServed};
use async_nats::jetstream::consumer;
use futures::StreamExt;
use std::time::Duration;

impl NatsFabric {
    /// The broker's history of root records under `locator`, oldest first.
    pub(super) async fn broker_roots(&self, locator: &str) -> Result<Vec<Vec<u8>>, FabricError> {
        let stream = ensure_root_stream(&self.js, &self.opts.layout).await?;
        let config = consumer::pull::Config {
            filter_subject: root_subject(locator),
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(60),
            ..Default::default()
        };
        let mut c = stream.create_consumer(config).await.map_err(broker)?;
        let pending = c.info().await.map_err(broker)?.num_pending as usize;
        let mut out = Vec::with_capacity(pending);
        if pending > 0 {
            let mut batch = c
                .fetch()
                .max_messages(pending)
                .expires(Duration::from_secs(5))
                .messages()
                .await
                .map_err(broker)?;
            while let Some(m) = batch.next().await {
                let m = m.map_err(broker)?;
                if m.payload.len() <= MAX_ROOT_RECORD {
                    out.push(m.payload.to_vec());
                }
                if out.len() >= pending {
                    break;
                }
            }
        }
        let _ = stream.delete_consumer(&c.cached_info().name).await;
        Ok(out)
    }
}

impl NatsFabric {
    /// The root records storage nodes keep under `locator`: every node that holds one answers;
    /// collected for up to a second (300 ms after the last answer).
    pub(super) async fn node_roots(&self, locator: &str) -> Result<RootsServed, FabricError> {
        let inbox = self.client.new_inbox();
        let mut sub = self.client.subscribe(inbox.clone()).await.map_err(broker)?;
        self.client
            .publish_with_reply(roots_request_subject(locator), inbox, bytes::Bytes::new())
            .await
            .map_err(broker)?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        let mut out = Vec::new();
        loop {
            let quiet = if out.is_empty() {
                deadline
            } else {
                tokio::time::Instant::now() + Duration::from_millis(300)
            };
            match tokio::time::timeout_at(quiet.min(deadline), sub.next()).await {
                Ok(Some(m)) if m.payload.len() > 32 && m.payload.len() <= 32 + MAX_ROOT_RECORD => {
                    let node = crate::domain::ids::to_hex(&m.payload[..6]);
                    out.push((format!("node {node}…"), vec![m.payload[32..].to_vec()]));
                }
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        let _ = sub.unsubscribe().await;
        Ok(out)
    }
}
