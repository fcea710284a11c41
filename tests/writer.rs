//! One writer per vault, end to end: a real nats-server, real `quloud node` processes and two
//! homes of the same vault with real FUSE mounts. A home that mounts while another holds the
//! writer lease mounts read-only and says why; a take-over fences the other home within its
//! `--writer-check`; the fenced home's lineage is adopted and garbage collection keeps its data.

mod common;

use common::*;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[track_caller]
fn ok(cmd: &mut Command, what: &str) -> String {
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{what} failed ({}): {}", o.status, text(&o));
    text(&o)
}

fn status_json(home: &Path) -> String {
    ok(quloud(home).args(["status", "--json"]), "quloud status --json")
}

fn read_only(home: &Path) -> bool {
    status_json(home).contains("\"read_only\":true")
}

/// The paper key of `home`, in a file (as `quloud key show --reveal` prints it).
fn key_file(home: &Path, dir: &Path) -> PathBuf {
    let key = std::fs::read_to_string(home.join("master.key")).unwrap();
    let path = dir.join(format!("paper-{}.txt", std::process::id()));
    std::fs::write(&path, key).unwrap();
    path
}

/// `quloud restore --no-mount` into `home`: takes the writer lease.
fn restore(home: &Path, mp: &Path, url: &str, key: &Path) -> String {
    let key = key.to_string_lossy().into_owned();
    ok(
        quloud(home).arg("restore").arg(mp).args(["--nats", url, "--key-file", &key, "--no-mount"]),
        "quloud restore --no-mount",
    )
}

fn erofs(path: &Path) -> bool {
    std::fs::write(path, b"x").err().and_then(|e| e.raw_os_error()) == Some(libc::EROFS)
}

const FAST: [&str; 2] = ["--writer-check", "1s"];

#[test]
fn a_second_home_mounts_read_only_and_a_take_over_fences_the_first_within_the_bound() {
    let fabric = Fabric::start(3, "1GiB");
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Mount::new_vault(tmp.path(), "a", &fabric.url(), &FAST);
    std::fs::write(a.path("from-a.txt"), b"first home").unwrap();
    wait_durable(&a.home);
    ok(quloud(&a.home).arg("snapshot"), "quloud snapshot");
    assert!(status_json(&a.home).contains("holds the writer lease"), "{}", status_json(&a.home));

    // The vault restored on a second home takes the lease: the first stops writing within its
    // --writer-check (1 s; the bound asserted leaves room for a loaded machine).
    let (home_b, mp_b) = (tmp.path().join("b-home"), tmp.path().join("b-mp"));
    let key = key_file(&a.home, tmp.path());
    let started = Instant::now();
    let out = restore(&home_b, &mp_b, &fabric.url(), &key);
    assert!(out.contains("holds the writer lease"), "{out}");
    wait_until(Duration::from_secs(15), "the first home is fenced", || read_only(&a.home));
    let fenced_after = started.elapsed();
    assert!(erofs(&a.path("after-the-fence.txt")), "a fenced home still takes writes");
    assert!(a.log_text().contains("another home"), "the log does not say why:\n{}", a.log_text());
    let text_status = ok(quloud(&a.home).arg("status"), "quloud status");
    assert!(text_status.contains("read-only: another home"), "{text_status}");
    eprintln!("fenced {fenced_after:?} after the take-over began");

    // The second home mounts read-write; the first, mounted again, mounts read-only and says why.
    let mut b = Mount::start(&home_b, &mp_b, &fabric.url(), &FAST);
    std::fs::write(b.path("from-b.txt"), b"second home").unwrap();
    assert_eq!(std::fs::read(b.path("from-a.txt")).unwrap(), b"first home");
    a.remount();
    assert!(a.log_text().contains("mounting read-only"), "log:\n{}", a.log_text());
    assert!(read_only(&a.home), "{}", status_json(&a.home));
    assert!(erofs(&a.path("again.txt")));
    assert_eq!(std::fs::read(a.path("from-a.txt")).unwrap(), b"first home", "reads still work");

    // `mount --take-over` moves the lease back: now the second home is fenced.
    a.unmount();
    let mut a = Mount::start(&a.home, &a.mp, &fabric.url(), &["--writer-check", "1s", "--take-over"]);
    std::fs::write(a.path("back.txt"), b"taken back").unwrap();
    wait_until(Duration::from_secs(15), "the second home is fenced", || read_only(&home_b));
    assert!(erofs(&b.path("late.txt")));
    a.unmount();
    b.unmount();
}

#[test]
fn a_second_home_deleting_files_and_collecting_garbage_loses_nothing_of_the_first() {
    let fabric = Fabric::start(3, "1GiB");
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Mount::new_vault(tmp.path(), "a", &fabric.url(), &FAST);
    let data: Vec<Vec<u8>> = (0..2).map(|i| bytes(3 << 20, 40 + i)).collect();
    for (i, d) in data.iter().enumerate() {
        std::fs::write(a.path(&format!("keep{i}.bin")), d).unwrap();
    }
    wait_durable(&a.home);
    a.unmount(); // takes a snapshot: the first home goes away for a while

    // A second home restores the vault, deletes both files, keeps only its newest snapshot
    // and collects garbage with a short grace period.
    let (home_b, mp_b) = (tmp.path().join("b-home"), tmp.path().join("b-mp"));
    restore(&home_b, &mp_b, &fabric.url(), &key_file(&a.home, tmp.path()));
    let flags = ["--writer-check", "1s", "--gc-grace", "1s", "--keep-last", "1", "--keep-daily", "0"];
    let mut b = Mount::start(&home_b, &mp_b, &fabric.url(), &flags);
    for i in 0..2 {
        std::fs::remove_file(b.path(&format!("keep{i}.bin"))).unwrap();
    }
    std::fs::write(b.path("b.txt"), b"second home").unwrap();
    wait_durable(&b.home);
    ok(quloud(&b.home).arg("snapshot"), "quloud snapshot on the second home");
    wait_until(Duration::from_secs(30), "the second home's collection waits", || {
        b.log_text().contains("garbage collection waits")
    });

    // The first home comes back: read-only, it closes its lineage; the second resumes.
    a.spawn();
    assert!(read_only(&a.home));
    wait_until(Duration::from_secs(60), "the lineage is closed", || {
        b.log_text().contains("closed its lineage; garbage collection resumes")
    });
    assert!(a.log_text().contains("published the closed root record"), "{}", a.log_text());
    // The first home still reads its files from the nodes (the disk cache is off in tests).
    for (i, d) in data.iter().enumerate() {
        let back = std::fs::read(a.path(&format!("keep{i}.bin"))).unwrap();
        assert!(back == *d, "keep{i}.bin of the first home is lost");
    }
    // `snapshots` and `restore` agree on the newest: the second home's lineage.
    let listed = ok(quloud(&b.home).args(["snapshots", "--json"]), "quloud snapshots");
    let newest = listed
        .rsplit("\"id\":")
        .next()
        .unwrap()
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>();
    assert!(listed.contains("\"epoch\":1") && listed.contains("\"epoch\":2"), "{listed}");
    let out = restore(
        &tmp.path().join("c-home"),
        &tmp.path().join("c-mp"),
        &fabric.url(),
        &key_file(&a.home, tmp.path()),
    );
    assert!(
        out.contains(&format!("restoring snapshot {newest} ")),
        "restore picked another: {out} / {listed}"
    );
    a.unmount();
    b.unmount();
}

/// Chunk body files on every node of `fabric`.
fn bodies(fabric: &Fabric) -> HashSet<PathBuf> {
    fabric.nodes.iter().flat_map(|n| n.bodies()).collect()
}

/// `quloud snapshots --json` on `home`: the id of the newest snapshot of writer epoch `epoch`.
fn newest_of_epoch(home: &Path, epoch: u64) -> Option<String> {
    let listed = ok(quloud(home).args(["snapshots", "--json"]), "quloud snapshots");
    listed
        .split('{')
        .filter(|row| row.contains(&format!("\"epoch\":{epoch}")))
        .filter_map(|row| row.split("\"id\":").nth(1))
        .map(|r| r.chars().take_while(|c| c.is_ascii_digit()).collect::<String>())
        .next_back()
}

/// The hand-over on the real fabric. The first home writes and snapshots; a second restores the
/// vault (taking the lease) while the first runs on and writes a file only it has. The first,
/// fenced when it next publishes, refuses changes with EROFS and publishes its closed record.
/// The second adopts its last snapshot: listed by `snapshots`, and every file of it readable
/// with `mount --snapshot`. The second's garbage collection (1 s grace, one snapshot kept) then
/// resumes: it deletes a file the second home deleted from the nodes, and nothing the first had.
#[test]
fn a_fenced_homes_last_snapshot_is_adopted_and_the_writers_garbage_collection_resumes() {
    let fabric = Fabric::start(3, "1GiB");
    let tmp = tempfile::tempdir().unwrap();
    // The first home reads its lease only when it publishes (an hour between checks).
    let mut a = Mount::new_vault(tmp.path(), "a", &fabric.url(), &["--writer-check", "1h"]);
    let before = bytes(2 << 20, 76);
    std::fs::write(a.path("before.bin"), &before).unwrap();
    wait_durable(&a.home);
    ok(quloud(&a.home).arg("snapshot"), "quloud snapshot on the first home");

    // A second home takes the vault over while the first, unaware, writes on.
    let (home_b, mp_b) = (tmp.path().join("b-home"), tmp.path().join("b-mp"));
    restore(&home_b, &mp_b, &fabric.url(), &key_file(&a.home, tmp.path()));
    let late = bytes(2 << 20, 77);
    std::fs::write(a.path("late.bin"), &late).unwrap();
    wait_durable(&a.home);
    // Publishing makes the first home read its lease: it is fenced and closes its lineage with
    // a last snapshot that holds late.bin (the command itself may fail: the home is fenced).
    let _ = quloud(&a.home).arg("snapshot").output().unwrap();
    wait_until(Duration::from_secs(30), "the first home to publish its closed record", || {
        a.log_text().contains("published the closed root record")
    });
    assert!(erofs(&a.path("after-the-fence.txt")), "a fenced home still takes writes");
    // The kernel mount stays read-write: the vault refuses every change with EROFS, not EIO.
    let tools: [&[&str]; 7] = [
        &["touch", "before.bin"],
        &["touch", "new.txt"],
        &["mkdir", "dir"],
        &["rm", "late.bin"],
        &["mv", "late.bin", "moved.bin"],
        &["setfattr", "-n", "user.k", "-v", "v", "late.bin"],
        &["setfattr", "-x", "user.none", "late.bin"],
    ];
    for argv in tools {
        let o = Command::new(argv[0]).args(&argv[1..]).current_dir(&a.mp).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains("Read-only file system"),
            "{argv:?} on the fenced home: {err}"
        );
    }
    assert!(std::fs::read(a.path("late.bin")).unwrap() == late, "late.bin changed on the fenced home");
    let text_status = ok(quloud(&a.home).arg("status"), "quloud status on the first home");
    assert!(text_status.contains("read-only: another home"), "{text_status}");
    assert!(status_json(&a.home).contains("\"state\":\"fenced\""), "{}", status_json(&a.home));
    a.unmount();

    let metrics = format!("127.0.0.1:{}", free_port());
    let flags = ["--writer-check", "1s", "--gc-grace", "1s", "--keep-last", "1", "--keep-daily", "0"];
    let flags: Vec<&str> = flags.iter().copied().chain(["--metrics", &metrics]).collect();
    let mut b = Mount::start(&home_b, &mp_b, &fabric.url(), &flags);
    std::fs::remove_file(b.path("before.bin")).unwrap();
    wait_durable(&b.home);
    ok(quloud(&b.home).arg("snapshot"), "quloud snapshot on the second home");
    wait_until(Duration::from_secs(60), "the closed lineage to be adopted", || {
        b.log_text().contains("closed its lineage; garbage collection resumes")
    });
    let adopted = newest_of_epoch(&home_b, 1).expect("the first home's last snapshot is listed");
    // The next snapshot drops the restored one (one kept, and the adopted one is now the newest
    // of the first lineage): only the adoption keeps before.bin's chunks from collection.
    std::fs::write(b.path("one.txt"), b"one more").unwrap();
    wait_durable(&b.home);
    ok(quloud(&b.home).arg("snapshot"), "quloud snapshot on the second home");

    // A file of the second home's own, deleted before its next snapshot: collection deletes its
    // chunks from the nodes although the adopted snapshot, taken earlier, is kept. Once they
    // are gone, collection has run over everything unreferenced before, before.bin's included.
    let old = bodies(&fabric);
    std::fs::write(b.path("scratch.bin"), bytes(1 << 20, 78)).unwrap();
    wait_durable(&b.home);
    let scratch: Vec<PathBuf> = bodies(&fabric).difference(&old).cloned().collect();
    assert!(!scratch.is_empty(), "scratch.bin stored no chunk on the nodes");
    std::fs::remove_file(b.path("scratch.bin")).unwrap();
    std::fs::write(b.path("after.txt"), b"after the scratch file").unwrap();
    wait_durable(&b.home);
    ok(quloud(&b.home).arg("snapshot"), "quloud snapshot on the second home");
    // The counter grows once the pass that deleted them ends.
    wait_until(Duration::from_secs(90), "garbage collection to delete the deleted file's chunks", || {
        scratch.iter().all(|p| !p.exists()) && chunks_collected(&metrics) > 0
    });
    assert_eq!(newest_of_epoch(&home_b, 1), Some(adopted.clone()), "the adopted snapshot is kept");
    b.unmount();

    // Nothing the first home had is lost: both its files read back from the adopted snapshot,
    // from the nodes (the disk cache is off in tests).
    let mp_s = tmp.path().join("s-mp");
    let mut s = Mount::start(&home_b, &mp_s, &fabric.url(), &["--snapshot", &adopted]);
    let back = std::fs::read(s.path("late.bin")).expect("late.bin in the adopted snapshot");
    assert!(back == late, "late.bin of the fenced home is lost");
    let back = std::fs::read(s.path("before.bin")).expect("before.bin in the adopted snapshot");
    assert!(back == before, "before.bin, deleted by the second home, is lost");
    s.unmount();
}
