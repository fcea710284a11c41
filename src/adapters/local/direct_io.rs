//! Direct I/O for the vault's own chunk files (the outbox and the disk cache): whole blocks
//! from and into block-aligned memory, so a chunk is not copied through the page cache on its
//! way to or from the disk (a sealed chunk is read back at most once, by the uploader or a
//! reader, and the memory cache keeps the plaintext). A filesystem that refuses direct I/O
//! (EINVAL) is used through the page cache from then on.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::ops::Range;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Direct I/O moves whole blocks of this size, from and to memory aligned to it.
pub(super) use crate::ports::local_disk::BLOCK;

thread_local! {
    /// A reused block-aligned buffer per thread for [`Direct::write`].
    static STAGE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Whether the files of one directory are written and read with direct I/O.
pub(super) struct Direct {
    dir: PathBuf,
    on: AtomicBool,
}

impl Direct {
    /// Direct I/O for the files in `dir` (on until the filesystem refuses it).
    pub fn new(dir: &Path) -> Self {
        Direct { dir: dir.to_path_buf(), on: AtomicBool::new(true) }
    }

    /// Turns direct I/O off for good: the filesystem refused it.
    fn refuse(&self) {
        if self.on.swap(false, Ordering::Relaxed) {
            tracing::info!(dir = %self.dir.display(), "the filesystem refuses direct I/O; using the page cache");
        }
    }

    /// Writes `data` as the whole content of `path` (created or truncated; not fsynced): copied
    /// into a reused block-aligned buffer of this thread first.
    pub fn write(&self, path: &Path, data: &[u8]) -> std::io::Result<()> {
        if !self.on.load(Ordering::Relaxed) {
            return std::fs::write(path, data);
        }
        STAGE.with_borrow_mut(|stage| {
            let need = data.len().next_multiple_of(BLOCK) + BLOCK;
            if stage.len() < need {
                stage.resize(need, 0);
            }
            let start = stage.as_ptr().align_offset(BLOCK);
            stage[start..start + data.len()].copy_from_slice(data);
            self.write_aligned(path, stage, start..start + data.len())
        })
    }

    /// Writes `buf[at]` as the whole content of `path`, where `at` starts block-aligned: with
    /// direct I/O, padded to whole blocks (the padding, up to the next block boundary in `buf`,
    /// is zeroed first) and then cut back to its length; through the page cache when `at` is not
    /// aligned, `buf` has no room for the padding or the filesystem refuses direct I/O.
    pub fn write_aligned(&self, path: &Path, buf: &mut [u8], at: Range<usize>) -> std::io::Result<()> {
        let len = at.len();
        let image = at.start..at.start + len.next_multiple_of(BLOCK);
        let aligned = (buf.as_ptr() as usize + at.start) % BLOCK == 0 && image.end <= buf.len();
        if !aligned || !self.on.load(Ordering::Relaxed) {
            return std::fs::write(path, &buf[at]);
        }
        let image = &mut buf[image];
        image[len..].fill(0);
        let opened = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_DIRECT)
            .open(path);
        match opened.and_then(|mut f| f.write_all(image).and_then(|()| f.set_len(len as u64))) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                self.refuse();
                std::fs::write(path, &image[..len])
            }
            other => other,
        }
    }

    /// Reads all of `path` into `buf` from its first block-aligned offset on, and returns where
    /// the bytes are; `InvalidData` when the file is larger than `buf` holds.
    pub fn read_into(&self, path: &Path, buf: &mut [u8]) -> std::io::Result<Range<usize>> {
        let start = buf.as_ptr().align_offset(BLOCK);
        self.reading(path, |f| read_at_start(f, file_len(f)?, buf, start))
    }

    /// Reads all of `path` into a fresh buffer; returns it and where the bytes are in it.
    pub fn read(&self, path: &Path) -> std::io::Result<(Vec<u8>, Range<usize>)> {
        self.reading(path, |f| {
            let len = file_len(f)?;
            let mut buf = vec![0u8; len.next_multiple_of(BLOCK) + BLOCK];
            let start = buf.as_ptr().align_offset(BLOCK);
            let at = read_at_start(f, len, &mut buf, start)?;
            Ok((buf, at))
        })
    }

    /// Opens `path` once (with direct I/O unless refused) and runs `read` on it; again through
    /// the page cache when direct I/O is refused (EINVAL, at open or at the first read).
    fn reading<R>(
        &self,
        path: &Path,
        mut read: impl FnMut(&File) -> std::io::Result<R>,
    ) -> std::io::Result<R> {
        if self.on.load(Ordering::Relaxed) {
            let opened = OpenOptions::new().read(true).custom_flags(libc::O_DIRECT).open(path);
            match opened.and_then(|f| read(&f)) {
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => self.refuse(),
                other => return other,
            }
        }
        read(&File::open(path)?)
    }
}

/// The length of an open file.
fn file_len(file: &File) -> std::io::Result<usize> {
    usize::try_from(file.metadata()?.len()).map_err(std::io::Error::other)
}

/// Reads the `len` bytes of `file` into `buf` from `start` on, in whole blocks as direct I/O
/// needs.
fn read_at_start(file: &File, len: usize, buf: &mut [u8], start: usize) -> std::io::Result<Range<usize>> {
    let room = buf.len().saturating_sub(start);
    if len.checked_next_multiple_of(BLOCK).is_none_or(|padded| padded > room) {
        let why = format!("{len} bytes, more than the {room} the buffer holds");
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, why));
    }
    let area = &mut buf[start..start + len.next_multiple_of(BLOCK)];
    let mut done = 0;
    while done < len {
        match file.read_at(&mut area[done..], done as u64)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => done += n,
        }
    }
    Ok(start..start + len)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes written and read back whole, whatever their length, with direct I/O (the temp
    /// dir) and without (tmpfs may refuse it); what followed the data in an aligned buffer is
    /// zeroed and never written; a file larger than the buffer is refused.
    #[test]
    fn writes_and_reads_whole_files_with_or_without_direct_io() {
        let mut dirs = vec![tempfile::tempdir().unwrap()];
        if let Ok(shm) = tempfile::tempdir_in("/dev/shm") {
            dirs.push(shm);
        }
        for dir in dirs {
            let io = Direct::new(dir.path());
            for len in [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 7] {
                let data: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
                let path = dir.path().join(format!("f{len}"));
                io.write(&path, &data).unwrap();
                assert_eq!(std::fs::read(&path).unwrap(), data, "{len} bytes in {}", dir.path().display());
                let (buf, at) = io.read(&path).unwrap();
                assert_eq!((buf.as_ptr() as usize + at.start) % BLOCK, 0, "block-aligned");
                assert_eq!(&buf[at], &data[..]);

                let mut buf = vec![0xEE; len.next_multiple_of(BLOCK) + 2 * BLOCK];
                let start = buf.as_ptr().align_offset(BLOCK);
                buf[start..start + len].copy_from_slice(&data);
                io.write_aligned(&path, &mut buf, start..start + len).unwrap();
                assert!(buf[start + len..start + len.next_multiple_of(BLOCK)].iter().all(|&b| b == 0));
                assert_eq!(std::fs::read(&path).unwrap(), data);
            }
            let mut small = vec![0u8; 2 * BLOCK];
            let big = dir.path().join("big");
            io.write(&big, &vec![1u8; 2 * BLOCK + 1]).unwrap();
            let err = io.read_into(&big, &mut small).unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "larger than the buffer");
        }
    }
}
