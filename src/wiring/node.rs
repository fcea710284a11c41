//! `quloud node`: a storage node's disk store, service, metrics and NATS loop.

use super::common::{cancel_on_signal, start_metrics, Bus};
use super::files;
use super::keys::load_or_create_identity;
use crate::adapters::clock::SystemClock;
use crate::adapters::disk::DiskChunkStore;
use crate::adapters::metrics::node::NodeExporter;
use crate::adapters::nats::node::{run_node, NodeRunOptions};
use crate::app::node::{NodePolicy, NodeService};
use crate::app::rate::RateLimit;
use crate::cli::NodeArgs;
use crate::ports::clock::Clock;
use anyhow::{Context, Result};
use std::path::Path;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Runs a storage node until SIGINT or SIGTERM.
pub async fn node(args: NodeArgs, home: &Path) -> Result<()> {
    files::create_private_dir(&args.data)?;
    let key_file = args.key.clone().unwrap_or_else(|| args.data.join("node.key"));
    let id = load_or_create_identity(&key_file)?;
    let node_id = id.id();
    let store = DiskChunkStore::open(&args.data, id.clone(), args.capacity)
        .with_context(|| format!("cannot open the node's data directory {}", args.data.display()))?;
    let policy = NodePolicy {
        store_rate: RateLimit::per_second(args.store_rate),
        request_rate: RateLimit::per_second(args.request_rate),
        own_vaults: args.own_vaults.clone(),
        ..NodePolicy::default()
    };
    if args.test_clock_offset_ms != 0 {
        SystemClock::shift_process(args.test_clock_offset_ms);
        tracing::warn!(offset_ms = args.test_clock_offset_ms, "testing: this node's clock is shifted");
    }
    let svc = Arc::new(NodeService::new(id, Arc::new(store), policy, SystemClock.now_ms()));
    println!("node id: {node_id}");
    let cancel = CancellationToken::new();
    let metrics = match args.metrics.addr {
        Some(addr) => {
            let exporter = Arc::new(NodeExporter::new(svc.clone()));
            Some(start_metrics(addr, args.metrics.public, exporter, cancel.clone()).await?)
        }
        None => None,
    };
    tokio::spawn(cancel_on_signal(cancel.clone()));
    let bus = Bus::from_args(&args.nats, home)?;
    let mut opts = NodeRunOptions::new(bus.broker);
    opts.layout = bus.layout;
    opts.store_concurrency = args.store_concurrency.max(1);
    opts.sweep_interval = args.sweep_interval.max(std::time::Duration::from_millis(100));
    let outcome = run_node(svc, opts, cancel.clone()).await;
    cancel.cancel();
    if let Some(server) = metrics {
        let _ = server.await;
    }
    outcome?;
    Ok(())
}
