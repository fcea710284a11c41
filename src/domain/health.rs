//! Replica and node health (docs/DESIGN.md §5–6): how audit outcomes change what the owner believes about
//! a replica and a node, and which replicas count as healthy. Pure rules; the vault's maintenance
//! (`app::vault::maintenance`) applies them to the manifest.

use crate::domain::fs::{ChunkRecord, Replica};
use crate::domain::ids::NodeId;

/// Failed audits in a row after which a replica is forgotten (its node may be back later, so
/// a single miss only marks it unhealthy).
pub const REPLICA_FORGET_AFTER: u8 = 3;
/// Failed audits in a row, across chunks, after which a node is written off: its acks stop
/// counting toward quorum until it passes an audit again.
pub const NODE_WRITE_OFF_AFTER: u32 = 8;

/// The outcome of challenging one replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The node proved it holds the chunk.
    Passed,
    /// The node said (signed) that it does not hold the chunk.
    NotFound,
    /// A wrong proof, a bad signature or a malformed reply.
    Failed,
    /// No answer in time.
    Silent,
}

/// What the owner remembers about a node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeRecord {
    /// Audits passed.
    pub passed: u64,
    /// Audits failed (wrong proof, not found, no answer).
    pub failed: u64,
    /// Failures since its last pass.
    pub consecutive_failures: u32,
    /// Smoothed audit round trip, microseconds.
    pub latency_us: u64,
    /// Last time it answered anything valid, Unix ms (0: never).
    pub last_seen_ms: u64,
    /// Written off: too many failures in a row.
    pub written_off: bool,
}

impl NodeRecord {
    /// Applies one audit outcome observed at `now_ms` after `latency_us`.
    pub fn observe(&mut self, outcome: Outcome, latency_us: u64, now_ms: u64) {
        match outcome {
            Outcome::Passed => {
                self.passed += 1;
                self.consecutive_failures = 0;
                // A node that comes back is trusted again only after it proves storage.
                self.written_off = false;
            }
            _ => {
                self.failed += 1;
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                if self.consecutive_failures >= NODE_WRITE_OFF_AFTER {
                    self.written_off = true;
                }
            }
        }
        if outcome != Outcome::Silent {
            self.last_seen_ms = now_ms;
            self.latency_us =
                if self.latency_us == 0 { latency_us } else { (self.latency_us * 7 + latency_us) / 8 };
        }
    }

    /// Encodes for the manifest.
    pub fn encode(&self) -> [u8; 42] {
        let mut v = [0u8; 42];
        v[0] = 1;
        v[1..9].copy_from_slice(&self.passed.to_le_bytes());
        v[9..17].copy_from_slice(&self.failed.to_le_bytes());
        v[17..21].copy_from_slice(&self.consecutive_failures.to_le_bytes());
        v[21..29].copy_from_slice(&self.latency_us.to_le_bytes());
        v[29..37].copy_from_slice(&self.last_seen_ms.to_le_bytes());
        v[37] = self.written_off as u8;
        v
    }

    /// Decodes a manifest record; `None` if damaged.
    pub fn decode(b: &[u8]) -> Option<NodeRecord> {
        if b.len() != 42 || b[0] != 1 {
            return None;
        }
        let u64_at = |i: usize| b[i..i + 8].try_into().ok().map(u64::from_le_bytes);
        Some(NodeRecord {
            passed: u64_at(1)?,
            failed: u64_at(9)?,
            consecutive_failures: u32::from_le_bytes(b[17..21].try_into().ok()?),
            latency_us: u64_at(21)?,
            last_seen_ms: u64_at(29)?,
            written_off: b[37] == 1,
        })
    }
}

/// Whether a replica counts toward N: it has not failed since it last proved storage, and its
/// node is not written off.
pub fn is_healthy(r: &Replica, written_off: &impl Fn(&NodeId) -> bool) -> bool {
    r.failures == 0 && !written_off(&r.node)
}

/// Applies an audit outcome to the replica of `node` in `chunk`; returns whether the replica was
/// forgotten. A "not found" forgets it at once (the node says the copy is gone); other failures
/// forget it after `REPLICA_FORGET_AFTER` in a row, unless it is the last replica known.
pub fn apply_outcome(chunk: &mut ChunkRecord, node: &NodeId, outcome: Outcome, now_ms: u64) -> bool {
    let Some(i) = chunk.replicas.iter().position(|r| r.node == *node) else { return false };
    let r = &mut chunk.replicas[i];
    let forget = match outcome {
        Outcome::Passed => {
            r.failures = 0;
            r.verified_ms = now_ms;
            false
        }
        Outcome::NotFound => true,
        // Silence or a bad answer never forgets the last replica known: it may be all there is.
        Outcome::Failed | Outcome::Silent => {
            r.failures = r.failures.saturating_add(1);
            r.failures >= REPLICA_FORGET_AFTER && chunk.replicas.len() > 1
        }
    };
    if forget {
        chunk.replicas.remove(i);
    }
    forget
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fs::ChunkState;
    use crate::domain::ids::ChunkId;

    fn chunk(nodes: &[u8]) -> ChunkRecord {
        ChunkRecord {
            id: ChunkId([0; 32]),
            ct_len: 10,
            refs: 1,
            state: ChunkState::Durable,
            replicas: nodes.iter().map(|&n| Replica::acked(NodeId([n; 32]), n, 1000, 0)).collect(),
        }
    }

    #[test]
    fn not_found_forgets_and_failures_accumulate() {
        let mut c = chunk(&[1, 2, 3]);
        assert!(apply_outcome(&mut c, &NodeId([1; 32]), Outcome::NotFound, 5));
        assert_eq!(c.replicas.len(), 2);
        for _ in 0..REPLICA_FORGET_AFTER - 1 {
            assert!(!apply_outcome(&mut c, &NodeId([2; 32]), Outcome::Silent, 5));
        }
        let never = |_: &NodeId| false;
        assert!(!is_healthy(&c.replicas[0], &never), "a replica that failed is not healthy");
        assert!(apply_outcome(&mut c, &NodeId([2; 32]), Outcome::Failed, 5));
        assert_eq!(c.replicas.len(), 1);
        // The last replica survives any number of silent audits.
        let mut last = c.clone();
        for _ in 0..10 {
            assert!(!apply_outcome(&mut last, &NodeId([3; 32]), Outcome::Silent, 6));
        }
        assert_eq!(last.replicas.len(), 1);
        assert!(!is_healthy(&last.replicas[0], &never));
        assert!(!apply_outcome(&mut c, &NodeId([3; 32]), Outcome::Passed, 9));
        assert_eq!((c.replicas[0].verified_ms, c.replicas[0].failures), (9, 0));
        assert!(!apply_outcome(&mut c, &NodeId([7; 32]), Outcome::NotFound, 9), "unknown node: no change");
    }

    #[test]
    fn a_pass_heals_a_suspect_replica() {
        let mut c = chunk(&[1]);
        apply_outcome(&mut c, &NodeId([1; 32]), Outcome::Silent, 1);
        apply_outcome(&mut c, &NodeId([1; 32]), Outcome::Passed, 2);
        assert!(is_healthy(&c.replicas[0], &|_: &NodeId| false));
        assert!(!is_healthy(&c.replicas[0], &|_: &NodeId| true), "written-off node never counts");
    }

    #[test]
    fn nodes_are_written_off_and_must_pass_to_come_back() {
        let mut n = NodeRecord::default();
        for i in 0..NODE_WRITE_OFF_AFTER {
            assert!(!n.written_off, "written off too early at {i}");
            n.observe(Outcome::Silent, 0, 10);
        }
        assert!(n.written_off);
        assert_eq!(n.last_seen_ms, 0, "silence is not being seen");
        n.observe(Outcome::Passed, 800, 20);
        assert!(!n.written_off);
        assert_eq!((n.passed, n.failed, n.consecutive_failures, n.last_seen_ms), (1, 8, 0, 20));
        assert_eq!(NodeRecord::decode(&n.encode()), Some(n));
        assert_eq!(NodeRecord::decode(&n.encode()[1..]), None);
    }
}
