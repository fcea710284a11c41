//! The maintenance workers against the in-memory fabric (real node services, real proofs and
//! audits, faults switched on per node), one pass at a time on a fake clock: no sleeps.

use crate::adapters::local::LocalFiles;
use crate::adapters::memory::{FakeClock, MemoryFabric, MemoryFabricOptions};
use crate::app::vault::{
    run_pipeline, Caller, HealthOptions, LeaseWorker, Pace, PipelineStats, Replicas, Scope, Vault,
    VaultOptions,
};
use crate::domain::fs::ROOT_INO;
use crate::domain::ids::Addr;
use crate::domain::keys::MasterKey;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio_util::sync::CancellationToken;

const DAY: Duration = Duration::from_secs(24 * 3600);

struct Rig {
    vault: Arc<Vault<MemoryFabric>>,
    fabric: Arc<MemoryFabric>,
    clock: Arc<FakeClock>,
    cancel: CancellationToken,
    _home: tempfile::TempDir,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// A vault on five memory nodes, all on one fake clock, with its upload pipeline running.
fn rig(lease: Duration) -> Rig {
    let home = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::at(crate::domain::unix_ms(SystemTime::now())));
    let mut fopts = MemoryFabricOptions::new(5);
    fopts.lease = lease;
    fopts.reply_timeout = Duration::from_millis(200);
    let fabric = Arc::new(MemoryFabric::with(fopts, clock.clone()));
    let keys = Arc::new(MasterKey::from_bytes([5; 32]).derive());
    let health = HealthOptions { lease, ..HealthOptions::default() };
    let opts = VaultOptions { health, fetch_timeout: Duration::from_secs(2), ..VaultOptions::default() };
    let m = crate::adapters::redb::manifest::open_in(home.path());
    let vault = Arc::new(Vault::load(home.path(), m, keys, opts, &LocalFiles, clock.clone()).unwrap());
    vault.set_fabric(fabric.clone());
    let cancel = CancellationToken::new();
    tokio::spawn(run_pipeline(vault.clone(), Arc::new(PipelineStats::default()), cancel.clone()));
    Rig { vault, fabric, clock, cancel, _home: home }
}

/// Writes a file of `len` bytes, waits until every chunk is quorum-durable and returns the
/// addresses of its chunks.
async fn durable_file(r: &Rig, name: &[u8], len: usize) -> Vec<Addr> {
    let v = &r.vault;
    let (attr, fh) = v.create(Caller { uid: 0, gid: 0 }, ROOT_INO, name, 0o644, 0, 0).unwrap();
    let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
    v.write_staged(attr.ino, fh, 0, &data).unwrap().unwrap();
    v.release(attr.ino, fh).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = v.status().unwrap();
        if s.chunks > 0 && s.durable == s.chunks && s.staged_files == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "not quorum-durable in time: {s:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let rx = v.m.read().unwrap();
    rx.extents(attr.ino, 0, u64::MAX).unwrap().iter().map(|e| e.addr).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_catches_a_corrupted_replica_and_heals_the_chunk_to_n() {
    let r = rig(90 * DAY);
    let addrs = durable_file(&r, b"photo", 300_000).await;
    let addr = addrs[0];
    let holders = r.fabric.holders(&addr);
    assert_eq!(holders.len(), 3, "stored on N nodes");
    r.fabric.corrupt_stored(holders[0], &addr);
    let report = r.vault.audit(&Scope::All, Replicas::All, Pace::Foreground, &|_, _| {}).await.unwrap();
    // The node notices its own copy no longer matches and says so; a lying node would fail.
    assert_eq!(report.passed, 2, "the corrupted replica passed its audit: {report:?}");
    assert_eq!(report.failed + report.not_found, 1, "{report:?}");
    assert!(report.healed >= 1, "the chunk was not healed: {report:?}");
    let now = r.fabric.holders(&addr);
    assert_eq!(now.len(), 3, "not back to N copies: {now:?}");
    let again = r.vault.audit(&Scope::All, Replicas::Due, Pace::Foreground, &|_, _| {}).await.unwrap();
    assert_eq!(r.vault.status().unwrap().degraded, 0, "still degraded after healing: {again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewed_leases_outlive_their_first_term_and_abandoned_ones_expire() {
    let lease = 30 * DAY;
    let r = rig(lease);
    let addrs = durable_file(&r, b"kept", 200_000).await;
    // A third of the lease left: the worker renews every replica.
    r.clock.advance(lease * 2 / 3 + DAY);
    let renewed = LeaseWorker.run_once(&*r.vault, &*r.fabric).await.unwrap();
    assert!(renewed >= 3, "leases not renewed: {renewed}");
    // Past the first term: the nodes keep what was renewed.
    r.clock.advance(lease / 3 + DAY);
    assert_eq!(r.fabric.sweep_expired(), 0, "a renewed chunk expired");
    assert_eq!(r.fabric.holders(&addrs[0]).len(), 3);
    // Nobody renews any more (the owner is gone): past the renewed term the nodes drop them.
    r.clock.advance(lease + DAY);
    assert!(r.fabric.sweep_expired() >= 3, "abandoned chunks were kept");
    assert!(r.fabric.holders(&addrs[0]).is_empty());
}
