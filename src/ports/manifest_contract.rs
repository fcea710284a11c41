//! One contract suite for the manifest port, run against every adapter: each adapter's tests
//! call [`manifest_contract!`] with a [`Harness`] that makes its manifests.

use crate::domain::dump::DumpWriter;
use crate::domain::fs::{Attr, ChunkRecord, ChunkState, Extent, FsError, Ino, Kind, Time, ROOT_INO};
use crate::domain::health::NodeRecord;
use crate::domain::ids::{Addr, ChunkId, NodeId};
use crate::domain::snapshot::{BlobRow, PieceRef, PinScope, SnapshotInfo};
use crate::ports::manifest::{Manifest, Tx};
use std::time::Duration;

/// Makes the manifests of one adapter.
pub(crate) trait Harness {
    /// A fresh writable manifest whose root directory belongs to 1000:1000.
    fn fresh(&self) -> Manifest;
    /// A writable manifest built from a dump.
    fn import(&self, dump: &[u8]) -> Result<Manifest, FsError>;
    /// A read-only manifest built from a dump.
    fn import_read_only(&self, dump: &[u8]) -> Result<Manifest, FsError>;
}

/// One `#[test]` per contract case, for the harness `$h`.
macro_rules! manifest_contract {
    ($h:expr) => {
        $crate::ports::manifest_contract::manifest_contract!(@cases $h;
            root_and_inode_numbers, dirents_lookup_and_children_in_order, symlinks, extents_range_queries,
            refcounts_and_unreferenced, sealing_release, upload_queue_in_addr_order, xattrs_in_order,
            staged_set, meta_nodes_and_written_off, blobs_pin_and_unpin, deleting_an_inode_takes_what_hangs_off_it,
            unlinked_inodes, a_failed_write_leaves_nothing_behind, a_failing_grouped_call_keeps_the_calls_before_it,
            a_call_that_panics_is_taken_back_and_leaves_the_thread_usable, read_is_a_snapshot_and_view_is_live,
            read_only_refuses_writes, dump_round_trip_and_content_hash, malformed_dumps_are_refused_without_panic);
    };
    (@cases $h:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::ports::manifest_contract::$case(&$h);
            }
        )*
    };
}
pub(crate) use manifest_contract;

const NO_EXTENTS: Vec<Extent> = Vec::new();
const NO_ADDRS: Vec<Addr> = Vec::new();

/// `a` with fixed times, so that two manifests given the same calls hold the same bytes.
pub(crate) fn fixed(a: Attr) -> Attr {
    let t = Time { secs: 1_700_000_000, nanos: 5 };
    Attr { atime: t, mtime: t, ctime: t, ..a }
}

fn file(ino: Ino) -> Attr {
    fixed(Attr::new(ino, Kind::File, 0o644, 1000, 1000))
}

fn addr(i: u8) -> Addr {
    Addr([i; 32])
}

fn extent(offset: u64, len: u32, i: u8) -> Extent {
    Extent { offset, len, id: ChunkId([i; 32]), addr: addr(i) }
}

fn names(m: &Manifest, dir: Ino) -> Vec<(Vec<u8>, Ino)> {
    m.view().children(dir).unwrap()
}

fn now_ms() -> u64 {
    crate::domain::unix_ms(std::time::SystemTime::now())
}

/// Everything a manifest holds, as comparable text: its dump and its local-only state.
fn everything(m: &Manifest, addrs: &[Addr]) -> String {
    let rx = m.read().unwrap();
    let (dump, files, bytes) = rx.dump().unwrap();
    let mut out = format!("dump {} files {files} bytes {bytes}\n", blake3::hash(&dump));
    out += &format!("staged {:?}\nuploads {:?}\n", rx.staged().unwrap(), rx.uploads(100).unwrap());
    out += &format!("sealing {:?}\n", rx.sealing().unwrap());
    for a in addrs {
        out += &format!("outbox {:?}\n", rx.small_outbox(a).unwrap());
    }
    out
}

pub(crate) fn root_and_inode_numbers(h: &dyn Harness) {
    let m = h.fresh();
    let root = m.view().inode(ROOT_INO).unwrap();
    assert_eq!((root.kind, root.uid, root.gid), (Kind::Dir, 1000, 1000));
    assert!(matches!(m.view().inode(99), Err(FsError::NotFound)));
    let (a, b) = m.write(|tx| Ok((tx.next_ino()?, tx.next_ino()?))).unwrap();
    assert_eq!((a, b), (ROOT_INO + 1, ROOT_INO + 2));
    m.write(|tx| tx.put_inode(&file(a))).unwrap();
    assert_eq!(m.view().inode(a).unwrap(), file(a));
    assert_eq!(m.write(|tx| tx.next_ino()).unwrap(), ROOT_INO + 3);
    assert_eq!(m.read().unwrap().inode_count().unwrap(), 2);
}

pub(crate) fn dirents_lookup_and_children_in_order(h: &dyn Harness) {
    let m = h.fresh();
    m.write(|tx| {
        for (name, ino) in [(&b"b"[..], 5), (b"a", 4), (b"\xffz", 7), (b"ab", 6)] {
            tx.put_dirent(2, name, ino)?;
        }
        tx.put_dirent(3, b"other", 9)?;
        tx.put_dirent(1, b"x", 8)
    })
    .unwrap();
    let want: Vec<(Vec<u8>, Ino)> =
        vec![(b"a".to_vec(), 4), (b"ab".to_vec(), 6), (b"b".to_vec(), 5), (b"\xffz".to_vec(), 7)];
    assert_eq!(names(&m, 2), want);
    assert_eq!(names(&m, 3), vec![(b"other".to_vec(), 9)]);
    assert_eq!(m.view().lookup(2, b"ab").unwrap(), Some(6));
    assert_eq!(m.view().lookup(2, b"other").unwrap(), None);
    assert!(m.view().has_children(2).unwrap());
    assert!(!m.view().has_children(4).unwrap());
    m.write(|tx| {
        tx.put_dirent(2, b"a", 10)?;
        tx.del_dirent(2, b"b")?;
        tx.del_dirent(2, b"missing")
    })
    .unwrap();
    assert_eq!(m.view().lookup(2, b"a").unwrap(), Some(10));
    assert_eq!(m.read().unwrap().children(2).unwrap().len(), 3);
    m.write(|tx| tx.children(3)?.iter().try_for_each(|(n, _)| tx.del_dirent(3, n))).unwrap();
    assert!(!m.view().has_children(3).unwrap());
}

pub(crate) fn symlinks(h: &dyn Harness) {
    let m = h.fresh();
    m.write(|tx| tx.put_symlink(5, b"../target")).unwrap();
    assert_eq!(m.view().symlink(5).unwrap(), b"../target");
    assert!(matches!(m.view().symlink(6), Err(FsError::Invalid(_))));
}

pub(crate) fn extents_range_queries(h: &dyn Harness) {
    let m = h.fresh();
    let (e0, e1, e2) = (extent(0, 100, 1), extent(100, 50, 2), extent(300, 10, 3));
    m.write(|tx| {
        tx.set_extents(5, &[e0, e1, e2])?;
        tx.set_extents(6, &[extent(0, 1000, 4)])
    })
    .unwrap();
    let v = m.view();
    assert_eq!(v.extents(5, 0, u64::MAX).unwrap(), vec![e0, e1, e2]);
    assert_eq!(
        v.extents(5, 50, 120).unwrap(),
        vec![e0, e1],
        "the extent holding the start, then those starting before the end"
    );
    assert_eq!(v.extents(5, 150, 300).unwrap(), NO_EXTENTS, "a hole, and the end is exclusive");
    assert_eq!(v.extents(5, 299, 301).unwrap(), vec![e2]);
    assert_eq!(v.extents(5, 305, 306).unwrap(), vec![e2]);
    assert_eq!(v.extents(5, 310, 400).unwrap(), NO_EXTENTS);
    assert_eq!(v.extents(7, 0, u64::MAX).unwrap(), NO_EXTENTS);
    m.write(|tx| tx.set_extents(5, &[e1])).unwrap();
    assert_eq!(m.view().extents(5, 0, u64::MAX).unwrap(), vec![e1]);
}

pub(crate) fn refcounts_and_unreferenced(h: &dyn Harness) {
    let m = h.fresh();
    let (a, b) = (addr(1), addr(2));
    let start = now_ms();
    m.write(|tx| {
        tx.put_chunk(&a, &ChunkRecord::pending(ChunkId([1; 32]), 100))?;
        tx.put_chunk(&b, &ChunkRecord::pending(ChunkId([2; 32]), 100))?;
        tx.set_extents(5, &[extent(0, 100, 1)])?;
        tx.set_extents(6, &[extent(0, 100, 1), extent(100, 100, 2)])?;
        tx.adjust_refs(&addr(9), 1)
    })
    .unwrap();
    let refs = |a: &Addr| m.view().chunk(a).unwrap().map(|c| c.refs);
    assert_eq!((refs(&a), refs(&b), refs(&addr(9))), (Some(2), Some(1), None));
    let unref = |before| m.read().unwrap().unreferenced(before, 10).unwrap();
    assert_eq!(unref(u64::MAX), NO_ADDRS);
    m.write(|tx| tx.set_extents(6, &[])).unwrap();
    assert_eq!((refs(&a), refs(&b)), (Some(1), Some(0)));
    assert_eq!(unref(u64::MAX), vec![b]);
    assert_eq!(unref(start.saturating_sub(1)), NO_ADDRS, "unreferenced since now, not before");
    m.write(|tx| tx.adjust_refs(&a, -5)).unwrap();
    assert_eq!(refs(&a), Some(0), "counts stop at zero");
    assert_eq!(unref(u64::MAX), vec![a, b]);
    assert_eq!(m.read().unwrap().unreferenced(u64::MAX, 1).unwrap(), vec![a]);
    m.write(|tx| tx.adjust_refs(&a, 1)).unwrap();
    assert_eq!(unref(u64::MAX), vec![b], "referenced again, out of the grace period");
    m.write(|tx| {
        tx.set_upload(&b, Some(1))?;
        tx.set_small_outbox(&b, Some(b"ct"))?;
        tx.forget_chunk(&b)
    })
    .unwrap();
    let rx = m.read().unwrap();
    assert_eq!(
        (rx.chunk(&b).unwrap(), rx.upload_queued(&b).unwrap(), rx.small_outbox(&b).unwrap()),
        (None, false, None)
    );
    assert_eq!(rx.unreferenced(u64::MAX, 10).unwrap(), NO_ADDRS);
}

pub(crate) fn sealing_release(h: &dyn Harness) {
    let m = h.fresh();
    let (a, b) = (addr(1), addr(2));
    m.write(|tx| {
        tx.put_chunk(&a, &ChunkRecord::pending(ChunkId([1; 32]), 10))?;
        tx.put_chunk(&b, &ChunkRecord::pending(ChunkId([2; 32]), 10))?;
        tx.set_sealing(&b, Some(5))?;
        tx.set_sealing(&a, Some(5))
    })
    .unwrap();
    assert_eq!(m.read().unwrap().sealing().unwrap(), vec![a, b]);
    m.write(|tx| {
        tx.set_extents(5, &[extent(0, 10, 1)])?;
        tx.release_sealed(&a)?;
        tx.release_sealed(&b)
    })
    .unwrap();
    let rx = m.read().unwrap();
    assert_eq!(rx.sealing().unwrap(), NO_ADDRS);
    assert_eq!(rx.unreferenced(u64::MAX, 10).unwrap(), vec![b], "only the chunk no file came to reference");
}

pub(crate) fn upload_queue_in_addr_order(h: &dyn Harness) {
    let m = h.fresh();
    m.write(|tx| {
        for (i, at) in [(3, 10), (1, 30), (2, 20)] {
            tx.put_chunk(&addr(i), &ChunkRecord::pending(ChunkId([i; 32]), 100))?;
            tx.set_upload(&addr(i), Some(at))?;
        }
        tx.set_small_outbox(&addr(1), Some(b"small"))
    })
    .unwrap();
    assert_eq!(m.view().uploads(10).unwrap(), vec![addr(1), addr(2), addr(3)]);
    assert_eq!(m.view().uploads(2).unwrap(), vec![addr(1), addr(2)]);
    assert_eq!(m.view().small_outbox(&addr(1)).unwrap(), Some(b"small".to_vec()));
    m.write(|tx| {
        tx.set_upload(&addr(2), None)?;
        tx.set_small_outbox(&addr(1), None)
    })
    .unwrap();
    let rx = m.read().unwrap();
    assert_eq!(rx.uploads(10).unwrap(), vec![addr(1), addr(3)]);
    assert!(rx.upload_queued(&addr(3)).unwrap() && !rx.upload_queued(&addr(2)).unwrap());
    assert_eq!(rx.small_outbox(&addr(1)).unwrap(), None);
    let s = rx.summary().unwrap();
    assert_eq!((s.inodes, s.uploads, s.chunks.len()), (1, 2, 3));
    assert_eq!(s.chunks.iter().map(|(a, _)| *a).collect::<Vec<_>>(), vec![addr(1), addr(2), addr(3)]);
}

pub(crate) fn xattrs_in_order(h: &dyn Harness) {
    let m = h.fresh();
    m.write(|tx| {
        tx.put_xattr(5, b"user.b", Some(b"2"))?;
        tx.put_xattr(5, b"user.a", Some(b"1"))?;
        tx.put_xattr(6, b"user.c", Some(b"3"))?;
        tx.put_xattr(5, b"user.a", Some(b"one"))
    })
    .unwrap();
    assert_eq!(m.view().xattr_names(5).unwrap(), vec![b"user.a".to_vec(), b"user.b".to_vec()]);
    assert_eq!(m.view().xattr(5, b"user.a").unwrap(), Some(b"one".to_vec()));
    assert_eq!(m.view().xattr(5, b"user.c").unwrap(), None);
    m.write(|tx| tx.put_xattr(5, b"user.b", None)).unwrap();
    assert_eq!(m.view().xattr_names(5).unwrap(), vec![b"user.a".to_vec()]);
    assert_eq!(m.view().xattr_names(6).unwrap(), vec![b"user.c".to_vec()]);
}

pub(crate) fn staged_set(h: &dyn Harness) {
    let m = h.fresh();
    m.write(|tx| [9, 5, 7].into_iter().try_for_each(|i| tx.set_staged(i, true))).unwrap();
    m.write(|tx| tx.set_staged(7, false)).unwrap();
    assert!(m.view().is_staged(5).unwrap() && !m.view().is_staged(7).unwrap());
    assert_eq!(m.read().unwrap().staged().unwrap(), vec![5, 9]);
}

pub(crate) fn meta_nodes_and_written_off(h: &dyn Harness) {
    let m = h.fresh();
    let (n1, n2) = (NodeId([1; 32]), NodeId([2; 32]));
    let off = NodeRecord { written_off: true, ..NodeRecord::default() };
    m.write(|tx| {
        tx.set_meta("replicas", 3)?;
        tx.set_meta("replicas", 2)?;
        tx.put_node(&n2, &off)?;
        tx.put_node(&n1, &NodeRecord::default())
    })
    .unwrap();
    let v = m.view();
    assert_eq!((v.meta("replicas").unwrap(), v.meta("nothing").unwrap()), (Some(2), None));
    assert_eq!(v.node(&n2).unwrap(), Some(off));
    assert_eq!(v.node(&NodeId([3; 32])).unwrap(), None);
    assert_eq!(v.nodes().unwrap(), vec![(n1, NodeRecord::default()), (n2, off)]);
    assert_eq!(m.read().unwrap().written_off().unwrap(), [n2].into_iter().collect());
}

fn blob(id: u64, pins: Vec<Addr>) -> BlobRow {
    let head = PieceRef { id: ChunkId([id as u8; 32]), addr: addr(id as u8), len: 10, seed: [0; 32] };
    let info = SnapshotInfo { id, taken_ms: 1000 * id, head, files: id, bytes: 0, epoch: 0 };
    BlobRow { info, pins, scope: PinScope::Pieces, path: Vec::new() }
}

pub(crate) fn blobs_pin_and_unpin(h: &dyn Harness) {
    let m = h.fresh();
    let a = addr(1);
    let (s2, s1, share) = (blob(2, vec![a]), blob(1, vec![a]), blob(3, vec![a]));
    m.write(|tx| {
        tx.put_chunk(&a, &ChunkRecord::pending(ChunkId([1; 32]), 10))?;
        tx.put_blob(false, &s2, true)?;
        tx.put_blob(false, &s1, true)?;
        tx.put_blob(false, &s1, true)?;
        tx.put_blob(true, &share, true)
    })
    .unwrap();
    let refs = || m.view().chunk(&a).unwrap().map(|c| c.refs);
    assert_eq!(refs(), Some(3), "each blob pins once");
    let rx = m.read().unwrap();
    assert_eq!(rx.blobs(false).unwrap(), vec![s1.clone(), s2.clone()]);
    assert_eq!(rx.blobs(true).unwrap(), vec![share.clone()]);
    drop(rx);
    m.write(|tx| {
        tx.put_blob(false, &s1, false)?;
        tx.put_blob(false, &s1, false)?;
        tx.put_blob(true, &share, false)
    })
    .unwrap();
    assert_eq!(refs(), Some(1));
    assert_eq!(m.read().unwrap().blobs(false).unwrap(), vec![s2]);
}

pub(crate) fn deleting_an_inode_takes_what_hangs_off_it(h: &dyn Harness) {
    let m = h.fresh();
    m.write(|tx| {
        tx.put_chunk(&addr(1), &ChunkRecord::pending(ChunkId([1; 32]), 10))?;
        tx.put_inode(&file(5))?;
        tx.set_extents(5, &[extent(0, 10, 1)])?;
        tx.put_xattr(5, b"user.x", Some(b"v"))?;
        tx.put_symlink(5, b"t")?;
        tx.set_staged(5, true)?;
        tx.put_inode(&file(6))?;
        tx.put_xattr(6, b"user.x", Some(b"w"))
    })
    .unwrap();
    m.write(|tx| tx.delete_inode(5)).unwrap();
    let v = m.view();
    assert!(matches!(v.inode(5), Err(FsError::NotFound)));
    assert_eq!(
        (v.extents(5, 0, u64::MAX).unwrap(), v.xattr_names(5).unwrap()),
        (NO_EXTENTS, Vec::<Vec<u8>>::new())
    );
    assert!(v.symlink(5).is_err() && !v.is_staged(5).unwrap());
    assert_eq!(v.chunk(&addr(1)).unwrap().map(|c| c.refs), Some(0));
    assert_eq!(v.xattr(6, b"user.x").unwrap(), Some(b"w".to_vec()));
}

pub(crate) fn unlinked_inodes(h: &dyn Harness) {
    let m = h.fresh();
    m.write(|tx| {
        tx.put_inode(&Attr { nlink: 0, ..file(5) })?;
        tx.put_inode(&file(6))?;
        tx.put_inode(&Attr { nlink: 0, ..Attr::new(7, Kind::Dir, 0o755, 0, 0) })
    })
    .unwrap();
    assert_eq!(m.read().unwrap().unlinked_inodes().unwrap(), vec![5]);
}

/// The state the failing calls start from.
fn setup(tx: &Tx, b: Addr) -> Result<(), FsError> {
    tx.put_inode(&file(2))?;
    tx.put_dirent(ROOT_INO, b"first", 2)?;
    tx.put_xattr(2, b"user.y", Some(b"old"))?;
    let durable = ChunkRecord { state: ChunkState::Durable, ..ChunkRecord::pending(ChunkId([2; 32]), 50) };
    tx.put_chunk(&b, &durable)?;
    tx.set_extents(2, &[Extent { offset: 0, len: 50, id: ChunkId([2; 32]), addr: b }])?;
    tx.set_staged(2, true)?;
    tx.set_small_outbox(&b, Some(b"old ct"))
}

/// One of each change a filesystem call makes.
fn lots_of_changes(tx: &Tx, ino: Ino, a: Addr) -> Result<(), FsError> {
    let mut dir = tx.inode(ROOT_INO)?;
    dir.nlink += 1;
    tx.put_inode(&dir)?;
    tx.put_inode(&file(ino))?;
    tx.put_dirent(ROOT_INO, format!("f{ino}").as_bytes(), ino)?;
    tx.del_dirent(ROOT_INO, b"first")?;
    tx.put_symlink(ino, b"target")?;
    tx.put_xattr(ino, b"user.x", Some(b"v"))?;
    tx.put_xattr(2, b"user.y", None)?;
    tx.put_chunk(&a, &ChunkRecord::pending(ChunkId([ino as u8; 32]), 100))?;
    tx.set_extents(ino, &[Extent { offset: 0, len: 10, id: ChunkId([ino as u8; 32]), addr: a }])?;
    tx.set_extents(2, &[])?;
    tx.set_staged(ino, true)?;
    tx.set_staged(2, false)?;
    tx.set_upload(&a, Some(7))?;
    tx.set_small_outbox(&a, Some(b"ct"))?;
    tx.set_sealing(&a, Some(8))?;
    tx.set_meta("root_version", 9)?;
    tx.put_node(&NodeId([4; 32]), &NodeRecord::default())?;
    tx.put_blob(false, &blob(4, vec![a]), true)?;
    tx.next_ino()?;
    tx.delete_inode(2)?;
    Ok(())
}

pub(crate) fn a_failed_write_leaves_nothing_behind(h: &dyn Harness) {
    let (a, b) = (addr(7), addr(8));
    let m = h.fresh();
    m.write(|tx| setup(tx, b)).unwrap();
    let initial = everything(&m, &[a, b]);
    // The same changes made by a call that succeeds do show.
    let other = h.fresh();
    other.write(|tx| setup(tx, b)).unwrap();
    let other_initial = everything(&other, &[a, b]);
    other.write(|tx| lots_of_changes(tx, 3, a)).unwrap();
    assert_ne!(everything(&other, &[a, b]), other_initial, "the changes must show");
    for (i, how) in ["write", "write_grouped", "write_durable"].into_iter().enumerate() {
        let fail = |tx: &Tx| -> Result<(), FsError> {
            lots_of_changes(tx, 3, a)?;
            Err(FsError::NotEmpty)
        };
        let r = match i {
            0 => m.write(fail),
            1 => m.write_grouped(fail),
            _ => m.write_durable(fail),
        };
        assert!(matches!(r, Err(FsError::NotEmpty)), "{how} must return the closure's error");
        assert_eq!(everything(&m, &[a, b]), initial, "a failed {how} left changes behind");
    }
}

pub(crate) fn a_failing_grouped_call_keeps_the_calls_before_it(h: &dyn Harness) {
    let (a, b) = (addr(7), addr(8));
    let m = h.fresh();
    m.group_commits(Duration::from_secs(3600)).unwrap();
    m.write(|tx| setup(tx, b)).unwrap();
    let initial = everything(&m, &[a, b]);
    m.write_grouped(|tx| tx.put_dirent(ROOT_INO, b"kept", 9)).unwrap();
    let failed: Result<(), FsError> = m.write_grouped(|tx| {
        lots_of_changes(tx, 3, a)?;
        Err(FsError::NotEmpty)
    });
    assert!(matches!(failed, Err(FsError::NotEmpty)));
    let v = m.view();
    assert_eq!(v.lookup(ROOT_INO, b"kept").unwrap(), Some(9), "a view sees the grouped call at once");
    assert_eq!(v.lookup(ROOT_INO, b"first").unwrap(), Some(2));
    assert!(matches!(v.inode(3), Err(FsError::NotFound)));
    m.sync().unwrap();
    m.write(|tx| tx.del_dirent(ROOT_INO, b"kept")).unwrap();
    assert_eq!(everything(&m, &[a, b]), initial, "the failed call left changes behind");
}

pub(crate) fn a_call_that_panics_is_taken_back_and_leaves_the_thread_usable(h: &dyn Harness) {
    let m = h.fresh();
    m.group_commits(Duration::from_secs(3600)).unwrap();
    m.write_grouped(|tx| tx.put_dirent(ROOT_INO, b"before", 5)).unwrap();
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = m.write_grouped(|tx| -> Result<(), FsError> {
            tx.put_dirent(ROOT_INO, b"half", 6)?;
            panic!("a bug inside a manifest call");
        });
    }));
    assert!(panicked.is_err(), "the panic goes on to the caller");
    // Not refused as a call from inside a write, and the half change is gone.
    assert_eq!(m.view().lookup(ROOT_INO, b"half").unwrap(), None);
    m.write_grouped(|tx| tx.put_dirent(ROOT_INO, b"after", 7)).unwrap();
    m.flush().unwrap();
    let rx = m.read().unwrap();
    assert_eq!(rx.lookup(ROOT_INO, b"before").unwrap(), Some(5));
    assert_eq!(rx.lookup(ROOT_INO, b"half").unwrap(), None);
    assert_eq!(rx.lookup(ROOT_INO, b"after").unwrap(), Some(7));
}

pub(crate) fn read_is_a_snapshot_and_view_is_live(h: &dyn Harness) {
    let m = h.fresh();
    m.write(|tx| tx.put_dirent(ROOT_INO, b"a", 5)).unwrap();
    let rx = m.read().unwrap();
    m.write(|tx| tx.put_dirent(ROOT_INO, b"b", 6)).unwrap();
    assert_eq!(rx.children(ROOT_INO).unwrap().len(), 1, "a snapshot keeps its moment");
    assert_eq!(names(&m, ROOT_INO).len(), 2);
    assert_eq!(m.write(|tx| Ok(tx.lookup(ROOT_INO, b"b")?.map(|i| i + 1))).unwrap(), Some(7));
    m.checkpoint().unwrap();
    assert!(!m.is_read_only());
}

pub(crate) fn read_only_refuses_writes(h: &dyn Harness) {
    let m = h.fresh();
    m.write(|tx| {
        tx.put_inode(&file(5))?;
        tx.put_dirent(ROOT_INO, b"f", 5)
    })
    .unwrap();
    let (dump, _, _) = m.read().unwrap().dump().unwrap();
    let ro = h.import_read_only(&dump).unwrap();
    assert!(ro.is_read_only());
    assert_eq!(ro.view().lookup(ROOT_INO, b"f").unwrap(), Some(5));
    assert!(matches!(ro.write(|tx| tx.put_dirent(ROOT_INO, b"g", 6)), Err(FsError::ReadOnly)));
    assert!(matches!(ro.write_grouped(|tx| tx.set_staged(5, true)), Err(FsError::ReadOnly)));
    assert!(matches!(ro.write_durable(|tx| tx.delete_inode(5)), Err(FsError::ReadOnly)));
    assert_eq!(ro.read().unwrap().children(ROOT_INO).unwrap(), vec![(b"f".to_vec(), 5)]);
    assert!(!ro.read().unwrap().is_staged(5).unwrap());
}

pub(crate) fn dump_round_trip_and_content_hash(h: &dyn Harness) {
    let m = h.fresh();
    let (a, b) = (addr(7), addr(8));
    m.write(|tx| {
        setup(tx, b)?;
        tx.put_inode(&Attr { size: 50, ..file(3) })?;
        tx.put_symlink(4, b"t")?;
        tx.put_chunk(&a, &ChunkRecord::pending(ChunkId([7; 32]), 10))?;
        tx.set_sealing(&a, Some(42))?;
        tx.set_upload(&b, Some(1))?;
        tx.put_node(&NodeId([1; 32]), &NodeRecord::default())?;
        tx.set_meta("root_version", 4)?;
        tx.put_blob(false, &blob(1, vec![b]), true)
    })
    .unwrap();
    let rx = m.read().unwrap();
    let (dump, files, bytes) = rx.dump().unwrap();
    assert_eq!((files, bytes), (2, 50), "regular files and their bytes");
    let copy = h.import(&dump).unwrap();
    let crx = copy.read().unwrap();
    assert_eq!(crx.content_hash().unwrap(), rx.content_hash().unwrap());
    assert_eq!(crx.staged().unwrap(), Vec::<Ino>::new(), "local-only state is not dumped");
    assert_eq!(crx.uploads(10).unwrap(), NO_ADDRS);
    assert_eq!(crx.small_outbox(&b).unwrap(), None);
    assert_eq!(crx.unreferenced(u64::MAX, 10).unwrap(), vec![a], "a sealing chunk comes back unreferenced");
    assert_eq!(crx.blobs(false).unwrap(), rx.blobs(false).unwrap());
    assert_eq!(crx.nodes().unwrap(), rx.nodes().unwrap());
    assert_eq!(crx.meta("root_version").unwrap(), Some(4));
    assert_eq!(crx.extents(2, 0, u64::MAX).unwrap(), rx.extents(2, 0, u64::MAX).unwrap());
    drop((rx, crx));
    // The content hash follows files, not node statistics.
    let hash = |m: &Manifest| m.read().unwrap().content_hash().unwrap();
    let before = hash(&m);
    m.write(|tx| tx.put_node(&NodeId([2; 32]), &NodeRecord::default())).unwrap();
    assert_eq!(hash(&m), before);
    m.write(|tx| tx.put_dirent(ROOT_INO, b"renamed", 2)).unwrap();
    assert_ne!(hash(&m), before);
    // A hand-built dump (a share's) with its chunk secrets.
    let mut w = DumpWriter::default();
    w.inode(&Attr::new(ROOT_INO, Kind::Dir, 0o755, 0, 0));
    w.share_secret(&a, &[1; 32], &[2; 32]);
    let shared = h.import_read_only(&w.finish()).unwrap();
    assert_eq!(shared.read().unwrap().share_secret(&a).unwrap(), Some(([1; 32], [2; 32])));
    assert_eq!(shared.read().unwrap().share_secret(&b).unwrap(), None);
}

pub(crate) fn malformed_dumps_are_refused_without_panic(h: &dyn Harness) {
    let mut w = DumpWriter::default();
    w.inode(&Attr::new(1, Kind::Dir, 0o755, 0, 0));
    let good = w.finish();
    for cut in 0..good.len() {
        assert!(h.import(&good[..cut]).is_err(), "a dump cut at {cut} was accepted");
    }
    let mut extra = good.clone();
    extra.push(9);
    assert!(h.import(&extra).is_err());
    let mut unknown = good.clone();
    unknown[4] = 77;
    assert!(h.import(&unknown).is_err());
    assert!(h.import(&good).is_ok());
}
