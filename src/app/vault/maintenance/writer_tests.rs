//! One writer per vault on the in-memory fabric and one fake clock: two homes of the same vault,
//! the lease taken over, the fence within one `writer_check`, the closed lineage adopted, and
//! garbage collection keeping what either lineage names. No sleeps on the clock.

use crate::adapters::local::LocalFiles;
use crate::adapters::memory::{FakeClock, MemoryFabric, MemoryFabricOptions};
use crate::adapters::redb::manifest::RedbManifests;
use crate::app::report::WriterState;
use crate::app::vault::{
    find_root, materialize_snapshot, run_pipeline, Caller, Claim, GcWorker, HealthOptions, ManifestFile,
    PipelineStats, SnapshotOutcome, Vault, VaultOptions, WriterWorker,
};
use crate::domain::fs::{FsError, ROOT_INO};
use crate::domain::ids::{Addr, WriterId};
use crate::domain::keys::{MasterKey, VaultKeys};
use crate::domain::snapshot::Retention;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio_util::sync::CancellationToken;

const CHECK: Duration = Duration::from_secs(30);

struct Home {
    vault: Arc<Vault<MemoryFabric>>,
    cancel: CancellationToken,
}

impl Drop for Home {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn keys() -> Arc<VaultKeys> {
    Arc::new(MasterKey::from_bytes([44; 32]).derive())
}

/// A home of the vault on `fabric` with writer id `[id; 16]`, its upload pipeline running.
/// Garbage collection has no grace and only the newest snapshot is kept by the policy.
fn home(dir: &Path, id: u8, fabric: &Arc<MemoryFabric>, clock: &Arc<FakeClock>) -> Home {
    let health = HealthOptions {
        gc_grace: Duration::ZERO,
        writer_check: CHECK,
        retention: Retention { last: 1, daily: 0 },
        ..HealthOptions::default()
    };
    let opts = VaultOptions {
        health,
        writer: WriterId([id; 16]),
        fetch_timeout: Duration::from_secs(2),
        ..VaultOptions::default()
    };
    let m = crate::adapters::redb::manifest::open_in(dir);
    let vault = Arc::new(Vault::load(dir, m, keys(), opts, &LocalFiles, clock.clone()).unwrap());
    vault.set_fabric(fabric.clone());
    let cancel = CancellationToken::new();
    tokio::spawn(run_pipeline(vault.clone(), Arc::new(PipelineStats::default()), cancel.clone()));
    Home { vault, cancel }
}

/// Writes `name` and waits until it is quorum-durable; returns its chunks.
async fn durable(v: &Vault<MemoryFabric>, name: &[u8], seed: u8) -> Vec<Addr> {
    let (attr, fh) = v.create(Caller { uid: 0, gid: 0 }, ROOT_INO, name, 0o644, 0, 0).unwrap();
    let data: Vec<u8> = (0..150_000usize).map(|i| (i * 31 % 251) as u8 ^ seed).collect();
    v.write_staged(attr.ino, fh, 0, &data).unwrap().unwrap();
    v.release(attr.ino, fh).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = v.status().unwrap();
        if s.pending == 0 && s.queued == 0 && s.staged_files == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "not quorum-durable in time: {s:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    v.m.read().unwrap().extents(attr.ino, 0, u64::MAX).unwrap().iter().map(|e| e.addr).collect()
}

fn create(v: &Vault<MemoryFabric>, name: &[u8]) -> Result<(), FsError> {
    v.create(Caller { uid: 0, gid: 0 }, ROOT_INO, name, 0o644, 0, 0).map(|(a, fh)| {
        v.release(a.ino, fh).unwrap();
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_home_is_fenced_and_a_take_over_fences_the_first_within_one_check() {
    let clock = Arc::new(FakeClock::at(crate::domain::unix_ms(SystemTime::now())));
    let fabric = Arc::new(MemoryFabric::with(MemoryFabricOptions::new(5), clock.clone()));
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = home(da.path(), 1, &fabric, &clock);
    let b = home(db.path(), 2, &fabric, &clock);
    assert_eq!(a.vault.claim_writer(Claim::Keep).await.unwrap(), WriterState::Holder { epoch: 1 });
    // The second home mounts read-only and says why.
    let fenced = b.vault.claim_writer(Claim::Keep).await.unwrap();
    assert!(matches!(fenced, WriterState::Fenced { holder_epoch: 1, .. }), "{fenced:?}");
    assert!(fenced.describe().contains("read-only"), "{}", fenced.describe());
    assert!(matches!(create(&b.vault, b"no"), Err(FsError::ReadOnly)));
    // A writer checks the lease on its own clock: at once, then once per `writer_check`.
    let mut worker = WriterWorker::default();
    assert!(!worker.run_once(&*a.vault).await.unwrap().is_fenced());
    assert_eq!(b.vault.claim_writer(Claim::TakeOver).await.unwrap(), WriterState::Holder { epoch: 2 });
    create(&b.vault, b"from b").unwrap();
    clock.advance(CHECK / 2);
    assert!(!worker.run_once(&*a.vault).await.unwrap().is_fenced(), "checked before it was due");
    create(&a.vault, b"before the fence").unwrap();
    clock.advance(CHECK / 2);
    let state = worker.run_once(&*a.vault).await.unwrap();
    assert!(matches!(state, WriterState::Fenced { epoch: 1, holder_epoch: 2, .. }), "{state:?}");
    assert!(matches!(create(&a.vault, b"after"), Err(FsError::ReadOnly)), "writes after the fence");
    assert!(a.vault.status().unwrap().writer.is_some_and(|w| w.is_fenced()));
    // An explicit take-over moves the lease back.
    assert_eq!(a.vault.claim_writer(Claim::TakeOver).await.unwrap(), WriterState::Holder { epoch: 3 });
    create(&a.vault, b"after taking it back").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_lineage_is_adopted_and_garbage_collection_keeps_what_either_names() {
    let clock = Arc::new(FakeClock::at(crate::domain::unix_ms(SystemTime::now())));
    let fabric = Arc::new(MemoryFabric::with(MemoryFabricOptions::new(5), clock.clone()));
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = home(da.path(), 1, &fabric, &clock);
    a.vault.claim_writer(Claim::Keep).await.unwrap();
    let shared = durable(&a.vault, b"shared", 1).await;
    assert!(matches!(a.vault.snapshot(Duration::from_secs(30)).await.unwrap(), SnapshotOutcome::Taken(_)));
    // The vault restored on a second home, which takes the lease.
    let root = find_root(&*fabric, &keys()).await.unwrap().unwrap();
    let info = *root.record.snapshots.iter().max_by_key(|s| s.order()).unwrap();
    let to = ManifestFile { path: &db.path().join("manifest.redb"), files: &RedbManifests };
    drop(
        materialize_snapshot(&*fabric, &keys(), &root.record, &info, to, Duration::from_secs(5), &|_, _| {})
            .await,
    );
    let b = home(db.path(), 2, &fabric, &clock);
    b.vault.claim_writer(Claim::TakeOver).await.unwrap();
    // The first home writes on before it learns of the take-over.
    let late = durable(&a.vault, b"late", 2).await;
    // The second deletes the shared file, snapshots (the policy keeps only its newest) and
    // collects: it waits for the first home's lineage.
    b.vault.unlink(ROOT_INO, b"shared").unwrap();
    clock.advance(Duration::from_secs(1));
    assert!(matches!(b.vault.snapshot(Duration::from_secs(30)).await.unwrap(), SnapshotOutcome::Taken(_)));
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        GcWorker.run_once(&*b.vault, &fabric).await.unwrap(),
        0,
        "collected before the lineage closed"
    );
    // The first home is fenced at its next check and closes its lineage.
    let mut worker = WriterWorker::default();
    assert!(worker.run_once(&*a.vault).await.unwrap().is_fenced());
    let closed = worker.run_once(&*a.vault).await.unwrap();
    assert!(matches!(closed, WriterState::Fenced { closed: true, .. }), "{closed:?}");
    // The second adopts it: nothing either side named is collected.
    clock.advance(Duration::from_secs(1));
    GcWorker.run_once(&*b.vault, &fabric).await.unwrap();
    for addr in shared.iter().chain(&late) {
        assert!(!fabric.holders(addr).is_empty(), "{addr:?} was deleted from every node");
    }
    // Its next snapshot keeps the adopted one; listings and restore agree on the newest.
    durable(&b.vault, b"more", 3).await;
    clock.advance(Duration::from_secs(1));
    assert!(matches!(b.vault.snapshot(Duration::from_secs(30)).await.unwrap(), SnapshotOutcome::Taken(_)));
    let listed = b.vault.snapshots().unwrap();
    let epochs: Vec<u64> = listed.iter().map(|s| s.epoch).collect();
    assert_eq!(epochs, vec![1, 2], "the adopted lineage and the new one: {listed:?}");
    let root = find_root(&*fabric, &keys()).await.unwrap().unwrap();
    assert_eq!(root.record.epoch, 2);
    let newest = root.record.snapshots.iter().max_by_key(|s| s.order()).unwrap();
    assert_eq!(Some(newest), listed.last(), "snapshots and restore disagree on the newest");

    // Collection goes on after the adoption: a file only the writer named, deleted before its
    // next snapshot, is collected although the adopted snapshot, taken earlier on the other
    // home's clock, is kept (it pins what it names; no time bound of its applies).
    let scratch = durable(&b.vault, b"scratch", 4).await;
    b.vault.unlink(ROOT_INO, b"scratch").unwrap();
    durable(&b.vault, b"after scratch", 5).await;
    clock.advance(Duration::from_secs(60));
    assert!(matches!(b.vault.snapshot(Duration::from_secs(30)).await.unwrap(), SnapshotOutcome::Taken(_)));
    clock.advance(Duration::from_secs(1));
    let collected = GcWorker.run_once(&*b.vault, &fabric).await.unwrap();
    assert!(collected >= scratch.len() as u64, "collected {collected} of the deleted file's chunks");
    for addr in &scratch {
        assert!(fabric.holders(addr).is_empty(), "{addr:?} of the deleted file is still on the nodes");
    }
    for addr in shared.iter().chain(&late) {
        assert!(!fabric.holders(addr).is_empty(), "{addr:?} was deleted from every node");
    }
    let epochs: Vec<u64> = b.vault.snapshots().unwrap().iter().map(|s| s.epoch).collect();
    assert_eq!(epochs, vec![1, 2], "the adopted snapshot is kept");
}
