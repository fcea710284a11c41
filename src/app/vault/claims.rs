//! Claims on chunks: an upload, a heal and a collection of one chunk never run at the same time.

use crate::domain::ids::Addr;
use std::collections::HashSet;
use std::sync::Mutex;

/// Chunks being uploaded, healed or collected.
#[derive(Debug, Default)]
pub(super) struct Claims(Mutex<HashSet<Addr>>);

/// Releases a chunk claimed for upload, healing or collection when dropped.
pub(super) struct Claim<'a> {
    set: &'a Mutex<HashSet<Addr>>,
    addr: Addr,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.set.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.addr);
    }
}

impl Claims {
    /// Claims `addr`, unless someone holds it already.
    pub(super) fn claim(&self, addr: Addr) -> Option<Claim<'_>> {
        // The guard must be gone before a `Claim` exists: dropping one takes the same lock.
        let claimed = self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(addr);
        claimed.then(|| Claim { set: &self.0, addr })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_is_claimed_once_and_released_by_its_holder_only() {
        let claims = Claims::default();
        let addr = Addr([1; 32]);
        let first = claims.claim(addr).expect("free chunk");
        // A failed claim must neither block nor release the holder's claim.
        assert!(claims.claim(addr).is_none());
        assert!(claims.claim(addr).is_none(), "a failed claim released the first one");
        assert!(claims.claim(Addr([2; 32])).is_some());
        drop(first);
        assert!(claims.claim(addr).is_some(), "released when the holder drops it");
    }
}
