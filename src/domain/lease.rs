//! The writer lease (docs/DESIGN.md §11): which home may write a vault, under which epoch.
//!
//! A lease names a writer (a random id made once per home) and an epoch that only grows. It is
//! signed with the vault's root signing key, so only a holder of the vault key can take it, and
//! it is kept in the fabric where the broker orders take-overs by compare-and-set. A lease has
//! no expiry: time from another machine's clock decides nothing. A writer learns that it lost
//! the lease by reading it (on its own clock's schedule, and always before it publishes a root
//! record or deletes chunks); taking the lease is always an explicit act (`restore`,
//! `mount --take-over`).

use crate::domain::ids::WriterId;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

const LEASE_VERSION: u8 = 1;
const LEASE_DOMAIN: &[u8] = b"quloud v1 writer lease";
/// Encoded length of a lease.
pub const LEASE_LEN: usize = 1 + 32 + 8 + 16 + 8 + 64;

/// Who may write a vault: the writer and the epoch it took the lease in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriterLease {
    /// Grows with every take-over; every root record and snapshot carries the epoch of its writer.
    pub epoch: u64,
    /// The home that holds the lease.
    pub writer: WriterId,
    /// When the holder took it (Unix ms on the holder's clock; shown to people, never compared).
    pub taken_ms: u64,
}

/// Why a lease record was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LeaseError {
    /// Wrong length or version.
    #[error("malformed writer lease")]
    Malformed,
    /// Not signed by this vault's root key.
    #[error("writer lease is not signed by this vault's key (forged or foreign)")]
    BadSignature,
}

impl WriterLease {
    /// Signs and encodes the lease.
    pub fn seal(&self, signing: &SigningKey) -> Vec<u8> {
        let mut out = Vec::with_capacity(LEASE_LEN);
        out.push(LEASE_VERSION);
        out.extend_from_slice(signing.verifying_key().as_bytes());
        out.extend_from_slice(&self.epoch.to_le_bytes());
        out.extend_from_slice(&self.writer.0);
        out.extend_from_slice(&self.taken_ms.to_le_bytes());
        let sig = signing.sign(&signed(&out));
        out.extend_from_slice(&sig.to_bytes());
        out
    }

    /// Verifies a lease against the vault's root verifying key and decodes it.
    pub fn open(bytes: &[u8], key: &VerifyingKey) -> Result<WriterLease, LeaseError> {
        if bytes.len() != LEASE_LEN || bytes[0] != LEASE_VERSION {
            return Err(LeaseError::Malformed);
        }
        let (msg, sig) = bytes.split_at(LEASE_LEN - 64);
        if &msg[1..33] != key.as_bytes() {
            return Err(LeaseError::BadSignature);
        }
        let sig = Signature::from_slice(sig).map_err(|_| LeaseError::Malformed)?;
        key.verify_strict(&signed(msg), &sig).map_err(|_| LeaseError::BadSignature)?;
        let u = |r: std::ops::Range<usize>| {
            msg[r].try_into().map(u64::from_le_bytes).map_err(|_| LeaseError::Malformed)
        };
        let writer = WriterId(msg[41..57].try_into().map_err(|_| LeaseError::Malformed)?);
        Ok(WriterLease { epoch: u(33..41)?, writer, taken_ms: u(57..65)? })
    }
}

fn signed(msg: &[u8]) -> Vec<u8> {
    [LEASE_DOMAIN, msg].concat()
}

/// What a home may do, judged from the lease the fabric holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// No lease exists: the home may take one (epoch 1 above `floor`).
    Free,
    /// This home holds the lease in this epoch.
    Holder(u64),
    /// Another home holds it.
    Other(WriterLease),
}

/// Judges the fabric's lease `current` for the home `me`.
pub fn standing(current: Option<&WriterLease>, me: WriterId) -> Standing {
    match current {
        None => Standing::Free,
        Some(l) if l.writer == me => Standing::Holder(l.epoch),
        Some(l) => Standing::Other(*l),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::keys::MasterKey;
    use proptest::prelude::*;

    #[test]
    fn lease_round_trip_forgery_and_standing() {
        let k = MasterKey::from_bytes([3; 32]).derive();
        let vk = k.root_signing_key().verifying_key();
        let me = WriterId([1; 16]);
        let l = WriterLease { epoch: 4, writer: me, taken_ms: 99 };
        let bytes = l.seal(k.root_signing_key());
        assert_eq!(WriterLease::open(&bytes, &vk), Ok(l));
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(WriterLease::open(&bad, &vk).is_err(), "flip at {i} accepted");
        }
        let other = MasterKey::from_bytes([4; 32]).derive();
        let foreign = l.seal(other.root_signing_key());
        assert_eq!(WriterLease::open(&foreign, &vk), Err(LeaseError::BadSignature));
        assert_eq!(standing(None, me), Standing::Free);
        assert_eq!(standing(Some(&l), me), Standing::Holder(4));
        let theirs = WriterLease { writer: WriterId([2; 16]), ..l };
        assert_eq!(standing(Some(&theirs), me), Standing::Other(theirs));
    }

    /// A lease's signature is judged with `verify_strict`: a second signature of the same lease
    /// by the same key (small-order R), and a weak key whose signature fits every lease, are
    /// refused.
    #[test]
    fn malleated_and_weak_key_signatures_are_refused() {
        use crate::domain::signature_tests::{malleated, weak_key_signature};
        let k = MasterKey::from_bytes([3; 32]).derive();
        let l = WriterLease { epoch: 4, writer: WriterId([1; 16]), taken_ms: 99 };
        let mut bytes = l.seal(k.root_signing_key());
        let sig = malleated(k.root_signing_key(), &signed(&bytes[..LEASE_LEN - 64]));
        bytes[LEASE_LEN - 64..].copy_from_slice(&sig);
        let vk = k.root_signing_key().verifying_key();
        assert_eq!(WriterLease::open(&bytes, &vk), Err(LeaseError::BadSignature));
        let (weak, sig) = weak_key_signature();
        bytes[1..33].copy_from_slice(weak.as_bytes());
        bytes[LEASE_LEN - 64..].copy_from_slice(&sig);
        assert_eq!(WriterLease::open(&bytes, &weak), Err(LeaseError::BadSignature));
    }

    proptest! {
        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let k = MasterKey::from_bytes([3; 32]).derive();
            let _ = WriterLease::open(&bytes, &k.root_signing_key().verifying_key());
        }
    }
}
