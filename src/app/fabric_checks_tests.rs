//! The owner's checks of node replies: store acks, get replies, audit answers bound to the
//! challenge sent, renew and delete replies.

use super::*;
use crate::domain::identity::NodeIdentity;

fn node(i: u8) -> NodeIdentity {
    NodeIdentity::from_bytes(&[i; 64])
}

#[test]
fn a_tally_keeps_one_verified_current_ack_per_node() {
    let c = ProofSecret::from_seed(&[1; 32]).commitment();
    let other = ProofSecret::from_seed(&[2; 32]).commitment();
    let addr = Addr([7; 32]);
    let mut t =
        AckTally::new(StoreTerms { commitment: c, control: None, since_ms: 1000, min_lease_ms: 1000 });
    assert!(!t.accept(StoreAck::sign(&node(1), addr, &other, 0, 2000, 5)), "signed for another commitment");
    assert!(!t.accept(StoreAck::sign(&node(1), addr, &c, 0, 999, 5)), "an older lease");
    assert!(t.accept(StoreAck::sign(&node(1), addr, &c, 0, 2000, 5)));
    assert!(t.accept(StoreAck::sign(&node(1), addr, &c, 3, 2000, 6)), "a second ack of a node");
    assert!(t.accept(StoreAck::sign(&node(2), addr, &c, 1, 2000, 5)));
    assert!(t.accept(StoreAck::sign(&node(3), addr, &c, 2, 2000, 5)));
    assert_eq!(t.len(), 3, "one ack per node");
    // Node 1 is held already, node 3 is excluded: its slot is claimed, it does not count.
    let held = [(node(1).id(), 0)];
    let exclude = [node(3).id()];
    let goal = StoreGoal { replicas: 3, held: &held, exclude: &exclude, placement: None };
    let (distinct, claimed) = t.progress(&goal);
    assert_eq!(distinct, 2);
    assert_eq!(claimed, HashSet::from([0, 1, 2]));
    let counted: Vec<NodeId> = t.counted(&goal).iter().map(|a| a.node).collect();
    assert_eq!(counted, vec![node(2).id()]);
    assert_eq!(slots_to_publish(&claimed, 2), vec![3, 4]);
    assert_eq!(progress(&goal, None), (1, HashSet::from([0])));
}

#[test]
fn get_replies_keep_only_asked_chunks_whose_bytes_match() {
    let ct = b"ciphertext".to_vec();
    let addr = Addr::of(&ct);
    let (asked, stranger) = (node(1), node(2));
    let reply = |n: &NodeIdentity, status, bytes: &[u8]| {
        bytes::Bytes::from(GetReply { node: n.id(), addr, status, ciphertext: bytes.to_vec() }.encode())
    };
    let mut r = GetReplies::new(asked.id(), [addr]);
    r.offer(&bytes::Bytes::from_static(b"garbage"));
    r.offer(&reply(&stranger, Status::Ok, &ct));
    r.offer(&reply(&asked, Status::Ok, b"other bytes"));
    assert!(!r.complete(), "nothing acceptable yet");
    r.offer(&reply(&asked, Status::Ok, &ct));
    assert!(r.complete());
    assert_eq!(r.into_found(), vec![(addr, bytes::Bytes::from(ct.clone()))]);
    // A targeted "not found" settles the addr; on a broadcast it is ignored.
    let mut r = GetReplies::new(asked.id(), [addr]);
    r.offer(&reply(&asked, Status::NotFound, b""));
    assert!(r.complete() && r.into_found().is_empty());
    let mut r = GetReplies::new(NodeId::ANY, [addr]);
    r.offer(&reply(&asked, Status::NotFound, b""));
    assert!(!r.complete());
}

fn owner_secret() -> ProofSecret {
    ProofSecret::from_seed(&[5; 32]).with_control(ProofSecret::from_seed(&[6; 32]))
}

/// Issue 24 item 3. A broker (or any client on an open bus) races the owner's audit with a copy
/// carrying a garbage proof and the same seed: the node signs "not found" for the copy. Before,
/// `judge` took that reply as the node's verdict on the owner's challenge (NotFound, and the
/// owner forgot the replica); now it is a failed reply.
#[test]
fn a_not_found_signed_for_another_request_is_no_verdict() {
    let node = NodeIdentity::generate();
    let addr = Addr([3; 32]);
    let req = AuditRequest::build(&owner_secret(), node.id(), addr, [4; 32], AUDIT_LEAVES, 1000);
    let mut copy = req.clone();
    copy.control.as_mut().expect("controlled").proof = copy.proof;
    let for_copy = Some(request_hash(&copy.encode()));
    let stolen = AuditReply::sign_bound(&node, (addr, req.seed, for_copy), Status::NotFound, vec![]);
    assert!(matches!(judge(&stolen, &req, 1000), AuditVerdict::Failed(_)));
    let unbound = AuditReply::sign(&node, addr, req.seed, Status::NotFound, vec![]);
    assert!(matches!(judge(&unbound, &req, 1000), AuditVerdict::Failed(_)));
    let honest = Some(request_hash(&req.encode()));
    let honest = AuditReply::sign_bound(&node, (addr, req.seed, honest), Status::NotFound, vec![]);
    assert_eq!(judge(&honest, &req, 1000), AuditVerdict::NotFound);
}

/// A node that already held the chunk acks the lease it holds (it no longer raises it for an
/// unproven store request): such a fresh ack counts, and the owner renews the replica with a
/// proof later. An old ack for an older lease, replayed, still does not count.
#[test]
fn a_fresh_ack_of_the_lease_held_counts_and_an_old_one_does_not() {
    let node = NodeIdentity::generate();
    let q = owner_secret().control_commitment();
    let commitment = ProofSecret::from_seed(&[5; 32]).commitment();
    let since_ms = 10_000_000;
    let terms = StoreTerms { commitment, control: q, since_ms, min_lease_ms: since_ms + 10_000_000_000 };
    let mut t = AckTally::new(terms);
    let addr = Addr([1; 32]);
    let held = StoreAck::sign_held(&node, addr, (&commitment, q.as_ref()), 0, 13_600_000, 10_000_100);
    t.accept(held);
    assert_eq!(t.len(), 1);
    let other = NodeIdentity::generate();
    let old = StoreAck::sign_held(&other, addr, (&commitment, q.as_ref()), 1, 13_600_000, 1_000);
    t.accept(old);
    assert_eq!(t.len(), 1, "a replayed old ack counted");
    let ending = StoreAck::sign_held(&other, addr, (&commitment, q.as_ref()), 1, 10_001_000, 9_990_000);
    t.accept(ending);
    assert_eq!(t.len(), 1, "an ack of a lease about to end counted");
    // A node holding the chunk from before control commitments acks without Q: it counts.
    let legacy = StoreAck::sign(&other, addr, &commitment, 1, 20_000_000, 10_000_100);
    t.accept(legacy);
    assert_eq!(t.len(), 2);
    // An ack naming another Q does not.
    let third = NodeIdentity::generate();
    let wrong_q = ProofSecret::from_seed(&[8; 32]).commitment();
    let wrong = StoreAck::sign_held(&third, addr, (&commitment, Some(&wrong_q)), 2, 20_000_000, 10_000_100);
    t.accept(wrong);
    assert_eq!(t.len(), 2);
}

/// After a remount the ack stream delivers acks of an earlier store of a chunk queued again:
/// they are acks of an earlier store (no warning), not replays; an ack signed since the store
/// began with a lease older than asked is the one that looks like a replay.
#[test]
fn acks_of_an_earlier_store_are_told_from_replays() {
    let c = ProofSecret::from_seed(&[3; 32]).commitment();
    let (node, addr) = (node(4), Addr([9; 32]));
    let since_ms = 50_000_000;
    let min_lease_ms = since_ms + 90 * 86_400_000;
    let t = AckTally::new(StoreTerms { commitment: c, control: None, since_ms, min_lease_ms });
    let judge = |lease, signed| t.judge(&StoreAck::sign(&node, addr, &c, 0, lease, signed));
    // Stored an hour before the remount, for a lease that ends a little earlier than asked now.
    let earlier = since_ms - 3_600_000;
    assert_eq!(judge(earlier + 90 * 86_400_000, earlier), AckJudgement::EarlierStore);
    assert_eq!(judge(min_lease_ms, since_ms + 5), AckJudgement::Counts);
    assert_eq!(judge(since_ms + 1_000, since_ms + 5), AckJudgement::Replay, "signed now, lease ending");
    let other = ProofSecret::from_seed(&[4; 32]).commitment();
    let forged = StoreAck::sign(&node, addr, &other, 0, min_lease_ms, since_ms);
    assert_eq!(t.judge(&forged), AckJudgement::BadSignature);
}

#[test]
fn with_a_placement_acks_count_once_per_other_house() {
    use crate::domain::house::HouseCert;
    use crate::domain::placement::{HouseListing, HousePolicy, OwnHouse, Placement};
    let hub = node(200);
    let listed = |house: &str, n: u8| HouseListing {
        cert: HouseCert::issue(&hub, &house.parse().unwrap(), &node(n).id(), 1),
        seen_ago: Some(0),
    };
    let listing = [listed("alice", 1), listed("bob", 2), listed("bob", 3), listed("carol", 4)];
    let policy =
        HousePolicy { hub_key: hub.id(), own: "alice".parse().unwrap(), own_house: OwnHouse::Excluded };
    let placement = Placement::verify(policy, &listing);
    let c = ProofSecret::from_seed(&[1; 32]).commitment();
    let addr = Addr([7; 32]);
    let mut t =
        AckTally::new(StoreTerms { commitment: c, control: None, since_ms: 1000, min_lease_ms: 1000 });
    for (i, n) in [1u8, 2, 3, 4, 5].into_iter().enumerate() {
        assert!(t.accept(StoreAck::sign(&node(n), addr, &c, i as u8, 2000, 5 + i as u64)));
    }
    let goal = StoreGoal { replicas: 3, held: &[], exclude: &[], placement: Some(&placement) };
    let (distinct, claimed) = t.progress(&goal);
    assert_eq!(distinct, 2, "bob once, carol; not alice's own house, not the uncertified node 5");
    assert_eq!(claimed.len(), 5, "every slot taken stays claimed");
    let mut counted: Vec<NodeId> = t.counted(&goal).iter().map(|a| a.node).collect();
    counted.sort();
    let mut want = vec![node(2).id(), node(4).id()];
    want.sort();
    assert_eq!(counted, want, "bob's first ack (signed first) counts");
}
