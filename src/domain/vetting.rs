//! Vetting (docs/DESIGN.md §10, "a new node earns trust"): whether a node's acks count toward N
//! yet. A node the owner has not seen pass an audit is *unvetted*: its replicas are challenged
//! within `--vet-within` of their acks, and while they wait they neither count toward N nor
//! make the chunk repaired. A node that answers its vetting challenge wrongly is written off at
//! once (`domain::health`); one that stays silent past the window has its replicas placed
//! elsewhere. Pure and clock-driven: every rule takes `now_ms`.

use crate::domain::fs::Replica;
use crate::domain::health::NodeRecord;
use std::time::Duration;

/// The default of `--vet-within`: a fresh node's first replicas are challenged within this long
/// of their acks, and a node silent to its vetting challenges has its replicas placed elsewhere
/// once this long has passed since their acks.
pub const DEFAULT_VET_WITHIN: Duration = Duration::from_secs(5 * 60);

/// How far the owner trusts a replica's node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trust {
    /// The node passed its vetting audit: its acks count.
    Vetted,
    /// Not vetted yet, and the vetting window of this replica is open: it waits, uncounted and
    /// not repaired.
    Waiting,
    /// Failed its vetting audit, or silent to it past the window: the replica never counts and
    /// the chunk is placed elsewhere.
    Refused,
}

/// How a replica's node stands by vetting at `now_ms`, from the node's record (`None`: never
/// audited). `within` is `--vet-within`; the window of a replica runs from its ack
/// (`verified_ms`).
pub fn trust(rec: Option<&NodeRecord>, r: &Replica, now_ms: u64, within: Duration) -> Trust {
    match rec {
        Some(n) if n.vetted => Trust::Vetted,
        Some(n) if n.written_off => Trust::Refused,
        Some(n) if n.missed_since_ms != 0 && now_ms >= r.verified_ms.saturating_add(ms(within)) => {
            Trust::Refused
        }
        _ => Trust::Waiting,
    }
}

/// Whether a node still has to be challenged for vetting: not vetted, and not written off (a
/// node that failed its vetting audit is not asked again).
pub fn needs_vetting(rec: Option<&NodeRecord>) -> bool {
    !rec.is_some_and(|n| n.vetted || n.written_off)
}

/// How often the owner looks for replicas waiting for vetting (besides right after each
/// upload): a quarter of `--vet-within`, between 1 s and 60 s.
pub fn vet_every(within: Duration) -> Duration {
    (within / 4).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::health::{Outcome, VET_PASSES};
    use crate::domain::ids::NodeId;
    use proptest::prelude::*;

    const W: Duration = Duration::from_secs(300);
    const T0: u64 = 1_700_000_000_000;

    fn replica(acked: u64) -> Replica {
        Replica::acked(NodeId([1; 32]), 0, u64::MAX, acked)
    }

    #[test]
    fn a_fresh_node_waits_until_it_passes_then_counts() {
        let r = replica(T0);
        assert_eq!(trust(None, &r, T0 + 10 * ms(W), W), Trust::Waiting, "never challenged: it waits");
        let mut n = NodeRecord::default();
        assert!(!n.vetted && needs_vetting(Some(&n)));
        for _ in 0..VET_PASSES {
            assert_eq!(trust(Some(&n), &r, T0 + 1, W), Trust::Waiting);
            n.observe(Outcome::Passed, 100, T0 + 1);
        }
        assert!(n.vetted && !needs_vetting(Some(&n)));
        assert_eq!(trust(Some(&n), &r, T0 + 2, W), Trust::Vetted);
    }

    #[test]
    fn a_wrong_answer_during_vetting_writes_the_node_off_for_good() {
        for wrong in [Outcome::Failed, Outcome::NotFound] {
            let mut n = NodeRecord::default();
            n.observe(wrong, 100, T0 + 1);
            assert!(n.written_off && n.failed_vetting(), "{wrong:?}");
            assert_eq!(trust(Some(&n), &replica(T0), T0 + 2, W), Trust::Refused);
            n.observe(Outcome::Passed, 100, T0 + 3);
            assert!(n.written_off && !n.vetted, "a later pass does not undo a failed vetting");
            assert!(!needs_vetting(Some(&n)));
        }
        // A vetted node is judged by the usual rules: one wrong answer does not write it off.
        let mut n = NodeRecord { vetted: true, ..NodeRecord::default() };
        n.observe(Outcome::Failed, 100, T0);
        assert!(!n.written_off);
    }

    #[test]
    fn silence_refuses_replicas_only_after_the_window() {
        let mut n = NodeRecord::default();
        n.observe(Outcome::Silent, 0, T0 + 1000);
        assert!(!n.written_off && needs_vetting(Some(&n)), "silence is asked again");
        let r = replica(T0);
        assert_eq!(trust(Some(&n), &r, T0 + ms(W) - 1, W), Trust::Waiting);
        assert_eq!(trust(Some(&n), &r, T0 + ms(W), W), Trust::Refused);
        assert_eq!(trust(Some(&n), &replica(T0 + ms(W)), T0 + ms(W), W), Trust::Waiting, "a fresh ack waits");
    }

    #[test]
    fn old_records_read_as_vetted() {
        let n = NodeRecord { passed: 3, ..NodeRecord::default() };
        let mut v2 = n.encode()[..66].to_vec();
        v2[0] = 2;
        assert!(NodeRecord::decode(&v2).expect("v2 decodes").vetted);
        let mut v1 = n.encode()[..42].to_vec();
        v1[0] = 1;
        assert!(NodeRecord::decode(&v1).expect("v1 decodes").vetted);
        assert!(!NodeRecord::decode(&n.encode()).expect("v3 decodes").vetted);
        let mut v3 = n.encode();
        v3[66] = 1;
        assert!(NodeRecord::decode(&v3).expect("v3 decodes").vetted);
    }

    /// A chunk on nodes never audited is neither durable nor repaired; once they pass it counts;
    /// a silent node's replica stops waiting after the window and the chunk is repaired.
    #[test]
    fn a_fleet_counts_only_vetted_replicas_and_repairs_only_after_the_window() {
        use crate::domain::churn::{ChurnPolicy, Fleet, Repair};
        use crate::domain::fs::{ChunkRecord, ChunkState};
        use crate::domain::ids::ChunkId;
        let p = ChurnPolicy { vet_within: W, ..ChurnPolicy::default() };
        let node = |i: u8| NodeId([i; 32]);
        let c = ChunkRecord {
            id: ChunkId([0; 32]),
            ct_len: 10,
            refs: 1,
            state: ChunkState::Pending,
            replicas: (1..=3).map(|i| Replica::acked(node(i), i, u64::MAX, T0)).collect(),
        };
        let v = Fleet::new(&p, &[], T0 + 1).judge(&p, &c, 3);
        assert_eq!((v.counted.len(), v.waiting, v.repair), (0, 3, Repair::None), "forged acks count");
        let passed = |i: u8| {
            let mut r = NodeRecord::default();
            r.observe(Outcome::Passed, 10, T0 + 2);
            (node(i), r)
        };
        let mut silent = NodeRecord::default();
        silent.observe(Outcome::Silent, 0, T0 + 2);
        let recs = [passed(1), passed(2), (node(3), silent)];
        let v = Fleet::new(&p, &recs, T0 + 3).judge(&p, &c, 3);
        assert_eq!(
            (v.counted.len(), v.waiting, v.repair),
            (2, 1, Repair::None),
            "repaired within the window"
        );
        let v = Fleet::new(&p, &recs, T0 + ms(W)).judge(&p, &c, 3);
        assert_eq!((v.counted.len(), v.waiting), (2, 0));
        assert_ne!(v.repair, Repair::None, "a silent node keeps the chunk waiting past the window");
        let all = [passed(1), passed(2), passed(3)];
        let v = Fleet::new(&p, &all, T0 + 3).judge(&p, &c, 3);
        assert_eq!((v.counted.len(), v.repair), (3, Repair::None));
    }

    fn outcome() -> impl Strategy<Value = Outcome> {
        prop_oneof![
            Just(Outcome::Passed),
            Just(Outcome::Failed),
            Just(Outcome::NotFound),
            Just(Outcome::Silent)
        ]
    }

    proptest! {
        /// Whatever a node answers, it is vetted exactly when it passed before any wrong answer,
        /// and a node that never passed is never trusted.
        #[test]
        fn vetted_iff_a_pass_came_before_any_wrong_answer(outcomes in proptest::collection::vec(outcome(), 0..20)) {
            let mut n = NodeRecord::default();
            for (i, o) in outcomes.iter().enumerate() {
                n.observe(*o, 10, T0 + i as u64);
            }
            let first_wrong = outcomes.iter().position(|o| matches!(o, Outcome::Failed | Outcome::NotFound));
            let passes_before = outcomes[..first_wrong.unwrap_or(outcomes.len())]
                .iter().filter(|o| **o == Outcome::Passed).count() as u64;
            prop_assert_eq!(n.vetted, passes_before >= VET_PASSES);
            if !outcomes.contains(&Outcome::Passed) {
                prop_assert_ne!(trust(Some(&n), &replica(T0), T0 + 100 * ms(W), W), Trust::Vetted);
            }
            prop_assert_eq!(NodeRecord::decode(&n.encode()), Some(n));
        }
    }
}
