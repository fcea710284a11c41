//! Model-based property test: random sequences of filesystem operations run against the vault
//! service (real redb manifest, staging, background chunk pipeline) and against a simple
//! in-memory model; after every step the results and, at the end, the whole tree must agree.
//!
//! The vault starts without a fabric, so sealed chunks stay in the local outbox and reads take
//! that path. An `Upload` step hands it the in-memory fabric (four real node services), waits
//! until every chunk is quorum-durable, reloads the vault from its home (empty caches, no disk
//! cache) and reads every file back through the fabric; `Fault` steps make one node offline,
//! mute, slow or a liar meanwhile, which the vault must ride out without a wrong byte.

use proptest::prelude::*;
use quloud::adapters::memory::{MemoryFabric, MemoryFabricOptions, NodeFault};
use quloud::adapters::redb::manifest::RedbManifests;
use quloud::app::node::Op as NodeOp;
use quloud::app::vault::{run_pipeline, Caller, FsError, PipelineStats, SetAttr, Vault, VaultOptions};
use quloud::domain::fs::{Kind, ROOT_INO};
use quloud::domain::keys::{MasterKey, VaultKeys};
use quloud::ports::manifest::ManifestFiles;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const NAMES: [&[u8]; 5] = [b"a", b"b", b"c", b"d", b"\xc3\xa9t\xc3\xa9"];

#[derive(Clone, Debug)]
enum Op {
    Create(usize),
    Write {
        f: usize,
        offset: u32,
        len: u32,
        seed: u8,
    },
    Truncate {
        f: usize,
        size: u32,
    },
    Rename {
        from: usize,
        to: usize,
    },
    Link {
        from: usize,
        to: usize,
    },
    Unlink(usize),
    Read {
        f: usize,
        offset: u32,
        len: u32,
    },
    /// Wait until every closed file is chunked (into the outbox, or uploaded once the vault has
    /// the fabric), so later reads take the chunk path.
    Settle,
    /// Hand the vault the fabric, wait until everything is durable, reload the vault (caches
    /// evicted) and read every file back through the fabric.
    Upload,
    /// What is wrong with one node from now on (the others are healthy).
    Fault {
        node: usize,
        fault: u8,
    },
}

/// Nodes in the fabric; chunks want three replicas, so one faulty node never blocks a store.
const NODES: usize = 4;

fn node_fault(code: u8) -> NodeFault {
    match code % 5 {
        0 => NodeFault::Healthy,
        1 => NodeFault::Offline,
        2 => NodeFault::DropReplies,
        3 => NodeFault::DelayReplies(Duration::from_millis(20)),
        _ => NodeFault::CorruptReplies,
    }
}

fn op() -> impl Strategy<Value = Op> {
    let f = 0..NAMES.len();
    prop_oneof![
        f.clone().prop_map(Op::Create),
        (f.clone(), 0u32..1_500_000, 0u32..400_000, any::<u8>())
            .prop_map(|(f, offset, len, seed)| Op::Write { f, offset, len, seed }),
        (f.clone(), 0u32..1_600_000).prop_map(|(f, size)| Op::Truncate { f, size }),
        (f.clone(), f.clone()).prop_map(|(from, to)| Op::Rename { from, to }),
        (f.clone(), f.clone()).prop_map(|(from, to)| Op::Link { from, to }),
        f.clone().prop_map(Op::Unlink),
        (f, 0u32..1_600_000, 0u32..300_000).prop_map(|(f, offset, len)| Op::Read { f, offset, len }),
        Just(Op::Settle),
        Just(Op::Upload),
        (0..NODES, any::<u8>()).prop_map(|(node, fault)| Op::Fault { node, fault }),
    ]
}

/// The reference: names → file ids, file ids → contents.
#[derive(Default)]
struct Model {
    names: HashMap<usize, usize>,
    files: HashMap<usize, Vec<u8>>,
    next: usize,
}

fn data(len: u32, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

const ME: Caller = Caller { uid: 0, gid: 0 };

/// A loaded vault with its pipeline running.
struct Running {
    vault: Arc<Vault<MemoryFabric>>,
    cancel: CancellationToken,
    pipeline: JoinHandle<()>,
}

impl Running {
    /// Loads the vault of `home` (no disk cache: chunks come from the outbox or the fabric) and
    /// hands it `fabric`, if any.
    fn load(home: &Path, keys: &Arc<VaultKeys>, fabric: Option<&Arc<MemoryFabric>>) -> Running {
        let opts = VaultOptions { disk_cache_bytes: 0, ..VaultOptions::default() };
        let vault: Arc<Vault<MemoryFabric>> = Arc::new(
            Vault::load(
                home,
                RedbManifests.open(&home.join("manifest.redb"), 0, 0).unwrap(),
                keys.clone(),
                opts,
                &quloud::adapters::local::LocalFiles,
                Arc::new(quloud::adapters::clock::SystemClock),
            )
            .unwrap(),
        );
        if let Some(f) = fabric {
            vault.set_fabric(f.clone());
        }
        let cancel = CancellationToken::new();
        let pipeline =
            tokio::spawn(run_pipeline(vault.clone(), Arc::new(PipelineStats::default()), cancel.clone()));
        Running { vault, cancel, pipeline }
    }

    /// Stops the pipeline and closes the vault (every change checkpointed).
    async fn stop(self) {
        self.cancel.cancel();
        let _ = self.pipeline.await;
        self.vault.checkpoint().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Arc::strong_count(&self.vault) > 1 {
            assert!(Instant::now() < deadline, "the vault is still in use after its pipeline stopped");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Polls the vault's status until `done` holds, for up to `within`.
async fn wait_status(
    vault: &Vault<MemoryFabric>,
    within: Duration,
    what: &str,
    done: impl Fn(&quloud::app::vault::VaultStatus) -> bool,
) -> Result<quloud::app::vault::VaultStatus, TestCaseError> {
    let deadline = Instant::now() + within;
    loop {
        let s = vault.status().unwrap();
        if done(&s) {
            return Ok(s);
        }
        prop_assert!(Instant::now() < deadline, "{}: {:?}", what, s);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads the whole of `f` and compares it with the model.
async fn check_content(vault: &Arc<Vault<MemoryFabric>>, m: &Model, f: usize) -> Result<(), TestCaseError> {
    let content = &m.files[&m.names[&f]];
    let a = vault.lookup(ROOT_INO, NAMES[f]).unwrap();
    prop_assert_eq!(a.size, content.len() as u64);
    let fh = vault.open(a.ino, libc::O_RDONLY).unwrap();
    let got = vault.read(a.ino, fh, 0, content.len() as u32 + 10).await.unwrap();
    vault.release(a.ino, fh).unwrap();
    prop_assert!(*got == content[..], "content of {} differs", String::from_utf8_lossy(NAMES[f]));
    Ok(())
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let home = tempfile::tempdir().unwrap();
    let keys = Arc::new(MasterKey::from_bytes([3; 32]).derive());
    let mut fopts = MemoryFabricOptions::new(NODES);
    fopts.reply_timeout = Duration::from_millis(100);
    let fabric = Arc::new(MemoryFabric::with(fopts, Arc::new(quloud::adapters::clock::SystemClock)));
    let mut online = false;
    let mut running = Running::load(home.path(), &keys, None);
    let mut m = Model::default();
    for op in ops {
        let vault = running.vault.clone();
        match op {
            Op::Create(f) => {
                let r = vault.create(ME, ROOT_INO, NAMES[f], 0o644, 0o022, libc::O_RDWR);
                match (r, m.names.contains_key(&f)) {
                    (Ok((_, fh)), false) => {
                        vault.release(0, fh).unwrap();
                        m.next += 1;
                        m.names.insert(f, m.next);
                        m.files.insert(m.next, Vec::new());
                    }
                    (Err(FsError::Exists), true) => {}
                    (r, exists) => prop_assert!(false, "create {f}: {r:?}, model exists={exists}"),
                }
            }
            Op::Write { f, offset, len, seed } => {
                let Some(&id) = m.names.get(&f) else { continue };
                let ino = vault.lookup(ROOT_INO, NAMES[f]).unwrap().ino;
                let fh = vault.open(ino, libc::O_RDWR).unwrap();
                let bytes = data(len, seed);
                vault.write(ino, fh, offset as u64, bytes.clone()).await.unwrap();
                vault.release(ino, fh).unwrap();
                let content = m.files.get_mut(&id).unwrap();
                let end = offset as usize + len as usize;
                if len > 0 && content.len() < end {
                    content.resize(end, 0);
                }
                content[offset as usize..offset as usize + len as usize].copy_from_slice(&bytes);
            }
            Op::Truncate { f, size } => {
                let Some(&id) = m.names.get(&f) else { continue };
                let ino = vault.lookup(ROOT_INO, NAMES[f]).unwrap().ino;
                let a = vault
                    .setattr(ino, SetAttr { size: Some(size as u64), ..SetAttr::default() })
                    .await
                    .unwrap();
                prop_assert_eq!(a.size, size as u64);
                m.files.get_mut(&id).unwrap().resize(size as usize, 0);
            }
            Op::Rename { from, to } => {
                let r = vault.rename(ROOT_INO, NAMES[from], ROOT_INO, NAMES[to], 0);
                match m.names.get(&from).copied() {
                    None => prop_assert!(matches!(r, Err(FsError::NotFound)), "rename missing: {r:?}"),
                    Some(id) => {
                        r.unwrap();
                        if from != to && m.names.get(&to) != Some(&id) {
                            m.names.remove(&from);
                            m.names.insert(to, id);
                        }
                    }
                }
            }
            Op::Link { from, to } => {
                let (Some(&id), false) = (m.names.get(&from), m.names.contains_key(&to)) else { continue };
                let ino = vault.lookup(ROOT_INO, NAMES[from]).unwrap().ino;
                vault.link(ino, ROOT_INO, NAMES[to]).unwrap();
                m.names.insert(to, id);
            }
            Op::Unlink(f) => {
                let r = vault.unlink(ROOT_INO, NAMES[f]);
                match m.names.remove(&f) {
                    None => prop_assert!(matches!(r, Err(FsError::NotFound))),
                    Some(_) => r.unwrap(),
                }
            }
            Op::Settle if !online => {
                wait_status(&vault, Duration::from_secs(20), "files never chunked", |s| s.staged_files == 0)
                    .await?;
                prop_assert_eq!(vault.status().unwrap().pending, vault.status().unwrap().chunks);
            }
            Op::Settle => {
                let s = wait_status(&vault, Duration::from_secs(30), "files never uploaded", |s| {
                    s.staged_files == 0 && s.pending == 0
                })
                .await?;
                prop_assert_eq!(s.durable, s.chunks);
            }
            Op::Upload => {
                if !online {
                    vault.set_fabric(fabric.clone());
                    online = true;
                }
                wait_status(&vault, Duration::from_secs(30), "files never uploaded", |s| {
                    s.staged_files == 0 && s.pending == 0
                })
                .await?;
                drop(vault);
                running.stop().await;
                running = Running::load(home.path(), &keys, Some(&fabric));
                let gets = fabric.requests_all(NodeOp::Get);
                for f in m.names.keys() {
                    check_content(&running.vault, &m, *f).await?;
                }
                if m.names.values().any(|id| !m.files[id].is_empty()) {
                    prop_assert!(fabric.requests_all(NodeOp::Get) > gets, "nothing was read from the fabric");
                }
            }
            Op::Fault { node, fault } => {
                for (i, id) in fabric.node_ids().into_iter().enumerate() {
                    fabric.set_fault(id, if i == node { node_fault(fault) } else { NodeFault::Healthy });
                }
            }
            Op::Read { f, offset, len } => {
                let Some(&id) = m.names.get(&f) else { continue };
                let ino = vault.lookup(ROOT_INO, NAMES[f]).unwrap().ino;
                let fh = vault.open(ino, libc::O_RDONLY).unwrap();
                let got = vault.read(ino, fh, offset as u64, len).await.unwrap();
                vault.release(ino, fh).unwrap();
                let content = &m.files[&id];
                let lo = (offset as usize).min(content.len());
                let hi = (offset as usize + len as usize).min(content.len());
                prop_assert_eq!(&got[..], &content[lo..hi], "read {} at {} len {}", f, offset, len);
            }
        }
    }
    // Whole-tree check: names, link counts, sizes and contents.
    let vault = running.vault.clone();
    let dir = vault.opendir(ROOT_INO).unwrap();
    let mut listed: Vec<Vec<u8>> = Vec::new();
    vault
        .readdir(ROOT_INO, dir, 0, |e| {
            listed.push(e.name.clone());
            false
        })
        .unwrap();
    vault.releasedir(dir);
    listed.retain(|n| n != b"." && n != b"..");
    let mut expected: Vec<Vec<u8>> = m.names.keys().map(|&f| NAMES[f].to_vec()).collect();
    expected.sort();
    prop_assert_eq!(listed, expected);
    for (&f, id) in &m.names {
        let a = vault.lookup(ROOT_INO, NAMES[f]).unwrap();
        prop_assert_eq!(a.kind, Kind::File);
        let links = m.names.values().filter(|v| *v == id).count() as u32;
        prop_assert_eq!(a.nlink, links);
        check_content(&vault, &m, f).await?;
    }
    drop(vault);
    running.stop().await;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, max_shrink_iters: 200, ..ProptestConfig::default() })]
    #[test]
    fn vault_matches_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(run(ops))?;
    }
}
