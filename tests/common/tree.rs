//! Test trees: a generator of awkward file trees (deep, unicode and 200-byte names, empty,
//! sparse and multi-MiB files, symlinks, hard links, xattrs, odd modes and owners, old mtimes)
//! and a metadata comparison of two trees that reports the first difference.

use super::bytes;
use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// Sets an extended attribute on `path` (not following symlinks).
pub fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let (p, n) = (cpath(path), CString::new(name).unwrap());
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let r = unsafe { libc::lsetxattr(p.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    assert_eq!(r, 0, "setxattr {name} on {}: {}", path.display(), std::io::Error::last_os_error());
}

/// Every extended attribute of `path` (not following symlinks), by name.
pub fn xattrs(path: &Path) -> std::io::Result<BTreeMap<Vec<u8>, Vec<u8>>> {
    let p = cpath(path);
    let mut names = vec![0u8; 64 * 1024];
    // SAFETY: valid path; the buffer is writable for its length.
    let n = unsafe { libc::llistxattr(p.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    names.truncate(n as usize);
    let mut out = BTreeMap::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let cname = CString::new(name).unwrap();
        let mut value = vec![0u8; 64 * 1024 + 1];
        // SAFETY: as above.
        let len =
            unsafe { libc::lgetxattr(p.as_ptr(), cname.as_ptr(), value.as_mut_ptr().cast(), value.len()) };
        if len < 0 {
            return Err(std::io::Error::last_os_error());
        }
        value.truncate(len as usize);
        out.insert(name.to_vec(), value);
    }
    Ok(out)
}

/// Sets atime and mtime of `path` (not following symlinks) to `secs`.`nsec`.
pub fn set_mtime(path: &Path, secs: i64, nsec: i64) {
    let p = cpath(path);
    let t = libc::timespec { tv_sec: secs as libc::time_t, tv_nsec: nsec as _ };
    let times = [t, t];
    // SAFETY: valid path and a two-element timespec array.
    let r = unsafe { libc::utimensat(libc::AT_FDCWD, p.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
    assert_eq!(r, 0, "utimensat {}: {}", path.display(), std::io::Error::last_os_error());
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn write(path: &Path, data: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, data).unwrap();
}

/// Writes an awkward tree under `root` (created). Needs root for the setuid file and the owners.
pub fn make_tree(root: &Path, seed: u64) {
    use std::os::unix::fs::{lchown, symlink};
    fs::create_dir_all(root).unwrap();
    let r = |p: &str| root.join(p);
    write(&r("empty"), b"");
    write(&r("tiny"), b"x");
    for (i, n) in [100usize, 4095, 4096, 4097, 65_539, (1 << 20) + 7].into_iter().enumerate() {
        write(&r(&format!("sizes/s-{n}")), &bytes(n, seed * 100 + i as u64));
    }
    write(&r("random-3m"), &bytes(3 << 20, seed * 100 + 10));
    write(&r("random-2.5m"), &bytes((5 << 20) / 2 + 13, seed * 100 + 11));
    // Sparse: a hole, data in the middle, a hole to the end; and one that is all hole.
    let f = File::create(r("sparse")).unwrap();
    f.set_len(8 << 20).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &bytes(5000, seed * 100 + 12), (5 << 20) + 123).unwrap();
    drop(f);
    File::create(r("sparse-hole-only")).unwrap().set_len((3 << 20) + 1).unwrap();
    // Names: unicode, emoji, 200 bytes (ASCII and 2-byte characters).
    write(&r("ünïcødé/日本語のファイル.txt"), "こんにちは".as_bytes());
    write(&r("ünïcødé/emoji-😀-🎉"), &bytes(777, seed * 100 + 13));
    write(&r(&"l".repeat(200)), b"a 200-byte name");
    let long_dir = "é".repeat(100);
    assert_eq!(long_dir.len(), 200);
    write(&r(&format!("{long_dir}/{}", "n".repeat(200))), b"inside a 200-byte directory name");
    write(&r("a/b/c/d/e/f/g/deep.txt"), b"deep");
    write(&r("a/b/c/empty-in-deep"), b"");
    fs::create_dir_all(r("empty-dir")).unwrap();
    // Symlinks.
    fs::create_dir_all(r("links")).unwrap();
    symlink("../tiny", r("links/relative")).unwrap();
    symlink("../a/b", r("links/to-dir")).unwrap();
    symlink("no/such/target", r("links/dangling")).unwrap();
    symlink("/nonexistent/absolute/target", r("links/absolute-dangling")).unwrap();
    symlink("ünïcødé/日本語のファイル.txt", r("links-unicode")).unwrap();
    // Hard links: three names of one inode, across directories.
    write(&r("hard/h1"), &bytes(70_000, seed * 100 + 14));
    fs::hard_link(r("hard/h1"), r("hard/h2")).unwrap();
    fs::hard_link(r("hard/h1"), r("a/h3")).unwrap();
    write(&r("hard/pair-a"), b"two names");
    fs::hard_link(r("hard/pair-a"), r("hard/pair-b")).unwrap();
    // xattrs.
    set_xattr(&r("tiny"), "user.comment", b"hello");
    set_xattr(&r("tiny"), "user.binary", &[0, 1, 2, 255, 0]);
    set_xattr(&r("a"), "user.dir", b"yes");
    set_xattr(&r("hard/h1"), "user.linked", b"shared by three names");
    set_xattr(&r("empty"), "user.empty-value", b"");
    set_xattr(&r("random-3m"), "user.big", &bytes(4000, seed * 100 + 15));
    // Owners, then modes (chown clears setuid).
    write(&r("modes/owned"), b"owned by 1234:5678");
    lchown(r("modes/owned"), Some(1234), Some(5678)).unwrap();
    fs::create_dir_all(r("modes/owned-dir")).unwrap();
    lchown(r("modes/owned-dir"), Some(4321), Some(8765)).unwrap();
    lchown(r("links/relative"), Some(1111), Some(2222)).unwrap();
    for (name, mode) in [("m600", 0o600), ("m755", 0o755), ("suid", 0o4755), ("ro", 0o444), ("none", 0o000)] {
        write(&r(&format!("modes/{name}")), name.as_bytes());
        chmod(&r(&format!("modes/{name}")), mode);
    }
    fs::create_dir_all(r("modes/sticky")).unwrap();
    write(&r("modes/sticky/inside"), b"in a sticky dir");
    chmod(&r("modes/sticky"), 0o1777);
    fs::create_dir_all(r("modes/private")).unwrap();
    chmod(&r("modes/private"), 0o700);
    // Old times with nanoseconds on everything, children before their directories.
    let mut all = Vec::new();
    walk(root, &mut all);
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for (i, p) in all.iter().enumerate() {
        set_mtime(p, 1_000_000_000 + 86_400 * i as i64, 123_456_789 + i as i64);
    }
    set_mtime(root, 999_999_999, 1);
}

/// Every path below `dir` (not following symlinks), depth first.
pub fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        out.push(p.clone());
        if fs::symlink_metadata(&p).unwrap().is_dir() {
            walk(&p, out);
        }
    }
}

fn names(dir: &Path) -> Result<Vec<std::ffi::OsString>, String> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .map_err(|e| format!("read_dir {}: {e}", dir.display()))?
        .map(|e| e.map(|e| e.file_name()).map_err(|e| format!("read_dir {}: {e}", dir.display())))
        .collect::<Result<_, _>>()?;
    v.sort();
    Ok(v)
}

fn compare_one(
    a: &Path,
    b: &Path,
    rel: &Path,
    inos: &mut [BTreeMap<u64, Vec<PathBuf>>; 2],
) -> Result<(), String> {
    let here = rel.display();
    let ma = fs::symlink_metadata(a).map_err(|e| format!("{here}: lstat {}: {e}", a.display()))?;
    let mb = fs::symlink_metadata(b).map_err(|e| format!("{here}: lstat {}: {e}", b.display()))?;
    let ft = ma.file_type();
    macro_rules! same {
        ($what:expr, $x:expr, $y:expr) => {
            if $x != $y {
                return Err(format!("{here}: {} differs: {:?} (expected) vs {:?}", $what, $x, $y));
            }
        };
    }
    same!("mode", format!("{:o}", ma.mode()), format!("{:o}", mb.mode()));
    if !ft.is_dir() {
        same!("size", ma.size(), mb.size());
    }
    same!("mtime", (ma.mtime(), ma.mtime_nsec()), (mb.mtime(), mb.mtime_nsec()));
    same!("nlink", ma.nlink(), mb.nlink());
    same!("uid:gid", (ma.uid(), ma.gid()), (mb.uid(), mb.gid()));
    if ft.is_symlink() {
        same!("symlink target", fs::read_link(a).ok(), fs::read_link(b).ok());
    } else {
        let xa = xattrs(a).map_err(|e| format!("{here}: xattrs of {}: {e}", a.display()))?;
        let xb = xattrs(b).map_err(|e| format!("{here}: xattrs of {}: {e}", b.display()))?;
        let show = |x: &BTreeMap<Vec<u8>, Vec<u8>>| -> Vec<String> {
            x.iter()
                .map(|(k, v)| format!("{}={:?}", String::from_utf8_lossy(k), &v[..v.len().min(16)]))
                .collect()
        };
        if xa != xb {
            return Err(format!("{here}: xattrs differ: {:?} (expected) vs {:?}", show(&xa), show(&xb)));
        }
    }
    if ft.is_file() {
        inos[0].entry(ma.ino()).or_default().push(rel.to_path_buf());
        inos[1].entry(mb.ino()).or_default().push(rel.to_path_buf());
        let da = fs::read(a).map_err(|e| format!("{here}: read {}: {e}", a.display()))?;
        let db = fs::read(b).map_err(|e| format!("{here}: read {}: {e}", b.display()))?;
        if let Some(at) = first_difference(&da, &db) {
            return Err(format!(
                "{here}: content differs from byte {at} ({} vs {} bytes)",
                da.len(),
                db.len()
            ));
        }
    }
    if ft.is_dir() {
        let (na, nb) = (names(a)?, names(b)?);
        if na != nb {
            let missing: Vec<_> = na.iter().filter(|n| !nb.contains(n)).collect();
            let extra: Vec<_> = nb.iter().filter(|n| !na.contains(n)).collect();
            return Err(format!("{here}: entries differ: missing {missing:?}, unexpected {extra:?}"));
        }
        for n in na {
            compare_one(&a.join(&n), &b.join(&n), &rel.join(&n), inos)?;
        }
    }
    Ok(())
}

/// The first offset where `a` and `b` differ (including a length difference).
pub fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(i) => Some(i),
        None if a.len() != b.len() => Some(a.len().min(b.len())),
        None => None,
    }
}

/// Compares the trees `expected` and `actual`: names, file type and mode, size, mtime (s + ns),
/// nlink, uid/gid, symlink targets, xattrs, content, and which names share an inode. Returns
/// the first difference.
pub fn compare_trees(expected: &Path, actual: &Path) -> Result<(), String> {
    let mut inos = [BTreeMap::new(), BTreeMap::new()];
    compare_one(expected, actual, Path::new("."), &mut inos)?;
    let groups = |m: &BTreeMap<u64, Vec<PathBuf>>| -> Vec<Vec<PathBuf>> {
        let mut g: Vec<Vec<PathBuf>> = m.values().filter(|v| v.len() > 1).cloned().collect();
        g.iter_mut().for_each(|v| v.sort());
        g.sort();
        g
    };
    let (ga, gb) = (groups(&inos[0]), groups(&inos[1]));
    if ga != gb {
        return Err(format!("hard links differ: {ga:?} (expected) vs {gb:?}"));
    }
    Ok(())
}
