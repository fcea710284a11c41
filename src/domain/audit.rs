//! Proof of storage (docs/DESIGN.md §5 Audit): selected 1 KiB leaves of a ciphertext with BLAKE3 Merkle paths, checked against addr.
//!
//! A chunk's network address is `addr = blake3::hash(ciphertext)`. BLAKE3 is itself a
//! Merkle tree over 1 KiB chunks, so `addr` already commits to every 1 KiB leaf. To audit
//! a storage node, the owner sends a fresh random 32-byte seed; both sides derive the same
//! leaf indices with [`select_leaves`]; the node answers with [`prove_leaves`] (each leaf
//! plus the chaining values of its siblings on the way up); the owner, who keeps only
//! `addr` and the ciphertext length, checks the answer with [`verify_audit`].
//!
//! # Tree shape (BLAKE3 rules)
//!
//! * The input is split into 1 KiB chunks (the leaves); only the last may be shorter.
//! * A node covering more than one chunk has a left subtree holding the largest
//!   power-of-two number of chunks strictly less than its total
//!   ([`left_subtree_len`]); the right subtree holds the rest.
//! * A single-chunk input (0..=1024 bytes, including the empty input) is the root itself:
//!   the proof is the whole data with an empty path and verification is
//!   `blake3::hash(leaf) == addr`.
//! * Chunks and parents are finalized as non-root chaining values, except the root, which
//!   carries the ROOT flag. Each chunk is hashed with its chunk counter (its byte offset),
//!   so a leaf cannot be replayed at another index.
//!
//! The tree shape depends only on `total_len`, so the owner knows exactly how long every
//! leaf and every path must be and rejects anything else before hashing.
//!
//! The owner must use its own stored `total_len`: a single leaf proof constrains the
//! length only through that leaf's size and path shape (a proof of leaf 0 of a 1025-byte
//! ciphertext also fits 1026 bytes). [`verify_audit`] additionally binds the length into
//! the leaf selection, so a whole answer computed for another length is rejected.
//!
//! # Wire sizes (for the wire module's decoder)
//!
//! * `index`: `u64`, must be `< leaf_count(total_len)`.
//! * `leaf`: at most [`LEAF_SIZE`] = 1024 bytes (exactly 1024 except the last leaf; the
//!   empty input has one empty leaf).
//! * `path`: at most [`max_path_len()`] = 64 entries of 32 bytes (a `u64` length needs at
//!   most 54; a 1 MiB chunk needs 10).
//! * A whole answer holds at most [`MAX_LEAVES_PER_AUDIT`] = 16 proofs.

use blake3::hazmat::{merge_subtrees_non_root, merge_subtrees_root, ChainingValue, HasherExt, Mode};
use blake3::Hasher;

/// Size of one BLAKE3 chunk, the leaf unit of an audit.
pub const LEAF_SIZE: usize = 1024;

/// Upper bound on the number of leaves one audit asks for (and one answer may carry).
pub const MAX_LEAVES_PER_AUDIT: usize = 16;

/// [`LEAF_SIZE`] as `u64`, for offset arithmetic.
const LEAF: u64 = LEAF_SIZE as u64;

/// Bound on path entries accepted by decoders; real paths are at most 54 long.
const MAX_PATH_LEN: usize = 64;

/// BLAKE3 `derive_key` context for leaf selection.
const SELECTION_CONTEXT: &str = "quloud v1 audit leaf selection";

/// Why an audit request could not be served or an audit answer was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuditError {
    /// The leaf index does not exist in a ciphertext of this length.
    #[error("leaf index {index} out of range: the ciphertext has {leaf_count} leaves")]
    IndexOutOfRange {
        /// Offending index.
        index: u64,
        /// Number of leaves implied by the ciphertext length.
        leaf_count: u64,
    },
    /// The leaf does not have the length its index implies.
    #[error("leaf {index} has {actual} bytes, expected {expected}")]
    LeafLength {
        /// Leaf index.
        index: u64,
        /// Length implied by the index and the ciphertext length.
        expected: usize,
        /// Length received.
        actual: usize,
    },
    /// The Merkle path does not have the length the tree shape implies.
    #[error("path for leaf {index} has {actual} entries, expected {expected}")]
    PathLength {
        /// Leaf index.
        index: u64,
        /// Depth of the leaf in the BLAKE3 tree.
        expected: usize,
        /// Entries received.
        actual: usize,
    },
    /// The leaf and path hash to a root other than the chunk address.
    #[error("leaf {index} and its path do not hash to the chunk address")]
    RootMismatch {
        /// Leaf index.
        index: u64,
    },
    /// The answer carries a different number of proofs than the seed selects.
    #[error("audit answer has {actual} proofs, expected {expected}")]
    ProofCount {
        /// Number of leaves selected by the seed.
        expected: usize,
        /// Number of proofs received.
        actual: usize,
    },
    /// A proof is for a different leaf than the seed selects at that position.
    #[error("proof #{position} is for leaf {actual}, but the seed selects leaf {expected}")]
    UnexpectedIndex {
        /// Position in the answer (0-based).
        position: usize,
        /// Index selected by the seed.
        expected: u64,
        /// Index received.
        actual: u64,
    },
    /// More leaves were requested than one audit may cover.
    #[error("{requested} leaves requested, at most {max} per audit")]
    TooManyLeaves {
        /// Number of leaves requested.
        requested: usize,
        /// [`MAX_LEAVES_PER_AUDIT`].
        max: usize,
    },
    /// An audit of zero leaves proves nothing and is refused.
    #[error("an audit must ask for at least one leaf")]
    NoLeavesRequested,
}

/// A selected leaf with its Merkle path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafProof {
    /// 0-based leaf (chunk) index.
    pub index: u64,
    /// The leaf bytes: at most [`LEAF_SIZE`], exactly what the index implies.
    pub leaf: Vec<u8>,
    /// Sibling chaining values from the leaf up to the root's children (bottom-up);
    /// empty for a single-leaf ciphertext. At most [`max_path_len()`] entries.
    pub path: Vec<[u8; 32]>,
}

/// Bound on path entries a decoder should accept (a `u64` length needs at most 54).
pub const fn max_path_len() -> usize {
    MAX_PATH_LEN
}

/// Number of 1 KiB leaves of a ciphertext of `total_len` bytes; at least 1, since the
/// empty input has one empty leaf.
pub fn leaf_count(total_len: u64) -> u64 {
    total_len.div_ceil(LEAF).max(1)
}

/// Deterministically selects the leaves an audit with `seed` asks for.
///
/// Returns `min(k, MAX_LEAVES_PER_AUDIT, leaf_count(total_len))` distinct indices in
/// ascending order, drawn uniformly (rejection sampling) from the BLAKE3 `derive_key`
/// stream keyed by context `"quloud v1 audit leaf selection"` over `seed || total_len`.
pub fn select_leaves(seed: &[u8; 32], total_len: u64, k: usize) -> Vec<u64> {
    let count = leaf_count(total_len);
    let want = k.min(MAX_LEAVES_PER_AUDIT).min(usize::try_from(count).unwrap_or(usize::MAX));
    let mut hasher = Hasher::new_derive_key(SELECTION_CONTEXT);
    hasher.update(seed).update(&total_len.to_le_bytes());
    let mut stream = hasher.finalize_xof();
    // 2^64 mod count: rejecting draws below it leaves a multiple of `count` values.
    let reject_below = count.wrapping_neg() % count;
    let mut picked = Vec::with_capacity(want);
    let mut block = [0u8; 64];
    while picked.len() < want {
        stream.fill(&mut block);
        for word in block.chunks_exact(8) {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(word);
            let draw = u64::from_le_bytes(bytes);
            let index = draw % count;
            if draw >= reject_below && picked.len() < want && !picked.contains(&index) {
                picked.push(index);
            }
        }
    }
    picked.sort_unstable();
    picked
}

/// Node side: builds proofs for `indices` (any order, duplicates allowed) over `data`.
///
/// Proofs come back in the order of `indices`. The input is hashed about once: subtrees
/// without a selected leaf are hashed whole, and parents on the selected paths are merged
/// from their children's chaining values.
///
/// # Errors
///
/// [`AuditError::TooManyLeaves`] for more than [`MAX_LEAVES_PER_AUDIT`] indices,
/// [`AuditError::IndexOutOfRange`] for an index `>= leaf_count(data.len())`.
pub fn prove_leaves(data: &[u8], indices: &[u64]) -> Result<Vec<LeafProof>, AuditError> {
    let proofs = prove_with(&mut Whole(data), data.len() as u64, indices)?;
    Ok(proofs.unwrap_or_else(|| unreachable!("in-memory data always yields every leaf")))
}

/// Segment size for [`segment_cvs`]: 16 BLAKE3 chunks. Every 16 KiB-aligned segment of a
/// ciphertext longer than one segment (and its shorter last segment) is a subtree of its BLAKE3
/// tree, so a prover holding the segments' chaining values needs only the segments that contain
/// the selected leaves.
pub const SEGMENT: usize = 16 * LEAF_SIZE;

/// The chaining value of every [`SEGMENT`] of `data`, for [`prove_leaves_from_segments`];
/// empty when `data` fits in one segment (proving from the whole data is as cheap then).
pub fn segment_cvs(data: &[u8]) -> Vec<[u8; 32]> {
    if data.len() <= SEGMENT {
        return Vec::new();
    }
    data.chunks(SEGMENT)
        .enumerate()
        .map(|(i, seg)| Hasher::new().set_input_offset((i * SEGMENT) as u64).update(seg).finalize_non_root())
        .collect()
}

/// A ciphertext checked against its addr by one BLAKE3 pass that also kept its segments'
/// chaining values (as [`segment_cvs`] returns them), so a store need not hash it again.
#[derive(Debug)]
pub struct Verified<'a> {
    addr: [u8; 32],
    bytes: &'a [u8],
    cvs: Vec<[u8; 32]>,
}

impl<'a> Verified<'a> {
    /// `Some` exactly when `blake3::hash(bytes) == addr`.
    pub fn check(addr: &[u8; 32], bytes: &'a [u8]) -> Option<Self> {
        let cvs = segment_cvs(bytes);
        let root =
            if cvs.is_empty() { blake3::hash(bytes) } else { root_of_segments(bytes.len() as u64, &cvs) };
        (root.as_bytes() == addr).then_some(Verified { addr: *addr, bytes, cvs })
    }

    /// The addr the bytes hash to.
    pub fn addr(&self) -> &[u8; 32] {
        &self.addr
    }

    /// The verified bytes.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Their segments' chaining values (empty for a single segment).
    pub fn cvs(&self) -> &[[u8; 32]] {
        &self.cvs
    }
}

/// The BLAKE3 root of `total_len > SEGMENT` bytes from their segments' chaining values.
fn root_of_segments(total_len: u64, cvs: &[[u8; 32]]) -> blake3::Hash {
    // Subtrees longer than a segment split at a segment boundary; a segment-aligned subtree no
    // longer than a segment is one segment (or the last, shorter one).
    fn cv(cvs: &[[u8; 32]], start: u64, len: u64) -> ChainingValue {
        if len <= SEGMENT as u64 {
            return cvs[(start / SEGMENT as u64) as usize];
        }
        let left = left_subtree_len(len);
        merge_subtrees_non_root(&cv(cvs, start, left), &cv(cvs, start + left, len - left), Mode::Hash)
    }
    let left = left_subtree_len(total_len);
    merge_subtrees_root(&cv(cvs, 0, left), &cv(cvs, left, total_len - left), Mode::Hash)
}

/// Same answer as [`prove_leaves`] on the whole data, from the segments' chaining values (as
/// [`segment_cvs`] returned them) and `segment(i)`, which yields segment `i`'s bytes. Only the
/// segments holding selected leaves are read. `Ok(None)` when a segment cannot be read or the
/// chaining values do not fit `total_len`.
pub fn prove_leaves_from_segments(
    total_len: u64,
    cvs: &[[u8; 32]],
    segment: &mut dyn FnMut(u64) -> Option<Vec<u8>>,
    indices: &[u64],
) -> Result<Option<Vec<LeafProof>>, AuditError> {
    if total_len <= SEGMENT as u64 || cvs.len() as u64 != total_len.div_ceil(SEGMENT as u64) {
        return Ok(None);
    }
    prove_with(&mut Segments { total_len, cvs, segment, cache: Vec::new() }, total_len, indices)
}

/// Where a prover gets leaves and subtree chaining values.
trait Source {
    /// Bytes of leaf `index`.
    fn leaf(&mut self, index: u64) -> Option<Vec<u8>>;
    /// Chaining value of the subtree `start..start + len`.
    fn cv(&mut self, start: u64, len: u64) -> Option<ChainingValue>;
}

/// The whole ciphertext in memory.
struct Whole<'a>(&'a [u8]);

impl Source for Whole<'_> {
    fn leaf(&mut self, index: u64) -> Option<Vec<u8>> {
        Some(leaf_bytes(self.0, index).to_vec())
    }

    fn cv(&mut self, start: u64, len: u64) -> Option<ChainingValue> {
        Some(subtree_cv(self.0, start, len))
    }
}

/// Cached segment chaining values plus the few segments read on demand.
struct Segments<'a> {
    total_len: u64,
    cvs: &'a [[u8; 32]],
    segment: &'a mut dyn FnMut(u64) -> Option<Vec<u8>>,
    cache: Vec<(u64, Vec<u8>)>,
}

impl Segments<'_> {
    /// The bytes `start..start + len`, which lie inside one segment.
    fn bytes(&mut self, start: u64, len: u64) -> Option<Vec<u8>> {
        let seg = start / SEGMENT as u64;
        if !self.cache.iter().any(|(i, _)| *i == seg) {
            let data = (self.segment)(seg)?;
            let want = (self.total_len - seg * SEGMENT as u64).min(SEGMENT as u64);
            if data.len() as u64 != want {
                return None;
            }
            self.cache.push((seg, data));
        }
        let (_, data) = self.cache.iter().find(|(i, _)| *i == seg)?;
        let from = (start - seg * SEGMENT as u64) as usize;
        data.get(from..from + len as usize).map(<[u8]>::to_vec)
    }
}

impl Source for Segments<'_> {
    fn leaf(&mut self, index: u64) -> Option<Vec<u8>> {
        let start = index * LEAF;
        self.bytes(start, (self.total_len - start).min(LEAF))
    }

    fn cv(&mut self, start: u64, len: u64) -> Option<ChainingValue> {
        let seg = SEGMENT as u64;
        if start % seg == 0 && (len == seg || (len < seg && start + len == self.total_len)) {
            return self.cvs.get((start / seg) as usize).copied();
        }
        if len > seg {
            // Subtrees larger than a segment are segment-aligned unions of segments.
            let left_len = left_subtree_len(len);
            let left = self.cv(start, left_len)?;
            let right = self.cv(start + left_len, len - left_len)?;
            return Some(merge_subtrees_non_root(&left, &right, Mode::Hash));
        }
        // Smaller subtrees never straddle a segment boundary.
        let bytes = self.bytes(start, len)?;
        Some(Hasher::new().set_input_offset(start).update(&bytes).finalize_non_root())
    }
}

/// The prover behind [`prove_leaves`] and [`prove_leaves_from_segments`].
fn prove_with(
    src: &mut dyn Source,
    total_len: u64,
    indices: &[u64],
) -> Result<Option<Vec<LeafProof>>, AuditError> {
    if indices.len() > MAX_LEAVES_PER_AUDIT {
        return Err(AuditError::TooManyLeaves { requested: indices.len(), max: MAX_LEAVES_PER_AUDIT });
    }
    let count = leaf_count(total_len);
    if let Some(&index) = indices.iter().find(|&&index| index >= count) {
        return Err(AuditError::IndexOutOfRange { index, leaf_count: count });
    }
    let mut unique = indices.to_vec();
    unique.sort_unstable();
    unique.dedup();
    let mut proofs = Vec::with_capacity(unique.len());
    for &index in &unique {
        let Some(leaf) = src.leaf(index) else { return Ok(None) };
        proofs.push(LeafProof {
            index,
            leaf,
            path: Vec::with_capacity(PathShape::of(total_len, index).depth),
        });
    }
    if count > 1 && prove_children(src, 0, total_len, &unique, &mut proofs).is_none() {
        return Ok(None);
    }
    if unique.as_slice() == indices {
        return Ok(Some(proofs));
    }
    Ok(Some(indices.iter().map(|&index| proofs[unique.partition_point(|&u| u < index)].clone()).collect()))
}

/// Owner side: checks one proof against `addr` for a ciphertext of `total_len` bytes.
///
/// Rejects, before any hashing, an index out of range, a leaf whose length differs from
/// what the index implies, and a path whose length differs from the leaf's depth; then
/// recomputes the root (ROOT flag at the top only) and compares it with `addr`.
///
/// # Errors
///
/// [`AuditError::IndexOutOfRange`], [`AuditError::LeafLength`],
/// [`AuditError::PathLength`] or [`AuditError::RootMismatch`].
pub fn verify_leaf(addr: &[u8; 32], total_len: u64, proof: &LeafProof) -> Result<(), AuditError> {
    let index = proof.index;
    let count = leaf_count(total_len);
    if index >= count {
        return Err(AuditError::IndexOutOfRange { index, leaf_count: count });
    }
    let expected = expected_leaf_len(total_len, index);
    if proof.leaf.len() != expected {
        return Err(AuditError::LeafLength { index, expected, actual: proof.leaf.len() });
    }
    let shape = PathShape::of(total_len, index);
    if proof.path.len() != shape.depth {
        return Err(AuditError::PathLength { index, expected: shape.depth, actual: proof.path.len() });
    }
    let root = if count == 1 {
        Some(blake3::hash(&proof.leaf))
    } else {
        shape.climb(chunk_cv(index * LEAF, &proof.leaf), &proof.path)
    };
    match root {
        Some(root) if root == blake3::Hash::from_bytes(*addr) => Ok(()),
        _ => Err(AuditError::RootMismatch { index }),
    }
}

/// Owner side: checks a node's whole answer to the audit `seed` asking for `k` leaves.
///
/// `proofs` must be exactly one proof per index of `select_leaves(seed, total_len, k)`,
/// in the same (ascending) order, and each must pass [`verify_leaf`].
///
/// # Errors
///
/// [`AuditError::NoLeavesRequested`] for `k == 0`, [`AuditError::ProofCount`],
/// [`AuditError::UnexpectedIndex`], or the first failure of [`verify_leaf`].
pub fn verify_audit(
    addr: &[u8; 32],
    total_len: u64,
    seed: &[u8; 32],
    k: usize,
    proofs: &[LeafProof],
) -> Result<(), AuditError> {
    if k == 0 {
        return Err(AuditError::NoLeavesRequested);
    }
    let expected = select_leaves(seed, total_len, k);
    if proofs.len() != expected.len() {
        return Err(AuditError::ProofCount { expected: expected.len(), actual: proofs.len() });
    }
    for (position, (proof, &index)) in proofs.iter().zip(&expected).enumerate() {
        if proof.index != index {
            return Err(AuditError::UnexpectedIndex { position, expected: index, actual: proof.index });
        }
    }
    proofs.iter().try_for_each(|proof| verify_leaf(addr, total_len, proof))
}

/// Byte length of the left child of a node spanning `len > LEAF_SIZE` bytes: the largest
/// power-of-two number of chunks strictly less than its chunk count.
///
/// Same result as [`blake3::hazmat::left_subtree_len`], which computes `(len + 1) / 2`
/// and so overflows for `len == u64::MAX`; this form is total over `u64`, which matters
/// because `total_len` in [`verify_leaf`] is caller-supplied.
fn left_subtree_len(len: u64) -> u64 {
    debug_assert!(len > LEAF);
    let chunks_minus_one = len.div_ceil(LEAF) - 1; // >= 1
    (1u64 << chunks_minus_one.ilog2()) * LEAF
}

/// Length of leaf `index` (< leaf_count) in a ciphertext of `total_len` bytes.
fn expected_leaf_len(total_len: u64, index: u64) -> usize {
    // `index * LEAF < total_len` unless total_len == 0 (then index == 0): no overflow.
    (total_len - index * LEAF).min(LEAF) as usize
}

/// The bytes of leaf `index` (< leaf_count) of `data`.
fn leaf_bytes(data: &[u8], index: u64) -> &[u8] {
    let start = (index * LEAF) as usize;
    &data[start..data.len().min(start + LEAF_SIZE)]
}

/// Non-root chaining value of one chunk starting at byte `offset` (chunk counter).
fn chunk_cv(offset: u64, leaf: &[u8]) -> ChainingValue {
    Hasher::new().set_input_offset(offset).update(leaf).finalize_non_root()
}

/// Non-root chaining value of the subtree of `data` at `start..start + len` (bytes).
fn subtree_cv(data: &[u8], start: u64, len: u64) -> ChainingValue {
    Hasher::new()
        .set_input_offset(start)
        .update(&data[start as usize..(start + len) as usize])
        .finalize_non_root()
}

/// Chaining value of the subtree `start..start + len`, appending sibling chaining values
/// to the proofs of the selected leaves `indices` (sorted, unique) inside it.
fn prove_node(
    src: &mut dyn Source,
    start: u64,
    len: u64,
    indices: &[u64],
    proofs: &mut [LeafProof],
) -> Option<ChainingValue> {
    if indices.is_empty() || len <= LEAF {
        return src.cv(start, len);
    }
    let (left, right) = prove_children(src, start, len, indices, proofs)?;
    Some(merge_subtrees_non_root(&left, &right, Mode::Hash))
}

/// Chaining values of both children of the (multi-chunk) subtree `start..start + len`;
/// each selected leaf's proof gets the sibling at this level after deeper levels.
fn prove_children(
    src: &mut dyn Source,
    start: u64,
    len: u64,
    indices: &[u64],
    proofs: &mut [LeafProof],
) -> Option<(ChainingValue, ChainingValue)> {
    let left_len = left_subtree_len(len);
    let split = indices.partition_point(|&index| index * LEAF < start + left_len);
    let (left_indices, right_indices) = indices.split_at(split);
    let (left_proofs, right_proofs) = proofs.split_at_mut(split);
    let left = prove_node(src, start, left_len, left_indices, left_proofs)?;
    let right = prove_node(src, start + left_len, len - left_len, right_indices, right_proofs)?;
    left_proofs.iter_mut().for_each(|p| p.path.push(right));
    right_proofs.iter_mut().for_each(|p| p.path.push(left));
    Some((left, right))
}

/// Position of a leaf in the BLAKE3 tree: its depth and, per level, which side it is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PathShape {
    /// Number of parent nodes above the leaf (= path length); at most 54.
    depth: usize,
    /// Bit `d` set when, at level `d` below the root (0 = root's children), the leaf's
    /// ancestor is the left child.
    left_bits: u64,
}

impl PathShape {
    /// Walks from the root down to leaf `index` (< leaf_count) of a `total_len` tree.
    fn of(total_len: u64, index: u64) -> Self {
        let target = index * LEAF;
        let (mut start, mut len) = (0u64, total_len);
        let mut shape = PathShape { depth: 0, left_bits: 0 };
        while len > LEAF {
            let left_len = left_subtree_len(len);
            if target < start + left_len {
                shape.left_bits |= 1 << shape.depth;
                len = left_len;
            } else {
                start += left_len;
                len -= left_len;
            }
            shape.depth += 1;
        }
        shape
    }

    /// Root hash from the leaf's chaining value and its bottom-up path; `None` if the
    /// path is empty or its length does not match the depth.
    fn climb(&self, leaf_cv: ChainingValue, path: &[[u8; 32]]) -> Option<blake3::Hash> {
        if path.len() != self.depth {
            return None;
        }
        let (top, below) = path.split_last()?;
        let order = |level: usize, node: &ChainingValue, sibling: &ChainingValue| {
            if self.left_bits >> level & 1 == 1 {
                (*node, *sibling)
            } else {
                (*sibling, *node)
            }
        };
        let mut node = leaf_cv;
        for (step, sibling) in below.iter().enumerate() {
            let (left, right) = order(self.depth - 1 - step, &node, sibling);
            node = merge_subtrees_non_root(&left, &right, Mode::Hash);
        }
        let (left, right) = order(0, &node, top);
        Some(merge_subtrees_root(&left, &right, Mode::Hash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LENGTHS: [usize; 9] = [0, 1, 1023, 1024, 1025, 2048, 3 * 1024 + 7, 64 * 1024, 1024 * 1024 + 5];

    fn data_of(len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        blake3::Hasher::new().update(&(len as u64).to_le_bytes()).finalize_xof().fill(&mut out);
        out
    }

    fn addr_of(data: &[u8]) -> [u8; 32] {
        *blake3::hash(data).as_bytes()
    }

    fn prove_one(data: &[u8], index: u64) -> LeafProof {
        prove_leaves(data, &[index]).unwrap().remove(0)
    }

    /// Leaves worth tampering with: first, second, middle, second-to-last, last.
    fn sample_indices(total_len: u64) -> Vec<u64> {
        let n = leaf_count(total_len);
        let mut v = vec![0, 1, n / 2, n.saturating_sub(2), n - 1];
        v.retain(|&i| i < n);
        v.sort_unstable();
        v.dedup();
        v
    }

    #[test]
    fn leaf_count_matches_chunks() {
        assert_eq!(leaf_count(0), 1);
        assert_eq!(leaf_count(1), 1);
        assert_eq!(leaf_count(1024), 1);
        assert_eq!(leaf_count(1025), 2);
        assert_eq!(leaf_count(1024 * 1024 + 5), 1025);
        assert_eq!(leaf_count(u64::MAX), 1 << 54);
    }

    #[test]
    fn every_leaf_verifies_for_fixed_lengths() {
        for len in LENGTHS {
            let data = data_of(len);
            let addr = addr_of(&data);
            let all: Vec<u64> = (0..leaf_count(len as u64)).collect();
            for group in all.chunks(MAX_LEAVES_PER_AUDIT) {
                let proofs = prove_leaves(&data, group).unwrap();
                assert_eq!(proofs.len(), group.len());
                for (proof, &index) in proofs.iter().zip(group) {
                    assert_eq!(proof.index, index);
                    assert_eq!(proof.leaf, leaf_bytes(&data, index));
                    assert!(proof.path.len() <= max_path_len());
                    assert_eq!(verify_leaf(&addr, len as u64, proof), Ok(()), "len {len}");
                }
            }
        }
    }

    #[test]
    fn single_chunk_proof_is_whole_data() {
        for len in [0usize, 1, 1023, 1024] {
            let data = data_of(len);
            let proof = prove_one(&data, 0);
            assert_eq!(proof.leaf, data);
            assert!(proof.path.is_empty());
            assert_eq!(verify_leaf(&addr_of(&data), len as u64, &proof), Ok(()));
        }
        assert_eq!(addr_of(&[]), *blake3::hash(b"").as_bytes());
    }

    #[test]
    fn path_length_is_tree_depth() {
        assert_eq!(PathShape::of(1025, 0).depth, 1);
        assert_eq!(PathShape::of(3 * 1024 + 7, 0).depth, 2);
        assert_eq!(PathShape::of(3 * 1024 + 7, 3).depth, 2);
        assert_eq!(PathShape::of(3 * 1024, 2).depth, 1);
        assert_eq!(PathShape::of(1 << 20, 0).depth, 10);
        let deepest = PathShape::of(u64::MAX, 0).depth;
        assert_eq!(deepest, 54);
        assert!(deepest <= max_path_len());
        assert_eq!(PathShape::of(u64::MAX, leaf_count(u64::MAX) - 1).depth, 54);
        assert_eq!(PathShape::of((1 << 63) + 1, 1 << 53).depth, 1);
        assert_eq!(PathShape::of((1 << 63) + 1, 0).depth, 54);
    }

    #[test]
    fn left_subtree_len_matches_hazmat() {
        let mut lens = vec![1025u64, 2047, 2048, 2049, 1 << 40, (1 << 62) + 1];
        for shift in 10..63 {
            lens.extend([(1u64 << shift) - 1, 1 << shift, (1 << shift) + 1]);
        }
        for len in lens.into_iter().filter(|&l| l > LEAF) {
            assert_eq!(left_subtree_len(len), blake3::hazmat::left_subtree_len(len), "{len}");
        }
        assert_eq!(left_subtree_len(u64::MAX), 1 << 63);
    }

    #[test]
    fn flipped_leaf_byte_fails() {
        for len in LENGTHS.into_iter().filter(|&l| l > 0) {
            let data = data_of(len);
            for index in sample_indices(len as u64) {
                let mut proof = prove_one(&data, index);
                let last = proof.leaf.len() - 1;
                for at in [0, last] {
                    proof.leaf[at] ^= 1;
                    let res = verify_leaf(&addr_of(&data), len as u64, &proof);
                    assert_eq!(res, Err(AuditError::RootMismatch { index }));
                    proof.leaf[at] ^= 1;
                }
            }
        }
    }

    #[test]
    fn flipped_path_entry_fails() {
        for len in LENGTHS {
            let data = data_of(len);
            for index in sample_indices(len as u64) {
                let mut proof = prove_one(&data, index);
                for entry in 0..proof.path.len() {
                    proof.path[entry][entry % 32] ^= 0x80;
                    let res = verify_leaf(&addr_of(&data), len as u64, &proof);
                    assert_eq!(res, Err(AuditError::RootMismatch { index }));
                    proof.path[entry][entry % 32] ^= 0x80;
                }
                assert_eq!(verify_leaf(&addr_of(&data), len as u64, &proof), Ok(()));
            }
        }
    }

    #[test]
    fn truncated_or_extended_path_fails() {
        for len in LENGTHS {
            let data = data_of(len);
            let addr = addr_of(&data);
            for index in sample_indices(len as u64) {
                let proof = prove_one(&data, index);
                let depth = proof.path.len();
                let mut longer = proof.clone();
                longer.path.push([7; 32]);
                let expect = |actual| AuditError::PathLength { index, expected: depth, actual };
                assert_eq!(verify_leaf(&addr, len as u64, &longer), Err(expect(depth + 1)));
                let mut front = proof.clone();
                front.path.insert(0, [7; 32]);
                assert!(verify_leaf(&addr, len as u64, &front).is_err());
                if depth > 0 {
                    let mut shorter = proof.clone();
                    shorter.path.pop();
                    assert_eq!(verify_leaf(&addr, len as u64, &shorter), Err(expect(depth - 1)));
                    shorter.path = proof.path[1..].to_vec();
                    assert!(verify_leaf(&addr, len as u64, &shorter).is_err());
                }
            }
        }
    }

    #[test]
    fn changed_index_fails() {
        for len in LENGTHS.into_iter().filter(|&l| l > LEAF_SIZE) {
            let data = data_of(len);
            let count = leaf_count(len as u64);
            for index in sample_indices(len as u64) {
                let mut proof = prove_one(&data, index);
                for other in [index ^ 1, (index + 1) % count, count, u64::MAX] {
                    if other == index {
                        continue;
                    }
                    proof.index = other;
                    assert!(verify_leaf(&addr_of(&data), len as u64, &proof).is_err());
                }
            }
        }
    }

    /// A leaf proof depends on `total_len` only through the leaf's length and its path
    /// shape; a wrong length that changes either must fail, and the last leaf always does.
    #[test]
    fn wrong_total_len_fails() {
        for len in LENGTHS {
            let data = data_of(len);
            let addr = addr_of(&data);
            let n = len as u64;
            let last = leaf_count(n) - 1;
            for index in sample_indices(n) {
                let proof = prove_one(&data, index);
                for wrong in [n + 1, n.saturating_sub(1), n + 1024, n.saturating_sub(1024), 0] {
                    if wrong == n {
                        continue;
                    }
                    let res = verify_leaf(&addr, wrong, &proof);
                    let same_shape = index < leaf_count(wrong)
                        && expected_leaf_len(wrong, index) == proof.leaf.len()
                        && PathShape::of(wrong, index) == PathShape::of(n, index);
                    assert_eq!(res.is_ok(), same_shape, "{n} as {wrong}, leaf {index}");
                    if index == last && wrong.abs_diff(n) == 1 {
                        assert!(res.is_err(), "last leaf of {n} as {wrong}");
                    }
                }
            }
        }
        let data = data_of(300 * 1024 + 11);
        let (addr, n, seed) = (addr_of(&data), data.len() as u64, [5u8; 32]);
        let proofs = prove_leaves(&data, &select_leaves(&seed, n, 4)).unwrap();
        assert_eq!(verify_audit(&addr, n, &seed, 4, &proofs), Ok(()));
        for wrong in [n - 1, n + 1, n + 1024, 0] {
            assert!(verify_audit(&addr, wrong, &seed, 4, &proofs).is_err());
        }
    }

    #[test]
    fn different_addr_fails() {
        for len in LENGTHS {
            let data = data_of(len);
            let mut addr = addr_of(&data);
            addr[31] ^= 1;
            for index in sample_indices(len as u64) {
                let proof = prove_one(&data, index);
                let res = verify_leaf(&addr, len as u64, &proof);
                assert_eq!(res, Err(AuditError::RootMismatch { index }));
            }
        }
    }

    #[test]
    fn prove_rejects_bad_requests_and_keeps_order() {
        let data = data_of(5000);
        let res = prove_leaves(&data, &[0, 5]);
        assert_eq!(res, Err(AuditError::IndexOutOfRange { index: 5, leaf_count: 5 }));
        let too_many = [0u64; MAX_LEAVES_PER_AUDIT + 1];
        assert!(matches!(prove_leaves(&data, &too_many), Err(AuditError::TooManyLeaves { .. })));
        let proofs = prove_leaves(&data, &[4, 1, 4, 0]).unwrap();
        let got: Vec<u64> = proofs.iter().map(|p| p.index).collect();
        assert_eq!(got, [4, 1, 4, 0]);
        assert_eq!(proofs[0], proofs[2]);
        assert_eq!(proofs[1], prove_one(&data, 1));
    }

    #[test]
    fn verify_audit_accepts_honest_and_rejects_other_answers() {
        let data = data_of(300 * 1024 + 11);
        let (addr, n) = (addr_of(&data), data.len() as u64);
        let seed = [9u8; 32];
        let chosen = select_leaves(&seed, n, 4);
        let honest = prove_leaves(&data, &chosen).unwrap();
        assert_eq!(verify_audit(&addr, n, &seed, 4, &honest), Ok(()));
        assert_eq!(
            verify_audit(&addr, n, &seed, 4, &honest[..3]),
            Err(AuditError::ProofCount { expected: 4, actual: 3 })
        );
        assert!(verify_audit(&addr, n, &seed, 4, &[]).is_err());
        let other: Vec<u64> = chosen.iter().map(|i| (i + 1) % leaf_count(n)).collect();
        let wrong = prove_leaves(&data, &other).unwrap();
        assert!(matches!(verify_audit(&addr, n, &seed, 4, &wrong), Err(AuditError::UnexpectedIndex { .. })));
        let mut reversed = honest.clone();
        reversed.reverse();
        assert!(verify_audit(&addr, n, &seed, 4, &reversed).is_err());
        assert!(verify_audit(&addr, n, &[8u8; 32], 4, &honest).is_err());
        assert_eq!(verify_audit(&addr, n, &seed, 0, &[]), Err(AuditError::NoLeavesRequested));
        let mut forged = honest.clone();
        forged[2].leaf[100] ^= 4;
        assert!(verify_audit(&addr, n, &seed, 4, &forged).is_err());
    }

    #[test]
    fn select_leaves_is_deterministic_distinct_sorted_in_range() {
        for len in [0u64, 1, 2000, 5 * 1024, 64 * 1024, 1 << 20, u64::MAX] {
            let count = leaf_count(len);
            for seed_byte in 0u8..20 {
                let seed = [seed_byte; 32];
                let picked = select_leaves(&seed, len, 4);
                assert_eq!(picked, select_leaves(&seed, len, 4));
                assert_eq!(picked.len() as u64, count.min(4));
                assert!(picked.windows(2).all(|w| w[0] < w[1]));
                assert!(picked.iter().all(|&i| i < count));
            }
        }
        assert_eq!(select_leaves(&[1; 32], 3 * 1024, 100), [0, 1, 2]);
        assert_eq!(select_leaves(&[1; 32], 1 << 20, 100).len(), MAX_LEAVES_PER_AUDIT);
        assert!(select_leaves(&[1; 32], 1 << 20, 0).is_empty());
        let a = select_leaves(&[1; 32], 1 << 20, 8);
        assert_ne!(a, select_leaves(&[2; 32], 1 << 20, 8));
        assert_ne!(a, select_leaves(&[1; 32], (1 << 20) + 1, 8));
    }

    #[test]
    fn select_leaves_covers_all_leaves() {
        let mut seen = [false; 64];
        for s in 0u8..=255 {
            for i in select_leaves(&[s; 32], 64 * 1024, 4) {
                seen[i as usize] = true;
            }
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn hostile_proofs_are_rejected_without_panic() {
        let data = data_of(5000);
        let (addr, n) = (addr_of(&data), data.len() as u64);
        let good = prove_one(&data, 2);
        let hostile = [
            LeafProof { index: u64::MAX, ..good.clone() },
            LeafProof { leaf: Vec::new(), ..good.clone() },
            LeafProof { leaf: vec![0; 100_000], ..good.clone() },
            LeafProof { path: vec![[0; 32]; 1000], ..good.clone() },
            LeafProof { index: 4, leaf: Vec::new(), path: Vec::new() },
        ];
        for proof in &hostile {
            assert!(verify_leaf(&addr, n, proof).is_err());
            assert!(verify_leaf(&addr, u64::MAX, proof).is_err());
            assert!(verify_leaf(&addr, 0, proof).is_err());
        }
        let last = leaf_count(u64::MAX) - 1;
        let deep = LeafProof {
            index: last,
            leaf: vec![1; 1023],
            path: vec![[3; 32]; PathShape::of(u64::MAX, last).depth],
        };
        assert_eq!(verify_leaf(&addr, u64::MAX, &deep), Err(AuditError::RootMismatch { index: last }));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn random_lengths_and_indices_verify(
            len in 0usize..300 * 1024,
            picks in proptest::collection::vec(any::<u64>(), 1..MAX_LEAVES_PER_AUDIT),
            flip in any::<usize>(),
        ) {
            let data = data_of(len);
            let (addr, n) = (addr_of(&data), len as u64);
            let indices: Vec<u64> = picks.iter().map(|p| p % leaf_count(n)).collect();
            let proofs = prove_leaves(&data, &indices).unwrap();
            for (proof, &index) in proofs.iter().zip(&indices) {
                prop_assert_eq!(proof.index, index);
                prop_assert_eq!(verify_leaf(&addr, n, proof), Ok(()));
                let mut bad = proof.clone();
                if bad.leaf.is_empty() {
                    bad.leaf.push(0);
                } else {
                    let at = flip % bad.leaf.len();
                    bad.leaf[at] ^= 1 << (flip % 8);
                }
                prop_assert!(verify_leaf(&addr, n, &bad).is_err());
            }
        }

        #[test]
        fn arbitrary_proofs_never_panic(
            total_len in prop_oneof![any::<u64>(), 0u64..10_000],
            index in prop_oneof![any::<u64>(), 0u64..12],
            leaf_len in 0usize..1100,
            path_len in 0usize..80,
        ) {
            let proof = LeafProof {
                index,
                leaf: vec![0xA5; leaf_len],
                path: vec![[0x5A; 32]; path_len],
            };
            prop_assert!(verify_leaf(&[0; 32], total_len, &proof).is_err());
            let _ = verify_audit(&[0; 32], total_len, &[0; 32], 3, &[proof]);
        }
    }

    /// Proving from cached segment chaining values gives exactly the whole-data answer, reading
    /// only the segments that hold selected leaves; a missing segment or wrong cvs give `None`.
    #[test]
    fn segment_proofs_match_whole_data_proofs() {
        let seg = SEGMENT;
        for len in [seg + 1, 2 * seg, 2 * seg + 1023, 5 * seg + 1, 17 * LEAF_SIZE, 1024 * 1024 + 5, 700_001] {
            let data = data_of(len);
            let cvs = segment_cvs(&data);
            assert_eq!(cvs.len(), len.div_ceil(seg));
            for seed in 0..8u8 {
                let picks = select_leaves(&[seed; 32], len as u64, 4);
                let mut read = Vec::new();
                let mut segment = |i: u64| {
                    read.push(i);
                    data.get(i as usize * seg..((i as usize + 1) * seg).min(len)).map(<[u8]>::to_vec)
                };
                let got = prove_leaves_from_segments(len as u64, &cvs, &mut segment, &picks).unwrap();
                assert_eq!(got, Some(prove_leaves(&data, &picks).unwrap()), "len {len} seed {seed}");
                let wanted: std::collections::BTreeSet<u64> =
                    picks.iter().map(|p| p * 1024 / seg as u64).collect();
                read.sort_unstable();
                read.dedup();
                assert_eq!(read, wanted.into_iter().collect::<Vec<_>>(), "only leaf segments are read");
                verify_audit(&addr_of(&data), len as u64, &[seed; 32], 4, &got.unwrap()).unwrap();
            }
            let picks = select_leaves(&[1; 32], len as u64, 4);
            assert_eq!(prove_leaves_from_segments(len as u64, &cvs, &mut |_| None, &picks), Ok(None));
            assert_eq!(prove_leaves_from_segments(len as u64, &cvs[1..], &mut |_| None, &picks), Ok(None));
        }
        assert!(segment_cvs(&data_of(seg)).is_empty(), "one segment: prove from the whole data");
    }

    /// One pass checks the addr and yields the segment chaining values: it accepts exactly the
    /// bytes whose BLAKE3 hash is the addr, at every length around segment and tree boundaries.
    #[test]
    fn verified_accepts_exactly_the_bytes_of_the_addr() {
        let seg = SEGMENT;
        for len in [0, 1, LEAF_SIZE, seg - 1, seg, seg + 1, 2 * seg, 3 * seg + 7, 17 * seg, 1020 * 1024 + 16]
        {
            let data = data_of(len);
            let addr = addr_of(&data);
            let v = Verified::check(&addr, &data).unwrap_or_else(|| panic!("len {len} refused"));
            assert_eq!((v.addr(), v.bytes(), v.cvs()), (&addr, &data[..], &segment_cvs(&data)[..]));
            for at in [0, len / 2, len.saturating_sub(1)].into_iter().filter(|_| len > 0) {
                let mut bad = data.clone();
                bad[at] ^= 1;
                assert!(Verified::check(&addr, &bad).is_none(), "len {len}: flip at {at} accepted");
            }
            assert!(
                Verified::check(&addr, &[&data[..], &[0]].concat()).is_none(),
                "len {len}: longer accepted"
            );
            let mut other = addr;
            other[31] ^= 1;
            assert!(Verified::check(&other, &data).is_none(), "len {len}: other addr accepted");
        }
    }
}
