//! The storage node's metrics page and health check, read at scrape time from `NodeService`'s
//! `NodeStats` and its store's usage.

use super::page::{self, process_families, Buckets, Page};
use super::{now_ms, Exporter, MetricsError};
use crate::app::node::{NodeService, NodeStats, Op, Reason};
use crate::ports::chunk_store::{ChunkStore, Usage};
use prometheus_client::metrics::counter::ConstCounter;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Exports one node.
pub struct NodeExporter<S> {
    svc: Arc<NodeService<S>>,
}

impl<S> NodeExporter<S> {
    /// An exporter for `svc`.
    pub fn new(svc: Arc<NodeService<S>>) -> Self {
        NodeExporter { svc }
    }
}

impl<S: ChunkStore> Exporter for NodeExporter<S> {
    fn metrics(&self) -> Result<String, MetricsError> {
        let svc = self.svc.clone();
        Ok(page::render(move |p| {
            process_families(p, "node", svc.stats.started_ms, now_ms())?;
            let roots = svc.store().roots_held().ok();
            node_families(p, &svc.stats, &svc.store().usage(), roots)
        })?)
    }

    fn health(&self) -> Result<(), String> {
        self.svc.health()
    }
}

/// The node's families: `stats`, the store's `usage`, root records held (when readable).
pub fn node_families(p: &mut Page, stats: &NodeStats, usage: &Usage, roots: Option<u64>) -> fmt::Result {
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    p.gauge(
        "quloud_node_broker_connected",
        "1 while the node is connected to its NATS broker.",
        u32::from(stats.connected.load(Ordering::Relaxed)),
    )?;
    p.gauge("quloud_node_chunks", "Chunks held.", usage.chunks)?;
    p.gauge(
        "quloud_node_used_bytes",
        "Bytes charged against the capacity (chunk bodies and their at-rest overhead).",
        usage.used,
    )?;
    p.gauge("quloud_node_capacity_bytes", "The capacity limit (--capacity).", usage.capacity)?;
    if let Some(n) = roots {
        p.gauge("quloud_node_root_records", "Vaults whose root record this node keeps.", n)?;
    }
    p.counter("quloud_node_chunks_stored_total", "Chunks stored.", load(&stats.stored))?;
    p.counter(
        "quloud_node_chunks_served_total",
        "Chunks sent to a requester with a valid proof.",
        load(&stats.served),
    )?;
    p.counter(
        "quloud_node_audits_answered_total",
        "Audit challenges answered with a proof of storage.",
        load(&stats.audits),
    )?;
    p.counter(
        "quloud_node_chunks_expired_total",
        "Chunks deleted because their lease ended.",
        load(&stats.expired),
    )?;
    p.counter(
        "quloud_node_stale_answers_total",
        "Targeted requests outside the freshness window answered with this node's clock.",
        load(&stats.stale_answers),
    )?;
    p.counter(
        "quloud_node_store_declined_total",
        "Store requests left for another node (full, held for another slot or commitment, storage error).",
        load(&stats.declined),
    )?;
    p.counter(
        "quloud_node_messages_dropped_total",
        "Messages dropped (malformed, oversized, stale, replayed, misaddressed, unknown operation, bad signature).",
        load(&stats.dropped),
    )?;
    p.counter(
        "quloud_node_items_refused_total",
        "Requested items refused: the proof did not verify or the chunk is not held.",
        load(&stats.refused),
    )?;
    p.counter(
        "quloud_node_items_not_held_total",
        "Requested items for chunks this node does not hold (part of items_refused).",
        load(&stats.not_held),
    )?;
    p.by(
        "quloud_node_refusals_total",
        "Messages dropped, store requests declined and items refused, by reason.",
        "reason",
        Reason::ALL.map(|r| (r.name(), ConstCounter::new(stats.refusals(r)))),
    )?;
    p.by(
        "quloud_node_requests_total",
        "Requests handled, by operation, whatever the outcome.",
        "op",
        Op::ALL.map(|op| (op.name(), ConstCounter::new(stats.requests(op)))),
    )?;
    p.by(
        "quloud_node_request_duration_seconds",
        "Time to handle one request, from its arrival to the last reply sent, by operation.",
        "op",
        Op::ALL.map(|op| (op.name(), Buckets(stats.latency(op).snapshot()))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_node_page_has_every_family_and_its_values() {
        let stats = NodeStats::new(1_000);
        stats.stored.fetch_add(2, Ordering::Relaxed);
        stats.refuse_bad_proof();
        stats.drop_for(Reason::Malformed);
        stats.request(Op::Get, Duration::from_millis(3));
        let usage = Usage { used: 10, capacity: 100, chunks: 2 };
        let text = page::render(move |p| {
            process_families(p, "node", stats.started_ms, 3_000)?;
            node_families(p, &stats, &usage, Some(1))
        })
        .unwrap();
        for want in [
            "quloud_node_chunks 2\n",
            "quloud_node_used_bytes 10\n",
            "quloud_node_capacity_bytes 100\n",
            "quloud_node_chunks_stored_total 2\n",
            "quloud_node_items_refused_total 1\n",
            "quloud_node_messages_dropped_total 1\n",
            "quloud_node_refusals_total{reason=\"bad_proof\"} 1\n",
            "quloud_node_refusals_total{reason=\"malformed\"} 1\n",
            "quloud_node_refusals_total{reason=\"rate_limited\"} 0\n",
            "quloud_node_requests_total{op=\"get\"} 1\n",
            "quloud_node_requests_total{op=\"roots\"} 0\n",
            "quloud_node_request_duration_seconds_bucket{op=\"get\",le=\"0.005\"} 1\n",
            "quloud_node_request_duration_seconds_bucket{op=\"get\",le=\"0.0025\"} 0\n",
            "quloud_node_request_duration_seconds_count{op=\"get\"} 1\n",
            "quloud_node_broker_connected 0\n",
            "quloud_node_root_records 1\n",
            "quloud_uptime_seconds 2.0\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        // Every family is declared once, before its samples.
        let types = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        let helps = text.lines().filter(|l| l.starts_with("# HELP ")).count();
        assert_eq!(types, helps);
    }
}
