//! Proof-gated retrieval and hostile input against real node processes over real NATS.

mod common;

use common::*;
use futures::StreamExt;
use quloud::adapters::nats::{body_subject, node_subject, BROADCAST_GET, STORE_SUBJECT};
use quloud::domain::ids::{AckToken, Addr, NodeId, RequestId};
use quloud::domain::keys::VaultKeys;
use quloud::domain::proof::Purpose;
use quloud::domain::unix_ms;
use quloud::domain::wire::{GetReply, ProvenRequest, Status, StoreAck, StoreRequest};
use quloud::ports::fabric::{ChunkFabric, Publish, StoreGoal};
use std::time::{Duration, SystemTime};

fn now() -> u64 {
    unix_ms(SystemTime::now())
}

/// Sends raw request bytes to a node and returns the reply statuses (empty when it stays silent).
async fn ask(client: &async_nats::Client, subject: String, payload: Vec<u8>) -> Vec<(Status, Vec<u8>)> {
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await.unwrap();
    client.publish_with_reply(subject, inbox, payload.into()).await.unwrap();
    let mut out = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(1500), sub.next()).await {
        let Ok(r) = GetReply::decode(&m.payload) else {
            // A targeted request outside the window gets the node's signed clock, and no chunk.
            assert!(quloud::domain::wire::StaleReply::decode(&m.payload).is_ok(), "not a get reply");
            continue;
        };
        out.push((r.status, r.ciphertext));
    }
    out
}

fn get(keys: &VaultKeys, target: NodeId, addr: Addr, ts: u64) -> ProvenRequest {
    ProvenRequest::build(Purpose::Get, target, ts, 0, &[(addr, keys.proof_secret(&addr))])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrieval_needs_a_fresh_valid_unreplayed_proof_for_that_chunk() {
    let fabric = Fabric::start(1, "1GiB");
    let keys = vault(20);
    let owner = owner(&keys, test_options(&fabric.url())).await;
    let a = keys.seal(&bytes(100_000, 20));
    let b = keys.seal(&bytes(100_000, 21));
    for c in [&a, &b] {
        owner
            .store(
                Publish { addr: c.addr, commitment: c.commitment, ciphertext: &c.ciphertext },
                StoreGoal::fresh(1),
            )
            .await
            .unwrap();
    }
    let client = owner.client();
    let node = fabric.nodes[0].id;
    let subject = node_subject(&node, "get");

    // Valid.
    let ok = get(&keys, node, a.addr, now());
    let r = ask(client, subject.clone(), ok.encode()).await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].0, Status::Ok);
    assert_eq!(r[0].1, a.ciphertext);
    // Replayed: silent.
    assert!(ask(client, subject.clone(), ok.encode()).await.is_empty(), "replay must be refused");
    // Same proof replayed to the broadcast subject (another node could be listening): silent.
    assert!(ask(client, BROADCAST_GET.into(), ok.encode()).await.is_empty());
    // Stale.
    let stale = get(&keys, node, a.addr, now() - 10 * 60_000);
    assert!(ask(client, subject.clone(), stale.encode()).await.is_empty(), "stale must be refused");
    // From the future.
    let future = get(&keys, node, a.addr, now() + 10 * 60_000);
    assert!(ask(client, subject.clone(), future.encode()).await.is_empty());
    // Forged: a stranger's secret.
    let forged = get(&vault(99), node, a.addr, now());
    assert_eq!(ask(client, subject.clone(), forged.encode()).await, vec![(Status::NotFound, vec![])]);
    // Altered: flip a bit of the proof's scalar.
    let mut altered = get(&keys, node, a.addr, now()).encode();
    let last = altered.len() - 1;
    altered[last] ^= 1;
    let r = ask(client, subject.clone(), altered).await;
    assert!(r.iter().all(|(s, _)| *s != Status::Ok), "altered proof served data");
    // Other chunk's proof: proof for b presented for a.
    let mut other = get(&keys, node, b.addr, now());
    other.items[0].addr = a.addr;
    assert_eq!(ask(client, subject.clone(), other.encode()).await, vec![(Status::NotFound, vec![])]);
    // Proof bound to another node.
    let elsewhere = get(&keys, NodeId([7; 32]), a.addr, now());
    assert!(ask(client, subject.clone(), elsewhere.encode()).await.is_empty());
    // And the node still serves the honest owner.
    let again = get(&keys, node, a.addr, now());
    assert_eq!(ask(client, subject, again.encode()).await[0].0, Status::Ok);
}

fn junk(len: usize, seed: u64) -> Vec<u8> {
    bytes(len, seed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_messages_on_every_subject_leave_nodes_serving_and_nothing_stored() {
    let fabric = Fabric::start(2, "1GiB");
    let keys = vault(21);
    let owner = owner(&keys, test_options(&fabric.url())).await;
    let client = owner.client().clone();
    let js = async_nats::jetstream::new(client.clone());
    let good = keys.seal(&bytes(50_000, 30));
    let valid =
        StoreRequest::for_body(AckToken([1; 16]), &good.ciphertext, 0, good.commitment, now() + 3_600_000);
    let mut hostile: Vec<Vec<u8>> =
        vec![vec![], junk(1, 1), junk(300, 2), junk(1_000_000, 3), valid.encode()[..100].to_vec()];
    let mut wrong_version = valid.encode();
    wrong_version[0] = 9;
    hostile.push(wrong_version);
    let mut long_lease = valid.clone();
    long_lease.lease_expiry_ms = u64::MAX;
    hostile.push(long_lease.encode());
    let mut oversized_claim = valid.encode();
    let at = oversized_claim.len() - 4;
    oversized_claim[at..].copy_from_slice(&u32::MAX.to_le_bytes());
    hostile.push(oversized_claim);
    let mut trailing = valid.encode();
    trailing.extend_from_slice(b"extra");
    hostile.push(trailing);
    // Well-formed requests whose body is wrong: the valid request's body subject carries bytes
    // that do not hash to its addr; a request announces another length than its body has; a
    // request's body was never published (dropped after a few deliveries).
    let mut flipped = good.ciphertext.clone();
    flipped[10] ^= 1;
    js.publish(body_subject(&good.addr), flipped.into()).await.unwrap().await.unwrap();
    hostile.push(valid.encode());
    let other = keys.seal(&bytes(20_000, 31));
    let mut wrong_len = StoreRequest::for_body(
        AckToken([1; 16]),
        &other.ciphertext,
        0,
        other.commitment,
        valid.lease_expiry_ms,
    );
    js.publish(body_subject(&other.addr), other.ciphertext.clone().into()).await.unwrap().await.unwrap();
    wrong_len.len += 1;
    hostile.push(wrong_len.encode());
    let never = keys.seal(&bytes(20_000, 32));
    hostile.push(
        StoreRequest::for_body(
            AckToken([1; 16]),
            &never.ciphertext,
            0,
            never.commitment,
            valid.lease_expiry_ms,
        )
        .encode(),
    );
    // A body larger than any chunk is refused by the broker itself.
    let huge = js.publish(body_subject(&never.addr), junk(1_100_000, 4).into()).await;
    assert!(huge.is_err() || huge.unwrap().await.is_err(), "the broker kept an oversized body");

    for (i, h) in hostile.iter().enumerate() {
        let ack = js
            .send_publish(
                STORE_SUBJECT,
                async_nats::jetstream::message::PublishMessage::build()
                    .payload(h.clone().into())
                    .message_id(format!("hostile-{i}")),
            )
            .await
            .unwrap();
        // The store stream itself refuses a request larger than any valid one.
        let kept = ack.await;
        assert_eq!(kept.is_ok(), h.len() < 1024, "store request {i} of {} bytes: {kept:?}", h.len());
    }
    // Badly signed ack on this vault's ack subject.
    let mut forged_ack = StoreAck::sign(
        &quloud::domain::identity::NodeIdentity::generate(),
        good.addr,
        &good.commitment,
        0,
        now() + 1000,
        now(),
    );
    forged_ack.slot = 1;
    client
        .publish(quloud::adapters::nats::ack_subject(&keys.ack_token()), forged_ack.encode().into())
        .await
        .unwrap();
    // Garbage on node request subjects and the broadcast subject.
    for n in &fabric.nodes {
        for op in ["get", "audit", "audits", "renew", "delete", "bogus"] {
            for h in &hostile[..6] {
                client
                    .publish_with_reply(node_subject(&n.id, op), client.new_inbox(), h.clone().into())
                    .await
                    .unwrap();
            }
        }
    }
    for h in &hostile[..6] {
        client.publish_with_reply(BROADCAST_GET, client.new_inbox(), h.clone().into()).await.unwrap();
    }
    // Garbage root records filed under this vault (kept by the broker's root stream, read by
    // every node) and garbage root requests.
    let locator = quloud::domain::snapshot::root_locator(&keys.root_signing_key().verifying_key());
    for h in &hostile[..6] {
        let subject = quloud::adapters::nats::root_subject(&locator);
        if let Ok(ack) = js.publish(subject, h.clone().into()).await {
            let _ = ack.await; // oversized ones are refused by the stream itself
        }
        let ask_roots = quloud::adapters::nats::roots_request_subject(&locator);
        client.publish_with_reply(ask_roots, client.new_inbox(), h.clone().into()).await.unwrap();
    }
    let mut ask_bad = ProvenRequest::build(Purpose::Get, NodeId::ANY, now(), 0, &[]);
    ask_bad.request_id = RequestId([0; 16]);
    client.publish(BROADCAST_GET, ask_bad.encode().into()).await.unwrap();
    client.flush().await.unwrap();

    // The hostile store requests are all terminated and leave nothing behind (the one whose body
    // never came after a few deliveries, 0.5 s apart).
    let mut stream = js.get_stream(quloud::adapters::nats::STORE_STREAM).await.unwrap();
    let mut drained = false;
    for _ in 0..750 {
        if stream.info().await.unwrap().state.messages == 0 {
            drained = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(drained, "hostile store requests were not cleared from the work queue");
    for n in &fabric.nodes {
        assert!(n.bodies().is_empty(), "a hostile message was stored");
    }

    // Every node is alive and serves an honest round trip.
    for n in &mut fabric.nodes.iter() {
        assert!(n.log().contains("dropped message"), "node should log what it dropped");
    }
    let said = |what: &str| fabric.nodes.iter().any(|n| n.log().contains(what));
    assert!(said("store body"), "a node should say it dropped a body that is not the announced one");
    assert!(said("store request whose body is gone"), "a node should say it dropped a request without body");
    let acks = owner
        .store(
            Publish { addr: good.addr, commitment: good.commitment, ciphertext: &good.ciphertext },
            StoreGoal::fresh(2),
        )
        .await
        .expect("nodes still store");
    assert_eq!(acks.len(), 2);
    for n in &fabric.nodes {
        let got = owner.get(&[(good.addr, keys.proof_secret(&good.addr))], &[n.id]).await.unwrap();
        assert_eq!(got.len(), 1, "node still serves");
    }
    // No node kept a garbage root record.
    let served = owner.fetch_roots(&locator).await.unwrap();
    assert!(
        served.iter().all(|(source, _)| source == "the broker"),
        "a node kept a garbage root record: {served:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_or_replayed_acks_do_not_fake_quorum() {
    let fabric = Fabric::start(1, "1GiB");
    let keys = vault(22);
    let mut opts = test_options(&fabric.url());
    opts.store_deadline = Duration::from_secs(5);
    let owner = owner(&keys, opts).await;
    let client = owner.client().clone();
    let c = keys.seal(&bytes(40_000, 40));
    let stranger = quloud::domain::identity::NodeIdentity::generate();
    let other_commitment = keys.seal(b"something else").commitment;
    let subject = quloud::adapters::nats::ack_subject(&keys.ack_token());
    let forge = async {
        for _ in 0..20 {
            // Signed over another commitment.
            let a = StoreAck::sign(&stranger, c.addr, &other_commitment, 1, now() + 86_400_000, now());
            client.publish(subject.clone(), a.encode().into()).await.unwrap();
            // Right commitment, but a bad signature.
            let mut b = StoreAck::sign(&stranger, c.addr, &c.commitment, 1, now() + 86_400_000, now());
            b.signature[0] ^= 1;
            client.publish(subject.clone(), b.encode().into()).await.unwrap();
            // Right commitment, signed, but for an old lease (a replayed ack).
            let old = StoreAck::sign(&stranger, c.addr, &c.commitment, 1, now() + 1000, now() - 60_000);
            client.publish(subject.clone(), old.encode().into()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let store = owner.store(
        Publish { addr: c.addr, commitment: c.commitment, ciphertext: &c.ciphertext },
        StoreGoal::fresh(2),
    );
    let (result, ()) = tokio::join!(store, forge);
    match result {
        Err(quloud::ports::fabric::FabricError::Quorum { got, .. }) => assert_eq!(got, 1),
        other => panic!("forged acks counted towards quorum: {other:?}"),
    }
}

/// A node (or anyone on the bus) answering a get with bytes that do not hash to the addr is
/// ignored: the owner's fabric never hands them on (its reader opens fetched chunks without
/// hashing them again), waits for an honest holder, and returns nothing when there is none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_that_do_not_match_the_addr_are_never_returned_by_a_get() {
    let fabric = Fabric::start(1, "1GiB");
    let keys = vault(22);
    let owner = owner(&keys, test_options(&fabric.url())).await;
    let held = keys.seal(&bytes(100_000, 22));
    let absent = keys.seal(&bytes(100_000, 23));
    let p = Publish { addr: held.addr, commitment: held.commitment, ciphertext: &held.ciphertext };
    owner.store(p, StoreGoal::fresh(1)).await.unwrap();

    // The liar answers both its own subject and the broadcast, first and with altered bytes.
    let liar = NodeId([7; 32]);
    let client = async_nats::connect(fabric.url()).await.unwrap();
    let mut own = client.subscribe(node_subject(&liar, "get")).await.unwrap();
    let mut any = client.subscribe(BROADCAST_GET).await.unwrap();
    client.flush().await.unwrap();
    let lies = tokio::spawn(async move {
        loop {
            let msg = tokio::select! { Some(m) = own.next() => m, Some(m) = any.next() => m, else => break };
            let (Some(reply), Ok(req)) = (msg.reply, ProvenRequest::decode(&msg.payload)) else { continue };
            for item in req.items {
                let mut ciphertext = bytes(100_016, 99);
                ciphertext[0] ^= 1;
                let lie = GetReply { node: liar, addr: item.addr, status: Status::Ok, ciphertext };
                client.publish(reply.clone(), lie.encode().into()).await.unwrap();
            }
        }
    });

    let got = owner.get(&[(held.addr, keys.proof_secret(&held.addr))], &[liar]).await.unwrap();
    assert_eq!(got.len(), 1, "the honest node's copy is found after the liar's is dropped");
    assert_eq!(got[0].0, held.addr);
    assert_eq!(&got[0].1[..], &held.ciphertext[..], "only bytes that match the addr come back");

    let none = owner.get(&[(absent.addr, keys.proof_secret(&absent.addr))], &[liar]).await.unwrap();
    assert!(
        none.is_empty(),
        "a chunk only the liar claims to hold is not retrieved: {} answer(s)",
        none.len()
    );
    lies.abort();
}
