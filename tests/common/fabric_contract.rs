//! The contract every owner-side `ChunkFabric` adapter keeps, one suite run against each: the
//! memory fabric (a unit test, `src/adapters/memory/fabric_tests.rs`) and the NATS fabric with a
//! real nats-server and real `quloud node` processes (`tests/fabric_contract.rs`).
//!
//! Both include this file with `#[path]`; the including module brings the names it uses into
//! scope (`crate::…` in the library, `quloud::…` in the integration test).

use super::*;

/// What the suite needs of a fabric under test beyond the port.
pub trait Bench {
    /// The adapter under test.
    type Fabric: ChunkFabric;
    /// The owner's fabric.
    fn fabric(&self) -> &Self::Fabric;
    /// The storage nodes (at least four, healthy, with room).
    fn nodes(&self) -> Vec<NodeId>;
    /// Damages `node`'s stored copy of `addr` (it may damage everything `node` stores).
    fn corrupt_stored(&mut self, node: NodeId, addr: Addr);
    /// Makes `node` silent: still there, but it answers nothing any more.
    fn silence(&mut self, node: NodeId);
    /// How long the fabric waits for a node's reply.
    fn reply_timeout(&self) -> Duration;
}

/// Runs the whole contract; the steps that damage nodes come last.
pub async fn run<B: Bench>(b: &mut B) {
    assert!(b.nodes().len() >= 4, "the contract needs four nodes");
    assert!(b.fabric().link().connected, "a new fabric is connected");
    assert!(b.fabric().up_within(Duration::ZERO).await);
    let keys = MasterKey::from_bytes([77; 32]).derive();
    let a = keys.seal(&pattern(120_000, 1));
    let acks = stores_to_quorum_on_distinct_nodes(b, &a).await;
    let holders: Vec<NodeId> = acks.iter().map(|x| x.node).collect();
    gets_return_the_verified_ciphertext(b, &keys, &a, &holders).await;
    audits_pass_where_held(b, &keys, &a, &holders).await;
    renews_and_deletes(b, &keys, &a, &holders).await;
    a_controlled_chunk_obeys_its_owner_only(b, &keys).await;
    roots_publish_and_fetch_the_newest(b, &keys).await;
    the_lease_is_swapped_by_compare_and_set(b).await;
    a_corrupted_copy_fails_its_audit(b, &keys).await;
    a_silent_node_times_out_within_the_bound(b, &keys).await;
}

/// Deterministic bytes.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 13) as u8 ^ seed).collect()
}

fn publish(c: &SealedChunk) -> Publish<'_> {
    Publish { addr: c.addr, commitment: c.commitment, ciphertext: &c.ciphertext }
}

fn now_ms() -> u64 {
    unix_ms(std::time::SystemTime::now())
}

async fn stores_to_quorum_on_distinct_nodes<B: Bench>(b: &B, a: &SealedChunk) -> Vec<StoreAck> {
    let acks = b.fabric().store(publish(a), StoreGoal::fresh(3)).await.expect("quorum of three");
    let nodes: HashSet<NodeId> = acks.iter().map(|x| x.node).collect();
    assert_eq!(nodes.len(), 3, "three distinct nodes: {acks:?}");
    assert!(nodes.iter().all(|n| b.nodes().contains(n)), "acks from unknown nodes: {acks:?}");
    let slots: HashSet<u8> = acks.iter().map(|x| x.slot).collect();
    assert_eq!(slots, HashSet::from([0, 1, 2]));
    assert!(acks.iter().all(|x| x.addr == a.addr && x.verify(&a.commitment)), "unverified acks");
    // A goal the held replicas already meet publishes nothing and returns no new ack.
    let held: Vec<(NodeId, u8)> = acks.iter().map(|x| (x.node, x.slot)).collect();
    let goal = StoreGoal { replicas: 3, held: &held, exclude: &[], placement: None };
    assert!(b.fabric().store(publish(a), goal).await.expect("goal met").is_empty());
    acks
}

async fn gets_return_the_verified_ciphertext<B: Bench>(
    b: &B,
    keys: &VaultKeys,
    a: &SealedChunk,
    holders: &[NodeId],
) {
    let item = [(a.addr, keys.proof_secret(&a.addr))];
    for n in holders {
        let got = b.fabric().get(&item, &[*n]).await.expect("get");
        assert_eq!(got.len(), 1, "{n:?} serves its copy");
        assert!(got[0].0 == a.addr && got[0].1[..] == a.ciphertext[..], "the stored ciphertext");
        assert_eq!(keys.open(&a.id, &a.addr, &got[0].1).expect("opens"), pattern(120_000, 1));
    }
    let got = b.fabric().get(&item, &[]).await.expect("broadcast get");
    assert!(got.len() == 1 && got[0].1[..] == a.ciphertext[..], "a broadcast finds a holder");
    // Without the chunk's secret, no node hands it out.
    let wrong = [(a.addr, keys.proof_secret(&Addr([9; 32])))];
    assert!(b.fabric().get(&wrong, &[holders[0]]).await.expect("get").is_empty(), "served without proof");
}

async fn audits_pass_where_held<B: Bench>(b: &B, keys: &VaultKeys, a: &SealedChunk, holders: &[NodeId]) {
    let (secret, len) = (keys.proof_secret(&a.addr), a.ciphertext.len() as u64);
    for n in holders {
        assert_eq!(b.fabric().audit(*n, a.addr, &secret, len).await.expect("audit"), AuditVerdict::Passed);
    }
    let other = b.nodes().into_iter().find(|n| !holders.contains(n)).expect("a node without it");
    assert_eq!(b.fabric().audit(other, a.addr, &secret, len).await.expect("audit"), AuditVerdict::NotFound);
    let unknown = Addr([3; 32]);
    let items = [(a.addr, secret, len), (unknown, keys.proof_secret(&unknown), 1000)];
    let verdicts = b.fabric().audit_many(holders[0], &items).await.expect("audits");
    assert_eq!(verdicts, vec![AuditVerdict::Passed, AuditVerdict::NotFound]);
}

async fn renews_and_deletes<B: Bench>(b: &B, keys: &VaultKeys, a: &SealedChunk, holders: &[NodeId]) {
    let item = [(a.addr, keys.proof_secret(&a.addr))];
    let lease = now_ms() + 3_600_000;
    assert_eq!(b.fabric().renew(holders[0], &item, lease).await.expect("renew"), vec![(a.addr, Status::Ok)]);
    let other = b.nodes().into_iter().find(|n| !holders.contains(n)).expect("a node without it");
    assert_eq!(b.fabric().renew(other, &item, lease).await.expect("renew"), vec![(a.addr, Status::NotFound)]);
    assert_eq!(b.fabric().delete(holders[0], &item).await.expect("delete"), vec![(a.addr, Status::Ok)]);
    let (secret, len) = (keys.proof_secret(&a.addr), a.ciphertext.len() as u64);
    let verdict = b.fabric().audit(holders[0], a.addr, &secret, len).await.expect("audit");
    assert_eq!(verdict, AuditVerdict::NotFound, "a deleted copy is gone");
    assert_eq!(b.fabric().delete(holders[0], &item).await.expect("delete"), vec![(a.addr, Status::NotFound)]);
    // The other replicas still serve it.
    let got = b.fabric().get(&item, &[holders[0]]).await.expect("get");
    assert!(got.len() == 1 && got[0].1[..] == a.ciphertext[..], "the other replicas serve it");
}

/// A chunk stored with its control commitment Q: the acks cover Q; the owner (read and control
/// secrets) audits, renews and deletes it; a share (read secret only) reads it but can neither
/// renew, delete nor audit it.
async fn a_controlled_chunk_obeys_its_owner_only<B: Bench>(b: &B, keys: &VaultKeys) {
    let c = keys.seal(&pattern(60_000, 4));
    let (owner, len) = (keys.proof_secret(&c.addr), c.ciphertext.len() as u64);
    let q = owner.control_commitment();
    assert!(q.is_some(), "the owner's secret carries a control secret");
    let acks = b.fabric().store_controlled(publish(&c), q, StoreGoal::fresh(2)).await.expect("quorum of two");
    assert_eq!(acks.len(), 2);
    assert!(acks.iter().all(|x| x.verify_held(&c.commitment, q.as_ref())), "acks cover Q: {acks:?}");
    let holders: Vec<NodeId> = acks.iter().map(|x| x.node).collect();
    let share = ProofSecret::from_seed(&keys.data().proof_seed(&c.addr));
    let read = [(c.addr, share.clone())];
    assert_eq!(b.fabric().get(&read, &[holders[0]]).await.expect("get").len(), 1, "a share reads");
    let refused = vec![(c.addr, Status::NotFound)];
    let lease = now_ms() + 3_600_000;
    assert_eq!(b.fabric().renew(holders[0], &read, lease).await.expect("renew"), refused);
    assert_eq!(b.fabric().delete(holders[0], &read).await.expect("delete"), refused);
    let verdict = b.fabric().audit(holders[0], c.addr, &share, len).await.expect("audit");
    assert_eq!(verdict, AuditVerdict::NotFound, "a share audits nothing");
    for n in &holders {
        assert_eq!(b.fabric().audit(*n, c.addr, &owner, len).await.expect("audit"), AuditVerdict::Passed);
    }
    let verdicts = b.fabric().audit_many(holders[1], &[(c.addr, owner.clone(), len)]).await.expect("audits");
    assert_eq!(verdicts, vec![AuditVerdict::Passed]);
    let item = [(c.addr, owner.clone())];
    assert_eq!(b.fabric().renew(holders[0], &item, lease).await.expect("renew"), vec![(c.addr, Status::Ok)]);
    assert_eq!(b.fabric().delete(holders[0], &item).await.expect("delete"), vec![(c.addr, Status::Ok)]);
    let verdict = b.fabric().audit(holders[0], c.addr, &owner, len).await.expect("audit");
    assert_eq!(verdict, AuditVerdict::NotFound, "a deleted copy is gone");
}

async fn roots_publish_and_fetch_the_newest<B: Bench>(b: &B, keys: &VaultKeys) {
    let vk = keys.root_signing_key().verifying_key();
    let locator = root_locator(&vk);
    let record = |version| {
        RootRecord { version, epoch: 0, closed: false, written_ms: now_ms(), snapshots: Vec::new() }
            .seal(keys.root_signing_key(), &keys.root_body_key())
    };
    let (r1, r2) = (record(1), record(2));
    b.fabric().publish_root(&locator, &r1).await.expect("publish");
    b.fabric().publish_root(&locator, &r2).await.expect("publish");
    let served = b.fabric().fetch_roots(&locator).await.expect("fetch");
    let choice = choose_root(&served, &vk);
    assert_eq!(choice.newest.map(|(v, _)| v.version), Some(2), "the newest record: {served:?}");
    assert!(choice.refused.is_empty(), "only the records published are served");
    let history = served.iter().find(|(_, rs)| rs.len() >= 2).map(|(_, rs)| rs.clone());
    assert_eq!(history, Some(vec![r1, r2]), "a source keeps the history, oldest first");
    let elsewhere = b
        .fabric()
        .fetch_roots(&root_locator(
            &MasterKey::from_bytes([78; 32]).derive().root_signing_key().verifying_key(),
        ))
        .await;
    assert!(elsewhere.expect("fetch").iter().all(|(_, rs)| rs.is_empty()), "another vault has none");
}

/// The writer lease: absent at first, swapped only at the revision read, so of two homes that
/// read the same revision exactly one takes it.
async fn the_lease_is_swapped_by_compare_and_set<B: Bench>(b: &B) {
    let f = b.fabric();
    let locator = "0123456789abcdef0123456789abcdef";
    assert_eq!(f.lease(locator).await.expect("read"), None, "no lease at first");
    let first = match f.swap_lease(locator, b"lease one", 0).await.expect("swap") {
        LeaseSwap::Swapped(r) => r,
        LeaseSwap::Conflict => panic!("the first lease conflicts"),
    };
    assert!(first > 0, "a revision names the lease");
    let held = f.lease(locator).await.expect("read").expect("held");
    assert_eq!((held.revision, &held.record[..]), (first, &b"lease one"[..]));
    // A second home that read nothing, or an old revision, loses.
    assert_eq!(f.swap_lease(locator, b"stale", 0).await.expect("swap"), LeaseSwap::Conflict);
    let second = match f.swap_lease(locator, b"lease two", first).await.expect("swap") {
        LeaseSwap::Swapped(r) => r,
        LeaseSwap::Conflict => panic!("a swap at the revision read conflicts"),
    };
    assert!(second > first, "revisions grow");
    assert_eq!(f.swap_lease(locator, b"late", first).await.expect("swap"), LeaseSwap::Conflict);
    let held = f.lease(locator).await.expect("read").expect("held");
    assert_eq!((held.revision, &held.record[..]), (second, &b"lease two"[..]));
    assert_eq!(f.lease("fedcba9876543210fedcba9876543210").await.expect("read"), None, "per vault");
}

async fn a_corrupted_copy_fails_its_audit<B: Bench>(b: &mut B, keys: &VaultKeys) {
    let c = keys.seal(&pattern(70_000, 2));
    let acks = b.fabric().store(publish(&c), StoreGoal::fresh(1)).await.expect("stored");
    let node = acks[0].node;
    let (secret, len) = (keys.proof_secret(&c.addr), c.ciphertext.len() as u64);
    assert_eq!(b.fabric().audit(node, c.addr, &secret, len).await.expect("audit"), AuditVerdict::Passed);
    b.corrupt_stored(node, c.addr);
    assert_ne!(b.fabric().audit(node, c.addr, &secret, len).await.expect("audit"), AuditVerdict::Passed);
    // Damaged bytes never come back from a get.
    let got = b.fabric().get(&[(c.addr, secret)], &[node]).await.expect("get");
    assert!(got.iter().all(|(_, ct)| ct[..] == c.ciphertext[..]), "damaged bytes served");
}

async fn a_silent_node_times_out_within_the_bound<B: Bench>(b: &mut B, keys: &VaultKeys) {
    let d = keys.seal(&pattern(50_000, 3));
    let acks = b.fabric().store(publish(&d), StoreGoal::fresh(2)).await.expect("stored");
    let silent = acks[0].node;
    b.silence(silent);
    let bound = b.reply_timeout() * 2 + Duration::from_secs(2);
    let (secret, len) = (keys.proof_secret(&d.addr), d.ciphertext.len() as u64);
    let started = Instant::now();
    let r = b.fabric().audit(silent, d.addr, &secret, len).await;
    assert!(matches!(r, Err(FabricError::Timeout(n)) if n == silent), "audit of a silent node: {r:?}");
    assert!(started.elapsed() <= bound, "the audit took {:?}", started.elapsed());
    let started = Instant::now();
    let r = b.fabric().renew(silent, &[(d.addr, secret.clone())], now_ms() + 60_000).await;
    assert!(matches!(r, Err(FabricError::Timeout(n)) if n == silent), "renew at a silent node: {r:?}");
    assert!(started.elapsed() <= bound, "the renew took {:?}", started.elapsed());
    // A get hinted at the silent node is answered by the other replica.
    let started = Instant::now();
    let got = b.fabric().get(&[(d.addr, secret)], &[silent]).await.expect("get");
    assert!(got.len() == 1 && got[0].1[..] == d.ciphertext[..], "the other replica serves it");
    assert!(started.elapsed() <= bound, "the get took {:?}", started.elapsed());
}
