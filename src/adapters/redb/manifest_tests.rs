//! The manifest contract on redb, and redb's own group commits: what a grouped call leaves
//! visible, what a failing call inside a group takes back, and what reaches the file.

use super::manifest::{Manifest, RedbManifests, Tx, GROUP_MAX};
use crate::adapters::memory::MemoryManifest;
use crate::domain::fs::{Attr, ChunkRecord, ChunkState, Extent, FsError, Ino, Kind, ROOT_INO};
use crate::domain::health::NodeRecord;
use crate::domain::ids::NodeId;
use crate::domain::ids::{Addr, ChunkId};
use crate::domain::snapshot::{BlobRow, PieceRef, PinScope, SnapshotInfo};
use crate::ports::manifest::{self as port, ManifestFiles};
use crate::ports::manifest_contract::{fixed, Harness};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn attr(ino: Ino) -> Attr {
    Attr::new(ino, Kind::File, 0o644, 1000, 1000)
}

fn grouped(dir: &Path) -> Manifest {
    let mut m = Manifest::open(&dir.join("m.redb"), 1000, 1000).unwrap();
    m.group_commits(Duration::from_secs(3600)).unwrap();
    m
}

/// Everything the manifest holds that these tests touch, as comparable text (the dump covers
/// inodes, entries, symlinks, extents, chunks, xattrs and meta; the rest is local-only state).
fn everything(m: &Manifest, addrs: &[Addr]) -> String {
    let rx = m.read().unwrap();
    let (dump, files, bytes) = rx.dump().unwrap();
    let mut out = format!("dump {} files {files} bytes {bytes}\n", blake3::hash(&dump));
    out += &format!("staged {:?}\nuploads {:?}\n", rx.staged().unwrap(), rx.uploads(100).unwrap());
    for a in addrs {
        out += &format!("outbox {:?}\n", rx.small_outbox(a).unwrap());
    }
    out
}

/// The state the failing call starts from.
fn setup(tx: &Tx, b: Addr) -> Result<(), FsError> {
    tx.put_inode(&attr(2))?;
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
    tx.put_inode(&attr(ino))?;
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
    tx.set_meta("root_version", 9)?;
    tx.next_ino()?;
    tx.delete_inode(2)?;
    Ok(())
}

#[test]
fn a_failing_call_inside_a_group_takes_back_only_its_own_changes() {
    let (a, b) = (Addr([7; 32]), Addr([8; 32]));
    let dir = tempfile::tempdir().unwrap();
    let m = grouped(dir.path());
    m.write(|tx| setup(tx, b)).unwrap();
    let initial = everything(&m, &[a, b]);
    // The same changes made by a call that succeeds change that state: so the comparison
    // below would see an undo that missed something.
    let probe = tempfile::tempdir().unwrap();
    m.checkpoint().unwrap();
    std::fs::copy(dir.path().join("m.redb"), probe.path().join("m.redb")).unwrap();
    let other = grouped(probe.path());
    assert_eq!(everything(&other, &[a, b]), initial);
    other.write(|tx| lots_of_changes(tx, 3, a)).unwrap();
    assert_ne!(everything(&other, &[a, b]), initial, "the changes must show");

    // A call before it in the same group, which must survive the failure.
    m.write_grouped(|tx| tx.put_dirent(ROOT_INO, b"kept", 9)).unwrap();
    assert!(m.group_open());
    let failed: Result<(), FsError> = m.write_grouped(|tx| {
        lots_of_changes(tx, 3, a)?;
        Err(FsError::NotEmpty)
    });
    assert!(matches!(failed, Err(FsError::NotEmpty)));
    assert!(m.group_open(), "the failure must not end the group");
    let v = m.view();
    assert_eq!(v.lookup(ROOT_INO, b"kept").unwrap(), Some(9));
    assert_eq!(v.lookup(ROOT_INO, b"first").unwrap(), Some(2));
    assert!(matches!(v.inode(3), Err(FsError::NotFound)));
    // `read` commits the group: the kept entry and nothing of the failed call.
    let after = everything(&m, &[a, b]);
    assert!(!m.group_open());
    m.write(|tx| tx.del_dirent(ROOT_INO, b"kept")).unwrap();
    assert_eq!(everything(&m, &[a, b]), initial, "the failed call left changes behind");
    assert_ne!(after, initial);
}

#[test]
fn grouped_calls_are_seen_at_once_and_committed_by_the_flusher_a_write_or_the_drop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.redb");
    {
        let mut m = Manifest::open(&path, 1000, 1000).unwrap();
        m.group_commits(Duration::from_millis(20)).unwrap();
        m.write_grouped(|tx| tx.put_dirent(ROOT_INO, b"a", 5)).unwrap();
        assert!(m.group_open());
        assert_eq!(m.view().lookup(ROOT_INO, b"a").unwrap(), Some(5), "a view sees the open group");
        let deadline = Instant::now() + Duration::from_secs(10);
        while m.group_open() {
            assert!(Instant::now() < deadline, "the flusher did not commit the group");
            std::thread::sleep(Duration::from_millis(5));
        }
        m.write_grouped(|tx| tx.put_dirent(ROOT_INO, b"b", 6)).unwrap();
        m.write(|tx| tx.put_dirent(ROOT_INO, b"c", 7)).unwrap();
        assert!(!m.group_open(), "write commits the group with its own change");
        m.write_grouped(|tx| tx.put_dirent(ROOT_INO, b"d", 8)).unwrap();
        assert!(m.group_open());
        // Dropped with the group open: it is committed on the way out.
    }
    let m = Manifest::open(&path, 1000, 1000).unwrap();
    let names: Vec<(Vec<u8>, Ino)> = m.read().unwrap().children(ROOT_INO).unwrap();
    let want: Vec<(Vec<u8>, Ino)> =
        vec![(b"a".to_vec(), 5), (b"b".to_vec(), 6), (b"c".to_vec(), 7), (b"d".to_vec(), 8)];
    assert_eq!(names, want);
}

#[test]
fn a_group_is_committed_at_its_size_limit() {
    let dir = tempfile::tempdir().unwrap();
    let m = grouped(dir.path());
    for i in 0..GROUP_MAX as u64 - 1 {
        m.write_grouped(|tx| tx.put_dirent(ROOT_INO, &i.to_be_bytes(), i + 2)).unwrap();
    }
    assert!(m.group_open());
    m.write_grouped(|tx| tx.put_dirent(ROOT_INO, b"last", 1)).unwrap();
    assert!(!m.group_open());
}

#[test]
fn without_group_commits_every_write_commits() {
    let dir = tempfile::tempdir().unwrap();
    let m = Manifest::open(&dir.path().join("m.redb"), 1000, 1000).unwrap();
    m.write_grouped(|tx| tx.put_dirent(ROOT_INO, b"a", 5)).unwrap();
    assert!(!m.group_open());
}

#[test]
fn a_failed_group_commit_is_reported_once_by_the_next_sync() {
    let dir = tempfile::tempdir().unwrap();
    let m = grouped(dir.path());
    m.write_grouped(|tx| tx.put_dirent(ROOT_INO, b"a", 5)).unwrap();
    m.write_grouped(|tx| tx.put_dirent(ROOT_INO, b"b", 6)).unwrap();
    m.fail_next_commit();
    assert!(m.flush().is_err());
    assert_eq!(m.view().lookup(ROOT_INO, b"a").unwrap(), None, "the failed group's calls are gone");
    let err = m.sync().expect_err("the lost calls must be reported");
    assert!(err.to_string().contains("2 earlier change(s)"), "{err}");
    m.sync().unwrap();
    // A call committed with its own change: the group's earlier calls count as lost.
    m.write_grouped(|tx| tx.put_dirent(ROOT_INO, b"c", 7)).unwrap();
    m.fail_next_commit();
    assert!(m.write(|tx| tx.put_dirent(ROOT_INO, b"d", 8)).is_err());
    assert!(m.sync().expect_err("reported").to_string().contains("1 earlier change(s)"));
    m.write_grouped(|tx| tx.put_dirent(ROOT_INO, b"e", 9)).unwrap();
    m.sync().unwrap();
    assert_eq!(m.read().unwrap().lookup(ROOT_INO, b"e").unwrap(), Some(9));
}

#[test]
fn a_call_that_fails_in_a_fresh_group_leaves_the_flusher_nothing_to_wait_for() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = Manifest::open(&dir.path().join("m.redb"), 1000, 1000).unwrap();
    m.group_commits(Duration::from_millis(1)).unwrap();
    let failed: Result<(), FsError> = m.write_grouped(|tx| {
        tx.put_dirent(ROOT_INO, b"x", 5)?;
        Err(FsError::Exists)
    });
    assert!(failed.is_err());
    // A deadline left behind with nothing open made the flusher spin at 100 % of a core while
    // holding the group's lock, so the checks run on a thread that may never come back.
    let m = std::sync::Arc::new(m);
    let (tx, rx) = std::sync::mpsc::channel();
    let probe = m.clone();
    std::thread::spawn(move || {
        let first = (probe.group_open(), probe.flush_due());
        std::thread::sleep(Duration::from_millis(20));
        let _ = tx.send((first, probe.flush_due(), probe.view().lookup(ROOT_INO, b"x").unwrap()));
    });
    let ((open, due), due_later, x) =
        rx.recv_timeout(Duration::from_secs(10)).expect("the flusher holds the group's lock: it spins");
    assert!(!open, "the failed call left its group open");
    assert!(!due && !due_later, "a deadline without an open group");
    assert_eq!(x, None);
}

/// redb manifests in a temp dir, for the contract suite.
struct Redb {
    dir: tempfile::TempDir,
    files: AtomicUsize,
}

impl Redb {
    fn new() -> Redb {
        Redb { dir: tempfile::tempdir().unwrap(), files: AtomicUsize::new(0) }
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join(format!("m{}.redb", self.files.fetch_add(1, Ordering::Relaxed)))
    }
}

impl Harness for Redb {
    fn fresh(&self) -> port::Manifest {
        RedbManifests.open(&self.path(), 1000, 1000).unwrap()
    }

    fn import(&self, dump: &[u8]) -> Result<port::Manifest, FsError> {
        RedbManifests.import(&self.path(), dump)
    }

    fn import_read_only(&self, dump: &[u8]) -> Result<port::Manifest, FsError> {
        let path = self.path();
        drop(RedbManifests.import(&path, dump)?);
        RedbManifests.open_read_only(&path)
    }
}

mod contract {
    use super::Redb;
    use crate::ports::manifest_contract::manifest_contract;

    manifest_contract!(Redb::new());
}

/// Calls whose dump depends on nothing but themselves (no clock).
fn same_everywhere(tx: &port::Tx) -> Result<(), FsError> {
    let (a, b) = (Addr([1; 32]), Addr([2; 32]));
    tx.put_inode(&fixed(Attr::new(ROOT_INO, Kind::Dir, 0o755, 1000, 1000)))?;
    for (name, ino) in [(&b"zeta"[..], 3), (b"alpha", 2)] {
        tx.put_inode(&fixed(Attr { size: 10 * ino, ..attr(ino) }))?;
        tx.put_dirent(ROOT_INO, name, ino)?;
    }
    tx.put_symlink(4, b"target")?;
    tx.put_xattr(2, b"user.k", Some(b"v"))?;
    tx.put_chunk(&a, &ChunkRecord::pending(ChunkId([1; 32]), 100))?;
    tx.put_chunk(&b, &ChunkRecord::pending(ChunkId([2; 32]), 100))?;
    tx.set_extents(2, &[Extent { offset: 0, len: 20, id: ChunkId([1; 32]), addr: a }])?;
    tx.set_sealing(&b, Some(77))?;
    tx.set_meta("root_version", 3)?;
    tx.put_node(&NodeId([5; 32]), &NodeRecord { passed: 4, ..NodeRecord::default() })?;
    let head = PieceRef { id: ChunkId([1; 32]), addr: a, len: 100, seed: [3; 32] };
    let info = SnapshotInfo { id: 1, taken_ms: 5, head, files: 2, bytes: 50, epoch: 0 };
    tx.put_blob(false, &BlobRow { info, pins: vec![a], scope: PinScope::Pieces, path: Vec::new() }, true)?;
    tx.put_blob(true, &BlobRow { info, pins: vec![a], scope: PinScope::Pieces, path: b"/x".to_vec() }, true)
}

#[test]
fn redb_and_memory_manifests_write_the_same_dump() {
    let dir = tempfile::tempdir().unwrap();
    let redb: port::Manifest = Arc::new(Manifest::open(&dir.path().join("m.redb"), 1000, 1000).unwrap());
    let memory: port::Manifest = Arc::new(MemoryManifest::new(1000, 1000));
    for m in [&redb, &memory] {
        m.write(same_everywhere).unwrap();
    }
    let dump = |m: &port::Manifest| m.read().unwrap().dump().unwrap();
    assert_eq!(dump(&redb), dump(&memory));
    // And each reads the other's dump back to the same dump.
    let (redb_dump, memory_dump) = (dump(&redb).0, dump(&memory).0);
    let from_memory = RedbManifests.import(&dir.path().join("copy.redb"), &memory_dump).unwrap();
    assert_eq!(dump(&from_memory).0, redb_dump);
    let from_redb: port::Manifest = Arc::new(MemoryManifest::import(&redb_dump).unwrap());
    assert_eq!(dump(&from_redb).0, memory_dump);
}

/// `status` reads files and their bytes from counters every inode write keeps (no scan); a
/// manifest without them (an older one, or one rebuilt from a dump) is counted when opened.
#[test]
fn file_counters_follow_every_inode_write_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.redb");
    let totals = |m: &Manifest| {
        let s = m.read().unwrap().summary().unwrap();
        (s.files, s.file_bytes)
    };
    let m = Manifest::open(&path, 1000, 1000).unwrap();
    m.write(|tx| {
        for (ino, size) in [(2, 100), (3, 5)] {
            tx.put_inode(&Attr { size, ..attr(ino) })?;
        }
        tx.put_inode(&Attr::new(4, Kind::Dir, 0o755, 1000, 1000))
    })
    .unwrap();
    assert_eq!(totals(&m), (2, 105));
    m.write(|tx| tx.put_inode(&Attr { size: 1000, ..attr(2) })).unwrap();
    assert_eq!(totals(&m), (2, 1005));
    m.write(|tx| tx.delete_inode(3)).unwrap();
    assert_eq!(totals(&m), (1, 1000));
    // A failed call changes no counter.
    let failed = m.write(|tx| {
        tx.put_inode(&Attr { size: 7, ..attr(9) })?;
        Err::<(), _>(FsError::Invalid("test"))
    });
    assert!(failed.is_err());
    assert_eq!(totals(&m), (1, 1000));
    let (dump, files, bytes) = m.read().unwrap().dump().unwrap();
    assert_eq!((files, bytes), (1, 1000));
    drop(m);
    assert_eq!(totals(&Manifest::open(&path, 1000, 1000).unwrap()), (1, 1000));
    // Rebuilt from a dump, which does not carry the counters: counted when opened.
    let copy = dir.path().join("copy.redb");
    drop(Manifest::import(&copy, &dump, &|_, _| {}).unwrap());
    let m = Manifest::open(&copy, 0, 0).unwrap();
    assert_eq!(totals(&m), (1, 1000));
    m.write(|tx| tx.put_inode(&Attr { size: 1, ..attr(5) })).unwrap();
    assert_eq!(totals(&m), (2, 1001));
}
