//! What maintenance reports: an audit pass's figures and the per-node view, with their text and
//! JSON forms for `quloud audit` and `quloud nodes`.

use crate::adapters::redb::manifest::Manifest;
use crate::domain::fs::FsError;
use crate::domain::health::NodeRecord;
use crate::domain::ids::NodeId;
use crate::domain::unix_ms;
use std::collections::BTreeMap;
use std::time::SystemTime;

fn now_ms() -> u64 {
    unix_ms(SystemTime::now())
}

/// What an audit pass found and did.
#[derive(Clone, Debug, Default)]
pub struct AuditReport {
    /// Files covered.
    pub files: u64,
    /// Distinct chunks covered.
    pub chunks: u64,
    /// Replica challenges sent.
    pub checked: u64,
    /// Challenges passed.
    pub passed: u64,
    /// Challenges answered with a wrong proof.
    pub failed: u64,
    /// Replicas whose node said it no longer holds the chunk.
    pub not_found: u64,
    /// Challenges nobody answered in time.
    pub silent: u64,
    /// Chunks brought back to N healthy replicas.
    pub healed: u64,
    /// Bytes re-replicated.
    pub healed_bytes: u64,
    /// Wall time spent challenging replicas.
    pub challenge_secs: f64,
    /// Wall time spent healing (after the challenges).
    pub heal_secs: f64,
    /// Files (or chunks, for `Scope::All`) with fewer than N healthy replicas at the end, and why.
    pub at_risk: Vec<(String, String)>,
    /// Wall time of the pass.
    pub secs: f64,
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl AuditReport {
    /// Whether every covered chunk ended with at least N healthy replicas.
    pub fn all_healthy(&self) -> bool {
        self.at_risk.is_empty()
    }

    /// JSON form.
    pub fn to_json(&self) -> String {
        let risk: Vec<String> = self
            .at_risk
            .iter()
            .map(|(p, why)| format!("{{\"path\":{},\"reason\":{}}}", json_str(p), json_str(why)))
            .collect();
        format!(
            "{{\"files\":{},\"chunks\":{},\"checked\":{},\"passed\":{},\"failed\":{},\"not_found\":{},\"silent\":{},\"healed\":{},\"healed_bytes\":{},\"challenge_secs\":{:.3},\"heal_secs\":{:.3},\"secs\":{:.3},\"healthy\":{},\"at_risk\":[{}]}}",
            self.files, self.chunks, self.checked, self.passed, self.failed, self.not_found, self.silent,
            self.healed, self.healed_bytes, self.challenge_secs, self.heal_secs, self.secs, self.all_healthy(), risk.join(",")
        )
    }

    /// Human form.
    pub fn render(&self) -> String {
        let rate = if self.secs > 0.0 { self.checked as f64 / self.secs } else { 0.0 };
        let mut out = format!(
            "audited {} replicas of {} chunks in {} files in {:.1} s ({rate:.0}/s)\n  passed {}, wrong proof {}, not found {}, no answer {}\nhealed {} chunks ({})\n",
            self.checked, self.chunks, self.files, self.secs, self.passed, self.failed, self.not_found,
            self.silent, self.healed, crate::domain::size::format_size(self.healed_bytes)
        );
        if self.checked == 0 && self.chunks > 0 {
            out.push_str("  (no replica was due: each is challenged once per audit interval after its last proof; `--now` challenges them all)\n");
        }
        if self.at_risk.is_empty() {
            out.push_str("every chunk has its full set of healthy replicas\n");
        } else {
            out.push_str(&format!("{} at risk:\n", self.at_risk.len()));
            for (p, why) in self.at_risk.iter().take(50) {
                out.push_str(&format!("  {p}: {why}\n"));
            }
            if self.at_risk.len() > 50 {
                out.push_str(&format!("  … and {} more (use --json for all)\n", self.at_risk.len() - 50));
            }
        }
        out
    }
}

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

/// JSON for `quloud nodes --json`.
pub fn nodes_json(nodes: &[(NodeId, NodeRecord, u64)]) -> String {
    let rows: Vec<String> = nodes
        .iter()
        .map(|(id, n, held)| {
            format!(
                "{{\"node\":\"{id}\",\"chunks\":{held},\"audits_passed\":{},\"audits_failed\":{},\"consecutive_failures\":{},\"latency_ms\":{:.2},\"last_seen_ms\":{},\"written_off\":{}}}",
                n.passed, n.failed, n.consecutive_failures, n.latency_us as f64 / 1000.0, n.last_seen_ms, n.written_off
            )
        })
        .collect();
    format!("[{}]", rows.join(","))
}

/// Table for `quloud nodes`.
pub fn nodes_render(nodes: &[(NodeId, NodeRecord, u64)]) -> String {
    if nodes.is_empty() {
        return "no nodes known yet (nothing uploaded)\n".to_string();
    }
    let now = now_ms();
    let mut out = format!(
        "{:<64}  {:>7}  {:>7}  {:>6}  {:>9}  {:>10}  state\n",
        "node", "chunks", "passed", "failed", "latency", "last seen"
    );
    for (id, n, held) in nodes {
        let seen = if n.last_seen_ms == 0 {
            "never".to_string()
        } else {
            format!("{}s ago", now.saturating_sub(n.last_seen_ms) / 1000)
        };
        // Latency is measured by audits; before the first one there is none to show.
        let latency = if n.latency_us == 0 {
            "—".to_string()
        } else {
            format!("{:.1}ms", n.latency_us as f64 / 1000.0)
        };
        let state = if n.written_off {
            "written off"
        } else if n.consecutive_failures > 0 {
            "failing"
        } else {
            "ok"
        };
        out.push_str(&format!(
            "{:<64}  {:>7}  {:>7}  {:>6}  {:>9}  {:>10}  {state}\n",
            id.to_string(),
            held,
            n.passed,
            n.failed,
            latency,
            seen
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_that_challenged_nothing_says_why_and_how_to_challenge_all() {
        let idle = AuditReport { files: 2, chunks: 5, ..AuditReport::default() };
        assert!(idle.render().contains("no replica was due"), "{}", idle.render());
        let done = AuditReport { files: 2, chunks: 5, checked: 15, passed: 15, ..AuditReport::default() };
        assert!(!done.render().contains("no replica was due"), "{}", done.render());
    }
}
