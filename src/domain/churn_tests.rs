//! The churn policy on a fake timeline: node states from missed checks, which replicas count,
//! when a chunk is repaired, surplus, and the link check; properties over random timelines.

use super::*;
use crate::domain::fs::ChunkState;
use crate::domain::health::Outcome;
use crate::domain::ids::ChunkId;
use proptest::prelude::*;

const H: u64 = 3_600_000;
const T0: u64 = 1_000 * H;

fn policy() -> ChurnPolicy {
    ChurnPolicy::default()
}

fn chunk(nodes: &[u8]) -> ChunkRecord {
    ChunkRecord {
        id: ChunkId([0; 32]),
        ct_len: 10,
        refs: 1,
        state: ChunkState::Durable,
        replicas: nodes.iter().map(|&n| Replica::acked(NodeId([n; 32]), n, u64::MAX, T0)).collect(),
    }
}

/// A node seen at `T0`, then silent at each of `misses` (ms after `T0`).
fn missing(misses: &[u64]) -> NodeRecord {
    let mut r = NodeRecord::default();
    r.observe(Outcome::Passed, 10, T0);
    for m in misses {
        r.observe(Outcome::Silent, 0, T0 + m);
    }
    r
}

#[test]
fn a_node_is_offline_only_after_missed_checks_four_hours_apart() {
    let p = policy();
    let at = |rec: &NodeRecord, t: u64| p.node_state(Some(rec), T0 + t, T0 + t);
    assert_eq!(p.node_state(None, T0, T0), NodeState::Online);
    assert_eq!(at(&missing(&[]), H), NodeState::Online);
    // Many misses within four hours: a reboot, not an outage.
    let blip = missing(&[H, H + 1, 2 * H, 5 * H - 1]);
    assert_eq!(at(&blip, 5 * H), NodeState::Missing);
    let gone = missing(&[H, 5 * H]);
    assert_eq!(at(&gone, 5 * H), NodeState::Offline);
    assert_eq!(at(&gone, 72 * H - 1), NodeState::Offline);
    assert_eq!(at(&gone, 72 * H), NodeState::Lapsed, "past the grace, counted from last seen");
    assert_eq!(at(&gone, 14 * 24 * H), NodeState::Dead);
    // Nobody heard from for two weeks (the owner's own link): nothing is written off.
    assert_eq!(p.node_state(Some(&gone), T0 + 14 * 24 * H, T0 + H), NodeState::Lapsed);
    // It answers again: online, and its return is remembered.
    let mut back = gone;
    back.observe(Outcome::Passed, 10, T0 + 80 * H);
    assert_eq!(at(&back, 80 * H), NodeState::Online);
    assert_eq!(back.returned_ms, T0 + 80 * H);
}

#[test]
fn offline_replicas_count_within_the_grace_only_above_the_floor() {
    let p = policy();
    let c = chunk(&[1, 2, 3]);
    let states = |off: &'static [u8], s: NodeState| {
        move |n: &NodeId| if off.contains(&n.0[0]) { s } else { NodeState::Online }
    };
    let v = p.judge(&c, 3, &states(&[3], NodeState::Offline));
    assert_eq!((v.counted.len(), v.healthy, v.repair), (3, 2, Repair::None));
    assert!(v.leans_on_grace(3));
    let v = p.judge(&c, 3, &states(&[3], NodeState::Lapsed));
    assert_eq!((v.counted.len(), v.repair), (2, Repair::Lazy), "past the grace: repaired lazily");
    let v = p.judge(&c, 3, &states(&[2, 3], NodeState::Offline));
    assert_eq!((v.counted.len(), v.healthy, v.repair), (1, 1, Repair::Urgent), "below two healthy: at once");
    let v = p.judge(&c, 3, &states(&[2, 3], NodeState::Missing));
    assert_eq!((v.healthy, v.repair), (3, Repair::None), "a blip is not an outage");
    let v = p.judge(&c, 3, &states(&[3], NodeState::Dead));
    assert_eq!(v.repair, Repair::Lazy);
    // N = 1: the floor is one copy.
    assert_eq!(p.judge(&chunk(&[1]), 1, &states(&[], NodeState::Online)).repair, Repair::None);
    // A replica with wrong answers never counts; one its answering node keeps silent about stops.
    let mut bad = chunk(&[1, 2, 3]);
    bad.replicas[0].failures = 1;
    bad.replicas[1].silent = SELECTIVE_SILENCE;
    assert_eq!(p.judge(&bad, 3, &states(&[], NodeState::Online)).repair, Repair::Urgent);
}

#[test]
fn surplus_goes_from_the_node_that_came_back() {
    let c = chunk(&[1, 2, 3, 4]);
    let online = |_: &NodeId| NodeState::Online;
    let rank = |n: &NodeId| if n.0[0] == 2 { 99 } else { 0 };
    assert_eq!(surplus(&c, 3, &online, &rank), vec![NodeId([2; 32])]);
    assert!(surplus(&c, 4, &online, &rank).is_empty());
    // Only copies proven on answering nodes are weighed: one offline leaves no surplus.
    let one_off = |n: &NodeId| if n.0[0] == 4 { NodeState::Offline } else { NodeState::Online };
    assert!(surplus(&c, 3, &one_off, &rank).is_empty());
}

#[test]
fn repair_pauses_when_more_than_a_quarter_vanish_at_once() {
    assert!(!link_suspected(&[]));
    assert!(!link_suspected(&[true, false, false, false]), "one in four is not more than a quarter");
    assert!(link_suspected(&[true, true, false, false, false]));
    assert!(!link_suspected(&[true]), "a single node vanishing is not at once");
    assert!(!link_suspected(&[true, false, false]));
    assert!(link_suspected(&[true, true, false]));
    assert!(!link_suspected(&[true, true, false, false, false, false, false, false]));
    let p = policy();
    let mut recs: Vec<(NodeId, NodeRecord)> = (1..=5u8).map(|i| (NodeId([i; 32]), missing(&[]))).collect();
    assert_eq!(Fleet::new(&p, &recs, T0 + H).link_down, None);
    recs[0].1 = missing(&[H]);
    assert_eq!(Fleet::new(&p, &recs, T0 + H).link_down, None);
    recs[1].1 = missing(&[H]);
    let fleet = Fleet::new(&p, &recs, T0 + H);
    assert_eq!(fleet.link_down, Some((2, 5)));
    assert_eq!((fleet.count(NodeState::Missing), fleet.count(NodeState::Online)), (2, 3));
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![Just(Outcome::Passed), Just(Outcome::Silent), Just(Outcome::Failed), Just(Outcome::NotFound)]
}

proptest! {
    /// Whatever a node's history, silence alone within the grace never makes a chunk with two
    /// other healthy copies need repair, and a node never passes from online to dead without
    /// `dead_after` of silence.
    #[test]
    fn silence_within_the_grace_never_triggers_repair(
        gaps in proptest::collection::vec(0u64..6 * H, 0..20),
        history in proptest::collection::vec(outcome(), 0..10),
    ) {
        let p = policy();
        let mut rec = NodeRecord::default();
        let mut t = T0;
        for o in &history {
            t += H;
            rec.observe(*o, 1, t);
        }
        let seen = rec.last_seen_ms;
        for g in &gaps {
            t += g;
            rec.observe(Outcome::Silent, 0, t);
        }
        let state = p.node_state(Some(&rec), t, t);
        let reference = if seen > 0 { seen } else { rec.missed_since_ms.max(t) };
        if state == NodeState::Dead && !rec.written_off {
            prop_assert!(t - reference.min(t) >= 14 * 24 * H);
        }
        if !rec.written_off && seen > 0 && t - seen < 72 * H {
            prop_assert!(matches!(state, NodeState::Online | NodeState::Missing | NodeState::Offline));
            let c = chunk(&[1, 2, 3]);
            let v = p.judge(&c, 3, &|n: &NodeId| if n.0[0] == 3 { state } else { NodeState::Online });
            prop_assert_eq!(v.repair, Repair::None);
        }
    }

    /// Surplus never leaves a chunk below N proven replicas on online nodes.
    #[test]
    fn surplus_keeps_n(n in 1usize..5, k in 0u8..8, offline in proptest::collection::vec(any::<bool>(), 8)) {
        let nodes: Vec<u8> = (1..=k).collect();
        let c = chunk(&nodes);
        let state = |id: &NodeId| if offline[(id.0[0] - 1) as usize] { NodeState::Offline } else { NodeState::Online };
        let drop = surplus(&c, n, &state, &|id: &NodeId| id.0[0] as u64);
        let live = c.replicas.iter().filter(|r| state(&r.node) == NodeState::Online).count();
        prop_assert_eq!(drop.len(), live.saturating_sub(n));
        prop_assert!(drop.iter().all(|d| state(d) == NodeState::Online));
    }
}
