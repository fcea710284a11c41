//! Indexed blob heads (head format 2): the list of a large blob's piece references is itself
//! cut into content-defined *index pieces*, and the head lists those. Two snapshots that share
//! most pieces then share most index pieces too, so a snapshot after a small change stores a
//! small head and a few index pieces instead of a head as long as the whole piece list
//! (100 bytes a piece). Blobs of at most [`FLAT_MAX`] pieces keep the flat head (format 1).
//!
//! The cut is at reference granularity: an index piece ends after a reference whose addr's
//! first byte is a multiple of [`CUT_EVERY`] (addrs are BLAKE3 outputs, so about one in
//! `CUT_EVERY`), or after [`MAX_REFS`] references. A changed piece thus changes the one index
//! piece that lists it, and the cuts around it stay where they were.

use super::blob::{PieceRef, PIECE_REF_LEN};
use std::ops::Range;

/// Blobs of up to this many pieces have a flat head (format 1).
pub const FLAT_MAX: usize = 32;
/// About one reference in this many ends an index piece (64 → 6.4 KB index pieces).
pub const CUT_EVERY: u8 = 64;
/// Most references in one index piece.
pub const MAX_REFS: usize = 256;

/// The index pieces' ranges over `refs`: contiguous, covering it exactly.
pub fn index_ranges(refs: &[PieceRef]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, r) in refs.iter().enumerate() {
        if r.addr.0[0] % CUT_EVERY == 0 || i + 1 - start == MAX_REFS {
            out.push(start..i + 1);
            start = i + 1;
        }
    }
    if start < refs.len() {
        out.push(start..refs.len());
    }
    out
}

/// The plaintext of one index piece: its references, encoded back to back.
pub fn encode_refs(refs: &[PieceRef]) -> Vec<u8> {
    let mut out = Vec::with_capacity(refs.len() * PIECE_REF_LEN);
    refs.iter().for_each(|r| r.encode_into(&mut out));
    out
}

/// Decodes an index piece's plaintext: `None` unless it holds 1 to [`MAX_REFS`] whole references.
pub fn decode_refs(plain: &[u8]) -> Option<Vec<PieceRef>> {
    let n = plain.len() / PIECE_REF_LEN;
    if plain.is_empty() || plain.len() % PIECE_REF_LEN != 0 || n > MAX_REFS {
        return None;
    }
    plain.chunks_exact(PIECE_REF_LEN).map(PieceRef::decode).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::{Addr, ChunkId};

    fn piece(i: u32) -> PieceRef {
        let addr = Addr(*blake3::hash(&i.to_le_bytes()).as_bytes());
        PieceRef { id: ChunkId([1; 32]), addr, len: 100 + i, seed: [2; 32] }
    }

    #[test]
    fn ranges_cover_the_list_and_a_change_moves_no_other_cut() {
        let refs: Vec<PieceRef> = (0..5_000).map(piece).collect();
        let ranges = index_ranges(&refs);
        assert_eq!(ranges.first().map(|r| r.start), Some(0));
        assert_eq!(ranges.last().map(|r| r.end), Some(refs.len()));
        assert!(ranges.windows(2).all(|w| w[0].end == w[1].start));
        assert!(ranges.iter().all(|r| !r.is_empty() && r.len() <= MAX_REFS));
        assert!((40..160).contains(&ranges.len()), "{} index pieces for 5,000 refs", ranges.len());
        // Replace one reference in the middle: only the index piece holding it differs.
        let mut changed = refs.clone();
        changed[2_500] = piece(1_000_000);
        let encode = |refs: &[PieceRef]| -> Vec<Vec<u8>> {
            index_ranges(refs).into_iter().map(|r| encode_refs(&refs[r])).collect()
        };
        let (before, after) = (encode(&refs), encode(&changed));
        let new = after.iter().filter(|p| !before.contains(p)).count();
        assert!(new <= 2, "{new} index pieces changed for one reference");
    }

    #[test]
    fn decoding_refuses_partial_empty_and_oversized_pieces() {
        let refs: Vec<PieceRef> = (0..3).map(piece).collect();
        let plain = encode_refs(&refs);
        assert_eq!(decode_refs(&plain), Some(refs));
        assert_eq!(decode_refs(&plain[..plain.len() - 1]), None);
        assert_eq!(decode_refs(&[]), None);
        let many: Vec<PieceRef> = (0..MAX_REFS as u32 + 1).map(piece).collect();
        assert_eq!(decode_refs(&encode_refs(&many)), None);
    }
}
