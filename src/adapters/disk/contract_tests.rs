//! One contract suite for the `ChunkStore` port, run against every adapter; plus disk-only
//! crash-recovery and at-rest-encryption checks.

use super::DiskChunkStore;
use crate::adapters::memory::MemoryChunkStore;
use crate::domain::audit::{prove_leaves, select_leaves, Verified};
use crate::domain::identity::NodeIdentity;
use crate::domain::ids::Addr;
use crate::domain::proof::ProofSecret;
use crate::ports::chunk_store::{ChunkStore, StoreError, StoredChunk};

fn chunk(i: u8, len: usize) -> (StoredChunk, Vec<u8>) {
    let ct: Vec<u8> = (0..len).map(|j| (j as u8).wrapping_mul(31).wrapping_add(i)).collect();
    let meta = StoredChunk {
        addr: Addr::of(&ct),
        slot: i % 3,
        commitment: ProofSecret::from_seed(&[i; 32]).commitment(),
        lease_expiry_ms: 1000 + i as u64,
        len: ct.len() as u32,
        control: None,
    };
    (meta, ct)
}

/// `ct`, verified against `m`'s addr as a node does before storing it.
fn v<'a>(m: &StoredChunk, ct: &'a [u8]) -> Verified<'a> {
    Verified::check(&m.addr.0, ct).expect("test chunk verifies")
}

/// The contract every chunk store must satisfy.
fn contract(store: &dyn ChunkStore) {
    let (a, ca) = chunk(1, 5000);
    let (b, cb) = chunk(2, 3000);
    assert_eq!(store.meta(&a.addr).unwrap(), None);
    assert_eq!(store.read(&a.addr).unwrap(), None);
    store.put(&a, &v(&a, &ca)).unwrap();
    store.put(&b, &v(&b, &cb)).unwrap();
    assert_eq!(store.meta(&a.addr).unwrap(), Some(a));
    assert_eq!(store.read(&a.addr).unwrap(), Some(ca.clone()));
    assert_eq!(store.usage().chunks, 2);
    assert!(store.set_lease(&a.addr, 5000).unwrap());
    // A control commitment is attached once, kept beside the lease, and never replaced.
    let q = ProofSecret::from_seed(&[0x51; 32]).commitment();
    assert!(store.set_control(&b.addr, &q).unwrap());
    assert!(!store.set_control(&b.addr, &ProofSecret::from_seed(&[0x52; 32]).commitment()).unwrap());
    assert!(!store.set_control(&Addr([0xee; 32]), &q).unwrap());
    assert_eq!(store.meta(&b.addr).unwrap().map(|m| m.control), Some(Some(q)));
    assert_eq!(store.read(&b.addr).unwrap(), Some(cb.clone()));
    assert_eq!(store.meta(&a.addr).unwrap().unwrap().lease_expiry_ms, 5000);
    assert_eq!(store.expired(2000).unwrap(), vec![b.addr]);
    assert!(store.remove(&b.addr).unwrap());
    assert!(!store.remove(&b.addr).unwrap());
    assert!(!store.set_lease(&b.addr, 1).unwrap());
    assert_eq!(store.usage().chunks, 1);
    // Audit answers are the proofs of the whole chunk, for small and multi-segment chunks,
    // and survive a lease change (which rewrites the record).
    let (c, cc) = chunk(4, 40_000);
    store.put(&c, &v(&c, &cc)).unwrap();
    assert!(store.set_lease(&c.addr, 9000).unwrap());
    for (addr, ct) in [(&a.addr, &ca), (&c.addr, &cc)] {
        let picks = select_leaves(&[9; 32], ct.len() as u64, 4);
        assert_eq!(store.audit_proofs(addr, &picks).unwrap(), Some(prove_leaves(ct, &picks).unwrap()));
    }
    assert_eq!(store.audit_proofs(&b.addr, &[0]).unwrap(), None);
    assert!(store.remove(&c.addr).unwrap());
    // Capacity is enforced.
    let (big, cbig) = chunk(3, 200_000);
    assert!(matches!(store.put(&big, &v(&big, &cbig)), Err(StoreError::Full { .. })));
    assert_eq!(store.meta(&big.addr).unwrap(), None);
    // Bytes verified for one addr are never stored under another.
    let (d, cd) = chunk(6, 700);
    let other = StoredChunk { addr: Addr::of(b"other"), ..d };
    assert!(matches!(store.put(&other, &v(&d, &cd)), Err(StoreError::Corrupt(_))));
    assert_eq!(store.meta(&other.addr).unwrap(), None);
    // Removed and stored again (a delete, then the owner storing the same content anew).
    store.put(&d, &v(&d, &cd)).unwrap();
    assert!(store.remove(&d.addr).unwrap());
    store.put(&d, &v(&d, &cd)).unwrap();
    assert_eq!(store.read(&d.addr).unwrap(), Some(cd));
    assert!(store.remove(&d.addr).unwrap());
    // Root records: one per locator, replaced in place.
    assert_eq!(store.root("aa").unwrap(), None);
    store.put_root("aa", b"first").unwrap();
    store.put_root("bb", b"other").unwrap();
    store.put_root("aa", b"second").unwrap();
    assert_eq!(store.root("aa").unwrap(), Some(b"second".to_vec()));
    assert_eq!(store.roots_held().unwrap(), 2);
}

#[test]
fn memory_store_meets_the_contract() {
    contract(&MemoryChunkStore::new(100_000));
}

#[test]
fn disk_store_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    contract(&DiskChunkStore::open(dir.path(), NodeIdentity::generate(), 100_000).unwrap());
}

/// Bodies in the format of older versions (XChaCha20-Poly1305, MAC for audits only on
/// multi-segment chunks) meet the same contract.
#[test]
fn disk_store_writing_the_old_format_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    contract(
        &DiskChunkStore::open(dir.path(), NodeIdentity::generate(), 100_000).unwrap().writing_old_format(),
    );
}

/// A node upgraded in place: bodies written in the old format are read, audited (a flipped byte
/// anywhere is caught), have their leases renewed and are removed by the new version, which
/// writes its own bodies beside them; the capacity accounting matches after a reopen.
#[test]
fn bodies_of_the_old_format_stay_readable_after_an_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let id = NodeIdentity::generate();
    let old: Vec<_> = [(1, 700), (2, 60_000), (3, 200_000)].into_iter().map(|(i, n)| chunk(i, n)).collect();
    {
        let s = DiskChunkStore::open(dir.path(), id.clone(), 1 << 22).unwrap().writing_old_format();
        for (m, ct) in &old {
            s.put(m, &v(m, ct)).unwrap();
        }
    }
    let s = DiskChunkStore::open(dir.path(), id.clone(), 1 << 22).unwrap();
    let used_old = s.usage().used;
    let (new, cnew) = chunk(4, 90_000);
    s.put(&new, &v(&new, &cnew)).unwrap();
    for (m, ct) in old.iter().chain([&(new, cnew.clone())]) {
        assert_eq!(s.read(&m.addr).unwrap().as_ref(), Some(ct));
        let picks = select_leaves(&[6; 32], ct.len() as u64, 4);
        assert_eq!(s.audit_proofs(&m.addr, &picks).unwrap(), Some(prove_leaves(ct, &picks).unwrap()));
        assert!(s.set_lease(&m.addr, 77_000).unwrap());
        assert_eq!(s.read(&m.addr).unwrap().as_ref(), Some(ct), "after a lease renewal");
    }
    let (m, ct) = &old[2];
    let loc = crate::domain::ids::to_hex(&id.locator(&m.addr));
    let path = dir.path().join("chunks").join(&loc[..2]).join(&loc);
    let good = std::fs::read(&path).unwrap();
    let mut bad = good.clone();
    bad[good.len() / 2] ^= 4;
    std::fs::write(&path, &bad).unwrap();
    let picks = select_leaves(&[7; 32], ct.len() as u64, 4);
    assert!(matches!(s.audit_proofs(&m.addr, &picks), Err(StoreError::Corrupt(_))));
    assert!(matches!(s.read(&m.addr), Err(StoreError::Corrupt(_))));
    std::fs::write(&path, &good).unwrap();
    let used = s.usage().used;
    drop(s);
    let s = DiskChunkStore::open(dir.path(), id, 1 << 22).unwrap();
    assert_eq!(s.usage().used, used, "usage recomputed at open");
    assert!(s.remove(&old[0].0.addr).unwrap());
    assert!(s.remove(&new.addr).unwrap());
    assert!(s.usage().used < used_old, "removal frees what the old body was charged");
    assert_eq!(s.usage().chunks, 2);
}

/// Where direct I/O is refused (tmpfs, some network filesystems), bodies go through the page
/// cache, unpadded.
#[test]
fn disk_store_meets_the_contract_through_the_page_cache() {
    let dir = tempfile::tempdir().unwrap();
    contract(
        &DiskChunkStore::open(dir.path(), NodeIdentity::generate(), 100_000).unwrap().without_direct_io(),
    );
}

/// Whether `dir`'s filesystem accepts `O_DIRECT` writes of whole aligned blocks.
fn accepts_direct_io(dir: &std::path::Path) -> bool {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let opened = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(dir.join("probe"));
    let block = vec![0u8; 2 * super::body::BLOCK];
    let start = block.as_ptr().align_offset(super::body::BLOCK);
    let written = opened.and_then(|mut f| f.write_all(&block[start..start + super::body::BLOCK]));
    let _ = std::fs::remove_file(dir.join("probe"));
    written.is_ok()
}

/// A body written with direct I/O is padded to whole blocks; one written through the page cache
/// is not; a store reads both (a node's directory may hold bodies of either kind).
#[test]
fn bodies_are_block_padded_with_direct_io_and_both_kinds_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let id = NodeIdentity::generate();
    let (a, ca) = chunk(1, 50_000);
    let (b, cb) = chunk(2, 60_000);
    DiskChunkStore::open(dir.path(), id.clone(), 1 << 20).unwrap().put(&a, &v(&a, &ca)).unwrap();
    let buffered = DiskChunkStore::open(dir.path(), id.clone(), 1 << 20).unwrap().without_direct_io();
    buffered.put(&b, &v(&b, &cb)).unwrap();
    drop(buffered);
    let len_of = |m: &StoredChunk| {
        let loc = crate::domain::ids::to_hex(&id.locator(&m.addr));
        std::fs::metadata(dir.path().join("chunks").join(&loc[..2]).join(&loc)).unwrap().len() as usize
    };
    let sealed = |ct: &[u8]| super::Format::Mac.sealed_len(ct.len() as u32);
    assert_eq!(len_of(&b), sealed(&cb), "through the page cache: unpadded");
    if accepts_direct_io(dir.path()) {
        assert_eq!(
            len_of(&a),
            sealed(&ca).next_multiple_of(super::body::BLOCK),
            "direct I/O: padded to a block"
        );
    } else {
        assert_eq!(
            len_of(&a),
            sealed(&ca),
            "this filesystem refuses direct I/O: the fallback writes unpadded"
        );
    }
    let s = DiskChunkStore::open(dir.path(), id, 1 << 20).unwrap();
    assert_eq!(s.usage().chunks, 2);
    for (m, ct) in [(&a, &ca), (&b, &cb)] {
        assert_eq!(s.read(&m.addr).unwrap().as_ref(), Some(ct));
        let picks = select_leaves(&[5; 32], ct.len() as u64, 4);
        assert_eq!(s.audit_proofs(&m.addr, &picks).unwrap(), Some(prove_leaves(ct, &picks).unwrap()));
    }
}

#[test]
fn disk_store_survives_reopen_and_cleans_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let id = NodeIdentity::generate();
    let (a, ca) = chunk(1, 5000);
    {
        let s = DiskChunkStore::open(dir.path(), id.clone(), 1 << 20).unwrap();
        s.put(&a, &v(&a, &ca)).unwrap();
    }
    // Simulate a crash mid-write: a temp file and a body whose index commit never happened.
    std::fs::write(dir.path().join("tmp/partial"), b"junk").unwrap();
    let orphan = dir.path().join("chunks/00").join("00".repeat(32));
    std::fs::write(&orphan, b"orphan").unwrap();
    let s = DiskChunkStore::open(dir.path(), id, 1 << 20).unwrap();
    assert_eq!(s.read(&a.addr).unwrap(), Some(ca));
    assert_eq!(s.usage().chunks, 1);
    assert!(!orphan.exists());
    assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
}

#[test]
fn flipped_or_deleted_body_is_reported_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let id = NodeIdentity::generate();
    let s = DiskChunkStore::open(dir.path(), id.clone(), 1 << 20).unwrap();
    let (a, ca) = chunk(1, 5000);
    s.put(&a, &v(&a, &ca)).unwrap();
    let loc = crate::domain::ids::to_hex(&id.locator(&a.addr));
    let path = dir.path().join("chunks").join(&loc[..2]).join(&loc);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(s.read(&a.addr), Err(StoreError::Corrupt(_))));
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(s.read(&a.addr), Err(StoreError::Corrupt(_))));
}

/// Audits decrypt only a few segments, yet a flipped byte anywhere in the body (not only in the
/// challenged leaves) is caught by the at-rest tag.
#[test]
fn an_audit_catches_a_flipped_byte_anywhere_in_the_body() {
    let dir = tempfile::tempdir().unwrap();
    let id = NodeIdentity::generate();
    let s = DiskChunkStore::open(dir.path(), id.clone(), 1 << 22).unwrap();
    let (a, ca) = chunk(5, 600_000);
    s.put(&a, &v(&a, &ca)).unwrap();
    let loc = crate::domain::ids::to_hex(&id.locator(&a.addr));
    let path = dir.path().join("chunks").join(&loc[..2]).join(&loc);
    let good = std::fs::read(&path).unwrap();
    let picks = select_leaves(&[3; 32], ca.len() as u64, 4);
    assert_eq!(s.audit_proofs(&a.addr, &picks).unwrap(), Some(prove_leaves(&ca, &picks).unwrap()));
    let sealed = super::Format::Mac.sealed_len(ca.len() as u32);
    for at in [0, 30, sealed / 3, sealed / 2, sealed - 20, sealed - 1] {
        let mut bad = good.clone();
        bad[at] ^= 0x10;
        std::fs::write(&path, &bad).unwrap();
        assert!(
            matches!(s.audit_proofs(&a.addr, &picks), Err(StoreError::Corrupt(_))),
            "flip at {at} missed"
        );
    }
    std::fs::write(&path, &good[..sealed - 1]).unwrap();
    assert!(matches!(s.audit_proofs(&a.addr, &picks), Err(StoreError::Corrupt(_))), "truncation missed");
}

#[test]
fn nothing_on_disk_reveals_ciphertext_commitment_or_addr() {
    let dir = tempfile::tempdir().unwrap();
    let s = DiskChunkStore::open(dir.path(), NodeIdentity::generate(), 1 << 20).unwrap();
    let (a, ca) = chunk(7, 8000);
    s.put(&a, &v(&a, &ca)).unwrap();
    drop(s);
    let needles = [ca[..32].to_vec(), a.commitment.to_bytes()[..32].to_vec(), a.addr.0.to_vec()];
    for entry in walk(dir.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        let name = entry.to_string_lossy().to_string();
        for n in &needles {
            assert!(!bytes.windows(n.len()).any(|w| w == &n[..]), "{name} contains a secret in the clear");
        }
        assert!(!name.contains(&a.addr.to_hex()));
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn concurrent_puts_share_commits_and_all_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let id = NodeIdentity::generate();
    let store = std::sync::Arc::new(DiskChunkStore::open(dir.path(), id.clone(), 1 << 30).unwrap());
    let handles: Vec<_> = (0..8u8)
        .map(|t| {
            let s = store.clone();
            std::thread::spawn(move || {
                for i in 0..10u8 {
                    let (mut meta, ct) = chunk(t.wrapping_mul(16).wrapping_add(i), 3000 + i as usize);
                    meta.slot = t;
                    s.put(&meta, &v(&meta, &ct)).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    drop(store);
    let reopened = DiskChunkStore::open(dir.path(), id, 1 << 30).unwrap();
    assert_eq!(reopened.usage().chunks, 80);
    assert_eq!(reopened.index_len().unwrap(), 80);
}

/// A renewal and a control upgrade of one chunk at the same moment both land, and a renewal
/// racing a removal never brings the removed chunk's record back.
#[test]
fn concurrent_updates_of_one_chunk_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        std::sync::Arc::new(DiskChunkStore::open(dir.path(), NodeIdentity::generate(), 1 << 30).unwrap());
    let q = ProofSecret::from_seed(&[0x61; 32]).commitment();
    for i in 0..40u8 {
        let (meta, ct) = chunk(i, 2000 + i as usize);
        store.put(&meta, &v(&meta, &ct)).unwrap();
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
        let (s, b) = (store.clone(), barrier.clone());
        let renew = std::thread::spawn(move || {
            b.wait();
            s.set_lease(&meta.addr, 77_000 + i as u64).unwrap()
        });
        let (s, b) = (store.clone(), barrier);
        let second = std::thread::spawn(move || {
            b.wait();
            if i % 2 == 0 {
                s.set_control(&meta.addr, &q).unwrap()
            } else {
                s.remove(&meta.addr).unwrap()
            }
        });
        let (renewed, second) = (renew.join().unwrap(), second.join().unwrap());
        assert!(second, "chunk {i}: the control upgrade or removal found nothing");
        let now = store.meta(&meta.addr).unwrap();
        if i % 2 == 0 {
            let now = now.expect("held");
            assert!(renewed);
            assert_eq!(now.control, Some(q), "chunk {i}: a renewal overwrote the control commitment");
            assert_eq!(
                now.lease_expiry_ms,
                77_000 + i as u64,
                "chunk {i}: the control upgrade lost the renewal"
            );
        } else {
            assert_eq!(now, None, "chunk {i}: a renewal brought a removed chunk's record back");
        }
    }
}
