//! Reads of the redb manifest: the typed reader methods every transaction has, and the read
//! snapshot `Rx` with its whole-manifest reads.

use super::super::{
    CHUNKS, DIRENTS, EXTENTS, INODES, META, NODES, SEALING, SHARES, SHARE_SECRETS, SMALL_OUTBOX, SNAPSHOTS,
    STAGED, STAGED_RANGES, SYMLINKS, UNREFERENCED, UPLOADS, XATTRS,
};
use super::Summary;
use super::{dirent_key, err, FILES, FILE_BYTES};
use crate::domain::fs::Kind;
use crate::domain::fs::{Attr, ChunkRecord, Extent, FsError, Ino};
use crate::domain::health::NodeRecord;
use crate::domain::ids::{Addr, NodeId};
use crate::domain::partial::Partial;
use crate::domain::snapshot::BlobRow;
use redb::{ReadTransaction, ReadableTable, ReadableTableMetadata};

/// A read transaction with typed helpers.
pub struct Rx(pub(super) ReadTransaction);

macro_rules! readers {
    ($t:tt) => {
        /// Regular files and their bytes: the kept counters, else counted over every inode.
        pub fn file_totals(&self) -> Result<(u64, u64), FsError> {
            if let (Some(files), Some(bytes)) = (self.meta(FILES)?, self.meta(FILE_BYTES)?) {
                return Ok((files, bytes));
            }
            let t = self.$t.open_table(INODES).map_err(err)?;
            let (mut files, mut bytes) = (0, 0);
            for row in t.iter().map_err(err)? {
                let (k, v) = row.map_err(err)?;
                if let Some(a) = Attr::decode(k.value(), v.value()).filter(|a| a.kind == Kind::File) {
                    files += 1;
                    bytes += a.size;
                }
            }
            Ok((files, bytes))
        }

        /// An inode's attributes.
        pub fn inode(&self, ino: Ino) -> Result<Attr, FsError> {
            let t = self.$t.open_table(INODES).map_err(err)?;
            let v = t.get(ino).map_err(err)?.ok_or(FsError::NotFound)?;
            Attr::decode(ino, v.value()).ok_or_else(|| FsError::Io(format!("inode {ino} record is damaged")))
        }

        /// The child named `name` in `parent`.
        pub fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Option<Ino>, FsError> {
            let t = self.$t.open_table(DIRENTS).map_err(err)?;
            let v = t.get(dirent_key(parent, name).as_slice()).map_err(err)?;
            Ok(v.map(|g| g.value()))
        }

        /// Entries of `dir` in name order: (name, ino).
        pub fn children(&self, dir: Ino) -> Result<Vec<(Vec<u8>, Ino)>, FsError> {
            let t = self.$t.open_table(DIRENTS).map_err(err)?;
            let lo = dir.to_be_bytes();
            let hi = (dir + 1).to_be_bytes();
            let mut out = Vec::new();
            for row in t.range::<&[u8]>(lo.as_slice()..hi.as_slice()).map_err(err)? {
                let (k, v) = row.map_err(err)?;
                out.push((k.value()[8..].to_vec(), v.value()));
            }
            Ok(out)
        }

        /// Whether `dir` has any entry.
        pub fn has_children(&self, dir: Ino) -> Result<bool, FsError> {
            let t = self.$t.open_table(DIRENTS).map_err(err)?;
            let lo = dir.to_be_bytes();
            let hi = (dir + 1).to_be_bytes();
            let found = t.range::<&[u8]>(lo.as_slice()..hi.as_slice()).map_err(err)?.next().is_some();
            Ok(found)
        }

        /// A symlink's target.
        pub fn symlink(&self, ino: Ino) -> Result<Vec<u8>, FsError> {
            let t = self.$t.open_table(SYMLINKS).map_err(err)?;
            let v = t.get(ino).map_err(err)?.ok_or(FsError::Invalid("not a symlink"))?;
            Ok(v.value().to_vec())
        }

        /// A file's extents overlapping `[start, end)`, in offset order.
        pub fn extents(&self, ino: Ino, start: u64, end: u64) -> Result<Vec<Extent>, FsError> {
            let t = self.$t.open_table(EXTENTS).map_err(err)?;
            let mut out = Vec::new();
            // The extent containing `start` begins at or before it.
            if let Some(row) = t.range((ino, 0)..=(ino, start)).map_err(err)?.next_back() {
                let (k, v) = row.map_err(err)?;
                if let Some(e) = Extent::decode(k.value().1, v.value()) {
                    if e.offset + e.len as u64 > start {
                        out.push(e);
                    }
                }
            }
            if start < u64::MAX {
                for row in t.range((ino, start + 1)..(ino, end.max(start + 1))).map_err(err)? {
                    let (k, v) = row.map_err(err)?;
                    out.extend(Extent::decode(k.value().1, v.value()));
                }
            }
            Ok(out)
        }

        /// A chunk's record.
        pub fn chunk(&self, addr: &Addr) -> Result<Option<ChunkRecord>, FsError> {
            let t = self.$t.open_table(CHUNKS).map_err(err)?;
            let v = t.get(&addr.0).map_err(err)?;
            Ok(v.and_then(|g| ChunkRecord::decode(g.value())))
        }

        /// An extended attribute.
        pub fn xattr(&self, ino: Ino, name: &[u8]) -> Result<Option<Vec<u8>>, FsError> {
            let t = self.$t.open_table(XATTRS).map_err(err)?;
            let v = t.get(dirent_key(ino, name).as_slice()).map_err(err)?;
            Ok(v.map(|g| g.value().to_vec()))
        }

        /// All extended attribute names of an inode.
        pub fn xattr_names(&self, ino: Ino) -> Result<Vec<Vec<u8>>, FsError> {
            let t = self.$t.open_table(XATTRS).map_err(err)?;
            let lo = ino.to_be_bytes();
            let hi = (ino + 1).to_be_bytes();
            let mut out = Vec::new();
            for row in t.range::<&[u8]>(lo.as_slice()..hi.as_slice()).map_err(err)? {
                out.push(row.map_err(err)?.0.value()[8..].to_vec());
            }
            Ok(out)
        }

        /// The ciphertext of a small queued chunk kept in the manifest.
        pub fn small_outbox(&self, addr: &Addr) -> Result<Option<Vec<u8>>, FsError> {
            let t = self.$t.open_table(SMALL_OUTBOX).map_err(err)?;
            let v = t.get(&addr.0).map_err(err)?;
            Ok(v.map(|g| g.value().to_vec()))
        }

        /// A counter or setting from the meta table.
        pub fn meta(&self, key: &str) -> Result<Option<u64>, FsError> {
            Ok(self.$t.open_table(META).map_err(err)?.get(key).map_err(err)?.map(|g| g.value()))
        }

        /// What the owner knows about a node.
        pub fn node(&self, node: &NodeId) -> Result<Option<NodeRecord>, FsError> {
            let t = self.$t.open_table(NODES).map_err(err)?;
            let v = t.get(&node.0).map_err(err)?;
            Ok(v.and_then(|g| NodeRecord::decode(g.value())))
        }

        /// Every node the owner has a record of.
        pub fn nodes(&self) -> Result<Vec<(NodeId, NodeRecord)>, FsError> {
            let t = self.$t.open_table(NODES).map_err(err)?;
            let mut out = Vec::new();
            for row in t.iter().map_err(err)? {
                let (k, v) = row.map_err(err)?;
                if let Some(n) = NodeRecord::decode(v.value()) {
                    out.push((NodeId(*k.value()), n));
                }
            }
            Ok(out)
        }

        /// Nodes written off after repeated audit failures.
        pub fn written_off(&self) -> Result<std::collections::HashSet<NodeId>, FsError> {
            Ok(self.nodes()?.into_iter().filter(|(_, n)| n.written_off).map(|(id, _)| id).collect())
        }

        /// Chunks unreferenced since at or before `before_ms` (up to `limit`).
        pub fn unreferenced(&self, before_ms: u64, limit: usize) -> Result<Vec<Addr>, FsError> {
            let t = self.$t.open_table(UNREFERENCED).map_err(err)?;
            let mut out = Vec::new();
            for row in t.iter().map_err(err)? {
                let (k, v) = row.map_err(err)?;
                if v.value() <= before_ms {
                    out.push(Addr(*k.value()));
                    if out.len() >= limit {
                        break;
                    }
                }
            }
            Ok(out)
        }

        /// Snapshots (or shares) the owner keeps in the fabric, oldest first.
        pub fn blobs(&self, shares: bool) -> Result<Vec<BlobRow>, FsError> {
            let t = self.$t.open_table(if shares { SHARES } else { SNAPSHOTS }).map_err(err)?;
            let mut out = Vec::new();
            for row in t.iter().map_err(err)? {
                let (k, v) = row.map_err(err)?;
                out.push(
                    BlobRow::decode(v.value())
                        .ok_or_else(|| FsError::Io(format!("snapshot/share row {} is damaged", k.value())))?,
                );
            }
            Ok(out)
        }

        /// A shared chunk's content key and proof-secret seed (in a share's manifest).
        pub fn share_secret(&self, addr: &Addr) -> Result<Option<([u8; 32], [u8; 32])>, FsError> {
            let t = self.$t.open_table(SHARE_SECRETS).map_err(err)?;
            let Some(v) = t.get(&addr.0).map_err(err)? else { return Ok(None) };
            let v = v.value();
            match (v.get(..32).and_then(|k| k.try_into().ok()), v.get(32..64).and_then(|s| s.try_into().ok()))
            {
                (Some(k), Some(s)) if v.len() == 64 => Ok(Some((k, s))),
                _ => Err(FsError::Io("shared chunk secret is damaged".into())),
            }
        }

        /// Up to `limit` queued uploads.
        pub fn uploads(&self, limit: usize) -> Result<Vec<Addr>, FsError> {
            let t = self.$t.open_table(UPLOADS).map_err(err)?;
            let mut out = Vec::new();
            for row in t.iter().map_err(err)?.take(limit) {
                out.push(Addr(*row.map_err(err)?.0.value()));
            }
            Ok(out)
        }

        /// Whether an inode's content is staged locally.
        pub fn is_staged(&self, ino: Ino) -> Result<bool, FsError> {
            Ok(self.$t.open_table(STAGED).map_err(err)?.get(ino).map_err(err)?.is_some())
        }
    };
}
pub(super) use readers;

impl Rx {
    readers!(0);

    pub(in crate::adapters::redb) fn raw(&self) -> &ReadTransaction {
        &self.0
    }

    /// Inodes other than directories with no links left: files unlinked while open whose
    /// process died before the last close.
    pub fn unlinked_inodes(&self) -> Result<Vec<Ino>, FsError> {
        let t = self.0.open_table(INODES).map_err(err)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(err)? {
            let (k, v) = row.map_err(err)?;
            if let Some(a) = Attr::decode(k.value(), v.value()) {
                if a.nlink == 0 && a.kind != Kind::Dir {
                    out.push(a.ino);
                }
            }
        }
        Ok(out)
    }

    /// Whether a chunk is in the upload queue.
    pub fn upload_queued(&self, addr: &Addr) -> Result<bool, FsError> {
        Ok(self.0.open_table(UPLOADS).map_err(err)?.get(&addr.0).map_err(err)?.is_some())
    }

    /// Chunks queued while their files were being sealed and not yet released.
    pub fn sealing(&self) -> Result<Vec<Addr>, FsError> {
        let t = self.0.open_table(SEALING).map_err(err)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(err)? {
            out.push(Addr(*row.map_err(err)?.0.value()));
        }
        Ok(out)
    }

    /// Inodes staged locally (to re-queue after a restart).
    pub fn staged(&self) -> Result<Vec<Ino>, FsError> {
        let t = self.0.open_table(STAGED).map_err(err)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(err)? {
            out.push(row.map_err(err)?.0.value());
        }
        Ok(out)
    }

    /// The local part of a file staged in part (`None`: staged whole, or not staged).
    pub fn partial(&self, ino: Ino) -> Result<Option<Partial>, FsError> {
        let t = self.0.open_table(STAGED_RANGES).map_err(err)?;
        let Some(row) = t.get(ino).map_err(err)? else { return Ok(None) };
        match Partial::decode(row.value()) {
            Some(p) => Ok(Some(p)),
            None => Err(FsError::Io(format!("the staged ranges of inode {ino} are malformed"))),
        }
    }

    /// Number of inodes and of queued uploads, and every chunk record (for status).
    /// How many inodes the vault has (a stored count: no scan).
    pub fn inode_count(&self) -> Result<u64, FsError> {
        self.0.open_table(INODES).map_err(err)?.len().map_err(err)
    }

    pub fn summary(&self) -> Result<Summary, FsError> {
        let inodes = self.inode_count()?;
        let uploads = self.0.open_table(UPLOADS).map_err(err)?.len().map_err(err)?;
        let t = self.0.open_table(CHUNKS).map_err(err)?;
        let mut chunks = Vec::new();
        for row in t.iter().map_err(err)? {
            let (k, v) = row.map_err(err)?;
            if let Some(c) = ChunkRecord::decode(v.value()) {
                chunks.push((Addr(*k.value()), c));
            }
        }
        let (files, file_bytes) = self.file_totals()?;
        Ok(Summary { inodes, files, file_bytes, uploads, chunks })
    }
}
