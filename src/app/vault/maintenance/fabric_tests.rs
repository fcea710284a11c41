//! The maintenance workers against the in-memory fabric (real node services, real proofs and
//! audits, faults switched on per node), one pass at a time on a fake clock: no sleeps.

use crate::adapters::local::LocalFiles;
use crate::adapters::memory::{FakeClock, MemoryFabric, MemoryFabricOptions, NodeFault};
use crate::app::vault::{
    run_pipeline, Caller, HealthOptions, LeaseWorker, Pace, PipelineStats, Replicas, Scope, Vault,
    VaultOptions,
};
use crate::domain::fs::ROOT_INO;
use crate::domain::health::NOT_FOUND_SPACING_MS;
use crate::domain::ids::{Addr, NodeId};
use crate::domain::keys::MasterKey;
use crate::ports::chunk_store::ChunkStore;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio_util::sync::CancellationToken;

const DAY: Duration = Duration::from_secs(24 * 3600);

struct Rig {
    vault: Arc<Vault<MemoryFabric>>,
    fabric: Arc<MemoryFabric>,
    clock: Arc<FakeClock>,
    cancel: CancellationToken,
    pipeline: Option<tokio::task::JoinHandle<()>>,
    _home: tempfile::TempDir,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// A vault on five memory nodes, all on one fake clock, with its upload pipeline running.
fn rig(lease: Duration) -> Rig {
    rig_with(lease, |_, _| {})
}

/// [`rig`] with the fabric's and the vault's options changed by `tweak`.
fn rig_with(lease: Duration, tweak: impl FnOnce(&mut MemoryFabricOptions, &mut VaultOptions)) -> Rig {
    let home = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::at(crate::domain::unix_ms(SystemTime::now())));
    let mut fopts = MemoryFabricOptions::new(5);
    fopts.lease = lease;
    fopts.reply_timeout = Duration::from_millis(200);
    let keys = Arc::new(MasterKey::from_bytes([5; 32]).derive());
    let health = HealthOptions { lease, ..HealthOptions::default() };
    let mut opts = VaultOptions { health, fetch_timeout: Duration::from_secs(2), ..VaultOptions::default() };
    tweak(&mut fopts, &mut opts);
    let fabric = Arc::new(MemoryFabric::with(fopts, clock.clone()));
    let m = crate::adapters::redb::manifest::open_in(home.path());
    let vault = Arc::new(Vault::load(home.path(), m, keys, opts, &LocalFiles, clock.clone()).unwrap());
    vault.set_fabric(fabric.clone());
    let cancel = CancellationToken::new();
    let pipeline =
        Some(tokio::spawn(run_pipeline(vault.clone(), Arc::new(PipelineStats::default()), cancel.clone())));
    Rig { vault, fabric, clock, cancel, pipeline, _home: home }
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

/// The nodes the owner knows as replicas of `addr`.
fn known(r: &Rig, addr: &Addr) -> Vec<NodeId> {
    let c = r.vault.m.read().unwrap().chunk(addr).unwrap().expect("chunk record");
    c.replicas.iter().map(|x| x.node).collect()
}

/// `node` loses its copy of `addr` (a wiped disk): it answers "not found", signed and bound to
/// the owner's request.
fn lose(r: &Rig, node: NodeId, addr: &Addr) {
    assert!(r.fabric.node(node).unwrap().store().remove(addr).unwrap());
}

/// Issue 24 item 3: a "not found" does not forget a replica while the chunk has fewer than N
/// other healthy ones: the chunk is re-published first, and the copy the node lost is forgotten
/// at a later audit, once N others are healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_not_found_heals_the_chunk_before_its_replica_is_forgotten() {
    let r = rig(90 * DAY);
    let addr = durable_file(&r, b"doc", 100_000).await[0];
    let holders = r.fabric.holders(&addr);
    assert_eq!(holders.len(), 3);
    lose(&r, holders[0], &addr);
    let report = r.vault.audit(&Scope::All, Replicas::All, Pace::Foreground, &|_, _| {}).await.unwrap();
    assert_eq!((report.not_found, report.healed), (1, 1), "{report:?}");
    let now = known(&r, &addr);
    assert!(now.contains(&holders[0]), "forgotten on a single not found while 2 of 3 others were healthy");
    assert_eq!(now.len(), 4, "healed to N healthy beside the suspect copy: {now:?}");
    assert_eq!(r.fabric.holders(&addr).len(), 3);
    // Within the spacing a background pass leaves the suspect replica alone.
    let again = r.vault.audit(&Scope::All, Replicas::Due, Pace::Foreground, &|_, _| {}).await.unwrap();
    assert_eq!(again.not_found, 0, "{again:?}");
    // Later, with N other healthy replicas, its next "not found" forgets it.
    r.clock.advance(Duration::from_millis(NOT_FOUND_SPACING_MS));
    let later = r.vault.audit(&Scope::All, Replicas::Due, Pace::Foreground, &|_, _| {}).await.unwrap();
    assert_eq!(later.not_found, 1, "{later:?}");
    let now = known(&r, &addr);
    assert!(!now.contains(&holders[0]) && now.len() == 3, "surplus copy not forgotten: {now:?}");
    assert_eq!(r.vault.status().unwrap().degraded, 0);
}

/// Issue 24 item 3: every replica of a chunk says "not found" and nothing can be re-published
/// (no other node, no local copy): a burst of audits forgets nothing, answers spaced in time
/// forget replicas, and the last replica known is never forgotten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found_everywhere_never_forgets_the_last_replica() {
    let mut r = rig_with(90 * DAY, |f, v| {
        f.nodes = 3;
        f.store_deadline = Duration::from_millis(300);
        (v.cache_bytes, v.disk_cache_bytes) = (0, 0);
    });
    let addr = durable_file(&r, b"doc", 100_000).await[0];
    let holders = r.fabric.holders(&addr);
    assert_eq!(holders.len(), 3);
    // The upload pipeline stops first: a store still retrying a slot would put copies back.
    r.cancel.cancel();
    r.pipeline.take().unwrap().await.unwrap();
    for h in &holders {
        lose(&r, *h, &addr);
    }
    let audit = || r.vault.audit(&Scope::All, Replicas::All, Pace::Foreground, &|_, _| {});
    for i in 0..4 {
        let report = audit().await.unwrap();
        assert_eq!(report.not_found, 3, "{report:?}");
        assert_eq!(known(&r, &addr).len(), 3, "audit {i} in a burst forgot replicas");
    }
    // The burst counted once; a second answer an hour later forgets nothing either.
    r.clock.advance(Duration::from_millis(NOT_FOUND_SPACING_MS));
    audit().await.unwrap();
    assert_eq!(known(&r, &addr).len(), 3, "forgotten before three spaced answers");
    for _ in 0..4 {
        r.clock.advance(Duration::from_millis(NOT_FOUND_SPACING_MS));
        audit().await.unwrap();
        assert_eq!(known(&r, &addr).len(), 1, "the last replica known was forgotten, or a lost one kept");
    }
}

/// The chunks (of `addrs`) that `node` holds.
fn held_by(r: &Rig, node: NodeId, addrs: &[Addr]) -> Vec<Addr> {
    addrs.iter().copied().filter(|a| r.fabric.holders(a).contains(&node)).collect()
}

const HOUR: Duration = Duration::from_secs(3600);

/// Churn: a node offline within the grace costs no repair; past the grace its chunks are
/// healed to N elsewhere; when it comes back it is re-audited and its surplus copies deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_node_is_waited_for_then_healed_around_and_trimmed_when_it_returns() {
    let r = rig(90 * DAY);
    let addrs = durable_file(&r, b"weekend", 3_000_000).await;
    let audit = |which| r.vault.audit(&Scope::All, which, Pace::Foreground, &|_, _| {});
    assert_eq!(audit(Replicas::All).await.unwrap().passed, 3 * addrs.len() as u64);
    assert_eq!(r.vault.status().unwrap().churn.online, 5, "every node holds replicas");
    let away = r.fabric.holders(&addrs[0])[0];
    let its = held_by(&r, away, &addrs);
    r.fabric.set_fault(away, NodeFault::Offline);

    // Missed checks over less than four hours, then over four: offline, nothing repaired.
    // Its replicas fall due a day after their audit; it was last seen then.
    for step in [25 * HOUR, HOUR, 3 * HOUR, 40 * HOUR] {
        r.clock.advance(step);
        let report = audit(Replicas::Due).await.unwrap();
        assert_eq!(report.healed, 0, "repaired within the grace: {report:?}");
        assert!(report.silent > 0, "{report:?}");
    }
    let s = r.vault.status().unwrap();
    assert_eq!((s.churn.offline, s.degraded, s.churn.in_grace), (1, 0, its.len() as u64), "{s:?}");
    let elsewhere = |a: &Addr| r.fabric.holders(a).into_iter().filter(|n| *n != away).count();
    assert!(its.iter().all(|a| elsewhere(a) == 2), "re-replicated within the grace");

    // Past the grace (72 h since it was last seen): healed to N on other nodes.
    r.clock.advance(30 * HOUR);
    let report = audit(Replicas::Due).await.unwrap();
    assert_eq!(report.healed, its.len() as u64, "{report:?}");
    assert_eq!(r.vault.status().unwrap().churn.lapsed, 1);
    for a in &its {
        assert_eq!(elsewhere(a), 3, "not back to N");
        assert_eq!(known(&r, a).len(), 4, "the offline copy is still known");
    }

    // It comes back: re-audited, and the copies it kept are surplus and deleted from it.
    r.fabric.set_fault(away, NodeFault::Healthy);
    r.clock.advance(HOUR);
    let report = audit(Replicas::Due).await.unwrap();
    assert_eq!(report.trimmed, its.len() as u64, "{report:?}");
    assert!(report.passed >= its.len() as u64, "its replicas were not re-audited: {report:?}");
    for a in &its {
        let holders = r.fabric.holders(a);
        assert!(holders.len() == 3 && !holders.contains(&away), "surplus not deleted from it: {holders:?}");
        assert_eq!(known(&r, a).len(), 3);
    }
    let s = r.vault.status().unwrap();
    assert_eq!((s.churn.online, s.degraded, s.durable), (5, 0, s.chunks), "{s:?}");
}

/// Churn: more than a quarter of the nodes vanish at once: the owner suspects its own link,
/// pauses repair (status says so) and writes nothing off, even past the grace and dead-after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_pauses_when_many_nodes_vanish_at_once() {
    let r = rig(90 * DAY);
    let addrs = durable_file(&r, b"link", 3_000_000).await;
    let audit = |which| r.vault.audit(&Scope::All, which, Pace::Foreground, &|_, _| {});
    audit(Replicas::All).await.unwrap();
    assert_eq!(r.vault.status().unwrap().churn.online, 5, "every node holds replicas");
    let holders = r.fabric.holders(&addrs[0]);
    for n in &holders[..2] {
        r.fabric.set_fault(*n, NodeFault::Offline);
    }
    for step in [25 * HOUR, 5 * HOUR, 80 * HOUR, 15 * 24 * HOUR] {
        r.clock.advance(step);
        let report = audit(Replicas::Due).await.unwrap();
        assert_eq!(report.healed, 0, "repaired while paused: {report:?}");
    }
    let s = r.vault.status().unwrap();
    assert_eq!(s.churn.repair_paused, Some((2, 5)), "{s:?}");
    assert!(s.churn.paused_reason().unwrap().contains("own link"));
    assert_eq!(known(&r, &addrs[0]).len(), 3, "replicas written off while the link was down");
    // They answer again: repair resumes, nothing was lost.
    for n in &holders[..2] {
        r.fabric.set_fault(*n, NodeFault::Healthy);
    }
    audit(Replicas::Due).await.unwrap();
    let s = r.vault.status().unwrap();
    assert_eq!((s.churn.repair_paused, s.degraded), (None, 0), "{s:?}");
}
