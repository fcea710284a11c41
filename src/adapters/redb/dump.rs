//! The manifest as one byte string, and back: what a snapshot stores in the fabric and what a
//! share capability's manifest carries.
//!
//! Format: `QLM1`, then records `table (u8) ‖ key length (u32 LE) ‖ key ‖ value length (u32 LE)
//! ‖ value`, then a table byte of 0. Keys and values are the tables' own encodings (integers
//! big-endian in keys so order is kept). Local-only state — the staging set, the upload queue,
//! the outbox — is never dumped: a snapshot is taken only when it is empty.

use super::manifest::{err, Manifest, Rx};
use super::{
    CHUNKS, DIRENTS, EXTENTS, INODES, META, NODES, SEALING, SHARES, SHARE_SECRETS, SNAPSHOTS, SYMLINKS,
    UNREFERENCED, XATTRS,
};
use crate::domain::fs::{Attr, ChunkRecord, Extent, FsError, Ino};
use crate::domain::ids::Addr;
use redb::{ReadableTable, TableDefinition, TableHandle};

const MAGIC: &[u8; 4] = b"QLM1";

/// Table codes in a dump.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
enum Code {
    Inodes = 1,
    Dirents = 2,
    Symlinks = 3,
    Extents = 4,
    Chunks = 5,
    Xattrs = 6,
    Unreferenced = 7,
    Nodes = 8,
    Meta = 9,
    Snapshots = 10,
    Shares = 11,
    ShareSecrets = 12,
}

impl Code {
    fn from_u8(b: u8) -> Option<Code> {
        use Code::*;
        [
            Inodes,
            Dirents,
            Symlinks,
            Extents,
            Chunks,
            Xattrs,
            Unreferenced,
            Nodes,
            Meta,
            Snapshots,
            Shares,
            ShareSecrets,
        ]
        .into_iter()
        .find(|c| *c as u8 == b)
    }
}

/// Builds a dump record by record.
pub struct DumpWriter {
    buf: Vec<u8>,
    files: u64,
    bytes: u64,
}

impl Default for DumpWriter {
    fn default() -> Self {
        DumpWriter { buf: MAGIC.to_vec(), files: 0, bytes: 0 }
    }
}

impl DumpWriter {
    fn record(&mut self, code: Code, key: &[u8], value: &[u8]) {
        self.buf.push(code as u8);
        self.buf.extend_from_slice(&(key.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(key);
        self.buf.extend_from_slice(&(value.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(value);
    }

    /// An inode.
    pub fn inode(&mut self, a: &Attr) {
        if a.kind == crate::domain::fs::Kind::File {
            self.files += 1;
            self.bytes += a.size;
        }
        self.record(Code::Inodes, &a.ino.to_be_bytes(), &a.encode());
    }

    /// A directory entry.
    pub fn dirent(&mut self, parent: Ino, name: &[u8], ino: Ino) {
        self.record(Code::Dirents, &super::manifest::dirent_key(parent, name), &ino.to_be_bytes());
    }

    /// A symlink target.
    pub fn symlink(&mut self, ino: Ino, target: &[u8]) {
        self.record(Code::Symlinks, &ino.to_be_bytes(), target);
    }

    /// One extent of a file.
    pub fn extent(&mut self, ino: Ino, e: &Extent) {
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&ino.to_be_bytes());
        k[8..].copy_from_slice(&e.offset.to_be_bytes());
        self.record(Code::Extents, &k, &e.encode());
    }

    /// A chunk record.
    pub fn chunk(&mut self, addr: &Addr, c: &ChunkRecord) {
        self.record(Code::Chunks, &addr.0, &c.encode());
    }

    /// An extended attribute.
    pub fn xattr(&mut self, ino: Ino, name: &[u8], value: &[u8]) {
        self.record(Code::Xattrs, &super::manifest::dirent_key(ino, name), value);
    }

    /// A shared chunk's content key and proof-secret seed.
    pub fn share_secret(&mut self, addr: &Addr, key: &[u8; 32], seed: &[u8; 32]) {
        let mut v = [0u8; 64];
        v[..32].copy_from_slice(key);
        v[32..].copy_from_slice(seed);
        self.record(Code::ShareSecrets, &addr.0, &v);
    }

    /// Regular files and their bytes written so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.files, self.bytes)
    }

    /// The finished dump.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.push(0);
        self.buf
    }
}

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
        dump_table(self, &mut w, Code::Chunks, CHUNKS, |a| a.to_vec(), b)?;
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
        dump_table(self, &mut w, Code::Meta, META, |s: &str| s.as_bytes().to_vec(), be)?;
        dump_table(self, &mut w, Code::Snapshots, SNAPSHOTS, be, b)?;
        dump_table(self, &mut w, Code::Shares, SHARES, be, b)?;
        dump_table(self, &mut w, Code::ShareSecrets, SHARE_SECRETS, |a| a.to_vec(), b)?;
        let (files, bytes) = w.counts();
        Ok((w.finish(), files, bytes))
    }
}

/// One record of a dump.
struct Record<'a> {
    code: Code,
    key: &'a [u8],
    value: &'a [u8],
}

/// Splits a dump into records, checking its framing.
fn records(dump: &[u8]) -> Result<Vec<Record<'_>>, FsError> {
    let bad = |why: &str| FsError::Io(format!("manifest dump is malformed: {why}"));
    let mut rest = dump.strip_prefix(MAGIC.as_slice()).ok_or_else(|| bad("wrong magic"))?;
    let mut out = Vec::new();
    let take = |rest: &mut &[u8], n: usize| -> Option<Vec<u8>> {
        if rest.len() < n {
            return None;
        }
        let (a, b) = rest.split_at(n);
        *rest = b;
        Some(a.to_vec())
    };
    loop {
        let (&code, tail) = rest.split_first().ok_or_else(|| bad("truncated"))?;
        rest = tail;
        if code == 0 {
            return if rest.is_empty() { Ok(out) } else { Err(bad("bytes after the end")) };
        }
        let code = Code::from_u8(code).ok_or_else(|| bad("unknown table"))?;
        let mut field = || -> Result<&[u8], FsError> {
            let len = take(&mut rest, 4).ok_or_else(|| bad("truncated"))?;
            let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
            if rest.len() < len {
                return Err(bad("truncated"));
            }
            let (a, b) = rest.split_at(len);
            rest = b;
            Ok(a)
        };
        let key = field()?;
        let value = field()?;
        out.push(Record { code, key, value });
    }
}

fn u64_of(b: &[u8]) -> Result<u64, FsError> {
    b.try_into().map(u64::from_be_bytes).map_err(|_| FsError::Io("manifest dump: bad integer".into()))
}

fn addr_of(b: &[u8]) -> Result<[u8; 32], FsError> {
    b.try_into().map_err(|_| FsError::Io("manifest dump: bad chunk address".into()))
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
        let m = Manifest::from_db(db);
        let total = records.len() as u64;
        m.write_durable(|tx| {
            let w = tx.raw();
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
                    Code::Xattrs => xattrs.insert(k, v).map(drop),
                    Code::Unreferenced => unref.insert(&addr_of(k)?, u64_of(v)?).map(drop),
                    Code::Nodes => nodes.insert(&addr_of(k)?, v).map(drop),
                    Code::Meta => {
                        let key = std::str::from_utf8(k)
                            .map_err(|_| FsError::Io("manifest dump: bad key".into()))?;
                        meta.insert(key, u64_of(v)?).map(drop)
                    }
                    Code::Snapshots => snaps.insert(u64_of(k)?, v).map(drop),
                    Code::Shares => shares.insert(u64_of(k)?, v).map(drop),
                    Code::ShareSecrets => secrets.insert(&addr_of(k)?, v).map(drop),
                }
                .map_err(err)?;
                if i % 4096 == 0 {
                    progress(i as u64, total);
                }
            }
            progress(total, total);
            Ok(())
        })?;
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fs::Kind;

    #[test]
    fn malformed_dumps_are_refused_without_panic() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = DumpWriter::default();
        w.inode(&Attr::new(1, Kind::Dir, 0o755, 0, 0));
        let good = w.finish();
        for cut in 0..good.len() {
            let r = Manifest::import(&dir.path().join(format!("m{cut}")), &good[..cut], &|_, _| {});
            assert!(r.is_err(), "a dump cut at {cut} was accepted");
        }
        let mut extra = good.clone();
        extra.push(9);
        assert!(Manifest::import(&dir.path().join("x"), &extra, &|_, _| {}).is_err());
        let mut unknown = good.clone();
        unknown[4] = 77;
        assert!(Manifest::import(&dir.path().join("u"), &unknown, &|_, _| {}).is_err());
    }
}
