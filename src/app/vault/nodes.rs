//! The per-node view of a vault's manifest, for `quloud nodes` (rendered in `crate::render`).

use super::Manifest;
use crate::domain::fs::FsError;
use crate::domain::health::NodeRecord;
use crate::domain::ids::NodeId;
use std::collections::BTreeMap;

/// Per-node view of a manifest: record and replicas held for this vault. A node's last seen
/// time counts its store acks too (a replica's `verified_ms`), not only audits: a node that just
/// acknowledged every chunk has been seen, whether or not it was audited yet.
pub fn nodes_view(m: &Manifest) -> Result<Vec<(NodeId, NodeRecord, u64)>, FsError> {
    let rx = m.read()?;
    let mut held: BTreeMap<NodeId, (u64, u64)> = BTreeMap::new();
    for (_, c) in rx.summary()?.chunks {
        for r in &c.replicas {
            let e = held.entry(r.node).or_default();
            e.0 += 1;
            e.1 = e.1.max(r.verified_ms);
        }
    }
    let mut out: BTreeMap<NodeId, (NodeRecord, u64)> =
        rx.nodes()?.into_iter().map(|(id, n)| (id, (n, 0))).collect();
    for (id, (count, verified_ms)) in held {
        let e = out.entry(id).or_default();
        e.1 = count;
        e.0.last_seen_ms = e.0.last_seen_ms.max(verified_ms);
    }
    Ok(out.into_iter().map(|(id, (n, c))| (id, n, c)).collect())
}
