//! The node index's records: a chunk's metadata and what its body's format needs for reads and
//! audits. Records are sealed under the node's record key by the store (`mod.rs`).
//!
//! Layout: addr (32) ‖ slot (1) ‖ commitment ‖ lease expiry (8, LE) ‖ ciphertext length (4, LE),
//! then, for a chunk held with a control commitment, the byte [`CONTROL_TAG`] and the control
//! commitment (64), then by format:
//! - [`Format::Aead`] (bodies written before the `Mac` format): nothing more for a chunk of one
//!   segment; for longer chunks the MAC and the segment chaining values (32 bytes each).
//! - [`Format::Mac`]: the byte [`MAC_FORMAT`], the MAC, then the segment chaining values of a
//!   multi-segment chunk. The odd length tells the two apart.
//!
//! Records written before control commitments existed have no control part and stay readable:
//! after the metadata their length is 0 (`Aead`) or 1 (`Mac`, starting with [`MAC_FORMAT`]) modulo
//! 32, while a control part (65 bytes) makes it 1 or 2 and starts with [`CONTROL_TAG`].

use super::body::Format;
use crate::domain::ids::Addr;
use crate::domain::proof::{Commitment, COMMITMENT_LEN};
use crate::ports::chunk_store::StoredChunk;

/// Length of the metadata every record starts with.
pub(super) const RECORD_LEN: usize = 32 + 1 + COMMITMENT_LEN + 8 + 4;

/// The byte after the metadata of a [`Format::Mac`] record.
const MAC_FORMAT: u8 = 2;

/// The byte after the metadata of a record holding a control commitment.
const CONTROL_TAG: u8 = 3;

/// One index record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Record {
    /// What the node stored.
    pub meta: StoredChunk,
    /// How its body is sealed.
    pub format: Format,
    /// Keyed BLAKE3 of the sealed body (`Mac`: always; `Aead`: multi-segment chunks only).
    pub mac: Option<[u8; 32]>,
    /// BLAKE3 chaining values of the ciphertext's 16 KiB segments (multi-segment chunks only).
    pub cvs: Vec<[u8; 32]>,
}

impl Record {
    /// Length of the sealed body within its file.
    pub(super) fn sealed_len(&self) -> usize {
        self.format.sealed_len(self.meta.len)
    }

    pub(super) fn encode(&self) -> Vec<u8> {
        let m = &self.meta;
        let mut v = Vec::with_capacity(RECORD_LEN + 1 + 32 * (self.cvs.len() + 1));
        v.extend_from_slice(&m.addr.0);
        v.push(m.slot);
        v.extend_from_slice(&m.commitment.to_bytes());
        v.extend_from_slice(&m.lease_expiry_ms.to_le_bytes());
        v.extend_from_slice(&m.len.to_le_bytes());
        if let Some(q) = &m.control {
            v.push(CONTROL_TAG);
            v.extend_from_slice(&q.to_bytes());
        }
        if self.format == Format::Mac {
            v.push(MAC_FORMAT);
        }
        if let Some(mac) = &self.mac {
            v.extend_from_slice(mac);
        }
        for cv in &self.cvs {
            v.extend_from_slice(cv);
        }
        v
    }

    /// `None` for anything but a record `encode` wrote (or an `Aead` record of older versions).
    pub(super) fn decode(v: &[u8]) -> Option<Record> {
        let (head, extra) = v.split_at_checked(RECORD_LEN)?;
        let (control, extra) = match extra.first() {
            Some(&CONTROL_TAG) if matches!(extra.len() % 32, 1 | 2) => {
                let (q, rest) = extra[1..].split_at_checked(COMMITMENT_LEN)?;
                (Some(Commitment::from_bytes(q).ok()?), rest)
            }
            _ => (None, extra),
        };
        let (format, words) = match (extra.len() % 32, extra.first()) {
            (1, Some(&MAC_FORMAT)) if extra.len() > 1 => (Format::Mac, &extra[1..]),
            // An `Aead` record has no MAC or a MAC and at least two chaining values.
            (0, _) if extra.len() != 32 => (Format::Aead, extra),
            _ => return None,
        };
        let mut words = words.chunks_exact(32).map(|w| <[u8; 32]>::try_from(w).ok());
        let mac = words.next().flatten();
        let cvs = words.collect::<Option<Vec<_>>>()?;
        let (addr, rest) = head.split_at(32);
        let (slot, rest) = rest.split_at(1);
        let (commitment, rest) = rest.split_at(COMMITMENT_LEN);
        let (lease, len) = rest.split_at(8);
        let meta = StoredChunk {
            addr: Addr(addr.try_into().ok()?),
            slot: slot[0],
            commitment: Commitment::from_bytes(commitment).ok()?,
            lease_expiry_ms: u64::from_le_bytes(lease.try_into().ok()?),
            len: u32::from_le_bytes(len.try_into().ok()?),
            control,
        };
        Some(Record { meta, format, mac, cvs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::proof::ProofSecret;

    fn meta() -> StoredChunk {
        StoredChunk {
            addr: Addr([7; 32]),
            slot: 2,
            commitment: ProofSecret::from_seed(&[3; 32]).commitment(),
            lease_expiry_ms: 123_456,
            len: 40_000,
            control: None,
        }
    }

    fn controlled() -> StoredChunk {
        StoredChunk { control: Some(ProofSecret::from_seed(&[5; 32]).commitment()), ..meta() }
    }

    /// Records of every format, with and without a control commitment, round-trip; a record
    /// written before control commitments existed (no control part) reads as one without.
    #[test]
    fn records_with_a_control_commitment_round_trip_beside_older_records() {
        let cvs = vec![[1; 32], [2; 32], [3; 32]];
        for m in [meta(), controlled()] {
            for r in [
                Record { meta: m, format: Format::Aead, mac: None, cvs: vec![] },
                Record { meta: m, format: Format::Aead, mac: Some([9; 32]), cvs: cvs.clone() },
                Record { meta: m, format: Format::Mac, mac: Some([9; 32]), cvs: vec![] },
                Record { meta: m, format: Format::Mac, mac: Some([9; 32]), cvs: cvs.clone() },
            ] {
                assert_eq!(Record::decode(&r.encode()).as_ref(), Some(&r));
            }
        }
        // The encoding of a record without Q is exactly the older layout.
        let old = Record { meta: meta(), format: Format::Mac, mac: Some([9; 32]), cvs: vec![] }.encode();
        assert_eq!(old.len(), RECORD_LEN + 1 + 32);
        assert_eq!(Record::decode(&old).map(|r| r.meta.control), Some(None));
        // A control part whose commitment is not a valid point is refused.
        let mut bad =
            Record { meta: controlled(), format: Format::Mac, mac: Some([9; 32]), cvs: vec![] }.encode();
        bad[RECORD_LEN + 1..RECORD_LEN + 1 + COMMITMENT_LEN].fill(0);
        assert_eq!(Record::decode(&bad), None);
    }

    #[test]
    fn records_of_both_formats_round_trip_and_tell_themselves_apart() {
        let cvs = vec![[1; 32], [2; 32], [3; 32]];
        for r in [
            Record { meta: meta(), format: Format::Aead, mac: None, cvs: vec![] },
            Record { meta: meta(), format: Format::Aead, mac: Some([9; 32]), cvs: cvs.clone() },
            Record { meta: meta(), format: Format::Mac, mac: Some([9; 32]), cvs: vec![] },
            Record { meta: meta(), format: Format::Mac, mac: Some([9; 32]), cvs },
        ] {
            assert_eq!(Record::decode(&r.encode()).as_ref(), Some(&r));
        }
    }

    #[test]
    fn malformed_records_are_refused() {
        let full =
            Record { meta: meta(), format: Format::Mac, mac: Some([9; 32]), cvs: vec![[1; 32]; 2] }.encode();
        let aead_mac_only = [&full[..RECORD_LEN], &[5; 32]].concat();
        let mac_without_mac = [&full[..RECORD_LEN], &[MAC_FORMAT]].concat();
        let other_format = [&full[..RECORD_LEN], &[7], &[5; 32]].concat();
        for bad in [
            &full[..RECORD_LEN - 1],
            &full[..full.len() - 2],
            &aead_mac_only,
            &mac_without_mac,
            &other_format,
            &[],
        ] {
            assert_eq!(Record::decode(bad), None, "{} bytes", bad.len());
        }
    }
}
