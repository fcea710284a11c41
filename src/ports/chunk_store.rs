//! The storage node's chunk store: durable bodies plus an index, all under the node's at-rest key.

use crate::domain::audit::{prove_leaves, LeafProof, Verified};
use crate::domain::ids::Addr;
use crate::domain::proof::Commitment;

/// What a node knows about one chunk it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredChunk {
    /// The chunk's address.
    pub addr: Addr,
    /// The replica slot this node took.
    pub slot: u8,
    /// The read commitment P sent with the store request: proofs against it authorise gets.
    pub commitment: Commitment,
    /// The control commitment Q: proofs against it alone authorise renew, delete and audit.
    /// `None` for a chunk stored without one and not upgraded yet (the legacy rule: P authorises
    /// everything).
    pub control: Option<Commitment>,
    /// Lease expiry, Unix milliseconds.
    pub lease_expiry_ms: u64,
    /// Ciphertext length.
    pub len: u32,
}

/// Space accounting of a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Usage {
    /// Bytes charged against the capacity (bodies and their at-rest overhead).
    pub used: u64,
    /// The capacity limit.
    pub capacity: u64,
    /// Number of chunks held.
    pub chunks: u64,
}

/// Errors of a chunk store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Storing would exceed the capacity limit.
    #[error("not enough space: need {needed} bytes, {free} free")]
    Full {
        /// Bytes the chunk needs.
        needed: u64,
        /// Bytes still free.
        free: u64,
    },
    /// The stored bytes no longer decrypt or no longer match their addr.
    #[error("stored copy of {0:?} is corrupt or missing")]
    Corrupt(Addr),
    /// The disk or index failed.
    #[error("storage I/O failed: {0}")]
    Io(String),
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Io(e.to_string())
    }
}

/// A node's durable chunk store. Methods block (disk I/O, fsync); call them off the async runtime.
pub trait ChunkStore: Send + Sync + 'static {
    /// The index entry for `addr`, if held.
    fn meta(&self, addr: &Addr) -> Result<Option<StoredChunk>, StoreError>;
    /// Stores `ciphertext`, verified against `meta.addr`, durably (fsynced) before returning;
    /// fails with `Full` past capacity, and with `Corrupt` if it was verified for another addr or
    /// is not `meta.len` bytes long.
    fn put(&self, meta: &StoredChunk, ciphertext: &Verified<'_>) -> Result<(), StoreError>;
    /// The ciphertext, verified against its addr; `Corrupt` if it no longer verifies.
    fn read(&self, addr: &Addr) -> Result<Option<Vec<u8>>, StoreError>;
    /// Answers an audit: the proofs of leaves `picks` of the held chunk, after checking that the
    /// whole stored copy is intact (`Corrupt` otherwise); `None` if not held. The default reads
    /// and verifies the whole chunk; an adapter may cache what makes this cheaper.
    fn audit_proofs(&self, addr: &Addr, picks: &[u64]) -> Result<Option<Vec<LeafProof>>, StoreError> {
        let Some(ct) = self.read(addr)? else { return Ok(None) };
        prove_leaves(&ct, picks).map(Some).map_err(|e| StoreError::Io(e.to_string()))
    }
    /// Sets the lease expiry; false if not held.
    fn set_lease(&self, addr: &Addr, lease_expiry_ms: u64) -> Result<bool, StoreError>;
    /// Attaches the control commitment to a chunk held without one, durably; false if not held
    /// or if it already has one (a control commitment is set once and never replaced).
    fn set_control(&self, addr: &Addr, control: &Commitment) -> Result<bool, StoreError>;
    /// Removes the chunk; false if not held.
    fn remove(&self, addr: &Addr) -> Result<bool, StoreError>;
    /// Addrs whose lease ended at or before `now_ms`.
    fn expired(&self, now_ms: u64) -> Result<Vec<Addr>, StoreError>;
    /// Current space accounting.
    fn usage(&self) -> Usage;
    /// The root record kept for a vault `locator` (see `domain::snapshot::root_locator`).
    fn root(&self, locator: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Keeps `record` as the root record of `locator` (the caller has verified it is newer),
    /// durably.
    fn put_root(&self, locator: &str, record: &[u8]) -> Result<(), StoreError>;
    /// How many vaults' root records are kept.
    fn roots_held(&self) -> Result<u64, StoreError>;
}
