//! Vetting of new nodes, end to end: a real nats-server, real `quloud node` processes and a real
//! FUSE mount. A fresh fabric's chunks become durable within the vetting time, and only after
//! their nodes passed an audit; a node that acks and then keeps nothing never counts, is named
//! by `quloud status`, and its chunks are placed on the other nodes.

mod common;

use common::*;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;
const VET_WITHIN: Duration = Duration::from_secs(15);

fn status_json(home: &Path) -> serde_json::Value {
    let out = quloud(home).args(["status", "--json"]).output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("status JSON ({e}): {out:?}"))
}

/// `quloud nodes --json` rows.
fn node_rows(home: &Path) -> Vec<serde_json::Value> {
    let out = quloud(home).args(["nodes", "--json"]).output().unwrap();
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap().as_array().cloned().unwrap_or_default()
}

fn flags(vet: &str) -> [&str; 8] {
    ["--replicas", "3", "--vet-within", vet, "--snapshot-interval", "0", "--audit-interval", "24h"]
}

#[test]
fn a_fresh_fabrics_chunks_become_durable_once_its_nodes_pass_within_the_vetting_time() {
    let fabric = Fabric::start(3, "1GiB");
    let vet = format!("{}s", VET_WITHIN.as_secs());
    let m = Mount::new_vault(fabric.dir.path(), "owner", &fabric.url(), &flags(&vet));
    let data = bytes(5 * MIB + 123, 7);
    let written = Instant::now();
    std::fs::write(m.path("a.bin"), &data).unwrap();
    std::fs::File::open(m.path("a.bin")).unwrap().sync_all().unwrap();
    let s = wait_durable_within(&m.home, VET_WITHIN);
    let took = written.elapsed();
    assert!(s.chunks > 0 && s.durable == s.chunks, "{}", s.json);
    // Durable only once every node holding a replica passed an audit (its acks alone do not
    // count), although regular audits are a day away.
    let rows = node_rows(&m.home);
    let holders: Vec<_> = rows.iter().filter(|r| r["chunks"].as_u64() > Some(0)).collect();
    assert_eq!(holders.len(), 3, "{rows:?}");
    assert!(
        holders.iter().all(|r| r["audits_passed"].as_u64() > Some(0)),
        "durable before vetting: {rows:?}"
    );
    let j = status_json(&m.home);
    assert_eq!(j["vetting"]["chunks"].as_u64(), Some(0), "{j}");
    assert_eq!(j["vetting"]["failed_nodes"].as_array().map(|a| a.len()), Some(0), "{j}");
    assert!(m.log_text().contains("passed its vetting audit"), "vetting not logged");
    eprintln!("fresh fabric durable {took:?} after the write (vet-within {VET_WITHIN:?})");
    assert_eq!(std::fs::read(m.path("a.bin")).unwrap(), data);
}

#[test]
fn a_node_that_acks_without_storing_never_counts_and_its_chunks_go_elsewhere() {
    let fabric = Fabric::start(4, "1GiB");
    let liar = 3;
    // The liar's disk keeps nothing: every chunk file it writes (and acks) is deleted at once.
    let stop = Arc::new(AtomicBool::new(false));
    let wiper = {
        let (stop, data) = (stop.clone(), fabric.nodes[liar].data.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Ok(shards) = std::fs::read_dir(data.join("chunks")) else { continue };
                for shard in shards.flatten() {
                    for f in std::fs::read_dir(shard.path()).into_iter().flatten().flatten() {
                        let _ = std::fs::remove_file(f.path());
                    }
                }
                std::thread::yield_now();
            }
        })
    };
    let vet = format!("{}s", VET_WITHIN.as_secs());
    let m = Mount::new_vault(fabric.dir.path(), "owner", &fabric.url(), &flags(&vet));
    let mut files = Vec::new();
    for i in 0..6u64 {
        let data = bytes(2 * MIB + i as usize * 1000, 20 + i);
        std::fs::write(m.path(&format!("f{i}.bin")), &data).unwrap();
        std::fs::File::open(m.path(&format!("f{i}.bin"))).unwrap().sync_all().unwrap();
        files.push(data);
    }
    let s = wait_durable_within(&m.home, Duration::from_secs(120));
    let honest: usize = (0..4).filter(|i| *i != liar).map(|i| fabric.nodes[i].bodies().len()).sum();
    assert_eq!(honest, 3 * s.chunks as usize, "every chunk on the three honest nodes: {}", s.json);
    assert_eq!(s.durable, s.chunks, "{}", s.json);
    let j = status_json(&m.home);
    let failed = j["vetting"]["failed_nodes"].as_array().cloned().unwrap_or_default();
    assert_eq!(failed.len(), 1, "the liar is not named: {j}");
    assert_eq!(failed[0].as_str(), Some(fabric.nodes[liar].id.to_string().as_str()), "{j}");
    let log = m.log_text();
    assert!(log.contains("failed its vetting audit"), "the write-off is not logged");
    let text = quloud(&m.home).arg("status").output().unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("failed its vetting audit"), "{text:?}");
    stop.store(true, Ordering::Relaxed);
    wiper.join().unwrap();
    for (i, data) in files.iter().enumerate() {
        assert!(std::fs::read(m.path(&format!("f{i}.bin"))).unwrap() == *data, "f{i} differs");
    }
}
