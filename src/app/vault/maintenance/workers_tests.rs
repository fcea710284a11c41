//! The maintenance workers driven one pass at a time on a fake clock: no sleeps.

use crate::adapters::local::LocalFiles;
use crate::adapters::memory::FakeClock;
use crate::app::vault::pipeline::uploader_tests::CountingFabric;
use crate::app::vault::{Caller, GcWorker, HealthOptions, SnapshotWorker, Vault, VaultOptions};
use crate::domain::fs::ROOT_INO;
use crate::domain::keys::MasterKey;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

const HOUR: Duration = Duration::from_secs(3600);

fn load(home: &Path, health: HealthOptions) -> (Arc<Vault<CountingFabric>>, Arc<FakeClock>) {
    let clock = Arc::new(FakeClock::at(crate::domain::unix_ms(SystemTime::now())));
    let keys = Arc::new(MasterKey::from_bytes([8; 32]).derive());
    let opts = VaultOptions { health, fetch_timeout: Duration::from_millis(10), ..VaultOptions::default() };
    let vault = Vault::load(
        home,
        crate::adapters::redb::manifest::open_in(home),
        keys,
        opts,
        &LocalFiles,
        clock.clone(),
    )
    .unwrap();
    (Arc::new(vault), clock)
}

/// A file chunked into the manifest and then removed: its chunks wait for collection.
fn chunked_then_removed(vault: &Vault<CountingFabric>) {
    let (attr, fh) = vault.create(Caller { uid: 0, gid: 0 }, ROOT_INO, b"gone", 0o644, 0, 0).unwrap();
    vault.write_staged(attr.ino, fh, 0, &[7u8; 200_000]).unwrap().unwrap();
    vault.release(attr.ino, fh).unwrap();
    assert_eq!(vault.chunk_files(&[attr.ino]).unwrap(), 1);
    vault.unlink(ROOT_INO, b"gone").unwrap();
}

#[tokio::test]
async fn garbage_waits_out_its_grace_period_on_the_vault_clock() {
    let home = tempfile::tempdir().unwrap();
    let (vault, clock) = load(home.path(), HealthOptions { gc_grace: HOUR, ..HealthOptions::default() });
    let fabric = CountingFabric::new(Duration::ZERO, Duration::ZERO);
    chunked_then_removed(&vault);
    assert_eq!(GcWorker.run_once(&*vault, &fabric).await.unwrap(), 0, "collected within the grace period");
    clock.advance(HOUR / 2);
    assert_eq!(GcWorker.run_once(&*vault, &fabric).await.unwrap(), 0, "collected within the grace period");
    clock.advance(HOUR);
    assert!(GcWorker.run_once(&*vault, &fabric).await.unwrap() > 0, "not collected after the grace period");
    assert!(vault.m.read().unwrap().summary().unwrap().chunks.is_empty(), "collected chunks are forgotten");
}

#[tokio::test]
async fn a_snapshot_falls_due_one_interval_after_the_last_on_the_vault_clock() {
    let home = tempfile::tempdir().unwrap();
    let health = HealthOptions { snapshot_interval: HOUR, ..HealthOptions::default() };
    let (vault, clock) = load(home.path(), health);
    let mut worker = SnapshotWorker::new(&*vault);
    assert!(worker.run_once(&*vault).await.unwrap().is_none(), "due at once on a fresh vault");
    clock.advance(HOUR - Duration::from_secs(1));
    assert!(worker.run_once(&*vault).await.unwrap().is_none(), "due before its interval");
    clock.advance(Duration::from_secs(1));
    // Due now: it tries (and, with no fabric connected, fails until one comes).
    assert!(worker.run_once(&*vault).await.is_err(), "a due snapshot was not tried");
}
