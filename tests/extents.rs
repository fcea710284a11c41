//! Writes proportional to the change on a real mount (real nats-server, nodes and FUSE): a
//! small write into a large file after a cold remount fetches and stages only the chunks around
//! it, read from the mount's own counters, and the file is exact after another cold remount;
//! `rsync --inplace` and `--append` upload only the change; kill -9 around in-place writes loses
//! nothing fsynced; snapshots, shares, garbage collection and audits follow files changed in place.

mod common;

use common::*;
use std::fs::{self, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

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

/// The mount's data counters at one moment.
#[derive(Clone, Copy, Debug)]
struct Counters {
    uploaded: u64,
    loaded: u64,
    staged: u64,
}

impl Counters {
    fn read(port: u16) -> Counters {
        Counters {
            uploaded: counter(port, "quloud_vault_uploaded_bytes_total"),
            loaded: counter(port, "quloud_vault_loaded_bytes_total"),
            staged: counter(port, "quloud_vault_staged_bytes_total"),
        }
    }

    fn since(self, before: Counters) -> Counters {
        Counters {
            uploaded: self.uploaded - before.uploaded,
            loaded: self.loaded - before.loaded,
            staged: self.staged - before.staged,
        }
    }
}

/// `rsync FLAGS… SRC DST` of one file. `--no-whole-file`: rsync copies between local paths
/// whole by default; a NAS backup receives over the network, with the delta algorithm.
fn rsync(flags: &[&str], src: &Path, dst: &Path) {
    require_tool("rsync", "apt-get install -y rsync");
    ok(Command::new("rsync").args(flags).arg("--no-whole-file").arg(src).arg(dst), "rsync");
}

/// A vault holding `model` as `big`, quorum-durable, freshly (cold) remounted; and its metrics port.
fn vault_with_big_file(fabric: &Fabric, tmp: &Path, model: &[u8], extra: &[&str]) -> (Mount, u16) {
    let port = free_port();
    let flag = format!("127.0.0.1:{port}");
    let mut flags = vec!["--metrics", flag.as_str()];
    flags.extend_from_slice(extra);
    let mut m = Mount::new_vault(tmp, "v", &fabric.url(), &flags);
    fs::write(m.path("big"), model).unwrap();
    wait_durable(&m.home);
    m.remount();
    (m, port)
}

#[test]
fn rsync_inplace_of_a_large_file_uploads_and_stages_only_the_changed_mebibyte() {
    let fabric = Fabric::start(3, "1GiB");
    let tmp = tempfile::tempdir().unwrap();
    let mut model = bytes(64 * MIB, 41);
    let (mut m, port) = vault_with_big_file(&fabric, tmp.path(), &model, &[]);
    let src = tmp.path().join("big");
    let at = 32 * MIB + 12_345;
    model[at..at + MIB].copy_from_slice(&bytes(MIB, 42));
    fs::write(&src, &model).unwrap();

    let before = Counters::read(port);
    rsync(&["--inplace", "-I"], &src, &m.path("big"));
    wait_durable(&m.home);
    let c = Counters::read(port).since(before);
    eprintln!("rsync --inplace, 1 MiB changed in 64 MiB: {c:?}");
    // rsync reads the whole old file to find what changed; it writes and Quloud uploads only
    // the change and the chunks around it.
    assert!(c.staged <= 2 * MIB as u64, "rsync --inplace staged {} bytes", c.staged);
    assert!(c.uploaded <= 5 * MIB as u64, "rsync --inplace uploaded {} bytes", c.uploaded);
    assert!(c.loaded <= (64 + 4) * MIB as u64, "rsync --inplace loaded {} bytes", c.loaded);

    m.remount();
    assert_content(&m.path("big"), &model, "after rsync --inplace and a cold remount");
}

#[test]
fn rsync_append_and_append_verify_upload_only_the_new_tail() {
    let fabric = Fabric::start(3, "1GiB");
    let tmp = tempfile::tempdir().unwrap();
    let mut model = bytes(64 * MIB, 51);
    let (mut m, port) = vault_with_big_file(&fabric, tmp.path(), &model, &[]);
    let src = tmp.path().join("big");

    for (round, flag) in ["--append", "--append-verify"].into_iter().enumerate() {
        model.extend_from_slice(&bytes(MIB + 333, 52 + round as u64));
        fs::write(&src, &model).unwrap();
        let before = Counters::read(port);
        rsync(&[flag], &src, &m.path("big"));
        wait_durable(&m.home);
        let c = Counters::read(port).since(before);
        eprintln!("rsync {flag} of 1 MiB onto {} MiB: {c:?}", model.len() / MIB);
        assert!(c.staged <= MIB as u64 + 333, "rsync {flag} staged {} bytes", c.staged);
        assert!(c.uploaded <= 3 * MIB as u64, "rsync {flag} uploaded {} bytes", c.uploaded);
        // Only the old last chunk is read back, to rechunk it with the new tail.
        assert!(c.loaded <= 2 * MIB as u64, "rsync {flag} loaded {} bytes", c.loaded);
        m.remount();
        assert_content(&m.path("big"), &model, &format!("after rsync {flag} and a cold remount"));
    }
}

/// After a crash: every byte outside `unsynced` is `synced`'s; a byte inside an unsynced write
/// is either the old or the new one. Returns the content found.
#[track_caller]
fn assert_synced_kept(path: &Path, synced: &[u8], unsynced: &[(usize, &[u8])], when: &str) -> Vec<u8> {
    let got = fs::read(path).unwrap_or_else(|e| panic!("{when}: read {}: {e}", path.display()));
    assert_eq!(got.len(), synced.len(), "{when}: size");
    let mut extra = vec![None; got.len()];
    for (at, data) in unsynced {
        for (i, b) in data.iter().enumerate() {
            if let Some(x) = extra.get_mut(at + i) {
                *x = Some(*b);
            }
        }
    }
    if let Some(at) = (0..got.len()).find(|&i| got[i] != synced[i] && Some(got[i]) != extra[i]) {
        panic!("{when}: byte {at} is neither the fsynced nor an unsynced write's");
    }
    got
}

fn crash_and_remount(m: &mut Mount) {
    m.kill9();
    m.clear_stale();
    m.spawn();
}

#[test]
fn kill9_around_in_place_writes_keeps_every_fsynced_byte_and_never_mixes() {
    let fabric = Fabric::start(3, "1GiB");
    let tmp = tempfile::tempdir().unwrap();
    let mut model = bytes(24 * MIB, 61);
    let (mut m, _) = vault_with_big_file(&fabric, tmp.path(), &model, &[]);
    let big = m.path("big");
    let open = || OpenOptions::new().read(true).write(true).open(&big).unwrap();
    let patch = |seed: u64, len: usize| bytes(len, seed);

    // 1. An fsynced write, then an unsynced one; killed with the file open.
    let f = open();
    let (a, b) = (patch(62, 64 << 10), patch(63, 300_000));
    f.write_all_at(&a, 5 * MIB as u64 + 17).unwrap();
    f.sync_all().unwrap();
    model[5 * MIB + 17..][..a.len()].copy_from_slice(&a);
    f.write_all_at(&b, 9 * MIB as u64).unwrap();
    crash_and_remount(&mut m);
    drop(f);
    model = assert_synced_kept(&big, &model, &[(9 * MIB, &b[..])], "kill -9 while open");

    // 2. Written, fsynced and closed; killed at once (before or during the rechunk), twice:
    // a small change and one of 8 MiB whose rechunk takes longer.
    for (seed, at, len) in [(64, 13 * MIB + 5, 4096), (65, 2 * MIB + 99, 8 * MIB)] {
        let f = open();
        let p = patch(seed, len);
        f.write_all_at(&p, at as u64).unwrap();
        f.sync_all().unwrap();
        drop(f);
        model[at..at + len].copy_from_slice(&p);
        crash_and_remount(&mut m);
        assert_content(&big, &model, &format!("kill -9 right after close ({len} bytes)"));
    }

    // 3. Closed without fsync, rechunked (nothing staged), killed before the uploads finish.
    let f = open();
    let p = patch(66, 200_000);
    f.write_all_at(&p, 17 * MIB as u64).unwrap();
    drop(f);
    poll_until(Duration::from_secs(30), Duration::from_millis(20), "the rechunk", || {
        status(&m.home).staged_files == 0
    });
    crash_and_remount(&mut m);
    model = assert_synced_kept(&big, &model, &[(17 * MIB, &p[..])], "kill -9 after the rechunk");

    // 4. Truncated, appended to and fsynced while open; killed.
    let f = open();
    f.set_len(20 * MIB as u64 + 3).unwrap();
    model.truncate(20 * MIB + 3);
    let tail = patch(67, 2 * MIB);
    f.write_all_at(&tail, model.len() as u64).unwrap();
    model.extend_from_slice(&tail);
    f.sync_all().unwrap();
    crash_and_remount(&mut m);
    drop(f);
    assert_content(&big, &model, "kill -9 after truncate + append + fsync");

    // Everything settles; the file is exact after a clean cold remount.
    wait_durable(&m.home);
    m.remount();
    assert_content(&big, &model, "after the crashes, settled, and a cold remount");
}

/// `quloud snapshot --json` on a mounted vault; returns the new snapshot's id.
fn snapshot(home: &Path) -> u64 {
    let out = ok(quloud(home).args(["snapshot", "--json"]), "quloud snapshot");
    let at = out.find("\"id\":").unwrap_or_else(|| panic!("no snapshot taken: {out}")) + 5;
    out[at..].chars().take_while(|c| c.is_ascii_digit()).collect::<String>().parse().unwrap()
}

/// Mounts `--snapshot ID` (or `--share CAP`) read-only beside `m` and compares `rel` with `want`.
fn assert_read_only_view(
    fabric: &Fabric,
    m: &Mount,
    home: &Path,
    flag: &str,
    value: &str,
    rel: &str,
    want: &[u8],
) {
    let mp = m.home.with_file_name(format!("view-{}", &value[..value.len().min(8)]));
    let mut view = Mount::start_verb(home, &mp, &fabric.url(), &["mount"], &[flag, value]);
    assert_content(&view.path(rel), want, &format!("mount {flag} {value}"));
    view.unmount();
}

#[test]
fn snapshots_shares_gc_and_audits_follow_a_file_changed_in_place() {
    let fabric = Fabric::start(3, "1GiB");
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let metrics = format!("127.0.0.1:{port}");
    let flags = ["--metrics", &metrics, "--gc-grace", "1s", "--keep-last", "2", "--keep-daily", "0"];
    let mut m = Mount::new_vault(tmp.path(), "v", &fabric.url(), &flags);
    fs::create_dir(m.path("vm")).unwrap();
    let v0 = bytes(16 * MIB, 71);
    fs::write(m.path("vm/disk.img"), &v0).unwrap();
    wait_durable(&m.home);
    let s0 = snapshot(&m.home);

    // Changed in place: a write in the middle and an append (staged in part, then rechunked).
    let in_place = |v: &[u8], seed: u64| {
        let mut next = v.to_vec();
        let at = 7 * MIB + 4321;
        let p = bytes(100_000, seed);
        next[at..at + p.len()].copy_from_slice(&p);
        next.extend_from_slice(&bytes(300_000, seed + 1));
        let f = OpenOptions::new().write(true).open(m.path("vm/disk.img")).unwrap();
        f.write_all_at(&p, at as u64).unwrap();
        f.write_all_at(&next[v.len()..], v.len() as u64).unwrap();
        next
    };
    let v1 = in_place(&v0, 72);
    wait_durable(&m.home);
    let s1 = snapshot(&m.home);
    assert_read_only_view(&fabric, &m, &m.home, "--snapshot", &s0.to_string(), "vm/disk.img", &v0);
    assert_read_only_view(&fabric, &m, &m.home, "--snapshot", &s1.to_string(), "vm/disk.img", &v1);

    // A second change and snapshot: retention drops the first, and garbage collection frees the
    // chunks only it named, while those the kept snapshot shares with it stay readable.
    let collected = chunks_collected(&metrics);
    let v2 = in_place(&v1, 74);
    wait_durable(&m.home);
    let s2 = snapshot(&m.home);
    poll_until(Duration::from_secs(60), Duration::from_millis(200), "garbage collection", || {
        chunks_collected(&metrics) > collected
    });
    assert_read_only_view(&fabric, &m, &m.home, "--snapshot", &s1.to_string(), "vm/disk.img", &v1);
    assert_read_only_view(&fabric, &m, &m.home, "--snapshot", &s2.to_string(), "vm/disk.img", &v2);
    assert_content(&m.path("vm/disk.img"), &v2, "the live file");

    // A share of the directory reads the changed file.
    let out = ok(quloud(&m.home).arg("share").arg(m.path("vm")), "quloud share");
    let cap = out.split_whitespace().find(|w| w.starts_with("QS1-")).expect("no capability printed");
    let friend = tmp.path().join("friend-home");
    assert_read_only_view(&fabric, &m, &friend, "--share", cap, "disk.img", &v2);

    // An audit of every replica passes.
    let audit = ok(quloud(&m.home).args(["audit", "--now", "--json"]), "quloud audit");
    assert!(
        audit.contains("\"failed\":0") && audit.contains("\"healthy\":true"),
        "audit after in-place changes: {audit}"
    );
    m.unmount();
}
