//! Tests of the manifest's recovery from failed writes: a storage backend that runs out of
//! space on demand stands in for a full disk.

use super::*;
use crate::adapters::redb::manifest::Manifest;
use crate::domain::fs::ROOT_INO;
use redb::backends::FileBackend;
use redb::StorageBackend;
use std::io;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// A file backend whose writes fail with ENOSPC while `full` is set.
#[derive(Debug)]
struct Fillable {
    file: FileBackend,
    full: Arc<AtomicBool>,
}

impl Fillable {
    fn check(&self) -> io::Result<()> {
        if self.full.load(Ordering::Relaxed) {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        Ok(())
    }
}

impl StorageBackend for Fillable {
    fn len(&self) -> io::Result<u64> {
        self.file.len()
    }

    fn read(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        self.file.read(offset, len)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.check()?;
        self.file.set_len(len)
    }

    fn sync_data(&self, eventual: bool) -> io::Result<()> {
        self.check()?;
        self.file.sync_data(eventual)
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.check()?;
        self.file.write(offset, data)
    }
}

/// A manifest in `dir` whose disk is full while the returned flag is set.
fn fillable(dir: &Path) -> (Manifest, Arc<AtomicBool>) {
    let path = dir.join("m.redb");
    let full = Arc::new(AtomicBool::new(false));
    let flag = full.clone();
    let opener: Opener = Box::new(move || {
        let boxed = |e: redb::Error| Box::new(e);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| boxed(e.into()))?;
        let backend =
            Fillable { file: FileBackend::new(file).map_err(|e| boxed(e.into()))?, full: flag.clone() };
        redb::Builder::new().create_with_backend(backend).map_err(|e| boxed(e.into()))
    });
    let db = opener().unwrap();
    let m = Manifest::from_store(Store::new(db, opener, Some(&dir.join("m.reserve"))));
    m.write_durable(|tx| super::super::create_tables(tx.raw())).unwrap();
    (m, full)
}

#[test]
fn a_full_disk_fails_the_commit_with_enospc_and_the_next_call_works_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (m, full) = fillable(dir.path());
    m.write_durable(|tx| tx.put_dirent(ROOT_INO, b"kept", 5)).unwrap();
    full.store(true, Ordering::Relaxed);
    let failed = m.write_durable(|tx| tx.put_dirent(ROOT_INO, b"refused", 6));
    assert!(matches!(failed, Err(FsError::NoSpace(_))), "ENOSPC, not EIO: {failed:?}");
    full.store(false, Ordering::Relaxed);
    // Without a reopen every later call failed with "Previous I/O error occurred".
    m.write(|tx| tx.del_dirent(ROOT_INO, b"kept")).expect("a delete after the disk had room again");
    m.write(|tx| tx.put_dirent(ROOT_INO, b"after", 7)).unwrap();
    let err = m.sync().expect_err("the reopen is reported once to the next fsync");
    assert!(matches!(err, FsError::NoSpace(_)), "{err:?}");
    m.sync().unwrap();
    let rx = m.read().unwrap();
    assert_eq!(rx.lookup(ROOT_INO, b"kept").unwrap(), None);
    assert_eq!(rx.lookup(ROOT_INO, b"refused").unwrap(), None);
    assert_eq!(rx.lookup(ROOT_INO, b"after").unwrap(), Some(7));
}

#[test]
fn a_grouped_commit_on_a_full_disk_is_lost_with_enospc_at_the_next_sync_and_writes_resume() {
    let dir = tempfile::tempdir().unwrap();
    let (mut m, full) = fillable(dir.path());
    m.group_commits(Duration::from_secs(3600)).unwrap();
    m.write_grouped(|tx| tx.put_dirent(ROOT_INO, b"a", 5)).unwrap();
    full.store(true, Ordering::Relaxed);
    assert!(matches!(m.flush(), Err(FsError::NoSpace(_))));
    full.store(false, Ordering::Relaxed);
    m.write_grouped(|tx| tx.put_dirent(ROOT_INO, b"b", 6)).unwrap();
    assert!(matches!(m.sync(), Err(FsError::NoSpace(_))), "fsync reports the lost group as ENOSPC");
    m.sync().unwrap();
    assert_eq!(m.read().unwrap().lookup(ROOT_INO, b"b").unwrap(), Some(6));
}

#[test]
fn the_reserve_is_set_aside_on_a_roomy_disk_and_given_back_on_enospc() {
    let dir = tempfile::tempdir().unwrap();
    let (m, full) = fillable(dir.path());
    m.write(|tx| tx.put_dirent(ROOT_INO, b"a", 5)).unwrap();
    let reserve = dir.path().join("m.reserve");
    let roomy = free_space(dir.path()).unwrap();
    if roomy.avail < 4 * reserve_bytes(roomy.total) {
        return; // this machine's temp dir is nearly full itself
    }
    assert_eq!(std::fs::metadata(&reserve).unwrap().len(), reserve_bytes(roomy.total));
    full.store(true, Ordering::Relaxed);
    assert!(m.write_durable(|tx| tx.put_dirent(ROOT_INO, b"b", 6)).is_err());
    assert!(!reserve.exists(), "a full disk gives the reserve back for the next commits");
    full.store(false, Ordering::Relaxed);
    m.write(|tx| tx.put_dirent(ROOT_INO, b"c", 7)).unwrap();
    assert!(reserve.exists(), "set aside again once there is room");
}
