//! Churn policy (docs/DESIGN.md §10, "churn is not loss"): when a node that stops answering is
//! offline rather than lost, which replicas still count toward N, when a chunk is repaired, which
//! surplus replicas go, and when the owner suspects its own link instead of the fabric. Pure and
//! clock-driven: every rule takes `now_ms`, so a fake clock drives it in tests.

use crate::domain::fs::{ChunkRecord, Replica};
use crate::domain::health::NodeRecord;
use crate::domain::ids::NodeId;
use crate::domain::vetting::{trust, Trust, DEFAULT_VET_WITHIN};
use std::collections::HashMap;
use std::time::Duration;

/// Healthy copies below which a chunk is repaired at once (or N, if N is smaller).
pub const HEALTHY_FLOOR: usize = 2;
/// Unanswered challenges in a row after which a replica whose node answers other challenges
/// stops counting (the node is up but keeps silent about this one chunk).
pub const SELECTIVE_SILENCE: u8 = 3;

/// The durations of the policy (the `--offline-after`, `--offline-grace`, `--dead-after` and
/// `--vet-within` flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChurnPolicy {
    /// A node is offline once its missed checks span at least this long.
    pub offline_after: Duration,
    /// An offline node's replicas keep counting while it was seen within this long (and the
    /// chunk keeps `HEALTHY_FLOOR` healthy copies).
    pub offline_grace: Duration,
    /// A node unseen for this long is written off: its replicas are forgotten.
    pub dead_after: Duration,
    /// A node not vetted yet is challenged within this long of its acks, and its replicas wait
    /// (uncounted, not repaired) this long before silence has them placed elsewhere
    /// (`domain::vetting`).
    pub vet_within: Duration,
}

impl Default for ChurnPolicy {
    fn default() -> Self {
        ChurnPolicy {
            offline_after: Duration::from_secs(4 * 3600),
            offline_grace: Duration::from_secs(72 * 3600),
            dead_after: Duration::from_secs(14 * 24 * 3600),
            vet_within: DEFAULT_VET_WITHIN,
        }
    }
}

/// What the owner believes about a node's presence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NodeState {
    /// It answered its last check (or was never checked).
    Online,
    /// It missed checks, over less than `offline_after`: a reboot or a blip.
    Missing,
    /// It missed checks over at least `offline_after`, and was seen within `offline_grace`.
    Offline,
    /// Offline for longer than `offline_grace`: its replicas no longer count.
    Lapsed,
    /// Unseen for `dead_after`, or written off for wrong answers: its replicas are forgotten.
    Dead,
}

impl NodeState {
    /// Lower-case name for status and logs.
    pub fn name(self) -> &'static str {
        match self {
            NodeState::Online => "online",
            NodeState::Missing => "missing",
            NodeState::Offline => "offline",
            NodeState::Lapsed => "offline past grace",
            NodeState::Dead => "written off",
        }
    }

    /// Whether the node missed its latest check.
    pub fn unreachable(self) -> bool {
        matches!(self, NodeState::Missing | NodeState::Offline | NodeState::Lapsed)
    }
}

/// How one replica stands under the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Proven and its node answers (or missed checks only briefly).
    Healthy,
    /// Its node is offline within the grace: counts toward N while the chunk keeps the floor.
    Absent,
    /// Its node is offline past the grace: kept on record, not counted.
    Lapsed,
    /// Failed answers, a node that keeps silent about it, a dead node, or a node that failed
    /// its vetting: never counts.
    Bad,
    /// On a node not vetted yet, within its vetting window: neither counted nor repaired.
    Waiting,
}

/// What a chunk needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Repair {
    /// Enough replicas count.
    None,
    /// Below N once offline replicas past the grace stop counting: repaired lazily.
    Lazy,
    /// Below the healthy floor: repaired at once.
    Urgent,
}

/// A chunk judged under the policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Indexes (into the chunk's replicas) of the replicas that count toward N.
    pub counted: Vec<usize>,
    /// How many of them are healthy (the rest are absent within the grace).
    pub healthy: usize,
    /// Replicas waiting for their node's vetting audit (not counted, not repaired).
    pub waiting: usize,
    /// What the chunk needs.
    pub repair: Repair,
}

impl Verdict {
    /// Whether the chunk has N counted replicas only thanks to offline ones within the grace.
    pub fn leans_on_grace(&self, n: usize) -> bool {
        self.healthy < n && self.counted.len() >= n
    }
}

impl ChurnPolicy {
    /// The state of a node from its record at `now_ms` (`None`: never checked, so online).
    /// `heard_ms` is when the owner last heard from most of the fabric ([`Fleet::new`]): a node
    /// is written off only once it was unseen for `dead_after` while the others answered, so an
    /// owner whose own link is down writes nothing off.
    pub fn node_state(&self, rec: Option<&NodeRecord>, now_ms: u64, heard_ms: u64) -> NodeState {
        let Some(rec) = rec else { return NodeState::Online };
        if rec.written_off {
            return NodeState::Dead;
        }
        if rec.missed_since_ms == 0 {
            return NodeState::Online;
        }
        // A node never seen answering is measured from its first missed check.
        let seen = if rec.last_seen_ms > 0 { rec.last_seen_ms } else { rec.missed_since_ms };
        let since_seen = now_ms.saturating_sub(seen);
        if heard_ms.min(now_ms).saturating_sub(seen) >= ms(self.dead_after) {
            NodeState::Dead
        } else if rec.missed_last_ms.saturating_sub(rec.missed_since_ms) < ms(self.offline_after) {
            NodeState::Missing
        } else if since_seen < ms(self.offline_grace) {
            NodeState::Offline
        } else {
            NodeState::Lapsed
        }
    }

    /// How a replica stands when its node is in `state`.
    pub fn standing(&self, r: &Replica, state: NodeState) -> Standing {
        if r.failures > 0 {
            return Standing::Bad;
        }
        match state {
            NodeState::Online if r.silent >= SELECTIVE_SILENCE => Standing::Bad,
            NodeState::Online | NodeState::Missing => Standing::Healthy,
            NodeState::Offline => Standing::Absent,
            NodeState::Lapsed => Standing::Lapsed,
            NodeState::Dead => Standing::Bad,
        }
    }

    /// Judges a chunk that wants `n` replicas, given each node's state (every node vetted).
    pub fn judge(&self, c: &ChunkRecord, n: usize, state_of: &dyn Fn(&NodeId) -> NodeState) -> Verdict {
        self.judge_trusted(c, n, state_of, &|_| Trust::Vetted)
    }

    /// Judges a chunk that wants `n` replicas, given each node's state and how far each
    /// replica's node is trusted: a replica waiting for vetting is not counted, yet the chunk
    /// is repaired only for what the waiting replicas cannot make up once vetted (no repair
    /// while a vetting audit is due).
    pub fn judge_trusted(
        &self,
        c: &ChunkRecord,
        n: usize,
        state_of: &dyn Fn(&NodeId) -> NodeState,
        trust_of: &dyn Fn(&Replica) -> Trust,
    ) -> Verdict {
        let standings: Vec<Standing> = c
            .replicas
            .iter()
            .map(|r| match (trust_of(r), self.standing(r, state_of(&r.node))) {
                (Trust::Vetted, s) | (_, s @ Standing::Bad) => s,
                (Trust::Waiting, _) => Standing::Waiting,
                (Trust::Refused, _) => Standing::Bad,
            })
            .collect();
        let standings = &standings;
        let of = |s: Standing| (0..standings.len()).filter(move |i| standings[*i] == s);
        let healthy: Vec<usize> = of(Standing::Healthy).collect();
        let waiting = of(Standing::Waiting).count();
        let floor = HEALTHY_FLOOR.min(n);
        let mut counted = healthy.clone();
        if healthy.len() >= floor {
            counted.extend(of(Standing::Absent));
        }
        let repair = if healthy.len() + waiting < floor {
            Repair::Urgent
        } else if counted.len() + waiting < n {
            Repair::Lazy
        } else {
            Repair::None
        };
        Verdict { counted, healthy: healthy.len(), waiting, repair }
    }
}

/// Replicas above N to delete once N healthy replicas on answering nodes remain: the nodes of
/// the surplus, chosen among healthy replicas on online nodes, those ranked highest first (the
/// caller ranks a node that just came back highest, so the copies it kept while away go).
pub fn surplus(
    c: &ChunkRecord,
    n: usize,
    state_of: &dyn Fn(&NodeId) -> NodeState,
    rank: &dyn Fn(&NodeId) -> u64,
) -> Vec<NodeId> {
    let mut live: Vec<&Replica> = c
        .replicas
        .iter()
        .filter(|r| r.failures == 0 && r.silent == 0 && state_of(&r.node) == NodeState::Online)
        .collect();
    if n == 0 || live.len() <= n {
        return Vec::new();
    }
    live.sort_by_key(|r| (std::cmp::Reverse(rank(&r.node)), r.verified_ms, r.node));
    live.iter().take(live.len() - n).map(|r| r.node).collect()
}

/// Whether the owner should suspect its own link: more than a quarter of the known groups
/// (houses, or nodes when no houses are known), and more than one, missed their latest checks
/// at once. Each entry
/// is one group: whether all of its nodes are unreachable. Dead groups are left out by the
/// caller.
pub fn link_suspected(groups: &[bool]) -> bool {
    let gone = groups.iter().filter(|g| **g).count();
    gone > may_vanish(groups.len())
}

/// Groups that may vanish without the owner suspecting its own link: a quarter, and at least
/// one (a single vanished node is never "at once").
fn may_vanish(groups: usize) -> usize {
    (groups / 4).max(1)
}

/// Every known node's state at one instant, and whether repair is paused.
#[derive(Clone, Debug, Default)]
pub struct Fleet {
    states: HashMap<NodeId, NodeState>,
    returned: HashMap<NodeId, u64>,
    records: HashMap<NodeId, NodeRecord>,
    now_ms: u64,
    vet_within: Duration,
    /// Unreachable groups and known groups, when more than a quarter vanished at once.
    pub link_down: Option<(usize, usize)>,
}

impl Fleet {
    /// Judges every node of `records` at `now_ms`. Groups for the link check are nodes (no
    /// houses are known to the owner yet).
    pub fn new(policy: &ChurnPolicy, records: &[(NodeId, NodeRecord)], now_ms: u64) -> Fleet {
        // "Heard" is the time by which all nodes but those that may vanish were last seen:
        // when more vanish at once it stays at that moment, so nobody is written off for an
        // outage of the owner's own link, while a few nodes that die alone are.
        let mut seen: Vec<u64> = records
            .iter()
            .map(|(_, r)| match (r.missed_since_ms, r.last_seen_ms) {
                (0, _) => now_ms,
                (missed, 0) => missed,
                (_, seen) => seen,
            })
            .collect();
        seen.sort_unstable_by(|a, b| b.cmp(a));
        let may = may_vanish(seen.len());
        let heard = if seen.len() > may { seen[seen.len() - 1 - may] } else { now_ms };
        let states: HashMap<NodeId, NodeState> =
            records.iter().map(|(id, r)| (*id, policy.node_state(Some(r), now_ms, heard))).collect();
        let returned = records.iter().map(|(id, r)| (*id, r.returned_ms)).collect();
        let groups: Vec<bool> =
            states.values().filter(|s| **s != NodeState::Dead).map(|s| s.unreachable()).collect();
        let link_down =
            link_suspected(&groups).then(|| (groups.iter().filter(|g| **g).count(), groups.len()));
        let records = records.iter().cloned().collect();
        Fleet { states, returned, records, now_ms, vet_within: policy.vet_within, link_down }
    }

    /// How far the owner trusts the node of `r` now (`domain::vetting`).
    pub fn trust(&self, r: &Replica) -> Trust {
        trust(self.records.get(&r.node), r, self.now_ms, self.vet_within)
    }

    /// The record of a node (`None`: never audited).
    pub fn record(&self, node: &NodeId) -> Option<&NodeRecord> {
        self.records.get(node)
    }

    /// Whether a node is vetted (a node never audited is not).
    pub fn vetted(&self, node: &NodeId) -> bool {
        self.records.get(node).is_some_and(|r| r.vetted)
    }

    /// Nodes that failed their vetting audit, in id order.
    pub fn failed_vetting(&self) -> Vec<NodeId> {
        let mut out: Vec<NodeId> =
            self.records.iter().filter(|(_, r)| r.failed_vetting()).map(|(id, _)| *id).collect();
        out.sort();
        out
    }

    /// A node's state (never checked: online).
    pub fn state(&self, node: &NodeId) -> NodeState {
        self.states.get(node).copied().unwrap_or(NodeState::Online)
    }

    /// When a node last came back after missing checks (0: never), to rank surplus replicas.
    pub fn returned_ms(&self, node: &NodeId) -> u64 {
        self.returned.get(node).copied().unwrap_or(0)
    }

    /// Nodes in `state`.
    pub fn count(&self, state: NodeState) -> usize {
        self.states.values().filter(|s| **s == state).count()
    }

    /// Nodes whose replicas never count (written off).
    pub fn dead(&self) -> std::collections::HashSet<NodeId> {
        self.states.iter().filter(|(_, s)| **s == NodeState::Dead).map(|(id, _)| *id).collect()
    }

    /// Judges a chunk that wants `n` replicas, replicas on nodes not vetted yet included.
    pub fn judge(&self, policy: &ChurnPolicy, c: &ChunkRecord, n: usize) -> Verdict {
        policy.judge_trusted(c, n, &|id| self.state(id), &|r| self.trust(r))
    }

    /// The surplus replicas of a chunk that wants `n` (see [`surplus`]): only replicas on vetted
    /// nodes are live, so a vetted copy is never deleted in favour of one waiting for vetting.
    pub fn surplus(&self, c: &ChunkRecord, n: usize) -> Vec<NodeId> {
        let state = |id: &NodeId| if self.vetted(id) { self.state(id) } else { NodeState::Missing };
        surplus(c, n, &state, &|id| self.returned_ms(id))
    }
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}

#[cfg(test)]
#[path = "churn_tests.rs"]
mod tests;
