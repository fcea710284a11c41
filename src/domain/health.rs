//! Replica and node health (docs/DESIGN.md §5–6): how audit outcomes change what the owner believes about
//! a replica and a node, and which replicas count as healthy. Pure rules; the vault's maintenance
//! (`app::vault::maintenance`) applies them to the manifest.

use crate::domain::fs::{ChunkRecord, Replica};
use crate::domain::ids::NodeId;

/// Failed audits in a row after which a replica is forgotten (its node may be back later, so
/// a single miss only marks it unhealthy).
pub const REPLICA_FORGET_AFTER: u8 = 3;
/// Least time between two "not found" answers that both count toward forgetting a replica whose
/// chunk has fewer than N other healthy replicas: audits and renewals in quick succession (or
/// replayed ones) count once.
pub const NOT_FOUND_SPACING_MS: u64 = 3_600_000;
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

/// What the owner wants of a chunk while it judges one replica: N healthy replicas, and which
/// nodes are written off (their replicas never count).
pub struct Wanted<'a> {
    /// Healthy replicas a chunk should have (N).
    pub replicas: usize,
    /// Whether a node is written off.
    pub written_off: &'a dyn Fn(&NodeId) -> bool,
}

/// Applies an audit (or renewal) outcome to the replica of `node` in `chunk`; returns whether the
/// replica was forgotten.
///
/// No single answer drops a chunk's last known replica, and a "not found" forgets a replica at
/// once only when the chunk has N other healthy replicas. Otherwise the replica stops counting
/// (so healing re-publishes the chunk first) and is forgotten after `REPLICA_FORGET_AFTER`
/// "not found" answers at least `NOT_FOUND_SPACING_MS` apart, or, for silence and bad answers,
/// after `REPLICA_FORGET_AFTER` in a row — never while it is the last replica known.
pub fn apply_outcome(
    chunk: &mut ChunkRecord,
    node: &NodeId,
    outcome: Outcome,
    now_ms: u64,
    want: &Wanted,
) -> bool {
    let Some(i) = chunk.replicas.iter().position(|r| r.node == *node) else { return false };
    let known = chunk.replicas.len();
    let others_healthy = chunk
        .replicas
        .iter()
        .enumerate()
        .filter(|(j, r)| *j != i && is_healthy(r, &want.written_off))
        .count();
    let r = &mut chunk.replicas[i];
    let forget = match outcome {
        Outcome::Passed => {
            r.failures = 0;
            r.not_found = 0;
            r.not_found_ms = 0;
            r.verified_ms = now_ms;
            false
        }
        Outcome::NotFound => {
            if r.not_found == 0 || now_ms >= r.not_found_ms.saturating_add(NOT_FOUND_SPACING_MS) {
                r.not_found = r.not_found.saturating_add(1);
                r.not_found_ms = now_ms;
                r.failures = r.failures.saturating_add(1);
            }
            others_healthy >= want.replicas.max(1) || (r.not_found >= REPLICA_FORGET_AFTER && known > 1)
        }
        Outcome::Failed | Outcome::Silent => {
            r.failures = r.failures.saturating_add(1);
            r.failures >= REPLICA_FORGET_AFTER && known > 1
        }
    };
    if forget {
        chunk.replicas.remove(i);
    }
    forget
}

/// Whether a replica is waiting out the spacing after a counted "not found": challenging it again
/// sooner could not count, and would only hold the silence of one lost copy against its node.
pub fn not_found_recently(r: &Replica, now_ms: u64) -> bool {
    r.not_found > 0 && now_ms < r.not_found_ms.saturating_add(NOT_FOUND_SPACING_MS)
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

    const N3: Wanted = Wanted { replicas: 3, written_off: &|_: &NodeId| false };

    #[test]
    fn failures_accumulate_and_the_last_replica_survives_silence() {
        let mut c = chunk(&[1, 2, 3]);
        for _ in 0..REPLICA_FORGET_AFTER - 1 {
            assert!(!apply_outcome(&mut c, &NodeId([2; 32]), Outcome::Silent, 5, &N3));
        }
        let never = |_: &NodeId| false;
        assert!(!is_healthy(&c.replicas[1], &never), "a replica that failed is not healthy");
        assert!(apply_outcome(&mut c, &NodeId([2; 32]), Outcome::Failed, 5, &N3));
        assert_eq!(c.replicas.len(), 2);
        c.replicas.remove(0);
        // The last replica survives any number of silent audits.
        let mut last = c.clone();
        for _ in 0..10 {
            assert!(!apply_outcome(&mut last, &NodeId([3; 32]), Outcome::Silent, 6, &N3));
        }
        assert_eq!(last.replicas.len(), 1);
        assert!(!is_healthy(&last.replicas[0], &never));
        assert!(!apply_outcome(&mut c, &NodeId([3; 32]), Outcome::Passed, 9, &N3));
        assert_eq!((c.replicas[0].verified_ms, c.replicas[0].failures), (9, 0));
        assert!(
            !apply_outcome(&mut c, &NodeId([7; 32]), Outcome::NotFound, 9, &N3),
            "unknown node: no change"
        );
    }

    /// Issue 24 item 3: a "not found" — even signed and bound to the owner's request — forgets a
    /// replica at once only when N other healthy replicas remain; otherwise only answers spaced
    /// in time count, and the last replica known is never forgotten.
    #[test]
    fn not_found_forgets_only_a_surplus_replica_or_after_spaced_answers() {
        let mut c = chunk(&[1, 2, 3]);
        let (a, t0) = (NodeId([1; 32]), 1_000_000);
        assert!(!apply_outcome(&mut c, &a, Outcome::NotFound, t0, &N3), "forgotten with 2 of 3 others");
        assert!(!is_healthy(&c.replicas[0], &|_: &NodeId| false), "it no longer counts toward N");
        assert!(not_found_recently(&c.replicas[0], t0 + 1));
        // Answers in quick succession count once.
        for k in 1..10 {
            assert!(!apply_outcome(&mut c, &a, Outcome::NotFound, t0 + k, &N3));
        }
        assert_eq!(c.replicas[0].not_found, 1);
        // Healed: a fourth replica joins, and the copy the node says it lost is now surplus.
        c.replicas.push(Replica::acked(NodeId([4; 32]), 3, 1000, t0));
        assert!(apply_outcome(&mut c, &a, Outcome::NotFound, t0 + 10, &N3));
        assert_eq!(c.replicas.len(), 3);

        // Healing impossible: three answers an hour apart forget the replica, not fewer.
        let mut c = chunk(&[1, 2]);
        for k in 0..REPLICA_FORGET_AFTER as u64 - 1 {
            assert!(!apply_outcome(&mut c, &a, Outcome::NotFound, t0 + k * NOT_FOUND_SPACING_MS, &N3));
        }
        assert!(!not_found_recently(&c.replicas[0], t0 + 2 * NOT_FOUND_SPACING_MS));
        assert!(apply_outcome(&mut c, &a, Outcome::NotFound, t0 + 2 * NOT_FOUND_SPACING_MS, &N3));
        // The last replica known survives any number of them.
        let b = NodeId([2; 32]);
        for k in 0..20u64 {
            assert!(!apply_outcome(&mut c, &b, Outcome::NotFound, t0 + k * NOT_FOUND_SPACING_MS, &N3));
        }
        assert_eq!(c.replicas.len(), 1);
        // A pass clears the count.
        assert!(!apply_outcome(&mut c, &b, Outcome::Passed, t0, &N3));
        assert_eq!((c.replicas[0].not_found, c.replicas[0].not_found_ms, c.replicas[0].failures), (0, 0, 0));
    }

    #[test]
    fn a_pass_heals_a_suspect_replica() {
        let mut c = chunk(&[1]);
        apply_outcome(&mut c, &NodeId([1; 32]), Outcome::Silent, 1, &N3);
        apply_outcome(&mut c, &NodeId([1; 32]), Outcome::Passed, 2, &N3);
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
