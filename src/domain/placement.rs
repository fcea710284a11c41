//! Placement by houses (DESIGN.md §10): which replicas of a chunk count toward durability, from
//! the (node, house) facts the owner verified in hub-signed house certificates. At most one
//! replica per house, none in the owner's own house unless the owner allows it; a node without a
//! valid certificate belongs to no house and counts for nothing.

use crate::domain::house::{HouseCert, HouseName};
use crate::domain::ids::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A house the hub saw within this many seconds is reported reachable.
pub const REACHABLE_WITHIN_SECS: u64 = 60;

/// Whether a replica in the owner's own house counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OwnHouse {
    /// Replicas go to other houses only (the default).
    Excluded,
    /// One replica may be in the owner's own house (`--allow-own-house`).
    Allowed,
}

/// What the owner of a vault in a house knows before asking the hub: the hub's membership key
/// (from the invite, kept since `quloud join`), its own house and its choice about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HousePolicy {
    /// The key that signs house certificates.
    pub hub_key: NodeId,
    /// The owner's own house.
    pub own: HouseName,
    /// Whether the own house may hold a replica.
    pub own_house: OwnHouse,
}

/// One entry of the hub's answer on `quloud.v1.hub.houses` (JSON, docs/PROTOCOL.md 4.14).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HouseListing {
    /// A node's certificate, signed by the hub.
    pub cert: HouseCert,
    /// Seconds since the hub last saw the house connected (`None`: never). Unsigned: it only
    /// shapes what `quloud status` says, never what counts.
    pub seen_ago: Option<u64>,
}

/// The hub's answer on `quloud.v1.hub.houses`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HousesReply {
    /// The certificates of the houses the hub accepts (revoked houses are left out).
    pub houses: Vec<HouseListing>,
}

/// Verified placement facts: each certified node's house, and which houses are reachable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    policy: HousePolicy,
    houses: BTreeMap<NodeId, HouseName>,
    reachable: BTreeSet<HouseName>,
    rejected: usize,
}

/// Why chunks stay pending: fewer eligible houses reachable than replicas wanted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shortfall {
    /// Eligible houses the hub reports reachable.
    pub reachable: usize,
    /// Replicas wanted per chunk.
    pub wanted: usize,
    /// Whether the owner's own house is among the eligible ones.
    pub own_house: OwnHouse,
}

impl fmt::Display for Shortfall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let houses = if self.reachable == 1 { "house" } else { "houses" };
        match self.own_house {
            OwnHouse::Excluded => write!(
                f,
                "{} other {houses} reachable, {} replicas wanted (at most one per house, none in your own)",
                self.reachable, self.wanted
            ),
            OwnHouse::Allowed => write!(
                f,
                "{} {houses} reachable (your own included), {} replicas wanted (at most one per house)",
                self.reachable, self.wanted
            ),
        }
    }
}

impl Placement {
    /// The facts `listing` proves under `policy`: certificates that do not verify under the hub
    /// key are dropped (counted in `rejected`), and a node certified into two houses belongs to
    /// neither.
    pub fn verify(policy: HousePolicy, listing: &[HouseListing]) -> Placement {
        let mut houses: BTreeMap<NodeId, HouseName> = BTreeMap::new();
        let mut ambiguous = BTreeSet::new();
        let mut reachable = BTreeSet::new();
        let mut rejected = 0;
        for entry in listing {
            let Some(node) = entry.cert.verify(&policy.hub_key) else {
                rejected += 1;
                continue;
            };
            let house = entry.cert.house.clone();
            match houses.get(&node) {
                Some(h) if *h != house => {
                    ambiguous.insert(node);
                }
                _ => {
                    houses.insert(node, house.clone());
                }
            }
            if entry.seen_ago.is_some_and(|s| s <= REACHABLE_WITHIN_SECS) {
                reachable.insert(house);
            }
        }
        for node in &ambiguous {
            houses.remove(node);
        }
        let certified: BTreeSet<&HouseName> = houses.values().collect();
        reachable.retain(|h| certified.contains(h));
        Placement { policy, houses, reachable, rejected }
    }

    /// The policy these facts were verified under.
    pub fn policy(&self) -> &HousePolicy {
        &self.policy
    }

    /// The house `node` is certified into, if any.
    pub fn house_of(&self, node: &NodeId) -> Option<&HouseName> {
        self.houses.get(node)
    }

    /// Certificates the hub listed that did not verify.
    pub fn rejected(&self) -> usize {
        self.rejected
    }

    fn eligible_house(&self, house: &HouseName) -> bool {
        self.policy.own_house == OwnHouse::Allowed || *house != self.policy.own
    }

    /// The replicas among `candidates` (in order of preference) that count: the first of each
    /// eligible house; nodes of no house, of the owner's house (unless allowed) and of a house
    /// already counted do not.
    pub fn counted(&self, candidates: impl IntoIterator<Item = NodeId>) -> Vec<NodeId> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for node in candidates {
            let Some(house) = self.houses.get(&node) else { continue };
            if self.eligible_house(house) && seen.insert(house) {
                out.push(node);
            }
        }
        out
    }

    /// Eligible houses the hub reports reachable.
    pub fn reachable_houses(&self) -> usize {
        self.reachable.iter().filter(|h| self.eligible_house(h)).count()
    }

    /// Why `wanted` replicas per chunk cannot be placed now, if they cannot.
    pub fn shortfall(&self, wanted: usize) -> Option<Shortfall> {
        let reachable = self.reachable_houses();
        (reachable < wanted).then_some(Shortfall { reachable, wanted, own_house: self.policy.own_house })
    }
}

#[cfg(test)]
#[path = "placement_tests.rs"]
mod tests;
