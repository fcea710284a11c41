//! Writes proportional to the change on a real mount (real nats-server, nodes and FUSE): a
//! small write into a large file after a cold remount fetches and stages only the chunks around
//! it, read from the mount's own counters, and the file is exact after another cold remount.

mod common;

use common::*;
use std::fs::{self, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

const MIB: usize = 1 << 20;

fn counter(port: u16, name: &str) -> u64 {
    *scrape_metrics(("127.0.0.1", port)).get(name).unwrap_or_else(|| panic!("the mount exports no {name}"))
        as u64
}

fn assert_content(path: &Path, want: &[u8], when: &str) {
    let got = fs::read(path).unwrap_or_else(|e| panic!("{when}: read {}: {e}", path.display()));
    assert_eq!(got.len(), want.len(), "{when}: size of {}", path.display());
    if let Some(at) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!("{when}: {} differs at byte {at}", path.display());
    }
}

#[test]
fn a_small_write_into_a_large_file_after_a_cold_remount_touches_only_nearby_chunks() {
    let fabric = Fabric::start(3, "1GiB");
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let flag = format!("127.0.0.1:{port}");
    let mut m = Mount::new_vault(tmp.path(), "v", &fabric.url(), &["--metrics", &flag]);
    let mut model = bytes(64 * MIB, 21);
    fs::write(m.path("big"), &model).unwrap();
    wait_durable(&m.home);
    // Cold: a new process has no memory cache, and the tests' mounts keep no disk cache.
    m.remount();
    let (loaded, staged) =
        (counter(port, "quloud_vault_loaded_bytes_total"), counter(port, "quloud_vault_staged_bytes_total"));
    assert_eq!((loaded, staged), (0, 0), "a fresh mount has loaded and staged nothing");

    let at = 32 * MIB + 777;
    let patch = bytes(4096, 22);
    let started = std::time::Instant::now();
    let mut f = OpenOptions::new().write(true).open(m.path("big")).unwrap();
    f.seek(SeekFrom::Start(at as u64)).unwrap();
    f.write_all(&patch).unwrap();
    drop(f);
    let took = started.elapsed();
    model[at..at + patch.len()].copy_from_slice(&patch);
    wait_durable(&m.home);
    let loaded = counter(port, "quloud_vault_loaded_bytes_total");
    let staged = counter(port, "quloud_vault_staged_bytes_total");
    eprintln!("4 KiB write into 64 MiB after a cold remount: {took:?}, loaded {loaded} B, staged {staged} B");
    assert!(loaded <= 4 * MIB as u64, "the write and its rechunking loaded {loaded} bytes");
    assert!(staged <= 8 * MIB as u64, "the write staged {staged} bytes");

    m.remount();
    assert_content(&m.path("big"), &model, "after the write and a cold remount");
}
