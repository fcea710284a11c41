//! Blobs (docs/DESIGN.md §8, PROTOCOL.md §4.11): a byte string stored in the fabric like file
//! data, split by FastCDC into pieces, each sealed deterministically (so consecutive snapshots
//! share most pieces), plus a *head* piece listing the pieces, or, for a large blob, listing index
//! pieces that list them (`crate::domain::blob_index`). A `PieceRef` names a piece and carries the
//! seed of its proof secret, so whoever holds a blob's head can fetch and open exactly that blob.

use crate::domain::blob_index::{decode_refs, encode_refs, index_ranges, FLAT_MAX};
use crate::domain::chunker::{blob_ranges, MAX_CHUNK};
use crate::domain::ids::{Addr, ChunkId};
use crate::domain::keys::ChunkKeys;
use crate::domain::proof::ProofSecret;
use crate::domain::seal::{SealError, SealedChunk};
use std::collections::BTreeSet;

/// Encoded length of a `PieceRef`.
pub const PIECE_REF_LEN: usize = 32 + 32 + 4 + 32;
/// Most references one head lists (it must fit in one chunk).
pub const MAX_PIECES: usize = (MAX_CHUNK - 24) / PIECE_REF_LEN;
/// Most pieces one blob may have (an indexed head lists index pieces of up to 256 each).
pub const MAX_BLOB_PIECES: usize = 1 << 20;

/// A flat head lists the pieces; an indexed head lists index pieces that list them
/// (`crate::domain::blob_index`).
const HEAD_FLAT: u8 = 1;
const HEAD_INDEXED: u8 = 2;

/// One piece of a blob: its chunk id, addr, ciphertext length and proof-secret seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PieceRef {
    /// Keyed hash of the piece's plaintext (derives its content key).
    pub id: ChunkId,
    /// `blake3(ciphertext)`.
    pub addr: Addr,
    /// Ciphertext length.
    pub len: u32,
    /// Seed of the piece's proof secret.
    pub seed: [u8; 32],
}

impl PieceRef {
    /// The reference of a sealed piece.
    pub fn of(keys: &ChunkKeys, s: &SealedChunk) -> PieceRef {
        PieceRef { id: s.id, addr: s.addr, len: s.ciphertext.len() as u32, seed: *keys.proof_seed(&s.addr) }
    }

    /// The proof secret that lets its holder fetch this piece.
    pub fn secret(&self) -> ProofSecret {
        ProofSecret::from_seed(&self.seed)
    }

    /// Appends the encoding.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.id.0);
        out.extend_from_slice(&self.addr.0);
        out.extend_from_slice(&self.len.to_le_bytes());
        out.extend_from_slice(&self.seed);
    }

    /// Decodes one reference from exactly `PIECE_REF_LEN` bytes.
    pub fn decode(b: &[u8]) -> Option<PieceRef> {
        if b.len() != PIECE_REF_LEN {
            return None;
        }
        Some(PieceRef {
            id: ChunkId(b[..32].try_into().ok()?),
            addr: Addr(b[32..64].try_into().ok()?),
            len: u32::from_le_bytes(b[64..68].try_into().ok()?),
            seed: b[68..100].try_into().ok()?,
        })
    }
}

/// Why a blob, a root record or a capability could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BlobError {
    /// A piece failed verification or decryption.
    #[error("{0}")]
    Seal(#[from] SealError),
    /// The bytes do not parse.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// The payload is larger than one blob may be.
    #[error("the manifest is too large for one snapshot ({0} pieces, at most {MAX_BLOB_PIECES})")]
    TooLarge(usize),
}

/// A blob sealed and ready to store: its head, its index pieces and its pieces.
pub struct SealedBlob {
    /// The head piece (lists the pieces, or the index pieces).
    pub head: SealedChunk,
    /// Reference to the head: all a reader needs besides the keys.
    pub head_ref: PieceRef,
    /// The index pieces of an indexed head, in order (empty for a flat head).
    pub index: Vec<SealedChunk>,
    /// The payload pieces, in order (a repeated piece appears once per occurrence).
    pub pieces: Vec<SealedChunk>,
}

impl SealedBlob {
    /// Everything the blob stores: the head, the index pieces, the payload pieces.
    pub fn stored(&self) -> impl Iterator<Item = &SealedChunk> {
        std::iter::once(&self.head).chain(&self.index).chain(&self.pieces)
    }

    /// Every distinct addr the blob occupies, head first.
    pub fn addrs(&self) -> Vec<Addr> {
        let mut seen = BTreeSet::new();
        self.stored().filter(|p| seen.insert(p.addr)).map(|p| p.addr).collect()
    }
}

/// Splits `payload` into content-defined pieces and seals them and their head with `keys`;
/// a blob of more than [`FLAT_MAX`] pieces gets an indexed head.
pub fn seal_blob(keys: &ChunkKeys, payload: &[u8], chunker_seed: u64) -> Result<SealedBlob, BlobError> {
    let pieces: Vec<SealedChunk> = blob_ranges(payload, chunker_seed, MAX_BLOB_PIECES)
        .into_iter()
        .map(|r| keys.seal(&payload[r]))
        .collect();
    if pieces.len() > MAX_BLOB_PIECES {
        return Err(BlobError::TooLarge(pieces.len()));
    }
    let refs: Vec<PieceRef> = pieces.iter().map(|p| PieceRef::of(keys, p)).collect();
    let (version, listed, index) = if refs.len() <= FLAT_MAX {
        (HEAD_FLAT, refs, Vec::new())
    } else {
        let index: Vec<SealedChunk> =
            index_ranges(&refs).into_iter().map(|r| keys.seal(&encode_refs(&refs[r]))).collect();
        (HEAD_INDEXED, index.iter().map(|p| PieceRef::of(keys, p)).collect(), index)
    };
    if listed.len() > MAX_PIECES {
        return Err(BlobError::TooLarge(pieces.len()));
    }
    let mut head = Vec::with_capacity(17 + listed.len() * PIECE_REF_LEN);
    head.push(version);
    head.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    head.extend_from_slice(&(pieces.len() as u32).to_le_bytes());
    if version == HEAD_INDEXED {
        head.extend_from_slice(&(listed.len() as u32).to_le_bytes());
    }
    listed.iter().for_each(|r| r.encode_into(&mut head));
    let head = keys.seal(&head);
    let head_ref = PieceRef::of(keys, &head);
    Ok(SealedBlob { head, head_ref, index, pieces })
}

/// A blob's head, opened: the payload length and its pieces. An indexed head lists its index
/// pieces first; [`open_index`] then fills in the pieces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobHead {
    /// Bytes of payload.
    pub len: u64,
    /// Its pieces, in order (empty until [`open_index`] for an indexed head).
    pub pieces: Vec<PieceRef>,
    /// The index pieces of an indexed head, in order (empty for a flat head).
    pub index: Vec<PieceRef>,
    /// How many pieces the head says there are.
    count: usize,
}

impl BlobHead {
    /// The references of everything the blob stores besides its head: index pieces, pieces.
    pub fn stored(&self) -> impl Iterator<Item = &PieceRef> {
        self.index.iter().chain(&self.pieces)
    }

    /// The pieces' ciphertexts add up to the payload plus a tag each, and there are as many as
    /// the head says.
    fn consistent(&self) -> bool {
        self.pieces.len() == self.count
            && self.pieces.iter().map(|p| p.len as u64).sum::<u64>() == self.len + 16 * self.count as u64
    }
}

/// Verifies and opens a head fetched for `head`.
pub fn open_head(keys: &ChunkKeys, head: &PieceRef, ciphertext: &[u8]) -> Result<BlobHead, BlobError> {
    let plain = keys.open(&head.id, &head.addr, ciphertext)?;
    let bad = || BlobError::Malformed("snapshot or share head");
    let word =
        |at: usize| -> Option<u32> { Some(u32::from_le_bytes(plain.get(at..at + 4)?.try_into().ok()?)) };
    let (version, len) = match (plain.first(), plain.get(1..9)) {
        (Some(v), Some(len)) => (*v, u64::from_le_bytes(len.try_into().map_err(|_| bad())?)),
        _ => return Err(bad()),
    };
    let count = word(9).ok_or_else(bad)? as usize;
    let (listed, at) = match version {
        HEAD_FLAT => (count, 13),
        HEAD_INDEXED => (word(13).ok_or_else(bad)? as usize, 17),
        _ => return Err(bad()),
    };
    let body = &plain[at..];
    if count > MAX_BLOB_PIECES || listed > MAX_PIECES || body.len() != listed * PIECE_REF_LEN {
        return Err(bad());
    }
    let refs: Option<Vec<PieceRef>> = body.chunks_exact(PIECE_REF_LEN).map(PieceRef::decode).collect();
    let refs = refs.ok_or_else(bad)?;
    if version == HEAD_INDEXED {
        if count <= FLAT_MAX || refs.is_empty() {
            return Err(bad());
        }
        return Ok(BlobHead { len, pieces: Vec::new(), index: refs, count });
    }
    let head = BlobHead { len, pieces: refs, index: Vec::new(), count };
    if !head.consistent() {
        return Err(bad());
    }
    Ok(head)
}

/// Fills in the pieces of an indexed head from its index pieces' ciphertexts (in the order
/// `head.index` lists them), verifying each.
pub fn open_index(keys: &ChunkKeys, head: &mut BlobHead, ciphertexts: &[&[u8]]) -> Result<(), BlobError> {
    let bad = || BlobError::Malformed("snapshot or share index");
    if ciphertexts.len() != head.index.len() {
        return Err(bad());
    }
    let mut pieces = Vec::with_capacity(head.count);
    for (r, ct) in head.index.iter().zip(ciphertexts) {
        pieces.extend(decode_refs(&keys.open(&r.id, &r.addr, ct)?).ok_or_else(bad)?);
        if pieces.len() > head.count {
            return Err(bad());
        }
    }
    head.pieces = pieces;
    if !head.consistent() {
        head.pieces.clear();
        return Err(bad());
    }
    Ok(())
}

/// Verifies and opens one payload piece.
pub fn open_piece(keys: &ChunkKeys, piece: &PieceRef, ciphertext: &[u8]) -> Result<Vec<u8>, BlobError> {
    Ok(keys.open(&piece.id, &piece.addr, ciphertext)?)
}
