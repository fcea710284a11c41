//! The mount's metrics page and health check: the figures of `quloud status` (`VaultStatus`,
//! cached between scrapes), the pipeline, maintenance and read-path counters.
//!
//! A scrape never takes a manifest write lock (redb readers do not block the writer) and never
//! runs on a FUSE thread. The manifest scan behind `VaultStatus` visits every chunk record, so
//! it is reused for max(1 s, 10 × the last scan's duration): a vault whose scan takes 200 ms is
//! scanned at most every 2 s however often it is scraped.

use super::page::{self, process_families, Buckets, Page};
use super::{now_ms, Exporter, MetricsError};
use crate::app::vault::HealthStats;
use crate::app::vault::{CacheUsage, DiskCacheUsage, PipelineStats, ReadStats, Vault, VaultStatus};
use crate::ports::fabric::ChunkFabric;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use std::fmt;
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
    fn metrics(&self) -> Result<String, MetricsError> {
        let (status, took) = self.status();
        if let Err(e) = &status {
            tracing::warn!(error = %e, "metrics: cannot read the vault's status");
        }
        let (vault, pipeline, started_ms, status) =
            (self.vault.clone(), self.pipeline.clone(), self.started_ms, status.ok());
        Ok(page::render(move |p| {
            let live = Live {
                connected: vault.has_fabric(),
                cache: vault.cache_usage(),
                disk: vault.disk_cache_usage(),
                read: &vault.read_stats,
                health: &vault.health_stats,
                pipeline: &pipeline,
            };
            process_families(p, "mount", started_ms, now_ms())?;
            vault_families(p, status.as_ref(), took, &live)
        })?)
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

fn load(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// The mount's families. `status` is `None` when the manifest could not be scanned.
pub fn vault_families(
    p: &mut Page,
    status: Option<&VaultStatus>,
    scan_took: Duration,
    live: &Live<'_>,
) -> fmt::Result {
    p.gauge(
        "quloud_vault_fabric_connected",
        "1 once the mount is connected to the fabric.",
        u32::from(live.connected),
    )?;
    if let Some(s) = status {
        status_families(p, s)?;
    }
    p.gauge(
        "quloud_vault_status_scan_seconds",
        "How long the last manifest scan behind the vault_* gauges took.",
        scan_took.as_secs_f64(),
    )?;
    let (c, d, r) = (&live.cache, &live.disk, live.read);
    p.gauge("quloud_vault_cache_chunks", "Decrypted chunks in the read cache.", c.chunks)?;
    p.gauge("quloud_vault_cache_bytes", "Plaintext bytes in the read cache.", c.bytes)?;
    p.gauge("quloud_vault_cache_capacity_bytes", "The read cache's budget (--cache-size).", c.capacity)?;
    p.gauge(
        "quloud_vault_disk_cache_bytes",
        "Sealed chunk bytes kept on local disk (the disk cache).",
        d.bytes,
    )?;
    p.gauge(
        "quloud_vault_disk_cache_capacity_bytes",
        "The disk cache's budget (--disk-cache-size).",
        d.capacity,
    )?;
    p.counter(
        "quloud_vault_disk_cache_hits_total",
        "Chunk loads served from the disk cache instead of the fabric.",
        load(&r.disk_hits),
    )?;
    p.counter(
        "quloud_vault_cache_hits_total",
        "Chunk reads served from the read cache.",
        load(&r.cache_hits),
    )?;
    p.counter(
        "quloud_vault_cache_misses_total",
        "Chunk reads that loaded the chunk from the outbox, the disk cache or the fabric (read-ahead included).",
        load(&r.cache_misses),
    )?;
    p.counter(
        "quloud_vault_loaded_bytes_total",
        "Plaintext bytes of chunks loaded from the outbox, the disk cache or the fabric (reads, read-ahead and rechunking).",
        load(&r.loaded_bytes),
    )?;
    p.counter(
        "quloud_vault_staged_bytes_total",
        "Bytes written into staging copies of files.",
        load(&r.staged_bytes),
    )?;
    p.counter(
        "quloud_vault_fabric_fetch_failures_total",
        "Fabric fetches that failed (timed out, no node returned the chunk, broker error).",
        load(&r.fetch_failures),
    )?;
    p.counter(
        "quloud_vault_prefetch_requests_total",
        "Batched get requests that prefetched a directory's small files (many chunks each).",
        load(&r.prefetch_requests),
    )?;
    p.counter(
        "quloud_vault_prefetched_chunks_total",
        "Chunks brought into the read cache by prefetch requests.",
        load(&r.prefetched),
    )?;
    work_families(p, live.pipeline, live.health)?;
    p.single(
        "quloud_vault_fabric_fetch_seconds",
        "Time to fetch one chunk from the fabric (with a connected fabric), successful or not.",
        Buckets(r.fetches.snapshot()),
    )?;
    let (checked, failed) = (load(&live.health.checked), load(&live.health.failed));
    p.by(
        "quloud_vault_audits_total",
        "Replica challenges sent by this mount, by result.",
        "result",
        [
            ("passed", ConstCounter::new(checked.saturating_sub(failed))),
            ("failed", ConstCounter::new(failed)),
        ],
    )
}

/// The pipeline's and the maintenance jobs' counters.
fn work_families(p: &mut Page, pl: &PipelineStats, h: &HealthStats) -> fmt::Result {
    p.counter(
        "quloud_vault_files_chunked_total",
        "Files chunked and sealed into the outbox.",
        load(&pl.files_chunked),
    )?;
    p.counter(
        "quloud_vault_chunks_uploaded_total",
        "Chunks stored with quorum by the uploader.",
        load(&pl.chunks_uploaded),
    )?;
    p.counter(
        "quloud_vault_uploaded_bytes_total",
        "Ciphertext bytes of the chunks stored with quorum (each chunk once, whatever N is).",
        load(&pl.uploaded_bytes),
    )?;
    p.counter(
        "quloud_vault_upload_failures_total",
        "Chunk uploads that failed and will be retried.",
        load(&pl.upload_failures),
    )?;
    p.counter(
        "quloud_vault_chunks_healed_total",
        "Chunks brought back to N healthy replicas.",
        load(&h.healed),
    )?;
    p.counter("quloud_vault_leases_renewed_total", "Replica leases renewed.", load(&h.renewed))?;
    p.counter(
        "quloud_vault_chunks_collected_total",
        "Unreferenced chunks deleted from their replicas (garbage collection).",
        load(&h.collected),
    )
}

fn status_families(p: &mut Page, s: &VaultStatus) -> fmt::Result {
    p.gauge(
        "quloud_vault_nodes_clock_skewed",
        "Nodes whose clock is off by a second or more, as measured from their signed stale answers.",
        s.clocks.skewed.len() as u64,
    )?;
    p.counter(
        "quloud_vault_get_timeouts_total",
        "Gets aimed at one node that waited the whole reply timeout for it.",
        s.clocks.get_timeouts,
    )?;
    p.gauge("quloud_vault_upload_queue_chunks", "Chunks waiting in the upload queue.", s.queued)?;
    p.gauge(
        "quloud_vault_upload_queue_bytes",
        "Ciphertext bytes waiting in the upload queue.",
        s.queued_bytes,
    )?;
    p.by(
        "quloud_vault_chunks",
        "Chunks by state: pending (not yet quorum-durable), durable (N healthy replicas), degraded (fewer), unreferenced (awaiting garbage collection).",
        "state",
        [("pending", s.pending), ("durable", s.durable), ("degraded", s.degraded), ("unreferenced", s.unreferenced)]
            .map(|(state, n)| (state, ConstGauge::new(n))),
    )?;
    p.gauge(
        "quloud_vault_data_bytes",
        "Plaintext bytes of the distinct chunks files reference (after dedup).",
        s.bytes,
    )?;
    p.gauge("quloud_vault_inodes", "Inodes (files, directories, links).", s.inodes)?;
    p.gauge(
        "quloud_vault_staged_files",
        "Files whose newest content is only in local staging.",
        s.staged_files,
    )?;
    p.gauge("quloud_vault_replicas_wanted", "Replicas wanted per chunk (N).", s.replicas)?;
    p.gauge("quloud_vault_snapshots", "Manifest snapshots retained in the fabric.", s.snapshots)?;
    if let Some(t) = s.last_snapshot_ms {
        p.gauge(
            "quloud_vault_last_snapshot_timestamp_seconds",
            "When the newest retained snapshot was taken, Unix time.",
            t as f64 / 1000.0,
        )?;
    }
    if let Some((at, _, _)) = s.last_audit {
        p.gauge(
            "quloud_vault_last_audit_timestamp_seconds",
            "When the last audit pass ended, Unix time.",
            at as f64 / 1000.0,
        )?;
    }
    Ok(())
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
        let counters = Arc::new((read, health, pipeline));
        let scrape = |status: Option<VaultStatus>, took: Duration| {
            let counters = counters.clone();
            page::render(move |p| {
                let (read, health, pipeline) = &*counters;
                let live = Live {
                    connected: true,
                    cache: CacheUsage { chunks: 2, bytes: 1000, capacity: 4000 },
                    disk: DiskCacheUsage { chunks: 1, bytes: 600, capacity: 9000 },
                    read,
                    health,
                    pipeline,
                };
                process_families(p, "mount", 0, 10_000)?;
                vault_families(p, status.as_ref(), took, &live)
            })
            .unwrap()
        };
        let status = VaultStatus {
            queued: 3,
            queued_bytes: 300,
            durable: 7,
            last_snapshot_ms: Some(5_000),
            ..Default::default()
        };
        let text = scrape(Some(status), Duration::from_millis(2));
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
            "quloud_vault_last_snapshot_timestamp_seconds 5.0\n",
            "quloud_vault_fabric_connected 1\n",
            "quloud_build_info{version=",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert!(!text.contains("last_audit_timestamp"), "no audit yet, no timestamp");
        let without = scrape(None, Duration::ZERO);
        assert!(!without.contains("quloud_vault_chunks{"), "no status, no status families");
        assert!(without.contains("quloud_vault_cache_hits_total 5\n"));
    }
}
