//! Manifest snapshots and the vault's root record (docs/DESIGN.md §8).
//!
//! - A **snapshot** is a blob (`crate::domain::blob`) of the manifest, sealed with keys derived from the manifest key.
//! - The **root record** lists the retained snapshots. Its body is encrypted with a key derived
//!   from the manifest key; the whole record is signed with the root signing key and carries a
//!   version that only grows, so the newest validly signed record wins and an older one served
//!   later is recognised as a rollback.

pub use crate::domain::blob::{
    open_head, open_index, open_piece, seal_blob, BlobError, BlobHead, PieceRef, SealedBlob, MAX_BLOB_PIECES,
    MAX_PIECES, PIECE_REF_LEN,
};
use crate::domain::ids::Addr;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use std::collections::BTreeSet;

/// Largest root record accepted.
pub const MAX_ROOT_RECORD: usize = 64 * 1024;
/// Most snapshots one root record lists.
pub const MAX_LISTED: usize = 400;

/// Root records of format 1 carry no epoch (they read as epoch 0); format 2 adds the writer's
/// epoch and whether its lineage is closed.
const ROOT_V1: u8 = 1;
const ROOT_V2: u8 = 2;
const ROOT_DOMAIN: &[u8] = b"quloud v1 root record";
const ROOT_HEADER_V1: usize = 1 + 32 + 8 + 8 + 12 + 4;
const ROOT_HEADER: usize = 1 + 32 + 8 + 8 + 1 + 8 + 12 + 4;

/// A snapshot as the root record lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Number, growing with each snapshot of the vault.
    pub id: u64,
    /// When it was taken (Unix ms).
    pub taken_ms: u64,
    /// Its head.
    pub head: PieceRef,
    /// Files in it.
    pub files: u64,
    /// Bytes of file data in it.
    pub bytes: u64,
    /// The writer epoch it was taken in (0: before writer leases).
    pub epoch: u64,
}

/// Encoded length of a `SnapshotInfo` in format 1 records and rows (no epoch).
pub const SNAPSHOT_INFO_V1_LEN: usize = 8 + 8 + PIECE_REF_LEN + 8 + 8;
/// Encoded length of a `SnapshotInfo`.
pub const SNAPSHOT_INFO_LEN: usize = SNAPSHOT_INFO_V1_LEN + 8;

impl SnapshotInfo {
    /// Appends the encoding.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.id.to_le_bytes());
        out.extend_from_slice(&self.taken_ms.to_le_bytes());
        self.head.encode_into(out);
        out.extend_from_slice(&self.files.to_le_bytes());
        out.extend_from_slice(&self.bytes.to_le_bytes());
        out.extend_from_slice(&self.epoch.to_le_bytes());
    }

    /// Decodes exactly `SNAPSHOT_INFO_LEN` bytes, or `SNAPSHOT_INFO_V1_LEN` bytes of format 1
    /// (epoch 0).
    pub fn decode(b: &[u8]) -> Option<SnapshotInfo> {
        if b.len() != SNAPSHOT_INFO_LEN && b.len() != SNAPSHOT_INFO_V1_LEN {
            return None;
        }
        let u = |r: std::ops::Range<usize>| b[r].try_into().ok().map(u64::from_le_bytes);
        let epoch =
            if b.len() == SNAPSHOT_INFO_LEN { u(SNAPSHOT_INFO_V1_LEN..SNAPSHOT_INFO_LEN)? } else { 0 };
        Some(SnapshotInfo {
            id: u(0..8)?,
            taken_ms: u(8..16)?,
            head: PieceRef::decode(&b[16..16 + PIECE_REF_LEN])?,
            files: u(16 + PIECE_REF_LEN..24 + PIECE_REF_LEN)?,
            bytes: u(24 + PIECE_REF_LEN..32 + PIECE_REF_LEN)?,
            epoch,
        })
    }

    /// Which of two snapshots is newer: the later epoch, then the higher id.
    pub fn order(&self) -> (u64, u64) {
        (self.epoch, self.id)
    }
}

/// The vault's root record: the retained snapshots, newest last.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootRecord {
    /// Grows with every record the vault publishes.
    pub version: u64,
    /// The epoch of the writer lease it was published under (0: before writer leases).
    pub epoch: u64,
    /// The last record of a writer that lost the lease: its lineage's snapshots, kept for the
    /// writer of a later epoch to adopt.
    pub closed: bool,
    /// When it was written (Unix ms).
    pub written_ms: u64,
    /// Retained snapshots, oldest first.
    pub snapshots: Vec<SnapshotInfo>,
}

/// Why a root record was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RootError {
    /// Does not parse, or is too large.
    #[error("malformed root record")]
    Malformed,
    /// Signed by another key than this vault's root signing key.
    #[error("root record is not signed by this vault's key")]
    WrongKey,
    /// The signature does not verify: forged or altered.
    #[error("root record signature does not verify (forged or altered)")]
    BadSignature,
    /// Signed correctly, but the body does not decrypt (a bug or a key mix-up).
    #[error("root record body does not decrypt")]
    Body,
}

/// The subject token under which a vault's root records are kept: derived from the root
/// verifying key, so nodes can check that a record belongs where it is filed.
pub fn root_locator(key: &VerifyingKey) -> String {
    crate::domain::ids::to_hex(&blake3::derive_key("quloud v1 root locator", key.as_bytes())[..16])
}

impl RootRecord {
    /// Encrypts, signs and encodes the record.
    pub fn seal(&self, signing: &SigningKey, body_key: &[u8; 32]) -> Vec<u8> {
        // At most the newest MAX_LISTED (a record must stay within MAX_ROOT_RECORD).
        let listed = &self.snapshots[self.snapshots.len().saturating_sub(MAX_LISTED)..];
        let mut body = Vec::with_capacity(4 + listed.len() * SNAPSHOT_INFO_LEN);
        body.extend_from_slice(&(listed.len() as u32).to_le_bytes());
        for s in listed {
            s.encode_into(&mut body);
        }
        let mut nonce = [0u8; 12];
        crate::domain::random_bytes(&mut nonce);
        let mut out = Vec::with_capacity(ROOT_HEADER + body.len() + 16 + 64);
        out.push(ROOT_V2);
        out.extend_from_slice(signing.verifying_key().as_bytes());
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.epoch.to_le_bytes());
        out.push(u8::from(self.closed));
        out.extend_from_slice(&self.written_ms.to_le_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&((body.len() + 16) as u32).to_le_bytes());
        let sealed = ChaCha20Poly1305::new(Key::from_slice(body_key))
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: &body, aad: &out[..ROOT_HEADER] })
            .unwrap_or_else(|_| unreachable!("root record body within the ChaCha20 limit"));
        out.extend_from_slice(&sealed);
        let sig = signing.sign(&signed_bytes(&out));
        out.extend_from_slice(&sig.to_bytes());
        out
    }

    /// The version a record claims, after checking only its signature against `key`.
    pub fn verified_version(bytes: &[u8], key: &VerifyingKey) -> Result<u64, RootError> {
        Ok(Self::verified_order(bytes, key)?.version)
    }

    /// The (epoch, version) a record claims, after checking only its signature against `key`
    /// (used to compare records without decrypting them; a node can run this check too).
    pub fn verified_order(bytes: &[u8], key: &VerifyingKey) -> Result<RootOrder, RootError> {
        let header = header_len(bytes)?;
        if bytes.len() > MAX_ROOT_RECORD || bytes.len() < header + 16 + 64 {
            return Err(RootError::Malformed);
        }
        let (msg, sig) = bytes.split_at(bytes.len() - 64);
        let body_len =
            u32::from_le_bytes(msg[header - 4..header].try_into().map_err(|_| RootError::Malformed)?);
        if msg.len() != header + body_len as usize {
            return Err(RootError::Malformed);
        }
        if &msg[1..33] != key.as_bytes() {
            return Err(RootError::WrongKey);
        }
        let sig = Signature::from_slice(sig).map_err(|_| RootError::Malformed)?;
        key.verify_strict(&signed_bytes(msg), &sig).map_err(|_| RootError::BadSignature)?;
        let u = |r: std::ops::Range<usize>| {
            msg[r].try_into().map(u64::from_le_bytes).map_err(|_| RootError::Malformed)
        };
        let epoch = if header == ROOT_HEADER { u(41..49)? } else { 0 };
        Ok(RootOrder { epoch, version: u(33..41)? })
    }

    /// The verifying key a record claims to be signed by (unverified), if it parses that far.
    pub fn claimed_key(bytes: &[u8]) -> Option<VerifyingKey> {
        if bytes.len() > MAX_ROOT_RECORD || bytes.len() < 33 || header_len(bytes).is_err() {
            return None;
        }
        VerifyingKey::from_bytes(bytes[1..33].try_into().ok()?).ok()
    }

    /// What a storage node checks before keeping a record published under `locator`: it is
    /// signed by the key it claims, and that key's locator is `locator` (so nobody can file a
    /// record under another vault). Returns the record's (epoch, version).
    pub fn check_filed(bytes: &[u8], locator: &str) -> Result<RootOrder, RootError> {
        let key = Self::claimed_key(bytes).ok_or(RootError::Malformed)?;
        if root_locator(&key) != locator {
            return Err(RootError::WrongKey);
        }
        Self::verified_order(bytes, &key)
    }

    /// Verifies the signature against `key` and decrypts the body.
    pub fn open(bytes: &[u8], key: &VerifyingKey, body_key: &[u8; 32]) -> Result<RootRecord, RootError> {
        let RootOrder { epoch, version } = Self::verified_order(bytes, key)?;
        let header = header_len(bytes)?;
        let msg = &bytes[..bytes.len() - 64];
        let (closed, at) = if header == ROOT_HEADER { (msg[49] == 1, 50) } else { (false, 41) };
        let written_ms = u64::from_le_bytes(msg[at..at + 8].try_into().map_err(|_| RootError::Malformed)?);
        let nonce = &msg[at + 8..at + 20];
        let body = ChaCha20Poly1305::new(Key::from_slice(body_key))
            .decrypt(Nonce::from_slice(nonce), Payload { msg: &msg[header..], aad: &msg[..header] })
            .map_err(|_| RootError::Body)?;
        if body.len() < 4 {
            return Err(RootError::Malformed);
        }
        let info_len = if header == ROOT_HEADER { SNAPSHOT_INFO_LEN } else { SNAPSHOT_INFO_V1_LEN };
        let count = u32::from_le_bytes(body[..4].try_into().map_err(|_| RootError::Malformed)?) as usize;
        if count > MAX_LISTED || body.len() != 4 + count * info_len {
            return Err(RootError::Malformed);
        }
        let snapshots: Option<Vec<_>> = body[4..].chunks_exact(info_len).map(SnapshotInfo::decode).collect();
        let snapshots = snapshots.ok_or(RootError::Malformed)?;
        Ok(RootRecord { version, epoch, closed, written_ms, snapshots })
    }
}

/// The header length of a record's format.
fn header_len(bytes: &[u8]) -> Result<usize, RootError> {
    match bytes.first() {
        Some(&ROOT_V1) => Ok(ROOT_HEADER_V1),
        Some(&ROOT_V2) => Ok(ROOT_HEADER),
        _ => Err(RootError::Malformed),
    }
}

/// Which root record is newer: the later writer epoch, then the higher version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RootOrder {
    /// The writer epoch it was published under.
    pub epoch: u64,
    /// Its version.
    pub version: u64,
}

fn signed_bytes(msg: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(ROOT_DOMAIN.len() + msg.len());
    v.extend_from_slice(ROOT_DOMAIN);
    v.extend_from_slice(msg);
    v
}

/// What the fabric said about a vault's root records.
#[derive(Debug, Default)]
pub struct RootChoice {
    /// The newest validly signed record (bytes), if any.
    pub newest: Option<(RootOrder, Vec<u8>)>,
    /// Sources that served an older record than the newest: (source, version served).
    pub rolled_back: Vec<(String, u64)>,
    /// The newest closed record of each earlier epoch (a writer that lost the lease published
    /// its lineage there), oldest epoch first.
    pub closed: Vec<(RootOrder, Vec<u8>)>,
    /// Records refused (source, reason).
    pub refused: Vec<(String, RootError)>,
}

/// Picks the newest validly signed record among what each source served (source name, the
/// records it holds, newest it holds last). A source whose newest valid record is older than
/// the overall newest is reported as rolled back; forged or damaged records are refused.
pub fn choose_root(served: &[(String, Vec<Vec<u8>>)], key: &VerifyingKey) -> RootChoice {
    let mut choice = RootChoice::default();
    let mut per_source = Vec::new();
    let mut closed = std::collections::BTreeMap::new();
    for (source, records) in served {
        for r in records {
            match RootRecord::verified_order(r, key) {
                Ok(v) => {
                    if choice.newest.as_ref().is_none_or(|(n, _)| v > *n) {
                        choice.newest = Some((v, r.clone()));
                    }
                    if r.get(49) == Some(&1) && r.first() == Some(&ROOT_V2) {
                        closed.entry(v.epoch).and_modify(|c: &mut (RootOrder, Vec<u8>)| {
                            if v > c.0 {
                                *c = (v, r.clone());
                            }
                        });
                        closed.entry(v.epoch).or_insert_with(|| (v, r.clone()));
                    }
                }
                Err(e) => choice.refused.push((source.clone(), e)),
            }
        }
        // What the source would serve as current: its last valid record.
        let last = records.iter().rev().find_map(|r| RootRecord::verified_order(r, key).ok());
        if let Some(l) = last {
            per_source.push((source.clone(), l));
        }
    }
    if let Some((newest, _)) = &choice.newest {
        // A source that keeps the closed record of an earlier lineage is not rolled back.
        choice.rolled_back = per_source
            .into_iter()
            .filter(|(_, v)| v < newest && !closed.contains_key(&v.epoch))
            .map(|(s, v)| (s, v.version))
            .collect();
        choice.closed = closed.into_values().filter(|(o, _)| o.epoch < newest.epoch).collect();
    }
    choice
}

/// How many snapshots to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// The newest this many, whatever their age.
    pub last: usize,
    /// Plus the newest snapshot of each of this many most recent days (UTC) that have one.
    pub daily: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Retention { last: 24, daily: 30 }
    }
}

/// The ids of the snapshots (id, taken_ms) to keep under `policy`. The newest is always kept.
pub fn retain(snapshots: &[(u64, u64)], policy: Retention) -> BTreeSet<u64> {
    let mut by_age: Vec<(u64, u64)> = snapshots.to_vec();
    by_age.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
    let mut keep: BTreeSet<u64> = by_age.iter().take(policy.last.max(1)).map(|s| s.0).collect();
    let mut days = BTreeSet::new();
    for (id, taken) in &by_age {
        let day = taken / 86_400_000;
        if days.len() >= policy.daily && !days.contains(&day) {
            break;
        }
        if days.insert(day) {
            keep.insert(*id);
        }
    }
    keep
}

/// What a kept blob's pins hold, and so how garbage collection keeps the chunks it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinScope {
    /// The blob's own head and pieces. The chunks its files name are kept by garbage
    /// collection's bound: nothing unreferenced after it was taken is collected while it is kept
    /// (a snapshot this home took, a share).
    Pieces,
    /// Its head and pieces and every chunk its files name (a snapshot restored or adopted from
    /// another home's lineage): it needs no time bound, so none taken on another clock applies.
    Named,
}

/// A blob the owner keeps in the fabric (a snapshot or a shared manifest), as the manifest
/// remembers it: what it is, and every addr it pins (their references keep them from garbage
/// collection and in the audit, renewal and healing rounds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobRow {
    /// The snapshot as listed in root records (for a share: id, creation time, head, counts).
    pub info: SnapshotInfo,
    /// Distinct addrs pinned: of the head and pieces, and with `PinScope::Named` of every chunk
    /// the blob's files name.
    pub pins: Vec<Addr>,
    /// What `pins` holds.
    pub scope: PinScope,
    /// What was shared (empty for a snapshot).
    pub path: Vec<u8>,
}

impl BlobRow {
    /// Encodes for the manifest.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(2 + SNAPSHOT_INFO_LEN + 8 + self.path.len() + self.pins.len() * 32);
        v.push(3);
        self.info.encode_into(&mut v);
        v.push(match self.scope {
            PinScope::Pieces => 0,
            PinScope::Named => 1,
        });
        v.extend_from_slice(&(self.path.len() as u32).to_le_bytes());
        v.extend_from_slice(&self.path);
        v.extend_from_slice(&(self.pins.len() as u32).to_le_bytes());
        for a in &self.pins {
            v.extend_from_slice(&a.0);
        }
        v
    }

    /// Decodes a manifest row.
    pub fn decode(b: &[u8]) -> Option<BlobRow> {
        let (&version, rest) = b.split_first()?;
        // Format 1 rows hold snapshot infos without an epoch; formats 1 and 2 have no scope.
        let info_len = match version {
            1 => SNAPSHOT_INFO_V1_LEN,
            2 | 3 => SNAPSHOT_INFO_LEN,
            _ => return None,
        };
        if rest.len() < info_len + 4 {
            return None;
        }
        let info = SnapshotInfo::decode(&rest[..info_len])?;
        let rest = &rest[info_len..];
        let (scope, rest) = match version {
            3 => match rest.split_first()? {
                (0, rest) => (PinScope::Pieces, rest),
                (1, rest) => (PinScope::Named, rest),
                _ => return None,
            },
            _ => (PinScope::Pieces, rest),
        };
        if rest.len() < 4 {
            return None;
        }
        let plen = u32::from_le_bytes(rest[..4].try_into().ok()?) as usize;
        let rest = &rest[4..];
        if rest.len() < plen + 4 {
            return None;
        }
        let path = rest[..plen].to_vec();
        let rest = &rest[plen..];
        let n = u32::from_le_bytes(rest[..4].try_into().ok()?) as usize;
        let rest = &rest[4..];
        if rest.len() != n.checked_mul(32)? {
            return None;
        }
        let pins = rest.chunks_exact(32).map(|c| Addr(c.try_into().unwrap_or([0; 32]))).collect();
        Some(BlobRow { info, pins, scope, path })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::blob_index::FLAT_MAX;
    use crate::domain::keys::ChunkKeys;
    use crate::domain::keys::MasterKey;
    use proptest::prelude::*;

    fn keys() -> crate::domain::keys::VaultKeys {
        MasterKey::from_bytes([5; 32]).derive()
    }

    fn record(version: u64) -> Vec<u8> {
        let k = keys();
        let s = seal_blob(k.snapshot(), b"manifest bytes", 1).unwrap();
        let info = SnapshotInfo {
            id: version,
            taken_ms: 1000 * version,
            head: s.head_ref,
            files: 3,
            bytes: 9,
            epoch: 0,
        };
        RootRecord { version, epoch: 0, closed: false, written_ms: 7, snapshots: vec![info] }
            .seal(k.root_signing_key(), &k.root_body_key())
    }

    /// Opens `blob` as a reader does: the head, then the index pieces if any.
    fn opened(k: &ChunkKeys, blob: &SealedBlob) -> Result<BlobHead, BlobError> {
        let mut head = open_head(k, &blob.head_ref, &blob.head.ciphertext)?;
        let cts: Vec<&[u8]> = blob.index.iter().map(|p| p.ciphertext.as_slice()).collect();
        if !head.index.is_empty() {
            open_index(k, &mut head, &cts)?;
        }
        Ok(head)
    }

    #[test]
    fn blob_round_trip_and_tamper() {
        let k = keys();
        for size in [20_000u32, 3_000_000] {
            let payload: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
            let blob = seal_blob(k.snapshot(), &payload, 9).unwrap();
            assert!(blob.pieces.len() > 2);
            // A small blob has a flat head; a large one an indexed head.
            assert_eq!(blob.index.is_empty(), blob.pieces.len() <= FLAT_MAX, "{} pieces", blob.pieces.len());
            let head = opened(k.snapshot(), &blob).unwrap();
            let mut back = Vec::new();
            assert_eq!(head.pieces.len(), blob.pieces.len());
            for (r, p) in head.pieces.iter().zip(&blob.pieces) {
                assert_eq!(r.secret().commitment(), p.commitment, "a piece's seed proves for it");
                back.extend(open_piece(k.snapshot(), r, &p.ciphertext).unwrap());
            }
            assert_eq!(back, payload);
            let stored: Vec<Addr> =
                std::iter::once(&blob.head_ref).chain(head.stored()).map(|r| r.addr).collect();
            let mut all = blob.addrs();
            all.sort();
            let mut named = stored.clone();
            named.sort();
            named.dedup();
            assert_eq!(named, all, "the head names everything the blob stores");
            let mut bad = blob.head.ciphertext.clone();
            bad[3] ^= 1;
            assert!(open_head(k.snapshot(), &blob.head_ref, &bad).is_err());
            // Data keys cannot open snapshot pieces.
            assert!(open_head(k.data(), &blob.head_ref, &blob.head.ciphertext).is_err());
        }
    }

    #[test]
    fn a_tampered_missing_or_swapped_index_piece_is_refused() {
        let k = keys();
        let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i * 13 % 241) as u8).collect();
        let blob = seal_blob(k.snapshot(), &payload, 3).unwrap();
        assert!(blob.index.len() >= 2, "{} index pieces", blob.index.len());
        let head = open_head(k.snapshot(), &blob.head_ref, &blob.head.ciphertext).unwrap();
        let cts: Vec<Vec<u8>> = blob.index.iter().map(|p| p.ciphertext.clone()).collect();
        let try_with = |cts: &[Vec<u8>]| {
            let mut h = head.clone();
            let refs: Vec<&[u8]> = cts.iter().map(|c| c.as_slice()).collect();
            open_index(k.snapshot(), &mut h, &refs).map(|()| h.pieces.len())
        };
        assert_eq!(try_with(&cts), Ok(blob.pieces.len()));
        let mut flipped = cts.clone();
        flipped[1][5] ^= 1;
        assert!(try_with(&flipped).is_err(), "a flipped bit");
        assert!(try_with(&cts[1..]).is_err(), "one index piece missing");
        let mut swapped = cts.clone();
        swapped.swap(0, 1);
        assert!(try_with(&swapped).is_err(), "index pieces out of order");
        // Another blob's index piece, sealed with the same keys: its pieces do not add up to
        // what this head commits to.
        let other: Vec<u8> = (0..3_000_000u32).map(|i| (i * 17 % 239) as u8).collect();
        let other = seal_blob(k.snapshot(), &other, 3).unwrap();
        let mut h = head.clone();
        h.index[0] = PieceRef::of(k.snapshot(), &other.index[0]);
        let mut mixed: Vec<&[u8]> = cts.iter().map(|c| c.as_slice()).collect();
        mixed[0] = &other.index[0].ciphertext;
        assert!(open_index(k.snapshot(), &mut h, &mixed).is_err(), "another blob's index piece");
    }

    #[test]
    fn a_root_record_lists_at_most_the_newest_max_listed() {
        let k = keys();
        let head = seal_blob(k.snapshot(), b"m", 1).unwrap().head_ref;
        let snapshots: Vec<SnapshotInfo> = (0..MAX_LISTED as u64 + 50)
            .map(|id| SnapshotInfo { id, taken_ms: id, head, files: 0, bytes: 0, epoch: 0 })
            .collect();
        let bytes = RootRecord { version: 1, epoch: 0, closed: false, written_ms: 1, snapshots }
            .seal(k.root_signing_key(), &k.root_body_key());
        assert!(bytes.len() <= MAX_ROOT_RECORD);
        let r = RootRecord::open(&bytes, &k.root_signing_key().verifying_key(), &k.root_body_key()).unwrap();
        assert_eq!(r.snapshots.len(), MAX_LISTED);
        assert_eq!(r.snapshots.last().unwrap().id, MAX_LISTED as u64 + 49);
    }

    /// A root record's signature is judged with `verify_strict`, by the owner and by nodes: a
    /// second signature of the same record by the vault's key (small-order R) is refused, and so
    /// is a record filed under a weak key whose one signature fits every record.
    #[test]
    fn malleated_and_weak_key_signatures_are_refused() {
        use crate::domain::signature_tests::{malleated, weak_key_signature};
        let k = keys();
        let vk = k.root_signing_key().verifying_key();
        let mut bytes = record(4);
        let at = bytes.len() - 64;
        let sig = malleated(k.root_signing_key(), &signed_bytes(&bytes[..at]));
        bytes[at..].copy_from_slice(&sig);
        assert!(matches!(RootRecord::open(&bytes, &vk, &k.root_body_key()), Err(RootError::BadSignature)));
        assert!(matches!(RootRecord::check_filed(&bytes, &root_locator(&vk)), Err(RootError::BadSignature)));
        let (weak, sig) = weak_key_signature();
        bytes[1..33].copy_from_slice(weak.as_bytes());
        bytes[at..].copy_from_slice(&sig);
        assert!(matches!(
            RootRecord::check_filed(&bytes, &root_locator(&weak)),
            Err(RootError::BadSignature)
        ));
    }

    #[test]
    fn root_record_round_trip() {
        let k = keys();
        let bytes = record(4);
        let vk = k.root_signing_key().verifying_key();
        let r = RootRecord::open(&bytes, &vk, &k.root_body_key()).unwrap();
        assert_eq!(r.version, 4);
        assert_eq!(r.snapshots.len(), 1);
        assert_eq!(r.snapshots[0].files, 3);
    }

    #[test]
    fn forged_altered_and_foreign_records_are_refused() {
        let k = keys();
        let vk = k.root_signing_key().verifying_key();
        let good = record(2);
        // Any flipped byte is caught.
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            assert!(RootRecord::open(&bad, &vk, &k.root_body_key()).is_err(), "flip at {i} accepted");
        }
        // A record signed by another key, even one claiming this key, is refused.
        let other = MasterKey::from_bytes([6; 32]).derive();
        let foreign = RootRecord { version: 99, epoch: 0, closed: false, written_ms: 1, snapshots: vec![] }
            .seal(other.root_signing_key(), &other.root_body_key());
        assert_eq!(RootRecord::verified_version(&foreign, &vk), Err(RootError::WrongKey));
        let mut spoof = foreign.clone();
        spoof[1..33].copy_from_slice(vk.as_bytes());
        assert_eq!(RootRecord::verified_version(&spoof, &vk), Err(RootError::BadSignature));
        assert_eq!(RootRecord::verified_version(&good[..10], &vk), Err(RootError::Malformed));
    }

    #[test]
    fn newest_valid_record_wins_and_rollback_is_reported() {
        let vk = keys().root_signing_key().verifying_key();
        let other = MasterKey::from_bytes([8; 32]).derive();
        let forged = RootRecord { version: 50, epoch: 0, closed: false, written_ms: 1, snapshots: vec![] }
            .seal(other.root_signing_key(), &other.root_body_key());
        let served = vec![
            ("broker".to_string(), vec![record(1), record(2), record(3), forged, record(1)]),
            ("node a".to_string(), vec![record(3)]),
            ("node b".to_string(), vec![record(2)]),
        ];
        let c = choose_root(&served, &vk);
        assert_eq!(c.newest.as_ref().map(|n| n.0.version), Some(3));
        let rolled: Vec<_> = c.rolled_back.iter().map(|(s, v)| (s.as_str(), *v)).collect();
        assert_eq!(rolled, vec![("broker", 1), ("node b", 2)]);
        assert_eq!(c.refused.len(), 1);
    }

    /// A record in format 1 (no epoch, snapshot infos without one), as older versions sealed it.
    fn seal_v1(k: &crate::domain::keys::VaultKeys, version: u64, snapshots: &[SnapshotInfo]) -> Vec<u8> {
        let mut body = (snapshots.len() as u32).to_le_bytes().to_vec();
        for s in snapshots {
            let mut one = Vec::new();
            s.encode_into(&mut one);
            body.extend_from_slice(&one[..SNAPSHOT_INFO_V1_LEN]);
        }
        let mut out = vec![ROOT_V1];
        out.extend_from_slice(k.root_signing_key().verifying_key().as_bytes());
        out.extend_from_slice(&version.to_le_bytes());
        out.extend_from_slice(&5u64.to_le_bytes());
        out.extend_from_slice(&[9; 12]);
        out.extend_from_slice(&((body.len() + 16) as u32).to_le_bytes());
        let sealed = ChaCha20Poly1305::new(Key::from_slice(&k.root_body_key()))
            .encrypt(Nonce::from_slice(&[9; 12]), Payload { msg: &body, aad: &out })
            .unwrap();
        out.extend_from_slice(&sealed);
        let sig = k.root_signing_key().sign(&signed_bytes(&out));
        out.extend_from_slice(&sig.to_bytes());
        out
    }

    #[test]
    fn format_1_records_and_rows_still_decode_as_epoch_0() {
        let k = keys();
        let head = seal_blob(k.snapshot(), b"m", 1).unwrap().head_ref;
        let info = SnapshotInfo { id: 7, taken_ms: 70, head, files: 2, bytes: 3, epoch: 0 };
        let old = seal_v1(&k, 12, &[info]);
        let vk = k.root_signing_key().verifying_key();
        let r = RootRecord::open(&old, &vk, &k.root_body_key()).unwrap();
        assert_eq!(
            (r.version, r.epoch, r.closed, r.written_ms, r.snapshots.clone()),
            (12, 0, false, 5, vec![info])
        );
        assert_eq!(
            RootRecord::check_filed(&old, &root_locator(&vk)),
            Ok(RootOrder { epoch: 0, version: 12 })
        );
        // A format 1 manifest row.
        let mut row = vec![1u8];
        let mut one = Vec::new();
        info.encode_into(&mut one);
        row.extend_from_slice(&one[..SNAPSHOT_INFO_V1_LEN]);
        row.extend_from_slice(&0u32.to_le_bytes());
        row.extend_from_slice(&1u32.to_le_bytes());
        row.extend_from_slice(&[4; 32]);
        let back = BlobRow::decode(&row).unwrap();
        assert_eq!((back.info, back.pins, back.scope), (info, vec![Addr([4; 32])], PinScope::Pieces));
    }

    #[test]
    fn a_later_epoch_wins_over_a_higher_version_and_closed_lineages_are_listed() {
        let k = keys();
        let vk = k.root_signing_key().verifying_key();
        let seal = |version, epoch, closed| {
            RootRecord { version, epoch, closed, written_ms: 1, snapshots: vec![] }
                .seal(k.root_signing_key(), &k.root_body_key())
        };
        let old = seal_v1(&k, 40, &[]);
        // The first writer (epoch 1) reached version 30; the second (epoch 2) is at version 5;
        // the first, fenced, published its closed record at version 31.
        let served = vec![
            ("the broker".to_string(), vec![old, seal(30, 1, false), seal(5, 2, false), seal(31, 1, true)]),
            ("node a".to_string(), vec![seal(5, 2, false)]),
            ("node b".to_string(), vec![seal(31, 1, true)]),
        ];
        let c = choose_root(&served, &vk);
        assert_eq!(c.newest.as_ref().map(|n| n.0), Some(RootOrder { epoch: 2, version: 5 }));
        assert!(c.rolled_back.is_empty(), "a closed lineage is not a rollback: {:?}", c.rolled_back);
        let closed: Vec<RootOrder> = c.closed.iter().map(|c| c.0).collect();
        assert_eq!(closed, vec![RootOrder { epoch: 1, version: 31 }]);
        let r = RootRecord::open(&c.closed[0].1, &vk, &k.root_body_key()).unwrap();
        assert!(r.closed && r.epoch == 1);
    }

    #[test]
    fn retention_keeps_recent_and_one_per_day() {
        let day = 86_400_000u64;
        // 10 days, 6 snapshots a day.
        let snaps: Vec<(u64, u64)> = (0..60).map(|i| (i, (i / 6) * day + (i % 6) * 3_600_000)).collect();
        let keep = retain(&snaps, Retention { last: 4, daily: 3 });
        // The newest 4, plus the newest of days 9 (already in), 8 and 7.
        assert_eq!(keep.into_iter().collect::<Vec<_>>(), vec![47, 53, 56, 57, 58, 59]);
        assert_eq!(retain(&snaps, Retention { last: 0, daily: 0 }).len(), 1);
        assert!(retain(&[], Retention::default()).is_empty());
    }

    #[test]
    fn blob_row_round_trip() {
        let k = keys();
        let s = seal_blob(k.snapshot(), b"x", 1).unwrap();
        let info = SnapshotInfo { id: 3, taken_ms: 9, head: s.head_ref, files: 1, bytes: 1, epoch: 0 };
        let row = BlobRow { info, pins: s.addrs(), scope: PinScope::Pieces, path: b"/photos".to_vec() };
        assert_eq!(BlobRow::decode(&row.encode()), Some(row.clone()));
        let adopted = BlobRow { scope: PinScope::Named, path: Vec::new(), ..row };
        assert_eq!(BlobRow::decode(&adopted.encode()), Some(adopted));
    }

    proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let k = keys();
            let vk = k.root_signing_key().verifying_key();
            let _ = RootRecord::open(&bytes, &vk, &k.root_body_key());
            let _ = SnapshotInfo::decode(&bytes);
            let _ = PieceRef::decode(&bytes);
            let _ = BlobRow::decode(&bytes);
        }
    }
}
