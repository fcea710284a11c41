//! The filesystem service's argument and result types, and its settings.

use super::HealthOptions;
use crate::domain::fs::{Ino, Kind, Time};
use std::time::Duration;

/// A file handle.
pub type Fh = u64;

/// Who is calling.
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// How a timestamp is set.
#[derive(Clone, Copy, Debug)]
pub enum TimeSet {
    /// The current time.
    Now,
    /// A given time.
    At(Time),
}

impl TimeSet {
    /// The time this sets, with `now` standing for [`TimeSet::Now`].
    pub fn resolve(self, now: Time) -> Time {
        match self {
            TimeSet::Now => now,
            TimeSet::At(t) => t,
        }
    }
}

/// Attribute changes of a setattr call.
#[derive(Clone, Debug, Default)]
pub struct SetAttr {
    /// New mode (permission bits are taken).
    pub mode: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size (truncate or extend).
    pub size: Option<u64>,
    /// New access time.
    pub atime: Option<TimeSet>,
    /// New modification time.
    pub mtime: Option<TimeSet>,
    /// New change time.
    pub ctime: Option<Time>,
    /// The handle it came through, if any.
    pub fh: Option<Fh>,
}

/// One directory entry.
#[derive(Clone, Debug)]
pub struct DirEntry {
    /// Its inode.
    pub ino: Ino,
    /// Its kind.
    pub kind: Kind,
    /// Its name.
    pub name: Vec<u8>,
    /// Offset to continue after this entry.
    pub cookie: u64,
}

/// statfs figures.
#[derive(Clone, Copy, Debug)]
pub struct StatFs {
    /// Total blocks.
    pub blocks: u64,
    /// Free blocks.
    pub bfree: u64,
    /// Free blocks for unprivileged users.
    pub bavail: u64,
    /// Inodes in use.
    pub files: u64,
    /// Free inodes.
    pub ffree: u64,
    /// Block size.
    pub bsize: u32,
    /// Longest name.
    pub namelen: u32,
    /// Fragment size.
    pub frsize: u32,
}

/// Vault settings.
#[derive(Clone, Debug)]
pub struct VaultOptions {
    /// Replicas per chunk (N).
    pub replicas: usize,
    /// Bytes of decrypted chunks kept in memory.
    pub cache_bytes: u64,
    /// Bytes of sealed chunks kept on local disk after upload or fetch (0: none).
    pub disk_cache_bytes: u64,
    /// fsync waits until the file's chunks are quorum-durable.
    pub sync_quorum: bool,
    /// How long a read waits for the fabric before failing with EIO.
    pub fetch_timeout: Duration,
    /// Chunks uploaded at once.
    pub upload_concurrency: usize,
    /// Chunks uploaded at once while files are being created, renamed, removed or changed in
    /// quick succession (at least 1).
    pub foreground_uploads: usize,
    /// How long after the last such call uploads go back to full speed.
    pub foreground_quiet: Duration,
    /// Names and attributes changed within this long share one manifest commit (`None`:
    /// every call commits on its own). A kill -9 of the mount may lose the changes of this
    /// last moment that no fsync covered, as a power cut does on a local filesystem.
    pub group_commit: Option<Duration>,
    /// Audits, healing, leases and garbage collection.
    pub health: HealthOptions,
    /// This home's writer id, named in the writer lease it takes (docs/DESIGN.md §11).
    pub writer: crate::domain::ids::WriterId,
    /// Placement by houses, when the vault lives in a house (`None`: every node counts).
    pub houses: Option<crate::domain::placement::HousePolicy>,
}

impl Default for VaultOptions {
    fn default() -> Self {
        VaultOptions {
            replicas: 3,
            cache_bytes: 256 << 20,
            disk_cache_bytes: 2 << 30,
            sync_quorum: false,
            fetch_timeout: Duration::from_secs(10),
            upload_concurrency: 32,
            foreground_uploads: 2,
            foreground_quiet: Duration::from_millis(300),
            group_commit: Some(Duration::from_millis(5)),
            health: HealthOptions::default(),
            writer: crate::domain::ids::WriterId([0; 16]),
            houses: None,
        }
    }
}
