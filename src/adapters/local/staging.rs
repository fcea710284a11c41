//! The staging area (`ports::local_disk::Staging`) as a directory: `<ino>` per staged file,
//! `<ino>.<n>.tmp` while one is filled, with [`Spares`] for creating and retiring them.

use super::space::SpaceGauge;
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
}

/// Staged files in one directory.
pub struct FileStaging {
    dir: PathBuf,
    spares: Spares,
    space: Arc<SpaceGauge>,
}

impl FileStaging {
    /// The staging area in `dir` (spares left there by an earlier run are removed); writes
    /// are refused with ENOSPC below `space`'s floor.
    pub fn new(dir: &Path, space: Arc<SpaceGauge>) -> Self {
        FileStaging { dir: dir.to_path_buf(), spares: Spares::new(dir), space }
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
