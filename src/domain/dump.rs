//! The manifest dump format: the manifest as one byte string, what a snapshot stores in the
//! fabric and what a share capability's manifest carries.
//!
//! Format: `QLM1`, then records `table (u8) ‖ key length (u32 LE) ‖ key ‖ value length (u32 LE)
//! ‖ value`, then a table byte of 0. Keys and values are the manifest tables' own encodings
//! (integers big-endian in keys so order is kept). Local-only state — the staging set, the
//! upload queue, the outbox — is never dumped: a snapshot is taken only when it is empty.
//! Chunk records come in two runs with coarse replica times ([`DumpWriter::chunks`]), so that
//! consecutive snapshots of a large vault share almost all their pieces.

use crate::domain::fs::{Attr, ChunkRecord, Extent, FsError, Ino, Kind};
use crate::domain::ids::Addr;
use std::collections::{HashMap, HashSet};

const MAGIC: &[u8; 4] = b"QLM1";

/// Grain the replica times of a dumped chunk record are rounded down to: a day.
pub const DUMP_TIME_GRAIN_MS: u64 = 24 * 3600 * 1000;

/// Table codes in a dump, in the order a whole-manifest dump writes them.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Code {
    /// ino (BE) → encoded `Attr`.
    Inodes = 1,
    /// [`dirent_key`] → child ino (BE).
    Dirents = 2,
    /// ino (BE) → target.
    Symlinks = 3,
    /// [`extent_key`] → encoded `Extent`.
    Extents = 4,
    /// addr → encoded `ChunkRecord`.
    Chunks = 5,
    /// [`dirent_key`] of (ino, name) → value.
    Xattrs = 6,
    /// addr → since when (Unix ms, BE).
    Unreferenced = 7,
    /// node id → encoded `NodeRecord`.
    Nodes = 8,
    /// UTF-8 key → value (BE).
    Meta = 9,
    /// id (BE) → encoded `BlobRow`.
    Snapshots = 10,
    /// id (BE) → encoded `BlobRow`.
    Shares = 11,
    /// addr → content key ‖ proof-secret seed.
    ShareSecrets = 12,
    /// addr → encoded `ChunkRecord` of a chunk snapshots or shares pin, its `refs` leaving out
    /// those pins (an import adds back one per row that lists it): a new snapshot, which pins
    /// most pieces of the last one again, then rewrites none of their records.
    PinnedChunks = 13,
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
            PinnedChunks,
        ]
        .into_iter()
        .find(|c| *c as u8 == b)
    }
}

/// Every addr the blob rows `rows` pin (snapshots oldest first, then shares), each once where
/// first listed, with how many rows list it: the `pinned` argument of [`DumpWriter::chunks`].
pub fn pins_in_order<'a>(rows: impl IntoIterator<Item = &'a [Addr]>) -> Vec<(Addr, u64)> {
    let mut at: HashMap<Addr, usize> = HashMap::new();
    let mut out: Vec<(Addr, u64)> = Vec::new();
    for pins in rows {
        for a in pins {
            match at.get(a) {
                Some(&i) => out[i].1 += 1,
                None => {
                    at.insert(*a, out.len());
                    out.push((*a, 1));
                }
            }
        }
    }
    out
}

/// Restores the `refs` of pinned chunk records ([`Code::PinnedChunks`]) read from a dump: adds
/// one for each time `pins` (every pin of the dump's snapshot and share rows) lists it.
pub fn with_pins_counted(pinned: Vec<(Addr, ChunkRecord)>, pins: &[(Addr, u64)]) -> Vec<(Addr, ChunkRecord)> {
    let counts: HashMap<&Addr, u64> = pins.iter().map(|(a, n)| (a, *n)).collect();
    pinned
        .into_iter()
        .map(|(a, mut c)| {
            c.refs += counts.get(&a).copied().unwrap_or(0);
            (a, c)
        })
        .collect()
}

/// Directory entry (and xattr) key: parent (big-endian) ‖ name.
pub fn dirent_key(parent: Ino, name: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + name.len());
    k.extend_from_slice(&parent.to_be_bytes());
    k.extend_from_slice(name);
    k
}

/// Extent key: ino (big-endian) ‖ file offset (big-endian).
pub fn extent_key(ino: Ino, offset: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&ino.to_be_bytes());
    k[8..].copy_from_slice(&offset.to_be_bytes());
    k
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
    /// One raw record (keys and values in the tables' encodings, see [`Code`]).
    pub fn record(&mut self, code: Code, key: &[u8], value: &[u8]) {
        self.buf.push(code as u8);
        self.buf.extend_from_slice(&(key.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(key);
        self.buf.extend_from_slice(&(value.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(value);
    }

    /// An inode.
    pub fn inode(&mut self, a: &Attr) {
        if a.kind == Kind::File {
            self.files += 1;
            self.bytes += a.size;
        }
        self.record(Code::Inodes, &a.ino.to_be_bytes(), &a.encode());
    }

    /// A directory entry.
    pub fn dirent(&mut self, parent: Ino, name: &[u8], ino: Ino) {
        self.record(Code::Dirents, &dirent_key(parent, name), &ino.to_be_bytes());
    }

    /// A symlink target.
    pub fn symlink(&mut self, ino: Ino, target: &[u8]) {
        self.record(Code::Symlinks, &ino.to_be_bytes(), target);
    }

    /// One extent of a file.
    pub fn extent(&mut self, ino: Ino, e: &Extent) {
        self.record(Code::Extents, &extent_key(ino, e.offset), &e.encode());
    }

    /// A chunk record.
    pub fn chunk(&mut self, addr: &Addr, c: &ChunkRecord) {
        self.record(Code::Chunks, &addr.0, &c.encode());
    }

    /// Chunk records, in three runs, so that the records a new snapshot adds leave most of a
    /// dump as it was: first the chunks only files reference (in addr order: most of a dump);
    /// then the chunks snapshots and shares pin, in `pinned` order (oldest snapshot first, its
    /// pieces in order), so each snapshot's new pieces come last instead of scattered through
    /// the run, and with their `refs` less the pins counted in `pinned` ([`Code::PinnedChunks`]);
    /// then the unreferenced ones awaiting collection (addr order). Replica audit and
    /// lease times are rounded down to [`DUMP_TIME_GRAIN_MS`], so audits and renewals between
    /// two snapshots rewrite few pieces; a restored vault thus audits and renews early, never
    /// late. Stops at the first error.
    pub fn chunks(
        &mut self,
        chunks: impl IntoIterator<Item = Result<(Addr, ChunkRecord), FsError>>,
        pinned: &[(Addr, u64)],
    ) -> Result<(), FsError> {
        let pin_set: HashSet<&Addr> = pinned.iter().map(|(a, _)| a).collect();
        let mut pins = HashMap::new();
        let mut unreferenced = Vec::new();
        for row in chunks {
            let (addr, mut c) = row?;
            for r in &mut c.replicas {
                r.verified_ms -= r.verified_ms % DUMP_TIME_GRAIN_MS;
                r.lease_expiry_ms -= r.lease_expiry_ms % DUMP_TIME_GRAIN_MS;
            }
            if pin_set.contains(&addr) {
                pins.insert(addr, c);
            } else if c.refs > 0 {
                self.chunk(&addr, &c);
            } else {
                unreferenced.push((addr, c));
            }
        }
        for (addr, count) in pinned {
            if let Some(mut c) = pins.remove(addr) {
                c.refs = c.refs.saturating_sub(*count);
                self.record(Code::PinnedChunks, &addr.0, &c.encode());
            }
        }
        unreferenced.iter().for_each(|(addr, c)| self.chunk(addr, c));
        Ok(())
    }

    /// An extended attribute.
    pub fn xattr(&mut self, ino: Ino, name: &[u8], value: &[u8]) {
        self.record(Code::Xattrs, &dirent_key(ino, name), value);
    }

    /// A shared chunk's content key and proof-secret seed.
    pub fn share_secret(&mut self, addr: &Addr, key: &[u8; 32], seed: &[u8; 32]) {
        let mut v = [0u8; 64];
        v[..32].copy_from_slice(key);
        v[32..].copy_from_slice(seed);
        self.record(Code::ShareSecrets, &addr.0, &v);
        zeroize::Zeroize::zeroize(&mut v);
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

/// One record of a dump.
pub struct Record<'a> {
    /// Its table.
    pub code: Code,
    /// Its key, in the table's encoding.
    pub key: &'a [u8],
    /// Its value, in the table's encoding.
    pub value: &'a [u8],
}

/// Splits a dump into records, checking its framing.
pub fn records(dump: &[u8]) -> Result<Vec<Record<'_>>, FsError> {
    let bad = |why: &str| FsError::Io(format!("manifest dump is malformed: {why}"));
    let mut rest = dump.strip_prefix(MAGIC.as_slice()).ok_or_else(|| bad("wrong magic"))?;
    let mut out = Vec::new();
    loop {
        let (&code, tail) = rest.split_first().ok_or_else(|| bad("truncated"))?;
        rest = tail;
        if code == 0 {
            return if rest.is_empty() { Ok(out) } else { Err(bad("bytes after the end")) };
        }
        let code = Code::from_u8(code).ok_or_else(|| bad("unknown table"))?;
        let mut field = || -> Result<&[u8], FsError> {
            let (len, tail) = rest.split_first_chunk::<4>().ok_or_else(|| bad("truncated"))?;
            let len = u32::from_le_bytes(*len) as usize;
            if tail.len() < len {
                return Err(bad("truncated"));
            }
            let (a, b) = tail.split_at(len);
            rest = b;
            Ok(a)
        };
        let key = field()?;
        let value = field()?;
        out.push(Record { code, key, value });
    }
}

/// A big-endian integer of a dump record.
pub fn u64_of(b: &[u8]) -> Result<u64, FsError> {
    b.try_into().map(u64::from_be_bytes).map_err(|_| FsError::Io("manifest dump: bad integer".into()))
}

/// A chunk address (or node id) of a dump record.
pub fn addr_of(b: &[u8]) -> Result<[u8; 32], FsError> {
    b.try_into().map_err(|_| FsError::Io("manifest dump: bad chunk address".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_back_as_written_and_cut_dumps_are_refused() {
        let mut w = DumpWriter::default();
        w.inode(&Attr::new(1, Kind::Dir, 0o755, 0, 0));
        w.dirent(1, b"a", 2);
        let good = w.finish();
        let r = records(&good).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(
            (r[1].code, r[1].key, r[1].value),
            (Code::Dirents, &dirent_key(1, b"a")[..], &2u64.to_be_bytes()[..])
        );
        for cut in 0..good.len() {
            assert!(records(&good[..cut]).is_err(), "a dump cut at {cut} was accepted");
        }
    }
}
