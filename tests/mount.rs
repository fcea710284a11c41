//! The FUSE mount end to end: real `quloud mount` processes on real mount points, over a real
//! nats-server with JetStream and three real storage nodes. Files go in with rsync and plain
//! writes, survive remounts (empty caches: reads come from the fabric), crashes (kill -9) and a
//! broker outage.

mod common;

use common::tree::{compare_trees, make_tree};
use common::*;
use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

fn require_rsync() {
    require_tool("rsync", "apt-get install -y rsync");
}

/// Runs a command to completion and fails the test with its output if it fails.
fn run_ok(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `diff -r` (symlinks compared as links, not followed) must find no difference.
fn diff_r(expected: &Path, actual: &Path) {
    require_tool("diff", "apt-get install -y diffutils");
    run_ok(
        Command::new("diff").arg("-r").arg("--no-dereference").arg(expected).arg(actual),
        &format!("diff -r {} {}", expected.display(), actual.display()),
    );
}

fn assert_trees_equal(expected: &Path, actual: &Path, when: &str) {
    if let Err(e) = compare_trees(expected, actual) {
        panic!("{when}: {} differs from {}: {e}", actual.display(), expected.display());
    }
}

/// Asserts that the file at `path` holds exactly `want`.
fn assert_content(path: &Path, want: &[u8], when: &str) {
    let got = fs::read(path).unwrap_or_else(|e| panic!("{when}: read {}: {e}", path.display()));
    if let Some(at) = tree::first_difference(want, &got) {
        panic!(
            "{when}: {} differs from the expected content at byte {at} ({} bytes, expected {})",
            path.display(),
            got.len(),
            want.len()
        );
    }
}

/// Regular files below `dir` whose name does not start with '.' (rsync's temporary files do).
/// The tree may be changing: an entry that goes between the listing and its check is skipped.
fn count_files(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    let mut n = 0;
    for e in entries.flatten() {
        match e.file_type() {
            Ok(t) if t.is_dir() => n += count_files(&e.path()),
            Ok(t) if t.is_file() && !e.file_name().to_string_lossy().starts_with('.') => n += 1,
            _ => {}
        }
    }
    n
}

#[test]
fn rsync_tree_round_trip() {
    require_rsync();
    let fabric = Fabric::start(3, "1GiB");
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_tree(&src, 1);
    let mut m = Mount::new_vault(tmp.path(), "v", &fabric.url(), &[]);
    // Run as root, as the tests are, the mount asks the kernel for 1 MiB of read-ahead.
    let dev = std::os::unix::fs::MetadataExt::dev(&fs::metadata(&m.mp).unwrap());
    let knob = format!("/sys/class/bdi/{}:{}/read_ahead_kb", libc::major(dev), libc::minor(dev));
    let ra = fs::read_to_string(&knob).unwrap_or_default();
    assert_eq!(ra.trim(), "1024", "{knob} (only root may raise it: run the tests as root)");

    let mut rsync = Command::new("rsync");
    rsync
        .args(["-aHAX", "--numeric-ids"])
        .arg(format!("{}/", src.display()))
        .arg(format!("{}/", m.mp.display()));
    run_ok(&mut rsync, "rsync -aHAX --numeric-ids into the mount");
    assert_trees_equal(&src, &m.mp, "right after rsync (staged)");

    let s = wait_durable(&m.home);
    assert!(s.chunks > 0 && s.durable == s.chunks && s.degraded == 0, "not all durable: {}", s.json);
    m.remount();
    let outbox: Vec<_> = fs::read_dir(m.home.join("outbox")).unwrap().collect();
    assert!(outbox.is_empty(), "the outbox keeps {} chunk(s) after they became durable", outbox.len());

    diff_r(&src, &m.mp);
    assert_trees_equal(&src, &m.mp, "after remount (reads from the fabric)");
}

/// Opens `path` for writing without truncation and writes `data` at `offset`.
fn overwrite_at(path: &Path, offset: u64, data: &[u8]) {
    let mut f = OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(data).unwrap();
}

fn set_len(path: &Path, len: u64) {
    OpenOptions::new().write(true).open(path).unwrap().set_len(len).unwrap();
}

#[test]
fn overwrite_and_truncate_in_large_files() {
    let fabric = Fabric::start(3, "1GiB");
    let tmp = tempfile::tempdir().unwrap();
    let reference = tmp.path().join("ref");
    fs::create_dir(&reference).unwrap();
    let mut m = Mount::new_vault(tmp.path(), "v", &fabric.url(), &[]);
    let data = bytes(24 * MIB, 7);
    let names = ["overwritten", "truncated", "extended"];
    for n in names {
        fs::write(m.path(n), &data).unwrap();
        fs::write(reference.join(n), &data).unwrap();
    }
    let s = wait_durable(&m.home);
    assert!(s.chunks > 0, "nothing uploaded: {}", s.json);
    m.remount();

    let patch = bytes(MIB, 8);
    for root in [m.mp.clone(), reference.clone()] {
        overwrite_at(&root.join("overwritten"), 12 * MIB as u64 + 777, &patch);
        set_len(&root.join("truncated"), 12 * MIB as u64);
        set_len(&root.join("extended"), 30 * MIB as u64 + 3);
    }
    for n in names {
        assert_content(&m.path(n), &fs::read(reference.join(n)).unwrap(), "after the edits");
    }
    wait_durable(&m.home);
    m.remount();
    for n in names {
        assert_content(&m.path(n), &fs::read(reference.join(n)).unwrap(), "after the edits and a remount");
    }
}

/// The content of writer `t`'s file `i`, 100 KiB – 3 MiB.
fn writer_file(t: u64, i: u64) -> Vec<u8> {
    let len = Rng(t * 1000 + i).range(100 << 10, 3 << 20) as usize;
    bytes(len, 1000 + t * 100 + i)
}

const APPENDS: u64 = 1024;

fn append_record(k: u64) -> Vec<u8> {
    bytes(4096, 50_000 + k)
}

fn check_concurrent_content(mp: &Path, when: &str) {
    for t in 0..4 {
        for i in 0..20 {
            assert_content(&mp.join(format!("w{t}/f{i}")), &writer_file(t, i), when);
        }
    }
    let shared: Vec<u8> = (0..APPENDS).flat_map(append_record).collect();
    assert_content(&mp.join("shared.log"), &shared, when);
}

#[test]
fn concurrent_writers() {
    let fabric = Fabric::start(3, "1GiB");
    let tmp = tempfile::tempdir().unwrap();
    let mut m = Mount::new_vault(tmp.path(), "v", &fabric.url(), &[]);
    let mut threads = Vec::new();
    for t in 0..4u64 {
        let dir = m.path(&format!("w{t}"));
        threads.push(std::thread::spawn(move || {
            fs::create_dir(&dir).unwrap();
            let mut rng = Rng(t);
            for i in 0..20 {
                let data = writer_file(t, i);
                let mut f = File::create(dir.join(format!("f{i}"))).unwrap();
                let mut at = 0;
                while at < data.len() {
                    let n = (rng.range(1, 256 << 10) as usize).min(data.len() - at);
                    f.write_all(&data[at..at + n]).unwrap();
                    at += n;
                }
            }
        }));
    }
    let shared = m.path("shared.log");
    threads.push(std::thread::spawn(move || {
        // Reopened every 100 records, so appends also land on a file the pipeline has queued.
        for start in (0..APPENDS).step_by(100) {
            let mut f = OpenOptions::new().create(true).append(true).open(&shared).unwrap();
            for k in start..(start + 100).min(APPENDS) {
                f.write_all(&append_record(k)).unwrap();
            }
        }
    }));
    for t in threads {
        t.join().expect("a writer thread failed");
    }
    check_concurrent_content(&m.mp, "after the writers finished");
    let s = wait_durable(&m.home);
    assert!(s.chunks > 0, "nothing uploaded: {}", s.json);
    m.remount();
    check_concurrent_content(&m.mp, "after a remount");
}

/// Unmounts (lazily) whatever the fstab helper mounted, even when the test fails.
struct HelperMount(PathBuf);

impl Drop for HelperMount {
    fn drop(&mut self) {
        lazy_unmount(&self.0);
    }
}

/// `mount/mount.quloud HOME MOUNTPOINT -o OPTIONS`, as mount(8) calls it: exit code and output.
fn fstab_helper(home: &Path, mp: &Path, opts: &str) -> (i32, String) {
    let helper = Path::new(env!("CARGO_MANIFEST_DIR")).join("mount/mount.quloud");
    let out = Command::new(helper)
        .arg(home)
        .arg(mp)
        .args(["-o", opts])
        .env("QULOUD_BIN", env!("CARGO_BIN_EXE_quloud"))
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn the_fstab_helper_mounts_and_refuses_typos_a_missing_home_and_a_second_mount() {
    let fabric = Fabric::start(3, "1GiB");
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    init_home(&home);
    let mp = tmp.path().join("vault");
    fs::create_dir(&mp).unwrap();
    let _guard = HelperMount(mp.clone());
    let opts = format!("nats={},replicas=3,_netdev,nofail,x-systemd.automount", fabric.url());

    let (code, text) = fstab_helper(&home, &mp, &format!("{opts},replica=3"));
    assert_eq!(code, 1, "a misspelled option must be refused: {text}");
    assert!(text.contains("unknown option 'replica=3'"), "{text}");
    let (code, text) = fstab_helper(&tmp.path().join("nowhere"), &mp, &opts);
    assert_eq!(code, 32, "a missing home: {text}");
    assert!(text.contains("no vault home at"), "{text}");
    assert!(!is_mounted(&mp), "a refused mount mounted");

    let (code, text) = fstab_helper(&home, &mp, &opts);
    assert_eq!(code, 0, "the helper did not mount: {text}");
    assert!(is_mounted(&mp));
    fs::write(mp.join("hello.txt"), b"from fstab").unwrap();
    assert_eq!(fs::read(mp.join("hello.txt")).unwrap(), b"from fstab");
    // The source is the fstab entry's first field, which is how mount(8) -a knows it is mounted.
    let target = mp.to_string_lossy().to_string();
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = mountinfo.lines().find(|l| l.split(' ').nth(4) == Some(target.as_str())).unwrap();
    assert!(line.contains(&format!(" {} ", home.display())), "source is not the home: {line}");

    let (code, text) = fstab_helper(&home, &mp, &opts);
    assert_eq!(code, 32, "a second mount on a live mount must fail: {text}");
    assert!(text.contains("already mounted"), "{text}");

    let out = Command::new("umount").arg(&mp).output().unwrap();
    assert!(out.status.success(), "umount: {}", String::from_utf8_lossy(&out.stderr));
    poll_until(Duration::from_secs(30), Duration::from_millis(100), "the mount to go", || !is_mounted(&mp));
    let log = fs::read_to_string(home.join("mount.log")).unwrap();
    poll_until(Duration::from_secs(30), Duration::from_millis(100), "the vault process to stop", || {
        fs::read_to_string(home.join("mount.log")).unwrap().contains("vault unmounted")
    });
    assert!(!log.contains('\x1b'), "escape codes in mount.log:\n{log}");
}

/// An "acknowledged" file: its content, written and fsynced before the crash.
fn acked(i: usize) -> Vec<u8> {
    bytes(MIB + i * 1000, 90_000 + i as u64)
}

#[test]
fn kill9_mid_rsync_then_remount() {
    require_rsync();
    let fabric = Fabric::start(3, "2GiB");
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    for d in 0..10 {
        for f in 0..30 {
            let p = src.join(format!("d{d}/f{f}"));
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, bytes(512 << 10, 200_000 + d * 100 + f)).unwrap();
        }
    }
    let mut m = Mount::new_vault(tmp.path(), "v", &fabric.url(), &[]);
    let dest = m.path("tree");
    let rsync_log = tmp.path().join("rsync.log");
    let rsync_out = || Stdio::from(File::create(&rsync_log).unwrap());
    // Throttled (~40 MB/s) so that the copy is surely still running at the kill.
    let mut rsync = Command::new("rsync")
        .args(["-a", "--bwlimit=40000"])
        .arg(format!("{}/", src.display()))
        .arg(format!("{}/", dest.display()))
        .stdout(rsync_out())
        .stderr(rsync_out())
        .spawn()
        .unwrap();

    fs::create_dir(m.path("acked")).unwrap();
    for i in 0..8 {
        let mut f = File::create(m.path(&format!("acked/a{i}"))).unwrap();
        f.write_all(&acked(i)).unwrap();
        f.sync_all().unwrap();
    }
    // Fsynced and still open at the crash.
    let mut open = File::create(m.path("acked/open-at-kill")).unwrap();
    open.write_all(&acked(100)).unwrap();
    open.sync_all().unwrap();
    // chmod and utimes while being written (kept with the staged content), fsynced, still open.
    let old = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    let mut meta = File::create(m.path("acked/meta")).unwrap();
    meta.write_all(&acked(300)).unwrap();
    meta.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    meta.set_modified(old).unwrap();
    meta.sync_all().unwrap();
    // Fsynced, then overwritten in place and fsynced again.
    fs::write(m.path("acked/rewritten"), acked(200)).unwrap();
    let mut rewritten = acked(200);
    rewritten[1000..5000].copy_from_slice(&acked(201)[..4000]);
    overwrite_at(&m.path("acked/rewritten"), 1000, &acked(201)[..4000]);
    File::open(m.path("acked/rewritten")).unwrap().sync_all().unwrap();

    poll_until(Duration::from_secs(60), Duration::from_millis(100), "rsync to copy 60 files", || {
        count_files(&dest) >= 60
    });
    assert!(
        rsync.try_wait().unwrap().is_none(),
        "rsync finished before the kill; make the tree bigger or lower --bwlimit"
    );
    m.kill9();
    let deadline = Instant::now() + Duration::from_secs(30);
    while rsync.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "rsync did not stop within 30 s of the mount's crash");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop((open, meta));
    // `quloud status` tells a mount left by a crash from no mount, and says how to clear it.
    let text = status_text(&m.home);
    let clear = format!("`fusermount3 -u {}`", m.mp.display());
    assert!(text.contains("stale mount") && text.contains(&clear), "status after kill -9:\n{text}");
    let json = status(&m.home).json;
    assert!(
        json.contains(&format!("\"mounted\":false,\"fabric\":null,\"stale_mount\":{:?}", m.mp)),
        "{json}"
    );
    m.clear_stale();
    let text = status_text(&m.home);
    assert!(
        text.starts_with("mounted       no\n") && !text.contains("stale"),
        "status after clearing:\n{text}"
    );
    m.spawn();

    for i in 0..8 {
        assert_content(&m.path(&format!("acked/a{i}")), &acked(i), "fsynced before the crash");
    }
    assert_content(&m.path("acked/open-at-kill"), &acked(100), "fsynced, still open at the crash");
    assert_content(&m.path("acked/rewritten"), &rewritten, "rewritten and fsynced before the crash");
    assert_content(&m.path("acked/meta"), &acked(300), "chmod + utimes + fsync before the crash");
    let st = fs::metadata(m.path("acked/meta")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&st.permissions()) & 0o7777,
        0o640,
        "mode lost in the crash"
    );
    assert_eq!(st.modified().unwrap(), old, "mtime lost in the crash");

    // --delete: the killed rsync left its temporary file behind.
    let mut rsync = Command::new("rsync");
    rsync.args(["-a", "--delete"]).arg(format!("{}/", src.display())).arg(format!("{}/", dest.display()));
    run_ok(&mut rsync, "rsync -a --delete after the crash");
    let s = wait_durable_within(&m.home, Duration::from_secs(120));
    assert!(s.chunks > 0 && s.durable == s.chunks, "not all durable: {}", s.json);
    diff_r(&src, &dest);
}

#[test]
fn kill9_while_a_large_file_is_sealed_then_remount() {
    let fabric = Fabric::start(3, "2GiB");
    let tmp = tempfile::tempdir().unwrap();
    let mut m = Mount::new_vault(tmp.path(), "v", &fabric.url(), &[]);
    let data = bytes(384 * MIB, 7_000);
    let mut f = File::create(m.path("big")).unwrap();
    f.write_all(&data).unwrap();
    f.sync_all().unwrap();
    drop(f); // the last close: the chunker starts sealing the file
             // Uploads queued while the file is still staged: the first segments were queued before the
             // file was sealed whole.
    poll_until(
        Duration::from_secs(60),
        Duration::from_millis(20),
        "chunks queued while the file is sealed",
        || {
            let s = status(&m.home);
            s.staged_files == 1 && s.queued > 0
        },
    );
    m.kill9();
    m.clear_stale();
    m.spawn();
    assert_content(&m.path("big"), &data, "fsynced, then the mount died while sealing it");
    let s = wait_durable_within(&m.home, Duration::from_secs(180));
    assert!(s.chunks > 0 && s.durable == s.chunks, "not all durable: {}", s.json);
    assert_eq!(s.unreferenced, 0, "the file took back every chunk queued before the crash: {}", s.json);
    m.remount();
    assert_content(&m.path("big"), &data, "after the queue drained and a remount");
}

/// `quloud up` as a terminal runs it: Ctrl-C sends SIGINT to its whole process group. The mount
/// must stop first, with the fabric still up for its last snapshot, then the nodes and the broker.
#[test]
fn ctrl_c_stops_quloud_up_in_order() {
    use std::os::unix::process::CommandExt;
    let tmp = tempfile::tempdir().unwrap();
    let (home, mp) = (tmp.path().join("home"), tmp.path().join("vault"));
    fs::create_dir_all(&mp).unwrap();
    let log = tmp.path().join("up.log");
    // One open file for both streams (one offset): they must not overwrite each other.
    let out = File::create(&log).unwrap();
    let mut up = quloud(&home)
        .arg("up")
        .arg(&mp)
        .env_remove("GOGC")
        .process_group(0)
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let group = up.id() as i32;
    /// If the test fails half way: kills `up`, the broker and nodes it started (process groups
    /// of their own, named by the home in their arguments) and unmounts. A no-op after a clean stop.
    struct Cleanup(i32, PathBuf, PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            // SAFETY: kill(2) on the process group this test created; no memory is involved.
            unsafe { libc::kill(-self.0, libc::SIGKILL) };
            let _ = Command::new("pkill").arg("-9").arg("-f").arg(&self.1).output();
            let _ = Command::new("fusermount3").arg("-uz").arg(&self.2).output();
        }
    }
    let _cleanup = Cleanup(group, home.clone(), mp.clone());
    poll_until(Duration::from_secs(120), Duration::from_millis(200), "quloud up to mount the vault", || {
        is_mounted(&mp)
    });
    fs::write(mp.join("f"), bytes(300 << 10, 42)).unwrap();
    wait_durable(&home);
    // Its nats-server runs with the garbage-collector target that `up` chooses.
    let conf = home.join("fabric/nats.conf");
    let pgrep = Command::new("pgrep").arg("-f").arg(conf.to_str().unwrap()).output().unwrap();
    let pid = String::from_utf8_lossy(&pgrep.stdout).trim().to_string();
    let environ = fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    assert!(
        environ.split(|&b| b == 0).any(|v| v == b"GOGC=400"),
        "nats-server (pid {pid:?}) runs without GOGC=400"
    );
    // SAFETY: kill(2) on the process group we created; no memory is involved.
    assert_eq!(unsafe { libc::kill(-group, libc::SIGINT) }, 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = up.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "quloud up did not stop within 60 s of Ctrl-C");
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = String::from_utf8_lossy(&fs::read(&log).unwrap()).to_string();
    assert!(status.success(), "quloud up exited with {status}: {out}");
    assert!(!is_mounted(&mp), "still mounted after Ctrl-C");
    assert!(
        out.contains("stored in the fabric"),
        "the mount's last snapshot did not reach the fabric (was it stopped before the mount?):\n{out}"
    );
    // Nothing of this fabric is left running.
    let ps = Command::new("pgrep").arg("-f").arg(home.to_str().unwrap()).output().unwrap();
    assert!(ps.stdout.is_empty(), "processes left behind: {}", String::from_utf8_lossy(&ps.stdout));
}

/// The broker of `quloud up` dies under a mounted vault: `up` says so, restarts it on the same
/// port and store, and a file written meanwhile still becomes quorum-durable; Ctrl-C then stops
/// everything in order.
#[test]
fn quloud_up_restarts_its_broker_under_a_mounted_vault() {
    use common::up::{assert_nothing_left, pid_of, Up};
    let tmp = tempfile::tempdir().unwrap();
    let (home, mp) = (tmp.path().join("home"), tmp.path().join("vault"));
    fs::create_dir_all(&mp).unwrap();
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            lazy_unmount(&self.0);
        }
    }
    let _unmount = Unmount(mp.clone()); // dropped after `up` is killed
    let mut up = Up::start(&home, &[mp.to_str().unwrap()]);
    up.wait_for("vault mounted at", Duration::from_secs(120));
    // The one-machine fabric is one house: `up` opts in to replicas in it, and says so.
    assert!(up.out().contains("one house (--allow-own-house)"), "{}", up.out());
    let conf = home.join("fabric/nats.conf");
    // SAFETY: kill(2) on the broker `up` started; no memory is involved.
    unsafe { libc::kill(pid_of(conf.to_str().unwrap()), libc::SIGKILL) };
    fs::write(mp.join("during"), bytes(300 << 10, 7)).unwrap();
    up.wait_for("nats-server is back", Duration::from_secs(30));
    assert!(up.out().contains("the fabric is down"), "{}", up.out());
    wait_durable(&home);
    assert_eq!(fs::read(mp.join("during")).unwrap(), bytes(300 << 10, 7));
    up.signal(libc::SIGINT);
    let status = up.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "{status}: {}", up.out());
    assert!(!is_mounted(&mp), "still mounted after Ctrl-C");
    assert_nothing_left(&home, Duration::from_secs(5));
}

fn statvfs(path: &Path) -> std::io::Result<libc::statvfs> {
    let p = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid path and a zeroed out-struct.
    let mut out: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::statvfs(p.as_ptr(), &mut out) } == 0 {
        Ok(out)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// `ls -la DIR` must succeed within 5 s and list `names`.
fn ls_within(dir: PathBuf, names: &[&str]) {
    let out =
        within(Duration::from_secs(5), "ls -la", move || Command::new("ls").arg("-la").arg(&dir).output());
    let out = out.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "ls failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    for n in names {
        assert!(text.contains(n), "ls does not list {n}:\n{text}");
    }
}

/// `quloud status` (text) of `home`.
fn status_text(home: &Path) -> String {
    let out = quloud(home).arg("status").output().unwrap();
    assert!(out.status.success(), "quloud status failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Reads `rel` in the mount, which must fail with EIO; returns how long that took.
fn read_fails_with_eio(m: &Mount, rel: &str, what: &str) -> Duration {
    let path = m.path(rel);
    let started = Instant::now();
    let got = within(Duration::from_secs(40), what, move || fs::read(path));
    match got {
        Err(e) if e.raw_os_error() == Some(libc::EIO) => started.elapsed(),
        other => panic!(
            "{what} must fail with EIO, got {:?} after {:?}",
            other.map(|v| v.len()),
            started.elapsed()
        ),
    }
}

/// SEMANTICS: an uncached read fails with EIO after the fetch timeout (10 s) when no node
/// answers, at once when it is asked again within a few seconds, and after at most a short grace
/// (1.5 s) when the broker connection is known to be down. `quloud status` shows the connection.
#[test]
fn offline_broker() {
    let mut fabric = Fabric::start(3, "1GiB");
    let tmp = tempfile::tempdir().unwrap();
    let mut m = Mount::new_vault(tmp.path(), "v", &fabric.url(), &[]);
    let (a, b, e) = (bytes(3 * MIB, 301), bytes(3 * MIB, 302), bytes(MIB, 305));
    fs::write(m.path("a"), &a).unwrap();
    fs::write(m.path("b"), &b).unwrap();
    fs::write(m.path("e"), &e).unwrap();
    fs::create_dir(m.path("dir")).unwrap();
    fs::write(m.path("dir/small"), b"small").unwrap();
    wait_durable(&m.home);
    m.remount();
    assert_content(&m.path("a"), &a, "a, read while the broker is up");
    let text = status_text(&m.home);
    let up = format!("fabric        connected to {} for ", fabric.url());
    assert!(text.starts_with("mounted       yes\n") && text.contains(&up), "status while connected:\n{text}");
    assert!(status(&m.home).json.contains("\"mounted\":true,\"fabric\":{\"servers\""));

    // Connected, but no node answers (stopped, still subscribed): the fetch timeout, once
    // (the kernel's retry after the failed read-ahead does not wait again); a retry at once.
    let signal_nodes = |fabric: &Fabric, sig| {
        for node in &fabric.nodes {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(node.pid().unwrap() as libc::pid_t, sig) };
        }
    };
    signal_nodes(&fabric, libc::SIGSTOP);
    let took = read_fails_with_eio(&m, "b", "reading b with every node stopped");
    let took_again = read_fails_with_eio(&m, "b", "reading b again");
    signal_nodes(&fabric, libc::SIGCONT);
    assert!(took >= Duration::from_secs(9) && took < Duration::from_secs(19), "b failed after {took:?}");
    assert!(took_again < Duration::from_secs(5), "a retry of b failed only after {took_again:?}");

    fabric.nats.kill9();
    wait_until(Duration::from_secs(10), "the mount to notice the broker is gone", || {
        m.log_text().contains("lost the NATS connection")
    });
    ls_within(m.mp.clone(), &["a", "b", "dir"]);
    ls_within(m.path("dir"), &["small"]);
    let path = m.path("a");
    let got = within(Duration::from_secs(5), "reading the cached file a", move || fs::read(path));
    assert!(got.as_deref().ok() == Some(&a[..]), "cached file a does not read back offline: {got:?}");

    // The broker connection is known down: uncached reads fail within the grace, retries at once.
    let took = read_fails_with_eio(&m, "e", "reading the uncached file e offline");
    assert!(took < Duration::from_secs(8), "e failed after {took:?} with the broker known down");
    let took = read_fails_with_eio(&m, "e", "reading e again offline");
    assert!(took < Duration::from_secs(5), "a retry of e failed only after {took:?}");
    let text = status_text(&m.home);
    let down = format!("fabric        DISCONNECTED from {} for ", fabric.url());
    assert!(text.contains(&down), "status with the broker down:\n{text}");
    assert!(status(&m.home).json.contains("\"connected\":false"));
    let snap = quloud(&m.home).arg("snapshot").output().unwrap();
    let err = String::from_utf8_lossy(&snap.stderr);
    assert!(!snap.status.success() && err.contains("the broker is unreachable"), "snapshot offline: {err}");
    let mp = m.mp.clone();
    let st = within(Duration::from_secs(5), "statvfs on the mount", move || statvfs(&mp)).unwrap();
    assert!(
        st.f_bsize > 0 && st.f_blocks > 0,
        "statvfs figures: bsize {} blocks {}",
        st.f_bsize,
        st.f_blocks
    );
    let mp = m.mp.clone();
    let df = within(Duration::from_secs(5), "df", move || Command::new("df").arg(&mp).output()).unwrap();
    assert!(df.status.success(), "df failed: {}", String::from_utf8_lossy(&df.stderr));

    let (c, d) = (bytes(MIB + 5, 303), bytes(200_000, 304));
    let (pc, pd) = (m.path("c"), m.path("dir/new/d"));
    let (c2, d2) = (c.clone(), d.clone());
    within(Duration::from_secs(10), "writing new files offline", move || {
        fs::write(&pc, &c2).unwrap();
        fs::create_dir(pd.parent().unwrap()).unwrap();
        fs::write(&pd, &d2).unwrap();
    });
    assert_content(&m.path("c"), &c, "new file c, offline");
    // The mount still stops promptly with the broker down (its unmount snapshot is skipped).
    let started = Instant::now();
    m.unmount();
    assert!(started.elapsed() < Duration::from_secs(10), "unmount took {:?} offline", started.elapsed());

    fabric.nats.restart();
    m.spawn();
    let s = wait_durable_within(&m.home, Duration::from_secs(120));
    assert!(s.durable == s.chunks, "not all durable after the broker came back: {}", s.json);
    m.remount();
    assert_content(&m.path("b"), &b, "b after the broker came back and a remount");
    assert_content(&m.path("e"), &e, "e after the broker came back and a remount");
    assert_content(&m.path("c"), &c, "c (written offline) after a remount");
    assert_content(&m.path("dir/new/d"), &d, "d (written offline) after a remount");
}

/// Bytes of the chunk files in a vault's disk cache; each must hash to its name unless
/// `damaged_ok` (a file the test itself damaged).
fn disk_cache_bytes(home: &Path, damaged_ok: bool) -> u64 {
    let mut total = 0;
    for e in fs::read_dir(home.join("chunks")).unwrap().flatten() {
        let data = fs::read(e.path()).unwrap();
        let name = e.file_name().to_string_lossy().to_string();
        assert!(
            damaged_ok || quloud::domain::ids::Addr::of(&data).to_hex() == name,
            "disk cache file {name} does not hash to its name"
        );
        total += data.len() as u64;
    }
    total
}

/// The disk cache keeps uploaded chunks within its budget, serves them with the broker down,
/// and never returns a damaged copy: it is dropped and the chunk fetched again.
#[test]
fn disk_cache_serves_recent_data_offline_and_drops_damaged_copies() {
    let mut fabric = Fabric::start(3, "1GiB");
    let tmp = tempfile::tempdir().unwrap();
    let budget = 5 * MIB as u64;
    let mut m = Mount::new_vault(tmp.path(), "v", &fabric.url(), &["--disk-cache-size", "5MiB"]);
    let (a, b) = (bytes(3 * MIB, 501), bytes(3 * MIB, 502));
    fs::write(m.path("a"), &a).unwrap();
    wait_durable(&m.home);
    fs::write(m.path("b"), &b).unwrap();
    wait_durable(&m.home);
    m.unmount(); // (its final snapshot goes through the disk cache too)
    let kept = disk_cache_bytes(&m.home, false);
    assert!(kept > 3 * MIB as u64 && kept <= budget, "disk cache holds {kept} bytes (budget {budget})");
    let s = status(&m.home);
    assert!(
        s.json.contains(&format!("\"disk_cache_bytes\":{kept},\"disk_cache_capacity\":{budget}")),
        "quloud status of the unmounted vault does not show its disk cache: {}",
        s.json
    );

    // Offline, the newest file reads back from the disk cache alone; the older one lost chunks
    // to the budget and fails with EIO in bounded time.
    fabric.nats.kill9();
    m.spawn();
    let path = m.path("b");
    let got = within(Duration::from_secs(10), "reading b from the disk cache", move || fs::read(path));
    assert!(got.as_deref().ok() == Some(&b[..]), "b does not read back offline: {:?}", got.map(|v| v.len()));
    let path = m.path("a");
    match within(Duration::from_secs(30), "reading a offline", move || fs::read(path)) {
        Err(e) if e.raw_os_error() == Some(libc::EIO) => {}
        other => panic!(
            "a is partly evicted: reading it offline must fail with EIO, got {:?}",
            other.map(|v| v.len())
        ),
    }
    m.unmount();

    // Damaged copies are never served: offline that is EIO, online the chunk is fetched again.
    for e in fs::read_dir(m.home.join("chunks")).unwrap().flatten() {
        let mut data = fs::read(e.path()).unwrap();
        data[100] ^= 0x40;
        fs::write(e.path(), data).unwrap();
    }
    m.spawn();
    let path = m.path("b");
    match within(Duration::from_secs(30), "reading damaged b offline", move || fs::read(path)) {
        Err(e) if e.raw_os_error() == Some(libc::EIO) => {}
        other => panic!("a damaged disk cache must give EIO offline, got {:?}", other.map(|v| v.len())),
    }
    fabric.nats.restart();
    let path = m.path("b");
    let got = within(Duration::from_secs(60), "reading b once the broker is back", move || loop {
        match fs::read(&path) {
            Ok(v) => break v,
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    });
    assert!(got == b, "b read back wrong after its disk cache copies were damaged");
    assert_content(&m.path("a"), &a, "a, fetched from the fabric");
    m.unmount();
    let kept = disk_cache_bytes(&m.home, false);
    assert!(kept <= budget, "disk cache holds {kept} bytes (budget {budget})");
}

/// Only one mount per home: a second `quloud mount` of the same home must exit with an error
/// and mount nothing.
fn second_mount_is_refused(first: &Mount, url: &str) {
    let mp2 = first.home.with_extension("second-mp");
    fs::create_dir_all(&mp2).unwrap();
    let mp2 = mp2.canonicalize().unwrap();
    let mut child = quloud(&first.home)
        .arg("mount")
        .arg(&mp2)
        .args(["--nats", url])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline || is_mounted(&mp2) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mounted = is_mounted(&mp2);
    if status.is_none() || mounted {
        let _ = child.kill();
        let _ = child.wait();
        lazy_unmount(&mp2);
        panic!("a second mount of the same home was not refused (mounted: {mounted}, exited: {status:?})");
    }
    assert!(!status.unwrap().success(), "a second mount of the same home exited 0");
    assert!(first.home.join("control.sock").exists(), "the refused second mount removed the control socket");
}

#[test]
fn mount_while_broker_is_down() {
    let mut fabric = Fabric::start(3, "1GiB");
    fabric.nats.kill9();
    let tmp = tempfile::tempdir().unwrap();
    let mut m = Mount::new_vault(tmp.path(), "v", &fabric.url(), &[]);
    ls_within(m.mp.clone(), &["."]);
    let text = status_text(&m.home);
    assert!(text.contains(&format!("fabric        DISCONNECTED from {}", fabric.url())), "{text}");
    second_mount_is_refused(&m, &fabric.url());
    let x = bytes(MIB + 11, 401);
    let (p, x2) = (m.path("x"), x.clone());
    within(Duration::from_secs(10), "writing offline", move || fs::write(p, x2)).unwrap();
    ls_within(m.mp.clone(), &["x"]);
    assert_content(&m.path("x"), &x, "x, written offline");

    fabric.nats.restart();
    let s = wait_durable_within(&m.home, Duration::from_secs(120));
    assert!(s.chunks > 0 && s.durable == s.chunks, "not all durable after the broker came up: {}", s.json);
    m.remount();
    assert_content(&m.path("x"), &x, "x after the broker came up and a remount");
}

/// The tree comparison used above must see every kind of difference it claims to check.
#[test]
fn tree_comparison_detects_differences() {
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    make_tree(&a, 3);
    let copy = |i: usize| {
        let b = tmp.path().join(format!("b{i}"));
        run_ok(Command::new("cp").arg("-a").arg(&a).arg(&b), "cp -a");
        b
    };
    assert_trees_equal(&a, &copy(0), "an exact copy (cp -a)");
    // Puts back the mtime of `rel` (a directory whose entries a mutation changed) from `a`.
    let restore_mtime = |b: &Path, rel: &str| {
        let m = fs::symlink_metadata(a.join(rel)).unwrap();
        tree::set_mtime(&b.join(rel), m.mtime(), m.mtime_nsec());
    };
    type Mutation<'a> = (&'a str, Box<dyn Fn(&Path) + 'a>);
    let mutations: Vec<Mutation> = vec![
        (
            "mtime",
            Box::new(|b: &Path| {
                let m = fs::metadata(b.join("tiny")).unwrap();
                tree::set_mtime(&b.join("tiny"), m.mtime(), m.mtime_nsec() + 1);
            }),
        ),
        ("xattrs", Box::new(|b: &Path| tree::set_xattr(&b.join("tiny"), "user.comment", b"hellO"))),
        (
            "mode",
            Box::new(|b: &Path| {
                fs::set_permissions(b.join("modes/m600"), fs::Permissions::from_mode(0o640)).unwrap()
            }),
        ),
        (
            "content differs from byte 1234567",
            Box::new(|b: &Path| {
                overwrite_at(&b.join("random-3m"), 1_234_567, b"\0\0\0\0");
                restore_mtime(b, "random-3m");
            }),
        ),
        (
            "nlink",
            Box::new(|b: &Path| {
                fs::remove_file(b.join("a/h3")).unwrap();
                run_ok(Command::new("cp").arg("-a").arg(b.join("hard/h1")).arg(b.join("a/h3")), "cp -a");
                restore_mtime(b, "a");
            }),
        ),
        (
            "symlink target",
            Box::new(|b: &Path| {
                fs::remove_file(b.join("links/dangling")).unwrap();
                symlink("no/such/targeT", b.join("links/dangling")).unwrap();
                restore_mtime(b, "links/dangling");
                restore_mtime(b, "links");
            }),
        ),
        (
            "entries differ",
            Box::new(|b: &Path| {
                fs::write(b.join("a/b/extra"), b"").unwrap();
                restore_mtime(b, "a/b");
            }),
        ),
    ];
    for (i, (what, mutate)) in mutations.iter().enumerate() {
        let b = copy(i + 1);
        mutate(&b);
        match compare_trees(&a, &b) {
            Ok(()) => panic!("the comparison missed a difference in {what}"),
            Err(e) => assert!(e.contains(what), "expected a difference in {what}, got: {e}"),
        }
    }
}
