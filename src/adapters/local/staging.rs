//! The staging area (`ports::local_disk::Staging`) as a directory: `<ino>` per staged file,
//! `<ino>.<n>.tmp` while one is filled, with [`Spares`] for creating and retiring them.

use super::space::SpaceGauge;
use super::spares::Spares;
use crate::domain::fs::Ino;
use crate::ports::local_disk::{StagedFile, StagedName, Staging};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

impl StagedFile for File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        FileExt::read_at(self, buf, offset)
    }

    fn write_all_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(self, data, offset)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn sync_data(&self) -> io::Result<()> {
        File::sync_data(self)
    }

    fn file_id(&self) -> Option<(u64, u64)> {
        let m = self.metadata().ok()?;
        Some((m.dev(), m.ino()))
    }
}

/// A staged file whose writes stop at the home's free-space floor (ENOSPC), so that the
/// manifest keeps room to commit deletes and renames.
#[derive(Debug)]
struct Floored {
    file: File,
    space: Arc<SpaceGauge>,
}

impl StagedFile for Floored {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        FileExt::read_at(&self.file, buf, offset)
    }

    fn write_all_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        self.space.write_data(data.len() as u64, || FileExt::write_all_at(&self.file, data, offset))
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.space.note(self.file.set_len(len))
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn sync_data(&self) -> io::Result<()> {
        self.space.note(self.file.sync_data())
    }

    fn file_id(&self) -> Option<(u64, u64)> {
        StagedFile::file_id(&self.file)
    }
}

/// Staged files in one directory.
pub struct FileStaging {
    dir: PathBuf,
    spares: Spares,
    space: Arc<SpaceGauge>,
    /// Held while an inode's name changes hands (publish, retire), so that a retire never
    /// takes away a file published under the same name after the one it means.
    names: Mutex<()>,
}

impl FileStaging {
    /// The staging area in `dir` (spares left there by an earlier run are removed); writes
    /// are refused with ENOSPC below `space`'s floor.
    pub fn new(dir: &Path, space: Arc<SpaceGauge>) -> Self {
        FileStaging { dir: dir.to_path_buf(), spares: Spares::new(dir), space, names: Mutex::default() }
    }

    fn floored(&self, file: File) -> Arc<dyn StagedFile> {
        Arc::new(Floored { file, space: self.space.clone() })
    }

    fn path(&self, name: StagedName) -> PathBuf {
        match name {
            StagedName::Staged(ino) => self.dir.join(ino.to_string()),
            StagedName::Tmp(ino, n) => self.dir.join(format!("{ino}.{n}.tmp")),
        }
    }
}

impl Staging for FileStaging {
    fn create(&self, name: StagedName) -> io::Result<Arc<dyn StagedFile>> {
        Ok(self.floored(self.space.note(self.spares.create(&self.path(name)))?))
    }

    fn open(&self, ino: Ino) -> io::Result<Arc<dyn StagedFile>> {
        let file = OpenOptions::new().read(true).write(true).open(self.path(StagedName::Staged(ino)))?;
        Ok(self.floored(file))
    }

    fn publish(&self, ino: Ino, n: u64) -> io::Result<()> {
        let _names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        std::fs::rename(self.path(StagedName::Tmp(ino, n)), self.path(StagedName::Staged(ino)))
    }

    fn retire(&self, name: StagedName, open: Option<Arc<dyn StagedFile>>) {
        let path = self.path(name);
        let detached = {
            let _names = self.names.lock().unwrap_or_else(|p| p.into_inner());
            let named = |id| std::fs::metadata(&path).is_ok_and(|m| (m.dev(), m.ino()) == id);
            match open.as_ref().and_then(|f| f.file_id()) {
                // Replaced since (a publish renamed a newer file over it): the old file is
                // unlinked already, and the name belongs to the newer one.
                Some(id) if !named(id) => None,
                _ => self.spares.detach(&path),
            }
        };
        if let Some(spare) = detached {
            self.spares.recycle(spare, open);
        }
    }

    fn remove(&self, ino: Ino) {
        let _ = std::fs::remove_file(self.path(StagedName::Staged(ino)));
    }

    fn sweep(&self) -> io::Result<Vec<Ino>> {
        let mut inos = Vec::new();
        for e in std::fs::read_dir(&self.dir)?.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.ends_with(".tmp") {
                let _ = std::fs::remove_file(e.path());
            } else if let Ok(ino) = name.parse::<Ino>() {
                inos.push(ino);
            }
        }
        Ok(inos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(f: &dyn StagedFile) -> Vec<u8> {
        let mut buf = vec![0u8; f.size().unwrap() as usize];
        let n = f.read_at(&mut buf, 0).unwrap();
        buf.truncate(n);
        buf
    }

    /// The file a chunker sealed is retired after a writer already published a newer copy of
    /// the same inode: the newer copy keeps its name and its content, and it is never handed to
    /// another inode as a spare.
    #[test]
    fn retiring_a_replaced_file_leaves_the_newer_one_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let staging = FileStaging::new(dir.path(), Arc::new(SpaceGauge::new(dir.path())));
        let old = staging.create(StagedName::Tmp(7, 0)).unwrap();
        old.write_all_at(b"commit 2\n", 0).unwrap();
        staging.publish(7, 0).unwrap();
        let newer = staging.create(StagedName::Tmp(7, 1)).unwrap();
        newer.write_all_at(b"commit 3\n", 0).unwrap();
        staging.publish(7, 1).unwrap();

        staging.retire(StagedName::Staged(7), Some(old));
        assert_eq!(read(&*staging.open(7).unwrap()), b"commit 3\n", "the newer copy keeps its name");
        let other = staging.create(StagedName::Tmp(8, 2)).unwrap();
        other.write_all_at(b"P pack-74", 0).unwrap();
        assert_eq!(read(&*newer), b"commit 3\n", "the newer copy was not reused for another inode");

        // Retired with its own handle, the current copy does become a spare.
        staging.retire(StagedName::Staged(7), Some(newer));
        assert!(staging.open(7).is_err());
        let reused = staging.create(StagedName::Tmp(9, 3)).unwrap();
        assert!(read(&*reused).is_empty(), "a spare starts empty");
    }
}
