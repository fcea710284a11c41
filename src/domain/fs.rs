//! The filesystem's data model (docs/DESIGN.md §6): inode attributes, kinds, extents, and their encodings
//! in the manifest. Pure types; the manifest adapter stores them, the vault service uses them.

use crate::domain::ids::{Addr, ChunkId, NodeId};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Inode number. The root directory is 1.
pub type Ino = u64;
/// The root directory's inode.
pub const ROOT_INO: Ino = 1;
/// Longest name in a directory, in bytes.
pub const NAME_MAX: usize = 255;

/// What an inode is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Regular file.
    File = 1,
    /// Directory.
    Dir = 2,
    /// Symbolic link.
    Symlink = 3,
    /// Named pipe.
    Fifo = 4,
    /// Unix socket.
    Socket = 5,
    /// Character device.
    CharDev = 6,
    /// Block device.
    BlockDev = 7,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::File,
            2 => Kind::Dir,
            3 => Kind::Symlink,
            4 => Kind::Fifo,
            5 => Kind::Socket,
            6 => Kind::CharDev,
            7 => Kind::BlockDev,
            _ => return None,
        })
    }

    /// The kind named by the `S_IFMT` bits of a mode.
    pub fn from_mode(mode: u32) -> Option<Kind> {
        Some(match mode & libc::S_IFMT {
            libc::S_IFREG => Kind::File,
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFLNK => Kind::Symlink,
            libc::S_IFIFO => Kind::Fifo,
            libc::S_IFSOCK => Kind::Socket,
            libc::S_IFCHR => Kind::CharDev,
            libc::S_IFBLK => Kind::BlockDev,
            0 => Kind::File,
            _ => return None,
        })
    }
}

/// A timestamp with nanoseconds, as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Time {
    /// Seconds since the Unix epoch (negative before it).
    pub secs: i64,
    /// Nanoseconds.
    pub nanos: u32,
}

impl Time {
    /// Now.
    pub fn now() -> Time {
        SystemTime::now().into()
    }
}

impl From<SystemTime> for Time {
    fn from(t: SystemTime) -> Time {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Time { secs: d.as_secs() as i64, nanos: d.subsec_nanos() },
            Err(e) => {
                let d = e.duration();
                if d.subsec_nanos() == 0 {
                    Time { secs: -(d.as_secs() as i64), nanos: 0 }
                } else {
                    Time { secs: -(d.as_secs() as i64) - 1, nanos: 1_000_000_000 - d.subsec_nanos() }
                }
            }
        }
    }
}

impl From<Time> for SystemTime {
    fn from(t: Time) -> SystemTime {
        if t.secs >= 0 {
            UNIX_EPOCH + Duration::new(t.secs as u64, t.nanos)
        } else {
            UNIX_EPOCH - Duration::from_secs(t.secs.unsigned_abs()) + Duration::from_nanos(t.nanos as u64)
        }
    }
}

/// Everything `stat` reports about an inode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    /// Inode number.
    pub ino: Ino,
    /// What it is.
    pub kind: Kind,
    /// Permission bits (mode & 0o7777).
    pub perm: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Hard links.
    pub nlink: u32,
    /// Size in bytes (target length for symlinks).
    pub size: u64,
    /// Last access.
    pub atime: Time,
    /// Last modification.
    pub mtime: Time,
    /// Last status change.
    pub ctime: Time,
    /// Device number for device nodes.
    pub rdev: u32,
}

impl Attr {
    /// A new inode's attributes.
    pub fn new(ino: Ino, kind: Kind, perm: u16, uid: u32, gid: u32) -> Attr {
        let now = Time::now();
        let nlink = if kind == Kind::Dir { 2 } else { 1 };
        Attr { ino, kind, perm, uid, gid, nlink, size: 0, atime: now, mtime: now, ctime: now, rdev: 0 }
    }

    /// Encodes for the manifest.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(72);
        v.push(1); // record version
        v.push(self.kind as u8);
        v.extend_from_slice(&self.perm.to_le_bytes());
        v.extend_from_slice(&self.uid.to_le_bytes());
        v.extend_from_slice(&self.gid.to_le_bytes());
        v.extend_from_slice(&self.nlink.to_le_bytes());
        v.extend_from_slice(&self.size.to_le_bytes());
        for t in [self.atime, self.mtime, self.ctime] {
            v.extend_from_slice(&t.secs.to_le_bytes());
            v.extend_from_slice(&t.nanos.to_le_bytes());
        }
        v.extend_from_slice(&self.rdev.to_le_bytes());
        v
    }

    /// Decodes a manifest record; `None` if damaged.
    pub fn decode(ino: Ino, b: &[u8]) -> Option<Attr> {
        if b.len() != 2 + 2 + 4 + 4 + 4 + 8 + 3 * 12 + 4 || b[0] != 1 {
            return None;
        }
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap_or_default());
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or_default());
        let time_at = |i: usize| Time { secs: u64_at(i) as i64, nanos: u32_at(i + 8) };
        Some(Attr {
            ino,
            kind: Kind::from_u8(b[1])?,
            perm: u16::from_le_bytes([b[2], b[3]]),
            uid: u32_at(4),
            gid: u32_at(8),
            nlink: u32_at(12),
            size: u64_at(16),
            atime: time_at(24),
            mtime: time_at(36),
            ctime: time_at(48),
            rdev: u32_at(60),
        })
    }
}

/// One piece of a file's content: the chunk at a file offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// File offset of the chunk's first byte.
    pub offset: u64,
    /// Plaintext length.
    pub len: u32,
    /// The chunk's owner-private id (derives its key).
    pub id: ChunkId,
    /// The chunk's network address.
    pub addr: Addr,
}

impl Extent {
    /// Encodes the value part (offset is the key).
    pub fn encode(&self) -> [u8; 68] {
        let mut v = [0u8; 68];
        v[..4].copy_from_slice(&self.len.to_le_bytes());
        v[4..36].copy_from_slice(&self.id.0);
        v[36..].copy_from_slice(&self.addr.0);
        v
    }

    /// Decodes the value part.
    pub fn decode(offset: u64, b: &[u8]) -> Option<Extent> {
        if b.len() != 68 {
            return None;
        }
        Some(Extent {
            offset,
            len: u32::from_le_bytes(b[..4].try_into().ok()?),
            id: ChunkId(b[4..36].try_into().ok()?),
            addr: Addr(b[36..].try_into().ok()?),
        })
    }
}

/// Upload state of a chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ChunkState {
    /// Sealed and waiting in the local outbox.
    Pending = 0,
    /// Acknowledged by N distinct nodes.
    Durable = 1,
}

/// One replica of a chunk, with its audit history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Replica {
    /// The node holding it.
    pub node: NodeId,
    /// Its slot.
    pub slot: u8,
    /// Lease expiry, Unix ms.
    pub lease_expiry_ms: u64,
    /// When the node last proved it holds the chunk (a passed audit or a fresh store ack), Unix ms.
    pub verified_ms: u64,
    /// Audits failed since the last pass (no answer, a wrong proof, "not found").
    pub failures: u8,
    /// "Not found" answers since the last pass that count toward forgetting the replica: at most
    /// one per `domain::health::NOT_FOUND_SPACING_MS`.
    pub not_found: u8,
    /// When the last counted "not found" came, Unix ms (0: none since the last pass).
    pub not_found_ms: u64,
    /// Challenges left unanswered in a row since the node last answered one for this replica
    /// (its node's presence is judged by `domain::churn`, not held against the replica).
    pub silent: u8,
}

impl Replica {
    /// A replica just acknowledged by `node` for `slot`.
    pub fn acked(node: NodeId, slot: u8, lease_expiry_ms: u64, now_ms: u64) -> Replica {
        Replica {
            node,
            slot,
            lease_expiry_ms,
            verified_ms: now_ms,
            failures: 0,
            not_found: 0,
            not_found_ms: 0,
            silent: 0,
        }
    }
}

/// Bytes of one replica in a version 1 chunk record (node, slot, lease).
const REPLICA_V1: usize = 41;
/// Bytes of one replica in a version 2 chunk record (plus last verified time and failures).
const REPLICA_V2: usize = 50;
/// Bytes of one replica in a version 3 chunk record (plus the "not found" answers counted).
const REPLICA_V3: usize = 59;
/// Bytes of one replica in a version 4 chunk record (plus unanswered challenges in a row).
const REPLICA_V4: usize = 60;

/// What the owner knows about one chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkRecord {
    /// Owner-private id.
    pub id: ChunkId,
    /// Ciphertext length.
    pub ct_len: u32,
    /// Extents referencing it.
    pub refs: u64,
    /// Pending or durable.
    pub state: ChunkState,
    /// Nodes that acknowledged it.
    pub replicas: Vec<Replica>,
}

impl ChunkRecord {
    /// A chunk just sealed: not yet referenced, pending upload, no replicas.
    pub fn pending(id: ChunkId, ct_len: usize) -> Self {
        ChunkRecord { id, ct_len: ct_len as u32, refs: 0, state: ChunkState::Pending, replicas: Vec::new() }
    }

    /// Encodes for the manifest (record version 4: replicas carry their audit history).
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(47 + self.replicas.len() * REPLICA_V4);
        v.push(4);
        v.extend_from_slice(&self.id.0);
        v.extend_from_slice(&self.ct_len.to_le_bytes());
        v.extend_from_slice(&self.refs.to_le_bytes());
        v.push(self.state as u8);
        v.push(self.replicas.len().min(255) as u8);
        for r in self.replicas.iter().take(255) {
            v.extend_from_slice(&r.node.0);
            v.push(r.slot);
            v.extend_from_slice(&r.lease_expiry_ms.to_le_bytes());
            v.extend_from_slice(&r.verified_ms.to_le_bytes());
            v.push(r.failures);
            v.push(r.not_found);
            v.extend_from_slice(&r.not_found_ms.to_le_bytes());
            v.push(r.silent);
        }
        v
    }

    /// Decodes a manifest record (version 1 to 4); `None` if damaged.
    pub fn decode(b: &[u8]) -> Option<ChunkRecord> {
        let size = match b.first() {
            Some(1) => REPLICA_V1,
            Some(2) => REPLICA_V2,
            Some(3) => REPLICA_V3,
            Some(4) => REPLICA_V4,
            _ => return None,
        };
        if b.len() < 47 {
            return None;
        }
        let n = b[46] as usize;
        if b.len() != 47 + n * size {
            return None;
        }
        let replicas = (0..n)
            .map(|i| {
                let r = &b[47 + i * size..47 + (i + 1) * size];
                let (verified_ms, failures) = if size >= REPLICA_V2 {
                    (u64::from_le_bytes(r[41..49].try_into().ok()?), r[49])
                } else {
                    (0, 0)
                };
                let (not_found, not_found_ms) = if size >= REPLICA_V3 {
                    (r[50], u64::from_le_bytes(r[51..59].try_into().ok()?))
                } else {
                    (0, 0)
                };
                Some(Replica {
                    node: NodeId(r[..32].try_into().ok()?),
                    slot: r[32],
                    lease_expiry_ms: u64::from_le_bytes(r[33..41].try_into().ok()?),
                    verified_ms,
                    failures,
                    not_found,
                    not_found_ms,
                    silent: if size >= REPLICA_V4 { r[59] } else { 0 },
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(ChunkRecord {
            id: ChunkId(b[1..33].try_into().ok()?),
            ct_len: u32::from_le_bytes(b[33..37].try_into().ok()?),
            refs: u64::from_le_bytes(b[37..45].try_into().ok()?),
            state: if b[45] == 1 { ChunkState::Durable } else { ChunkState::Pending },
            replicas,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let mut a = Attr::new(7, Kind::File, 0o644, 1000, 100);
        a.atime = Time { secs: -5, nanos: 3 };
        a.size = 1 << 40;
        assert_eq!(Attr::decode(7, &a.encode()), Some(a.clone()));
        assert_eq!(Attr::decode(7, &a.encode()[1..]), None);
        let e = Extent { offset: 9, len: 5, id: ChunkId([1; 32]), addr: Addr([2; 32]) };
        assert_eq!(Extent::decode(9, &e.encode()), Some(e));
        let c = ChunkRecord {
            id: ChunkId([3; 32]),
            ct_len: 77,
            refs: 2,
            state: ChunkState::Durable,
            replicas: vec![Replica {
                node: NodeId([4; 32]),
                slot: 1,
                lease_expiry_ms: 99,
                verified_ms: 5,
                failures: 2,
                not_found: 1,
                not_found_ms: 6,
                silent: 4,
            }],
        };
        assert_eq!(ChunkRecord::decode(&c.encode()), Some(c.clone()));
        assert_eq!(ChunkRecord::decode(&c.encode()[..50]), None);
        // A version 3 record (before silence was counted) decodes with none counted.
        let mut v3 = c.encode();
        v3[0] = 3;
        v3.truncate(47 + 59);
        let old = ChunkRecord::decode(&v3).expect("v3 decodes");
        assert_eq!((old.replicas[0].not_found, old.replicas[0].silent), (1, 0));
        // A version 2 record (before "not found" counting) decodes with none counted.
        let mut v2 = c.encode();
        v2[0] = 2;
        v2.truncate(47 + 50);
        let old = ChunkRecord::decode(&v2).expect("v2 decodes");
        assert_eq!((old.replicas[0].verified_ms, old.replicas[0].failures), (5, 2));
        assert_eq!((old.replicas[0].not_found, old.replicas[0].not_found_ms), (0, 0));
        // A version 1 record (before audit history) still decodes, with no history.
        let mut v1 = c.encode();
        v1[0] = 1;
        v1.truncate(47 + 41);
        let old = ChunkRecord::decode(&v1).expect("v1 decodes");
        assert_eq!(old.replicas[0].lease_expiry_ms, 99);
        assert_eq!((old.replicas[0].verified_ms, old.replicas[0].failures), (0, 0));
    }

    #[test]
    fn times_before_the_epoch_round_trip() {
        for t in [
            Time { secs: -1, nanos: 500 },
            Time { secs: 0, nanos: 0 },
            Time { secs: 1_700_000_000, nanos: 9 },
        ] {
            let st: SystemTime = t.into();
            assert_eq!(Time::from(st), t);
        }
    }
}

/// Errors of filesystem operations; the FUSE adapter maps each to one errno.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// ENOENT.
    #[error("no such file or directory")]
    NotFound,
    /// EEXIST.
    #[error("already exists")]
    Exists,
    /// ENOTDIR.
    #[error("not a directory")]
    NotDir,
    /// EISDIR.
    #[error("is a directory")]
    IsDir,
    /// ENOTEMPTY.
    #[error("directory not empty")]
    NotEmpty,
    /// ENAMETOOLONG.
    #[error("name too long")]
    NameTooLong,
    /// EINVAL.
    #[error("invalid argument: {0}")]
    Invalid(&'static str),
    /// ENODATA: no such extended attribute.
    #[error("no such extended attribute")]
    NoXattr,
    /// ERANGE.
    #[error("value too large")]
    Range,
    /// EROFS: a snapshot or a share is mounted read-only.
    #[error("read-only file system")]
    ReadOnly,
    /// EIO: the fabric could not deliver data in time.
    #[error("data unavailable: {0}")]
    Unavailable(String),
    /// EIO: local storage failed.
    #[error("I/O error: {0}")]
    Io(String),
    /// ENOSPC: the vault's home has no room left for new data (docs/SEMANTICS.md, full disk).
    #[error("no space left on the vault's disk: {0}")]
    NoSpace(String),
    /// EOPNOTSUPP.
    #[error("operation not supported")]
    NotSupported,
    /// EPERM.
    #[error("operation not permitted")]
    Permission,
    /// EACCES (a default ACL on a node that is not a directory).
    #[error("permission denied")]
    Access,
    /// EBADF.
    #[error("bad file handle")]
    BadHandle,
}

impl From<std::io::Error> for FsError {
    fn from(e: std::io::Error) -> Self {
        if is_no_space(&e) {
            return FsError::NoSpace(e.to_string());
        }
        FsError::Io(e.to_string())
    }
}

/// Whether an I/O error says the disk (or the user's quota on it) is full.
pub fn is_no_space(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(e.kind(), ErrorKind::StorageFull | ErrorKind::QuotaExceeded)
}
