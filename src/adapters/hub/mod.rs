//! The hub's side of friends' houses on the machine: its TLS identity (`tls`), nats-server
//! configs of hub and house (`conf`), and the membership register on disk and what the hub's
//! monitoring port says about connected houses (this file).

pub mod conf;
pub mod tls;

use crate::domain::membership::Register;
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The register file, held under an exclusive lock while it is read, changed and written.
pub struct RegisterFile {
    path: PathBuf,
    _lock: File,
}

impl RegisterFile {
    /// Locks the register in `dir` (waiting for another command that holds it).
    pub fn lock(dir: &Path) -> Result<RegisterFile> {
        let lock_path = dir.join("members.lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("cannot open {}", lock_path.display()))?;
        // SAFETY: flock on a file descriptor we own; it is released when `lock` closes.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
            bail!("cannot lock {}: {}", lock_path.display(), std::io::Error::last_os_error());
        }
        Ok(RegisterFile { path: dir.join("members.json"), _lock: lock })
    }

    /// The register (empty when there is none yet).
    pub fn load(&self) -> Result<Register> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("the membership register {} is damaged", self.path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Register::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", self.path.display())),
        }
    }

    /// Replaces the register on disk atomically (write, fsync, rename).
    pub fn save(&self, register: &Register) -> Result<()> {
        write_private_atomic(&self.path, serde_json::to_string_pretty(register)?.as_bytes())
    }
}

/// Writes `bytes` to `path` (mode 0600) so that a crash leaves the old or the new content.
pub fn write_private_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = File::options().create(true).truncate(true).write(true).mode(0o600).open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The subjects subscribed to through the leaf connections of the hub now (its monitoring
/// port's `/leafz?subs=1`): a house's node shows as `quloud.v1.node.<id>.>`.
pub async fn leaf_subscriptions(monitor_port: u16) -> Result<Vec<String>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", monitor_port)).await?;
    s.write_all(b"GET /leafz?subs=1 HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").await?;
    let mut text = Vec::new();
    s.take(32 << 20).read_to_end(&mut text).await?;
    let text = String::from_utf8_lossy(&text);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(body).context("the hub's /leafz answer is not JSON")?;
    let leafs = v.get("leafs").and_then(|l| l.as_array()).cloned().unwrap_or_default();
    let subs = leafs.iter().filter_map(|l| l.get("subscriptions_list").and_then(|s| s.as_array()));
    Ok(subs.flatten().filter_map(|s| s.as_str().map(str::to_string)).collect())
}
