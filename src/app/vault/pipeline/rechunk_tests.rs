//! In-place writes, appends and truncates of files staged in part against an in-memory model:
//! random edits over files of many chunks with remounts in between; the content always reads
//! back as the model's, only the chunks around a change are loaded, and the committed chunk list
//! is the one a fresh chunking of the whole content gives.

use crate::app::vault::pipeline::uploader_tests::CountingFabric;
use crate::app::vault::{Caller, Fh, Vault, VaultOptions};
use crate::domain::chunker::chunk_ranges;
use crate::domain::fs::{Ino, ROOT_INO};
use crate::domain::keys::MasterKey;
use proptest::prelude::*;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

const MIB: usize = 1 << 20;

fn load(home: &Path) -> Arc<Vault<CountingFabric>> {
    let keys = Arc::new(MasterKey::from_bytes([7; 32]).derive());
    Arc::new(
        Vault::load(
            home,
            crate::adapters::redb::manifest::open_in(home),
            keys,
            VaultOptions::default(),
            &crate::adapters::local::LocalFiles,
            Arc::new(crate::adapters::clock::SystemClock),
        )
        .unwrap(),
    )
}

fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut block = blake3::hash(&seed.to_le_bytes());
    while out.len() < len {
        out.extend_from_slice(block.as_bytes());
        block = blake3::hash(block.as_bytes());
    }
    out.truncate(len);
    out
}

async fn read_range(
    vault: &Arc<Vault<CountingFabric>>,
    ino: Ino,
    fh: Fh,
    start: usize,
    end: usize,
) -> Vec<u8> {
    let mut out = Vec::new();
    while start + out.len() < end {
        let want = (end - start - out.len()).min(MIB) as u32;
        let piece = vault.read(ino, fh, (start + out.len()) as u64, want).await.unwrap();
        assert!(!piece.is_empty(), "short read at {}", start + out.len());
        out.extend_from_slice(&piece);
    }
    out
}

/// Chunks the closed file (the chunker runs on a blocking thread, as in the mount).
async fn chunk(vault: &Arc<Vault<CountingFabric>>, ino: Ino) {
    let v = vault.clone();
    tokio::task::spawn_blocking(move || v.chunk_files(&[ino])).await.unwrap().unwrap();
    assert!(!vault.m.view().is_staged(ino).unwrap(), "the file is still staged");
}

/// A clean remount: what is open is synced, the manifest checkpointed, the vault loaded again.
async fn remount(home: &Path, vault: Arc<Vault<CountingFabric>>) -> Arc<Vault<CountingFabric>> {
    vault.checkpoint().unwrap();
    let mut vault = vault;
    // Read-ahead tasks hold the vault for a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match Arc::try_unwrap(vault) {
            Ok(v) => break drop(v),
            Err(v) if std::time::Instant::now() < deadline => {
                vault = v;
                tokio::task::yield_now().await;
            }
            Err(_) => panic!("the vault is still held"),
        }
    }
    load(home)
}

/// The committed chunk list is the one a fresh chunking of `content` gives.
fn assert_canonical(vault: &Vault<CountingFabric>, ino: Ino, content: &[u8]) {
    let got: Vec<(u64, u32)> =
        vault.m.view().extents(ino, 0, u64::MAX).unwrap().iter().map(|e| (e.offset, e.len)).collect();
    let want: Vec<(u64, u32)> =
        chunk_ranges(content, vault.keys.chunker_seed()).map(|r| (r.start as u64, r.len() as u32)).collect();
    assert_eq!(got, want, "the chunk list differs from a fresh chunking");
}

/// A file of `len` random bytes, chunked and committed, in a freshly mounted vault.
async fn committed_file(home: &Path, len: usize, seed: u64) -> (Arc<Vault<CountingFabric>>, Ino, Vec<u8>) {
    let vault = load(home);
    let data = random(len, seed);
    let (attr, fh) = vault.create(Caller { uid: 0, gid: 0 }, ROOT_INO, b"big", 0o644, 0, 0).unwrap();
    for (i, piece) in data.chunks(MIB).enumerate() {
        vault.write_staged(attr.ino, fh, (i * MIB) as u64, piece).unwrap().unwrap();
    }
    vault.release(attr.ino, fh).unwrap();
    chunk(&vault, attr.ino).await;
    let vault = remount(home, vault).await;
    (vault, attr.ino, data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_write_into_a_large_file_loads_and_stages_only_nearby_chunks() {
    let home = tempfile::tempdir().unwrap();
    let (vault, ino, mut model) = committed_file(home.path(), 32 * MIB, 1).await;
    let before = vault.m.view().extents(ino, 0, u64::MAX).unwrap();
    let fh = vault.open(ino, libc::O_WRONLY).unwrap();
    let at = 16 * MIB + 12345;
    let patch = random(4096, 2);
    vault.write(ino, fh, at as u64, patch.clone()).await.unwrap();
    model[at..at + patch.len()].copy_from_slice(&patch);
    let stats = &vault.read_stats;
    assert_eq!(stats.loaded_bytes.load(Ordering::Relaxed), 0, "the write loaded chunks");
    assert_eq!(stats.staged_bytes.load(Ordering::Relaxed), 4096);
    vault.release(ino, fh).unwrap();
    chunk(&vault, ino).await;
    let loaded = stats.loaded_bytes.load(Ordering::Relaxed);
    assert!(loaded <= 4 * MIB as u64, "rechunking loaded {loaded} bytes");
    let after = vault.m.view().extents(ino, 0, u64::MAX).unwrap();
    let new = after.iter().filter(|e| !before.contains(e)).count();
    assert!(new <= 3, "{new} new chunks for a 4 KiB write");
    assert_canonical(&vault, ino, &model);
    let vault = remount(home.path(), vault).await;
    assert_eq!(read_range(&vault, ino, 0, 0, model.len()).await, model);
}

/// One step of the model test.
#[derive(Clone, Debug)]
enum Op {
    /// Writes `len` bytes at a point of the file (its end: an append).
    Write { at: u32, len: u32, seed: u64 },
    /// Truncates (or extends) to a fraction of the size.
    Truncate { per_mille: u32 },
    /// Reads a range and compares it with the model.
    Read { at: u32, len: u32 },
    /// Closes the file (it is chunked and committed) and opens it again.
    Close,
    /// fsync, then a remount with the file still staged.
    Remount,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<u32>(), 1u32..300_000, any::<u64>()).prop_map(|(at, len, seed)| Op::Write { at, len, seed }),
        1 => (0u32..1300).prop_map(|per_mille| Op::Truncate { per_mille }),
        2 => (any::<u32>(), 1u32..2_000_000).prop_map(|(at, len)| Op::Read { at, len }),
        1 => Just(Op::Close),
        1 => Just(Op::Remount),
    ]
}

async fn run_model(ops: Vec<Op>, len: usize, seed: u64) {
    let home = tempfile::tempdir().unwrap();
    let (mut vault, ino, mut model) = committed_file(home.path(), len, seed).await;
    let mut fh = vault.open(ino, libc::O_RDWR).unwrap();
    for op in ops {
        match op {
            Op::Write { at, len, seed } => {
                let at = at as usize % (model.len() + 1);
                let data = random(len as usize, seed);
                vault.write(ino, fh, at as u64, data.clone()).await.unwrap();
                if model.len() < at + data.len() {
                    model.resize(at + data.len(), 0);
                }
                model[at..at + data.len()].copy_from_slice(&data);
            }
            Op::Truncate { per_mille } => {
                let size = model.len() * per_mille as usize / 1000;
                let set = crate::app::vault::SetAttr { size: Some(size as u64), ..Default::default() };
                vault.setattr(ino, set).await.unwrap();
                model.resize(size, 0);
            }
            Op::Read { at, len } => {
                let start = at as usize % (model.len() + 1);
                let end = (start + len as usize).min(model.len());
                assert_eq!(
                    read_range(&vault, ino, fh, start, end).await,
                    model[start..end],
                    "read {start}..{end}"
                );
            }
            Op::Close => {
                vault.release(ino, fh).unwrap();
                chunk(&vault, ino).await;
                assert_canonical(&vault, ino, &model);
                fh = vault.open(ino, libc::O_RDWR).unwrap();
            }
            Op::Remount => {
                vault.fsync(ino, fh, false).await.unwrap();
                vault.release(ino, fh).unwrap();
                vault = remount(home.path(), vault).await;
                fh = vault.open(ino, libc::O_RDWR).unwrap();
            }
        }
        assert_eq!(vault.getattr(ino).unwrap().size, model.len() as u64);
    }
    assert_eq!(read_range(&vault, ino, fh, 0, model.len()).await, model, "before the last close");
    vault.release(ino, fh).unwrap();
    chunk(&vault, ino).await;
    assert_canonical(&vault, ino, &model);
    let vault = remount(home.path(), vault).await;
    assert_eq!(read_range(&vault, ino, 0, 0, model.len()).await, model, "after the last remount");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, max_shrink_iters: 20, ..ProptestConfig::default() })]
    #[test]
    fn in_place_edits_match_the_model(
        ops in proptest::collection::vec(op(), 1..14),
        len in (3 * MIB)..(7 * MIB),
        seed in any::<u64>(),
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(run_model(ops, len, seed));
    }
}
