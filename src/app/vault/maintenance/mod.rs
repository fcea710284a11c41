//! Owner-side maintenance (docs/DESIGN.md §5–6), one type per background job as Garage's workers:
//! [`AuditWorker`] challenges replicas, [`HealWorker`] brings chunks back to N counted
//! replicas under the churn policy (`domain::churn`), trimming deletes surplus replicas, [`LeaseWorker`] renews leases, [`GcWorker`] deletes chunks no file references any
//! more, [`SnapshotWorker`] stores manifest snapshots, [`VetWorker`] vets new nodes
//! (`domain::vetting`), and [`WriterWorker`] reads the writer lease. [`run_maintenance`] runs them on the
//! owner's schedule; each has a `run_once` so that a test drives one pass without waiting.
//! Time comes from the vault's [`Clock`](crate::ports::clock::Clock).

mod audit;
mod gc;
mod heal;
mod leases;
mod schedule;
mod snapshots;
mod trim;
mod vet;
mod writer;

pub use audit::AuditWorker;
pub use gc::GcWorker;
pub use heal::HealWorker;
pub use leases::LeaseWorker;
pub use schedule::run_maintenance;
pub use snapshots::SnapshotWorker;
pub use vet::{run_vetting, VetReport, VetWorker};
pub use writer::{run_writer_watch, WriterWorker};

use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// The owner's maintenance schedule.
#[derive(Clone, Debug)]
pub struct HealthOptions {
    /// Every replica is challenged at least this often.
    pub audit_interval: Duration,
    /// Most background audit challenges per second (foreground passes are not limited).
    pub audit_rate: u32,
    /// Lease asked for on store and renew; renewed when a third of it is left.
    pub lease: Duration,
    /// How long an unreferenced chunk waits before it is deleted from its replicas.
    pub gc_grace: Duration,
    /// How often the manifest is snapshotted into the fabric when it changed (zero: only at
    /// unmount and on request).
    pub snapshot_interval: Duration,
    /// Which snapshots are kept.
    pub retention: crate::domain::snapshot::Retention,
    /// How often a writing mount reads the writer lease, so a home that lost it stops writing
    /// within this long (measured on this machine's clock).
    pub writer_check: Duration,
    /// After a take-over, how long garbage collection waits for the previous writer's closed
    /// record before it collects chunks again (the previous writer may still name them).
    pub lineage_wait: Duration,
    /// When an unanswering node is offline, how long its replicas keep counting, and when it is
    /// written off (docs/SEMANTICS.md, replica health).
    pub churn: crate::domain::churn::ChurnPolicy,
    /// Most ciphertext bytes per second a background repair re-publishes (foreground passes are
    /// not limited).
    pub repair_rate: u64,
}

impl Default for HealthOptions {
    fn default() -> Self {
        HealthOptions {
            audit_interval: Duration::from_secs(24 * 3600),
            audit_rate: 200,
            lease: Duration::from_secs(90 * 24 * 3600),
            gc_grace: Duration::from_secs(3600),
            snapshot_interval: Duration::from_secs(3600),
            retention: crate::domain::snapshot::Retention::default(),
            writer_check: Duration::from_secs(30),
            lineage_wait: Duration::from_secs(30 * 24 * 3600),
            churn: crate::domain::churn::ChurnPolicy::default(),
            repair_rate: 4 << 20,
        }
    }
}

/// Which chunks a pass covers.
#[derive(Clone, Debug)]
pub enum Scope {
    /// Every referenced chunk (background passes: no file names needed).
    All,
    /// The files under a vault path ("/" for the whole vault), named in the report.
    Path(String),
}

/// Which replicas an audit pass challenges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replicas {
    /// Those not verified within the audit interval, and those that failed last time.
    Due,
    /// Every replica (`quloud audit --now`).
    All,
}

/// How fast an audit pass challenges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pace {
    /// In the background: rate-limited to `audit_rate`, two batches in flight.
    Background,
    /// For a waiting user: as fast as the nodes answer.
    Foreground,
}

impl Replicas {
    /// `All` when `now` is set (the `--now` flag), else `Due`.
    pub fn all_if(now: bool) -> Self {
        if now {
            Replicas::All
        } else {
            Replicas::Due
        }
    }
}

/// Counters of the background maintenance, for status.
#[derive(Debug, Default)]
pub struct HealthStats {
    /// Replica challenges sent.
    pub checked: AtomicU64,
    /// Challenges that did not pass.
    pub failed: AtomicU64,
    /// Chunks healed.
    pub healed: AtomicU64,
    /// Leases renewed.
    pub renewed: AtomicU64,
    /// Unreferenced chunks deleted from their replicas.
    pub collected: AtomicU64,
    /// Surplus replicas deleted (above N once a returning node proved its copies again).
    pub trimmed: AtomicU64,
    /// Whether repair is paused because too many nodes vanished at once.
    pub repair_paused: std::sync::atomic::AtomicBool,
}

#[cfg(test)]
mod fabric_tests;
#[cfg(test)]
mod placement_tests;
#[cfg(test)]
mod vetting_tests;
#[cfg(test)]
mod workers_tests;
#[cfg(test)]
mod writer_tests;
