//! What `quloud status` reports about a vault.

use super::Vault;
use crate::adapters::redb::manifest::Manifest;
use crate::domain::fs::{ChunkState, FsError};
use crate::domain::health::is_healthy;
use crate::domain::ids::{Addr, NodeId};
use crate::ports::fabric::ChunkFabric;
use crate::ports::local_disk::LocalDisk;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

/// A vault's state at a glance.
#[derive(Clone, Debug, Default)]
pub struct VaultStatus {
    /// Inodes (files, directories, links…).
    pub inodes: u64,
    /// Distinct chunks referenced by files.
    pub chunks: u64,
    /// Bytes of distinct referenced chunk plaintext (after dedup).
    pub bytes: u64,
    /// Chunks sealed locally, not yet quorum-durable.
    pub pending: u64,
    /// Chunks with at least N replicas.
    pub durable: u64,
    /// Chunks acknowledged once but now below N replicas.
    pub degraded: u64,
    /// Files whose newest content is still only in local staging.
    pub staged_files: u64,
    /// Replicas held per node.
    pub per_node: BTreeMap<NodeId, u64>,
    /// Replicas wanted per chunk.
    pub replicas: usize,
    /// When the last audit pass ended (Unix ms), replicas it challenged, and how many did not pass.
    pub last_audit: Option<(u64, u64, u64)>,
    /// Chunks waiting out the grace period before garbage collection.
    pub unreferenced: u64,
    /// Chunks in the upload queue (file chunks, snapshot pieces, chunks referenced again).
    pub queued: u64,
    /// Ciphertext bytes of the chunks in the upload queue.
    pub queued_bytes: u64,
    /// Snapshots retained.
    pub snapshots: u64,
    /// When the newest retained snapshot was taken (Unix ms).
    pub last_snapshot_ms: Option<u64>,
    /// Sealed chunks kept on local disk (the disk cache).
    pub disk_cache: super::DiskCacheUsage,
    /// Whether a running mount answered (else the figures come from the manifest on disk).
    pub mounted: bool,
    /// The running mount's broker connection (`None` when not mounted).
    pub fabric: Option<FabricLink>,
    /// A mount point left behind by a mount process that died (found in the mount table, with
    /// nothing answering on the control socket).
    pub stale_mount: Option<std::path::PathBuf>,
}

/// A mount's broker connection, for `quloud status`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FabricLink {
    /// The servers it connects to (passwords masked).
    pub servers: String,
    /// Whether it is connected now.
    pub connected: bool,
    /// Since when (Unix ms) it has been connected, or disconnected.
    pub since_ms: u64,
}

impl FabricLink {
    fn to_json(&self) -> String {
        format!(
            "{{\"servers\":{:?},\"connected\":{},\"since_ms\":{}}}",
            self.servers, self.connected, self.since_ms
        )
    }

    fn render(&self) -> String {
        let now = crate::domain::unix_ms(std::time::SystemTime::now());
        let ago = format_age(now.saturating_sub(self.since_ms) / 1000);
        if self.connected {
            format!("connected to {} for {ago}", self.servers)
        } else {
            format!(
                "DISCONNECTED from {} for {ago}: reads of data not kept locally fail with EIO; \
                 writes are kept and uploaded once it is back",
                self.servers
            )
        }
    }
}

/// `1 chunk`, `2 chunks`.
fn chunk_count(n: u64) -> String {
    if n == 1 {
        "1 chunk".into()
    } else {
        format!("{n} chunks")
    }
}

/// `secs` as `42 s`, `5 min` or `3 h`.
fn format_age(secs: u64) -> String {
    match secs {
        0..120 => format!("{secs} s"),
        120..7200 => format!("{} min", secs / 60),
        _ => format!("{} h", secs / 3600),
    }
}

impl VaultStatus {
    /// From a manifest (mounted or not).
    pub fn from_manifest(m: &Manifest, replicas: usize) -> Result<VaultStatus, FsError> {
        let rx = m.read()?;
        let crate::adapters::redb::manifest::Summary { inodes, uploads, chunks } = rx.summary()?;
        let mut s =
            VaultStatus { inodes, replicas, staged_files: rx.staged()?.len() as u64, ..Default::default() };
        let queue: HashSet<Addr> = rx.uploads(usize::MAX)?.into_iter().collect();
        s.queued = uploads;
        s.queued_bytes = chunks.iter().filter(|(a, _)| queue.contains(a)).map(|(_, c)| c.ct_len as u64).sum();
        let snapshots = rx.blobs(false)?;
        s.snapshots = snapshots.len() as u64;
        s.last_snapshot_ms = snapshots.iter().map(|b| b.info.taken_ms).max();
        let off = rx.written_off()?;
        s.unreferenced = chunks.iter().filter(|(_, c)| c.refs == 0).count() as u64;
        if let Some(at) = rx.meta("last_audit_ms")? {
            let checked = rx.meta("last_audit_checked")?.unwrap_or(0);
            s.last_audit = Some((at, checked, rx.meta("last_audit_bad")?.unwrap_or(0)));
        }
        for (_, c) in chunks.iter().filter(|(_, c)| c.refs > 0) {
            s.chunks += 1;
            s.bytes += c.ct_len.saturating_sub(16) as u64;
            let healthy = c.replicas.iter().filter(|r| is_healthy(r, &|n: &NodeId| off.contains(n))).count();
            match c.state {
                ChunkState::Pending => s.pending += 1,
                ChunkState::Durable if healthy >= replicas => s.durable += 1,
                ChunkState::Durable => s.degraded += 1,
            }
            for r in &c.replicas {
                *s.per_node.entry(r.node).or_default() += 1;
            }
        }
        Ok(s)
    }

    /// Reads the status of an unmounted vault in `home`.
    /// Uses the replica count the vault was last mounted with.
    pub fn offline(home: &Path, local: &dyn LocalDisk) -> Result<VaultStatus, FsError> {
        let path = home.join("manifest.redb");
        if !path.exists() {
            return Err(FsError::NotFound);
        }
        // SAFETY: getuid/getgid have no preconditions.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let m = Manifest::open(&path, uid, gid)?;
        let rx = m.read()?;
        let (replicas, capacity) = (rx.meta("replicas")?.unwrap_or(3) as usize, rx.meta("disk_cache_bytes")?);
        drop(rx);
        let mut s = Self::from_manifest(&m, replicas)?;
        s.disk_cache = local.measure_cache(&home.join("chunks"), capacity.unwrap_or(0));
        Ok(s)
    }

    /// JSON form.
    pub fn to_json(&self) -> String {
        let nodes: Vec<String> = self.per_node.iter().map(|(n, c)| format!("\"{n}\":{c}")).collect();
        let audit = match self.last_audit {
            Some((at, checked, bad)) => {
                format!("{{\"at_ms\":{at},\"checked\":{checked},\"not_passed\":{bad}}}")
            }
            None => "null".to_string(),
        };
        let last_snapshot = self.last_snapshot_ms.map_or("null".to_string(), |t| t.to_string());
        let fabric = self.fabric.as_ref().map_or("null".to_string(), FabricLink::to_json);
        let stale = self
            .stale_mount
            .as_ref()
            .map_or("null".to_string(), |p| format!("{:?}", p.display().to_string()));
        format!(
            "{{\"mounted\":{},\"fabric\":{fabric},\"stale_mount\":{stale},\"inodes\":{},\"chunks\":{},\"bytes\":{},\"pending\":{},\"durable\":{},\"degraded\":{},\"unreferenced\":{},\"staged_files\":{},\"queued\":{},\"queued_bytes\":{},\"snapshots\":{},\"last_snapshot_ms\":{last_snapshot},\"replicas\":{},\"per_node\":{{{}}},\"last_audit\":{audit},\"disk_cache_bytes\":{},\"disk_cache_capacity\":{}}}",
            self.mounted, self.inodes, self.chunks, self.bytes, self.pending, self.durable, self.degraded, self.unreferenced,
            self.staged_files, self.queued, self.queued_bytes, self.snapshots, self.replicas, nodes.join(","),
            self.disk_cache.bytes, self.disk_cache.capacity
        )
    }

    /// The human form's first lines: whether it is mounted, and its broker connection.
    fn render_mount(&self) -> String {
        let mut out = match (&self.stale_mount, self.mounted) {
            (_, true) => "mounted       yes\n".to_string(),
            (Some(mp), false) => format!(
                "mounted       no: {mp} is a stale mount left by a quloud mount that died; clear it with \
                 `fusermount3 -u {mp}` (the next `quloud mount` there also clears it)\n",
                mp = mp.display()
            ),
            (None, false) => "mounted       no\n".to_string(),
        };
        if let Some(link) = &self.fabric {
            out += &format!("fabric        {}\n", link.render());
        }
        out
    }

    /// Human form.
    pub fn render(&self) -> String {
        let audit = match self.last_audit {
            Some((at, checked, bad)) => {
                let ago = crate::domain::unix_ms(std::time::SystemTime::now()).saturating_sub(at) / 1000;
                format!("{ago} s ago: {checked} replicas challenged, {bad} did not pass")
            }
            None => "never".to_string(),
        };
        let mut out = self.render_mount();
        out += &format!(
            "inodes        {}\nchunks        {} ({} of unique data)\n  pending     {}\n  durable     {} (≥ {} healthy replicas)\n  degraded    {}\n  unused      {} (referenced by no file; deleted from nodes after the grace period)\nstaged files  {}\nupload queue  {} ({})\nsnapshots     {}\nlast audit    {audit}\ndisk cache    {} of {} ({} kept locally)\n",
            self.inodes,
            self.chunks,
            crate::domain::size::format_size(self.bytes),
            self.pending,
            self.durable,
            self.replicas,
            self.degraded,
            self.unreferenced,
            self.staged_files,
            chunk_count(self.queued),
            crate::domain::size::format_size(self.queued_bytes),
            self.snapshots,
            crate::domain::size::format_size(self.disk_cache.bytes),
            crate::domain::size::format_size(self.disk_cache.capacity),
            chunk_count(self.disk_cache.chunks)
        );
        if !self.per_node.is_empty() {
            out.push_str("replicas per node\n");
            for (n, c) in &self.per_node {
                out.push_str(&format!("  {n}  {c}\n"));
            }
        }
        out
    }
}

impl<F: ChunkFabric + 'static> Vault<F> {
    /// The live status of a mounted vault.
    ///
    /// The staged files are counted *before* the manifest snapshot is taken: the chunker commits
    /// a file's chunks to the manifest before it clears the file's staging state, so a file no
    /// longer seen as staged is in the snapshot (the other order could report a just-chunked file
    /// as neither staged nor chunked).
    pub fn status(&self) -> Result<VaultStatus, FsError> {
        let staged = Self::lock(&self.writer.files).values().filter(|f| f.staging.is_some()).count() as u64;
        let mut s = VaultStatus::from_manifest(&self.m, self.opts.replicas)?;
        s.staged_files = staged;
        s.disk_cache = self.disk_cache_usage();
        s.mounted = true;
        Ok(s)
    }

    /// The fabric's broker connection; `None` until the vault has had a fabric (it never
    /// connected since it was loaded).
    pub fn fabric_link(&self) -> Option<crate::ports::fabric::Link> {
        self.fabric.borrow().as_ref().map(|f| f.link())
    }
}
