//! Model-based property test: random sequences of filesystem operations run against the vault
//! service (real redb manifest, staging, background chunk pipeline; no fabric needed since the
//! sealed chunks stay in the local outbox) and against a simple in-memory model; after every
//! step the results and, at the end, the whole tree must agree.

use proptest::prelude::*;
use quloud::adapters::nats::fabric::NatsFabric;
use quloud::app::vault::{run_pipeline, Caller, FsError, PipelineStats, SetAttr, Vault, VaultOptions};
use quloud::domain::fs::{Kind, ROOT_INO};
use quloud::domain::keys::MasterKey;
use std::collections::HashMap;
use std::sync::Arc;
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
    /// Wait until every closed file is chunked into the outbox, so later reads take the chunk path.
    Settle,
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

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let home = tempfile::tempdir().unwrap();
    let keys = Arc::new(MasterKey::from_bytes([3; 32]).derive());
    let vault: Arc<Vault<NatsFabric>> = Arc::new(
        Vault::load(
            home.path(),
            keys,
            VaultOptions::default(),
            &quloud::adapters::local::LocalFiles,
            Arc::new(quloud::adapters::clock::SystemClock),
        )
        .unwrap(),
    );
    let cancel = CancellationToken::new();
    let pipeline =
        tokio::spawn(run_pipeline(vault.clone(), Arc::new(PipelineStats::default()), cancel.clone()));
    let mut m = Model::default();
    for op in ops {
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
            Op::Settle => {
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
                while vault.status().unwrap().staged_files > 0 {
                    prop_assert!(std::time::Instant::now() < deadline, "files never chunked");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                prop_assert_eq!(vault.status().unwrap().pending, vault.status().unwrap().chunks);
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
        let content = &m.files[id];
        prop_assert_eq!(a.size, content.len() as u64);
        let fh = vault.open(a.ino, libc::O_RDONLY).unwrap();
        let got = vault.read(a.ino, fh, 0, content.len() as u32 + 10).await.unwrap();
        vault.release(a.ino, fh).unwrap();
        prop_assert!(*got == content[..], "content of {} differs", String::from_utf8_lossy(NAMES[f]));
    }
    cancel.cancel();
    let _ = pipeline.await;
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
