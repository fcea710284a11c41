//! The redb manifest as a dump (`crate::domain::dump`) and back: what a snapshot stores in the
//! fabric and what a share capability's manifest carries, and the content hash that tells
//! whether a snapshot would differ from the last.

pub use crate::domain::dump::DumpWriter;

use super::manifest::{create_tables, err, Manifest, Rx, FILES, FILE_BYTES};
use super::{
    CHUNKS, DIRENTS, EXTENTS, INODES, META, NODES, SEALING, SHARES, SHARE_SECRETS, SNAPSHOTS, SYMLINKS,
    UNREFERENCED, XATTRS,
};
use crate::domain::dump::{addr_of, pins_in_order, records, u64_of, with_pins_counted, Code};
use crate::domain::fs::{Attr, ChunkRecord, FsError};
use crate::domain::ids::Addr;
use crate::domain::snapshot::BlobRow;
use redb::{ReadableTable, TableDefinition, TableHandle};

fn dump_table<K, V>(
    rx: &Rx,
    w: &mut DumpWriter,
    code: Code,
    table: TableDefinition<K, V>,
    key: impl Fn(K::SelfType<'_>) -> Vec<u8>,
    value: impl Fn(V::SelfType<'_>) -> Vec<u8>,
) -> Result<(), FsError>
where
    K: redb::Key + 'static,
    V: redb::Value + 'static,
{
    let t = rx.raw().open_table(table).map_err(err)?;
    for row in t.iter().map_err(err)? {
        let (k, v) = row.map_err(err)?;
        w.record(code, &key(k.value()), &value(v.value()));
    }
    Ok(())
}

/// Feeds one table's rows (length-prefixed keys and values, in key order) into `h`.
fn hash_table<K, V>(rx: &Rx, h: &mut blake3::Hasher, table: TableDefinition<K, V>) -> Result<(), FsError>
where
    K: redb::Key + 'static,
    V: redb::Value + 'static,
{
    h.update(table.name().as_bytes());
    let t = rx.raw().open_table(table).map_err(err)?;
    for row in t.iter().map_err(err)? {
        let (k, v) = row.map_err(err)?;
        for bytes in [K::as_bytes(&k.value()).as_ref(), V::as_bytes(&v.value()).as_ref()] {
            h.update(&(bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        }
    }
    Ok(())
}

impl Rx {
    /// A hash of what a restore shows as files: inodes with their attributes, names, symlink
    /// targets, extents and xattrs. Replicas, leases, audit history and node statistics are left
    /// out: they change without any file changing, and a snapshot that differs only in them
    /// would push a real one out of the retained set.
    pub fn content_hash(&self) -> Result<[u8; 32], FsError> {
        let mut h = blake3::Hasher::new_derive_key("quloud v1 snapshot content hash");
        hash_table(self, &mut h, INODES)?;
        hash_table(self, &mut h, DIRENTS)?;
        hash_table(self, &mut h, SYMLINKS)?;
        hash_table(self, &mut h, EXTENTS)?;
        hash_table(self, &mut h, XATTRS)?;
        Ok(*h.finalize().as_bytes())
    }

    /// The whole vault manifest (all but local-only state) as one dump, with its file count and
    /// bytes.
    pub fn dump(&self) -> Result<(Vec<u8>, u64, u64), FsError> {
        let mut w = DumpWriter::default();
        let t = self.raw().open_table(INODES).map_err(err)?;
        for row in t.iter().map_err(err)? {
            let (k, v) = row.map_err(err)?;
            match Attr::decode(k.value(), v.value()) {
                Some(a) => w.inode(&a),
                None => return Err(FsError::Io(format!("inode {} record is damaged", k.value()))),
            }
        }
        let b = |s: &[u8]| s.to_vec();
        let be = |n: u64| n.to_be_bytes().to_vec();
        dump_table(self, &mut w, Code::Dirents, DIRENTS, b, be)?;
        dump_table(self, &mut w, Code::Symlinks, SYMLINKS, be, b)?;
        dump_table(
            self,
            &mut w,
            Code::Extents,
            EXTENTS,
            |(i, o)| [i.to_be_bytes(), o.to_be_bytes()].concat(),
            b,
        )?;
        self.dump_chunks(&mut w)?;
        dump_table(self, &mut w, Code::Xattrs, XATTRS, b, b)?;
        dump_table(self, &mut w, Code::Unreferenced, UNREFERENCED, |a| a.to_vec(), be)?;
        // Chunks queued while their file was being sealed: in a restored vault no file will
        // reference them, so they are unreferenced there.
        let sealing = self.raw().open_table(SEALING).map_err(err)?;
        for row in sealing.iter().map_err(err)? {
            let (k, v) = row.map_err(err)?;
            if self.chunk(&Addr(*k.value()))?.is_some_and(|c| c.refs == 0) {
                w.record(Code::Unreferenced, k.value(), &be(v.value()));
            }
        }
        dump_table(self, &mut w, Code::Nodes, NODES, |a| a.to_vec(), b)?;
        // The file counters are this manifest's own bookkeeping, counted again where a dump lands.
        let meta = self.raw().open_table(META).map_err(err)?;
        for row in meta.iter().map_err(err)? {
            let (k, v) = row.map_err(err)?;
            if ![FILES, FILE_BYTES].contains(&k.value()) {
                w.record(Code::Meta, k.value().as_bytes(), &be(v.value()));
            }
        }
        dump_table(self, &mut w, Code::Snapshots, SNAPSHOTS, be, b)?;
        dump_table(self, &mut w, Code::Shares, SHARES, be, b)?;
        dump_table(self, &mut w, Code::ShareSecrets, SHARE_SECRETS, |a| a.to_vec(), b)?;
        let (files, bytes) = w.counts();
        Ok((w.finish(), files, bytes))
    }
}

impl Rx {
    /// Chunk records as a dump keeps them ([`DumpWriter::chunks`]).
    fn dump_chunks(&self, w: &mut DumpWriter) -> Result<(), FsError> {
        let t = self.raw().open_table(CHUNKS).map_err(err)?;
        let rows = t.iter().map_err(err)?.map(|row| {
            let (k, v) = row.map_err(err)?;
            let addr = Addr(*k.value());
            let c = ChunkRecord::decode(v.value())
                .ok_or_else(|| FsError::Io(format!("chunk {addr:?} record is damaged")))?;
            Ok((addr, c))
        });
        let blobs = [self.blobs(false)?, self.blobs(true)?];
        w.chunks(rows, &pins_in_order(blobs.iter().flatten().map(|r| r.pins.as_slice())))
    }
}

impl Manifest {
    /// Creates the manifest at `path` from a dump (the file must not exist). `progress` is
    /// called with (records done, total).
    pub fn import(
        path: &std::path::Path,
        dump: &[u8],
        progress: &dyn Fn(u64, u64),
    ) -> Result<Manifest, FsError> {
        let records = records(dump)?;
        if path.exists() {
            return Err(FsError::Io(format!("{} already exists; refusing to overwrite it", path.display())));
        }
        let db = redb::Database::create(path).map_err(err)?;
        let m =
            Manifest::from_store(super::manifest::Store::for_file(db, path, super::manifest::Spare::Reserve));
        let total = records.len() as u64;
        m.write_durable(|tx| {
            let w = tx.raw();
            create_tables(w)?;
            let mut inodes = w.open_table(INODES).map_err(err)?;
            let mut dirents = w.open_table(DIRENTS).map_err(err)?;
            let mut symlinks = w.open_table(SYMLINKS).map_err(err)?;
            let mut extents = w.open_table(EXTENTS).map_err(err)?;
            let mut chunks = w.open_table(CHUNKS).map_err(err)?;
            let mut xattrs = w.open_table(XATTRS).map_err(err)?;
            let mut unref = w.open_table(UNREFERENCED).map_err(err)?;
            let mut nodes = w.open_table(NODES).map_err(err)?;
            let mut meta = w.open_table(META).map_err(err)?;
            let mut snaps = w.open_table(SNAPSHOTS).map_err(err)?;
            let mut shares = w.open_table(SHARES).map_err(err)?;
            let mut secrets = w.open_table(SHARE_SECRETS).map_err(err)?;
            let (mut pinned, mut rows) = (Vec::new(), Vec::new());
            for (i, r) in records.iter().enumerate() {
                let (k, v) = (r.key, r.value);
                match r.code {
                    Code::Inodes => inodes.insert(u64_of(k)?, v).map(drop),
                    Code::Dirents => dirents.insert(k, u64_of(v)?).map(drop),
                    Code::Symlinks => symlinks.insert(u64_of(k)?, v).map(drop),
                    Code::Extents if k.len() == 16 => {
                        extents.insert((u64_of(&k[..8])?, u64_of(&k[8..])?), v).map(drop)
                    }
                    Code::Extents => return Err(FsError::Io("manifest dump: bad extent key".into())),
                    Code::Chunks => chunks.insert(&addr_of(k)?, v).map(drop),
                    Code::PinnedChunks => {
                        let c = ChunkRecord::decode(v)
                            .ok_or_else(|| FsError::Io("manifest dump: bad chunk record".into()))?;
                        pinned.push((Addr(addr_of(k)?), c));
                        Ok(())
                    }
                    Code::Xattrs => xattrs.insert(k, v).map(drop),
                    Code::Unreferenced => unref.insert(&addr_of(k)?, u64_of(v)?).map(drop),
                    Code::Nodes => nodes.insert(&addr_of(k)?, v).map(drop),
                    Code::Meta => {
                        let key = std::str::from_utf8(k)
                            .map_err(|_| FsError::Io("manifest dump: bad key".into()))?;
                        meta.insert(key, u64_of(v)?).map(drop)
                    }
                    Code::Snapshots | Code::Shares => {
                        let row = BlobRow::decode(v)
                            .ok_or_else(|| FsError::Io("manifest dump: bad snapshot or share row".into()))?;
                        rows.push(row.pins);
                        let table = if r.code == Code::Shares { &mut shares } else { &mut snaps };
                        table.insert(u64_of(k)?, v).map(drop)
                    }
                    Code::ShareSecrets => secrets.insert(&addr_of(k)?, v).map(drop),
                }
                .map_err(err)?;
                if i % 4096 == 0 {
                    progress(i as u64, total);
                }
            }
            let pins = pins_in_order(rows.iter().map(|p| p.as_slice()));
            for (addr, c) in with_pins_counted(pinned, &pins) {
                chunks.insert(&addr.0, c.encode().as_slice()).map_err(err)?;
            }
            progress(total, total);
            Ok(())
        })?;
        Ok(m)
    }
}
