//! The tools people copy and work with, run the same way on a real mount (real nats-server,
//! nodes and FUSE) and on a local ext4 directory: cp -a, cp -p, install -m, tar -xp, rsync
//! -aHAX, setfacl/getfacl with access and default ACLs, git, sqlite in WAL mode, an editor-style
//! save, setuid clearing by an unprivileged writer, and ACLs enforced for another user. Modes,
//! owners, sizes, contents, links, ACLs and xattrs must be identical, before and after a cold
//! remount.

mod common;

use common::tools::{describe, differences, require_tools, run_script};
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The source tree, made on ext4: a part of /usr/share/doc, modes from 000 to 7777, owners,
/// access and default ACLs, xattrs, hard and symbolic links.
const MAKE_SOURCE: &str = r#"
umask 022
mkdir -p "$SRC/doc"
for d in $(ls /usr/share/doc | head -40); do cp -a "/usr/share/doc/$d" "$SRC/doc/"; done
cd "$SRC"
mkdir -p modes acl/dflt acl/sub
for m in 600 644 755 700 444 000 4755 2755 6750 1777 2770; do echo "mode $m" > "modes/f$m"; chmod "$m" "modes/f$m"; done
mkdir modes/d2775 modes/d1777 && chmod 2775 modes/d2775 && chmod 1777 modes/d1777
echo owned > modes/owned && chown 1234:5678 modes/owned
echo acl > acl/extended && setfacl -m u:1000:rw-,g:100:r--,m::rw- acl/extended
echo acl > acl/named-group && chmod 640 acl/named-group && setfacl -m g:4242:rwx acl/named-group
echo acl > acl/equivalent && setfacl -m u::rwx,g::r-x,o::--- acl/equivalent
setfacl -m u:1000:rwx acl/sub
setfacl -d -m u:1000:rwx,g:100:r-x,o::r-x acl/dflt
echo inherits > acl/dflt/file && mkdir acl/dflt/dir && echo deeper > acl/dflt/dir/file
setfattr -n user.comment -v hello modes/f644
setfattr -n user.binary -v 0x00ff00 acl/extended
echo linked > modes/hard1 && ln modes/hard1 modes/hard2 && ln -s ../modes/f644 acl/symlink
"#;

/// What every tool does, run in the directory under test with `SRC` the source tree.
const OPERATIONS: &str = r#"
umask 022
export GIT_AUTHOR_DATE='2020-01-02T03:04:05Z' GIT_COMMITTER_DATE='2020-01-02T03:04:05Z'
export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@example.org GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@example.org
cp -a "$SRC" cp-a
cp -rp "$SRC" cp-p
mkdir install
install -m 0640 "$SRC/modes/f644" install/m0640
install -m 4755 "$SRC/modes/f644" install/m4755
install -m 2700 "$SRC/modes/f644" install/m2700
install -d -m 0750 install/dir0750
mkdir tar && tar -C "$SRC" --acls --xattrs -cf - . | tar -C tar --acls --xattrs -xpf -
rsync -aHAXA "$SRC/" rsync/

# setfacl / getfacl on files made here: access and default ACLs, chmod of an extended ACL,
# removal, inheritance with the umask ignored under a default ACL.
mkdir facl facl/plain
echo x > facl/file && setfacl -m u:1000:r-x,g:100:rw- facl/file && chmod 750 facl/file
echo x > facl/removed && setfacl -m u:1000:rwx facl/removed && setfacl -b facl/removed
echo x > facl/removed-x && chmod 664 facl/removed-x && setfacl -m u:1000:rwx facl/removed-x && setfacl -x u:1000 facl/removed-x
echo x > facl/minimal && setfacl --set u::rw-,g::---,o::r-- facl/minimal
setfacl -d -m u:1000:rwx,g::rwx,o::--- facl
(umask 077; echo new > facl/inherited; mkdir facl/inherited-dir; mkdir -m 0700 facl/dir700)
touch facl/inherited-dir/grandchild && mkfifo facl/fifo && ln -s inherited facl/link
setfacl -k facl/plain && touch facl/plain/no-default
find facl ! -type l | sort | xargs getfacl -n > facl-getfacl.txt
setfacl -m u:nobody:r-- facl/minimal
echo secret > facl/for-nobody && chmod 600 facl/for-nobody && setfacl -m u:nobody:r-- facl/for-nobody
echo public > facl/not-for-nobody && chmod 644 facl/not-for-nobody && setfacl -m u:nobody:--- facl/not-for-nobody
chmod 755 . facl
(runuser -u nobody -- cat facl/for-nobody || echo denied) > nobody-reads-granted.txt 2>/dev/null
(runuser -u nobody -- cat facl/not-for-nobody || echo denied) > nobody-reads-refused.txt 2>/dev/null

# setuid/setgid cleared when a user without CAP_FSETID writes or truncates; kept for root.
mkdir suid && chmod 755 suid
for f in write truncate root; do echo data > suid/$f; chmod 6777 suid/$f; done
echo data > suid/sgid-no-gx && chmod 2767 suid/sgid-no-gx
runuser -u nobody -- sh -c 'echo more >> suid/write'
runuser -u nobody -- truncate -s 2 suid/truncate
runuser -u nobody -- sh -c 'echo more >> suid/sgid-no-gx'
echo more >> suid/root
echo x > suid/acl-sgid && chown nobody suid/acl-sgid && chmod 2755 suid/acl-sgid
runuser -u nobody -- setfacl -m u:1000:r-- suid/acl-sgid

# An editor's save: write a temporary file, fsync it, rename it over the original.
echo original > edited.txt && chmod 640 edited.txt
printf 'saved by an editor\n' > .edited.txt.swp && chmod 640 .edited.txt.swp
sync .edited.txt.swp && mv .edited.txt.swp edited.txt

# git: init, commits, gc, fsck.
git init -q repo && cd repo
git config pack.threads 1 && git config gc.auto 0
for i in 1 2 3; do echo "line $i" >> file.txt; cp -a "$SRC/modes" "modes$i"; git add -A; git commit -q -m "commit $i"; done
git gc -q && git fsck --strict --no-progress
cd ..

# sqlite in WAL mode: a few transactions, then an integrity check.
sqlite3 db.sqlite 'PRAGMA journal_mode=WAL; CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT);' > /dev/null
for i in 1 2 3 4 5; do sqlite3 db.sqlite "BEGIN; INSERT INTO t(v) SELECT 'v$i' FROM (SELECT 1 UNION SELECT 2); UPDATE t SET v = v || 'x' WHERE k % 2 = 1; COMMIT;"; done
test "$(sqlite3 db.sqlite 'PRAGMA integrity_check;')" = ok
sqlite3 db.sqlite 'SELECT count(*), group_concat(v) FROM t;' > db-contents.txt
"#;

/// Read-only checks of the git repository and the database after the remount.
const CHECKS: &str = r#"
cd repo && git fsck --strict --no-progress && test "$(git log --oneline | wc -l)" = 3 && cd ..
test "$(sqlite3 -readonly db.sqlite 'PRAGMA integrity_check;')" = ok
"#;

/// Files whose content records inode numbers or times: git's index (stat data of the work tree).
const VOLATILE: &[&str] = &["repo/.git/index"];
/// Whether the tools preserve the mtime of `path`: all copies keep their source's, but rsync
/// -A keeps only regular files' times here (on ext4 too).
fn keeps_time(path: &str, is_file: bool) -> bool {
    ["cp-a/", "cp-p/", "tar/"].iter().any(|d| path.starts_with(d)) || (path.starts_with("rsync/") && is_file)
}

fn ext4_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    // SAFETY: statfs(2) on a valid NUL-terminated path into a zeroed struct.
    let magic = unsafe {
        let path = std::ffi::CString::new(dir.path().as_os_str().as_encoded_bytes()).unwrap();
        let mut s: libc::statfs = std::mem::zeroed();
        assert_eq!(libc::statfs(path.as_ptr(), &mut s), 0);
        s.f_type
    };
    assert_eq!(
        magic,
        0xEF53,
        "{} is not on ext4: build with CARGO_TARGET_DIR on an ext4 disk",
        dir.path().display()
    );
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// The files where the vault and ext4 differ by design (docs/SEMANTICS.md), with their modes on
/// ext4 and in the vault: a setgid file without group execute written by a user outside its
/// group, and an ACL set by a user outside the file's group, keep the setgid bit in the vault.
const SETGID_KEPT: [(&str, u32, u32); 2] =
    [("suid/sgid-no-gx", 0o767, 0o2767), ("suid/acl-sgid", 0o755, 0o2755)];

fn assert_same(ext4: &Path, vault: &Path, when: &str) {
    let describe = |root| {
        let mut d = describe(root, VOLATILE, keeps_time);
        d.retain(|k, _| !SETGID_KEPT.iter().any(|(path, ..)| k.ends_with(path)));
        d
    };
    let (want, got) = (describe(ext4), describe(vault));
    let diffs = differences(&want, &got, 30);
    assert!(
        diffs.is_empty(),
        "{when}: the vault differs from ext4 in {} paths, first ones:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

/// Unmounts (SIGTERM, then `fusermount3 -u`) and mounts again with an empty cache. A mount
/// with `--allow-other` leaves its kernel mount to fusermount3's auto-unmount, which does not
/// release it at SIGTERM: the mount process waits until `fusermount3 -u` does.
fn cold_remount(m: &mut Mount) {
    let pid = m.pid().expect("mounted");
    // SAFETY: kill(2) on the mount process this test started.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    wait_until(Duration::from_secs(30), "the mount point to be released", || {
        let _ = Command::new("fusermount3").arg("-u").arg(&m.mp).stderr(std::process::Stdio::null()).status();
        !is_mounted(&m.mp)
    });
    let exited = || std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z "));
    wait_until(Duration::from_secs(30), "the mount process to exit", exited);
    assert!(m.log_text().contains("vault unmounted\n"), "no clean unmount:\n{}", m.log_text());
    m.kill9(); // reaps it
    m.spawn();
}

#[test]
fn real_tools_leave_the_same_tree_as_on_ext4_before_and_after_a_cold_remount() {
    require_tools();
    let ext4 = ext4_dir();
    let (src, local) = (ext4.path().join("src"), ext4.path().join("local"));
    std::fs::create_dir(&local).unwrap();
    run_script(ext4.path(), &src, MAKE_SOURCE);
    run_script(&local, &src, OPERATIONS);

    let fabric = Fabric::start(3, "1GiB");
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut m = Mount::new_vault(dir.path(), "v", &fabric.url(), &["--allow-other"]);
    run_script(&m.mp, &src, OPERATIONS);
    assert_same(&local, &m.mp, "after the tools ran");
    for (file, want) in [("nobody-reads-granted.txt", "secret\n"), ("nobody-reads-refused.txt", "denied\n")] {
        assert_eq!(std::fs::read_to_string(local.join(file)).unwrap(), want, "ext4 itself: {file}");
    }

    for (path, on_ext4, in_vault) in SETGID_KEPT {
        let mode = |root: &Path| std::fs::metadata(root.join(path)).unwrap().permissions().mode() & 0o7777;
        assert_eq!(
            (mode(&local), mode(&m.mp)),
            (on_ext4, in_vault),
            "{path}: ext4 clears setgid, the vault keeps it"
        );
    }

    wait_durable(&m.home);
    cold_remount(&mut m);
    assert_same(&local, &m.mp, "after a cold remount");
    run_script(&m.mp, &src, CHECKS);
}
