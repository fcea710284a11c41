//! Big vaults on real parts (a real nats-server, three real `quloud node` processes, real FUSE
//! mounts): a snapshot after one changed file stores a sliver of the first, measured in the
//! nodes' chunk body bytes; and a cold directory of small files is read in far fewer get round
//! trips than files, measured by the mount's own counters.

mod common;

use common::*;
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn ok(cmd: &mut Command, what: &str) -> String {
    let o = cmd.output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{what} failed ({}): {text}", o.status);
    text
}

/// `files` small files of 100–600 bytes in 20 directories under `dir`.
fn small_tree(dir: &Path, files: usize) {
    for i in 0..files {
        let sub = dir.join(format!("d{:02}", i % 20));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join(format!("f{i:05}.txt")), bytes(100 + i % 500, i as u64)).unwrap();
    }
}

fn body_bytes(fabric: &Fabric) -> u64 {
    fabric.nodes.iter().map(|n| n.body_bytes()).sum()
}

/// Loads `src` into a new vault on `fabric` with rsync and waits until it is durable.
fn vault_with(fabric: &Fabric, dir: &Path, src: &Path, extra: &[&str]) -> Mount {
    let m = Mount::new_vault(dir, "owner", &fabric.url(), extra);
    require_tool("rsync", "apt-get install -y rsync");
    let (from, to) = (format!("{}/", src.display()), format!("{}/", m.mp.display()));
    ok(Command::new("rsync").args(["-a", &from, &to]), "rsync into the mount");
    wait_durable(&m.home);
    m
}

#[test]
fn a_snapshot_after_one_changed_file_stores_a_sliver_of_the_first() {
    let fabric = Fabric::start(3, "1GiB");
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    small_tree(&src, 3000);
    let m = vault_with(&fabric, tmp.path(), &src, &[]);
    let before = body_bytes(&fabric);
    ok(quloud(&m.home).args(["snapshot"]), "the first snapshot");
    let first = body_bytes(&fabric) - before;

    std::fs::write(m.path("d07/f00007.txt"), b"one changed file").unwrap();
    std::fs::write(src.join("d07/f00007.txt"), b"one changed file").unwrap();
    wait_durable(&m.home);
    let before = body_bytes(&fabric);
    let said = ok(quloud(&m.home).args(["snapshot"]), "the second snapshot");
    assert!(said.contains("snapshot 2 stored"), "{said}");
    let second = body_bytes(&fabric) - before;
    // The second records every piece of the first once (~270 bytes each), so it is the larger;
    // from the third on, a snapshot stores the changed pieces, a head and an index piece or two.
    std::fs::write(m.path("d08/f00008.txt"), b"another changed file").unwrap();
    std::fs::write(src.join("d08/f00008.txt"), b"another changed file").unwrap();
    wait_durable(&m.home);
    let before = body_bytes(&fabric);
    ok(quloud(&m.home).args(["snapshot"]), "the third snapshot");
    let third = body_bytes(&fabric) - before;
    println!(
        "first snapshot: {first} body bytes on the nodes; second, after one change: {second}; third: {third}"
    );
    assert!(first > 0, "the first snapshot stored nothing");
    assert!(second * 100 < first * 35, "the second snapshot stored {second} bytes, the first {first}");
    assert!(third * 100 < first * 12, "the third snapshot stored {third} bytes, the first {first}");

    // Restored from the paper key on a fresh home: the snapshot's indexed head, its index
    // pieces and its pieces come back from the nodes, and every file with them.
    let mut m = m;
    m.unmount();
    let paper = std::fs::read_to_string(m.home.join("master.key")).unwrap();
    let key_file = tmp.path().join("paper.txt");
    std::fs::write(&key_file, paper).unwrap();
    let (home, mp) = (tmp.path().join("restored-home"), tmp.path().join("restored"));
    std::fs::create_dir_all(&mp).unwrap();
    let key = key_file.to_string_lossy().into_owned();
    let r = Mount::start_verb(&home, &mp, &fabric.url(), &["restore"], &["--key-file", &key]);
    assert!(r.log_text().contains("vault restored"), "log: {}", r.log_text());
    let (from, to) = (format!("{}/", src.display()), format!("{}/", r.mp.display()));
    let same = ok(Command::new("diff").args(["-r", "-q", &from, &to]), "diff -r of the restored tree");
    assert!(same.is_empty(), "{same}");
}

fn value(m: &HashMap<String, f64>, key: &str) -> f64 {
    *m.get(key).unwrap_or_else(|| panic!("no {key} in the scrape: {m:?}"))
}

#[test]
fn a_cold_directory_of_small_files_is_read_in_batched_gets() {
    let fabric = Fabric::start(3, "1GiB");
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    small_tree(&src, 400);
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let flag = addr.to_string();
    let mut m = vault_with(&fabric, tmp.path(), &src, &["--metrics", &flag]);
    // Cold: a new mount process (empty memory cache) without the disk cache of sealed chunks.
    m.unmount();
    std::fs::remove_dir_all(m.home.join("chunks")).unwrap();
    m.spawn();
    poll_until(Duration::from_secs(20), Duration::from_millis(100), "the metrics endpoint", || {
        scrape_metrics(addr).contains_key("quloud_vault_fabric_connected")
    });
    let dir = m.path("d03");
    let mut read = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name();
        let got = std::fs::read(dir.join(&name)).unwrap();
        assert_eq!(got, std::fs::read(src.join("d03").join(&name)).unwrap(), "{name:?} differs");
        read += 1;
    }
    let s = scrape_metrics(addr);
    let singles = value(&s, "quloud_vault_fabric_fetch_seconds_count");
    let batched = value(&s, "quloud_vault_prefetch_requests_total");
    let prefetched = value(&s, "quloud_vault_prefetched_chunks_total");
    println!("{read} files read: {singles} single gets, {batched} batched gets ({prefetched} chunks)");
    assert_eq!(read, 20);
    assert!(prefetched > 0.0, "nothing was prefetched");
    assert!(singles + batched < read as f64 / 2.0, "{singles} + {batched} get round trips for {read} files");

    // Listing the root prefetches its subdirectories' small files too (all 400 fit the budget):
    // reading two more directories then asks the fabric for nothing.
    assert_eq!(std::fs::read_dir(&m.mp).unwrap().count(), 20);
    poll_until(Duration::from_secs(30), Duration::from_millis(100), "the tree to be prefetched", || {
        value(&scrape_metrics(addr), "quloud_vault_prefetched_chunks_total") >= 400.0
    });
    let before = value(&scrape_metrics(addr), "quloud_vault_fabric_fetch_seconds_count");
    for d in ["d07", "d11"] {
        for entry in std::fs::read_dir(m.path(d)).unwrap() {
            let name = entry.unwrap().file_name();
            let got = std::fs::read(m.path(d).join(&name)).unwrap();
            assert_eq!(got, std::fs::read(src.join(d).join(&name)).unwrap(), "{d}/{name:?} differs");
        }
    }
    let after = value(&scrape_metrics(addr), "quloud_vault_fabric_fetch_seconds_count");
    assert_eq!(after, before, "single gets for files the root's listing prefetched");
    m.unmount();
}
