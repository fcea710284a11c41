//! Running the same shell script of real tools (cp, tar, rsync, setfacl, git, sqlite3…) in two
//! directories and describing a tree by what those tools preserve (type, mode, owner, size,
//! content, links, xattrs, getfacl output), so a mount can be compared line by line with ext4.

use super::require_tool;
use super::tree::{walk, xattrs};
use std::collections::BTreeMap;
use std::fs;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

/// The tools the comparison needs, with the Debian package that brings each.
pub const TOOLS: [(&str, &str); 8] = [
    ("setfacl", "acl"),
    ("getfacl", "acl"),
    ("getfattr", "attr"),
    ("sqlite3", "sqlite3"),
    ("rsync", "rsync"),
    ("git", "git"),
    ("tar", "tar"),
    ("runuser", "util-linux"),
];

/// Fails (with how to install it) when a tool is missing.
pub fn require_tools() {
    for (tool, package) in TOOLS {
        require_tool(tool, &format!("apt-get install -y {package}"));
    }
}

/// Runs `script` with bash in `dir` (environment: `SRC`), failing with its output on error.
pub fn run_script(dir: &Path, src: &Path, script: &str) {
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(dir)
        .env("SRC", src)
        .env("LC_ALL", "C")
        .env("HOME", dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "script failed in {}: {}\nstdout:\n{}\nstderr:\n{}",
        dir.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn digest(data: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    data.hash(&mut h);
    h.finish()
}

/// `getfacl -R` of `root`, one entry per file, keyed by its relative path.
fn getfacl(root: &Path) -> BTreeMap<String, String> {
    let out = Command::new("getfacl").args(["-R", "-P", "-n", "."]).current_dir(root).output().unwrap();
    assert!(out.status.success(), "getfacl in {}: {}", root.display(), String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut blocks = BTreeMap::new();
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let name = block.lines().next().unwrap_or("").trim_start_matches("# file: ").to_string();
        blocks.insert(format!("getfacl {name}"), block.to_string());
    }
    blocks
}

/// What a tree looks like to the tools: per path (relative to `root`), one line with the file
/// type and mode, owner, link count, size, a digest of the content (skipped for the paths in
/// `volatile`, whose content holds inode numbers or times), the symlink target and the xattrs,
/// and the mtime where `keeps_time(path, is_regular_file)` says the tools preserve it; plus `getfacl -R`
/// blocks. Small `.txt` files (what the scripts record) are shown as text.
pub fn describe(
    root: &Path,
    volatile: &[&str],
    keeps_time: impl Fn(&str, bool) -> bool,
) -> BTreeMap<String, String> {
    let mut all = Vec::new();
    walk(root, &mut all);
    let mut out = getfacl(root);
    for p in all {
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let m = fs::symlink_metadata(&p).unwrap();
        let mut line = format!("{:o} {}:{} nlink {}", m.mode(), m.uid(), m.gid(), m.nlink());
        if m.file_type().is_symlink() {
            line += &format!(" -> {}", fs::read_link(&p).unwrap().display());
        } else {
            for (k, v) in xattrs(&p).unwrap() {
                line += &format!(" {}={:x?}", String::from_utf8_lossy(&k), v);
            }
        }
        if m.is_file() {
            line += &format!(" size {}", m.size());
            let data = fs::read(&p).unwrap();
            if rel.ends_with(".txt") && data.len() < 4096 {
                line += &format!(" text {:?}", String::from_utf8_lossy(&data));
            } else if !volatile.iter().any(|v| rel.ends_with(v)) {
                line += &format!(" content {:016x}", digest(&data));
            }
        }
        if keeps_time(&rel, m.is_file()) {
            line += &format!(" mtime {}.{:09}", m.mtime(), m.mtime_nsec());
        }
        out.insert(rel, line);
    }
    out
}

/// The differences between two descriptions, one line each (at most `limit`).
pub fn differences(
    expected: &BTreeMap<String, String>,
    actual: &BTreeMap<String, String>,
    limit: usize,
) -> Vec<String> {
    let mut d = Vec::new();
    for (k, v) in expected {
        match actual.get(k) {
            Some(a) if a == v => {}
            Some(a) => d.push(format!("{k}:\n    ext4:  {v}\n    vault: {a}")),
            None => d.push(format!("{k}: missing in the vault (ext4: {v})")),
        }
    }
    for (k, a) in actual {
        if !expected.contains_key(k) {
            d.push(format!("{k}: only in the vault: {a}"));
        }
    }
    d.truncate(limit);
    d
}
