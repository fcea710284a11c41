//! A storage node's identity: its ed25519 signing key (node id = public key) and at-rest key.
//!
//! The at-rest key never leaves the node; from it the node derives the key that seals its index
//! records, the key that seals chunk bodies and the key that turns addrs into file names.

use crate::domain::ids::{Addr, NodeId};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use std::fmt;

/// Length of an encoded identity (signing seed + at-rest key).
pub const IDENTITY_LEN: usize = 64;
/// Length of an ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// A storage node's secret identity.
#[derive(Clone)]
pub struct NodeIdentity {
    signing: SigningKey,
    at_rest: [u8; 32],
}

impl NodeIdentity {
    /// A fresh random identity.
    pub fn generate() -> Self {
        let mut b = [0u8; IDENTITY_LEN];
        crate::domain::random_bytes(&mut b);
        Self::from_bytes(&b)
    }

    /// Restores an identity from its encoding.
    pub fn from_bytes(b: &[u8; IDENTITY_LEN]) -> Self {
        let mut seed = [0u8; 32];
        let mut at_rest = [0u8; 32];
        seed.copy_from_slice(&b[..32]);
        at_rest.copy_from_slice(&b[32..]);
        NodeIdentity { signing: SigningKey::from_bytes(&seed), at_rest }
    }

    /// The encoding written to the node's key file.
    pub fn to_bytes(&self) -> [u8; IDENTITY_LEN] {
        let mut b = [0u8; IDENTITY_LEN];
        b[..32].copy_from_slice(&self.signing.to_bytes());
        b[32..].copy_from_slice(&self.at_rest);
        b
    }

    /// The node id (public key).
    pub fn id(&self) -> NodeId {
        NodeId(self.signing.verifying_key().to_bytes())
    }

    /// Signs `msg` (callers prefix a domain tag).
    pub fn sign(&self, msg: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.signing.sign(msg).to_bytes()
    }

    /// Key sealing index records.
    pub fn record_key(&self) -> [u8; 32] {
        blake3::derive_key("quloud v1 node record key", &self.at_rest)
    }

    /// Per-chunk key sealing a chunk body at rest.
    pub fn body_key(&self, addr: &Addr) -> [u8; 32] {
        let k = blake3::derive_key("quloud v1 node body key", &self.at_rest);
        *blake3::keyed_hash(&k, &addr.0).as_bytes()
    }

    /// Key of the MAC over a chunk's sealed body kept in the index, which lets an audit check
    /// every stored byte with one BLAKE3 pass instead of decrypting.
    pub fn body_mac_key(&self) -> [u8; 32] {
        blake3::derive_key("quloud v1 node body mac key", &self.at_rest)
    }

    /// Opaque on-disk name of a chunk, so a stolen disk cannot be searched for a known addr.
    pub fn locator(&self, addr: &Addr) -> [u8; 32] {
        let k = blake3::derive_key("quloud v1 node locator key", &self.at_rest);
        *blake3::keyed_hash(&k, &addr.0).as_bytes()
    }
}

impl fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeIdentity({:?})", self.id())
    }
}

/// Checks a node's signature over `msg`.
pub fn verify_signature(node: &NodeId, msg: &[u8], sig: &[u8; SIGNATURE_LEN]) -> bool {
    match VerifyingKey::from_bytes(&node.0) {
        Ok(vk) => vk.verify_strict(msg, &Signature::from_bytes(sig)).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_round_trip() {
        let id = NodeIdentity::generate();
        let sig = id.sign(b"msg");
        assert!(verify_signature(&id.id(), b"msg", &sig));
        assert!(!verify_signature(&id.id(), b"msh", &sig));
        assert!(!verify_signature(&NodeIdentity::generate().id(), b"msg", &sig));
        assert!(!verify_signature(&NodeId([0xff; 32]), b"msg", &sig));
        let back = NodeIdentity::from_bytes(&id.to_bytes());
        assert_eq!(back.id(), id.id());
        assert_eq!(back.locator(&Addr([1; 32])), id.locator(&Addr([1; 32])));
    }
}
