//! The vault manifest (docs/DESIGN.md §6) on redb: inodes, directory entries, symlinks, extents, chunks
//! with replicas, xattrs, the staged set and the upload queue — one file per vault.
//!
//! Operations compose inside one write transaction (`Manifest::write`) so each filesystem call is
//! atomic. Ordinary calls commit without fsync (`Durability::None`); `write_durable` and the
//! periodic `checkpoint` make everything before them durable. fsync(2) on a file therefore costs
//! one durable commit, and a crash loses at most what no fsync acknowledged.
//!
//! Group commit: with [`Manifest::group_commits`] on, [`Manifest::write_grouped`] leaves its
//! transaction open for the next calls, and a flusher thread commits it within the given delay
//! (or at [`GROUP_MAX`] calls). A redb commit writes every copy-on-write page it touched (about
//! 60 KB and 150 µs for a create on a 10 000-file vault); a group of ten shares most of those
//! pages. Every other call joins an open group: `write` and `write_durable` commit it with their
//! own change, `read` commits it before taking its snapshot, and [`Manifest::view`] reads
//! through it. A call that fails inside a group puts back what it changed from an undo log, so
//! the calls before it in the group stay as they were. Callers must not make changes outside the
//! manifest (deleting a staging file, say) that depend on a grouped change until it is committed;
//! `write` (which commits) is the way to do both.

mod port;
mod read;
mod store;
mod tx;
mod view;

pub use crate::domain::dump::dirent_key;
pub use crate::ports::manifest::Summary;
#[cfg(test)]
pub(crate) use port::open_in;
pub use port::RedbManifests;
pub use read::Rx;
pub use tx::Tx;
pub use view::View;

use super::{
    CHUNKS, DIRENTS, EXTENTS, INODES, META, NODES, SEALING, SHARES, SHARE_SECRETS, SMALL_OUTBOX, SNAPSHOTS,
    STAGED, STAGED_RANGES, SYMLINKS, UNREFERENCED, UPLOADS, XATTRS,
};
use crate::domain::fs::{Attr, FsError, Kind, ROOT_INO};
use redb::{Database, Durability, WriteTransaction};
use std::cell::RefCell;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
pub(in crate::adapters::redb) use store::{Spare, Store};

/// Most calls in one group commit.
pub const GROUP_MAX: usize = 256;

thread_local! {
    /// Set while this thread runs a write closure, which holds the group lock: a
    /// [`Manifest::view`] or [`Manifest::read`] from inside it would wait for itself.
    static IN_WRITE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Refuses a manifest call from inside a write closure (use the closure's `Tx` instead).
fn not_in_write() -> Result<(), FsError> {
    if IN_WRITE.with(|w| w.get()) {
        debug_assert!(false, "manifest read or write from inside a manifest write closure");
        return Err(FsError::Io("manifest used from inside its own write".into()));
    }
    Ok(())
}

pub(in crate::adapters::redb) fn err<E: Into<redb::Error>>(e: E) -> FsError {
    FsError::Io(format!("manifest: {}", e.into()))
}

/// The manifest database.
pub struct Manifest {
    read_only: bool,
    group: Arc<Group>,
    /// Whether group commits are on (a flusher thread runs).
    grouping: AtomicBool,
    flusher: Mutex<Option<JoinHandle<()>>>,
}

/// The database and its open group commit, if any, shared with the flusher thread.
struct Group {
    state: Mutex<Open>,
    wake: Condvar,
    store: Store,
}

#[derive(Default)]
struct Open {
    txn: Option<WriteTransaction>,
    calls: usize,
    since: Option<Instant>,
    closing: bool,
    /// Calls acknowledged in a group whose commit then failed, not yet reported by `sync`.
    lost: usize,
    /// Whether the disk was full when they were lost (`sync` then fails with ENOSPC).
    lost_to_full_disk: bool,
    /// Makes the next commit fail (tests of the failure path).
    #[cfg(test)]
    fail_next: bool,
}

/// Meta key: how many regular files the manifest holds (kept by every inode write).
pub(in crate::adapters::redb) const FILES: &str = "files";
/// Meta key: the logical bytes of those files (their sizes).
pub(in crate::adapters::redb) const FILE_BYTES: &str = "file_bytes";

/// Creates every manifest table that does not exist yet.
pub(in crate::adapters::redb) fn create_tables(txn: &WriteTransaction) -> Result<(), FsError> {
    for t in [INODES, SYMLINKS, SNAPSHOTS, SHARES] {
        let _ = txn.open_table(t).map_err(err)?;
    }
    for t in [CHUNKS, SMALL_OUTBOX, NODES, SHARE_SECRETS] {
        let _ = txn.open_table(t).map_err(err)?;
    }
    for t in [UPLOADS, UNREFERENCED, SEALING] {
        let _ = txn.open_table(t).map_err(err)?;
    }
    let _ = txn.open_table(DIRENTS).map_err(err)?;
    let _ = txn.open_table(XATTRS).map_err(err)?;
    let _ = txn.open_table(EXTENTS).map_err(err)?;
    let _ = txn.open_table(STAGED).map_err(err)?;
    let _ = txn.open_table(STAGED_RANGES).map_err(err)?;
    let _ = txn.open_table(META).map_err(err)?;
    Ok(())
}

impl Manifest {
    /// Opens (creating if needed) the manifest at `path`, with a root directory owned by the
    /// mounting user.
    pub fn open(path: &Path, uid: u32, gid: u32) -> Result<Manifest, FsError> {
        Manifest::open_with(path, uid, gid, Spare::Reserve)
    }

    fn open_with(path: &Path, uid: u32, gid: u32, spare: Spare) -> Result<Manifest, FsError> {
        let db = Database::create(path).map_err(err)?;
        let m = Manifest::from_store(Store::for_file(db, path, spare));
        m.write_durable(|tx| {
            create_tables(tx.txn)?;
            if matches!(tx.inode(ROOT_INO), Err(FsError::NotFound)) {
                tx.put_inode(&Attr::new(ROOT_INO, Kind::Dir, 0o755, uid, gid))?;
            }
            if tx.meta(FILES)?.is_none() || tx.meta(FILE_BYTES)?.is_none() {
                let (files, bytes) = tx.file_totals()?;
                tx.set_meta(FILES, files)?;
                tx.set_meta(FILE_BYTES, bytes)?;
            }
            Ok(())
        })?;
        Ok(m)
    }

    pub(in crate::adapters::redb) fn from_store(store: Store) -> Manifest {
        Manifest {
            read_only: false,
            group: Arc::new(Group { state: Mutex::default(), wake: Condvar::new(), store }),
            grouping: AtomicBool::new(false),
            flusher: Mutex::new(None),
        }
    }

    /// Opens an existing manifest that no call may change (a snapshot or a share).
    pub fn open_read_only(path: &Path) -> Result<Manifest, FsError> {
        let mut m = Manifest::open_with(path, 0, 0, Spare::None)?;
        m.read_only = true;
        Ok(m)
    }

    /// Whether changes are refused.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Turns group commits on: [`Manifest::write_grouped`] calls share one commit, made at
    /// most `delay` after the first of them (by a flusher thread) or at [`GROUP_MAX`] calls.
    pub fn group_commits(&mut self, delay: Duration) -> Result<(), FsError> {
        self.start_flusher(delay)
    }

    /// [`Manifest::group_commits`] on a shared manifest.
    fn start_flusher(&self, delay: Duration) -> Result<(), FsError> {
        let mut flusher = self.flusher.lock().unwrap_or_else(|p| p.into_inner());
        if flusher.is_some() || self.read_only {
            return Ok(());
        }
        let group = self.group.clone();
        let thread = std::thread::Builder::new()
            .name("manifest-flush".into())
            .spawn(move || group.flush_every(delay))
            .map_err(|e| FsError::Io(format!("cannot start the manifest flusher: {e}")))?;
        *flusher = Some(thread);
        self.grouping.store(true, Ordering::Release);
        Ok(())
    }

    /// A read transaction: a consistent snapshot that includes every call made so far (an
    /// open group is committed first).
    pub fn read(&self) -> Result<Rx, FsError> {
        not_in_write()?;
        self.flush()?;
        Ok(Rx(self.group.store.begin_read()?))
    }

    /// Reads that see every call made so far, including an open group, without committing it.
    /// Each call reads the state of that moment; use [`Manifest::read`] for several reads
    /// that must agree.
    pub fn view(&self) -> View<'_> {
        View(self)
    }

    /// Whether a group is open (uncommitted).
    #[cfg(test)]
    pub(in crate::adapters::redb) fn group_open(&self) -> bool {
        self.group.lock().txn.is_some()
    }

    /// Whether the flusher has a deadline to wait for.
    #[cfg(test)]
    pub(in crate::adapters::redb) fn flush_due(&self) -> bool {
        self.group.lock().since.is_some()
    }

    /// Commits an open group (without fsync).
    pub fn flush(&self) -> Result<(), FsError> {
        let mut open = self.group.lock();
        self.group.commit_open(&mut open)
    }

    /// Runs `f` in the open group (or a new transaction) and leaves it open: the change is
    /// committed with the group, at most the flusher's delay later, or by the next call that
    /// commits. Without group commits this is [`Manifest::write`].
    pub fn write_grouped<T>(&self, f: impl FnOnce(&Tx) -> Result<T, FsError>) -> Result<T, FsError> {
        if !self.grouping.load(Ordering::Acquire) {
            return self.write(f);
        }
        self.run(None, f)
    }

    fn run<T>(
        &self,
        commit: Option<Durability>,
        f: impl FnOnce(&Tx) -> Result<T, FsError>,
    ) -> Result<T, FsError> {
        if self.read_only {
            return Err(FsError::ReadOnly);
        }
        not_in_write()?;
        let mut open = self.group.lock();
        let joined = open.txn.is_some();
        if !joined {
            open.txn = Some(self.group.store.begin_write()?);
            open.calls = 0;
            open.since = Some(Instant::now());
        }
        let Some(txn) = open.txn.as_ref() else { unreachable!("opened above") };
        let tx = Tx { txn, undo: joined.then(RefCell::default) };
        IN_WRITE.with(|w| w.set(true));
        // A panicking call is taken back like a failing one, then the panic goes on: its half
        // change must not be committed with the group, and this thread must stay usable.
        let (out, panicked) = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&tx))) {
            Ok(out) => (out, None),
            Err(p) => (Err(FsError::Io("manifest call panicked".into())), Some(p)),
        };
        IN_WRITE.with(|w| w.set(false));
        let undo = tx.undo.map(RefCell::into_inner);
        let out = match out {
            Ok(v) => {
                open.calls += 1;
                match commit {
                    Some(d) => {
                        let earlier = open.calls - 1;
                        if let Err(e) = self.group.commit_with(&mut open, d) {
                            open.note_lost(earlier, &e);
                            return Err(e);
                        }
                    }
                    None if open.calls >= GROUP_MAX => self.group.commit_open(&mut open)?,
                    None if !joined => self.group.wake.notify_one(),
                    None => {}
                }
                Ok(v)
            }
            Err(e) if !joined => {
                if let Some(txn) = open.txn.take() {
                    let _ = txn.abort();
                }
                open.since = None;
                Err(e)
            }
            Err(e) => {
                let undone = undo.unwrap_or_default().into_iter().rev().try_for_each(|u| u(txn));
                if let Err(u) = undone {
                    // The transaction is in an unknown state: drop the whole group.
                    tracing::error!(error = %u, calls = open.calls, "cannot undo a failed manifest change; the last {} changes are lost", open.calls);
                    if let Some(txn) = open.txn.take() {
                        let _ = txn.abort();
                    }
                    open.since = None;
                    open.lost += std::mem::take(&mut open.calls);
                }
                Err(e)
            }
        };
        if let Some(p) = panicked {
            drop(open);
            std::panic::resume_unwind(p);
        }
        out
    }

    /// Runs `f` in one atomic transaction, committed without fsync (with any open group).
    pub fn write<T>(&self, f: impl FnOnce(&Tx) -> Result<T, FsError>) -> Result<T, FsError> {
        self.run(Some(Durability::None), f)
    }

    /// Runs `f` in one atomic transaction and makes it, and everything before it, durable.
    pub fn write_durable<T>(&self, f: impl FnOnce(&Tx) -> Result<T, FsError>) -> Result<T, FsError> {
        self.run(Some(Durability::Immediate), f)
    }

    /// Makes every earlier commit durable.
    pub fn checkpoint(&self) -> Result<(), FsError> {
        self.write_durable(|_| Ok(()))
    }

    /// `checkpoint` for fsync(2): also fails (once) when a group commit failed since the last
    /// `sync`, because calls it held were acknowledged and then lost, as a local filesystem
    /// reports a failed writeback at the next fsync.
    pub fn sync(&self) -> Result<(), FsError> {
        self.checkpoint()?;
        let (lost, full) = {
            let mut open = self.group.lock();
            (std::mem::take(&mut open.lost), std::mem::take(&mut open.lost_to_full_disk))
        };
        if let Some(reopened_full) = self.group.store.take_reopened() {
            // The reopened database is at its last durable commit: what no fsync covered is gone.
            let why = "manifest: reopened after a failed write; changes since the last fsync may be lost (see the log)";
            return Err(if full || reopened_full {
                FsError::NoSpace(why.into())
            } else {
                FsError::Io(why.into())
            });
        }
        if lost > 0 {
            let why = format!(
                "manifest: a commit failed; {lost} earlier change(s) of names or attributes were lost (see the log)"
            );
            return Err(if full { FsError::NoSpace(why) } else { FsError::Io(why) });
        }
        Ok(())
    }

    /// Makes the next commit fail.
    #[cfg(test)]
    pub(in crate::adapters::redb) fn fail_next_commit(&self) {
        self.group.lock().fail_next = true;
    }
}

impl Drop for Manifest {
    fn drop(&mut self) {
        let flusher = self.flusher.get_mut().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(flusher) = flusher {
            self.group.lock().closing = true;
            self.group.wake.notify_one();
            let _ = flusher.join();
        }
        if let Err(e) = self.flush() {
            tracing::error!(error = %e, "cannot commit the manifest's last changes");
        }
    }
}

impl Open {
    /// Counts `calls` acknowledged and then lost by a failed commit, for the next `sync`.
    fn note_lost(&mut self, calls: usize, e: &FsError) {
        self.lost += calls;
        self.lost_to_full_disk |= matches!(e, FsError::NoSpace(_));
    }
}

impl Group {
    fn lock(&self) -> MutexGuard<'_, Open> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Commits the open group; if that fails, its calls count as lost until `sync` reports them.
    fn commit_open(&self, open: &mut Open) -> Result<(), FsError> {
        let calls = open.calls;
        self.commit_with(open, Durability::None).inspect_err(|e| open.note_lost(calls, e))
    }

    fn commit_with(&self, open: &mut Open, durability: Durability) -> Result<(), FsError> {
        // Cleared first, also when nothing is open: a deadline left behind would spin the flusher.
        open.since = None;
        let calls = std::mem::take(&mut open.calls);
        let Some(mut txn) = open.txn.take() else { return Ok(()) };
        txn.set_durability(durability);
        #[cfg(test)]
        if std::mem::take(&mut open.fail_next) {
            let _ = txn.abort();
            return Err(FsError::Io("manifest: commit failed (injected)".into()));
        }
        self.store.commit(txn).inspect_err(|e| {
            if matches!(e, FsError::NoSpace(_)) {
                tracing::warn!(error = %e, calls, "manifest commit failed: the disk is full");
            } else {
                tracing::error!(error = %e, calls, "manifest commit failed");
            }
        })
    }

    /// The flusher thread: commits each group `delay` after it opened, until closing.
    fn flush_every(&self, delay: Duration) {
        let mut open = self.lock();
        loop {
            if open.closing {
                let _ = self.commit_open(&mut open);
                return;
            }
            match open.since {
                None => open = self.wake.wait(open).unwrap_or_else(|p| p.into_inner()),
                Some(since) => {
                    let due = since + delay;
                    let now = Instant::now();
                    if now >= due {
                        let _ = self.commit_open(&mut open);
                    } else {
                        open = self.wake.wait_timeout(open, due - now).unwrap_or_else(|p| p.into_inner()).0;
                    }
                }
            }
        }
    }
}
