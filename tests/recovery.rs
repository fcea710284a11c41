//! Disaster recovery, time travel and sharing, end to end: a real nats-server, three real
//! `quloud node` processes, real FUSE mounts, and `quloud snapshot / snapshots / restore /
//! share / mount --snapshot / mount --share` as a user runs them.

mod common;

use common::tree::{compare_trees, make_tree};
use common::*;
use quloud::adapters::nats::fabric::NatsFabric;
use quloud::adapters::redb::manifest::Manifest;
use quloud::domain::ids::Addr;
use quloud::domain::keys::MasterKey;
use quloud::domain::paper;
use quloud::domain::share::Capability;
use quloud::domain::snapshot::{root_locator, RootRecord};
use quloud::ports::fabric::ChunkFabric;
use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

const MIB: usize = 1 << 20;

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[track_caller]
fn ok(cmd: &mut Command, what: &str) -> String {
    let o = run(cmd);
    assert!(o.status.success(), "{what} failed ({}): {}", o.status, text(&o));
    text(&o)
}

/// `quloud snapshot --json` on a mounted vault; returns the new snapshot's id.
fn snapshot(home: &Path) -> u64 {
    let out = ok(quloud(home).args(["snapshot", "--json"]), "quloud snapshot");
    let at = out.find("\"id\":").unwrap_or_else(|| panic!("no snapshot taken: {out}")) + 5;
    out[at..].chars().take_while(|c| c.is_ascii_digit()).collect::<String>().parse().unwrap()
}

fn rsync_into(src: &Path, dst: &Path) {
    require_tool("rsync", "apt-get install -y rsync");
    ok(
        Command::new("rsync")
            .args(["-aHAX", "--numeric-ids"])
            .arg(format!("{}/", src.display()))
            .arg(format!("{}/", dst.display())),
        "rsync -aHAX into the mount",
    );
}

#[track_caller]
fn diff_r(a: &Path, b: &Path) {
    ok(Command::new("diff").arg("-r").arg("--no-dereference").arg(a).arg(b), "diff -r");
    if let Err(e) = compare_trees(a, b) {
        panic!("metadata differs: {e}");
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn restore_with_the_paper_key_rebuilds_a_lost_vault() {
    let fabric = Fabric::start(3, "1GiB");
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_tree(&src, 5);
    std::fs::create_dir_all(src.join("video")).unwrap();
    std::fs::write(src.join("video/big.bin"), bytes(5 * MIB + 777, 9)).unwrap();
    let old = std::fs::metadata(src.join("links")).unwrap();
    tree::set_mtime(&src.join("video"), old.mtime(), 0);
    tree::set_mtime(&src, old.mtime(), 0);
    let mut m = Mount::new_vault(tmp.path(), "owner", &fabric.url(), &[]);
    rsync_into(&src, &m.mp);
    wait_durable(&m.home);
    diff_r(&src, &m.mp);
    snapshot(&m.home);
    m.unmount();

    // The paper key is all the owner keeps; the machine (home: manifest, staging, cache) is lost.
    let paper_key = std::fs::read_to_string(m.home.join("master.key")).unwrap().trim().to_string();
    let key_file = tmp.path().join("paper.txt");
    std::fs::write(&key_file, format!("{paper_key}\n")).unwrap();
    std::fs::remove_dir_all(&m.home).unwrap();

    // A mistyped key: a clear error, and nothing written.
    let new_home = tmp.path().join("new-home");
    let mp = tmp.path().join("restored");
    std::fs::create_dir_all(&mp).unwrap();
    let pos = paper_key.len() - 6;
    let typo_char = if &paper_key[pos..pos + 1] == "7" { "8" } else { "7" };
    let typo = format!("{}{}{}", &paper_key[..pos], typo_char, &paper_key[pos + 1..]);
    let o = run(quloud(&new_home).arg("restore").arg(&mp).args(["--nats", &fabric.url(), "--key", &typo]));
    assert!(!o.status.success(), "a mistyped key was accepted: {}", text(&o));
    assert!(text(&o).contains("mistyped"), "unclear error for a typo: {}", text(&o));
    assert!(!new_home.exists(), "a rejected key wrote {}", new_home.display());

    // A valid key of another vault: no snapshot found, nothing written.
    let stranger = paper::encode(&MasterKey::generate());
    let o =
        run(quloud(&new_home).arg("restore").arg(&mp).args(["--nats", &fabric.url(), "--key", &stranger]));
    assert!(!o.status.success());
    assert!(text(&o).contains("no snapshot of this vault"), "unclear error: {}", text(&o));
    assert!(!new_home.exists(), "a wrong key wrote {}", new_home.display());

    // The real key, into a fresh home: restored and mounted, every file identical.
    let key_arg = key_file.to_string_lossy().into_owned();
    let mut r = Mount::start_verb(&new_home, &mp, &fabric.url(), &["restore"], &["--key-file", &key_arg]);
    assert!(r.log_text().contains("vault restored"), "log: {}", r.log_text());
    diff_r(&src, &r.mp);
    // The restored vault is a working vault: it takes writes and they become durable.
    std::fs::write(r.path("after-restore.txt"), b"new life").unwrap();
    wait_durable(&r.home);
    r.unmount();
}

#[test]
fn an_earlier_snapshot_mounts_read_only_with_the_old_content() {
    let fabric = Fabric::start(3, "1GiB");
    let tmp = tempfile::tempdir().unwrap();
    // A short grace period: garbage collection runs every second and must still keep the
    // overwritten chunks, because a retained snapshot names them. Two snapshots are kept.
    let metrics = format!("127.0.0.1:{}", free_port());
    let flags = ["--gc-grace", "1s", "--keep-last", "2", "--keep-daily", "0", "--metrics", &metrics];
    let mut m = Mount::new_vault(tmp.path(), "owner", &fabric.url(), &flags);
    // A scratch file removed after a snapshot that names it: that snapshot keeps its chunks from
    // garbage collection until retention drops it, which taking `second` below does.
    std::fs::write(m.path("scratch.bin"), bytes(MIB, 3)).unwrap();
    wait_durable(&m.home);
    snapshot(&m.home);
    std::fs::remove_file(m.path("scratch.bin")).unwrap();
    let old = bytes(3 * MIB, 1);
    let new = bytes(3 * MIB, 2);
    std::fs::create_dir_all(m.path("docs")).unwrap();
    std::fs::write(m.path("docs/report.odt"), &old).unwrap();
    wait_durable(&m.home);
    let first = snapshot(&m.home);
    std::fs::write(m.path("docs/report.odt"), &new).unwrap();
    wait_durable(&m.home);
    let collected = chunks_collected(&metrics);
    let second = snapshot(&m.home);
    assert!(second > first);
    let listed = ok(quloud(&m.home).args(["snapshots"]), "quloud snapshots");
    assert!(listed.contains(&format!("{first} ")) && listed.contains(&format!("{second} ")), "{listed}");
    // Garbage collection ran with the overwritten chunks unreferenced: it collected the scratch
    // file's chunks, which only dropping the oldest snapshot made collectable.
    poll_until(Duration::from_secs(30), Duration::from_millis(200), "garbage collection to run", || {
        chunks_collected(&metrics) > collected
    });

    let mp = tmp.path().join("yesterday");
    let mut past =
        Mount::start_verb(&m.home, &mp, &fabric.url(), &["mount"], &["--snapshot", &first.to_string()]);
    let got = std::fs::read(past.path("docs/report.odt")).unwrap();
    assert!(got == old, "the snapshot does not hold the old content");
    let err = std::fs::write(past.path("docs/report.odt"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "a snapshot mount must be read-only: {err}");
    assert!(std::fs::read(m.path("docs/report.odt")).unwrap() == new, "the live vault changed");
    past.unmount();

    let o = run(quloud(&m.home).arg("mount").arg(&mp).args(["--nats", &fabric.url(), "--snapshot", "999"]));
    assert!(!o.status.success() && text(&o).contains("no snapshot 999"), "{}", text(&o));
    m.unmount();
}

/// The broker's history of this vault's root records.
async fn broker_roots(url: &str, locator: &str) -> (async_nats::Client, Vec<Vec<u8>>) {
    let client = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let stream = js.get_stream("QULOUD_ROOTS_V1").await.unwrap();
    let mut out = Vec::new();
    let mut seq = 1;
    let last = stream.get_info().await.unwrap().state.last_sequence;
    while seq <= last {
        if let Ok(m) = stream.get_raw_message(seq).await {
            if m.subject.ends_with(locator) {
                out.push(m.payload.to_vec());
            }
        }
        seq += 1;
    }
    (client, out)
}

#[test]
fn forged_and_rolled_back_root_records_are_refused() {
    let fabric = Fabric::start(3, "1GiB");
    let tmp = tempfile::tempdir().unwrap();
    let mut m = Mount::new_vault(tmp.path(), "owner", &fabric.url(), &[]);
    std::fs::write(m.path("v.txt"), b"version one").unwrap();
    wait_durable(&m.home);
    snapshot(&m.home);
    std::fs::write(m.path("v.txt"), b"version two").unwrap();
    wait_durable(&m.home);
    let newest = snapshot(&m.home);
    m.unmount();
    let paper_key = std::fs::read_to_string(m.home.join("master.key")).unwrap();
    let keys = paper::decode(paper_key.trim()).unwrap().derive();
    let vk = keys.root_signing_key().verifying_key();
    let locator = root_locator(&vk);
    let subject = format!("quloud.v1.root.{locator}");

    rt().block_on(async {
        let (client, records) = broker_roots(&fabric.url(), &locator).await;
        assert!(records.len() >= 2, "expected a history of root records, got {}", records.len());
        let versions: Vec<u64> =
            records.iter().map(|r| RootRecord::verified_version(r, &vk).unwrap()).collect();
        let oldest = records[versions.iter().enumerate().min_by_key(|(_, v)| **v).unwrap().0].clone();
        // A rollback: someone re-publishes the oldest genuine record, so it is the broker's latest.
        client.publish(subject.clone(), oldest.into()).await.unwrap();
        // A forgery claiming this vault's key, with a huge version, signed by another key.
        let other = MasterKey::generate().derive();
        let mut forged =
            RootRecord { version: 1_000_000, epoch: 0, closed: false, written_ms: 1, snapshots: vec![] }
                .seal(other.root_signing_key(), &keys.root_body_key());
        forged[1..33].copy_from_slice(vk.as_bytes());
        client.publish(subject.clone(), forged.into()).await.unwrap();
        // Garbage.
        client.publish(subject.clone(), vec![1u8; 300].into()).await.unwrap();
        client.flush().await.unwrap();
    });

    let key_file = tmp.path().join("paper.txt");
    std::fs::write(&key_file, &paper_key).unwrap();
    let new_home = tmp.path().join("new-home");
    let out = ok(
        quloud(&new_home)
            .arg("restore")
            .arg(tmp.path().join("unused-mp"))
            .args(["--nats", &fabric.url(), "--no-mount", "--key-file"])
            .arg(&key_file),
        "quloud restore --no-mount",
    );
    assert!(
        out.contains(&format!("from snapshot {newest}")),
        "the newest valid snapshot was not chosen: {out}"
    );
    assert!(out.contains("rollback detected"), "the replayed old record was not reported: {out}");
    assert!(out.contains("signature does not verify"), "the forged record was not reported: {out}");
    let mut r = Mount::start(&new_home, &tmp.path().join("restored"), &fabric.url(), &[]);
    assert_eq!(std::fs::read(r.path("v.txt")).unwrap(), b"version two");
    r.unmount();

    // A broker that lost every newer record and serves only the oldest: the vault that
    // published the newer ones notices when it mounts.
    rt().block_on(async {
        let (client, records) = broker_roots(&fabric.url(), &locator).await;
        let oldest = records
            .iter()
            .filter(|r| RootRecord::verified_version(r, &vk).is_ok())
            .min_by_key(|r| RootRecord::verified_version(r, &vk).unwrap())
            .unwrap()
            .clone();
        let js = async_nats::jetstream::new(client.clone());
        let stream = js.get_stream("QULOUD_ROOTS_V1").await.unwrap();
        stream.purge().filter(subject.clone()).await.unwrap();
        client.publish(subject.clone(), oldest.into()).await.unwrap();
        client.flush().await.unwrap();
    });
    // A fresh machine against that broker: the storage nodes kept the newest record, so it wins
    // and the broker is named as rolled back.
    let third = tmp.path().join("third-home");
    let out = ok(
        quloud(&third)
            .arg("restore")
            .arg(tmp.path().join("unused-mp"))
            .args(["--nats", &fabric.url(), "--no-mount", "--key-file"])
            .arg(&key_file),
        "quloud restore --no-mount against a rolled-back broker",
    );
    assert!(out.contains("rollback detected: the broker"), "the broker's rollback was not reported: {out}");
    let mut r3 = Mount::start(&third, &tmp.path().join("third-mp"), &fabric.url(), &[]);
    assert_eq!(std::fs::read(r3.path("v.txt")).unwrap(), b"version two", "restored an old snapshot");
    // Leave without the unmount snapshot, so the broker stays rolled back for the next check.
    r3.kill9();
    r3.clear_stale();

    m.spawn();
    wait_until(Duration::from_secs(20), "the rollback warning", || {
        m.log_text().contains("rollback detected")
    });
    m.unmount();
}

#[test]
fn a_share_grants_exactly_its_subtree() {
    let fabric = Fabric::start(3, "1GiB");
    let tmp = tempfile::tempdir().unwrap();
    let mut m = Mount::new_vault(tmp.path(), "owner", &fabric.url(), &[]);
    let files = [
        ("photos/beach.jpg", bytes(2 * MIB + 5, 1)),
        ("photos/2024/dunes.jpg", bytes(700_000, 2)),
        ("photos/2024/tiny.txt", b"tiny".to_vec()),
        ("private/diary.txt", bytes(900_000, 3)),
        ("private/keys.txt", bytes(30_000, 4)),
    ];
    for (name, data) in &files {
        let p = m.path(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    std::os::unix::fs::symlink("beach.jpg", m.path("photos/latest")).unwrap();
    wait_durable(&m.home);

    let out = ok(quloud(&m.home).arg("share").arg(m.path("photos")).arg("--qr"), "quloud share --qr");
    let cap_text =
        out.split_whitespace().find(|w| w.starts_with("QS1-")).expect("no capability printed").to_string();
    assert!(out.contains('█') || out.contains('▀'), "no QR code printed: {out}");
    assert!(!out.contains("QK1-"), "the master key must never be printed by share");

    // The recipient: no key, no home of their own, no account.
    let recipient = tmp.path().join("friend-home");
    let rmp = tmp.path().join("friend-mp");
    let mut shared = Mount::start_verb(&recipient, &rmp, &fabric.url(), &["mount"], &["--share", &cap_text]);
    let mut names = Vec::new();
    tree::walk(&shared.mp, &mut names);
    let mut names: Vec<String> =
        names.iter().map(|p| p.strip_prefix(&shared.mp).unwrap().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, vec!["2024", "2024/dunes.jpg", "2024/tiny.txt", "beach.jpg", "latest"]);
    for (name, data) in files.iter().filter(|(n, _)| n.starts_with("photos/")) {
        let got = std::fs::read(shared.path(name.strip_prefix("photos/").unwrap())).unwrap();
        assert!(got == *data, "{name} differs through the share");
    }
    assert_eq!(std::fs::read_link(shared.path("latest")).unwrap(), Path::new("beach.jpg"));
    let err = std::fs::write(shared.path("new.txt"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "a share must be read-only: {err}");
    assert!(!recipient.join("master.key").exists(), "mounting a share must not create a vault key");
    shared.unmount();

    // A malformed capability: a clear error, quickly, and nothing mounted.
    let bad = format!("{}X", &cap_text[..cap_text.len() - 1]);
    for (cap, want) in
        [(bad.as_str(), "checksum"), ("QS1-1234", "characters"), ("hello", "not a Quloud share")]
    {
        let o =
            run(quloud(&recipient).arg("mount").arg(&rmp).args(["--nats", &fabric.url(), "--share", cap]));
        assert!(!o.status.success(), "malformed capability {cap} accepted");
        assert!(text(&o).contains(want), "unclear error for {cap}: {}", text(&o));
        assert!(!is_mounted(&rmp.canonicalize().unwrap()));
    }

    // What the capability holds: secrets of the subtree's chunks and nothing else, and those
    // secrets prove for no chunk outside it.
    m.unmount();
    let owner = Manifest::open(&m.home.join("manifest.redb"), 0, 0).unwrap();
    let rx = owner.read().unwrap();
    let private_dir = rx.lookup(1, b"private").unwrap().unwrap();
    let mut outside = Vec::new();
    for (_, ino) in rx.children(private_dir).unwrap() {
        outside.extend(rx.extents(ino, 0, u64::MAX).unwrap().into_iter().map(|e| e.addr));
    }
    assert!(!outside.is_empty());
    drop(rx);
    let cap = Capability::decode(&cap_text).unwrap();
    let share_manifest = tmp.path().join("share-check.redb");
    rt().block_on(async {
        let fabric_client =
            NatsFabric::connect(vault(77).ack_token(), test_options(&fabric.url()), None).await.unwrap();
        quloud::app::vault::materialize_share(
            &fabric_client,
            &cap,
            quloud::app::vault::ManifestFile {
                path: &share_manifest,
                files: &quloud::adapters::redb::manifest::RedbManifests,
            },
            Duration::from_secs(20),
            &|_, _| {},
        )
        .await
        .unwrap();
        let shared = Manifest::open(&share_manifest, 0, 0).unwrap();
        let srx = shared.read().unwrap();
        let mut secrets = Vec::new();
        let mut inside: HashSet<Addr> = HashSet::new();
        let owner_rx = owner.read().unwrap();
        for (addr, c) in owner_rx.summary().unwrap().chunks {
            if let Some(s) = srx.share_secret(&addr).unwrap() {
                inside.insert(addr);
                secrets.push(s);
                assert!(c.refs > 0);
            }
        }
        for a in &outside {
            assert!(!inside.contains(a), "the share carries a secret for a chunk outside its subtree");
        }
        assert!(!secrets.is_empty());
        // Every secret the share holds, tried against every chunk outside it: refused.
        for (_, seed) in &secrets {
            let x = quloud::domain::proof::ProofSecret::from_seed(seed);
            let items: Vec<_> = outside.iter().map(|a| (*a, x.clone())).collect();
            let got = fabric_client.get(&items, &fabric.node_ids()).await.unwrap_or_default();
            assert!(got.is_empty(), "a node served a chunk outside the share to a share secret");
        }
    });
}

/// Issue 24 item 6: a share mount keeps its manifest (every shared chunk's keys) in memory only:
/// after a kill -9 its temp dir holds nothing, and a start removes the unencrypted manifests that
/// crashed mounts of earlier versions left there.
#[test]
fn a_killed_share_mount_leaves_no_manifest_behind() {
    let fabric = Fabric::start(3, "1GiB");
    let tmp = tempfile::tempdir().unwrap();
    let mut m = Mount::new_vault(tmp.path(), "owner", &fabric.url(), &[]);
    std::fs::create_dir_all(m.path("docs")).unwrap();
    std::fs::write(m.path("docs/a.txt"), bytes(300_000, 9)).unwrap();
    wait_durable(&m.home);
    let out = ok(quloud(&m.home).arg("share").arg(m.path("docs")), "quloud share");
    let cap =
        out.split_whitespace().find(|w| w.starts_with("QS1-")).expect("no capability printed").to_string();
    let share_tmp = tmp.path().join("share-tmp");
    let stale = share_tmp.join("quloud-share-00112233aabbccdd");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("share.redb"), b"chunk keys in the clear").unwrap();
    let env = [("TMPDIR", share_tmp.to_str().unwrap())];
    let (home, mp) = (tmp.path().join("friend-home"), tmp.path().join("friend-mp"));
    let mut shared = Mount::start_verb_env(&home, &mp, &fabric.url(), &["mount"], &["--share", &cap], &env);
    assert!(
        std::fs::read(shared.path("a.txt")).unwrap() == bytes(300_000, 9),
        "a.txt differs through the share"
    );
    shared.kill9();
    shared.clear_stale();
    let left: Vec<_> = std::fs::read_dir(&share_tmp).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "a killed share mount left files in its temp dir: {left:?}");
    m.unmount();
}

#[test]
fn snapshots_list_and_a_fresh_vault_has_none() {
    let fabric = Fabric::start(3, "1GiB");
    let tmp = tempfile::tempdir().unwrap();
    let mut m = Mount::new_vault(tmp.path(), "owner", &fabric.url(), &[]);
    let listed = ok(quloud(&m.home).args(["snapshots"]), "quloud snapshots");
    assert!(listed.contains("no snapshots yet"), "{listed}");
    std::fs::write(m.path("a"), b"a").unwrap();
    wait_durable(&m.home);
    m.unmount(); // snapshots at unmount
    assert!(m.log_text().contains("snapshot 1 stored"), "no snapshot at unmount: {}", m.log_text());
    let listed = ok(quloud(&m.home).args(["snapshots", "--json"]), "quloud snapshots --json (unmounted)");
    assert!(listed.contains("\"id\":1"), "{listed}");
}

/// How many snapshots `quloud snapshots --json` lists.
fn snapshot_count(home: &Path) -> usize {
    ok(quloud(home).args(["snapshots", "--json"]), "quloud snapshots").matches("\"id\":").count()
}

#[test]
fn a_snapshot_is_stored_only_when_a_file_changed_even_across_audits_and_remounts() {
    let fabric = Fabric::start(3, "1GiB");
    let tmp = tempfile::tempdir().unwrap();
    let mut m = Mount::new_vault(tmp.path(), "owner", &fabric.url(), &[]);
    std::fs::write(m.path("a.txt"), b"first").unwrap();
    wait_durable(&m.home);
    snapshot(&m.home);
    // An audit rewrites every chunk's replica and audit records, but no file changed.
    ok(quloud(&m.home).args(["audit", "--now"]), "quloud audit --now");
    let out = ok(quloud(&m.home).args(["snapshot"]), "quloud snapshot");
    assert!(out.contains("no file changed"), "a snapshot of unchanged files: {out}");
    // Every unmount snapshots; with nothing changed it stores nothing, across remounts too.
    m.remount();
    m.remount();
    assert_eq!(snapshot_count(&m.home), 1, "unmounts stored snapshots of unchanged files");
    std::fs::write(m.path("b.txt"), b"second").unwrap();
    wait_durable(&m.home);
    let out = ok(quloud(&m.home).args(["snapshot"]), "quloud snapshot");
    assert!(out.contains("snapshot 2 stored: 2 files"), "{out}");
    assert_eq!(snapshot_count(&m.home), 2);
    m.unmount();
}

/// `quloud snapshot` right after a write waits for the upload (plain progress lines when not on
/// a terminal) and snapshots the file, as `rsync … && quloud snapshot` in a cron job needs; a
/// `--wait` that runs out stores nothing and exits 75 with what is left.
#[test]
fn snapshot_right_after_a_write_waits_for_the_uploads() {
    let mut fabric = Fabric::start(3, "1GiB");
    let tmp = tempfile::tempdir().unwrap();
    let m = Mount::new_vault(tmp.path(), "owner", &fabric.url(), &[]);
    // No node can store: the write stays queued, and a short --wait runs out.
    for n in &mut fabric.nodes {
        n.kill9();
    }
    std::fs::write(m.path("a.bin"), bytes(3 * MIB, 1)).unwrap();
    let o = run(quloud(&m.home).args(["snapshot", "--wait", "2s"]));
    assert_eq!(o.status.code(), Some(75), "a --wait that ran out: {}", text(&o));
    let said = text(&o);
    assert!(said.contains("waiting for uploads:") && said.contains("left to upload"), "{said}");
    assert!(said.contains("no snapshot taken") && said.contains("--wait"), "{said}");

    // The nodes come back; a write, and at once a snapshot: it waits, then holds both files.
    for n in &mut fabric.nodes {
        n.restart();
    }
    std::fs::write(m.path("b.bin"), bytes(2 * MIB, 2)).unwrap();
    let said = ok(quloud(&m.home).arg("snapshot"), "quloud snapshot right after a write");
    assert!(said.contains("waiting for uploads:"), "no progress shown: {said}");
    assert!(said.contains("stored: 2 files"), "{said}");
    let s = status(&m.home);
    assert_eq!((s.pending, s.staged_files, s.queued), (0, 0, 0), "{}", s.json);
}

/// After a restore, `status` shows what the restored machine knows: "last audit" is this home's
/// (none yet, then the audit just run), and status and audit agree on healthy chunks.
#[test]
fn after_a_restore_status_and_audit_agree() {
    let fabric = Fabric::start(3, "1GiB");
    let tmp = tempfile::tempdir().unwrap();
    let mut m = Mount::new_vault(tmp.path(), "owner", &fabric.url(), &[]);
    std::fs::write(m.path("a.bin"), bytes(3 * MIB, 1)).unwrap();
    std::fs::write(m.path("b.txt"), b"hello").unwrap();
    wait_durable(&m.home);
    ok(quloud(&m.home).args(["audit", "--now"]), "audit on the first machine");
    snapshot(&m.home);
    m.unmount();
    let key_file = tmp.path().join("paper.txt");
    let paper = ok(quloud(&m.home).args(["key", "show", "--reveal", "--qr"]), "key show --reveal");
    std::fs::write(&key_file, &paper).unwrap();

    let new_home = tmp.path().join("new-home");
    let mp = tmp.path().join("restored");
    std::fs::create_dir_all(&mp).unwrap();
    let key_arg = key_file.to_string_lossy().into_owned();
    let mut r = Mount::start_verb(&new_home, &mp, &fabric.url(), &["restore"], &["--key-file", &key_arg]);
    let s = status(&r.home);
    assert!(s.json.contains("\"last_audit\":null"), "the old machine's audit shown: {}", s.json);
    assert_eq!(json_field(&s.json, "files"), Some(2), "{}", s.json);
    let said = ok(quloud(&r.home).arg("status"), "status");
    assert!(said.contains("not audited yet since the restore"), "{said}");
    let audit = ok(quloud(&r.home).arg("audit"), "audit after the restore");
    assert!(audit.contains("every chunk has its full set of healthy replicas"), "{audit}");
    let s = status(&r.home);
    assert_eq!((s.degraded, s.pending), (0, 0), "status disagrees with the audit: {}\n{audit}", s.json);
    assert_eq!(s.durable, s.chunks, "{}", s.json);
    assert!(s.json.contains("\"last_audit\":{"), "the audit is not shown: {}", s.json);
    r.unmount();
}

fn json_field(json: &str, key: &str) -> Option<u64> {
    let at = json.find(&format!("\"{key}\":"))? + key.len() + 3;
    json[at..].chars().take_while(|c| c.is_ascii_digit()).collect::<String>().parse().ok()
}
