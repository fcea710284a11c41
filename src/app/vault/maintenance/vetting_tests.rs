//! Vetting against the in-memory fabric on a fake clock: acks of nodes never audited do not
//! make a chunk durable, a forger's acks never do, a node that fails its vetting is written
//! off, and a node that passes makes its pending chunks durable without a new upload.

use crate::adapters::local::LocalFiles;
use crate::adapters::memory::{FakeClock, MemoryFabric, MemoryFabricOptions, NodeFault};
use crate::app::node::Op;
use crate::app::vault::{run_pipeline, Caller, PipelineStats, Vault, VaultOptions, VetWorker};
use crate::domain::fs::{ChunkState, ROOT_INO};
use crate::domain::ids::{Addr, NodeId};
use crate::domain::keys::MasterKey;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio_util::sync::CancellationToken;

const VET_WITHIN: Duration = Duration::from_secs(300);

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

/// A vault wanting 3 replicas on `nodes` memory nodes, its pipeline running; `fault` is set on
/// each node (by index) before anything is written.
fn rig(nodes: usize, fault: impl Fn(usize) -> NodeFault) -> Rig {
    let home = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::at(crate::domain::unix_ms(SystemTime::now())));
    let mut fopts = MemoryFabricOptions::new(nodes);
    fopts.reply_timeout = Duration::from_millis(200);
    let keys = Arc::new(MasterKey::from_bytes([6; 32]).derive());
    let mut opts = VaultOptions { fetch_timeout: Duration::from_secs(2), ..VaultOptions::default() };
    opts.health.churn.vet_within = VET_WITHIN;
    let fabric = Arc::new(MemoryFabric::with(fopts, clock.clone()));
    for (i, id) in fabric.node_ids().into_iter().enumerate() {
        fabric.set_fault(id, fault(i));
    }
    let m = crate::adapters::redb::manifest::open_in(home.path());
    let vault = Arc::new(Vault::load(home.path(), m, keys, opts, &LocalFiles, clock.clone()).unwrap());
    vault.set_fabric(fabric.clone());
    let cancel = CancellationToken::new();
    tokio::spawn(run_pipeline(vault.clone(), Arc::new(PipelineStats::default()), cancel.clone()));
    Rig { vault, fabric, clock, cancel, _home: home }
}

/// Writes a small file (one chunk) and returns its chunk once the upload recorded replicas.
async fn stored(r: &Rig) -> Addr {
    let v = &r.vault;
    let (attr, fh) = v.create(Caller { uid: 0, gid: 0 }, ROOT_INO, b"f", 0o644, 0, 0).unwrap();
    v.write_staged(attr.ino, fh, 0, &[7u8; 50_000]).unwrap().unwrap();
    v.release(attr.ino, fh).unwrap();
    poll("the upload recorded", || {
        let rx = v.m.read().ok()?;
        let e = rx.extents(attr.ino, 0, u64::MAX).ok()?.first()?.addr;
        rx.chunk(&e).ok()??.replicas.len().ge(&3).then_some(e)
    })
    .await
}

/// Polls `f` every 10 ms for up to 30 s.
async fn poll<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(Instant::now() < deadline, "{what}: not in time");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn state(r: &Rig, addr: &Addr) -> ChunkState {
    r.vault.m.read().unwrap().chunk(addr).unwrap().expect("chunk record").state
}

fn holders_known(r: &Rig, addr: &Addr) -> Vec<NodeId> {
    r.vault
        .m
        .read()
        .unwrap()
        .chunk(addr)
        .unwrap()
        .expect("chunk record")
        .replicas
        .iter()
        .map(|x| x.node)
        .collect()
}

/// Acks from nodes nobody has audited yet keep a chunk pending (its local copy kept); once they
/// pass their vetting audit, the chunk is durable with no new upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_count_only_once_their_nodes_pass_and_then_without_a_new_upload() {
    // Acks arrive; audit answers come too late to count (silent), as from a box still booting.
    let r = rig(3, |_| NodeFault::DelayReplies(Duration::from_millis(400)));
    let addr = stored(&r).await;
    VetWorker.run_once(&r.vault, &r.fabric).await.unwrap();
    assert_eq!(state(&r, &addr), ChunkState::Pending, "unvetted acks made the chunk durable");
    let s = r.vault.status().unwrap();
    assert_eq!((s.durable, s.pending, s.churn.vetting_chunks), (0, 1, 1), "{s:?}");
    let kept = r.vault.pipeline.outbox.contains(&addr)
        || r.vault.m.read().unwrap().small_outbox(&addr).unwrap().is_some();
    assert!(kept, "the local copy went before the chunk was durable");
    let stores = r.fabric.requests_all(Op::Store);
    for id in r.fabric.node_ids() {
        r.fabric.set_fault(id, NodeFault::Healthy);
    }
    let report = VetWorker.run_once(&r.vault, &r.fabric).await.unwrap();
    assert_eq!((report.passed, report.promoted), (3, 1), "{report:?}");
    assert_eq!(state(&r, &addr), ChunkState::Durable);
    let s = r.vault.status().unwrap();
    assert_eq!((s.durable, s.pending, s.churn.vetting_chunks), (1, 0, 0), "{s:?}");
    assert_eq!(r.fabric.requests_all(Op::Store), stores, "the chunk was uploaded again");
}

/// A forger acks without storing and never answers an audit: its ack never makes the chunk
/// durable, no repair runs while its vetting window is open, and past it the chunk is placed on
/// another node, which is vetted in turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_ack_never_counts_and_its_chunk_is_placed_elsewhere() {
    // Nodes 3 and 4 are away during the upload, so the forger (node 0) is one of the three.
    let r = rig(5, |i| match i {
        0 => NodeFault::ForgesAcks,
        3 | 4 => NodeFault::Offline,
        _ => NodeFault::Healthy,
    });
    let ids = r.fabric.node_ids();
    let forger = ids[0];
    let addr = stored(&r).await;
    assert!(holders_known(&r, &addr).contains(&forger));
    for id in &ids[3..] {
        r.fabric.set_fault(*id, NodeFault::Healthy);
    }
    for _ in 0..3 {
        let report = VetWorker.run_once(&r.vault, &r.fabric).await.unwrap();
        assert_eq!(report.healed, 0, "repaired while the vetting window is open: {report:?}");
        assert_eq!(state(&r, &addr), ChunkState::Pending, "a forged ack counted");
    }
    r.clock.advance(VET_WITHIN + Duration::from_secs(1));
    let healed = VetWorker.run_once(&r.vault, &r.fabric).await.unwrap();
    assert_eq!(healed.healed, 1, "{healed:?}");
    // Passes until the new holder is vetted and the chunk made durable.
    let deadline = Instant::now() + Duration::from_secs(30);
    while state(&r, &addr) != ChunkState::Durable {
        VetWorker.run_once(&r.vault, &r.fabric).await.unwrap();
        assert!(Instant::now() < deadline, "never durable elsewhere");
    }
    let holders = r.fabric.holders(&addr);
    assert_eq!(holders.len(), 3, "{holders:?}");
    assert!(!holders.contains(&forger));
    let s = r.vault.status().unwrap();
    assert_eq!((s.durable, s.pending), (1, 0), "{s:?}");
}

/// A node that answers its vetting challenge wrongly ("not found": it kept nothing) is written
/// off at once, named by status, and its chunk is placed elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_failing_its_vetting_is_written_off_at_once_and_named() {
    // Node 3 is away during the upload, so the liar (node 0) is one of the three.
    let r = rig(4, |i| match i {
        0 => NodeFault::ForgesAcks,
        3 => NodeFault::Offline,
        _ => NodeFault::Healthy,
    });
    let ids = r.fabric.node_ids();
    let liar = ids[0];
    let addr = stored(&r).await;
    assert!(holders_known(&r, &addr).contains(&liar));
    r.fabric.set_fault(ids[3], NodeFault::Healthy);
    r.fabric.set_fault(liar, NodeFault::Healthy); // it answers now: "not found"
    let deadline = Instant::now() + Duration::from_secs(30);
    while state(&r, &addr) != ChunkState::Durable {
        VetWorker.run_once(&r.vault, &r.fabric).await.unwrap();
        assert!(Instant::now() < deadline, "never durable elsewhere");
    }
    let rec = r.vault.m.read().unwrap().node(&liar).unwrap().expect("record");
    assert!(rec.written_off && !rec.vetted, "{rec:?}");
    let s = r.vault.status().unwrap();
    assert_eq!(s.churn.failed_vetting, vec![liar.to_string()], "{s:?}");
    assert!(!r.fabric.holders(&addr).contains(&liar));
}
