//! The owner's master secret and every key derived from it (DESIGN §3).
//!
//! All derivations are BLAKE3 `derive_key` with a distinct, versioned context string, so no key
//! reveals another and none reveals the master secret.

use crate::domain::ids::{AckToken, Addr, ChunkId};
use crate::domain::proof::ProofSecret;
use ed25519_dalek::SigningKey;
use std::fmt;

/// Length of the master secret in bytes.
pub const MASTER_KEY_LEN: usize = 32;

const CTX_CHUNK_ID: &str = "quloud v1 chunk-id key";
const CTX_CONTENT: &str = "quloud v1 content key";
const CTX_PROOF: &str = "quloud v1 proof key";
const CTX_MANIFEST: &str = "quloud v1 manifest key";
const CTX_ROOT_SIGNING: &str = "quloud v1 root signing key";
const CTX_ACK_TOKEN: &str = "quloud v1 ack token";
const CTX_CHUNKER_SEED: &str = "quloud v1 chunker seed";
const CTX_SNAPSHOT_ID: &str = "quloud v1 snapshot chunk-id key";
const CTX_SNAPSHOT_CONTENT: &str = "quloud v1 snapshot content key";
const CTX_ROOT_BODY: &str = "quloud v1 root record body key";
const CTX_SHARE_ID: &str = "quloud v1 share chunk-id key";
const CTX_SHARE_CONTENT: &str = "quloud v1 share content key";

/// The owner's 32-byte master secret M. Everything else follows from it.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey([u8; MASTER_KEY_LEN]);

impl MasterKey {
    /// A fresh random master key.
    pub fn generate() -> Self {
        let mut b = [0u8; MASTER_KEY_LEN];
        crate::domain::random_bytes(&mut b);
        MasterKey(b)
    }

    /// Wraps existing key bytes.
    pub fn from_bytes(b: [u8; MASTER_KEY_LEN]) -> Self {
        MasterKey(b)
    }

    /// The raw secret (for writing the key file and the paper key only).
    pub fn as_bytes(&self) -> &[u8; MASTER_KEY_LEN] {
        &self.0
    }

    /// Derives the vault's working keys.
    pub fn derive(&self) -> VaultKeys {
        let d = |ctx: &str| blake3::derive_key(ctx, &self.0);
        let ack = d(CTX_ACK_TOKEN);
        let mut token = [0u8; 16];
        token.copy_from_slice(&ack[..16]);
        let proof = d(CTX_PROOF);
        let manifest = d(CTX_MANIFEST);
        let m = |ctx: &str| blake3::derive_key(ctx, &manifest);
        VaultKeys {
            data: ChunkKeys { chunk_id: d(CTX_CHUNK_ID), content: d(CTX_CONTENT), proof },
            snapshot: ChunkKeys { chunk_id: m(CTX_SNAPSHOT_ID), content: m(CTX_SNAPSHOT_CONTENT), proof },
            manifest,
            root_signing: SigningKey::from_bytes(&d(CTX_ROOT_SIGNING)),
            ack_token: AckToken(token),
            chunker_seed: u64::from_le_bytes(first8(&d(CTX_CHUNKER_SEED))),
        }
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<secret>)")
    }
}

/// The three keys that turn plaintext chunks into sealed, provable chunks: `chunk_id` names a
/// plaintext, `content` derives its encryption key from that id, `proof` derives the proof secret
/// of its addr. File data uses the vault's own; manifest snapshots and shared manifests use
/// their own `chunk_id` and `content` keys (from the manifest key or a share secret), so holding
/// them reveals nothing about file data, but the vault's `proof` key, so every chunk the owner
/// stores is audited, renewed and healed alike.
#[derive(Clone)]
pub struct ChunkKeys {
    chunk_id: [u8; 32],
    content: [u8; 32],
    proof: [u8; 32],
}

impl ChunkKeys {
    /// `chunk_id = keyed_hash(chunk-id key, plaintext)`.
    pub fn chunk_id(&self, plaintext: &[u8]) -> ChunkId {
        ChunkId(*blake3::keyed_hash(&self.chunk_id, plaintext).as_bytes())
    }

    /// Per-chunk encryption key `K_c = keyed_hash(content key, chunk_id)`.
    pub fn content_key(&self, id: &ChunkId) -> [u8; 32] {
        *blake3::keyed_hash(&self.content, &id.0).as_bytes()
    }

    /// The seed of a chunk's proof secret, `keyed_hash(proof key, addr)`: what a share
    /// capability hands over for each chunk (it reveals `x` for that chunk only).
    pub fn proof_seed(&self, addr: &Addr) -> [u8; 32] {
        *blake3::keyed_hash(&self.proof, &addr.0).as_bytes()
    }

    /// Per-chunk proof secret `x = to_scalar(keyed_hash(proof key, addr))`.
    pub fn proof_secret(&self, addr: &Addr) -> ProofSecret {
        ProofSecret::from_seed(&self.proof_seed(addr))
    }
}

/// Length of a share secret.
pub const SHARE_SECRET_LEN: usize = 32;

/// The keys derived from the master secret, held by the owner's processes.
#[derive(Clone)]
pub struct VaultKeys {
    data: ChunkKeys,
    snapshot: ChunkKeys,
    manifest: [u8; 32],
    root_signing: SigningKey,
    ack_token: AckToken,
    chunker_seed: u64,
}

fn first8(b: &[u8; 32]) -> [u8; 8] {
    let mut out = [0u8; 8];
    out.copy_from_slice(&b[..8]);
    out
}

impl VaultKeys {
    /// `chunk_id = keyed_hash(chunk-id key, plaintext)`.
    pub fn chunk_id(&self, plaintext: &[u8]) -> ChunkId {
        self.data.chunk_id(plaintext)
    }

    /// Per-chunk encryption key `K_c = keyed_hash(content key, chunk_id)`.
    pub fn content_key(&self, id: &ChunkId) -> [u8; 32] {
        self.data.content_key(id)
    }

    /// Per-chunk proof secret `x = to_scalar(keyed_hash(proof key, addr))`.
    pub fn proof_secret(&self, addr: &Addr) -> ProofSecret {
        self.data.proof_secret(addr)
    }

    /// The keys of file data chunks.
    pub fn data(&self) -> &ChunkKeys {
        &self.data
    }

    /// The keys of manifest snapshot pieces (from the manifest key; the vault's proof key).
    pub fn snapshot(&self) -> &ChunkKeys {
        &self.snapshot
    }

    /// The keys of a shared manifest's pieces, from its random share secret.
    pub fn share(&self, secret: &[u8; SHARE_SECRET_LEN]) -> ChunkKeys {
        ChunkKeys { proof: self.data.proof, ..share_piece_keys(secret) }
    }

    /// Key that encrypts the body of the vault's root records (from the manifest key).
    pub fn root_body_key(&self) -> [u8; 32] {
        blake3::derive_key(CTX_ROOT_BODY, &self.manifest)
    }

    /// Key that signs the vault's root record.
    pub fn root_signing_key(&self) -> &SigningKey {
        &self.root_signing
    }

    /// Secret seed of this vault's FastCDC gear table (hides chunk boundaries of known files).
    pub fn chunker_seed(&self) -> u64 {
        self.chunker_seed
    }

    /// Token naming this vault's ack subject.
    pub fn ack_token(&self) -> AckToken {
        self.ack_token
    }
}

/// The keys a share recipient derives from the share secret: enough to open the shared
/// manifest's pieces, whose proof secrets travel with the capability.
pub fn share_piece_keys(secret: &[u8; SHARE_SECRET_LEN]) -> ChunkKeys {
    let d = |ctx: &str| blake3::derive_key(ctx, secret);
    ChunkKeys { chunk_id: d(CTX_SHARE_ID), content: d(CTX_SHARE_CONTENT), proof: [0; 32] }
}

impl fmt::Debug for ChunkKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChunkKeys(<secret>)")
    }
}

impl fmt::Debug for VaultKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultKeys").field("ack_token", &self.ack_token).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_keys_are_distinct_and_deterministic() {
        let m = MasterKey::from_bytes([7; 32]);
        let a = m.derive();
        let b = m.derive();
        assert_eq!(a.chunk_id(b"x"), b.chunk_id(b"x"));
        let keys = [
            a.data.chunk_id,
            a.data.content,
            a.data.proof,
            a.snapshot.chunk_id,
            a.snapshot.content,
            a.manifest,
            a.root_body_key(),
            a.root_signing.to_bytes(),
        ];
        for i in 0..keys.len() {
            assert_ne!(keys[i], *m.as_bytes());
            for j in i + 1..keys.len() {
                assert_ne!(keys[i], keys[j]);
            }
        }
    }

    #[test]
    fn two_owners_get_different_chunk_ids_for_the_same_plaintext() {
        let a = MasterKey::from_bytes([1; 32]).derive();
        let b = MasterKey::from_bytes([2; 32]).derive();
        assert_ne!(a.chunk_id(b"family photo"), b.chunk_id(b"family photo"));
        assert_ne!(a.ack_token(), b.ack_token());
    }

    #[test]
    fn debug_never_prints_secrets() {
        let m = MasterKey::from_bytes([0xab; 32]);
        assert!(!format!("{m:?}").contains("ab"));
        assert!(!format!("{:?}", m.derive()).contains("abab"));
    }
}
