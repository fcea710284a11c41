//! Chunks queued for upload while their files are still being sealed: what the manifest holds
//! before the files commit, after they commit, after a crash in between, and when a file
//! changes under the sealing. (Uploads themselves are proven on a real broker in `tests/`.)

use crate::app::vault::pipeline::uploader_tests::CountingFabric;
use crate::app::vault::{Caller, HealthOptions, Vault, VaultOptions};
use crate::domain::fs::{Ino, Replica, ROOT_INO};
use crate::domain::ids::{Addr, NodeId};
use crate::domain::keys::MasterKey;
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const MIB: usize = 1 << 20;

fn load(home: &Path) -> Arc<Vault<CountingFabric>> {
    load_with(home, VaultOptions::default())
}

fn load_with(home: &Path, opts: VaultOptions) -> Arc<Vault<CountingFabric>> {
    let keys = Arc::new(MasterKey::from_bytes([7; 32]).derive());
    Arc::new(
        Vault::load(
            home,
            crate::adapters::redb::manifest::open_in(home),
            keys,
            opts,
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

/// Writes `data` into `ino` (a new file "big" when `ino` is `None`) and closes it.
fn write_file(vault: &Vault<CountingFabric>, ino: Option<Ino>, data: &[u8]) -> Ino {
    write_named(vault, ino, b"big", data)
}

fn write_named(vault: &Vault<CountingFabric>, ino: Option<Ino>, name: &[u8], data: &[u8]) -> Ino {
    let (ino, fh) = match ino {
        Some(ino) => (ino, vault.open(ino, libc::O_WRONLY).unwrap()),
        None => {
            let (attr, fh) = vault.create(Caller { uid: 0, gid: 0 }, ROOT_INO, name, 0o644, 0, 0).unwrap();
            (attr.ino, fh)
        }
    };
    for (i, piece) in data.chunks(MIB).enumerate() {
        vault.write_staged(ino, fh, (i * MIB) as u64, piece).unwrap().unwrap();
    }
    vault.release(ino, fh).unwrap();
    ino
}

async fn read_all(vault: &Arc<Vault<CountingFabric>>, ino: Ino, len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < len {
        let piece = vault.read(ino, 0, out.len() as u64, MIB as u32).await.unwrap();
        assert!(!piece.is_empty(), "short read at {}", out.len());
        out.extend_from_slice(&piece);
    }
    out
}

/// Every chunk that no file references is on its way out: waiting out the garbage-collection
/// grace period, or queued while its file is being sealed.
fn assert_no_orphans(vault: &Vault<CountingFabric>) {
    let rx = vault.m.read().unwrap();
    let unreferenced: HashSet<Addr> = rx.unreferenced(u64::MAX, usize::MAX).unwrap().into_iter().collect();
    let sealing: HashSet<Addr> = rx.sealing().unwrap().into_iter().collect();
    for (addr, c) in rx.summary().unwrap().chunks {
        assert!(
            c.refs > 0 || unreferenced.contains(&addr) || sealing.contains(&addr),
            "chunk {addr:?} has no reference and nothing will ever collect it"
        );
    }
}

/// A vault whose garbage collection takes unreferenced chunks at once, and a fabric for it.
fn without_grace(home: &Path) -> (Arc<Vault<CountingFabric>>, CountingFabric) {
    let health = HealthOptions { gc_grace: Duration::ZERO, ..HealthOptions::default() };
    let vault = load_with(home, VaultOptions { health, ..VaultOptions::default() });
    (vault, CountingFabric::new(Duration::ZERO, Duration::ZERO))
}

fn queued(vault: &Vault<CountingFabric>) -> HashSet<Addr> {
    vault.m.read().unwrap().uploads(usize::MAX).unwrap().into_iter().collect()
}

fn file_chunks(vault: &Vault<CountingFabric>, ino: Ino) -> HashSet<Addr> {
    vault.m.view().extents(ino, 0, u64::MAX).unwrap().into_iter().map(|e| e.addr).collect()
}

#[tokio::test]
async fn a_large_file_is_queued_for_upload_while_it_is_still_being_sealed() {
    let home = tempfile::tempdir().unwrap();
    let vault = load(home.path());
    let data = random(8 * MIB, 1);
    let ino = write_file(&vault, None, &data);

    let (prepared, early) = vault.seal_batch(&[ino], MIB);
    // Before the file commits: most of it is queued, and nothing references it yet.
    let early_bytes: usize =
        early.queued.iter().map(|a| vault.m.view().chunk(a).unwrap().unwrap().ct_len as usize).sum();
    assert!(early_bytes >= 6 * MIB, "only {early_bytes} bytes queued before the file's commit");
    assert_eq!(queued(&vault), early.queued);
    assert_eq!(vault.m.read().unwrap().sealing().unwrap().into_iter().collect::<HashSet<_>>(), early.queued);
    assert!(file_chunks(&vault, ino).is_empty());
    assert_no_orphans(&vault);

    assert_eq!(vault.commit_batch(prepared, early).unwrap(), 1);
    let chunks = file_chunks(&vault, ino);
    assert_eq!(queued(&vault), chunks, "every chunk of the file is queued once");
    assert!(vault.m.read().unwrap().sealing().unwrap().is_empty());
    for a in &chunks {
        assert!(vault.m.view().chunk(a).unwrap().unwrap().refs > 0);
    }
    assert_no_orphans(&vault);
    assert!(read_all(&vault, ino, data.len()).await == data);
}

#[tokio::test]
async fn chunks_queued_ahead_of_a_commit_that_never_came_are_released_at_the_next_mount() {
    let home = tempfile::tempdir().unwrap();
    let vault = load(home.path());
    let data = random(8 * MIB, 2);
    let ino = write_file(&vault, None, &data);
    let (prepared, early) = vault.seal_batch(&[ino], MIB);
    assert!(!early.queued.is_empty());
    // The mount dies here: the file's commit never happens.
    drop((prepared, early));
    drop(vault);

    let vault = load(home.path());
    assert!(vault.m.read().unwrap().sealing().unwrap().is_empty(), "the next mount releases them");
    assert_no_orphans(&vault);
    // The file is still staged and sealed again; its chunks are referenced once more.
    assert_eq!(vault.chunk_files(&[ino]).unwrap(), 1);
    let chunks = file_chunks(&vault, ino);
    assert!(!chunks.is_empty());
    assert!(queued(&vault).is_superset(&chunks));
    let rx = vault.m.read().unwrap();
    assert!(rx.unreferenced(u64::MAX, usize::MAX).unwrap().is_empty(), "the file took back every chunk");
    drop(rx);
    assert_no_orphans(&vault);
    assert!(read_all(&vault, ino, data.len()).await == data);
}

#[tokio::test]
async fn a_file_changed_while_it_was_sealed_leaves_no_orphan_chunks() {
    let home = tempfile::tempdir().unwrap();
    let vault = load(home.path());
    let ino = write_file(&vault, None, &random(8 * MIB, 3));
    let (prepared, early) = vault.seal_batch(&[ino], MIB);
    let sealed_early = early.queued.clone();
    assert!(!sealed_early.is_empty());
    // Rewritten before the sealed version commits: that version is dropped.
    let data = random(8 * MIB, 4);
    write_file(&vault, Some(ino), &data);
    assert_eq!(vault.commit_batch(prepared, early).unwrap(), 0);
    assert!(vault.m.read().unwrap().sealing().unwrap().is_empty());
    assert_no_orphans(&vault);

    assert_eq!(vault.chunk_files(&[ino]).unwrap(), 1);
    let chunks = file_chunks(&vault, ino);
    assert!(chunks.is_disjoint(&sealed_early), "different content, different chunks");
    assert_no_orphans(&vault);
    assert!(read_all(&vault, ino, data.len()).await == data);
}

#[tokio::test]
async fn collecting_a_chunk_keeps_the_outbox_copy_the_chunker_just_sealed_again() {
    let home = tempfile::tempdir().unwrap();
    let (vault, fabric) = without_grace(home.path());
    let data = random(2 * MIB, 5);
    // Stored once, then deleted: its chunks wait out a grace period of zero.
    let old = write_named(&vault, None, b"old", &data);
    assert_eq!(vault.chunk_files(&[old]).unwrap(), 1);
    vault.unlink(ROOT_INO, b"old").unwrap();
    // The same content again: sealed as new chunks into the outbox ...
    let ino = write_named(&vault, None, b"new", &data);
    let (prepared, early) = vault.seal_batch(&[ino], usize::MAX);
    // ... while garbage collection forgets the old records ...
    assert!(crate::app::vault::GcWorker.run_once(&*vault, &fabric).await.unwrap() > 0);
    // ... and then the chunker queues them: each must still have its ciphertext.
    assert_eq!(vault.commit_batch(prepared, early).unwrap(), 1);
    let rx = vault.m.read().unwrap();
    for addr in file_chunks(&vault, ino) {
        assert!(rx.upload_queued(&addr).unwrap(), "{addr:?} is not queued");
        let kept = vault.pipeline.outbox.contains(&addr) || rx.small_outbox(&addr).unwrap().is_some();
        assert!(kept, "{addr:?} is queued for upload with no ciphertext left to upload");
    }
    drop(rx);
    assert_no_orphans(&vault);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_whose_chunking_failed_is_chunked_once_the_disk_works_again() {
    use crate::app::vault::{run_pipeline, PipelineStats};
    let home = tempfile::tempdir().unwrap();
    let vault = load(home.path());
    // The outbox cannot take files: a plain file where its directory was.
    let outbox = home.path().join("outbox");
    std::fs::remove_dir(&outbox).unwrap();
    std::fs::write(&outbox, b"not a directory").unwrap();
    let (stats, cancel) = (Arc::new(PipelineStats::default()), tokio_util::sync::CancellationToken::new());
    let pipeline = tokio::spawn(run_pipeline(vault.clone(), stats, cancel.clone()));
    let data = random(2 * MIB, 6);
    let ino = write_file(&vault, None, &data);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while Vault::<CountingFabric>::lock(&vault.pipeline.chunk_retry).is_empty() {
        assert!(std::time::Instant::now() < deadline, "the chunker never tried the file");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(vault.m.read().unwrap().is_staged(ino).unwrap());
    // The disk works again: the file is chunked without a remount or another close.
    std::fs::remove_file(&outbox).unwrap();
    std::fs::create_dir(&outbox).unwrap();
    while vault.m.read().unwrap().is_staged(ino).unwrap() {
        assert!(std::time::Instant::now() < deadline, "the file was never chunked again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cancel.cancel();
    pipeline.await.unwrap();
    assert!(!file_chunks(&vault, ino).is_empty());
    assert!(read_all(&vault, ino, data.len()).await == data);
}

/// Garbage collection never forgets a chunk whose upload has finished but is not recorded yet:
/// the replicas it just got would stay on the nodes until their leases end.
#[tokio::test]
async fn a_chunk_uploaded_but_not_yet_recorded_is_collected_from_its_replicas() {
    let home = tempfile::tempdir().unwrap();
    let (vault, fabric) = without_grace(home.path());
    let ino = write_named(&vault, None, b"gone", &random(2 * MIB, 9));
    assert_eq!(vault.chunk_files(&[ino]).unwrap(), 1);
    let chunks = file_chunks(&vault, ino);
    vault.unlink(ROOT_INO, b"gone").unwrap();
    // Their uploads have finished, as `upload_one` leaves them, and wait for `commit_uploads`.
    let node = NodeId([9; 32]);
    for a in &chunks {
        let replicas = vec![Replica::acked(node, 0, u64::MAX / 2, 1)];
        Vault::<CountingFabric>::lock(&vault.pipeline.uploads_done).push((*a, replicas));
    }
    crate::app::vault::GcWorker.run_once(&*vault, &fabric).await.unwrap();
    vault.commit_uploads();
    crate::app::vault::GcWorker.run_once(&*vault, &fabric).await.unwrap();
    let deleted: HashSet<Addr> =
        fabric.deleted().into_iter().filter(|(n, _)| *n == node).map(|(_, a)| a).collect();
    assert_eq!(deleted, chunks, "a replica was left on its node to wait out its lease");
    assert!(vault.m.read().unwrap().summary().unwrap().chunks.is_empty(), "collected chunks are forgotten");
}
