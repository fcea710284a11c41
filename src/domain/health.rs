//! Replica and node health (docs/DESIGN.md §5–6): how audit outcomes change what the owner believes about
//! a replica and a node, and which replicas count as healthy. Pure rules; the vault's maintenance
//! (`app::vault::maintenance`) applies them to the manifest.

use crate::domain::fs::{ChunkRecord, Replica};
use crate::domain::ids::NodeId;

/// Wrong answers in a row after which a replica is forgotten (a single one only marks it
/// unhealthy). Silence never forgets a replica: `domain::churn` judges an unanswering node.
pub const REPLICA_FORGET_AFTER: u8 = 3;
/// Least time between two "not found" answers that both count toward forgetting a replica whose
/// chunk has fewer than N other healthy replicas: audits and renewals in quick succession (or
/// replayed ones) count once.
pub const NOT_FOUND_SPACING_MS: u64 = 3_600_000;
/// Wrong answers ("not found" included) in a row, across chunks, after which a node is written
/// off: its acks stop counting toward quorum until it passes an audit again. Silence writes a
/// node off only by time (`domain::churn`, `--dead-after`).
pub const NODE_WRITE_OFF_AFTER: u32 = 8;
/// Audits a node must pass before its acks count toward N (`domain::vetting`): one proof
/// against a fresh random challenge already shows that the node stores what it acknowledged,
/// which no forged ack can do; a second would only double how long a fresh fabric waits.
pub const VET_PASSES: u64 = 1;

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
    /// Wrong answers since its last pass.
    pub consecutive_failures: u32,
    /// Smoothed audit round trip, microseconds.
    pub latency_us: u64,
    /// Last time it answered anything valid, Unix ms (0: never).
    pub last_seen_ms: u64,
    /// Written off: too many wrong answers in a row.
    pub written_off: bool,
    /// First check it missed since it last answered, Unix ms (0: it answered its last check).
    pub missed_since_ms: u64,
    /// Latest check it missed, Unix ms (0: none since it last answered).
    pub missed_last_ms: u64,
    /// When it last answered after missing checks, Unix ms (0: never): its replicas not verified
    /// since are audited again.
    pub returned_ms: u64,
    /// Passed its vetting audits (`VET_PASSES`): its acks count toward N. A node the owner
    /// has never audited is not vetted; records written before vetting existed read as vetted.
    pub vetted: bool,
}

impl NodeRecord {
    /// Whether it failed its vetting audit: written off before it was ever vetted.
    pub fn failed_vetting(&self) -> bool {
        self.written_off && !self.vetted
    }

    /// Applies one audit outcome observed at `now_ms` after `latency_us`.
    ///
    /// Vetting: a node not vetted yet is vetted once it passed `VET_PASSES` audits, and is
    /// written off at once by a wrong answer (a wrong proof or "not found"); a node that failed
    /// its vetting stays written off, whatever it answers later.
    pub fn observe(&mut self, outcome: Outcome, latency_us: u64, now_ms: u64) {
        match outcome {
            Outcome::Passed => {
                self.passed += 1;
                self.consecutive_failures = 0;
                if !self.vetted && !self.written_off && self.passed >= VET_PASSES {
                    self.vetted = true;
                }
                // A node that comes back is trusted again only after it proves storage.
                if self.vetted {
                    self.written_off = false;
                }
            }
            Outcome::Silent => {
                self.failed += 1;
                if self.missed_since_ms == 0 {
                    self.missed_since_ms = now_ms.max(1);
                }
                self.missed_last_ms = now_ms.max(self.missed_last_ms);
            }
            Outcome::NotFound | Outcome::Failed => {
                self.failed += 1;
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                if self.consecutive_failures >= NODE_WRITE_OFF_AFTER || !self.vetted {
                    self.written_off = true;
                }
            }
        }
        if outcome != Outcome::Silent {
            if self.missed_since_ms != 0 {
                self.returned_ms = now_ms;
            }
            (self.missed_since_ms, self.missed_last_ms) = (0, 0);
            self.last_seen_ms = now_ms;
            self.latency_us =
                if self.latency_us == 0 { latency_us } else { (self.latency_us * 7 + latency_us) / 8 };
        }
    }

    /// Encodes for the manifest (version 3: with missed checks and vetting).
    pub fn encode(&self) -> [u8; 67] {
        let mut v = [0u8; 67];
        v[0] = 3;
        v[1..9].copy_from_slice(&self.passed.to_le_bytes());
        v[9..17].copy_from_slice(&self.failed.to_le_bytes());
        v[17..21].copy_from_slice(&self.consecutive_failures.to_le_bytes());
        v[21..29].copy_from_slice(&self.latency_us.to_le_bytes());
        v[29..37].copy_from_slice(&self.last_seen_ms.to_le_bytes());
        v[37] = self.written_off as u8;
        v[42..50].copy_from_slice(&self.missed_since_ms.to_le_bytes());
        v[50..58].copy_from_slice(&self.missed_last_ms.to_le_bytes());
        v[58..66].copy_from_slice(&self.returned_ms.to_le_bytes());
        v[66] = self.vetted as u8;
        v
    }

    /// Decodes a manifest record (version 1, 2 or 3; versions 1 and 2 read as vetted, so a
    /// vault's known nodes keep counting); `None` if damaged.
    pub fn decode(b: &[u8]) -> Option<NodeRecord> {
        let (v2, vetted) = match (b.len(), b.first()) {
            (42, Some(1)) => (false, true),
            (66, Some(2)) => (true, true),
            (67, Some(3)) => (true, b[66] == 1),
            _ => return None,
        };
        let u64_at = |i: usize| b[i..i + 8].try_into().ok().map(u64::from_le_bytes);
        Some(NodeRecord {
            passed: u64_at(1)?,
            failed: u64_at(9)?,
            consecutive_failures: u32::from_le_bytes(b[17..21].try_into().ok()?),
            latency_us: u64_at(21)?,
            last_seen_ms: u64_at(29)?,
            written_off: b[37] == 1,
            missed_since_ms: if v2 { u64_at(42)? } else { 0 },
            missed_last_ms: if v2 { u64_at(50)? } else { 0 },
            returned_ms: if v2 { u64_at(58)? } else { 0 },
            vetted,
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
/// "not found" answers at least `NOT_FOUND_SPACING_MS` apart, or, for bad answers, after
/// `REPLICA_FORGET_AFTER` in a row — never while it is the last replica known. Silence is only
/// counted: a replica is forgotten for it once its node is written off (`want.written_off`).
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
            r.silent = 0;
            r.verified_ms = now_ms;
            false
        }
        Outcome::Silent => {
            r.silent = r.silent.saturating_add(1);
            (want.written_off)(node) && known > 1
        }
        Outcome::NotFound => {
            r.silent = 0;
            if r.not_found == 0 || now_ms >= r.not_found_ms.saturating_add(NOT_FOUND_SPACING_MS) {
                r.not_found = r.not_found.saturating_add(1);
                r.not_found_ms = now_ms;
                r.failures = r.failures.saturating_add(1);
            }
            others_healthy >= want.replicas.max(1) || (r.not_found >= REPLICA_FORGET_AFTER && known > 1)
        }
        Outcome::Failed => {
            r.silent = 0;
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
    fn wrong_answers_accumulate_and_silence_forgets_only_on_a_written_off_node() {
        let mut c = chunk(&[1, 2, 3]);
        for _ in 0..REPLICA_FORGET_AFTER - 1 {
            assert!(!apply_outcome(&mut c, &NodeId([2; 32]), Outcome::Failed, 5, &N3));
        }
        let never = |_: &NodeId| false;
        assert!(!is_healthy(&c.replicas[1], &never), "a replica that failed is not healthy");
        assert!(apply_outcome(&mut c, &NodeId([2; 32]), Outcome::Failed, 5, &N3));
        assert_eq!(c.replicas.len(), 2);
        // Silence is counted, never held against the replica while its node is not written off.
        for k in 0..20 {
            assert!(!apply_outcome(&mut c, &NodeId([3; 32]), Outcome::Silent, 6 + k, &N3));
        }
        assert_eq!((c.replicas[1].silent, c.replicas[1].failures), (20, 0));
        assert!(is_healthy(&c.replicas[1], &never));
        let dead = Wanted { replicas: 3, written_off: &|n: &NodeId| *n == NodeId([3; 32]) };
        assert!(apply_outcome(&mut c, &NodeId([3; 32]), Outcome::Silent, 30, &dead), "dead node kept");
        // The last replica survives silence even on a written-off node.
        let mut last = chunk(&[3]);
        assert!(!apply_outcome(&mut last, &NodeId([3; 32]), Outcome::Silent, 31, &dead));
        assert_eq!(last.replicas.len(), 1);
        assert!(!apply_outcome(&mut c, &NodeId([1; 32]), Outcome::Passed, 9, &N3));
        assert_eq!((c.replicas[0].verified_ms, c.replicas[0].failures, c.replicas[0].silent), (9, 0, 0));
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
        apply_outcome(&mut c, &NodeId([1; 32]), Outcome::Failed, 1, &N3);
        apply_outcome(&mut c, &NodeId([1; 32]), Outcome::Passed, 2, &N3);
        assert!(is_healthy(&c.replicas[0], &|_: &NodeId| false));
        assert!(!is_healthy(&c.replicas[0], &|_: &NodeId| true), "written-off node never counts");
    }

    #[test]
    fn nodes_are_written_off_for_wrong_answers_and_must_pass_to_come_back() {
        let mut n = NodeRecord { vetted: true, ..NodeRecord::default() };
        for _ in 0..50 {
            n.observe(Outcome::Silent, 0, 10);
        }
        assert!(!n.written_off, "silence writes a node off only by time");
        assert_eq!(
            (n.last_seen_ms, n.missed_since_ms, n.missed_last_ms),
            (0, 10, 10),
            "silence is not being seen"
        );
        n.observe(Outcome::Silent, 0, 15);
        assert_eq!((n.missed_since_ms, n.missed_last_ms), (10, 15));
        for i in 0..NODE_WRITE_OFF_AFTER {
            assert!(!n.written_off, "written off too early at {i}");
            n.observe(Outcome::Failed, 0, 16);
        }
        assert!(n.written_off);
        assert_eq!((n.returned_ms, n.missed_since_ms), (16, 0), "an answer ends the missed checks");
        n.observe(Outcome::Passed, 800, 20);
        assert!(!n.written_off);
        assert_eq!((n.passed, n.failed, n.consecutive_failures, n.last_seen_ms), (1, 59, 0, 20));
        assert_eq!(NodeRecord::decode(&n.encode()), Some(n));
        assert_eq!(NodeRecord::decode(&n.encode()[1..]), None);
        // A version 1 record decodes with no missed checks.
        let mut v1 = n.encode()[..42].to_vec();
        v1[0] = 1;
        let old = NodeRecord::decode(&v1).expect("v1 decodes");
        assert_eq!((old.passed, old.missed_since_ms, old.returned_ms), (1, 0, 0));
    }
}
