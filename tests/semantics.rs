//! The claims of docs/SEMANTICS.md, each checked on a real mount over a real fabric: reads do
//! not update atime, an unlinked open file stays readable until its last close, the kernel
//! enforces permissions for other users with `--allow-other` (and keeps them out without it),
//! statfs answers immediately, names fsynced through their directory survive a kill -9.

mod common;

use common::*;
use std::ffi::CString;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn set_atime(path: &Path, secs: i64) {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let times = [
        libc::timespec { tv_sec: secs, tv_nsec: 0 },
        libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_OMIT },
    ];
    // SAFETY: valid NUL-terminated path and a two-element timespec array.
    let rc = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) };
    assert_eq!(rc, 0, "utimensat: {}", std::io::Error::last_os_error());
}

/// Runs `cmd` as the unprivileged user `nobody`; returns whether it succeeded.
fn as_nobody(args: &[&str]) -> bool {
    require_tool("runuser", "apt-get install -y util-linux");
    Command::new("runuser").args(["-u", "nobody", "--"]).args(args).output().unwrap().status.success()
}

#[test]
fn reads_do_not_update_atime_but_explicit_sets_do() {
    let fabric = Fabric::start(3, "1GiB");
    let dir = tempfile::tempdir().unwrap();
    let m = Mount::new_vault(dir.path(), "v", &fabric.url(), &[]);
    let f = m.path("a.txt");
    fs::write(&f, b"hello").unwrap();
    set_atime(&f, 1_000_000);
    assert_eq!(fs::read(&f).unwrap(), b"hello");
    assert_eq!(fs::metadata(&f).unwrap().atime(), 1_000_000, "a read changed atime");
    set_atime(&f, 2_000_000);
    assert_eq!(fs::metadata(&f).unwrap().atime(), 2_000_000, "an explicit atime was not stored");
}

/// A path component longer than 255 bytes is ENAMETOOLONG for every call, not ENOENT
/// (pjdfstest `*::enametoolong_component`).
#[test]
fn an_overlong_name_component_is_enametoolong() {
    let fabric = Fabric::start(3, "1GiB");
    let dir = tempfile::tempdir().unwrap();
    let m = Mount::new_vault(dir.path(), "v", &fabric.url(), &[]);
    std::fs::create_dir(m.path("d")).unwrap();
    let long = m.path(&format!("d/{}/x", "n".repeat(256)));
    let too_long = |r: std::io::Result<()>| r.unwrap_err().raw_os_error() == Some(libc::ENAMETOOLONG);
    assert!(too_long(std::fs::metadata(&long).map(|_| ())), "stat");
    assert!(too_long(std::fs::remove_file(&long)), "unlink");
    assert!(too_long(std::fs::remove_dir(&long)), "rmdir");
    assert!(too_long(std::fs::rename(&long, m.path("d/y"))), "rename");
    assert!(too_long(std::fs::hard_link(&long, m.path("d/z"))), "link");
    assert!(too_long(std::fs::write(&long, b"x")), "create");
    // 255 bytes is fine.
    std::fs::write(m.path(&format!("d/{}", "n".repeat(255))), b"ok").unwrap();
}

/// Missing names are cached by the kernel (negative entries); whatever makes the name through
/// the mount must show it at once, and a removal must hide it again.
#[test]
fn a_name_found_missing_appears_at_once_when_made_through_the_mount() {
    let fabric = Fabric::start(3, "1GiB");
    let dir = tempfile::tempdir().unwrap();
    let m = Mount::new_vault(dir.path(), "v", &fabric.url(), &[]);
    fs::write(m.path("src"), b"content").unwrap();
    let missing =
        |name: &str| fs::symlink_metadata(m.path(name)).unwrap_err().kind() == std::io::ErrorKind::NotFound;
    type Maker<'a> = &'a dyn Fn(&Path);
    let makers: [(&str, Maker); 5] = [
        ("created", &|p| fs::write(p, b"x").unwrap()),
        ("dir", &|p| fs::create_dir(p).unwrap()),
        ("symlink", &|p| std::os::unix::fs::symlink("src", p).unwrap()),
        ("linked", &|p| fs::hard_link(m.path("src"), p).unwrap()),
        ("renamed", &|p| {
            fs::write(m.path(".tmp"), b"y").unwrap();
            fs::rename(m.path(".tmp"), p).unwrap();
        }),
    ];
    for (name, make) in makers {
        assert!(missing(name), "{name} exists before it is made");
        make(&m.path(name));
        assert!(fs::symlink_metadata(m.path(name)).is_ok(), "{name} is not visible right after it was made");
        let listed = fs::read_dir(m.path("")).unwrap().any(|e| e.unwrap().file_name() == name);
        assert!(listed, "{name} is not listed");
    }
    fs::remove_file(m.path("created")).unwrap();
    assert!(missing("created"), "a removed name stays visible");
    fs::write(m.path("created"), b"again").unwrap();
    assert_eq!(fs::read(m.path("created")).unwrap(), b"again");
}

#[test]
fn an_unlinked_open_file_stays_readable_until_closed() {
    let fabric = Fabric::start(3, "1GiB");
    let dir = tempfile::tempdir().unwrap();
    let m = Mount::new_vault(dir.path(), "v", &fabric.url(), &[]);
    let f = m.path("doomed.bin");
    let data = bytes(3 << 20, 7);
    fs::write(&f, &data).unwrap();
    wait_durable(&m.home);
    let mut handle = fs::File::open(&f).unwrap();
    fs::remove_file(&f).unwrap();
    assert!(!f.exists(), "unlinked name still visible");
    let mut back = Vec::new();
    handle.read_to_end(&mut back).unwrap();
    assert!(back == data, "unlinked open file lost its content");
    drop(handle);
    assert!(fs::read_dir(&m.mp).unwrap().next().is_none());
}

#[test]
fn allow_other_lets_the_kernel_check_permissions_for_other_users() {
    let fabric = Fabric::start(3, "1GiB");
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let m = Mount::new_vault(dir.path(), "v", &fabric.url(), &["--allow-other"]);
    fs::set_permissions(&m.mp, fs::Permissions::from_mode(0o755)).unwrap();
    let public = m.path("public.txt");
    let private = m.path("private.txt");
    fs::write(&public, b"everyone").unwrap();
    fs::write(&private, b"root only").unwrap();
    fs::set_permissions(&public, fs::Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(&private, fs::Permissions::from_mode(0o600)).unwrap();
    fs::create_dir(m.path("closed")).unwrap();
    fs::set_permissions(m.path("closed"), fs::Permissions::from_mode(0o700)).unwrap();
    let p = |p: &Path| p.to_str().unwrap().to_string();
    assert!(as_nobody(&["cat", &p(&public)]), "other users must read a 0644 file");
    assert!(!as_nobody(&["cat", &p(&private)]), "other users must not read a 0600 file");
    assert!(!as_nobody(&["ls", &p(&m.path("closed"))]), "other users must not list a 0700 dir");
    assert!(
        !as_nobody(&["touch", &p(&m.path("new"))]),
        "other users must not create in a 0755 root-owned dir"
    );
}

#[test]
fn without_allow_other_other_users_are_kept_out() {
    let fabric = Fabric::start(3, "1GiB");
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let m = Mount::new_vault(dir.path(), "v", &fabric.url(), &[]);
    fs::write(m.path("public.txt"), b"x").unwrap();
    fs::set_permissions(m.path("public.txt"), fs::Permissions::from_mode(0o644)).unwrap();
    assert!(!as_nobody(&["cat", m.path("public.txt").to_str().unwrap()]));
}

#[test]
fn statfs_answers_immediately_even_with_the_broker_down() {
    let mut fabric = Fabric::start(3, "1GiB");
    let dir = tempfile::tempdir().unwrap();
    let m = Mount::new_vault(dir.path(), "v", &fabric.url(), &[]);
    let before = df_inodes_and_use(&m.mp);
    for name in ["a", "b", "c"] {
        fs::write(m.path(name), b"x").unwrap();
    }
    fabric.nats.kill9();
    let t = Instant::now();
    let out = Command::new("df").arg(&m.mp).output().unwrap();
    assert!(out.status.success(), "df failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(t.elapsed() < Duration::from_secs(3), "df took {:?}", t.elapsed());
    // The figures SEMANTICS.md states: nothing shown as used, and inodes in use counted for real
    // (never negative, as when the free count exceeded the total).
    let after = df_inodes_and_use(&m.mp);
    assert_eq!(after.1, "0%", "df shows space as used: {after:?}");
    assert!(before.0 >= 1, "the root directory is an inode in use: {before:?}");
    assert_eq!(after.0, before.0 + 3, "inodes in use: before {before:?}, after {after:?}");
}

/// `df`'s inodes in use and its use% of the space.
fn df_inodes_and_use(mp: &std::path::Path) -> (i64, String) {
    let out = Command::new("df").args(["--output=iused,pcent"]).arg(mp).output().unwrap();
    assert!(out.status.success(), "df failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let last = text.lines().last().unwrap_or_default().to_string();
    let mut cols = last.split_whitespace();
    let iused = cols.next().and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("df output: {text}"));
    (iused, cols.next().unwrap_or_default().to_string())
}

#[test]
fn a_listing_neither_skips_nor_repeats_entries_while_others_are_removed_or_added() {
    let fabric = Fabric::start(1, "1GiB");
    let dir = tempfile::tempdir().unwrap();
    let m = Mount::new_vault(dir.path(), "v", &fabric.url(), &[]);
    let big = m.path("big");
    fs::create_dir(&big).unwrap();
    let n = 1500;
    for i in 0..n {
        fs::write(big.join(format!("f{i:05}")), b"x").unwrap();
    }
    // Remove each entry as the listing reaches it, the way `rm -r` and `rsync --delete` walk a
    // directory, and add new ones meanwhile: the listing spans many readdir calls (the kernel
    // asks for a few kB at a time), and every original entry must come exactly once.
    let mut seen = std::collections::HashSet::new();
    for (k, entry) in fs::read_dir(&big).unwrap().enumerate() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(seen.insert(name.clone()), "{name} listed twice");
        fs::remove_file(big.join(&name)).unwrap();
        if k % 100 == 0 {
            fs::write(big.join(format!("new{k:05}")), b"y").unwrap();
        }
    }
    let originals = seen.iter().filter(|s| s.starts_with('f')).count();
    assert_eq!(originals, n, "the listing skipped entries while earlier ones were removed");
    // A fresh listing shows exactly what is left: the files added after that listing began.
    let left: Vec<String> =
        fs::read_dir(&big).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(left.iter().all(|s| s.starts_with("new")), "{left:?}");
    for name in &left {
        fs::remove_file(big.join(name)).unwrap();
    }
    fs::remove_dir(&big).unwrap();
}

/// Names changed in quick succession share one manifest commit (SEMANTICS.md, Durability):
/// fsync of their directory must commit them before it returns, so a kill -9 right after it
/// loses none. The last rename of each round comes just before the fsync, inside the group
/// that only the fsync can have committed by then.
#[test]
fn names_fsynced_through_their_directory_survive_a_kill9_right_after() {
    let fabric = Fabric::start(3, "1GiB");
    let dir = tempfile::tempdir().unwrap();
    let mut m = Mount::new_vault(dir.path(), "v", &fabric.url(), &[]);
    let d = m.path("d");
    fs::create_dir(&d).unwrap();
    fs::File::open(&m.mp).unwrap().sync_all().unwrap();
    for round in 0..3 {
        for i in 0..40 {
            let tmp = d.join(format!(".f{round}-{i}.tmp"));
            fs::write(&tmp, format!("{round}-{i}")).unwrap();
            fs::rename(&tmp, d.join(format!("f{round}-{i}"))).unwrap();
        }
        fs::rename(d.join(format!("f{round}-0")), d.join(format!("moved{round}"))).unwrap();
        fs::File::open(&d).unwrap().sync_all().unwrap();
        m.kill9();
        m.clear_stale();
        m.spawn();
        for r in 0..=round {
            assert!(d.join(format!("moved{r}")).exists(), "round {r}: the rename just before fsync was lost");
            assert!(!d.join(format!("f{r}-0")).exists(), "round {r}: the renamed name came back");
            for i in 1..40 {
                assert!(d.join(format!("f{r}-{i}")).exists(), "round {r}: f{r}-{i} was lost");
                assert!(!d.join(format!(".f{r}-{i}.tmp")).exists(), "round {r}: a temporary name came back");
            }
        }
    }
}

/// A removal that a crash undoes brings the file back with the content last fsynced, never an
/// older one: the staging copy of a freed file goes only once its removal is durable. Files
/// 0–3 are removed while still open (freed at their last close), files 4–7 after closing.
#[test]
fn a_removal_undone_by_a_crash_brings_back_the_fsynced_content() {
    use std::io::Write;
    let fabric = Fabric::start(3, "1GiB");
    let dir = tempfile::tempdir().unwrap();
    let mut m = Mount::new_vault(dir.path(), "v", &fabric.url(), &[]);
    let root = m.mp.clone();
    let path = |i: u64| root.join(format!("f{i}"));
    let (old, new) = (|i: u64| bytes(100 << 10, i), |i: u64| bytes(100 << 10, 1000 + i));
    for i in 0..8 {
        fs::write(path(i), old(i)).unwrap();
    }
    wait_durable(&m.home); // the old content is chunked and uploaded
    let mut open = Vec::new();
    for i in 0..8 {
        // Overwritten in place and fsynced: the new content is only in the staging copy.
        let mut f = fs::OpenOptions::new().write(true).open(path(i)).unwrap();
        f.write_all(&new(i)).unwrap();
        f.sync_all().unwrap();
        if i < 4 {
            open.push(f);
        }
    }
    for i in 0..8 {
        fs::remove_file(path(i)).unwrap();
    }
    drop(open);
    m.kill9();
    m.clear_stale();
    m.spawn();
    let mut back = 0;
    for i in 0..8 {
        match fs::read(path(i)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("f{i}: {e}"),
            Ok(got) => {
                back += 1;
                assert!(got != old(i), "f{i} came back with the content from before its last fsync");
                assert!(got == new(i), "f{i} came back with content that was never written");
            }
        }
    }
    eprintln!("{back} of 8 removals were undone by the crash");
}
