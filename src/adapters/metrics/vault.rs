//! The mount's metrics page and health check: the figures of `quloud status` (`VaultStatus`,
//! cached between scrapes), the pipeline, maintenance and read-path counters.
//!
//! A scrape never takes a manifest write lock (redb readers do not block the writer) and never
//! runs on a FUSE thread. The manifest scan behind `VaultStatus` visits every chunk record, so
//! it is reused for max(1 s, 10 × the last scan's duration): a vault whose scan takes 200 ms is
//! scanned at most every 2 s however often it is scraped.

use super::text::{process_families, Exposition, Kind};
use super::{now_ms, Exporter};
use crate::app::metrics::HistogramSnapshot;
use crate::app::vault::HealthStats;
use crate::app::vault::{CacheUsage, DiskCacheUsage, PipelineStats, ReadStats, Vault, VaultStatus};
use crate::ports::fabric::ChunkFabric;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The last manifest scan.
struct Scan {
    status: Result<VaultStatus, String>,
    at: Instant,
    took: Duration,
}

/// Exports one mounted vault.
pub struct VaultExporter<F> {
    vault: Arc<Vault<F>>,
    pipeline: Arc<PipelineStats>,
    started_ms: u64,
    scan: Mutex<Option<Scan>>,
}

impl<F: ChunkFabric + 'static> VaultExporter<F> {
    /// An exporter for `vault` and its pipeline's counters, mounted at `started_ms`.
    pub fn new(vault: Arc<Vault<F>>, pipeline: Arc<PipelineStats>, started_ms: u64) -> Self {
        VaultExporter { vault, pipeline, started_ms, scan: Mutex::new(None) }
    }

    /// The vault's status, from the cache when fresh enough; and how long its scan took.
    fn status(&self) -> (Result<VaultStatus, String>, Duration) {
        let mut scan = self.scan.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = scan.as_ref().is_some_and(|s| s.at.elapsed() < (s.took * 10).max(Duration::from_secs(1)));
        if !fresh {
            let at = Instant::now();
            let status = self.vault.status().map_err(|e| e.to_string());
            *scan = Some(Scan { status, at, took: at.elapsed() });
        }
        match scan.as_ref() {
            Some(s) => (s.status.clone(), s.took),
            None => (Err("no scan".into()), Duration::ZERO),
        }
    }
}

impl<F: ChunkFabric + 'static> Exporter for VaultExporter<F> {
    fn metrics(&self) -> String {
        let (status, took) = self.status();
        let live = Live {
            connected: self.vault.has_fabric(),
            cache: self.vault.cache_usage(),
            disk: self.vault.disk_cache_usage(),
            read: &self.vault.read_stats,
            health: &self.vault.health_stats,
            pipeline: &self.pipeline,
        };
        if let Err(e) = &status {
            tracing::warn!(error = %e, "metrics: cannot read the vault's status");
        }
        render(status.ok().as_ref(), took, &live, self.started_ms, now_ms())
    }

    fn health(&self) -> Result<(), String> {
        self.vault.manifest_readable()?;
        if !self.vault.has_fabric() {
            return Err("not connected to the fabric: serving cached and staged data, uploads wait".into());
        }
        Ok(())
    }
}

/// The counters read at scrape time.
pub struct Live<'a> {
    /// Whether a fabric is connected.
    pub connected: bool,
    /// The read cache's occupancy.
    pub cache: CacheUsage,
    /// The disk cache's occupancy.
    pub disk: DiskCacheUsage,
    /// Read-path counters.
    pub read: &'a ReadStats,
    /// Maintenance counters.
    pub health: &'a HealthStats,
    /// Pipeline counters.
    pub pipeline: &'a PipelineStats,
}

fn load(c: &AtomicU64) -> f64 {
    c.load(Ordering::Relaxed) as f64
}

/// The mount's page. `status` is `None` when the manifest could not be scanned.
pub fn render(
    status: Option<&VaultStatus>,
    scan_took: Duration,
    live: &Live<'_>,
    started_ms: u64,
    now: u64,
) -> String {
    let mut p = Exposition::new();
    process_families(&mut p, "mount", started_ms, now);
    p.single(
        "quloud_vault_fabric_connected",
        Kind::Gauge,
        "1 once the mount is connected to the fabric.",
        f64::from(u8::from(live.connected)),
    );
    if let Some(s) = status {
        status_families(&mut p, s);
    }
    p.single(
        "quloud_vault_status_scan_seconds",
        Kind::Gauge,
        "How long the last manifest scan behind the vault_* gauges took.",
        scan_took.as_secs_f64(),
    );
    let (c, d, r, pl, h) = (&live.cache, &live.disk, live.read, live.pipeline, live.health);
    let (checked, failed) = (load(&h.checked), load(&h.failed));
    let singles = [
        ("quloud_vault_cache_chunks", Kind::Gauge, "Decrypted chunks in the read cache.", c.chunks as f64),
        ("quloud_vault_cache_bytes", Kind::Gauge, "Plaintext bytes in the read cache.", c.bytes as f64),
        (
            "quloud_vault_cache_capacity_bytes",
            Kind::Gauge,
            "The read cache's budget (--cache-size).",
            c.capacity as f64,
        ),
        (
            "quloud_vault_disk_cache_bytes",
            Kind::Gauge,
            "Sealed chunk bytes kept on local disk (the disk cache).",
            d.bytes as f64,
        ),
        (
            "quloud_vault_disk_cache_capacity_bytes",
            Kind::Gauge,
            "The disk cache's budget (--disk-cache-size).",
            d.capacity as f64,
        ),
        (
            "quloud_vault_disk_cache_hits_total",
            Kind::Counter,
            "Chunk loads served from the disk cache instead of the fabric.",
            load(&r.disk_hits),
        ),
        ("quloud_vault_cache_hits_total", Kind::Counter, "Chunk reads served from the read cache.", load(&r.cache_hits)),
        (
            "quloud_vault_cache_misses_total",
            Kind::Counter,
            "Chunk reads that loaded the chunk from the outbox, the disk cache or the fabric (read-ahead included).",
            load(&r.cache_misses),
        ),
        (
            "quloud_vault_fabric_fetch_failures_total",
            Kind::Counter,
            "Fabric fetches that failed (timed out, no node returned the chunk, broker error).",
            load(&r.fetch_failures),
        ),
        (
            "quloud_vault_files_chunked_total",
            Kind::Counter,
            "Files chunked and sealed into the outbox.",
            load(&pl.files_chunked),
        ),
        (
            "quloud_vault_chunks_uploaded_total",
            Kind::Counter,
            "Chunks stored with quorum by the uploader.",
            load(&pl.chunks_uploaded),
        ),
        (
            "quloud_vault_upload_failures_total",
            Kind::Counter,
            "Chunk uploads that failed and will be retried.",
            load(&pl.upload_failures),
        ),
        (
            "quloud_vault_chunks_healed_total",
            Kind::Counter,
            "Chunks brought back to N healthy replicas.",
            load(&h.healed),
        ),
        ("quloud_vault_leases_renewed_total", Kind::Counter, "Replica leases renewed.", load(&h.renewed)),
        (
            "quloud_vault_chunks_collected_total",
            Kind::Counter,
            "Unreferenced chunks deleted from their replicas (garbage collection).",
            load(&h.collected),
        ),
    ];
    for (name, kind, help, value) in singles {
        p.single(name, kind, help, value);
    }
    p.family(
        "quloud_vault_fabric_fetch_seconds",
        Kind::Histogram,
        "Time to fetch one chunk from the fabric (with a connected fabric), successful or not.",
    );
    let fetches: HistogramSnapshot = r.fetches.snapshot();
    p.histogram("quloud_vault_fabric_fetch_seconds", &[], &fetches);
    p.family("quloud_vault_audits_total", Kind::Counter, "Replica challenges sent by this mount, by result.")
        .sample("quloud_vault_audits_total", &[("result", "passed")], (checked - failed).max(0.0))
        .sample("quloud_vault_audits_total", &[("result", "failed")], failed);
    p.finish()
}

fn status_families(p: &mut Exposition, s: &VaultStatus) {
    p.single(
        "quloud_vault_upload_queue_chunks",
        Kind::Gauge,
        "Chunks waiting in the upload queue.",
        s.queued as f64,
    );
    p.single(
        "quloud_vault_upload_queue_bytes",
        Kind::Gauge,
        "Ciphertext bytes waiting in the upload queue.",
        s.queued_bytes as f64,
    );
    p.family("quloud_vault_chunks", Kind::Gauge, "Chunks by state: pending (not yet quorum-durable), durable (N healthy replicas), degraded (fewer), unreferenced (awaiting garbage collection).");
    for (state, v) in [
        ("pending", s.pending),
        ("durable", s.durable),
        ("degraded", s.degraded),
        ("unreferenced", s.unreferenced),
    ] {
        p.sample("quloud_vault_chunks", &[("state", state)], v as f64);
    }
    p.single(
        "quloud_vault_data_bytes",
        Kind::Gauge,
        "Plaintext bytes of the distinct chunks files reference (after dedup).",
        s.bytes as f64,
    );
    p.single("quloud_vault_inodes", Kind::Gauge, "Inodes (files, directories, links).", s.inodes as f64);
    p.single(
        "quloud_vault_staged_files",
        Kind::Gauge,
        "Files whose newest content is only in local staging.",
        s.staged_files as f64,
    );
    p.single(
        "quloud_vault_replicas_wanted",
        Kind::Gauge,
        "Replicas wanted per chunk (N).",
        s.replicas as f64,
    );
    p.single(
        "quloud_vault_snapshots",
        Kind::Gauge,
        "Manifest snapshots retained in the fabric.",
        s.snapshots as f64,
    );
    if let Some(t) = s.last_snapshot_ms {
        p.single(
            "quloud_vault_last_snapshot_timestamp_seconds",
            Kind::Gauge,
            "When the newest retained snapshot was taken, Unix time.",
            t as f64 / 1000.0,
        );
    }
    if let Some((at, _, _)) = s.last_audit {
        p.single(
            "quloud_vault_last_audit_timestamp_seconds",
            Kind::Gauge,
            "When the last audit pass ended, Unix time.",
            at as f64 / 1000.0,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mount_page_has_status_cache_and_counters() {
        let (read, health, pipeline) =
            (ReadStats::default(), HealthStats::default(), PipelineStats::default());
        read.cache_hits.fetch_add(5, Ordering::Relaxed);
        read.fetches.observe(Duration::from_millis(20));
        health.checked.fetch_add(4, Ordering::Relaxed);
        health.failed.fetch_add(1, Ordering::Relaxed);
        let live = Live {
            connected: true,
            cache: CacheUsage { chunks: 2, bytes: 1000, capacity: 4000 },
            disk: DiskCacheUsage { chunks: 1, bytes: 600, capacity: 9000 },
            read: &read,
            health: &health,
            pipeline: &pipeline,
        };
        let status = VaultStatus {
            queued: 3,
            queued_bytes: 300,
            durable: 7,
            last_snapshot_ms: Some(5_000),
            ..Default::default()
        };
        let text = render(Some(&status), Duration::from_millis(2), &live, 0, 10_000);
        for want in [
            "quloud_vault_upload_queue_chunks 3\n",
            "quloud_vault_upload_queue_bytes 300\n",
            "quloud_vault_chunks{state=\"durable\"} 7\n",
            "quloud_vault_cache_hits_total 5\n",
            "quloud_vault_cache_bytes 1000\n",
            "quloud_vault_disk_cache_bytes 600\n",
            "quloud_vault_disk_cache_capacity_bytes 9000\n",
            "quloud_vault_fabric_fetch_seconds_bucket{le=\"0.025\"} 1\n",
            "quloud_vault_fabric_fetch_seconds_count 1\n",
            "quloud_vault_audits_total{result=\"passed\"} 3\n",
            "quloud_vault_audits_total{result=\"failed\"} 1\n",
            "quloud_vault_last_snapshot_timestamp_seconds 5\n",
            "quloud_vault_fabric_connected 1\n",
            "quloud_build_info{version=",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert!(!text.contains("last_audit_timestamp"), "no audit yet, no timestamp");
        let without = render(None, Duration::ZERO, &live, 0, 10_000);
        assert!(!without.contains("quloud_vault_chunks{"), "no status, no status families");
        assert!(without.contains("quloud_vault_cache_hits_total 5\n"));
    }
}
