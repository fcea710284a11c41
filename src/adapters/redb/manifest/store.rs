//! The manifest's database handle, reopened after a failed write (docs/SEMANTICS.md, full disk),
//! and its reserve: a file of free space beside the manifest, given back to the filesystem when
//! the home runs full, so that the commits of deletes and renames find room.
//!
//! redb refuses every call after a failed write ("Previous I/O error occurred"); closing and
//! opening the file again returns to its last durable commit and makes it usable. The manifest
//! therefore reopens after any storage error and tries a failed `begin_write` again (bounded).
//! A failed commit is not run again: its call fails (ENOSPC on a full disk) and the next works.

use super::err;
use crate::adapters::local::{free_space, reserve_bytes};
use crate::domain::fs::{is_no_space, FsError};
use redb::{Database, ReadTransaction, WriteTransaction};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

/// How often a reopen is tried before a call gives up (a read transaction still open keeps the
/// old file locked for a moment).
const REOPEN_TRIES: u32 = 5;
/// The wait before the first retry of a reopen; doubled each time.
const REOPEN_WAIT: Duration = Duration::from_millis(10);

/// Opens the database file again.
pub(in crate::adapters::redb) type Opener = Box<dyn Fn() -> Result<Database, Box<redb::Error>> + Send + Sync>;

/// Whether a manifest keeps a reserve beside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::adapters::redb) enum Spare {
    /// A vault's own manifest, written to: it keeps a reserve.
    Reserve,
    /// A manifest never written to (a snapshot or a share).
    None,
}

/// The database, how to open it again, and the reserve beside it.
pub(in crate::adapters::redb) struct Store {
    db: RwLock<Option<Database>>,
    opener: Opener,
    reserve: Option<Reserve>,
    /// Set once a write failed for lack of space, until a commit succeeds.
    no_space: AtomicBool,
    /// Set by a reopen (whether the disk was full), until `sync` reports it.
    reopened: Mutex<Option<bool>>,
}

/// Whether a redb error is one of storage (the handle needs reopening).
fn storage_failed(e: &redb::Error) -> bool {
    matches!(e, redb::Error::Io(_) | redb::Error::PreviousIo)
}

impl Store {
    /// A store over `db`, reopened with `opener`, with a reserve at `reserve` (none for a
    /// manifest that is never written).
    pub(in crate::adapters::redb) fn new(db: Database, opener: Opener, reserve: Option<&Path>) -> Store {
        let reserve = reserve.map(Reserve::new);
        Store {
            db: RwLock::new(Some(db)),
            opener,
            reserve,
            no_space: AtomicBool::new(false),
            reopened: Mutex::new(None),
        }
    }

    /// A store for the database file at `path`, with its reserve beside it.
    pub(in crate::adapters::redb) fn for_file(db: Database, path: &Path, spare: Spare) -> Store {
        let at = path.to_path_buf();
        let opener: Opener = Box::new(move || Database::create(&at).map_err(|e| Box::new(e.into())));
        let reserve = path.with_extension("reserve");
        Store::new(db, opener, (spare == Spare::Reserve).then_some(reserve.as_path()))
    }

    /// Runs `f` on the open database, reopening it first if a failure closed it.
    fn with_db<T>(&self, f: impl Fn(&Database) -> Result<T, Box<redb::Error>>) -> Result<T, FsError> {
        for attempt in 0..2 {
            {
                let db = self.db.read().unwrap_or_else(|p| p.into_inner());
                if let Some(db) = db.as_ref() {
                    match f(db) {
                        Err(e) if attempt == 0 && storage_failed(&e) => {
                            tracing::warn!(error = %e, "the manifest database failed; reopening it");
                        }
                        r => return r.map_err(|e| self.error(*e)),
                    }
                }
            }
            self.reopen()?;
        }
        Err(FsError::Io("manifest: the database could not be reopened".into()))
    }

    /// A read transaction.
    pub(in crate::adapters::redb) fn begin_read(&self) -> Result<ReadTransaction, FsError> {
        self.with_db(|db| db.begin_read().map_err(|e| Box::new(e.into())))
    }

    /// A write transaction.
    pub(in crate::adapters::redb) fn begin_write(&self) -> Result<WriteTransaction, FsError> {
        self.check_reserve();
        self.with_db(|db| db.begin_write().map_err(|e| Box::new(e.into())))
    }

    /// Gives the reserve back when the home is nearly full (or sets it aside again).
    fn check_reserve(&self) {
        if self.reserve.as_ref().is_some_and(Reserve::check) {
            self.no_space.store(false, Ordering::Relaxed); // there is room again
        }
    }

    /// Commits `txn` (the reserve given back first when the home is nearly full); after a
    /// failure the database is reopened for the next call.
    pub(in crate::adapters::redb) fn commit(&self, txn: WriteTransaction) -> Result<(), FsError> {
        self.check_reserve();
        match txn.commit() {
            Ok(()) => {
                self.no_space.store(false, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                let e: redb::Error = e.into();
                let out = self.error(e);
                if let Err(r) = self.reopen() {
                    tracing::error!(error = %r, "cannot reopen the manifest after a failed commit");
                }
                Err(out)
            }
        }
    }

    /// The vault's error for a redb error: ENOSPC when the disk is full (also for the
    /// "previous I/O error" that follows a full disk).
    fn error(&self, e: redb::Error) -> FsError {
        let full = match &e {
            redb::Error::Io(io) => is_no_space(io),
            redb::Error::PreviousIo => self.no_space.load(Ordering::Relaxed),
            _ => false,
        };
        if full {
            self.no_space.store(true, Ordering::Relaxed);
            if let Some(r) = &self.reserve {
                r.release();
            }
            return FsError::NoSpace(format!("manifest: {e}"));
        }
        err(e)
    }

    /// Closes and opens the database again (bounded tries; the reserve is given back first).
    fn reopen(&self) -> Result<(), FsError> {
        let mut db = self.db.write().unwrap_or_else(|p| p.into_inner());
        drop(db.take());
        if let Some(r) = &self.reserve {
            if self.no_space.load(Ordering::Relaxed) {
                r.release();
            }
        }
        let mut wait = REOPEN_WAIT;
        for attempt in 1..=REOPEN_TRIES {
            match (self.opener)() {
                Ok(opened) => {
                    *db = Some(opened);
                    *self.reopened.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(self.no_space.load(Ordering::Relaxed));
                    tracing::info!("the manifest database was reopened");
                    return Ok(());
                }
                Err(e) if attempt == REOPEN_TRIES => return Err(self.error(*e)),
                Err(e) => tracing::debug!(error = %e, attempt, "reopening the manifest failed; trying again"),
            }
            std::thread::sleep(wait);
            wait *= 2;
        }
        Err(FsError::Io("manifest: cannot reopen the database".into()))
    }

    /// Whether the database was reopened since the last call (and whether the disk was full).
    pub(in crate::adapters::redb) fn take_reopened(&self) -> Option<bool> {
        self.reopened.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;

/// A file of preallocated space beside the manifest, removed when the home is nearly full and
/// made again once there is room.
struct Reserve {
    path: PathBuf,
    dir: PathBuf,
    held: Mutex<bool>,
}

impl Reserve {
    fn new(path: &Path) -> Reserve {
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
        Reserve { path: path.to_path_buf(), dir, held: Mutex::new(path.exists()) }
    }

    /// Gives the reserve back when less than it is free, and makes it again when there is room
    /// for it four times over; whether there is that much room.
    fn check(&self) -> bool {
        let Ok(space) = free_space(&self.dir) else { return false };
        let bytes = reserve_bytes(space.total);
        let roomy = space.avail >= 4 * bytes;
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if *held && space.avail < bytes {
            drop(held);
            self.release();
        } else if !*held && roomy {
            match allocate(&self.path, bytes) {
                Ok(()) => *held = true,
                Err(e) => tracing::debug!(error = %e, "cannot set the manifest's reserve aside"),
            }
        }
        roomy
    }

    /// Removes the reserve file (its space goes to the manifest's next commits).
    fn release(&self) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if std::mem::take(&mut *held) && std::fs::remove_file(&self.path).is_ok() {
            tracing::warn!(reserve = %self.path.display(), "the vault's disk is nearly full: the manifest's reserve was given back so that deletes and renames can commit");
        }
    }
}

/// Makes `path` a file of `bytes` allocated bytes.
fn allocate(path: &Path, bytes: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let tmp = path.with_extension("reserve.tmp");
    let file = std::fs::File::create(&tmp)?;
    // SAFETY: fallocate on a valid open descriptor; no memory is passed.
    let r = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, bytes as libc::off_t) };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        drop(file);
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path)
}
