//! Content-defined chunking with FastCDC (docs/DESIGN.md §1): an edit moves only the chunks around it.
//!
//! Sizes: min 256 KiB, average 512 KiB, max 1020 KiB. The maximum keeps a whole store request
//! (chunk + 16-byte tag + < 300 bytes of header) under NATS's default `max_payload` of 1 MiB, so
//! Quloud works against a stock `nats-server`. The average trades per-chunk costs (one proof
//! commitment, one NATS message per replica, one manifest row) against dedup granularity; see
//! docs/PERFORMANCE.md for the measurement behind it.
//!
//! The gear table is seeded per vault (a secret derived from the master key), so chunk
//! boundaries — and therefore the sizes a node or eavesdropper sees — cannot be matched against
//! the boundaries a known file would have under another vault.

use fastcdc::v2020::{FastCDC, Normalization};
use std::ops::Range;

/// Smallest chunk (except the last chunk of a file).
pub const MIN_CHUNK: usize = 256 * 1024;
/// Target average chunk size.
pub const AVG_CHUNK: usize = 512 * 1024;
/// Largest chunk.
pub const MAX_CHUNK: usize = 1020 * 1024;

/// Splits `data` into content-defined chunk ranges for a vault whose chunker seed is `seed`.
///
/// Empty input yields no chunks. The ranges are contiguous and cover `data` exactly.
pub fn chunk_ranges(data: &[u8], seed: u64) -> impl Iterator<Item = Range<usize>> + '_ {
    FastCDC::with_level_and_seed(data, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK, Normalization::Level1, seed)
        .map(|c| c.offset..c.offset + c.length)
}

/// Average piece sizes a blob (a manifest snapshot, a share's manifest) is cut at, smallest
/// first, each with the largest blob cut at it. A change rewrites about one piece around it, and
/// a small change to a manifest touches about seven places in its dump (an inode, an extent,
/// chunk records in two runs, the meta and snapshot tables), so small pieces keep consecutive
/// snapshots' differences small. Every snapshot also records its pins (32 bytes a piece) and a
/// few index pieces (its head is indexed, `crate::domain::blob_index`), so the average grows
/// with the blob, near 2·√(blob bytes) (FastCDC's actual average is about 1.6 times the
/// nominal one given here). A blob that grows past a tier's bound is cut anew once. Beyond the
/// last tier, blobs are cut like file data.
const BLOB_TIERS: [(usize, usize); 6] = [
    (2 << 10, 4 << 20),
    (4 << 10, 16 << 20),
    (8 << 10, 64 << 20),
    (16 << 10, 256 << 20),
    (32 << 10, 1 << 30),
    (64 << 10, 4 << 30),
];

/// Splits a blob into content-defined piece ranges (see [`BLOB_TIERS`]): the first tier whose
/// size bound holds `data` and whose cut yields at most `max_pieces`, else the file-data cut.
/// The ranges are contiguous and cover `data` exactly.
pub fn blob_ranges(data: &[u8], seed: u64, max_pieces: usize) -> Vec<Range<usize>> {
    for (avg, up_to) in BLOB_TIERS {
        if data.len() > up_to {
            continue;
        }
        let ranges: Vec<Range<usize>> =
            FastCDC::with_level_and_seed(data, avg / 4, avg, avg * 4, Normalization::Level1, seed)
                .map(|c| c.offset..c.offset + c.length)
                .collect();
        if ranges.len() <= max_pieces {
            return ranges;
        }
    }
    chunk_ranges(data, seed).collect()
}

/// Content-defined chunks of a stream (a file), yielding `(offset, bytes)` with bounded memory.
pub fn chunk_stream<R: std::io::Read>(
    reader: R,
    seed: u64,
) -> impl Iterator<Item = std::io::Result<(u64, Vec<u8>)>> {
    fastcdc::v2020::StreamCDC::with_level_and_seed(
        reader,
        MIN_CHUNK,
        AVG_CHUNK,
        MAX_CHUNK,
        Normalization::Level1,
        seed,
    )
    .map(|r| match r {
        Ok(c) => Ok((c.offset, c.data)),
        Err(fastcdc::v2020::Error::IoError(e)) => Err(e),
        Err(e) => Err(std::io::Error::other(e.to_string())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pseudo_random(len: usize, mut state: u64) -> Vec<u8> {
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    #[test]
    fn an_edit_in_the_middle_changes_only_nearby_chunks() {
        let mut data = pseudo_random(16 << 20, 42);
        let before: Vec<_> = chunk_ranges(&data, 7).map(|r| data[r].to_vec()).collect();
        let mid = data.len() / 2;
        for b in &mut data[mid..mid + 4096] {
            *b ^= 0x5a;
        }
        let after: Vec<_> = chunk_ranges(&data, 7).map(|r| data[r].to_vec()).collect();
        let changed = after.iter().filter(|c| !before.contains(c)).count();
        assert!(before.len() > 16, "expected many chunks, got {}", before.len());
        assert!(changed <= 3, "{changed} chunks changed for a 4 KiB edit");
    }

    #[test]
    fn streaming_matches_in_memory_chunking() {
        let data = pseudo_random(5 << 20, 9);
        let a: Vec<_> = chunk_ranges(&data, 3).map(|r| (r.start as u64, data[r].to_vec())).collect();
        let b: Vec<_> = chunk_stream(&data[..], 3).map(|r| r.unwrap()).collect();
        assert_eq!(a, b);
    }

    #[test]
    fn seed_changes_boundaries() {
        let data = pseudo_random(8 << 20, 1);
        let a: Vec<_> = chunk_ranges(&data, 1).collect();
        let b: Vec<_> = chunk_ranges(&data, 2).collect();
        assert_ne!(a, b);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn ranges_cover_input_within_bounds(len in 0usize..4_000_000, seed in any::<u64>()) {
            let data = pseudo_random(len, seed | 1);
            let mut next = 0;
            let ranges: Vec<_> = chunk_ranges(&data, seed).collect();
            for (i, r) in ranges.iter().enumerate() {
                prop_assert_eq!(r.start, next);
                prop_assert!(r.len() <= MAX_CHUNK);
                if i + 1 < ranges.len() {
                    prop_assert!(r.len() >= MIN_CHUNK);
                }
                next = r.end;
            }
            prop_assert_eq!(next, len);
        }
    }
}
