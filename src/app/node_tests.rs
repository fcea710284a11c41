//! Unit tests of the node's decisions over the in-memory store.

use super::*;
use crate::adapters::memory::MemoryChunkStore;
use crate::domain::audit::verify_audit;
use crate::domain::ids::{AckToken, RequestId};
use crate::domain::keys::{MasterKey, VaultKeys};
use crate::domain::proof::prove;
use crate::domain::wire::{AuditBatch, AuditRequest, ProvenItem};

const NOW: u64 = 1_800_000_000_000;

fn setup(capacity: u64) -> (NodeService<MemoryChunkStore>, VaultKeys) {
    let svc = NodeService::new(
        NodeIdentity::generate(),
        Arc::new(MemoryChunkStore::new(capacity)),
        NodePolicy::default(),
        NOW - 1000,
    );
    (svc, MasterKey::from_bytes([4; 32]).derive())
}

/// A store request as it arrives, and the body it announces.
#[derive(Clone)]
struct Slot {
    wire: Vec<u8>,
    body: Vec<u8>,
}

fn store_req(keys: &VaultKeys, data: &[u8], slot: u8) -> (StoreRequest, Slot) {
    let s = keys.seal(data);
    let req = StoreRequest::for_body(keys.ack_token(), &s.ciphertext, slot, s.commitment, NOW + 60_000);
    let wire = req.encode();
    (req, Slot { wire, body: s.ciphertext })
}

fn offer(svc: &NodeService<MemoryChunkStore>, slot: &Slot, now: u64) -> StoreDecision {
    svc.handle_store(&slot.wire, &slot.body, now)
}

fn get_req(keys: &VaultKeys, target: NodeId, addrs: &[Addr], ts: u64) -> ProvenRequest {
    let mut req = ProvenRequest {
        purpose: Purpose::Get,
        request_id: RequestId::random(),
        timestamp_ms: ts,
        target,
        lease_expiry_ms: 0,
        items: vec![],
    };
    for a in addrs {
        let proof = prove(&keys.proof_secret(a), &req.context(a));
        req.items.push(ProvenItem { addr: *a, proof });
    }
    req
}

fn statuses_on(svc: &NodeService<MemoryChunkStore>, route: Route, out: ProvenOutcome) -> Vec<Status> {
    match out {
        ProvenOutcome::Get(plan) => {
            plan.into_iter().filter_map(|(a, ok)| svc.get_reply(a, ok, route)).map(|r| r.status).collect()
        }
        other => panic!("expected get replies, got {other:?}"),
    }
}

#[test]
fn store_then_redelivery_is_idempotent_and_other_slot_declined() {
    let (svc, keys) = setup(1 << 20);
    let (req, bytes) = store_req(&keys, b"chunk", 0);
    let StoreDecision::Stored(ack, _) = offer(&svc, &bytes, NOW) else { panic!("not stored") };
    assert!(ack.verify(&req.commitment));
    assert!(!ack.verify(&keys.seal(b"other").commitment));
    assert_eq!((ack.addr, ack.slot, ack.node), (req.addr, 0, svc.node_id()));
    assert!(matches!(offer(&svc, &bytes, NOW), StoreDecision::AlreadyHeld(..)));
    let (_, other_slot) = store_req(&keys, b"chunk", 1);
    // Declined, but with an ack of the slot it holds, so the owner learns of this holder.
    let StoreDecision::DeclineHeld(held, _) = offer(&svc, &other_slot, NOW) else { panic!("not declined") };
    assert_eq!(held.slot, ack.slot);
    assert!(held.verify(&req.commitment));
}

#[test]
fn invalid_store_requests_are_rejected_and_nothing_stored() {
    let (svc, keys) = setup(1 << 20);
    let (mut req, slot) = store_req(&keys, b"chunk", 0);
    let mut flipped = slot.body.clone();
    flipped[0] ^= 1;
    assert!(matches!(svc.handle_store(&slot.wire, &flipped, NOW), StoreDecision::Reject(_)));
    // A body of another length, even one that hashes right for some other request.
    assert!(matches!(svc.handle_store(&slot.wire, &slot.body[1..], NOW), StoreDecision::Reject(_)));
    req.lease_expiry_ms = NOW - 1;
    assert!(matches!(svc.handle_store(&req.encode(), &slot.body, NOW), StoreDecision::Reject(_)));
    req.lease_expiry_ms = NOW + 1000 * 24 * 3600 * 1000;
    assert!(matches!(svc.handle_store(&req.encode(), &slot.body, NOW), StoreDecision::Reject(_)));
    assert!(matches!(svc.handle_store(b"\x01\x0agarbage", &slot.body, NOW), StoreDecision::Reject(_)));
    assert_eq!(svc.store().usage().chunks, 0);
}

#[test]
fn full_node_declines_before_fetching_the_body() {
    let (svc, keys) = setup(100);
    let (_, bytes) = store_req(&keys, &[1u8; 500], 0);
    assert!(matches!(svc.claim_store(&bytes.wire, NOW), Claim::Decided(StoreDecision::Decline(_))));
}

#[test]
fn a_claimed_chunk_is_reserved_until_stored_or_dropped() {
    let (svc, keys) = setup(1 << 20);
    let (_, s0) = store_req(&keys, b"chunk", 0);
    let (_, s1) = store_req(&keys, b"chunk", 1);
    let Claim::Fetch(first) = svc.claim_store(&s0.wire, NOW) else { panic!("not claimed") };
    assert!(matches!(svc.claim_store(&s1.wire, NOW), Claim::Decided(StoreDecision::Decline(_))));
    // The body could not be fetched: the claim is dropped and the chunk is free again.
    drop(first);
    let Claim::Fetch(again) = svc.claim_store(&s1.wire, NOW) else { panic!("not claimed") };
    assert!(matches!(svc.store_body(again, &s1.body, NOW), StoreDecision::Stored(..)));
    // Held now: decided without a body.
    assert!(matches!(svc.claim_store(&s0.wire, NOW), Claim::Decided(StoreDecision::DeclineHeld(..))));
    assert!(matches!(svc.claim_store(&s1.wire, NOW), Claim::Decided(StoreDecision::AlreadyHeld(..))));
}

#[test]
fn get_needs_a_fresh_valid_proof_for_that_chunk() {
    let (svc, keys) = setup(1 << 20);
    let (a, bytes) = store_req(&keys, b"first", 0);
    offer(&svc, &bytes, NOW);
    let (b, bytes) = store_req(&keys, b"second", 0);
    offer(&svc, &bytes, NOW);
    let me = svc.node_id();

    let ok = get_req(&keys, me, &[a.addr, b.addr], NOW);
    assert_eq!(
        statuses_on(&svc, Route::Targeted, svc.handle_proven(&ok.encode(), Route::Targeted, ok.purpose, NOW)),
        vec![Status::Ok, Status::Ok]
    );
    // Replay of the same request.
    assert!(matches!(
        svc.handle_proven(&ok.encode(), Route::Targeted, ok.purpose, NOW),
        ProvenOutcome::Silent
    ));
    // Stale.
    let stale = get_req(&keys, me, &[a.addr], NOW - 10 * 60_000);
    assert!(matches!(
        svc.handle_proven(&stale.encode(), Route::Targeted, stale.purpose, NOW),
        ProvenOutcome::Silent
    ));
    // Proof for another chunk.
    let mut other = get_req(&keys, me, &[b.addr], NOW);
    other.items[0].addr = a.addr;
    assert_eq!(
        statuses_on(
            &svc,
            Route::Targeted,
            svc.handle_proven(&other.encode(), Route::Targeted, other.purpose, NOW)
        ),
        vec![Status::NotFound]
    );
    // Forged: a stranger's key.
    let stranger = MasterKey::from_bytes([5; 32]).derive();
    let forged = get_req(&stranger, me, &[a.addr], NOW);
    assert_eq!(
        statuses_on(
            &svc,
            Route::Targeted,
            svc.handle_proven(&forged.encode(), Route::Targeted, forged.purpose, NOW)
        ),
        vec![Status::NotFound]
    );
    // Addressed to another node.
    let elsewhere = get_req(&keys, NodeId([9; 32]), &[a.addr], NOW);
    assert!(matches!(
        svc.handle_proven(&elsewhere.encode(), Route::Targeted, elsewhere.purpose, NOW),
        ProvenOutcome::Silent
    ));
    // A stranger cannot tell "held" from "not held": both read NotFound.
    let absent = get_req(&stranger, me, &[Addr([1; 32])], NOW);
    assert_eq!(
        statuses_on(
            &svc,
            Route::Targeted,
            svc.handle_proven(&absent.encode(), Route::Targeted, absent.purpose, NOW)
        ),
        vec![Status::NotFound]
    );
    assert!(svc.stats.refused.load(Ordering::Relaxed) >= 2);
}

#[test]
fn broadcast_answers_only_what_is_held() {
    let (svc, keys) = setup(1 << 20);
    let (a, bytes) = store_req(&keys, b"held", 0);
    offer(&svc, &bytes, NOW);
    let req = get_req(&keys, NodeId::ANY, &[a.addr, Addr([3; 32])], NOW);
    assert_eq!(
        statuses_on(
            &svc,
            Route::Broadcast,
            svc.handle_proven(&req.encode(), Route::Broadcast, req.purpose, NOW)
        ),
        vec![Status::Ok]
    );
    let targeted = get_req(&keys, svc.node_id(), &[a.addr], NOW);
    assert!(matches!(
        svc.handle_proven(&targeted.encode(), Route::Broadcast, targeted.purpose, NOW),
        ProvenOutcome::Silent
    ));
}

fn audit_req(keys: &VaultKeys, target: NodeId, addr: Addr) -> AuditRequest {
    AuditRequest::build(&keys.proof_secret(&addr), target, addr, [7; 32], 4, NOW)
}

#[test]
fn audit_passes_honestly_and_fails_after_corruption() {
    let (svc, keys) = setup(1 << 22);
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7) as u8).collect();
    let (a, bytes) = store_req(&keys, &data, 0);
    offer(&svc, &bytes, NOW);
    let reply = svc.handle_audit(&audit_req(&keys, svc.node_id(), a.addr).encode(), NOW).unwrap();
    assert!(reply.verify_signature());
    assert_eq!(reply.status, Status::Ok);
    verify_audit(&a.addr.0, u64::from(a.len), &[7; 32], 4, &reply.proofs).unwrap();

    svc.store().corrupt(&a.addr);
    let reply = svc.handle_audit(&audit_req(&keys, svc.node_id(), a.addr).encode(), NOW).unwrap();
    assert_eq!(reply.status, Status::NotFound);
    assert!(svc.store().meta(&a.addr).unwrap().is_none(), "corrupt copy should be dropped");
}

/// A batch is answered item by item exactly as single challenges are: held and proven chunks with
/// proofs, the rest "not found"; a batch with any challenge for another node is dropped.
#[test]
fn audit_batches_answer_each_challenge() {
    let (svc, keys) = setup(1 << 22);
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 3) as u8).collect();
    let (a, bytes) = store_req(&keys, &data, 0);
    offer(&svc, &bytes, NOW);
    let unheld = Addr([9; 32]);
    let mut forged = audit_req(&keys, svc.node_id(), a.addr);
    forged.seed = [8; 32]; // the proof no longer matches the statement
    let batch = AuditBatch(vec![
        audit_req(&keys, svc.node_id(), a.addr),
        audit_req(&keys, svc.node_id(), unheld),
        forged,
    ]);
    let replies = svc.handle_audit_batch(&batch.encode(), NOW).expect("answered").0;
    assert_eq!(replies.len(), 3);
    assert!(replies.iter().all(|r| r.verify_signature() && r.node == svc.node_id()));
    assert_eq!(
        replies.iter().map(|r| r.status).collect::<Vec<_>>(),
        [Status::Ok, Status::NotFound, Status::NotFound]
    );
    verify_audit(&a.addr.0, u64::from(a.len), &[7; 32], 4, &replies[0].proofs).unwrap();
    // Replayed: the same request ids again are refused.
    assert!(svc.handle_audit_batch(&batch.encode(), NOW).is_none());
    let elsewhere =
        AuditBatch(vec![audit_req(&keys, svc.node_id(), a.addr), audit_req(&keys, NodeId([5; 32]), a.addr)]);
    assert!(svc.handle_audit_batch(&elsewhere.encode(), NOW).is_none());
    assert!(svc.handle_audit_batch(b"\x01\x08garbage", NOW).is_none());
}

#[test]
fn renew_and_delete_need_proofs() {
    let (svc, keys) = setup(1 << 20);
    let (a, bytes) = store_req(&keys, b"leased", 0);
    offer(&svc, &bytes, NOW);
    let mut renew = get_req(&keys, svc.node_id(), &[], NOW);
    renew.purpose = Purpose::Renew;
    renew.lease_expiry_ms = NOW + 3_600_000;
    let proof = prove(&keys.proof_secret(&a.addr), &renew.context(&a.addr));
    renew.items.push(ProvenItem { addr: a.addr, proof });
    let ProvenOutcome::Control(r) = svc.handle_proven(&renew.encode(), Route::Targeted, renew.purpose, NOW)
    else {
        panic!()
    };
    assert!(r.verify());
    assert_eq!(r.results, vec![(a.addr, Status::Ok)]);
    assert_eq!(svc.store().meta(&a.addr).unwrap().unwrap().lease_expiry_ms, NOW + 3_600_000);

    // A get proof cannot be reused to delete.
    let get = get_req(&keys, svc.node_id(), &[a.addr], NOW);
    let mut del = get.clone();
    del.purpose = Purpose::Delete;
    del.request_id = RequestId::random();
    let ProvenOutcome::Control(r) = svc.handle_proven(&del.encode(), Route::Targeted, del.purpose, NOW)
    else {
        panic!()
    };
    assert_eq!(r.results, vec![(a.addr, Status::NotFound)]);
    assert!(svc.store().meta(&a.addr).unwrap().is_some());

    let mut del = get_req(&keys, svc.node_id(), &[], NOW);
    del.purpose = Purpose::Delete;
    let proof = prove(&keys.proof_secret(&a.addr), &del.context(&a.addr));
    del.items.push(ProvenItem { addr: a.addr, proof });
    let ProvenOutcome::Control(r) = svc.handle_proven(&del.encode(), Route::Targeted, del.purpose, NOW)
    else {
        panic!()
    };
    assert_eq!(r.results, vec![(a.addr, Status::Ok)]);
    assert!(svc.store().meta(&a.addr).unwrap().is_none());
}

#[test]
fn expired_leases_are_swept() {
    let (svc, keys) = setup(1 << 20);
    let (a, bytes) = store_req(&keys, b"short", 0);
    offer(&svc, &bytes, NOW);
    assert_eq!(svc.sweep_expired(NOW), 0);
    assert_eq!(svc.sweep_expired(NOW + 60_001), 1);
    assert!(svc.store().meta(&a.addr).unwrap().is_none());
}

#[test]
fn random_bytes_on_every_handler_never_panic() {
    let (svc, keys) = setup(1 << 20);
    let (_, good) = store_req(&keys, b"x", 0);
    let mut state = 0x1234_5678_9abc_def1u64;
    for _ in 0..2000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut m = good.wire.clone();
        let i = (state as usize) % m.len();
        m[i] ^= (state >> 32) as u8 | 1;
        let _ = svc.handle_store(&m, &good.body, NOW);
        let _ = svc.handle_proven(&m[..i], Route::Targeted, Purpose::Get, NOW);
        let _ = svc.handle_audit(&m[..i], NOW);
    }
    let _ = AckToken([0; 16]);
}

#[test]
fn purpose_must_match_the_subject_and_broadcast_is_get_only() {
    let (svc, keys) = setup(1 << 20);
    let (a, bytes) = store_req(&keys, b"x", 0);
    offer(&svc, &bytes, NOW);
    let del =
        ProvenRequest::build(Purpose::Delete, NodeId::ANY, NOW, 0, &[(a.addr, keys.proof_secret(&a.addr))]);
    assert!(matches!(
        svc.handle_proven(&del.encode(), Route::Targeted, Purpose::Get, NOW),
        ProvenOutcome::Silent
    ));
    assert!(matches!(
        svc.handle_proven(&del.encode(), Route::Broadcast, Purpose::Delete, NOW),
        ProvenOutcome::Silent
    ));
    assert!(svc.store().meta(&a.addr).unwrap().is_some());
}

#[test]
fn proofless_requests_do_not_consume_replay_memory() {
    let svc = NodeService::new(
        NodeIdentity::generate(),
        Arc::new(MemoryChunkStore::new(1 << 20)),
        NodePolicy { replay_capacity: 4, ..NodePolicy::default() },
        NOW - 1000,
    );
    let keys = MasterKey::from_bytes([4; 32]).derive();
    let (a, bytes) = store_req(&keys, b"y", 0);
    offer(&svc, &bytes, NOW);
    let stranger = MasterKey::from_bytes([8; 32]).derive();
    for _ in 0..50 {
        let junk = get_req(&stranger, svc.node_id(), &[a.addr], NOW);
        svc.handle_proven(&junk.encode(), Route::Targeted, Purpose::Get, NOW);
    }
    let ok = get_req(&keys, svc.node_id(), &[a.addr], NOW);
    let out = svc.handle_proven(&ok.encode(), Route::Targeted, Purpose::Get, NOW);
    assert_eq!(statuses_on(&svc, Route::Targeted, out), vec![Status::Ok]);
}

fn root_record(keys: &VaultKeys, version: u64) -> Vec<u8> {
    use crate::domain::snapshot::RootRecord;
    RootRecord { version, epoch: 0, closed: false, written_ms: NOW, snapshots: Vec::new() }
        .seal(keys.root_signing_key(), &keys.root_body_key())
}

#[test]
fn a_node_keeps_only_the_newest_validly_signed_root_record_filed_under_its_vault() {
    use crate::domain::snapshot::{root_locator, RootRecord};
    let (svc, keys) = setup(1 << 20);
    let locator = root_locator(&keys.root_signing_key().verifying_key());
    let vk = keys.root_signing_key().verifying_key();
    let held = |svc: &NodeService<MemoryChunkStore>| {
        svc.root(&locator).map(|r| RootRecord::verified_version(&r, &vk).unwrap())
    };
    assert!(svc.keep_root(&locator, &root_record(&keys, 2)));
    assert_eq!(held(&svc), Some(2));
    // Older or equal versions do not replace it (no rollback through a node).
    assert!(!svc.keep_root(&locator, &root_record(&keys, 1)));
    assert!(!svc.keep_root(&locator, &root_record(&keys, 2)));
    assert_eq!(held(&svc), Some(2));
    // Another vault's record filed under this vault's locator, a forgery claiming this vault's
    // key, and garbage: all dropped.
    let other = MasterKey::from_bytes([9; 32]).derive();
    assert!(!svc.keep_root(&locator, &root_record(&other, 50)));
    let mut forged = root_record(&other, 60);
    forged[1..33].copy_from_slice(vk.as_bytes());
    assert!(!svc.keep_root(&locator, &forged));
    assert!(!svc.keep_root(&locator, &[1u8; 300]));
    assert!(!svc.keep_root(&locator, &[]));
    assert_eq!(held(&svc), Some(2));
    assert!(svc.keep_root(&locator, &root_record(&keys, 3)));
    assert_eq!(held(&svc), Some(3));
    // The other vault's record under its own locator is kept separately.
    let other_loc = root_locator(&other.root_signing_key().verifying_key());
    assert!(svc.keep_root(&other_loc, &root_record(&other, 50)));
    assert_eq!(held(&svc), Some(3));
}

#[test]
fn a_vault_over_its_store_rate_is_declined_and_others_are_not() {
    let policy = NodePolicy { store_rate: RateLimit { per_sec: 1, burst: 1 }, ..NodePolicy::default() };
    let svc =
        NodeService::new(NodeIdentity::generate(), Arc::new(MemoryChunkStore::new(1 << 30)), policy, NOW);
    let (busy, other) = (MasterKey::from_bytes([5; 32]).derive(), MasterKey::from_bytes([6; 32]).derive());
    // The burst is raised to one largest message: a few big chunks fit, then the vault waits.
    let big = vec![7u8; 400_000];
    let mut outcomes = Vec::new();
    for i in 0..6u8 {
        let mut data = big.clone();
        data[0] = i;
        outcomes.push(offer(&svc, &store_req(&busy, &data, 0).1, NOW));
    }
    let limited = outcomes.iter().filter(|d| matches!(d, StoreDecision::Decline(RATE_LIMITED))).count();
    assert!((1..6).contains(&limited), "{outcomes:?}");
    assert_eq!(svc.stats.refusals(Reason::RateLimited), limited as u64);
    assert!(matches!(offer(&svc, &store_req(&other, &big, 0).1, NOW), StoreDecision::Stored(..)));
    // Refilled after long enough: 1 byte per second, so try far later.
    let mut data = big.clone();
    data[0] = 99;
    let later = NOW + 2_000_000_000;
    let (mut req, slot) = store_req(&busy, &data, 0);
    req.lease_expiry_ms = later + 60_000;
    assert!(matches!(svc.handle_store(&req.encode(), &slot.body, later), StoreDecision::Stored(..)));
}

#[test]
fn a_vault_of_the_nodes_own_house_is_declined_before_its_body_is_fetched() {
    let own = MasterKey::from_bytes([5; 32]).derive();
    let friend = MasterKey::from_bytes([6; 32]).derive();
    let policy = NodePolicy { own_vaults: vec![own.ack_token()], ..NodePolicy::default() };
    let svc =
        NodeService::new(NodeIdentity::generate(), Arc::new(MemoryChunkStore::new(1 << 30)), policy, NOW);
    let mine = store_req(&own, b"the house's own chunk", 0).1;
    assert!(matches!(svc.claim_store(&mine.wire, NOW), Claim::Decided(StoreDecision::Decline(OWN_HOUSE))));
    assert_eq!(svc.stats.refusals(Reason::OwnHouse), 1);
    assert!(matches!(
        offer(&svc, &store_req(&friend, b"a friend's chunk", 0).1, NOW),
        StoreDecision::Stored(..)
    ));
}

#[test]
fn a_request_source_over_its_rate_is_refused_before_any_proof_is_checked() {
    let policy = NodePolicy { request_rate: RateLimit { per_sec: 1, burst: 1 }, ..NodePolicy::default() };
    let svc =
        NodeService::new(NodeIdentity::generate(), Arc::new(MemoryChunkStore::new(1 << 20)), policy, NOW);
    let admitted = (0..200).filter(|_| svc.admit_request(b"_INBOX_a", 200, NOW)).count();
    assert!((10..200).contains(&admitted), "{admitted}");
    assert!(svc.admit_request(b"_INBOX_b", 200, NOW));
    assert_eq!(svc.stats.refusals(Reason::RateLimited), 200 - admitted as u64);
}

#[test]
fn every_drop_decline_and_refusal_counts_its_reason() {
    let (svc, keys) = setup(300_000);
    let me = svc.node_id();
    let count = |r: Reason| svc.stats.refusals(r);
    let (a, bytes) = store_req(&keys, &[1u8; 100_000], 0);
    assert!(matches!(offer(&svc, &bytes, NOW), StoreDecision::Stored(..)));
    // Store: garbage, oversized, bad hash, lease already over, lease too long.
    let body = bytes.body.clone();
    svc.handle_store(b"garbage", &body, NOW);
    svc.handle_store(&vec![0u8; MAX_REQUEST + 1], &body, NOW);
    let (fresh, fresh_slot) = store_req(&keys, &[3u8; 100_000], 0);
    let mut flipped = fresh_slot.body.clone();
    flipped[0] ^= 1;
    svc.handle_store(&fresh.encode(), &flipped, NOW);
    let mut old = a.clone();
    old.lease_expiry_ms = NOW - 1;
    svc.handle_store(&old.encode(), &body, NOW);
    let mut long = a.clone();
    long.lease_expiry_ms = NOW + 500 * 24 * 3600 * 1000;
    svc.handle_store(&long.encode(), &body, NOW);
    // Declines: the same chunk for another slot; a chunk that does not fit.
    let (_, other_slot) = store_req(&keys, &[1u8; 100_000], 1);
    assert!(matches!(offer(&svc, &other_slot, NOW), StoreDecision::DeclineHeld(..)));
    let (_, big) = store_req(&keys, &[2u8; 250_000], 0);
    assert!(matches!(offer(&svc, &big, NOW), StoreDecision::Decline(_)));
    for (r, n) in [
        (Reason::Malformed, 1),
        (Reason::Oversized, 1),
        (Reason::BadHash, 1),
        (Reason::Expired, 1),
        (Reason::BadLease, 1),
        (Reason::HeldOtherSlot, 1),
        (Reason::Full, 1),
    ] {
        assert_eq!(count(r), n, "{}", r.name());
    }
    // Gets: forged proof, replay, stale, misaddressed; a chunk not held.
    let stranger = MasterKey::from_bytes([5; 32]).derive();
    let forged = get_req(&stranger, me, &[a.addr], NOW);
    svc.handle_proven(&forged.encode(), Route::Targeted, Purpose::Get, NOW);
    let ok = get_req(&keys, me, &[a.addr], NOW);
    svc.handle_proven(&ok.encode(), Route::Targeted, Purpose::Get, NOW);
    svc.handle_proven(&ok.encode(), Route::Targeted, Purpose::Get, NOW);
    let stale = get_req(&keys, me, &[a.addr], NOW - 10 * 60_000);
    svc.handle_proven(&stale.encode(), Route::Targeted, Purpose::Get, NOW);
    let elsewhere = get_req(&keys, NodeId([9; 32]), &[a.addr], NOW);
    svc.handle_proven(&elsewhere.encode(), Route::Targeted, Purpose::Get, NOW);
    let absent = get_req(&keys, me, &[Addr([1; 32])], NOW);
    svc.handle_proven(&absent.encode(), Route::Targeted, Purpose::Get, NOW);
    svc.handle_proven(b"junk", Route::Targeted, Purpose::Get, NOW);
    for (r, n) in
        [(Reason::BadProof, 1), (Reason::Replayed, 1), (Reason::Stale, 1), (Reason::Misaddressed, 1)]
    {
        assert_eq!(count(r), n, "{}", r.name());
    }
    assert_eq!(count(Reason::Malformed), 2);
    assert_eq!(svc.stats.not_held.load(Ordering::Relaxed), 1);
    // The legacy totals keep their meaning and add up to their reasons.
    let of = |rs: &[Reason]| rs.iter().map(|r| count(*r)).sum::<u64>();
    assert_eq!(svc.stats.declined.load(Ordering::Relaxed), of(&[Reason::HeldOtherSlot, Reason::Full]));
    assert_eq!(svc.stats.refused.load(Ordering::Relaxed), 2, "one bad proof, one chunk not held");
    assert_eq!(
        svc.stats.dropped.load(Ordering::Relaxed),
        of(&[
            Reason::Malformed,
            Reason::Oversized,
            Reason::BadHash,
            Reason::Expired,
            Reason::BadLease,
            Reason::Replayed,
            Reason::Stale,
            Reason::Misaddressed
        ])
    );
    assert_eq!(count(Reason::RateLimited), 0);
}

#[test]
fn a_stale_targeted_request_gets_the_nodes_signed_clock_and_nothing_else() {
    let (svc, keys) = setup(1 << 20);
    let me = svc.node_id();
    let addr = Addr([9; 32]);
    // Ten minutes behind the node's clock (the node runs ahead): stale.
    let stale = get_req(&keys, me, &[addr], NOW - 600_000);
    let r = svc.stale_answer(b"src", &stale.encode(), NOW).expect("a stale answer");
    assert_eq!((r.node, r.request_id, r.node_ms), (me, stale.request_id, NOW));
    assert!(r.verify());
    // Fresh, or addressed elsewhere (or to any node), or garbage: no answer.
    assert!(svc.stale_answer(b"src", &get_req(&keys, me, &[addr], NOW).encode(), NOW).is_none());
    let other = get_req(&keys, NodeId([1; 32]), &[addr], NOW - 600_000);
    assert!(svc.stale_answer(b"src", &other.encode(), NOW).is_none());
    assert!(svc.stale_answer(b"src", &get_req(&keys, NodeId::ANY, &[addr], 0).encode(), NOW).is_none());
    assert!(svc.stale_answer(b"src", b"\x01\x03garbage", NOW).is_none());
    // Audits too: the answer names the (first) challenge's id.
    let mut audit = audit_req(&keys, me, addr);
    audit.timestamp_ms = NOW + 600_000;
    let r = svc.stale_answer(b"src", &audit.encode(), NOW).expect("a stale audit is answered");
    assert_eq!(r.request_id, audit.request_id);
    let batch = AuditBatch(vec![audit.clone()]);
    assert!(svc.stale_answer(b"other", &batch.encode(), NOW).is_some());
}

#[test]
fn stale_answers_are_rate_limited_per_source() {
    let (svc, keys) = setup(1 << 20);
    let stale = get_req(&keys, svc.node_id(), &[Addr([9; 32])], NOW - 600_000).encode();
    let answered = (0..100).filter(|_| svc.stale_answer(b"flood", &stale, NOW).is_some()).count();
    assert_eq!(answered as u64, STALE_BURST);
    assert!(svc.stale_answer(b"owner", &stale, NOW).is_some(), "another source is still answered");
    assert!(svc.stale_answer(b"flood", &stale, NOW + 1000).is_some(), "refilled a second later");
}
