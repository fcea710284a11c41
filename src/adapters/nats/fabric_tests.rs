//! The owner's checks of node replies: audit answers bound to the challenge sent, store acks
//! with the lease a node already held.

use super::*;
use crate::domain::identity::NodeIdentity;

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

fn pending(control: Option<Commitment>, since_ms: u64) -> Pending {
    Pending {
        commitment: ProofSecret::from_seed(&[5; 32]).commitment(),
        control,
        min_lease_ms: since_ms + 10_000_000_000,
        since_ms,
        acks: HashMap::new(),
        changed: watch::channel(0).0,
        users: 1,
        body_published: false,
    }
}

/// A node that already held the chunk acks the lease it holds (it no longer raises it for an
/// unproven store request): such a fresh ack counts, and the owner renews the replica with a
/// proof later. An old ack for an older lease, replayed, still does not count.
#[tokio::test]
async fn a_fresh_ack_of_the_lease_held_counts_and_an_old_one_does_not() {
    let node = NodeIdentity::generate();
    let q = owner_secret().control_commitment();
    let p = pending(q, 10_000_000);
    let addr = Addr([1; 32]);
    let map: PendingMap = Arc::new(Mutex::new(HashMap::from([(addr, p)])));
    let commitment = ProofSecret::from_seed(&[5; 32]).commitment();
    let held = StoreAck::sign_held(&node, addr, (&commitment, q.as_ref()), 0, 13_600_000, 10_000_100);
    deliver(&map, &None, held).await;
    assert_eq!(map.lock().unwrap()[&addr].acks.len(), 1);
    let other = NodeIdentity::generate();
    let old = StoreAck::sign_held(&other, addr, (&commitment, q.as_ref()), 1, 13_600_000, 1_000);
    deliver(&map, &None, old).await;
    assert_eq!(map.lock().unwrap()[&addr].acks.len(), 1, "a replayed old ack counted");
    let ending = StoreAck::sign_held(&other, addr, (&commitment, q.as_ref()), 1, 10_001_000, 9_990_000);
    deliver(&map, &None, ending).await;
    assert_eq!(map.lock().unwrap()[&addr].acks.len(), 1, "an ack of a lease about to end counted");
    // A node holding the chunk from before control commitments acks without Q: it counts.
    let legacy = StoreAck::sign(&other, addr, &commitment, 1, 20_000_000, 10_000_100);
    deliver(&map, &None, legacy).await;
    assert_eq!(map.lock().unwrap()[&addr].acks.len(), 2);
    // An ack naming another Q does not.
    let third = NodeIdentity::generate();
    let wrong_q = ProofSecret::from_seed(&[8; 32]).commitment();
    let wrong = StoreAck::sign_held(&third, addr, (&commitment, Some(&wrong_q)), 2, 20_000_000, 10_000_100);
    deliver(&map, &None, wrong).await;
    assert_eq!(map.lock().unwrap()[&addr].acks.len(), 2);
}
