//! A full disk under the owner's home is an ordinary event (docs/SEMANTICS.md, full disk): the
//! home on a small tmpfs, a real broker, nodes and FUSE mount; writers get ENOSPC, deletes and
//! renames work, writes resume once space is freed, and fsynced files survive a crash.

mod common;

use common::*;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const MIB: usize = 1 << 20;

/// A tmpfs of `size` mounted at a directory, unmounted (lazily) on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs as the vault's home and must run as root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn acked(i: usize) -> Vec<u8> {
    bytes(MIB + i * 1000, 70_000 + i as u64)
}

fn is_enospc(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOSPC)
}

/// Writes 1 MiB pieces into `f` until the first error, which must be ENOSPC (also from fsync);
/// how many pieces were written.
fn fill(f: &mut File, seed: u64) -> usize {
    for n in 0..1024 {
        let piece = bytes(MIB, seed + n as u64);
        if let Err(e) = f.write_all(&piece).and_then(|()| f.sync_data()) {
            assert!(is_enospc(&e), "a write on a full home must fail with ENOSPC, not {e} ({e:?})");
            return n;
        }
    }
    panic!("1 GiB written into a 64 MiB home without ENOSPC");
}

/// Fills the rest of the filesystem at `dir` with a file of its own (another program filling
/// the disk); returns its path.
fn hog(dir: &Path) -> PathBuf {
    let path = dir.join("hog");
    let mut f = File::create(&path).unwrap();
    let block = vec![7u8; 64 << 10];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
    path
}

fn status_text(home: &Path) -> String {
    let out = quloud(home).arg("status").output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_full_home_refuses_writes_with_enospc_frees_through_the_mount_and_resumes() {
    let fabric = Fabric::start(3, "2GiB");
    let tmp = tempfile::tempdir().unwrap();
    let disk = tmp.path().join("disk");
    let _tmpfs = Tmpfs::mount(&disk, "64m");
    let home = disk.join("home");
    init_home(&home);
    let mut m = Mount::start(&home, &tmp.path().join("mp"), &fabric.url(), &[]);

    fs::create_dir(m.path("acked")).unwrap();
    for i in 0..4 {
        let mut f = File::create(m.path(&format!("acked/a{i}"))).unwrap();
        f.write_all(&acked(i)).unwrap();
        f.sync_all().unwrap();
    }
    wait_durable(&home);

    // Fill the home through the mount: one large file stays staged while it is open.
    let mut filler = File::create(m.path("filler")).unwrap();
    let written = fill(&mut filler, 1_000);
    assert!(written > 8, "only {written} MiB fitted before ENOSPC");
    let json = status(&home).json;
    assert!(json.contains("\"home_full\":true"), "status --json says the home is full: {json}");
    assert!(status_text(&home).contains("FULL"), "status says the home is full:\n{}", status_text(&home));
    // A new file's data is refused too, with ENOSPC.
    let mut more = File::create(m.path("more")).unwrap();
    assert_eq!(fill(&mut more, 5_000), 0, "no room for new data");
    drop(more);

    // Another program takes the last bytes of the disk: the manifest still commits deletes and
    // renames from its reserve.
    let hogged = hog(&disk);
    fs::rename(m.path("acked/a1"), m.path("acked/a1-moved")).expect("rename on a full disk");
    fs::remove_file(m.path("acked/a0")).expect("rm on a full disk");
    fs::remove_file(m.path("more")).expect("rm of a refused file on a full disk");
    fs::create_dir(m.path("made-when-full")).expect("mkdir on a full disk");
    assert!(!m.path("acked/a0").exists());
    assert_content(&m.path("acked/a2"), &acked(2), "read on a full disk");

    // Free space: the disk hog and the filler go; writes resume by themselves.
    fs::remove_file(&hogged).unwrap();
    drop(filler);
    fs::remove_file(m.path("filler")).expect("rm of the filler");
    wait_until(Duration::from_secs(30), "the home to have room again", || {
        status(&home).json.contains("\"home_full\":false")
    });
    let mut after = File::create(m.path("acked/after")).unwrap();
    after.write_all(&acked(9)).expect("writes resume once space is freed");
    after.sync_all().expect("fsync after space was freed");
    drop(after);
    wait_durable_within(&home, Duration::from_secs(120));

    // A crash and a cold remount: every fsynced file is exact.
    m.kill9();
    m.clear_stale();
    let log = m.log_text();
    m.spawn();
    assert_content(&m.path("acked/a1-moved"), &acked(1), "moved on a full disk, after a crash");
    assert_content(&m.path("acked/a2"), &acked(2), "after a crash");
    assert_content(&m.path("acked/a3"), &acked(3), "after a crash");
    assert_content(&m.path("acked/after"), &acked(9), "written after space returned, after a crash");
    assert!(!m.path("filler").exists(), "the filler's removal is durable");

    // The mount's log does not loop on the full disk.
    let lines = log.lines().filter(|l| l.contains("WARN") || l.contains("ERROR")).count();
    let full = log.matches("the vault's disk is full").count();
    assert!((1..=3).contains(&full), "the full disk is logged once per episode ({full} times):\n{log}");
    assert!(lines < 40, "{lines} warnings and errors in the mount's log:\n{log}");
    assert!(!log.contains("will be uploaded again"), "uploads are not redone:\n{log}");
}

fn assert_content(path: &Path, want: &[u8], when: &str) {
    let got = fs::read(path).unwrap_or_else(|e| panic!("{when}: read {}: {e}", path.display()));
    assert!(got == want, "{when}: {} differs ({} bytes, expected {})", path.display(), got.len(), want.len());
}
