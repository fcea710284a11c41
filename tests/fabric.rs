//! The fabric end to end: a real nats-server with JetStream and real `quloud node` processes;
//! and `quloud up`, the one-machine fabric, as a user runs it: signals at any phase, a second
//! `up` of the same home, `kill -9`, children that fail or die, and its port across restarts.

mod common;

use common::up::*;
use common::*;
use quloud::domain::ids::{Addr, NodeId};
use quloud::domain::seal::SealedChunk;
use quloud::ports::fabric::{AuditVerdict, ChunkFabric, FabricError, Publish, StoreGoal};
use std::collections::HashSet;
use std::fs::{self, File};
use std::process::Command;
use std::time::{Duration, Instant};

fn publish(c: &SealedChunk) -> Publish<'_> {
    Publish { addr: c.addr, commitment: c.commitment, ciphertext: &c.ciphertext }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_of_three_distinct_nodes_then_retrieve_and_audit() {
    let fabric = Fabric::start(3, "1GiB");
    let keys = vault(1);
    let owner = owner(&keys, test_options(&fabric.url())).await;
    let chunk = keys.seal(&bytes(300_000, 1));
    let acks = owner.store(publish(&chunk), StoreGoal::fresh(3)).await.expect("quorum");
    let nodes: HashSet<NodeId> = acks.iter().map(|a| a.node).collect();
    assert_eq!(nodes.len(), 3, "acks must come from 3 distinct nodes");
    assert_eq!(nodes, fabric.node_ids().into_iter().collect());
    let slots: HashSet<u8> = acks.iter().map(|a| a.slot).collect();
    assert_eq!(slots, HashSet::from([0, 1, 2]));
    assert!(acks.iter().all(|a| a.verify(&chunk.commitment) && a.addr == chunk.addr));
    // The ciphertext crossed the broker once for all three slots and was withdrawn once durable:
    // the body stream keeps only an empty tombstone of it.
    let js = async_nats::jetstream::new(owner.client().clone());
    let bodies = js.get_stream(quloud::adapters::nats::BODY_STREAM).await.unwrap();
    let body_subject = quloud::adapters::nats::body_subject(&chunk.addr);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let body = bodies.direct_get_last_for_subject(body_subject.clone()).await.expect("a tombstone");
        if body.payload.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the body was not withdrawn");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let info = js.get_stream(quloud::adapters::nats::BODY_STREAM).await.unwrap().cached_info().clone();
    assert!(info.state.bytes < 4096, "the body stream still holds {} bytes", info.state.bytes);

    for n in &nodes {
        let got = owner.get(&[(chunk.addr, keys.proof_secret(&chunk.addr))], &[*n]).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(keys.open(&chunk.id, &chunk.addr, &got[0].1).unwrap(), bytes(300_000, 1));
        let verdict = owner
            .audit(*n, chunk.addr, &keys.proof_secret(&chunk.addr), chunk.ciphertext.len() as u64)
            .await
            .unwrap();
        assert_eq!(verdict, AuditVerdict::Passed);
    }
    // Broadcast retrieval finds a holder without hints.
    let got = owner.get(&[(chunk.addr, keys.proof_secret(&chunk.addr))], &[]).await.unwrap();
    assert_eq!(got.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_holding_the_addr_declines_the_other_slot() {
    let mut fabric = Fabric::start(1, "1GiB");
    let keys = vault(2);
    let mut opts = test_options(&fabric.url());
    opts.store_deadline = Duration::from_secs(4);
    let owner = owner(&keys, opts).await;
    let chunk = keys.seal(&bytes(10_000, 2));
    match owner.store(publish(&chunk), StoreGoal::fresh(2)).await {
        Err(FabricError::Quorum { got, want, .. }) => assert_eq!((got, want), (1, 2)),
        other => panic!("one node must not fill two slots: {other:?}"),
    }
    // A second node picks up the declined slot.
    fabric.add_node("1GiB");
    let mut opts = test_options(&fabric.url());
    opts.store_deadline = Duration::from_secs(30);
    let owner = common::owner(&keys, opts).await;
    let acks =
        owner.store(publish(&chunk), StoreGoal::fresh(2)).await.expect("second node takes the other slot");
    let nodes: HashSet<NodeId> = acks.iter().map(|a| a.node).collect();
    assert_eq!(nodes.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_of_a_node_mid_upload_still_reaches_quorum() {
    let mut fabric = Fabric::start(4, "1GiB");
    let keys = vault(3);
    let owner = owner(&keys, test_options(&fabric.url())).await;
    let chunks: Vec<SealedChunk> = (0..40).map(|i| keys.seal(&bytes(200_000, 100 + i))).collect();
    let upload = async {
        let futs = chunks.iter().map(|c| owner.store(publish(c), StoreGoal::fresh(3)));
        futures::future::join_all(futs).await
    };
    let victim = fabric.nodes[0].id;
    let kill = async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        fabric.nodes[0].kill9();
    };
    let (results, ()) = tokio::join!(upload, kill);
    for r in results {
        let acks = r.expect("quorum despite a dead node");
        let nodes: HashSet<NodeId> = acks.iter().map(|a| a.node).collect();
        assert!(nodes.len() >= 3);
    }
    // Everything stays retrievable without the dead node.
    for c in &chunks {
        let got = owner.get(&[(c.addr, keys.proof_secret(&c.addr))], &[victim]).await.unwrap();
        assert_eq!(got.len(), 1, "retrievable from the survivors");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_still_serves_its_chunks() {
    let mut fabric = Fabric::start(1, "1GiB");
    let keys = vault(4);
    let owner = owner(&keys, test_options(&fabric.url())).await;
    let chunks: Vec<SealedChunk> = (0..5).map(|i| keys.seal(&bytes(50_000, 200 + i))).collect();
    for c in &chunks {
        owner.store(publish(c), StoreGoal::fresh(1)).await.unwrap();
    }
    fabric.nodes[0].kill9();
    fabric.nodes[0].restart();
    let node = fabric.nodes[0].id;
    let items: Vec<_> = chunks.iter().map(|c| (c.addr, keys.proof_secret(&c.addr))).collect();
    let got = owner.get(&items, &[node]).await.unwrap();
    assert_eq!(got.len(), 5);
    for (addr, ct) in got {
        let c = chunks.iter().find(|c| c.addr == addr).unwrap();
        assert_eq!(&ct, &c.ciphertext);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audits_catch_flipped_and_deleted_bytes_on_disk() {
    let fabric = Fabric::start(1, "1GiB");
    let keys = vault(5);
    let owner = owner(&keys, test_options(&fabric.url())).await;
    let node = fabric.nodes[0].id;
    let a = keys.seal(&bytes(400_000, 5));
    let b = keys.seal(&bytes(400_000, 6));
    owner.store(publish(&a), StoreGoal::fresh(1)).await.unwrap();
    let secret = keys.proof_secret(&a.addr);
    let len = a.ciphertext.len() as u64;
    assert_eq!(owner.audit(node, a.addr, &secret, len).await.unwrap(), AuditVerdict::Passed);
    // Flip one byte of the only body on disk.
    let body = &fabric.nodes[0].bodies()[0];
    let mut raw = std::fs::read(body).unwrap();
    let mid = raw.len() / 2;
    raw[mid] ^= 0x01;
    std::fs::write(body, &raw).unwrap();
    assert_ne!(owner.audit(node, a.addr, &secret, len).await.unwrap(), AuditVerdict::Passed);

    owner.store(publish(&b), StoreGoal::fresh(1)).await.unwrap();
    let secret = keys.proof_secret(&b.addr);
    assert_eq!(owner.audit(node, b.addr, &secret, len).await.unwrap(), AuditVerdict::Passed);
    for body in fabric.nodes[0].bodies() {
        std::fs::remove_file(body).unwrap();
    }
    assert_ne!(owner.audit(node, b.addr, &secret, len).await.unwrap(), AuditVerdict::Passed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_node_declines_and_stays_within_capacity() {
    let mut fabric = Fabric::start(1, "1MiB");
    let keys = vault(6);
    let mut opts = test_options(&fabric.url());
    opts.store_deadline = Duration::from_secs(4);
    let owner = owner(&keys, opts).await;
    let a = keys.seal(&bytes(600_000, 7));
    let b = keys.seal(&bytes(600_000, 8));
    owner.store(publish(&a), StoreGoal::fresh(1)).await.expect("first chunk fits");
    assert!(matches!(
        owner.store(publish(&b), StoreGoal::fresh(1)).await,
        Err(FabricError::Quorum { got: 0, .. })
    ));
    let used: u64 = fabric.nodes[0].bodies().iter().map(|p| std::fs::metadata(p).unwrap().len()).sum();
    assert!(used <= 1 << 20, "node used {used} bytes beyond its capacity");
    // Another node with room takes it.
    fabric.add_node("1GiB");
    let mut opts = test_options(&fabric.url());
    opts.store_deadline = Duration::from_secs(30);
    let owner = common::owner(&keys, opts).await;
    owner.store(publish(&b), StoreGoal::fresh(1)).await.expect("node with space takes the chunk");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_disk_holds_no_plaintext_commitment_or_addr() {
    let fabric = Fabric::start(3, "1GiB");
    let keys = vault(7);
    let owner = owner(&keys, test_options(&fabric.url())).await;
    let plain: Vec<u8> = b"FAMILY-PHOTO-".iter().cycle().take(300_000).copied().collect();
    let c = keys.seal(&plain);
    owner.store(publish(&c), StoreGoal::fresh(3)).await.unwrap();
    let needles: Vec<Vec<u8>> = vec![
        plain[..64].to_vec(),
        c.ciphertext[1000..1064].to_vec(),
        c.commitment.to_bytes()[..32].to_vec(),
        c.addr.0.to_vec(),
        keys.ack_token().0.to_vec(),
    ];
    let mut files = 0;
    for node in &fabric.nodes {
        for path in walk(&node.data) {
            files += 1;
            let data = std::fs::read(&path).unwrap();
            for (i, n) in needles.iter().enumerate() {
                assert!(
                    !data.windows(n.len()).any(|w| w == &n[..]),
                    "{} holds secret #{i} in the clear",
                    path.display()
                );
            }
            assert!(!path.to_string_lossy().contains(&c.addr.to_hex()));
        }
    }
    assert!(files >= 6, "expected index and bodies, found {files} files");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn commitments_of_one_owner_are_unlinkable() {
    // Each chunk's proof secret is an independent keyed hash of its addr: commitments of one
    // owner's chunks share nothing, and the same plaintext under two owners shares nothing.
    let keys = vault(8);
    let other = vault(9);
    let a = keys.seal(b"chunk one");
    let b = keys.seal(b"chunk two");
    let a2 = other.seal(b"chunk one");
    assert_ne!(a.commitment, b.commitment);
    assert_ne!(a.commitment, a2.commitment);
    assert_ne!(a.addr, a2.addr);
    // No common prefix or suffix that would let a node group commitments by owner.
    let (pa, pb) = (a.commitment.to_bytes(), b.commitment.to_bytes());
    let shared = pa.iter().zip(pb.iter()).filter(|(x, y)| x == y).count();
    assert!(shared < 8, "commitments share {shared} of 64 bytes");
    let _ = Addr::of(b"");
}

/// Healing stores only what is missing: replicas already held keep their slots (the holders
/// decline the new ones), and acks from excluded nodes never count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_goal_counts_held_replicas_and_ignores_excluded_nodes() {
    let fabric = Fabric::start(5, "1GiB");
    let keys = vault(9);
    let owner = owner(&keys, test_options(&fabric.url())).await;
    let chunk = keys.seal(&bytes(200_000, 9));
    let first = owner.store(publish(&chunk), StoreGoal::fresh(2)).await.expect("two replicas");
    let (a, b) = (&first[0], &first[1]);
    // Keep A, distrust B: two more distinct nodes are needed, neither of them A or B.
    let held = [(a.node, a.slot)];
    let exclude = [b.node];
    let goal = StoreGoal { replicas: 3, held: &held, exclude: &exclude, placement: None };
    let acks = owner.store(publish(&chunk), goal).await.expect("healed to three");
    let nodes: HashSet<NodeId> = acks.iter().map(|x| x.node).collect();
    assert_eq!(nodes.len(), 2, "two new replicas: {acks:?}");
    assert!(!nodes.contains(&a.node) && !nodes.contains(&b.node), "held or excluded node counted: {acks:?}");
    assert!(acks.iter().all(|x| x.slot != a.slot), "the held slot was published again");
    assert!(acks.iter().all(|x| x.verify(&chunk.commitment)));
}

/// A chunk's body crosses the owner's link once per store, however many rounds of slots it
/// takes: slots taken by excluded nodes (the owner's own house) are published again, the body
/// is not. Each store leaves one body and one tombstone in the body stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_body_is_published_once_while_excluded_nodes_take_slots() {
    let fabric = Fabric::start(4, "1GiB");
    let keys = vault(12);
    let owner = owner(&keys, test_options(&fabric.url())).await;
    let ids = fabric.node_ids();
    let exclude = [ids[0], ids[1]];
    let js = async_nats::jetstream::new(owner.client().clone());
    let chunks: Vec<SealedChunk> = (0..8).map(|i| keys.seal(&bytes(100_000, 100 + i))).collect();
    for c in &chunks {
        let goal = StoreGoal { replicas: 2, held: &[], exclude: &exclude, placement: None };
        let acks = owner.store(publish(c), goal).await.expect("two replicas on the others");
        assert!(acks.iter().all(|a| !exclude.contains(&a.node)), "an excluded node counted: {acks:?}");
    }
    let bodies = js.get_stream(quloud::adapters::nats::BODY_STREAM).await.unwrap();
    for c in &chunks {
        let subject = quloud::adapters::nats::body_subject(&c.addr);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let body = bodies.direct_get_last_for_subject(subject.clone()).await.expect("a tombstone");
            if body.payload.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "the body was not withdrawn");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let info = js.get_stream(quloud::adapters::nats::BODY_STREAM).await.unwrap().cached_info().clone();
    let taken: usize = fabric.nodes[..2].iter().map(|n| n.bodies().len()).sum();
    assert!(taken > 0, "no excluded node took a slot: the test proves nothing");
    assert_eq!(info.state.last_sequence, 2 * chunks.len() as u64, "body publishes and tombstones");
}

/// Storing a chunk again (healing, or re-uploading after a delete) is a new message to the
/// broker, not a duplicate of the first store that JetStream would silently drop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storing_a_chunk_again_is_not_deduplicated_away() {
    let fabric = Fabric::start(2, "1GiB");
    let keys = vault(10);
    let mut opts = test_options(&fabric.url());
    // No retry inside the deadline: the first publish of each store must get through.
    opts.retry_after = Duration::from_secs(60);
    opts.store_deadline = Duration::from_secs(15);
    let owner = owner(&keys, opts).await;
    let chunk = keys.seal(&bytes(50_000, 10));
    let secret = [(chunk.addr, keys.proof_secret(&chunk.addr))];
    let acks = owner.store(publish(&chunk), StoreGoal::fresh(2)).await.expect("first store");
    for a in &acks {
        owner.delete(a.node, &secret).await.expect("delete");
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    let again = owner.store(publish(&chunk), StoreGoal::fresh(2)).await.expect("second store delivered");
    assert_eq!(again.len(), 2);
}

/// Two nodes can end up holding one slot (a retry during heavy load). With N nodes in the
/// fabric, the remaining slot is then declined by everyone; the node holding a duplicate slot
/// must still make itself known (it re-acks the slot it holds when declining), or the store
/// would wait forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_slot_holder_is_counted_when_it_declines() {
    let fabric = Fabric::start(3, "1GiB");
    let keys = vault(11);
    let mut opts = test_options(&fabric.url());
    opts.store_deadline = Duration::from_secs(20);
    let owner = owner(&keys, opts).await;
    let chunk = keys.seal(&bytes(30_000, 11));
    let first = owner.store(publish(&chunk), StoreGoal::fresh(2)).await.expect("two replicas");
    let holders: HashSet<NodeId> = first.iter().map(|a| a.node).collect();
    let third = fabric.nodes.iter().find(|n| !holders.contains(&n.id)).unwrap();
    let slot = first[0].slot;
    // Publish more copies of that slot until the third node holds one too.
    let js = async_nats::jetstream::new(owner.client().clone());
    let lease = quloud::domain::unix_ms(std::time::SystemTime::now()) + 3_600_000;
    let req = quloud::domain::wire::StoreRequest::for_body(
        keys.ack_token(),
        &chunk.ciphertext,
        slot,
        chunk.commitment,
        lease,
    );
    // The owner withdrew the body once the chunk was stored: put it back for these copies.
    let body = quloud::adapters::nats::body_subject(&chunk.addr);
    js.publish(body, chunk.ciphertext.clone().into()).await.unwrap().await.unwrap();
    for _ in 0..100 {
        if !third.bodies().is_empty() {
            break;
        }
        js.publish(quloud::adapters::nats::STORE_SUBJECT, req.encode().into()).await.unwrap().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!third.bodies().is_empty(), "could not make the third node hold a duplicate slot");
    // Every node now holds the chunk; the free slot is declined by all three.
    let acks = owner.store(publish(&chunk), StoreGoal::fresh(3)).await.expect("quorum with a duplicate slot");
    let nodes: HashSet<NodeId> = acks.iter().map(|a| a.node).collect();
    assert_eq!(nodes.len(), 3, "{acks:?}");
}

/// A node whose broker is gone still stops within a few seconds of SIGTERM or SIGINT: nothing
/// it waits on at shutdown (its tasks' requests, the last flush) may wait for the broker.
#[test]
fn a_node_stops_promptly_on_a_signal_while_its_broker_is_down() {
    let mut fabric = Fabric::start(2, "1GiB");
    fabric.nats.kill9();
    for node in &fabric.nodes {
        wait_until(Duration::from_secs(10), "the node to notice the broker is gone", || {
            node.log().contains("lost the NATS connection")
        });
    }
    for (node, signal) in fabric.nodes.iter_mut().zip([libc::SIGTERM, libc::SIGINT]) {
        let pid = node.pid().expect("node running") as libc::pid_t;
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(pid, signal) };
        let started = std::time::Instant::now();
        poll_until(Duration::from_secs(6), Duration::from_millis(20), "the node to stop", || {
            !node.is_running()
        });
        let log = node.log();
        assert!(log.contains("storage node stopped"), "no orderly stop after signal {signal}:\n{log}");
        eprintln!("node stopped {:?} after signal {signal}", started.elapsed());
    }
}

// ---------------------------------------------------------------------------------------------
// `quloud up`
// ---------------------------------------------------------------------------------------------

/// Ctrl-C or SIGTERM while `up` still starts (here: a fabric check that cannot pass, one node
/// for two replicas) stops the nodes and the broker; the check itself gives up after
/// --check-within, naming the logs, and stops them too.
#[test]
fn a_signal_or_a_stuck_check_during_startup_stops_all_up_started() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let stuck = ["--nodes", "1", "--replicas", "2"];

    let mut up = Up::start(&home, &[&stuck[..], &["--check-within", "3s"]].concat());
    let status = up.wait_exit(Duration::from_secs(60));
    let out = up.out();
    assert!(!status.success(), "a check that cannot pass succeeded:\n{out}");
    assert!(out.contains("did not finish within 3s") && out.contains("node-*.log"), "{out}");
    assert!(out.contains("warning: --replicas 2 needs 2 distinct nodes but only 1 run here"), "{out}");
    assert_nothing_left(&home, Duration::from_secs(15));

    for sig in [libc::SIGTERM, libc::SIGINT] {
        let mut up = Up::start(&home, &stuck);
        up.wait_for("storage nodes started", Duration::from_secs(30));
        up.signal(sig);
        let status = up.wait_exit(Duration::from_secs(30));
        let out = up.out();
        assert!(
            !status.success() && out.contains("stopped by a signal during the fabric check"),
            "{status}: {out}"
        );
        assert!(out.contains("stopping storage nodes and nats-server"), "{out}");
        assert_nothing_left(&home, Duration::from_secs(5));
    }
}

/// A node that cannot open its data directory makes `up` fail at once, quoting the node's log,
/// rather than waiting for a check that cannot pass.
#[test]
fn a_node_that_cannot_start_fails_up_with_its_log() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    fs::create_dir_all(home.join("fabric")).unwrap();
    fs::write(home.join("fabric/node-0"), b"not a directory").unwrap();
    let mut up = Up::start(&home, &["--nodes", "1", "--replicas", "1"]);
    let started = Instant::now();
    let status = up.wait_exit(Duration::from_secs(60));
    let out = up.out();
    assert!(!status.success(), "{out}");
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}:\n{out}", started.elapsed());
    assert!(out.contains("node-0 exited") && out.contains("node-0.log, last lines:"), "{out}");
    assert!(out.contains("node-0"), "the node's own words are not quoted:\n{out}");
    assert_nothing_left(&home, Duration::from_secs(15));
}

/// `up` without a mountpoint on a home with no key runs the fabric only: it creates no vault key
/// and prints no paper key (during a recovery a second paper key invites writing down the wrong
/// one), and says so.
#[test]
fn up_without_a_mountpoint_creates_no_vault_key() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let mut up = Up::start(&home, &["--nodes", "1", "--replicas", "1", "--once"]);
    let status = up.wait_exit(Duration::from_secs(60));
    let out = up.out();
    assert!(status.success(), "{status}: {out}");
    assert!(!home.join("master.key").exists(), "`up` without a mountpoint created a vault key:\n{out}");
    assert!(!out.contains("paper key (write it down"), "a paper key was printed:\n{out}");
    assert!(out.contains("running the fabric only") && out.contains("quloud restore"), "{out}");
    assert!(out.contains("fabric check passed"), "{out}");
    assert_nothing_left(&home, Duration::from_secs(5));
}

/// One `up` per home: a second one fails at once naming the first one's pid. `--port` is used,
/// and the next run without it keeps that port; a taken `--port` is refused.
#[test]
fn one_up_per_home_and_its_port_is_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let port = free_port();
    let mut first = Up::start(&home, &["--nodes", "1", "--replicas", "1", "--port", &port.to_string()]);
    first.wait_for("Fabric is up", Duration::from_secs(60));
    let url = format!("nats://127.0.0.1:{port}");
    assert_eq!(fs::read_to_string(home.join("fabric/nats.url")).unwrap().trim(), url);

    let mut second = Up::start(&home, &["--nodes", "1", "--replicas", "1"]);
    let status = second.wait_exit(Duration::from_secs(10));
    let out = second.out();
    assert!(!status.success(), "{out}");
    assert!(out.contains(&format!("another `quloud up` (pid {})", first.pid())), "{out}");
    assert_eq!(
        fs::read_to_string(home.join("fabric/nats.url")).unwrap().trim(),
        url,
        "the second up rewrote nats.url"
    );

    // Other commands of this home find its broker without --nats.
    let check = quloud(&home).args(["check", "--replicas", "1", "--size", "1MiB"]).output().unwrap();
    let said =
        format!("{}{}", String::from_utf8_lossy(&check.stdout), String::from_utf8_lossy(&check.stderr));
    assert!(check.status.success() && said.contains(&url), "quloud check without --nats: {said}");

    first.signal(libc::SIGINT);
    let status = first.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status}: {}", first.out());
    assert_nothing_left(&home, Duration::from_secs(5));

    let mut again = Up::start(&home, &["--nodes", "1", "--replicas", "1", "--once"]);
    let status = again.wait_exit(Duration::from_secs(60));
    assert!(status.success() && again.out().contains(&format!("listening at {url}")), "{}", again.out());

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port().to_string();
    let mut refused = Up::start(&home, &["--once", "--port", &taken_port]);
    let status = refused.wait_exit(Duration::from_secs(10));
    assert!(
        !status.success() && refused.out().contains(&format!("port {taken_port} (--port) is taken")),
        "{}",
        refused.out()
    );
    assert_nothing_left(&home, Duration::from_secs(5));
}

/// `kill -9` of `up` takes its broker and nodes along. Processes an older `up` left running
/// (here started by hand: a nats-server on the fabric's config, a node holding node-0's
/// database) are stopped by the next `up`, which then works.
#[test]
fn kill_9_of_up_leaves_nothing_and_leftovers_are_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let mut up = Up::start(&home, &["--nodes", "1", "--replicas", "1"]);
    up.wait_for("Fabric is up", Duration::from_secs(60));
    up.signal(libc::SIGKILL);
    up.wait_exit(Duration::from_secs(5));
    assert_nothing_left(&home, Duration::from_secs(15));

    let fabric = home.join("fabric");
    let url = fs::read_to_string(fabric.join("nats.url")).unwrap().trim().to_string();
    let nats_log = File::create(tmp.path().join("orphan-nats.log")).unwrap();
    let mut orphan_nats =
        Command::new("nats-server").arg("-c").arg(fabric.join("nats.conf")).stderr(nats_log).spawn().unwrap();
    // A node exits when no broker listens yet: wait for this one before starting it.
    let addr = url.trim_start_matches("nats://").to_string();
    wait_until(Duration::from_secs(20), "the leftover nats-server to listen", || {
        std::net::TcpStream::connect(&addr).is_ok()
    });
    let mut orphan_node = Node::start(&url, &fabric.join("node-0"), "1GiB");

    let mut up = Up::start(&home, &["--nodes", "1", "--replicas", "1", "--once"]);
    let status = up.wait_exit(Duration::from_secs(60));
    let out = up.out();
    assert!(status.success(), "{status}: {out}");
    assert!(out.contains(&format!("stopping a leftover nats-server (pid {})", orphan_nats.id())), "{out}");
    assert!(
        out.contains(&format!("stopping a leftover storage node (pid {})", orphan_node.pid().unwrap())),
        "{out}"
    );
    assert!(out.contains("fabric check passed"), "{out}");
    assert!(orphan_nats.try_wait().unwrap().is_some(), "the leftover nats-server still runs");
    assert!(!orphan_node.is_running(), "the leftover node still runs");
}

/// A broker or node that dies while `up` serves is reported (name, status, log) and restarted,
/// the broker on the same port and store, and the fabric works again.
#[test]
fn up_reports_and_restarts_a_child_that_dies_while_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let mut up = Up::start(&home, &["--nodes", "2", "--replicas", "2"]);
    up.wait_for("Fabric is up", Duration::from_secs(60));
    let fabric = home.join("fabric");
    let url = fs::read_to_string(fabric.join("nats.url")).unwrap().trim().to_string();

    let conf = fabric.join("nats.conf");
    let broker = pid_of(conf.to_str().unwrap());
    // SAFETY: kill(2) on the broker `up` started; no memory is involved.
    unsafe { libc::kill(broker, libc::SIGKILL) };
    up.wait_for("nats-server is back", Duration::from_secs(30));
    let out = up.out();
    assert!(out.contains("nats-server exited (signal: 9") && out.contains("nats.log, last lines:"), "{out}");
    assert!(out.contains("the fabric is down"), "{out}");
    assert_ne!(pid_of(conf.to_str().unwrap()), broker);

    let node = pid_of(fabric.join("node-1").to_str().unwrap());
    // SAFETY: as above, on a node.
    unsafe { libc::kill(node, libc::SIGKILL) };
    up.wait_for("restarting node-1", Duration::from_secs(30));
    assert!(up.out().contains("node-1 exited (signal: 9"), "{}", up.out());

    let check =
        quloud(&home).args(["check", "--nats", &url, "--replicas", "2", "--size", "1MiB"]).output().unwrap();
    let said =
        format!("{}{}", String::from_utf8_lossy(&check.stdout), String::from_utf8_lossy(&check.stderr));
    assert!(check.status.success(), "the restarted fabric does not work: {said}\n{}", up.out());

    up.signal(libc::SIGTERM);
    assert!(up.wait_exit(Duration::from_secs(30)).success(), "{}", up.out());
    assert_nothing_left(&home, Duration::from_secs(5));
}
