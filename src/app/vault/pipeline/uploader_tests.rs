//! Unit tests of the uploader's scheduling, against a fabric that only counts stores (the
//! uploads themselves are proven on a real broker and real nodes in `tests/`).

use crate::app::vault::{run_pipeline, Caller, PipelineStats, Vault, VaultOptions};
use crate::domain::fs::ROOT_INO;
use crate::domain::ids::{Addr, NodeId};
use crate::domain::keys::MasterKey;
use crate::domain::proof::ProofSecret;
use crate::domain::wire::{Status, StoreAck};
use crate::ports::fabric::{AuditVerdict, ChunkFabric, FabricError, Publish, RootsServed, StoreGoal};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Stores nothing: counts stores in flight and answers each after `delay`, except the first
/// chunk it sees, which takes `slow`.
pub(in crate::app::vault) struct CountingFabric {
    inflight: AtomicUsize,
    max_inflight: AtomicUsize,
    done: AtomicUsize,
    first: Mutex<Option<Addr>>,
    delay: Duration,
    slow: Duration,
    deleted: Mutex<Vec<(NodeId, Addr)>>,
}

impl CountingFabric {
    pub(in crate::app::vault) fn new(delay: Duration, slow: Duration) -> Self {
        CountingFabric {
            inflight: AtomicUsize::new(0),
            max_inflight: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            first: Mutex::new(None),
            delay,
            slow,
            deleted: Mutex::default(),
        }
    }

    /// Every (node, chunk) a delete was sent for.
    pub(in crate::app::vault) fn deleted(&self) -> Vec<(NodeId, Addr)> {
        self.deleted.lock().unwrap().clone()
    }

    /// The most stores in flight at once since the last call.
    fn take_max(&self) -> usize {
        self.max_inflight.swap(self.inflight.load(Ordering::SeqCst), Ordering::SeqCst)
    }
}

fn unused<T>() -> Result<T, FabricError> {
    Err(FabricError::Broker("not used by these tests".into()))
}

impl ChunkFabric for CountingFabric {
    fn link(&self) -> crate::ports::fabric::Link {
        crate::ports::fabric::Link { connected: true, since_ms: 0 }
    }

    async fn up_within(&self, _: std::time::Duration) -> bool {
        true
    }

    async fn store(&self, chunk: Publish<'_>, goal: StoreGoal<'_>) -> Result<Vec<StoreAck>, FabricError> {
        let now = self.inflight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_inflight.fetch_max(now, Ordering::SeqCst);
        let slow = *self.first.lock().unwrap().get_or_insert(chunk.addr) == chunk.addr;
        tokio::time::sleep(if slow { self.slow } else { self.delay }).await;
        self.inflight.fetch_sub(1, Ordering::SeqCst);
        self.done.fetch_add(1, Ordering::SeqCst);
        Ok((0..goal.replicas)
            .map(|i| StoreAck {
                node: NodeId([i as u8 + 1; 32]),
                addr: chunk.addr,
                slot: i as u8,
                lease_expiry_ms: u64::MAX / 2,
                signed_at_ms: 0,
                signature: [0; 64],
            })
            .collect())
    }

    async fn get(
        &self,
        _: &[(Addr, ProofSecret)],
        _: &[NodeId],
    ) -> Result<Vec<(Addr, bytes::Bytes)>, FabricError> {
        unused()
    }

    async fn audit(&self, _: NodeId, _: Addr, _: &ProofSecret, _: u64) -> Result<AuditVerdict, FabricError> {
        unused()
    }

    /// Every node passes (the vetting of new nodes audits them after their first acks).
    async fn audit_many(
        &self,
        _: NodeId,
        items: &[(Addr, ProofSecret, u64)],
    ) -> Result<Vec<AuditVerdict>, FabricError> {
        Ok(vec![AuditVerdict::Passed; items.len()])
    }

    async fn renew(
        &self,
        _: NodeId,
        _: &[(Addr, ProofSecret)],
        _: u64,
    ) -> Result<Vec<(Addr, Status)>, FabricError> {
        unused()
    }

    async fn publish_root(&self, _: &str, _: &[u8]) -> Result<(), FabricError> {
        unused()
    }

    async fn lease(&self, _: &str) -> Result<Option<crate::ports::fabric::LeaseHeld>, FabricError> {
        Ok(None)
    }

    async fn swap_lease(
        &self,
        _: &str,
        _: &[u8],
        _: u64,
    ) -> Result<crate::ports::fabric::LeaseSwap, FabricError> {
        Ok(crate::ports::fabric::LeaseSwap::Swapped(1))
    }

    async fn fetch_roots(&self, _: &str) -> Result<RootsServed, FabricError> {
        Ok(Vec::new())
    }

    async fn delete(
        &self,
        node: NodeId,
        items: &[(Addr, ProofSecret)],
    ) -> Result<Vec<(Addr, Status)>, FabricError> {
        self.deleted.lock().unwrap().extend(items.iter().map(|(a, _)| (node, *a)));
        Ok(items.iter().map(|(a, _)| (*a, Status::Ok)).collect())
    }
}

/// A vault on `fabric` with its pipeline running; cancel the token to stop it.
fn vault_with(
    home: &std::path::Path,
    fabric: &Arc<CountingFabric>,
    opts: VaultOptions,
) -> (Arc<Vault<CountingFabric>>, Arc<PipelineStats>, CancellationToken) {
    let keys = Arc::new(MasterKey::from_bytes([9; 32]).derive());
    let vault = Arc::new(
        Vault::load(
            home,
            crate::adapters::redb::manifest::open_in(home),
            keys,
            opts,
            &crate::adapters::local::LocalFiles,
            Arc::new(crate::adapters::clock::SystemClock),
        )
        .unwrap(),
    );
    vault.set_fabric(fabric.clone());
    let (stats, cancel) = (Arc::new(PipelineStats::default()), CancellationToken::new());
    tokio::spawn(run_pipeline(vault.clone(), stats.clone(), cancel.clone()));
    (vault, stats, cancel)
}

/// Creates, writes and closes file `name` (one small chunk of its own).
fn write_file(vault: &Vault<CountingFabric>, name: &str) {
    let caller = Caller { uid: 0, gid: 0 };
    let (attr, fh) = vault.create(caller, ROOT_INO, name.as_bytes(), 0o644, 0, 0).unwrap();
    vault.write_staged(attr.ino, fh, 0, format!("the content of {name}").as_bytes()).unwrap().unwrap();
    vault.release(attr.ino, fh).unwrap();
}

async fn wait_until(what: &str, deadline: Duration, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_chunk_holds_back_no_other_chunk() {
    let home = tempfile::tempdir().unwrap();
    // The first chunk takes far longer than all the others together.
    let fabric = Arc::new(CountingFabric::new(Duration::from_millis(1), Duration::from_secs(30)));
    let opts =
        VaultOptions { upload_concurrency: 4, foreground_quiet: Duration::ZERO, ..VaultOptions::default() };
    let (vault, stats, cancel) = vault_with(home.path(), &fabric, opts);
    // More than one queue read's worth: uploads used to go in batches of 256 that each waited
    // for their slowest chunk.
    for i in 0..600 {
        write_file(&vault, &format!("f{i}"));
    }
    wait_until(
        "every other chunk is uploaded while the slow one is still in flight",
        Duration::from_secs(25),
        || fabric.done.load(Ordering::SeqCst) >= 599,
    )
    .await;
    assert_eq!(fabric.inflight.load(Ordering::SeqCst), 1, "only the slow chunk is left");
    assert!(fabric.take_max() <= 4, "more uploads in flight than upload_concurrency");
    // The uploader counts a chunk once its acks are recorded, a moment after the fabric returns.
    wait_until("every finished upload is counted", Duration::from_secs(10), || {
        stats.chunks_uploaded.load(Ordering::SeqCst) >= 599
    })
    .await;
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_step_back_while_files_are_created_and_catch_up_after() {
    let home = tempfile::tempdir().unwrap();
    let fabric = Arc::new(CountingFabric::new(Duration::from_millis(20), Duration::from_millis(20)));
    // A quiet period long enough that the creating loop below never pauses for that long.
    let opts = VaultOptions {
        upload_concurrency: 8,
        foreground_uploads: 2,
        foreground_quiet: Duration::from_secs(2),
        ..VaultOptions::default()
    };
    let (vault, _stats, cancel) = vault_with(home.path(), &fabric, opts);
    let busy_until = Instant::now() + Duration::from_millis(1500);
    let mut n = 0;
    while Instant::now() < busy_until {
        write_file(&vault, &format!("f{n}"));
        n += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let during = fabric.take_max();
    assert!(fabric.done.load(Ordering::SeqCst) > 0, "nothing was uploaded while files were created");
    assert!(during <= 2, "{during} uploads in flight while files were being created (at most 2)");
    wait_until("everything is uploaded", Duration::from_secs(30), || fabric.done.load(Ordering::SeqCst) >= n)
        .await;
    let after = fabric.take_max();
    assert!(after > 2, "uploads did not speed up once the creating stopped (at most {after} in flight)");
    cancel.cancel();
}

/// A manifest whose durable commits fail with ENOSPC while `full` is set (a full home).
struct FullDisk {
    inner: crate::ports::manifest::Manifest,
    full: std::sync::atomic::AtomicBool,
    /// Durable writes refused so far.
    refused: AtomicUsize,
}

impl FullDisk {
    fn refuse(&self) -> Result<(), crate::domain::fs::FsError> {
        if self.full.load(Ordering::SeqCst) {
            return Err(crate::domain::fs::FsError::NoSpace("injected".into()));
        }
        Ok(())
    }
}

impl crate::ports::manifest::ManifestStore for FullDisk {
    fn read(&self) -> Result<crate::ports::manifest::Rx, crate::domain::fs::FsError> {
        self.inner.read()
    }
    fn view_with(
        &self,
        f: &mut crate::ports::manifest::ReadFn<'_>,
    ) -> Result<(), crate::domain::fs::FsError> {
        self.inner.view_with(f)
    }
    fn write_with(
        &self,
        commit: crate::ports::manifest::Commit,
        f: &mut crate::ports::manifest::WriteFn<'_>,
    ) -> Result<(), crate::domain::fs::FsError> {
        if matches!(commit, crate::ports::manifest::Commit::Durable) {
            if let Err(e) = self.refuse() {
                self.refused.fetch_add(1, Ordering::SeqCst);
                return Err(e);
            }
        }
        self.inner.write_with(commit, f)
    }
    fn start_group_commits(&self, delay: Duration) -> Result<(), crate::domain::fs::FsError> {
        self.inner.start_group_commits(delay)
    }
    fn flush(&self) -> Result<(), crate::domain::fs::FsError> {
        self.inner.flush()
    }
    fn checkpoint(&self) -> Result<(), crate::domain::fs::FsError> {
        self.refuse()?;
        self.inner.checkpoint()
    }
    fn sync(&self) -> Result<(), crate::domain::fs::FsError> {
        self.refuse()?;
        self.inner.sync()
    }
    fn is_read_only(&self) -> bool {
        self.inner.is_read_only()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_keeps_finished_uploads_for_their_record_instead_of_uploading_them_again() {
    let home = tempfile::tempdir().unwrap();
    let fabric = Arc::new(CountingFabric::new(Duration::from_millis(300), Duration::from_millis(300)));
    let m = Arc::new(FullDisk {
        inner: crate::adapters::redb::manifest::open_in(home.path()),
        full: std::sync::atomic::AtomicBool::new(false),
        refused: AtomicUsize::new(0),
    });
    let keys = Arc::new(MasterKey::from_bytes([9; 32]).derive());
    let vault = Arc::new(
        Vault::load(
            home.path(),
            m.clone(),
            keys,
            VaultOptions { foreground_quiet: Duration::ZERO, ..VaultOptions::default() },
            &crate::adapters::local::LocalFiles,
            Arc::new(crate::adapters::clock::SystemClock),
        )
        .unwrap(),
    );
    vault.set_fabric(fabric.clone());
    let (stats, cancel) = (Arc::new(PipelineStats::default()), CancellationToken::new());
    tokio::spawn(run_pipeline(vault.clone(), stats.clone(), cancel.clone()));
    write_file(&vault, "f");
    wait_until("the chunk is being uploaded", Duration::from_secs(10), || {
        fabric.inflight.load(Ordering::SeqCst) == 1
    })
    .await;
    m.full.store(true, Ordering::SeqCst);
    wait_until("the upload finished", Duration::from_secs(10), || fabric.done.load(Ordering::SeqCst) == 1)
        .await;
    // Recording it fails, and is tried again (after a backoff); the upload used to be redone at
    // once after each failure, in a loop, while the disk was full.
    wait_until("recording was tried again", Duration::from_secs(10), || {
        m.refused.load(Ordering::SeqCst) >= 2
    })
    .await;
    assert_eq!(
        fabric.done.load(Ordering::SeqCst),
        1,
        "a finished upload is not redone while its record waits"
    );
    m.full.store(false, Ordering::SeqCst);
    wait_until("the upload is recorded once the disk has room", Duration::from_secs(10), || {
        vault.status().is_ok_and(|s| s.queued == 0 && s.pending == 0)
    })
    .await;
    assert_eq!(fabric.done.load(Ordering::SeqCst), 1);
    cancel.cancel();
}
