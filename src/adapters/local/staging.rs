//! The staging area (`ports::local_disk::Staging`) as a directory: `<ino>` per staged file,
//! `<ino>.<n>.tmp` while one is filled, with [`Spares`] for creating and retiring them.

use super::spares::Spares;
use crate::domain::fs::Ino;
use crate::ports::local_disk::{StagedFile, StagedName, Staging};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
}

/// Staged files in one directory.
pub struct FileStaging {
    dir: PathBuf,
    spares: Spares,
}

impl FileStaging {
    /// The staging area in `dir` (spares left there by an earlier run are removed).
    pub fn new(dir: &Path) -> Self {
        FileStaging { dir: dir.to_path_buf(), spares: Spares::new(dir) }
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
        Ok(Arc::new(self.spares.create(&self.path(name))?))
    }

    fn open(&self, ino: Ino) -> io::Result<Arc<dyn StagedFile>> {
        let file = OpenOptions::new().read(true).write(true).open(self.path(StagedName::Staged(ino)))?;
        Ok(Arc::new(file))
    }

    fn publish(&self, ino: Ino, n: u64) -> io::Result<()> {
        std::fs::rename(self.path(StagedName::Tmp(ino, n)), self.path(StagedName::Staged(ino)))
    }

    fn retire(&self, name: StagedName, open: Option<Arc<dyn StagedFile>>) {
        self.spares.retire(&self.path(name), open)
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
