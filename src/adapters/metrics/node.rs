//! The storage node's metrics page and health check, read from `NodeService`'s `NodeStats` and
//! its store's usage.

use super::text::{process_families, Exposition, Kind};
use super::{now_ms, Exporter};
use crate::app::node::{NodeService, NodeStats, Op, Reason};
use crate::ports::chunk_store::{ChunkStore, Usage};
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
    fn metrics(&self) -> String {
        let roots = self.svc.store().roots_held().ok();
        render(&self.svc.stats, &self.svc.store().usage(), roots, now_ms())
    }

    fn health(&self) -> Result<(), String> {
        self.svc.health()
    }
}

/// The node's page: `stats`, the store's `usage`, root records held (when readable) at `now_ms`.
pub fn render(stats: &NodeStats, usage: &Usage, roots: Option<u64>, now_ms: u64) -> String {
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed) as f64;
    let mut p = Exposition::new();
    process_families(&mut p, "node", stats.started_ms, now_ms);
    p.single(
        "quloud_node_broker_connected",
        Kind::Gauge,
        "1 while the node is connected to its NATS broker.",
        f64::from(u8::from(stats.connected.load(Ordering::Relaxed))),
    );
    p.single("quloud_node_chunks", Kind::Gauge, "Chunks held.", usage.chunks as f64);
    p.single(
        "quloud_node_used_bytes",
        Kind::Gauge,
        "Bytes charged against the capacity (chunk bodies and their at-rest overhead).",
        usage.used as f64,
    );
    p.single(
        "quloud_node_capacity_bytes",
        Kind::Gauge,
        "The capacity limit (--capacity).",
        usage.capacity as f64,
    );
    if let Some(n) = roots {
        p.single(
            "quloud_node_root_records",
            Kind::Gauge,
            "Vaults whose root record this node keeps.",
            n as f64,
        );
    }
    let totals: [(&str, &str, f64); 8] = [
        ("quloud_node_chunks_stored_total", "Chunks stored.", load(&stats.stored)),
        ("quloud_node_chunks_served_total", "Chunks sent to a requester with a valid proof.", load(&stats.served)),
        ("quloud_node_audits_answered_total", "Audit challenges answered with a proof of storage.", load(&stats.audits)),
        ("quloud_node_chunks_expired_total", "Chunks deleted because their lease ended.", load(&stats.expired)),
        (
            "quloud_node_store_declined_total",
            "Store requests left for another node (full, held for another slot or commitment, storage error).",
            load(&stats.declined),
        ),
        (
            "quloud_node_messages_dropped_total",
            "Messages dropped (malformed, oversized, stale, replayed, misaddressed, unknown operation, bad signature).",
            load(&stats.dropped),
        ),
        (
            "quloud_node_items_refused_total",
            "Requested items refused: the proof did not verify or the chunk is not held.",
            load(&stats.refused),
        ),
        (
            "quloud_node_items_not_held_total",
            "Requested items for chunks this node does not hold (part of items_refused).",
            load(&stats.not_held),
        ),
    ];
    for (name, help, v) in totals {
        p.single(name, Kind::Counter, help, v);
    }
    p.family(
        "quloud_node_refusals_total",
        Kind::Counter,
        "Messages dropped, store requests declined and items refused, by reason.",
    );
    for r in Reason::ALL {
        p.sample("quloud_node_refusals_total", &[("reason", r.name())], stats.refusals(r) as f64);
    }
    p.family(
        "quloud_node_requests_total",
        Kind::Counter,
        "Requests handled, by operation, whatever the outcome.",
    );
    for op in Op::ALL {
        p.sample("quloud_node_requests_total", &[("op", op.name())], stats.requests(op) as f64);
    }
    p.family(
        "quloud_node_request_duration_seconds",
        Kind::Histogram,
        "Time to handle one request, from its arrival to the last reply sent, by operation.",
    );
    for op in Op::ALL {
        p.histogram(
            "quloud_node_request_duration_seconds",
            &[("op", op.name())],
            &stats.latency(op).snapshot(),
        );
    }
    p.finish()
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
        let text = render(&stats, &usage, Some(1), 3_000);
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
            "quloud_uptime_seconds 2\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        // Every family is declared once, before its samples.
        let types = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        let helps = text.lines().filter(|l| l.starts_with("# HELP ")).count();
        assert_eq!(types, helps);
    }
}
