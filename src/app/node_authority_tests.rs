//! Attacks on the node's rights (issue 24): a share's read secret never renews, deletes or
//! audits a chunk held with a control commitment; store requests raise no lease; replies are
//! bound to their request; the stand-in commitment is secret; one source cannot fill the replay
//! memory for everyone.

use super::super::*;
use crate::adapters::memory::MemoryChunkStore;
use crate::domain::ids::RequestId;
use crate::domain::keys::{MasterKey, VaultKeys};
use crate::domain::wire::{request_hash, AuditRequest, ControlRequest};

const NOW: u64 = 1_800_000_000_000;

fn service(policy: NodePolicy) -> NodeService<MemoryChunkStore> {
    NodeService::new(NodeIdentity::generate(), Arc::new(MemoryChunkStore::new(1 << 22)), policy, NOW - 1000)
}

fn owner() -> VaultKeys {
    MasterKey::from_bytes([4; 32]).derive()
}

/// How a chunk is stored: with the owner's control commitment, or as before control commitments
/// existed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stored {
    Controlled,
    Legacy,
}

/// Stores `data` at `svc` with slot 0 and a lease of a minute; returns its addr.
fn store(svc: &NodeService<MemoryChunkStore>, keys: &VaultKeys, data: &[u8], how: Stored) -> Addr {
    let s = keys.seal(data);
    let control = keys.proof_secret(&s.addr).control_commitment().filter(|_| how == Stored::Controlled);
    let req = StoreRequest::for_body(keys.ack_token(), &s.ciphertext, 0, s.commitment, NOW + 60_000)
        .with_control(control);
    assert!(matches!(svc.handle_store(&req.encode(), &s.ciphertext, NOW), StoreDecision::Stored(..)));
    s.addr
}

/// What a share recipient holds for a chunk: the read secret rebuilt from the shared seed.
fn shared(keys: &VaultKeys, addr: &Addr) -> ProofSecret {
    ProofSecret::from_seed(&keys.data().proof_seed(addr))
}

fn proven(svc: &NodeService<MemoryChunkStore>, purpose: Purpose, addr: Addr, secret: ProofSecret) -> Vec<u8> {
    let lease = if purpose == Purpose::Renew { NOW + 1 } else { 0 };
    ProvenRequest::build(purpose, svc.node_id(), NOW, lease, &[(addr, secret)]).encode()
}

/// The one status of a renew or delete answer (`None`: silent).
fn control_status(svc: &NodeService<MemoryChunkStore>, bytes: &[u8], purpose: Purpose) -> Option<Status> {
    match svc.handle_proven(bytes, Route::Targeted, purpose, NOW) {
        ProvenOutcome::Control(r) => {
            assert!(r.verify());
            Some(r.results[0].1)
        }
        _ => None,
    }
}

fn get_status(svc: &NodeService<MemoryChunkStore>, addr: Addr, secret: ProofSecret) -> Option<Status> {
    match svc.handle_proven(&proven(svc, Purpose::Get, addr, secret), Route::Targeted, Purpose::Get, NOW) {
        ProvenOutcome::Get(plan) => {
            plan.into_iter().find_map(|(a, ok)| svc.get_reply(a, ok, Route::Targeted))
        }
        _ => None,
    }
    .map(|r| r.status)
}

fn audit_status(svc: &NodeService<MemoryChunkStore>, addr: Addr, secret: &ProofSecret) -> Status {
    let req = AuditRequest::build(secret, svc.node_id(), addr, [7; 32], 4, NOW);
    svc.handle_audit(&req.encode(), NOW).expect("answered").status
}

/// A share recipient's own control "secret" for a chunk, and a request naming it.
fn recipient_control(
    svc: &NodeService<MemoryChunkStore>,
    purpose: Purpose,
    addr: Addr,
    read: ProofSecret,
) -> Vec<u8> {
    let forged = read.with_control(ProofSecret::from_seed(&[0x99; 32]));
    let lease = if purpose == Purpose::Renew { NOW + 1 } else { 0 };
    ControlRequest::build(purpose, svc.node_id(), NOW, lease, &[(addr, forged)])
        .expect("has control")
        .encode()
}

/// Issue 24 item 1. On the code before control commitments, the shared read secret `x` was the
/// only secret, and the recipient's delete, renew and audit answered Ok (the old
/// `renew_and_delete_need_proofs` shows a proof with `x` deleting).
#[test]
fn a_share_recipient_reads_but_cannot_renew_delete_or_audit() {
    let (svc, keys) = (service(NodePolicy::default()), owner());
    let addr = store(&svc, &keys, b"shared photo", Stored::Controlled);
    assert_eq!(get_status(&svc, addr, shared(&keys, &addr)), Some(Status::Ok));
    for purpose in [Purpose::Renew, Purpose::Delete] {
        let plain = proven(&svc, purpose, addr, shared(&keys, &addr));
        assert_eq!(control_status(&svc, &plain, purpose), Some(Status::NotFound), "{purpose:?}");
        let own_q = recipient_control(&svc, purpose, addr, shared(&keys, &addr));
        assert_eq!(
            control_status(&svc, &own_q, purpose),
            Some(Status::NotFound),
            "{purpose:?} with its own Q"
        );
    }
    assert_eq!(audit_status(&svc, addr, &shared(&keys, &addr)), Status::NotFound);
    let held = svc.store().meta(&addr).unwrap().expect("still held");
    assert_eq!(held.lease_expiry_ms, NOW + 60_000, "lease unchanged");
    // The owner, with the control secret, still renews, audits and deletes.
    assert_eq!(audit_status(&svc, addr, &keys.proof_secret(&addr)), Status::Ok);
    let renew = ControlRequest::build(
        Purpose::Renew,
        svc.node_id(),
        NOW,
        NOW + 3_600_000,
        &[(addr, keys.proof_secret(&addr))],
    );
    assert_eq!(control_status(&svc, &renew.unwrap().encode(), Purpose::Renew), Some(Status::Ok));
    assert_eq!(svc.store().meta(&addr).unwrap().unwrap().lease_expiry_ms, NOW + 3_600_000);
    let delete =
        ControlRequest::build(Purpose::Delete, svc.node_id(), NOW, 0, &[(addr, keys.proof_secret(&addr))]);
    assert_eq!(control_status(&svc, &delete.unwrap().encode(), Purpose::Delete), Some(Status::Ok));
    assert!(svc.store().meta(&addr).unwrap().is_none());
}

/// Chunks stored before control commitments: the legacy rule (the read secret controls) holds
/// until the owner's first renew, delete or audit proves both secrets and names Q; from then on
/// the read secret only reads. A stranger who knows P but not `x` cannot attach a Q of its own.
#[test]
fn legacy_chunks_are_upgraded_by_the_owners_next_control_request() {
    let (svc, keys) = (service(NodePolicy::default()), owner());
    let a = store(&svc, &keys, b"old chunk", Stored::Legacy);
    let b = store(&svc, &keys, b"another old chunk", Stored::Legacy);
    assert_eq!(svc.store().meta(&a).unwrap().unwrap().control, None);
    // Legacy rule: the read secret still renews.
    let renew = proven(&svc, Purpose::Renew, a, shared(&keys, &a));
    assert_eq!(control_status(&svc, &renew, Purpose::Renew), Some(Status::Ok));
    // A stranger's control request (garbage read proof, its own Q) is refused and attaches nothing.
    let stranger = MasterKey::from_bytes([8; 32]).derive();
    let forged =
        ControlRequest::build(Purpose::Renew, svc.node_id(), NOW, NOW + 5, &[(a, stranger.proof_secret(&a))]);
    assert_eq!(control_status(&svc, &forged.unwrap().encode(), Purpose::Renew), Some(Status::NotFound));
    assert_eq!(svc.store().meta(&a).unwrap().unwrap().control, None);
    // The owner's renew upgrades `a`, the owner's audit upgrades `b`.
    let q = |addr: &Addr| keys.proof_secret(addr).control_commitment();
    let owner_renew =
        ControlRequest::build(Purpose::Renew, svc.node_id(), NOW, NOW + 7_000, &[(a, keys.proof_secret(&a))]);
    assert_eq!(control_status(&svc, &owner_renew.unwrap().encode(), Purpose::Renew), Some(Status::Ok));
    assert_eq!(svc.store().meta(&a).unwrap().unwrap().control, q(&a));
    assert_eq!(audit_status(&svc, b, &keys.proof_secret(&b)), Status::Ok);
    assert_eq!(svc.store().meta(&b).unwrap().unwrap().control, q(&b));
    // From now on the read secret only reads.
    for addr in [a, b] {
        let delete = proven(&svc, Purpose::Delete, addr, shared(&keys, &addr));
        assert_eq!(control_status(&svc, &delete, Purpose::Delete), Some(Status::NotFound));
        let own_q = recipient_control(&svc, Purpose::Delete, addr, shared(&keys, &addr));
        assert_eq!(control_status(&svc, &own_q, Purpose::Delete), Some(Status::NotFound));
        assert_eq!(audit_status(&svc, addr, &shared(&keys, &addr)), Status::NotFound);
        assert_eq!(get_status(&svc, addr, shared(&keys, &addr)), Some(Status::Ok));
    }
}

/// Issue 24 item 2. Before, a store request for a held chunk with the matching commitment
/// raised the held lease to the one asked for (up to 400 days), with no proof at all.
#[test]
fn a_store_request_for_a_held_chunk_never_raises_its_lease() {
    let (svc, keys) = (service(NodePolicy::default()), owner());
    for how in [Stored::Controlled, Stored::Legacy] {
        let data: &[u8] = if how == Stored::Legacy { b"legacy lease" } else { b"lease" };
        let addr = store(&svc, &keys, data, how);
        let s = keys.seal(data);
        let far = NOW + 300 * 24 * 3600 * 1000;
        for (slot, control) in [(0, None), (0, keys.proof_secret(&addr).control_commitment()), (1, None)] {
            let req = StoreRequest::for_body(AckToken([9; 16]), &s.ciphertext, slot, s.commitment, far)
                .with_control(control);
            let ack = match svc.handle_store(&req.encode(), &s.ciphertext, NOW) {
                StoreDecision::AlreadyHeld(ack, _) | StoreDecision::DeclineHeld(ack, _) => ack,
                other => panic!("expected an ack of the chunk held, got {other:?}"),
            };
            assert_eq!(ack.lease_expiry_ms, NOW + 60_000, "the ack states the lease held");
            assert_eq!(svc.store().meta(&addr).unwrap().unwrap().lease_expiry_ms, NOW + 60_000);
            // The ack covers Q only where the node holds the Q asked for.
            let q = (how == Stored::Controlled).then_some(control).flatten();
            assert!(ack.verify_held(&s.commitment, q.as_ref()));
        }
        // A store request naming another Q than the one held is declined outright.
        if how == Stored::Controlled {
            let other = Some(ProofSecret::from_seed(&[0x77; 32]).commitment());
            let req = StoreRequest::for_body(AckToken([9; 16]), &s.ciphertext, 0, s.commitment, far)
                .with_control(other);
            assert!(matches!(svc.handle_store(&req.encode(), &s.ciphertext, NOW), StoreDecision::Decline(_)));
        }
    }
}

/// Issue 24 item 3 (node side): a control request's and a controlled audit's signed answers
/// carry the hash of the exact request bytes; a copy with a garbage proof gets an answer bound
/// to the copy, which the owner rejects (`adapters::nats::fabric` tests).
#[test]
fn signed_answers_are_bound_to_the_request_they_answer() {
    let (svc, keys) = (service(NodePolicy::default()), owner());
    let addr = store(&svc, &keys, b"bound", Stored::Controlled);
    let renew = ControlRequest::build(
        Purpose::Renew,
        svc.node_id(),
        NOW,
        NOW + 9,
        &[(addr, keys.proof_secret(&addr))],
    );
    let bytes = renew.unwrap().encode();
    let ProvenOutcome::Control(r) = svc.handle_proven(&bytes, Route::Targeted, Purpose::Renew, NOW) else {
        panic!()
    };
    assert_eq!(r.request, Some(request_hash(&bytes)));
    let req = AuditRequest::build(&keys.proof_secret(&addr), svc.node_id(), addr, [1; 32], 4, NOW);
    let mut copy = req.clone();
    copy.request_id = RequestId::random();
    copy.control.as_mut().unwrap().proof = copy.proof;
    let answer = svc.handle_audit(&copy.encode(), NOW).expect("answered");
    assert_eq!(answer.status, Status::NotFound);
    assert_eq!(answer.request, Some(request_hash(&copy.encode())));
    assert_ne!(answer.request, Some(request_hash(&req.encode())));
    let answer = svc.handle_audit(&req.encode(), NOW).expect("answered");
    assert_eq!((answer.status, answer.request), (Status::Ok, Some(request_hash(&req.encode()))));
    // Older requests get older (unbound) answers, which the owner no longer sends for.
    let old = AuditRequest::build(&shared(&keys, &addr), svc.node_id(), addr, [2; 32], 4, NOW);
    assert_eq!(svc.handle_audit(&old.encode(), NOW).expect("answered").request, None);
}

/// Issue 24 item 4. Before, the stand-in commitment came from a public constant, so anyone
/// could make proofs that verify against it and time "not held" against "held".
#[test]
fn the_stand_in_commitment_is_secret_and_new_for_every_service() {
    let constant =
        ProofSecret::from_seed(&blake3::derive_key("quloud v1 node dummy commitment", &[])).commitment();
    let (a, b) = (service(NodePolicy::default()), service(NodePolicy::default()));
    assert_ne!(a.dummy, b.dummy);
    assert_ne!(a.dummy, constant);
    assert_ne!(b.dummy, constant);
}

/// Issue 24 item 1 (replay memory). Before, one pool of ids: a source sending valid proofs
/// (a share recipient's gets) filled it and every other source's requests were dropped as Busy.
#[test]
fn one_source_with_valid_proofs_cannot_lock_others_out() {
    let policy = NodePolicy { replay_capacity: 64, replay_per_source: 8, ..NodePolicy::default() };
    let (svc, keys) = (service(policy), owner());
    let addr = store(&svc, &keys, b"popular", Stored::Controlled);
    let get = |source: &[u8]| {
        let bytes = proven(&svc, Purpose::Get, addr, shared(&keys, &addr));
        matches!(
            svc.handle_proven_from(source, &bytes, Route::Targeted, Purpose::Get, NOW),
            ProvenOutcome::Get(_)
        )
    };
    let served = (0..64).filter(|_| get(b"_INBOX_recipient")).count();
    assert_eq!(served, 8, "the flooding source keeps to its share");
    for _ in 0..8 {
        assert!(get(b"_INBOX_owner"), "another source is still served");
    }
}

/// A renew, delete or audit that names no node (target `ANY`) is dropped even on the node's own
/// subject, with the owner's own secrets and a valid proof: such a request would be good at
/// every holder of the chunk. Gets may still name no node (the broadcast fallback).
#[test]
fn control_requests_that_name_no_node_are_dropped() {
    let (svc, keys) = (service(NodePolicy::default()), owner());
    let addr = store(&svc, &keys, b"held", Stored::Controlled);
    let secret = keys.proof_secret(&addr);
    for (purpose, lease) in [(Purpose::Renew, NOW + 3_600_000), (Purpose::Delete, 0)] {
        let control = ControlRequest::build(purpose, NodeId::ANY, NOW, lease, &[(addr, secret.clone())]);
        let bytes = control.expect("has control").encode();
        assert!(matches!(svc.handle_proven(&bytes, Route::Targeted, purpose, NOW), ProvenOutcome::Silent));
    }
    let legacy = store(&svc, &keys, b"held without Q", Stored::Legacy);
    for (purpose, lease) in [(Purpose::Renew, NOW + 3_600_000), (Purpose::Delete, 0)] {
        let plain =
            ProvenRequest::build(purpose, NodeId::ANY, NOW, lease, &[(legacy, keys.proof_secret(&legacy))]);
        let outcome = svc.handle_proven(&plain.encode(), Route::Targeted, purpose, NOW);
        assert!(matches!(outcome, ProvenOutcome::Silent), "{purpose:?} naming no node");
    }
    let audit = AuditRequest::build(&secret, NodeId::ANY, addr, [7; 32], 4, NOW);
    assert!(svc.handle_audit(&audit.encode(), NOW).is_none());
    for a in [addr, legacy] {
        let held = svc.store().meta(&a).unwrap().expect("still held");
        assert_eq!(held.lease_expiry_ms, NOW + 60_000, "lease unchanged");
    }
    assert!(svc.stats.dropped.load(Ordering::Relaxed) >= 5);
    // A get naming no node is still answered on the node's own subject.
    let get = ProvenRequest::build(Purpose::Get, NodeId::ANY, NOW, 0, &[(addr, secret)]);
    let outcome = svc.handle_proven(&get.encode(), Route::Targeted, Purpose::Get, NOW);
    assert!(matches!(outcome, ProvenOutcome::Get(ref plan) if plan == &vec![(addr, true)]));
}
