//! Flooding publishers against a real node process over real NATS: more store requests than the
//! node has room for, and one client sending requests far over its rate. The node stays within
//! its capacity and its memory bound, and keeps serving everyone else.

mod common;

use common::*;
use futures::StreamExt;
use quloud::adapters::nats::{body_subject, node_subject, STORE_SUBJECT};
use quloud::domain::ids::AckToken;
use quloud::domain::keys::VaultKeys;
use quloud::domain::proof::Purpose;
use quloud::domain::unix_ms;
use quloud::domain::wire::{GetReply, ProvenRequest, Status, StoreRequest};
use quloud::ports::fabric::{ChunkFabric, Publish, StoreGoal};
use std::time::{Duration, Instant, SystemTime};

fn now() -> u64 {
    unix_ms(SystemTime::now())
}

/// Peak resident memory of a process, in bytes (VmHWM).
fn peak_rss(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// The latest value of `key=` in the node's periodic "node counters" log line.
fn counter(node: &Node, key: &str) -> u64 {
    let log = node.log();
    let line = log.lines().rev().find(|l| l.contains("node counters")).unwrap_or_default();
    strip_ansi(line)
        .split(' ')
        .find_map(|w| w.strip_prefix(&format!("{key}=")).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

async fn store_one(
    owner: &impl ChunkFabric,
    keys: &VaultKeys,
    seed: u64,
) -> quloud::domain::seal::SealedChunk {
    let c = keys.seal(&bytes(500_000, seed));
    let p = Publish { addr: c.addr, commitment: c.commitment, ciphertext: &c.ciphertext };
    owner.store(p, StoreGoal::fresh(1)).await.expect("an honest chunk is stored");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_flood_beyond_free_space_leaves_the_node_serving_within_capacity() {
    let capacity: u64 = 8 << 20;
    let fabric = Fabric::start_with(1, "8MiB", &["--sweep-interval", "1s"]);
    let node = &fabric.nodes[0];
    let keys = vault(40);
    let owner = owner(&keys, test_options(&fabric.url())).await;
    let honest = store_one(&owner, &keys, 1).await;

    // 120 valid store requests of ~500 KB from 30 made-up vaults: 60 MB for 7.5 MiB of room.
    let client = async_nats::connect(fabric.url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let mut acks = Vec::new();
    for i in 0..120u64 {
        let flooder = vault(100 + (i % 30) as u8);
        let c = flooder.seal(&bytes(500_000, 1000 + i));
        let req = StoreRequest::for_body(
            AckToken([(i % 30) as u8; 16]),
            &c.ciphertext,
            0,
            c.commitment,
            now() + 86_400_000,
        );
        acks.push(js.publish(body_subject(&c.addr), c.ciphertext.into()).await.unwrap());
        let msg = async_nats::jetstream::message::PublishMessage::build()
            .payload(req.encode().into())
            .message_id(format!("flood-{i}"));
        acks.push(js.send_publish(STORE_SUBJECT, msg).await.unwrap());
        assert!(node.body_bytes() <= capacity, "the node went over its capacity during the flood");
    }
    for a in acks {
        a.await.expect("the broker took the flood");
    }
    // The node fills up to its capacity, declines the rest, and never goes beyond it.
    poll_until(Duration::from_secs(60), Duration::from_millis(200), "the node to fill up", || {
        node.body_bytes() > capacity / 2 && counter(node, "declined") > 20
    });
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        assert!(node.body_bytes() <= capacity, "the node went over its capacity: {}", node.body_bytes());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Still serving: the honest owner's chunk comes back at once.
    let got = tokio::time::timeout(
        Duration::from_secs(10),
        owner.get(&[(honest.addr, keys.proof_secret(&honest.addr))], &[node.id]),
    )
    .await
    .expect("a get during the flood hangs")
    .unwrap();
    assert_eq!(got.len(), 1, "the node stopped serving during the flood");
    assert_eq!(got[0].1, honest.ciphertext);
    let mut node = fabric.nodes.into_iter().next().unwrap();
    assert!(node.is_running(), "the node died in the flood:\n{}", node.log());
    let rss = peak_rss(node.pid().expect("node running"));
    assert!(rss < 256 << 20, "the node's memory peaked at {} MiB during the flood", rss >> 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_request_rate_is_held_back_and_others_are_served() {
    let fabric = Fabric::start_with(1, "1GiB", &["--request-rate", "40", "--sweep-interval", "1s"]);
    let node = fabric.nodes[0].id;
    let (alice, mallory) = (vault(50), vault(51));
    let alice_owner = owner(&alice, test_options(&fabric.url())).await;
    let mallory_owner = owner(&mallory, test_options(&fabric.url())).await;
    let a = store_one(&alice_owner, &alice, 2).await;
    let m = store_one(&mallory_owner, &mallory, 3).await;

    // Mallory fires 300 valid gets at once from one inbox prefix.
    let spam = async_nats::ConnectOptions::new()
        .custom_inbox_prefix("_INBOX_mallory")
        .connect(fabric.url())
        .await
        .unwrap();
    let inbox = "_INBOX_mallory.replies".to_string();
    let mut replies = spam.subscribe(format!("{inbox}.>")).await.unwrap();
    for i in 0..300u64 {
        let req =
            ProvenRequest::build(Purpose::Get, node, now(), 0, &[(m.addr, mallory.proof_secret(&m.addr))]);
        spam.publish_with_reply(node_subject(&node, "get"), format!("{inbox}.{i}"), req.encode().into())
            .await
            .unwrap();
    }
    spam.flush().await.unwrap();

    // Alice, meanwhile, is served.
    let got = tokio::time::timeout(
        Duration::from_secs(10),
        alice_owner.get(&[(a.addr, alice.proof_secret(&a.addr))], &[node]),
    )
    .await
    .expect("alice's get hangs")
    .unwrap();
    assert_eq!(got.len(), 1, "alice was not served while mallory flooded");

    let mut answered = 0;
    while let Ok(Some(r)) = tokio::time::timeout(Duration::from_secs(2), replies.next()).await {
        assert_eq!(GetReply::decode(&r.payload).unwrap().status, Status::Ok);
        answered += 1;
    }
    // A burst of 129 items (the largest request) at 2 per single-chunk get, plus the refill.
    assert!((20..=120).contains(&answered), "mallory got {answered} of 300 gets answered");
    let n = &fabric.nodes[0];
    poll_until(Duration::from_secs(10), Duration::from_millis(200), "the rate-limited counter", || {
        counter(n, "rate_limited") >= 150
    });
}
