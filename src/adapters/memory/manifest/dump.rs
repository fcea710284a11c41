//! The in-memory manifest as a dump (`crate::domain::dump`), record for record what the redb
//! manifest writes for the same tables, and back.

use super::Tables;
use crate::domain::dump::{addr_of, pins_in_order, records, u64_of, with_pins_counted, Code, DumpWriter};
use crate::domain::fs::{Attr, ChunkRecord, Extent, FsError, Ino};
use crate::domain::health::NodeRecord;
use crate::domain::ids::{Addr, NodeId};
use crate::domain::snapshot::BlobRow;
use crate::ports::manifest::Dump;

impl Tables {
    /// What a restore shows as files: inodes, names, symlinks, extents and xattrs.
    pub(super) fn write_files(&self, w: &mut DumpWriter) {
        self.inodes.values().for_each(|a| w.inode(a));
        self.dirents.iter().for_each(|((p, n), i)| w.dirent(*p, n, *i));
        self.symlinks.iter().for_each(|(i, t)| w.symlink(*i, t));
        self.extents.iter().for_each(|((i, _), e)| w.extent(*i, e));
        for ((i, n), v) in &self.xattrs {
            w.xattr(*i, n, v);
        }
    }

    /// The dump the redb manifest writes for the same tables, record for record.
    pub(super) fn dump(&self) -> Dump {
        let mut w = DumpWriter::default();
        self.inodes.values().for_each(|a| w.inode(a));
        self.dirents.iter().for_each(|((p, n), i)| w.dirent(*p, n, *i));
        self.symlinks.iter().for_each(|(i, t)| w.symlink(*i, t));
        self.extents.iter().for_each(|((i, _), e)| w.extent(*i, e));
        let blobs = self.snapshots.values().chain(self.shares.values());
        let pinned = pins_in_order(blobs.map(|r| r.pins.as_slice()));
        // Infallible: every record is already decoded.
        let _ = w.chunks(self.chunks.iter().map(|(a, c)| Ok((*a, c.clone()))), &pinned);
        for ((i, n), v) in &self.xattrs {
            w.xattr(*i, n, v);
        }
        let ms = |w: &mut DumpWriter, a: &Addr, t: u64| w.record(Code::Unreferenced, &a.0, &t.to_be_bytes());
        self.unreferenced.iter().for_each(|(a, t)| ms(&mut w, a, *t));
        // Chunks queued while their file was being sealed: in a restored vault no file will
        // reference them, so they are unreferenced there.
        for (a, t) in &self.sealing {
            if self.chunks.get(a).is_some_and(|c| c.refs == 0) {
                ms(&mut w, a, *t);
            }
        }
        self.nodes.iter().for_each(|(id, r)| w.record(Code::Nodes, &id.0, &r.encode()));
        self.meta.iter().for_each(|(k, v)| w.record(Code::Meta, k.as_bytes(), &v.to_be_bytes()));
        self.snapshots.iter().for_each(|(id, r)| w.record(Code::Snapshots, &id.to_be_bytes(), &r.encode()));
        self.shares.iter().for_each(|(id, r)| w.record(Code::Shares, &id.to_be_bytes(), &r.encode()));
        self.share_secrets.iter().for_each(|(a, v)| w.record(Code::ShareSecrets, &a.0, v));
        let (files, bytes) = w.counts();
        (w.finish(), files, bytes)
    }

    pub(super) fn import(dump: &[u8]) -> Result<Tables, FsError> {
        let damaged = |what: &str| FsError::Io(format!("manifest dump: bad {what}"));
        let mut t = Tables::default();
        let mut pinned = Vec::new();
        for r in records(dump)? {
            let (k, v) = (r.key, r.value);
            let split = |k: &[u8]| -> Result<(Ino, Vec<u8>), FsError> {
                let (ino, name) = k.split_first_chunk::<8>().ok_or_else(|| damaged("key"))?;
                Ok((u64::from_be_bytes(*ino), name.to_vec()))
            };
            match r.code {
                Code::Inodes => {
                    let ino = u64_of(k)?;
                    t.inodes.insert(ino, Attr::decode(ino, v).ok_or_else(|| damaged("inode"))?);
                }
                Code::Dirents => drop(t.dirents.insert(split(k)?, u64_of(v)?)),
                Code::Symlinks => drop(t.symlinks.insert(u64_of(k)?, v.to_vec())),
                Code::Extents => {
                    let (ino, off) = k.split_at_checked(8).ok_or_else(|| damaged("extent key"))?;
                    let (ino, off) = (u64_of(ino)?, u64_of(off)?);
                    t.extents.insert((ino, off), Extent::decode(off, v).ok_or_else(|| damaged("extent"))?);
                }
                Code::Chunks => {
                    let c = ChunkRecord::decode(v).ok_or_else(|| damaged("chunk"))?;
                    t.chunks.insert(Addr(addr_of(k)?), c);
                }
                Code::PinnedChunks => {
                    let c = ChunkRecord::decode(v).ok_or_else(|| damaged("chunk"))?;
                    pinned.push((Addr(addr_of(k)?), c));
                }
                Code::Xattrs => drop(t.xattrs.insert(split(k)?, v.to_vec())),
                Code::Unreferenced => drop(t.unreferenced.insert(Addr(addr_of(k)?), u64_of(v)?)),
                Code::Nodes => {
                    let n = NodeRecord::decode(v).ok_or_else(|| damaged("node"))?;
                    t.nodes.insert(NodeId(addr_of(k)?), n);
                }
                Code::Meta => {
                    let key = std::str::from_utf8(k).map_err(|_| damaged("key"))?;
                    t.meta.insert(key.to_string(), u64_of(v)?);
                }
                Code::Snapshots | Code::Shares => {
                    let row = BlobRow::decode(v).ok_or_else(|| damaged("snapshot/share row"))?;
                    let table = if r.code == Code::Shares { &mut t.shares } else { &mut t.snapshots };
                    table.insert(u64_of(k)?, row);
                }
                Code::ShareSecrets => drop(t.share_secrets.insert(Addr(addr_of(k)?), v.to_vec())),
            }
        }
        let pins = pins_in_order(t.snapshots.values().chain(t.shares.values()).map(|r| r.pins.as_slice()));
        t.chunks.extend(with_pins_counted(pinned, &pins));
        Ok(t)
    }
}
