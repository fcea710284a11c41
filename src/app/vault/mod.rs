//! The filesystem service (docs/DESIGN.md §6): POSIX semantics over the manifest, the local staging
//! area and the fabric. It knows nothing of FUSE; `adapters::fuse` is a thin shell around it.
//!
//! [`Vault`] is a small façade over named parts, each in its own module with one job:
//!
//! - `namespace/`: names, attributes, links, symlinks, xattrs and directory listings, each
//!   change one manifest transaction;
//! - `writer/`: the staging area — open files and handles, writes, fsync, truncation;
//! - `reader/`: reads from staging, the memory cache, the local copies or the fabric, with
//!   read-ahead;
//! - `pipeline/`: the chunker seals closed files into the outbox, the uploader stores the outbox
//!   with quorum;
//! - `maintenance/`: one worker per background job (audit, heal, leases, gc, snapshots) and the
//!   loop that schedules them;
//! - `snapshot.rs`: manifest snapshots and shares in the fabric;
//! - `houses.rs`: the verified houses of the fabric's nodes, by which replicas count.
//!
//! A write goes FUSE → `writer` (staging file) → at the last close `pipeline` (chunk, seal, outbox,
//! upload) → manifest. A read goes FUSE → `reader` → staging, or cache → outbox/disk cache →
//! fabric.

mod claims;
mod fence;
mod houses;
mod lineage;
mod maintenance;
mod metrics;
mod namespace;
mod nodes;
mod pipeline;
mod reader;
mod snapshot;
mod status;
pub use status::RESTORED_MS;
mod types;
mod vetting;
mod writer;

pub use crate::domain::fs::FsError;
use crate::domain::keys::VaultKeys;
use crate::ports::clock::Clock;
use crate::ports::fabric::ChunkFabric;
use crate::ports::local_disk::{HomeSpace, LocalDisk, LocalStores};
/// The manifest, named here only: the rest of the vault takes it from this module.
use crate::ports::manifest::{Manifest, Rx, Tx};
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

pub use crate::app::report::{AuditReport, DiskCacheUsage, FabricLink, VaultStatus};
pub use fence::Claim;
pub use houses::{run_houses, HOUSES_EVERY};
pub use maintenance::{
    run_maintenance, run_writer_watch, AuditWorker, GcWorker, HealWorker, HealthOptions, HealthStats,
    LeaseWorker, Pace, Replicas, Scope, SnapshotWorker, VetReport, VetWorker, WriterWorker,
};
pub use metrics::{CacheUsage, ReadStats};
pub use namespace::DirFh;
pub use nodes::nodes_view;
pub use pipeline::{run_pipeline, PipelineStats};
pub use reader::cache::ReadData;
pub use snapshot::{
    fetch_blob, fetch_share, find_root, materialize_share, materialize_snapshot, ManifestFile, RootFound,
    SnapshotOutcome,
};
pub use types::{Caller, DirEntry, Fh, SetAttr, StatFs, TimeSet, VaultOptions};

/// The filesystem service of one vault: shared handles (manifest, keys, fabric, clock) and its
/// parts.
pub struct Vault<F> {
    m: Manifest,
    keys: Arc<VaultKeys>,
    fabric: watch::Sender<Option<Arc<F>>>,
    opts: VaultOptions,
    /// Wall-clock time for leases, grace periods, audit and snapshot schedules.
    clock: Arc<dyn Clock>,
    /// Whose secrets open the chunks: the owner's keys, or a share's per-chunk secrets.
    secrets: Secrets,
    namespace: namespace::Namespace,
    writer: writer::Writer,
    reader: reader::Reader<F>,
    pipeline: pipeline::Queues,
    /// One snapshot at a time.
    snapshotting: tokio::sync::Mutex<()>,
    /// Free space on the home: whether new data is refused (docs/SEMANTICS.md, full disk).
    space: Arc<dyn HomeSpace>,
    /// Whether this home may write (the writer lease).
    fence: fence::Fence,
    /// The houses of the fabric's nodes, when the vault lives in a house.
    houses: houses::Houses,
    /// Maintenance counters.
    pub health_stats: HealthStats,
    /// Read-path counters (cache, fabric fetches).
    pub read_stats: ReadStats,
}

/// Where a vault's chunk secrets come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Secrets {
    /// Derived from the owner's master key.
    Owner,
    /// Listed per chunk in a share's manifest (a recipient mounting a capability).
    Shared,
}

impl<F: ChunkFabric + 'static> Vault<F> {
    /// Opens the vault whose state lives in `home` (staging, outbox, disk cache) on its manifest
    /// `m` (opened by the caller), its local stores through `local`.
    pub fn load(
        home: &Path,
        m: Manifest,
        keys: Arc<VaultKeys>,
        opts: VaultOptions,
        local: &dyn LocalDisk,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, FsError> {
        let staging = home.join("staging");
        if let Some(delay) = opts.group_commit {
            m.group_commits(delay)?;
        }
        m.write_durable(|tx| {
            tx.set_meta("replicas", opts.replicas as u64)?;
            let churn = &opts.health.churn;
            for (key, d) in status::CHURN_META.iter().zip([
                churn.offline_after,
                churn.offline_grace,
                churn.dead_after,
                churn.vet_within,
            ]) {
                tx.set_meta(key, d.as_millis() as u64)?;
            }
            tx.set_meta("disk_cache_bytes", opts.disk_cache_bytes)
        })?;
        let stores =
            local.open(&staging, &home.join("outbox"), &home.join("chunks"), opts.disk_cache_bytes)?;
        let epoch = m.read()?.meta(fence::WRITER_EPOCH)?.unwrap_or(0);
        let vault = Self::build(m, keys, opts, stores, Secrets::Owner, clock);
        vault.set_writer(crate::app::report::WriterState::Unchecked { epoch });
        vault.recover()?;
        Ok(vault)
    }

    /// Opens a snapshot's or a share's manifest `m` (the file `manifest`, opened read-only by the
    /// caller): every change fails with EROFS, and nothing is staged, uploaded or maintained.
    pub fn load_read_only(
        m: Manifest,
        manifest: &Path,
        keys: Arc<VaultKeys>,
        opts: VaultOptions,
        secrets: Secrets,
        local: &dyn LocalDisk,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, FsError> {
        let none = manifest.with_extension("no-local-data");
        let stores = local.absent(&none);
        Ok(Self::build(m, keys, opts, stores, secrets, clock))
    }

    /// Whether this vault refuses changes.
    pub fn is_read_only(&self) -> bool {
        self.m.is_read_only()
    }

    /// The vault over its parts.
    fn build(
        m: Manifest,
        keys: Arc<VaultKeys>,
        opts: VaultOptions,
        stores: LocalStores,
        secrets: Secrets,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let fabric = watch::channel(None).0;
        Vault {
            m,
            keys,
            namespace: namespace::Namespace::default(),
            writer: writer::Writer::new(stores.staging),
            reader: reader::Reader::new(opts.cache_bytes, stores.disk_cache, fabric.subscribe()),
            fabric,
            pipeline: pipeline::Queues::new(stores.outbox),
            opts,
            clock,
            secrets,
            snapshotting: tokio::sync::Mutex::new(()),
            space: stores.space,
            fence: fence::Fence::new(0),
            houses: houses::Houses::default(),
            health_stats: HealthStats::default(),
            read_stats: ReadStats::default(),
        }
    }

    /// Hands the vault a connected fabric (it starts without one, e.g. when offline).
    pub fn set_fabric(&self, fabric: Arc<F>) {
        self.fabric.send_replace(Some(fabric));
        self.reader.fabric_back();
        self.pipeline.upload_work.notify_one();
    }

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes namespace changes durable.
    pub fn fsyncdir(&self) -> Result<(), FsError> {
        self.m.sync()
    }

    /// Makes every manifest change so far durable (called periodically and at unmount).
    pub fn checkpoint(&self) -> Result<(), FsError> {
        if self.m.is_read_only() {
            return Ok(());
        }
        self.sync_partial_ranges()?;
        let retiring = std::mem::take(&mut *Self::lock(&self.writer.retiring));
        if let Err(e) = self.m.checkpoint() {
            Self::lock(&self.writer.retiring).extend(retiring);
            return Err(e);
        }
        for (ino, open) in retiring {
            self.writer.staging.retire(crate::ports::local_disk::StagedName::Staged(ino), open);
        }
        Ok(())
    }

    /// Syncs the staging copies of files staged in part that changed since their ranges were
    /// recorded, then records them: the checkpoint then keeps their writes as it keeps those of
    /// files staged whole (docs/DESIGN.md §12).
    fn sync_partial_ranges(&self) -> Result<(), FsError> {
        let changed: Vec<_> = Self::lock(&self.writer.files)
            .iter()
            .filter(|(_, f)| f.generation > f.partial_synced)
            .filter_map(|(&ino, f)| Some((ino, f.staging.clone()?, f.partial.clone()?, f.generation)))
            .collect();
        for (ino, file, part, generation) in changed {
            file.sync_data()?;
            self.persist_attrs(ino, Some((part, generation)))?;
        }
        Ok(())
    }

    /// Per-node view for `quloud nodes`: the owner's record and how many replicas it holds.
    pub fn nodes(
        &self,
    ) -> Result<Vec<(crate::domain::ids::NodeId, crate::domain::health::NodeRecord, u64)>, FsError> {
        nodes_view(&self.m)
    }
}
