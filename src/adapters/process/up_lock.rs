//! One `quloud up` per home: a lock on HOME/fabric held for the life of `up`, and the stopping
//! of processes a killed `up` of the same home left running.
//!
//! The leftovers are found by their command lines (`nats-server -c HOME/fabric/nats.conf`,
//! `quloud node … --data HOME/fabric/node-N`) rather than by pid files: that also finds the
//! children of an older `quloud` that wrote none, and a recycled pid can never match. It is only
//! safe while holding the lock: then no live `up` owns such processes.

use anyhow::{bail, Context, Result};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Held while `up` runs; released (by the kernel, even after `kill -9`) when the process ends.
/// Rust opens files close-on-exec, so no child inherits it.
pub struct FabricLock {
    _file: File,
}

impl FabricLock {
    /// Takes the lock on `dir` (HOME/fabric) and writes our pid into it, or says who holds it.
    pub fn acquire(dir: &Path) -> Result<FabricLock> {
        let path = dir.join("up.lock");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open the lock file {}", path.display()))?;
        // `running_url` holds a shared lock for a moment while another command looks for the
        // running `up`: try again briefly before concluding that one runs.
        let deadline = Instant::now() + Duration::from_millis(250);
        let locked = loop {
            // SAFETY: flock(2) on a descriptor we own; no memory is passed.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                break Ok(());
            }
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) || Instant::now() >= deadline {
                break Err(err);
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        if let Err(err) = locked {
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(err).with_context(|| format!("cannot lock {}", path.display()));
            }
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let holder = match text.trim() {
                "" => "another `quloud up`".to_string(),
                pid => format!("another `quloud up` (pid {pid})"),
            };
            let stop = match text.trim() {
                "" => "Ctrl-C in its terminal".to_string(),
                pid => format!("Ctrl-C in its terminal or `kill {pid}`"),
            };
            bail!(
                "{holder} is already running the fabric in {}: use that one (its URL is in nats.url there), \
                 stop it first ({stop}; it stops its mount, nodes and nats-server in order), \
                 or give this one another --home",
                dir.display()
            );
        }
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "{}", std::process::id())?;
        Ok(FabricLock { _file: file })
    }
}

/// The broker URL of the `quloud up` running on `dir` (HOME/fabric): `None` when none runs.
pub fn running_url(dir: &Path) -> Option<String> {
    let file = File::open(dir.join("up.lock")).ok()?;
    // SAFETY: flock(2) on a descriptor we own; no memory is passed. A shared lock taken here is
    // released when `file` closes.
    let free = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } == 0;
    if free {
        return None;
    }
    let url = std::fs::read_to_string(url_file(dir)).ok()?;
    Some(url.trim().to_string()).filter(|u| !u.is_empty())
}

/// Whether the NUL-separated `cmdline` is the nats-server or a storage node of the fabric in
/// `dir`: what `up` itself starts.
fn is_ours(cmdline: &[u8], dir: &Path) -> Option<&'static str> {
    let args: Vec<&OsStr> = cmdline.split(|&b| b == 0).map(OsStr::from_bytes).collect();
    let program = Path::new(args.first()?).file_name()?;
    let conf = dir.join("nats.conf");
    if program == "nats-server" && args.windows(2).any(|w| w[0] == "-c" && Path::new(w[1]) == conf) {
        return Some("nats-server");
    }
    let in_fabric = |w: &[&OsStr]| w[0] == "--data" && Path::new(w[1]).parent() == Some(dir);
    if args.iter().any(|a| *a == "node") && args.windows(2).any(in_fabric) {
        return Some("storage node");
    }
    None
}

/// Processes running the fabric in `dir`, by pid.
fn leftovers(dir: &Path) -> Vec<(i32, &'static str)> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let me = std::process::id() as i32;
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter_map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            Some((pid, is_ours(&cmdline, dir)?))
        })
        .collect()
}

/// Whether `pid` still runs (a zombie does not).
fn alive(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The state follows the command name, which is in parentheses and may hold spaces.
    match stat.rsplit_once(") ") {
        Some((_, rest)) => !rest.starts_with('Z') && !rest.starts_with('X'),
        None => false,
    }
}

/// Stops what a `quloud up` of this home that did not stop cleanly left running (nodes first,
/// then nats-server): SIGTERM, SIGKILL after 10 s. Call only while holding the `FabricLock`.
pub async fn stop_leftovers(dir: &Path) -> Result<()> {
    let mut found = leftovers(dir);
    if found.is_empty() {
        return Ok(());
    }
    found.sort_by_key(|(_, what)| *what == "nats-server");
    for &(pid, what) in &found {
        println!("stopping a leftover {what} (pid {pid}) of an earlier `quloud up` of this home that did not stop cleanly");
        // SAFETY: kill(2) on a process whose command line names this home's fabric; no memory.
        if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
            let err = std::io::Error::last_os_error();
            bail!("cannot stop the leftover {what} (pid {pid}) using {}: {err}", dir.display());
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while found.iter().any(|&(pid, _)| alive(pid)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for &(pid, _) in found.iter().filter(|&&(pid, _)| alive(pid)) {
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    Ok(())
}

/// The port of the previous run, from `dir`/nats.url.
pub fn previous_port(dir: &Path) -> Option<u16> {
    let url = std::fs::read_to_string(url_file(dir)).ok()?;
    url.trim().rsplit_once(':')?.1.parse().ok()
}

/// Where `up` writes the URL of its broker.
pub fn url_file(dir: &Path) -> PathBuf {
    dir.join("nats.url")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmdline(args: &[&str]) -> Vec<u8> {
        args.join("\0").into_bytes()
    }

    #[test]
    fn recognises_only_this_homes_fabric() {
        let dir = Path::new("/h/fabric");
        assert_eq!(
            is_ours(&cmdline(&["/usr/bin/nats-server", "-c", "/h/fabric/nats.conf"]), dir),
            Some("nats-server")
        );
        assert_eq!(
            is_ours(&cmdline(&["/x/quloud", "node", "--nats", "u", "--data", "/h/fabric/node-2"]), dir),
            Some("storage node")
        );
        assert_eq!(is_ours(&cmdline(&["/usr/bin/nats-server", "-c", "/other/fabric/nats.conf"]), dir), None);
        assert_eq!(is_ours(&cmdline(&["/usr/bin/vim", "-c", "/h/fabric/nats.conf"]), dir), None);
        assert_eq!(is_ours(&cmdline(&["/x/quloud", "node", "--data", "/h/fabric/node-2/x"]), dir), None);
        assert_eq!(is_ours(&cmdline(&["/x/quloud", "mount", "--data", "/h/fabric/node-2"]), dir), None);
        assert_eq!(is_ours(b"", dir), None);
    }
}
