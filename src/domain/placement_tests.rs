//! Unit and property tests of placement by houses.

use super::*;
use crate::domain::identity::NodeIdentity;
use proptest::prelude::*;

fn hub() -> NodeIdentity {
    NodeIdentity::from_bytes(&[200; 64])
}

fn node(i: u8) -> NodeId {
    NodeIdentity::from_bytes(&[i; 64]).id()
}

fn name(s: &str) -> HouseName {
    s.parse().unwrap()
}

fn listed(house: &str, n: u8, seen_ago: Option<u64>) -> HouseListing {
    HouseListing { cert: HouseCert::issue(&hub(), &name(house), &node(n), 7), seen_ago }
}

fn policy(own_house: OwnHouse) -> HousePolicy {
    HousePolicy { hub_key: hub().id(), own: name("alice"), own_house }
}

fn four_houses() -> Vec<HouseListing> {
    ["alice", "bob", "carol", "dave"]
        .iter()
        .enumerate()
        .map(|(i, h)| listed(h, i as u8 + 1, Some(3)))
        .collect()
}

#[test]
fn one_replica_per_other_house_counts() {
    let p = Placement::verify(policy(OwnHouse::Excluded), &four_houses());
    // alice's node (1) is the owner's house; node 9 has no certificate.
    let counted = p.counted([node(1), node(2), node(9), node(3), node(4)]);
    assert_eq!(counted, vec![node(2), node(3), node(4)]);
    assert_eq!(p.reachable_houses(), 3);
    assert_eq!(p.shortfall(3), None);
    let allowed = Placement::verify(policy(OwnHouse::Allowed), &four_houses());
    assert_eq!(allowed.counted([node(1), node(2)]), vec![node(1), node(2)]);
    assert_eq!(allowed.reachable_houses(), 4);
}

#[test]
fn a_second_node_of_a_house_does_not_count() {
    let mut listing = four_houses();
    listing.push(listed("bob", 5, Some(1)));
    let p = Placement::verify(policy(OwnHouse::Excluded), &listing);
    assert_eq!(p.counted([node(5), node(2), node(3)]), vec![node(5), node(3)]);
    assert_eq!(p.reachable_houses(), 3, "bob is one house however many nodes it has");
}

#[test]
fn forged_and_foreign_certificates_prove_nothing() {
    let mut listing = four_houses();
    let forger = NodeIdentity::from_bytes(&[201; 64]);
    listing
        .push(HouseListing { cert: HouseCert::issue(&forger, &name("zed"), &node(6), 7), seen_ago: Some(0) });
    let mut tampered = listed("bob", 7, Some(0));
    tampered.cert.house = name("yves");
    listing.push(tampered);
    let p = Placement::verify(policy(OwnHouse::Excluded), &listing);
    assert_eq!(p.rejected(), 2);
    assert_eq!(p.house_of(&node(6)), None);
    assert_eq!(p.house_of(&node(7)), None);
    assert!(p.counted([node(6), node(7)]).is_empty());
    assert_eq!(p.reachable_houses(), 3);
}

#[test]
fn a_node_certified_into_two_houses_belongs_to_neither() {
    let mut listing = four_houses();
    listing.push(listed("erin", 2, Some(0)));
    let p = Placement::verify(policy(OwnHouse::Excluded), &listing);
    assert_eq!(p.house_of(&node(2)), None);
    assert_eq!(p.counted([node(2), node(3)]), vec![node(3)]);
}

#[test]
fn too_few_reachable_houses_say_why() {
    let mut listing = four_houses();
    listing[3].seen_ago = Some(REACHABLE_WITHIN_SECS + 1); // dave not seen lately
    let p = Placement::verify(policy(OwnHouse::Excluded), &listing);
    let why = p.shortfall(3).expect("a shortfall");
    assert_eq!((why.reachable, why.wanted), (2, 3));
    assert!(why.to_string().starts_with("2 other houses reachable, 3 replicas wanted"), "{why}");
    // Its replicas still count: an ack proves the node holds the chunk.
    assert_eq!(p.counted([node(4)]), vec![node(4)]);
    let allowed = Placement::verify(policy(OwnHouse::Allowed), &listing);
    assert_eq!(allowed.shortfall(3), None, "alice, bob and carol");
}

proptest! {
    /// Whatever the listing and the candidates: counted replicas are candidates, each of a
    /// certified, eligible house, no two of one house; and every eligible house among the
    /// candidates is represented (nothing that could count is left out).
    #[test]
    fn counted_replicas_obey_the_rule(
        certs in proptest::collection::vec((0u8..6, 1u8..12, any::<bool>()), 0..16),
        candidates in proptest::collection::vec(1u8..14, 0..16),
        allow in any::<bool>(),
    ) {
        let houses = ["alice", "bob", "carol", "dave", "erin", "fay"];
        let listing: Vec<HouseListing> = certs
            .iter()
            .map(|&(h, n, forged)| {
                let signer = NodeIdentity::from_bytes(&[if forged { 201 } else { 200 }; 64]);
                HouseListing { cert: HouseCert::issue(&signer, &name(houses[h as usize]), &node(n), 1), seen_ago: Some(0) }
            })
            .collect();
        let own_house = if allow { OwnHouse::Allowed } else { OwnHouse::Excluded };
        let p = Placement::verify(policy(own_house), &listing);
        let nodes: Vec<NodeId> = candidates.iter().map(|&n| node(n)).collect();
        let counted = p.counted(nodes.iter().copied());
        let mut seen = BTreeSet::new();
        for n in &counted {
            prop_assert!(nodes.contains(n));
            let house = p.house_of(n).expect("certified");
            let valid = certs.iter().any(|&(h, c, forged)| !forged && node(c) == *n && houses[h as usize] == house.as_str());
            prop_assert!(valid, "counted on a certificate the hub did not sign");
            prop_assert!(allow || house.as_str() != "alice");
            prop_assert!(seen.insert(house.clone()), "two replicas in {}", house);
        }
        for n in &nodes {
            if let Some(h) = p.house_of(n) {
                prop_assert!(seen.contains(h) || (!allow && h.as_str() == "alice"));
            }
        }
        prop_assert!(p.reachable_houses() <= houses.len());
    }
}
