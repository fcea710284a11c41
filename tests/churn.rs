//! Churn is not loss, end to end: a real nats-server, five real `quloud node` processes and a
//! real FUSE mount with N=3, the churn durations scaled down to seconds. A node stopped for less
//! than the grace costs no re-replication; past the grace its chunks are healed to N elsewhere;
//! when it comes back it is re-audited and its surplus copies are deleted from its disk.

mod common;

use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;
/// The grace in this test: long enough to watch a stopped node not be healed around.
const GRACE: Duration = Duration::from_secs(25);

/// `quloud status --json`, parsed.
fn status_json(home: &Path) -> serde_json::Value {
    let out = quloud(home).args(["status", "--json"]).output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("status JSON ({e}): {out:?}"))
}

fn nodes_in(home: &Path, state: &str) -> u64 {
    status_json(home)["nodes"][state].as_u64().unwrap_or_else(|| panic!("no nodes.{state} in status"))
}

#[test]
fn an_offline_node_is_waited_for_then_healed_around_and_trimmed_when_it_returns() {
    let mut fabric = Fabric::start(5, "2GiB");
    let grace = format!("{}s", GRACE.as_secs());
    let flags = [
        "--replicas",
        "3",
        "--audit-interval",
        "2s",
        "--offline-after",
        "2s",
        "--offline-grace",
        &grace,
        "--snapshot-interval",
        "0",
    ];
    let m = Mount::new_vault(fabric.dir.path(), "owner", &fabric.url(), &flags);
    let files = [("a.bin", bytes(6 * MIB, 1)), ("b.bin", bytes(3 * MIB + 777, 2))];
    for (name, data) in &files {
        std::fs::write(m.path(name), data).unwrap();
        std::fs::File::open(m.path(name)).unwrap().sync_all().unwrap();
    }
    let chunks = wait_durable(&m.home).chunks;
    // Every node that holds replicas is audited (seen) before one goes away.
    poll_until(Duration::from_secs(30), Duration::from_millis(200), "a first audit of every node", || {
        let out = quloud(&m.home).args(["nodes", "--json"]).output().unwrap();
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let rows = rows.as_array().unwrap().clone();
        rows.iter().filter(|r| r["chunks"].as_u64() > Some(0)).all(|r| r["audits_passed"].as_u64() > Some(0))
    });
    let victim = (0..5).max_by_key(|&i| fabric.nodes[i].bodies().len()).unwrap();
    let held = fabric.nodes[victim].bodies().len();
    assert!(held > 0);
    let others =
        |f: &Fabric| -> usize { (0..5).filter(|i| *i != victim).map(|i| f.nodes[i].bodies().len()).sum() };
    let before = others(&fabric);
    fabric.nodes[victim].kill9();
    let stopped = Instant::now();

    // Within the grace: offline, its replicas still count, nothing is re-replicated.
    poll_until(GRACE, Duration::from_millis(250), "the node to be seen offline", || {
        assert_eq!(others(&fabric), before, "re-replicated {:?} after the node stopped", stopped.elapsed());
        nodes_in(&m.home, "offline") == 1
    });
    poll_until(GRACE, Duration::from_millis(250), "most of the grace to pass", || {
        assert_eq!(others(&fabric), before, "re-replicated {:?} after the node stopped", stopped.elapsed());
        stopped.elapsed() >= GRACE * 3 / 4
    });
    let s = status_json(&m.home);
    assert_eq!(s["degraded"].as_u64(), Some(0), "{s}");
    assert!(s["in_grace"].as_u64() > Some(0), "{s}");
    assert_eq!(s["repair"]["paused"], false, "{s}");

    // Past the grace: healed to N on the other nodes.
    poll_until(Duration::from_secs(90), Duration::from_millis(250), "healing past the grace", || {
        others(&fabric) >= 3 * chunks as usize && status(&m.home).degraded == 0
    });
    assert!(stopped.elapsed() >= GRACE, "healed before the grace ended");
    assert_eq!(others(&fabric), before + held, "exactly its chunks were re-replicated");

    // It comes back: re-audited, and the copies it kept are surplus: deleted from its disk.
    fabric.nodes[victim].restart();
    poll_until(
        Duration::from_secs(60),
        Duration::from_millis(250),
        "its surplus copies to be deleted",
        || fabric.nodes[victim].body_bytes() == 0 && nodes_in(&m.home, "online") == 5,
    );
    assert_eq!(others(&fabric), 3 * chunks as usize, "a copy was lost: {}", status(&m.home).json);
    let s = status(&m.home);
    assert_eq!((s.degraded, s.durable), (0, chunks), "{}", s.json);
    let log = m.log_text();
    assert!(log.contains("node answers again"), "the return is not logged");
    for (name, data) in &files {
        assert!(std::fs::read(m.path(name)).unwrap() == *data, "{name} differs");
    }
}
