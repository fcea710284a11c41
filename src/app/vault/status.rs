//! What `quloud status` reports about a vault.

use super::Vault;
use crate::app::report::{ChurnStatus, VaultStatus};
use crate::domain::churn::{ChurnPolicy, Fleet, NodeState};
use crate::domain::fs::{ChunkState, FsError};
use crate::domain::ids::Addr;
use crate::ports::fabric::ChunkFabric;
use crate::ports::local_disk::LocalDisk;
use crate::ports::manifest::{Manifest, ManifestFiles, Summary};
use std::collections::HashSet;
use std::path::Path;

/// Manifest meta key: when this home's manifest was restored from a snapshot (Unix ms).
pub const RESTORED_MS: &str = "restored_ms";

impl VaultStatus {
    /// From a manifest (mounted or not), judging node presence by `churn` at `now_ms`.
    pub fn from_manifest(
        m: &Manifest,
        replicas: usize,
        churn: &ChurnPolicy,
        now_ms: u64,
    ) -> Result<VaultStatus, FsError> {
        let rx = m.read()?;
        let Summary { inodes, files, file_bytes, uploads, chunks } = rx.summary()?;
        let staged_files = rx.staged()?.len() as u64;
        let mut s = VaultStatus { inodes, files, file_bytes, replicas, staged_files, ..Default::default() };
        let queue: HashSet<Addr> = rx.uploads(usize::MAX)?.into_iter().collect();
        s.queued = uploads;
        s.queued_bytes = chunks.iter().filter(|(a, _)| queue.contains(a)).map(|(_, c)| c.ct_len as u64).sum();
        let snapshots = rx.blobs(false)?;
        s.snapshots = snapshots.len() as u64;
        s.last_snapshot_ms = snapshots.iter().map(|b| b.info.taken_ms).max();
        let fleet = Fleet::new(churn, &rx.nodes()?, now_ms);
        s.churn = churn_status(&fleet);
        s.unreferenced = chunks.iter().filter(|(_, c)| c.refs == 0).count() as u64;
        // "Last audit" is this home's: an audit the snapshot brought along from the machine it
        // was taken on does not count.
        let restored = rx.meta(RESTORED_MS)?;
        match rx.meta("last_audit_ms")? {
            Some(at) if restored.is_none_or(|r| at > r) => {
                let checked = rx.meta("last_audit_checked")?.unwrap_or(0);
                s.last_audit = Some((at, checked, rx.meta("last_audit_bad")?.unwrap_or(0)));
            }
            _ => s.restored_ms = restored,
        }
        for (_, c) in chunks.iter().filter(|(_, c)| c.refs > 0) {
            s.chunks += 1;
            s.bytes += c.ct_len.saturating_sub(16) as u64;
            let verdict = fleet.judge(churn, c, replicas);
            let waits =
                verdict.counted.len() < replicas && verdict.counted.len() + verdict.waiting >= replicas;
            match c.state {
                // Stored, but on nodes not vetted yet: pending until their vetting audit.
                _ if waits && !c.replicas.is_empty() => {
                    s.pending += 1;
                    s.churn.vetting_chunks += 1;
                }
                ChunkState::Pending => s.pending += 1,
                ChunkState::Durable if verdict.counted.len() >= replicas => {
                    s.durable += 1;
                    s.churn.in_grace += verdict.leans_on_grace(replicas) as u64;
                }
                // Restored pieces of a snapshot: their replicas are learned by the first audit.
                ChunkState::Durable if c.replicas.is_empty() && s.restored_ms.is_some() => s.unverified += 1,
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
    pub fn offline(
        home: &Path,
        local: &dyn LocalDisk,
        files: &dyn ManifestFiles,
    ) -> Result<VaultStatus, FsError> {
        let path = home.join("manifest.redb");
        if !path.exists() {
            return Err(FsError::NotFound);
        }
        // SAFETY: getuid/getgid have no preconditions.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let m = files.open(&path, uid, gid)?;
        let rx = m.read()?;
        let (replicas, capacity) = (rx.meta("replicas")?.unwrap_or(3) as usize, rx.meta("disk_cache_bytes")?);
        drop(rx);
        let churn = churn_policy(&rx_meta(&m)?);
        let now = crate::domain::unix_ms(std::time::SystemTime::now());
        let mut s = Self::from_manifest(&m, replicas, &churn, now)?;
        s.disk_cache = local.measure_cache(&home.join("chunks"), capacity.unwrap_or(0));
        s.home_full = local.home_full(home);
        Ok(s)
    }
}

/// Manifest meta keys: the churn policy the vault was last mounted with (ms), so the status of
/// an unmounted vault judges nodes as its mount did.
pub const CHURN_META: [&str; 4] = ["offline_after_ms", "offline_grace_ms", "dead_after_ms", "vet_within_ms"];

fn rx_meta(m: &Manifest) -> Result<[Option<u64>; 4], FsError> {
    let rx = m.read()?;
    Ok([rx.meta(CHURN_META[0])?, rx.meta(CHURN_META[1])?, rx.meta(CHURN_META[2])?, rx.meta(CHURN_META[3])?])
}

/// The churn policy from the meta values (defaults where missing).
fn churn_policy(meta: &[Option<u64>; 4]) -> ChurnPolicy {
    let d = ChurnPolicy::default();
    let pick =
        |v: Option<u64>, or: std::time::Duration| v.map(std::time::Duration::from_millis).unwrap_or(or);
    ChurnPolicy {
        offline_after: pick(meta[0], d.offline_after),
        offline_grace: pick(meta[1], d.offline_grace),
        dead_after: pick(meta[2], d.dead_after),
        vet_within: pick(meta[3], d.vet_within),
    }
}

/// Nodes by presence, and whether repair is paused.
fn churn_status(fleet: &Fleet) -> ChurnStatus {
    ChurnStatus {
        online: fleet.count(NodeState::Online) as u64,
        missing: fleet.count(NodeState::Missing) as u64,
        offline: fleet.count(NodeState::Offline) as u64,
        lapsed: fleet.count(NodeState::Lapsed) as u64,
        written_off: fleet.count(NodeState::Dead) as u64,
        in_grace: 0,
        repair_paused: fleet.link_down.map(|(g, k)| (g as u64, k as u64)),
        vetting_chunks: 0,
        failed_vetting: fleet.failed_vetting().iter().map(|n| n.to_string()).collect(),
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
        let mut s = VaultStatus::from_manifest(
            &self.m,
            self.opts.replicas,
            &self.opts.health.churn,
            self.clock.now_ms(),
        )?;
        s.staged_files = staged;
        s.disk_cache = self.disk_cache_usage();
        s.mounted = true;
        s.home_full = self.space.recheck();
        s.writer = Some(self.writer_state());
        s.placement = self.placement_status();
        s.clocks = self.fabric.borrow().as_ref().map(|f| f.clocks().into()).unwrap_or_default();
        Ok(s)
    }

    /// The fabric's broker connection; `None` until the vault has had a fabric (it never
    /// connected since it was loaded).
    pub fn fabric_link(&self) -> Option<crate::ports::fabric::Link> {
        self.fabric.borrow().as_ref().map(|f| f.link())
    }
}
