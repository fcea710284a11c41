//! The outbox on local disk: one file per sealed chunk named by its address, written through a
//! temporary name and with direct I/O (the kernel's copy into the page cache was a third of the
//! mount's CPU while it uploaded; the uploader reads each file back once, also with direct I/O).

use super::direct_io::Direct;
use super::space::SpaceGauge;
use crate::domain::ids::Addr;
use crate::ports::local_disk::Outbox;
use std::fs::File;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The outbox in one directory.
pub struct FileOutbox {
    dir: PathBuf,
    io: Direct,
    space: Arc<SpaceGauge>,
}

impl FileOutbox {
    /// The outbox in `dir` (which need not exist: then nothing is found and writes fail); new
    /// chunks are refused with ENOSPC below `space`'s floor.
    pub fn new(dir: &Path, space: Arc<SpaceGauge>) -> Self {
        FileOutbox { dir: dir.to_path_buf(), io: Direct::new(dir), space }
    }
}

impl Outbox for FileOutbox {
    /// A power cut after the rename but before the data reached the disk can leave the name
    /// with fewer bytes: such a file is written again.
    fn write(&self, addr: &Addr, ciphertext: &[u8]) -> io::Result<()> {
        let path = self.path(addr);
        if std::fs::metadata(&path).map_or(true, |m| m.len() != ciphertext.len() as u64) {
            let tmp = path.with_extension("tmp");
            if let Err(e) = self.space.write_data(ciphertext.len() as u64, || self.io.write(&tmp, ciphertext))
            {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
            std::fs::rename(&tmp, &path)?;
        }
        Ok(())
    }

    fn read(&self, addr: &Addr) -> io::Result<(Vec<u8>, Range<usize>)> {
        self.io.read(&self.path(addr))
    }

    fn read_plain(&self, addr: &Addr) -> io::Result<Vec<u8>> {
        std::fs::read(self.path(addr))
    }

    fn contains(&self, addr: &Addr) -> bool {
        self.path(addr).exists()
    }

    fn remove(&self, addr: &Addr) {
        let _ = std::fs::remove_file(self.path(addr));
    }

    /// One `syncfs` of the outbox's filesystem.
    fn sync(&self) -> io::Result<()> {
        let dir = File::open(&self.dir)?;
        // SAFETY: syncfs on a valid open descriptor; no memory is passed.
        if unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&dir)) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn sweep(&self) -> io::Result<Vec<Addr>> {
        let mut found = Vec::new();
        for e in std::fs::read_dir(&self.dir)?.flatten() {
            match Addr::from_hex(&e.file_name().to_string_lossy()) {
                Some(addr) => found.push(addr),
                None => {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Ok(found)
    }

    fn path(&self, addr: &Addr) -> PathBuf {
        self.dir.join(addr.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_chunks_by_address_and_sweeps_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = FileOutbox::new(dir.path(), Arc::new(SpaceGauge::new(dir.path())));
        let addr = Addr::of(b"sealed");
        outbox.write(&addr, b"sealed").unwrap();
        assert!(outbox.contains(&addr));
        let (buf, at) = outbox.read(&addr).unwrap();
        assert_eq!(&buf[at], b"sealed");
        assert_eq!(outbox.read_plain(&addr).unwrap(), b"sealed");
        outbox.sync().unwrap();
        std::fs::write(dir.path().join("x.tmp"), b"torn").unwrap();
        assert_eq!(outbox.sweep().unwrap(), vec![addr]);
        assert!(!dir.path().join("x.tmp").exists());
        outbox.remove(&addr);
        assert!(!outbox.contains(&addr));
    }
}
