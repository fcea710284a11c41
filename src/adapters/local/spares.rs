//! Empty staging files kept for reuse. Creating and deleting one staging file per written file
//! makes ext4 look for a free inode on every create, which slows down as files churn (in
//! no-journal mode it also skips every inode freed in the last few seconds); renaming an empty
//! spare into place costs one directory update instead.

use crate::ports::local_disk::StagedFile;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Spares kept at most: enough for every file an rsync of small files creates while the chunker
/// empties the previous batch (kept as names, not open descriptors).
const MAX_SPARES: usize = 1024;
/// Name prefix of a spare in the staging directory.
const PREFIX: &str = "spare.";

/// A pool of empty files in one directory.
pub struct Spares {
    dir: PathBuf,
    free: Mutex<Vec<PathBuf>>,
    next: AtomicU64,
}

impl Spares {
    /// An empty pool for `dir`; spares left there by an earlier run are removed.
    pub fn new(dir: &Path) -> Self {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(PREFIX) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Spares { dir: dir.to_path_buf(), free: Mutex::default(), next: AtomicU64::new(0) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<PathBuf>> {
        self.free.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An empty file at `path` (replacing any file there), opened for reading and writing.
    pub fn create(&self, path: &Path) -> std::io::Result<File> {
        let spare = self.lock().pop();
        if let Some(spare) = spare {
            if std::fs::rename(&spare, path).is_ok() {
                return OpenOptions::new().read(true).write(true).truncate(true).open(path);
            }
        }
        OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path)
    }

    /// Takes the file at `path` out of use: emptied and kept as a spare, or removed when the
    /// pool is full or someone else still holds `open` (a reader must keep seeing the content:
    /// only an unlink leaves it intact for them).
    pub fn retire(&self, path: &Path, open: Option<Arc<dyn StagedFile>>) {
        if let Some(spare) = self.detach(path) {
            self.recycle(spare, open);
        }
    }

    /// Moves the file at `path` to a spare's name (one rename, so a caller can do it under its
    /// own lock) and returns that name; `None` when there is no file at `path`.
    pub fn detach(&self, path: &Path) -> Option<PathBuf> {
        let spare = self.dir.join(format!("{PREFIX}{}", self.next.fetch_add(1, Ordering::Relaxed)));
        std::fs::rename(path, &spare).ok().map(|()| spare)
    }

    /// Keeps a detached file (see [`Spares::detach`]) as a spare once emptied, or removes it
    /// when the pool is full or someone else still holds `open`.
    pub fn recycle(&self, spare: PathBuf, open: Option<Arc<dyn StagedFile>>) {
        if open.as_ref().is_some_and(|f| Arc::strong_count(f) > 1) {
            let _ = std::fs::remove_file(&spare);
            return;
        }
        let empty = || match open {
            Some(file) => file.set_len(0),
            None => OpenOptions::new().read(true).write(true).open(&spare).and_then(|f| f.set_len(0)),
        };
        // The syscalls run outside the lock, so creates do not wait for them.
        if self.lock().len() < MAX_SPARES && empty().is_ok() {
            let mut free = self.lock();
            if free.len() < MAX_SPARES {
                free.push(spare);
                return;
            }
        }
        let _ = std::fs::remove_file(&spare);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn reuses_emptied_files_and_cleans_up_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let pool = Spares::new(dir.path());
        let a = dir.path().join("1");
        pool.create(&a).unwrap().write_all(b"secret").unwrap();
        pool.retire(&a, None);
        assert!(!a.exists());
        let b = dir.path().join("2");
        let mut f = pool.create(&b).unwrap();
        let mut left = Vec::new();
        f.read_to_end(&mut left).unwrap();
        assert!(left.is_empty(), "a reused spare starts empty");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "the spare was renamed, not copied");
        pool.retire(&b, Some(Arc::new(f)));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let _restarted = Spares::new(dir.path());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "old spares are removed");
    }

    #[test]
    fn a_file_someone_still_reads_is_unlinked_not_emptied() {
        let dir = tempfile::tempdir().unwrap();
        let pool = Spares::new(dir.path());
        let a = dir.path().join("1");
        let mut f = pool.create(&a).unwrap();
        f.write_all(b"still being read").unwrap();
        let reader = Arc::new(f);
        pool.retire(&a, Some(reader.clone()));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "removed, not kept as a spare");
        let mut buf = [0u8; 16];
        std::os::unix::fs::FileExt::read_exact_at(&*reader, &mut buf, 0).unwrap();
        assert_eq!(&buf, b"still being read");
    }

    #[test]
    fn keeps_at_most_max_spares() {
        let dir = tempfile::tempdir().unwrap();
        let pool = Spares::new(dir.path());
        for i in 0..MAX_SPARES + 10 {
            let p = dir.path().join(i.to_string());
            pool.create(&p).unwrap();
        }
        for i in 0..MAX_SPARES + 10 {
            pool.retire(&dir.path().join(i.to_string()), None);
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), MAX_SPARES);
    }
}
