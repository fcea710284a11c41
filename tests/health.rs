//! Owner audits, self-healing, leases and garbage collection, end to end: a real nats-server,
//! five real `quloud node` processes, a real FUSE mount with N=3, and the `quloud audit`,
//! `quloud nodes` and `quloud status` commands as a user runs them.

mod common;

use common::*;
use futures::StreamExt;
use quloud::domain::identity::NodeIdentity;
use quloud::domain::ids::{Addr, NodeId};
use quloud::domain::wire::{AuditBatch, AuditBatchReply, AuditReply, AuditRequest};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;
/// Churn durations of zero: a node that misses a check is offline past its grace at once
/// (tests/churn.rs covers the grace).
const NO_GRACE: &[&str] = &["--offline-after", "0s", "--offline-grace", "0s"];

/// Five nodes and a mounted vault with N=3 (plus `extra` mount flags).
fn five_nodes(extra: &[&str], node_flags: &[&str]) -> (Fabric, Mount) {
    let fabric = Fabric::start_with(5, "2GiB", node_flags);
    let mut flags = vec!["--replicas", "3"];
    flags.extend_from_slice(extra);
    let mount = Mount::new_vault(fabric.dir.path(), "owner", &fabric.url(), &flags);
    (fabric, mount)
}

/// Writes `files` (name → bytes) into the mount, fsyncs them and waits until all are durable.
fn write_files(m: &Mount, files: &[(&str, Vec<u8>)]) {
    for (name, data) in files {
        let path = m.path(name);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(&path, data).unwrap();
        std::fs::File::open(&path).unwrap().sync_all().unwrap();
    }
    let s = wait_durable(&m.home);
    assert!(s.durable > 0, "nothing durable: {}", s.json);
}

fn sample_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("photos/2024/beach.raw", bytes(6 * MIB, 1)),
        ("photos/2024/dunes.raw", bytes(3 * MIB + 12_345, 2)),
        ("docs/notes.txt", bytes(40_000, 3)),
    ]
}

/// Every file reads back identical through the mount.
fn assert_files(m: &Mount, files: &[(&str, Vec<u8>)]) {
    for (name, data) in files {
        let got = std::fs::read(m.path(name)).unwrap_or_else(|e| panic!("reading {name}: {e}"));
        assert!(got == *data, "{name} differs after healing ({} vs {} bytes)", got.len(), data.len());
    }
}

/// Runs `quloud audit ARGS`; returns (exit success, stdout).
fn audit(home: &Path, args: &[&str]) -> (bool, String) {
    let out = quloud(home).arg("audit").args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    (out.status.success(), format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)))
}

fn json_num(text: &str, key: &str) -> u64 {
    let at =
        text.find(&format!("\"{key}\":")).unwrap_or_else(|| panic!("no {key} in {text}")) + key.len() + 3;
    text[at..].chars().take_while(|c| c.is_ascii_digit()).collect::<String>().parse().unwrap()
}

/// Every chunk has N healthy replicas (status counts only replicas that passed their last
/// challenge on nodes not written off).
fn assert_all_healthy(home: &Path) {
    let s = status(home);
    assert_eq!(s.pending, 0, "{}", s.json);
    assert_eq!(s.degraded, 0, "chunks below 3 healthy replicas: {}", s.json);
    assert_eq!(s.durable, s.chunks, "{}", s.json);
}

/// The node holding the most chunk bodies.
fn busiest(fabric: &Fabric) -> usize {
    (0..fabric.nodes.len()).max_by_key(|&i| fabric.nodes[i].bodies().len()).unwrap()
}

#[test]
fn a_lost_node_is_healed_by_audit_now() {
    // No grace: a node that misses one check is offline, and its replicas stop counting.
    let (mut fabric, mut m) = five_nodes(NO_GRACE, &[]);
    let files = sample_files();
    write_files(&m, &files);
    // Before any audit: every node that acknowledged replicas has been seen (its acks count).
    let nodes = quloud(&m.home).args(["nodes", "--json"]).output().unwrap();
    let nodes = String::from_utf8_lossy(&nodes.stdout).to_string();
    for row in nodes.split("},{").filter(|r| json_num(r, "chunks") > 0) {
        assert!(json_num(row, "last_seen_ms") > 0, "a node that acked chunks was never seen: {row}");
    }
    let (ok, out) = audit(&m.home, &["--now", "--json"]);
    assert!(ok, "a healthy vault should pass its audit: {out}");
    assert_eq!(json_num(&out, "failed") + json_num(&out, "not_found") + json_num(&out, "silent"), 0, "{out}");
    let chunks = status(&m.home).chunks;
    assert_eq!(json_num(&out, "checked"), 3 * chunks, "every replica challenged: {out}");

    // Lose a node that holds replicas, with its disk.
    let victim = busiest(&fabric);
    let lost = fabric.nodes[victim].bodies().len();
    assert!(lost > 0);
    let dead = fabric.nodes[victim].id;
    fabric.nodes[victim].kill9();
    std::fs::remove_dir_all(&fabric.nodes[victim].data).unwrap();

    let (ok, out) = audit(&m.home, &["--now", "--json"]);
    assert!(ok, "audit --now should heal everything with 4 nodes left: {out}");
    assert_eq!(json_num(&out, "silent"), lost as u64, "each replica on the dead node went unanswered: {out}");
    assert_eq!(json_num(&out, "healed"), lost as u64, "{out}");
    assert_all_healthy(&m.home);
    let live: usize =
        fabric.nodes.iter().enumerate().filter(|(i, _)| *i != victim).map(|(_, n)| n.bodies().len()).sum();
    assert!(live as u64 >= 3 * chunks, "{live} bodies on live nodes for {chunks} chunks");

    // The dead node is reported, and a second pass finds everything healthy on live nodes.
    let nodes = quloud(&m.home).args(["nodes", "--json"]).output().unwrap();
    let nodes = String::from_utf8_lossy(&nodes.stdout).to_string();
    let row = nodes.split("},{").find(|r| r.contains(&dead.to_string())).expect("dead node listed");
    assert!(json_num(row, "audits_failed") >= lost as u64, "{row}");
    let (ok, out) = audit(&m.home, &["--now", "--json"]);
    assert!(ok, "{out}");
    assert_eq!(json_num(&out, "failed") + json_num(&out, "not_found"), 0, "{out}");

    // Cold reads after a remount (empty cache) come from the healed replicas.
    m.remount();
    assert_files(&m, &files);
    let text = quloud(&m.home).arg("nodes").output().unwrap();
    assert!(text.status.success());
}

#[test]
fn the_background_auditor_heals_without_being_asked() {
    let (mut fabric, m) =
        five_nodes(&["--audit-interval", "4s", "--offline-after", "0s", "--offline-grace", "0s"], &[]);
    let files = sample_files();
    write_files(&m, &files);
    let chunks = status(&m.home).chunks;
    let victim = busiest(&fabric);
    let dead = fabric.nodes[victim].id.to_string();
    fabric.nodes[victim].kill9();
    std::fs::remove_dir_all(&fabric.nodes[victim].data).unwrap();
    poll_until(Duration::from_secs(60), Duration::from_millis(500), "the background auditor to heal", || {
        let nodes = quloud(&m.home).args(["nodes", "--json"]).output().unwrap();
        let nodes = String::from_utf8_lossy(&nodes.stdout).to_string();
        let failed =
            nodes.split("},{").find(|r| r.contains(&dead)).is_some_and(|r| json_num(r, "audits_failed") > 0);
        let live: usize = fabric
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != victim)
            .map(|(_, n)| n.bodies().len())
            .sum();
        let s = status(&m.home);
        failed && s.degraded == 0 && s.durable == chunks && live as u64 >= 3 * chunks
    });
    let s = status(&m.home);
    assert!(s.json.contains("\"last_audit\":{"), "status reports the last audit: {}", s.json);
    assert_files(&m, &files);
}

#[test]
fn flipped_bytes_on_a_node_are_caught_and_healed() {
    let (fabric, m) = five_nodes(&[], &[]);
    let files = sample_files();
    write_files(&m, &files);
    let victim = busiest(&fabric);
    let body = fabric.nodes[victim].bodies()[0].clone();
    let mut data = std::fs::read(&body).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0x5a;
    std::fs::write(&body, &data).unwrap();

    let (ok, out) = audit(&m.home, &["--json"]);
    // Without --now, recently verified replicas are not challenged again.
    assert_eq!(json_num(&out, "checked"), 0, "{out}");
    assert!(ok, "{out}");
    let (ok, out) = audit(&m.home, &["--now", "--json"]);
    assert!(ok, "the damaged replica should be healed: {out}");
    assert_eq!(json_num(&out, "failed") + json_num(&out, "not_found"), 1, "exactly the flipped copy: {out}");
    assert_eq!(json_num(&out, "healed"), 1, "{out}");
    assert_all_healthy(&m.home);
    assert_files(&m, &files);
}

/// A node that keeps only its identity and answers audits with replies it recorded earlier
/// (stale seeds, or old leaves re-signed for the new seed) is caught and healed around.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_replaying_old_audit_proofs_is_caught() {
    let (mut fabric, m) = tokio::task::spawn_blocking(|| {
        let (f, m) = five_nodes(&[], &[]);
        write_files(&m, &sample_files());
        (f, m)
    })
    .await
    .unwrap();
    let victim = busiest(&fabric);
    let cheat_id = fabric.nodes[victim].id;
    let client = async_nats::connect(fabric.url()).await.unwrap();

    // Record the node's honest answers to one audit pass.
    let recorded: Arc<Mutex<HashMap<Addr, AuditReply>>> = Arc::default();
    // Replies go to the owner's own inbox prefix (`_INBOX_owner_…`): listen to everything.
    let mut snoop = client.subscribe(">").await.unwrap();
    let rec = recorded.clone();
    let snooper = tokio::spawn(async move {
        while let Some(msg) = snoop.next().await {
            let replies = match AuditBatchReply::decode(&msg.payload) {
                Ok(b) => b.0,
                Err(_) => AuditReply::decode(&msg.payload).into_iter().collect(),
            };
            for r in replies.into_iter().filter(|r| r.node == cheat_id) {
                rec.lock().unwrap().insert(r.addr, r);
            }
        }
    });
    let home = m.home.clone();
    let (ok, out) = tokio::task::spawn_blocking(move || audit(&home, &["--now", "--json"])).await.unwrap();
    assert!(ok, "{out}");
    snooper.abort();
    let held = fabric.nodes[victim].bodies().len();
    wait_until(Duration::from_secs(5), "all honest replies recorded", || {
        recorded.lock().unwrap().len() == held
    });

    // The node throws its data away but keeps its key, and answers from the recording.
    let key = std::fs::read(fabric.nodes[victim].data.join("node.key")).unwrap();
    let identity = NodeIdentity::from_bytes(&key.as_slice().try_into().unwrap());
    fabric.nodes[victim].kill9();
    std::fs::remove_dir_all(&fabric.nodes[victim].data).unwrap();
    let mut requests = client.subscribe(format!("quloud.v1.node.{cheat_id}.>")).await.unwrap();
    let answers = client.clone();
    let rec = recorded.clone();
    let cheater = tokio::spawn(async move {
        let mut flip = false;
        // Alternately a stale reply (old seed) and old leaves re-signed for the new seed.
        let mut answer = |req: &AuditRequest| {
            let old = rec.lock().unwrap().get(&req.addr).cloned()?;
            flip = !flip;
            Some(if flip {
                old
            } else {
                AuditReply::sign(&identity, old.addr, req.seed, old.status, old.proofs)
            })
        };
        while let Some(msg) = requests.next().await {
            let Some(reply_to) = msg.reply else { continue };
            let bytes = if let Ok(batch) = AuditBatch::decode(&msg.payload) {
                let replies: Option<Vec<AuditReply>> = batch.0.iter().map(&mut answer).collect();
                let Some(replies) = replies else { continue };
                AuditBatchReply(replies).encode()
            } else if let Ok(req) = AuditRequest::decode(&msg.payload) {
                let Some(reply) = answer(&req) else { continue };
                reply.encode()
            } else {
                continue;
            };
            let _ = answers.publish(reply_to, bytes.into()).await;
        }
    });

    let home = m.home.clone();
    let (ok, out) = tokio::task::spawn_blocking(move || audit(&home, &["--now", "--json"])).await.unwrap();
    cheater.abort();
    assert!(ok, "healing around the cheater should succeed: {out}");
    assert_eq!(json_num(&out, "failed"), held as u64, "every replayed proof rejected: {out}");
    assert_eq!(json_num(&out, "silent"), 0, "the cheater answered everything: {out}");
    assert_eq!(json_num(&out, "healed"), held as u64, "{out}");
    let home = m.home.clone();
    tokio::task::spawn_blocking(move || assert_all_healthy(&home)).await.unwrap();
    assert!(cheat_id != NodeId::ANY);
    drop(m);
}

#[test]
fn deleting_a_file_frees_its_replicas_after_the_grace_period() {
    let (fabric, m) = five_nodes(&["--gc-grace", "3s"], &[]);
    let big = bytes(100 * MIB, 7);
    write_files(&m, &[("big.bin", big), ("keep.txt", bytes(10_000, 8))]);
    let used = |f: &Fabric| f.nodes.iter().map(|n| n.body_bytes()).sum::<u64>();
    let before = used(&fabric);
    assert!(before >= 3 * 100 * MIB as u64, "three replicas of 100 MiB stored: {before}");
    let removed_at = Instant::now();
    std::fs::remove_file(m.path("big.bin")).unwrap();
    poll_until(
        Duration::from_secs(90),
        Duration::from_millis(250),
        "nodes to reclaim the deleted file",
        || before - used(&fabric) >= 3 * 99 * MIB as u64,
    );
    assert!(removed_at.elapsed() >= Duration::from_secs(3), "collected before the grace period ended");
    // The collector deletes a chunk's replicas before it forgets the chunk: the last one may
    // still be on its way out of the manifest when the nodes' bytes are counted.
    poll_until(
        Duration::from_secs(30),
        Duration::from_millis(250),
        "the manifest to forget every collected chunk",
        || status(&m.home).json.contains("\"unreferenced\":0"),
    );
    assert_eq!(std::fs::read(m.path("keep.txt")).unwrap(), bytes(10_000, 8));
}

#[test]
fn a_file_deleted_while_open_is_freed_after_a_crash() {
    let (fabric, mut m) = five_nodes(&["--gc-grace", "1s"], &[]);
    write_files(&m, &[("open.bin", bytes(20 * MIB, 12)), ("keep.txt", bytes(5_000, 13))]);
    let used = |f: &Fabric| f.nodes.iter().map(|n| n.body_bytes()).sum::<u64>();
    let before = used(&fabric);
    let inodes = status(&m.home).inodes;
    // Deleted while a reader holds it open, then the mount dies before the last close.
    let held = std::fs::File::open(m.path("open.bin")).unwrap();
    std::fs::remove_file(m.path("open.bin")).unwrap();
    std::fs::File::open(&m.mp).unwrap().sync_all().unwrap(); // the unlink is durable
    m.kill9();
    drop(held);
    m.clear_stale();
    m.spawn();
    assert_eq!(status(&m.home).inodes, inodes - 1, "the orphaned inode is freed at the next mount");
    poll_until(Duration::from_secs(60), Duration::from_millis(250), "its chunks to be collected", || {
        before - used(&fabric) >= 3 * 19 * MIB as u64
    });
    assert_eq!(std::fs::read(m.path("keep.txt")).unwrap(), bytes(5_000, 13));
}

#[test]
fn renewed_leases_keep_chunks_and_abandoned_ones_expire() {
    // Leases of 12 s, renewed when a third is left; nodes sweep every second.
    let (fabric, mut m) = five_nodes(&["--lease", "12s"], &["--sweep-interval", "1s"]);
    let files = sample_files();
    write_files(&m, &files);
    let stored: usize = fabric.nodes.iter().map(|n| n.bodies().len()).sum();
    // Outlive two leases while mounted: renewal keeps every replica.
    let start = Instant::now();
    poll_until(Duration::from_secs(40), Duration::from_millis(500), "two lease periods to pass", || {
        let now: usize = fabric.nodes.iter().map(|n| n.bodies().len()).sum();
        assert_eq!(now, stored, "a renewed replica was dropped after {:?}", start.elapsed());
        start.elapsed() > Duration::from_secs(26)
    });
    m.remount();
    assert_files(&m, &files);
    // Unmounted, nobody renews: the nodes drop everything once the leases run out.
    m.unmount();
    poll_until(Duration::from_secs(40), Duration::from_millis(500), "abandoned chunks to expire", || {
        fabric.nodes.iter().all(|n| n.bodies().is_empty())
    });
}

#[test]
fn audit_names_files_at_risk_and_fails() {
    // N=6 on 5 nodes: quorum is never reached, so the file stays in the upload queue.
    let fabric = Fabric::start(5, "1GiB");
    let m = Mount::new_vault(fabric.dir.path(), "owner", &fabric.url(), &["--replicas", "6"]);
    std::fs::create_dir_all(m.path("a/b")).unwrap();
    std::fs::write(m.path("a/b/precious.txt"), b"only here so far").unwrap();
    std::fs::write(m.path("elsewhere.txt"), b"not in scope").unwrap();
    let (ok, out) = audit(&m.home, &[m.path("a").to_str().unwrap()]);
    assert!(!ok, "audit must fail while data is below N: {out}");
    assert!(out.contains("/a/b/precious.txt"), "the file at risk is named: {out}");
    assert!(!out.contains("elsewhere.txt"), "files outside PATH are not audited: {out}");
    let (ok, out) = audit(&m.home, &["/no/such/dir"]);
    assert!(!ok && out.contains("no such file"), "{out}");
}

/// Runs `quloud ARGS` and parses its stdout as JSON (whatever its exit status).
fn json_of(home: &Path, args: &[&str]) -> serde_json::Value {
    let out = quloud(home).args(args).output().unwrap();
    let text = String::from_utf8(out.stdout).expect("JSON output is UTF-8");
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("`quloud {args:?}` printed invalid JSON ({e}): {text}"))
}

#[test]
fn json_output_names_files_with_any_bytes_validly() {
    use std::os::unix::ffi::OsStrExt;
    // N=6 on 5 nodes: the files stay in the upload queue, so the audit lists them at risk.
    let fabric = Fabric::start(5, "1GiB");
    let mut m = Mount::new_vault(fabric.dir.path(), "owner", &fabric.url(), &["--replicas", "6"]);
    let dir = m.path("odd");
    std::fs::create_dir_all(&dir).unwrap();
    let names: [&[u8]; 3] = [b"e\xcc\x81", b"line\nbreak\x01", b"bad\xff\xfe"];
    for name in names {
        std::fs::write(dir.join(std::ffi::OsStr::from_bytes(name)), b"only here so far").unwrap();
    }
    let audit = json_of(&m.home, &["audit", "--json"]);
    let listed: Vec<&str> =
        audit["at_risk"].as_array().unwrap().iter().map(|r| r["path"].as_str().unwrap()).collect();
    for want in ["/odd/e\u{301}", "/odd/line\nbreak\u{1}", "/odd/bad\u{FFFD}\u{FFFD}"] {
        assert!(listed.contains(&want), "{want:?} not listed at risk: {listed:?}");
    }
    assert_eq!(audit["healthy"], false);
    for (what, mounted) in [("mounted", true), ("unmounted", false)] {
        if !mounted {
            m.unmount();
        }
        let status = json_of(&m.home, &["status", "--json"]);
        assert_eq!(status["mounted"], mounted, "{what}: {status}");
        assert!(status["inodes"].as_u64().unwrap() >= 5, "{what}: {status}");
        let nodes = json_of(&m.home, &["nodes", "--json"]);
        assert!(nodes.is_array(), "{what}: {nodes}");
    }
}
