//! The pure core: ids, keys, chunking, chunk encryption, proofs, audits and wire messages.
//!
//! Nothing in here performs I/O or knows about tokio; everything is synchronous and unit-tested.

pub mod acl;
pub mod audit;
pub mod backoff;
pub mod blob;
pub mod blob_index;
pub mod chunker;
pub mod churn;
pub mod dump;
pub mod fs;
pub mod health;
pub mod house;
pub mod identity;
pub mod ids;
pub mod keys;
pub mod lease;
pub mod membership;
pub mod paper;
pub mod partial;
pub mod placement;
pub mod proof;
pub mod seal;
pub mod share;
pub mod size;
pub mod skew;
pub mod snapshot;
pub mod vetting;
pub mod wire;

#[cfg(test)]
mod protocol_layouts_tests;
#[cfg(test)]
pub(crate) mod signature_tests;

/// Fills `buf` from the operating system's CSPRNG.
///
/// The OS RNG failing is not something Quloud can recover from safely, so it aborts loudly.
pub fn random_bytes(buf: &mut [u8]) {
    if let Err(e) = getrandom::getrandom(buf) {
        panic!("operating system random number generator failed: {e}");
    }
}

/// Milliseconds since the Unix epoch according to the given clock reading.
pub fn unix_ms(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
