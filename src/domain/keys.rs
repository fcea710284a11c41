//! The owner's master secret and every key derived from it (docs/DESIGN.md §3).
//!
//! All derivations are BLAKE3 `derive_key` with a distinct, versioned context string, so no key
//! reveals another and none reveals the master secret.
//!
//! Every chunk has two proof secrets: the read secret `x` (from the proof key), which a share
//! hands over, and the control secret `y` (from the control key), which never leaves the owner and
//! alone authorises renew, delete and audit at nodes that hold the chunk's control commitment.
//!
//! The master key and every derived key are wiped from memory when dropped (`zeroize`).

use crate::domain::ids::{AckToken, Addr, ChunkId};
use crate::domain::proof::ProofSecret;
use ed25519_dalek::SigningKey;
use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Length of the master secret in bytes.
pub const MASTER_KEY_LEN: usize = 32;

const CTX_CHUNK_ID: &str = "quloud v1 chunk-id key";
const CTX_CONTENT: &str = "quloud v1 content key";
const CTX_PROOF: &str = "quloud v1 proof key";
const CTX_CONTROL: &str = "quloud v1 control key";
const CTX_MANIFEST: &str = "quloud v1 manifest key";
const CTX_ROOT_SIGNING: &str = "quloud v1 root signing key";
const CTX_ACK_TOKEN: &str = "quloud v1 ack token";
const CTX_CHUNKER_SEED: &str = "quloud v1 chunker seed";
const CTX_SNAPSHOT_ID: &str = "quloud v1 snapshot chunk-id key";
const CTX_SNAPSHOT_CONTENT: &str = "quloud v1 snapshot content key";
const CTX_ROOT_BODY: &str = "quloud v1 root record body key";
const CTX_SHARE_ID: &str = "quloud v1 share chunk-id key";
const CTX_SHARE_CONTENT: &str = "quloud v1 share content key";
const CTX_SHARE_CHUNKER: &str = "quloud v1 share chunker seed";

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
        let (proof, control) = (d(CTX_PROOF), Some(d(CTX_CONTROL)));
        let manifest = d(CTX_MANIFEST);
        let m = |ctx: &str| blake3::derive_key(ctx, &manifest);
        VaultKeys {
            data: ChunkKeys { chunk_id: d(CTX_CHUNK_ID), content: d(CTX_CONTENT), proof, control },
            snapshot: ChunkKeys {
                chunk_id: m(CTX_SNAPSHOT_ID),
                content: m(CTX_SNAPSHOT_CONTENT),
                proof,
                control,
            },
            manifest,
            root_signing: SigningKey::from_bytes(&d(CTX_ROOT_SIGNING)),
            ack_token: AckToken(token),
            chunker_seed: u64::from_le_bytes(first8(&d(CTX_CHUNKER_SEED))),
        }
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl ZeroizeOnDrop for MasterKey {}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<secret>)")
    }
}

/// The keys that turn plaintext chunks into sealed, provable chunks: `chunk_id` names a
/// plaintext, `content` derives its encryption key from that id, `proof` derives the read secret
/// of its addr and `control` (the owner's only) its control secret. File data uses the vault's
/// own; manifest snapshots and shared manifests use their own `chunk_id` and `content` keys (from
/// the manifest key or a share secret), so holding them reveals nothing about file data, but the
/// vault's `proof` and `control` keys, so every chunk the owner stores is audited, renewed and
/// healed alike.
#[derive(Clone)]
pub struct ChunkKeys {
    chunk_id: [u8; 32],
    content: [u8; 32],
    proof: [u8; 32],
    control: Option<[u8; 32]>,
}

impl Drop for ChunkKeys {
    fn drop(&mut self) {
        self.chunk_id.zeroize();
        self.content.zeroize();
        self.proof.zeroize();
        if let Some(c) = self.control.as_mut() {
            c.zeroize();
        }
    }
}

impl ZeroizeOnDrop for ChunkKeys {}

impl ChunkKeys {
    /// `chunk_id = keyed_hash(chunk-id key, plaintext)`.
    pub fn chunk_id(&self, plaintext: &[u8]) -> ChunkId {
        ChunkId(*blake3::keyed_hash(&self.chunk_id, plaintext).as_bytes())
    }

    /// Per-chunk encryption key `K_c = keyed_hash(content key, chunk_id)`, wiped when dropped.
    pub fn content_key(&self, id: &ChunkId) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(*blake3::keyed_hash(&self.content, &id.0).as_bytes())
    }

    /// The seed of a chunk's read secret, `keyed_hash(proof key, addr)`: what a share
    /// capability hands over for each chunk (it reveals `x` for that chunk only, and nothing of
    /// its control secret).
    pub fn proof_seed(&self, addr: &Addr) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(*blake3::keyed_hash(&self.proof, &addr.0).as_bytes())
    }

    /// The chunk's read secret alone, `x = to_scalar(keyed_hash(proof key, addr))`: what a share
    /// recipient rebuilds from [`ChunkKeys::proof_seed`].
    pub fn read_secret(&self, addr: &Addr) -> ProofSecret {
        ProofSecret::from_seed(&self.proof_seed(addr))
    }

    /// The chunk's secrets as its owner holds them: the read secret `x` with the control secret
    /// `y = to_scalar(keyed_hash(control key, addr))` attached (none for a share's keys).
    pub fn proof_secret(&self, addr: &Addr) -> ProofSecret {
        let read = self.read_secret(addr);
        match &self.control {
            Some(key) => {
                let mut seed = *blake3::keyed_hash(key, &addr.0).as_bytes();
                let secret = read.with_control(ProofSecret::from_seed(&seed));
                seed.zeroize();
                secret
            }
            None => read,
        }
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

    /// Per-chunk encryption key `K_c = keyed_hash(content key, chunk_id)`, wiped when dropped.
    pub fn content_key(&self, id: &ChunkId) -> Zeroizing<[u8; 32]> {
        self.data.content_key(id)
    }

    /// A data chunk's secrets: read secret `x` with control secret `y` attached.
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
        let piece = share_piece_keys(secret);
        ChunkKeys {
            chunk_id: piece.chunk_id,
            content: piece.content,
            proof: self.data.proof,
            control: self.data.control,
        }
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
    ChunkKeys { chunk_id: d(CTX_SHARE_ID), content: d(CTX_SHARE_CONTENT), proof: [0; 32], control: None }
}

/// The seed that cuts a shared manifest into pieces, from the share secret: a share's manifest
/// boundaries follow nothing of the vault's own chunker seed.
pub fn share_chunker_seed(secret: &[u8; SHARE_SECRET_LEN]) -> u64 {
    u64::from_le_bytes(first8(&blake3::derive_key(CTX_SHARE_CHUNKER, secret)))
}

impl Drop for VaultKeys {
    fn drop(&mut self) {
        // `data`, `snapshot` and the signing key wipe themselves.
        self.manifest.zeroize();
        self.chunker_seed.zeroize();
    }
}

impl ZeroizeOnDrop for VaultKeys {}

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

    /// Issue 24 item 1: the seed a share carries rebuilds the read secret only; the control
    /// secret comes from a key of its own, so the read secret reveals nothing of it.
    #[test]
    fn a_share_seed_yields_the_read_secret_and_nothing_of_the_control_secret() {
        let keys = MasterKey::from_bytes([7; 32]).derive();
        let addr = Addr([3; 32]);
        let owner = keys.proof_secret(&addr);
        let shared = ProofSecret::from_seed(&keys.data().proof_seed(&addr));
        assert_eq!(shared.commitment(), owner.commitment());
        assert!(shared.control().is_none());
        let q = owner.control_commitment().expect("the owner holds a control secret");
        assert_ne!(q, owner.commitment());
        assert_ne!(keys.data.control, Some(keys.data.proof));
        // Snapshot and share-manifest pieces are controlled by the vault's control key too.
        assert_eq!(keys.snapshot().proof_secret(&addr).control_commitment(), Some(q));
        assert_eq!(keys.share(&[1; 32]).proof_secret(&addr).control_commitment(), Some(q));
        // A recipient's own keys for the shared manifest carry no control secret.
        assert!(share_piece_keys(&[1; 32]).proof_secret(&addr).control().is_none());
        assert!(keys.data().read_secret(&addr).control().is_none());
    }

    /// Issue 24 item 6: the master key and every derived key wipe themselves when dropped
    /// (`ZeroizeOnDrop`; before, nothing did, and this did not compile).
    #[test]
    fn keys_are_wiped_on_drop() {
        fn wiped_on_drop<T: ZeroizeOnDrop>() {}
        wiped_on_drop::<MasterKey>();
        wiped_on_drop::<VaultKeys>();
        wiped_on_drop::<ChunkKeys>();
        wiped_on_drop::<SigningKey>();
    }

    /// Issue 24 item 5: a shared manifest is cut with a seed of the share's own, not the vault's.
    #[test]
    fn a_share_cuts_its_manifest_with_a_seed_of_its_own() {
        let keys = MasterKey::from_bytes([7; 32]).derive();
        let (a, b) = (share_chunker_seed(&[1; 32]), share_chunker_seed(&[2; 32]));
        assert_ne!(a, keys.chunker_seed());
        assert_ne!(a, b);
        assert_eq!(a, share_chunker_seed(&[1; 32]));
    }

    #[test]
    fn debug_never_prints_secrets() {
        let m = MasterKey::from_bytes([0xab; 32]);
        assert!(!format!("{m:?}").contains("ab"));
        assert!(!format!("{:?}", m.derive()).contains("abab"));
    }
}
