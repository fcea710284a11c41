//! The local disk port: what the vault keeps on its own machine beside the manifest — sealed
//! chunks waiting for upload (the [`Outbox`]), sealed chunks kept after upload or fetch (the
//! [`DiskCache`]), and the files being written (the [`Staging`] area, one [`StagedFile`] per
//! inode). [`LocalDisk`] opens them for one vault.
//!
//! Buffers handed to [`Outbox::read`], [`DiskCache::read_into`] and [`DiskCache::put_aligned`]
//! are laid out on [`BLOCK`] boundaries, so an adapter may move them with direct I/O.

use crate::domain::fs::Ino;
use crate::domain::ids::Addr;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Alignment of the chunk areas in buffers passed to and from the local disk.
pub const BLOCK: usize = 4096;

/// Files, bytes and byte budget of the disk cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DiskCacheUsage {
    /// Chunks kept.
    pub chunks: u64,
    /// Bytes kept.
    pub bytes: u64,
    /// Byte budget.
    pub capacity: u64,
}

/// Sealed chunks waiting for upload, one per address. Writes are not durable until [`Outbox::sync`].
pub trait Outbox: Send + Sync + 'static {
    /// Writes `ciphertext` under `addr`, unless a whole copy is there already.
    fn write(&self, addr: &Addr, ciphertext: &[u8]) -> io::Result<()>;
    /// Reads `addr` back into a block-aligned buffer: the buffer and where the chunk lies in it.
    fn read(&self, addr: &Addr) -> io::Result<(Vec<u8>, Range<usize>)>;
    /// Reads `addr` back as it is (for a reader that decrypts it in place).
    fn read_plain(&self, addr: &Addr) -> io::Result<Vec<u8>>;
    /// Whether a copy of `addr` is there.
    fn contains(&self, addr: &Addr) -> bool;
    /// Removes `addr`'s copy, if any.
    fn remove(&self, addr: &Addr);
    /// Makes every write so far durable.
    fn sync(&self) -> io::Result<()>;
    /// Removes leftovers of interrupted writes and lists the chunks there.
    fn sweep(&self) -> io::Result<Vec<Addr>>;
    /// Where `addr`'s copy lies, for a [`DiskCache`] to adopt it.
    fn path(&self, addr: &Addr) -> PathBuf;
}

/// Sealed chunks kept on local disk within a byte budget, least recently used evicted first.
/// Nothing here is trusted: callers verify every copy and [`DiskCache::forget`] bad ones.
pub trait DiskCache: Send + Sync + 'static {
    /// The ciphertext kept for `addr`, if any.
    fn get(&self, addr: &Addr) -> Option<Vec<u8>>;
    /// Reads the ciphertext kept for `addr` into `buf` at a block-aligned offset; where it is.
    fn read_into(&self, addr: &Addr, buf: &mut [u8]) -> Option<Range<usize>>;
    /// Takes over an uploaded chunk's outbox file at `from` (removed when it cannot be kept).
    fn adopt(&self, addr: &Addr, from: &Path);
    /// Keeps a copy of a verified ciphertext.
    fn put(&self, addr: &Addr, ciphertext: &[u8]);
    /// Keeps a copy of the verified ciphertext at `at` in `buf` (`at` starts block-aligned).
    fn put_aligned(&self, addr: &Addr, buf: &mut [u8], at: Range<usize>);
    /// Drops a chunk.
    fn forget(&self, addr: &Addr);
    /// Chunks, bytes and budget.
    fn usage(&self) -> DiskCacheUsage;
}

/// The content of one file being written, read and written at offsets.
pub trait StagedFile: Send + Sync + std::fmt::Debug + 'static {
    /// Reads into `buf` at `offset`; how many bytes were read (0 at the end).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes all of `data` at `offset`.
    fn write_all_at(&self, data: &[u8], offset: u64) -> io::Result<()>;
    /// Truncates or extends to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// The current length in bytes.
    fn size(&self) -> io::Result<u64>;
    /// Makes the content durable.
    fn sync_data(&self) -> io::Result<()>;
    /// Which file this is (device and inode number), where the platform tells: a staging area
    /// retires a name only while it still names this file.
    fn file_id(&self) -> Option<(u64, u64)> {
        None
    }
}

/// Which staged file: an inode's, or a temporary one being filled for an inode (numbered so
/// that several may be filled at once), published under the inode's by [`Staging::publish`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StagedName {
    /// The inode's staged content.
    Staged(Ino),
    /// A temporary file for the inode.
    Tmp(Ino, u64),
}

/// The staging area: one file per inode being written, and empty files kept for reuse.
pub trait Staging: Send + Sync + 'static {
    /// An empty file `name` (replacing any file there), open for reading and writing.
    fn create(&self, name: StagedName) -> io::Result<Arc<dyn StagedFile>>;
    /// Opens the staged file of `ino` that is there already.
    fn open(&self, ino: Ino) -> io::Result<Arc<dyn StagedFile>>;
    /// Replaces the staged file of `ino` with the temporary file `n`, atomically.
    fn publish(&self, ino: Ino, n: u64) -> io::Result<()>;
    /// Takes the file `name` out of use; `open` is its handle, if one is still held (someone
    /// else holding it too must keep seeing the content). With a handle, the name is retired
    /// only while it still names that file: a file published under it since stays in use.
    fn retire(&self, name: StagedName, open: Option<Arc<dyn StagedFile>>);
    /// Removes the staged file of `ino`, if any.
    fn remove(&self, ino: Ino);
    /// Removes leftover temporary files and lists the inodes whose staged file is there.
    fn sweep(&self) -> io::Result<Vec<Ino>>;
}

/// The free space of the vault's home as its local stores see it (docs/SEMANTICS.md, full disk).
pub trait HomeSpace: Send + Sync + 'static {
    /// Whether the home is full: new data is refused with ENOSPC until space is freed.
    fn is_full(&self) -> bool;
    /// Measures again (ending the episode when there is room); whether the home is still full.
    fn recheck(&self) -> bool;
}

/// One vault's local stores.
pub struct LocalStores {
    /// The free space of the home the stores live in.
    pub space: Arc<dyn HomeSpace>,
    /// The outbox.
    pub outbox: Arc<dyn Outbox>,
    /// The disk cache (none for a vault that keeps no local data).
    pub disk_cache: Option<Arc<dyn DiskCache>>,
    /// The staging area.
    pub staging: Arc<dyn Staging>,
}

/// Opens the local stores of a vault.
pub trait LocalDisk {
    /// Opens (creating) the outbox in `outbox`, the staging area in `staging` and the disk
    /// cache of `cache_bytes` in `cache`.
    fn open(&self, staging: &Path, outbox: &Path, cache: &Path, cache_bytes: u64) -> io::Result<LocalStores>;
    /// Stores over directories that do not exist, for a vault that keeps no local data (a
    /// read-only snapshot or share); nothing is created.
    fn absent(&self, dir: &Path) -> LocalStores;
    /// Whether the filesystem of `home` has less room than new data must leave free.
    fn home_full(&self, home: &Path) -> bool;
    /// The disk cache in `cache`, measured without opening (nor changing) it.
    fn measure_cache(&self, cache: &Path, capacity: u64) -> DiskCacheUsage;
}
