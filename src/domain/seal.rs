//! Chunk encryption (docs/DESIGN.md §3): deterministic per-chunk ChaCha20-Poly1305 and `addr = blake3(ct)`.
//!
//! Each distinct plaintext gets its own key `K_c` derived from its chunk id, so the fixed nonce
//! is never used twice under one key with different plaintexts, and identical chunks produce
//! identical ciphertext (re-publishing is idempotent).

use crate::domain::ids::{Addr, ChunkId};
use crate::domain::keys::{ChunkKeys, VaultKeys};
use crate::domain::proof::Commitment;
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};

/// Bytes the AEAD tag adds to every chunk.
pub const TAG_LEN: usize = 16;

/// Why a chunk could not be opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    /// The bytes do not hash to the address they were fetched for.
    #[error("ciphertext does not match its address {0:?}")]
    AddrMismatch(Addr),
    /// Too short to hold an authentication tag.
    #[error("ciphertext of {0} bytes is too short")]
    TooShort(usize),
    /// Authentication failed: wrong key (a chunk id that is not this chunk's) or altered bytes.
    #[error("chunk failed authentication (wrong key or tampered data)")]
    Auth,
}

/// A chunk ready to publish.
#[derive(Clone)]
pub struct SealedChunk {
    /// Owner-private id of the plaintext.
    pub id: ChunkId,
    /// Network address: `blake3(ciphertext)`.
    pub addr: Addr,
    /// The encrypted bytes (plaintext length + 16).
    pub ciphertext: Vec<u8>,
    /// Public commitment `P = x·G` of this chunk's proof secret.
    pub commitment: Commitment,
}

/// Encrypts one chunk under a per-chunk key with a zero nonce.
pub fn encrypt_with_key(key: &[u8; 32], plaintext: &[u8]) -> Vec<u8> {
    let cipher = ChaCha20Poly1305::new(Key::from_slice(key));
    let mut buf = Vec::with_capacity(plaintext.len() + TAG_LEN);
    buf.extend_from_slice(plaintext);
    let tag = cipher
        .encrypt_in_place_detached(&Nonce::default(), b"", &mut buf)
        .unwrap_or_else(|_| unreachable!("chunk larger than the ChaCha20 limit"));
    buf.extend_from_slice(&tag);
    buf
}

/// Verifies `ciphertext` against `addr`, then decrypts it under a per-chunk key.
pub fn decrypt_with_key(key: &[u8; 32], addr: &Addr, ciphertext: &[u8]) -> Result<Vec<u8>, SealError> {
    decrypt_owned(key, addr, ciphertext.to_vec())
}

/// [`decrypt_with_key`] in place: the ciphertext's buffer becomes the plaintext (no copy).
pub fn decrypt_owned(key: &[u8; 32], addr: &Addr, mut buf: Vec<u8>) -> Result<Vec<u8>, SealError> {
    let len = decrypt_in_place(key, addr, &mut buf)?;
    buf.truncate(len);
    Ok(buf)
}

/// Verifies `buf` (a ciphertext) against `addr`, then decrypts it in place; the plaintext is the
/// first returned-length bytes of `buf` (the tag is left behind it).
pub fn decrypt_in_place(key: &[u8; 32], addr: &Addr, buf: &mut [u8]) -> Result<usize, SealError> {
    if Addr::of(buf) != *addr {
        return Err(SealError::AddrMismatch(*addr));
    }
    decrypt_checked_in_place(key, buf)
}

/// [`decrypt_in_place`] of a ciphertext already checked against its addr by whoever handed it
/// over (the fabric port returns only ciphertexts it checked): no second hash. The tag is still
/// checked.
pub fn decrypt_checked_in_place(key: &[u8; 32], buf: &mut [u8]) -> Result<usize, SealError> {
    let Some(len) = buf.len().checked_sub(TAG_LEN) else { return Err(SealError::TooShort(buf.len())) };
    let (body, tag) = buf.split_at_mut(len);
    ChaCha20Poly1305::new(Key::from_slice(key))
        .decrypt_in_place_detached(&Nonce::default(), b"", body, Tag::from_slice(tag))
        .map_err(|_| SealError::Auth)?;
    Ok(len)
}

impl VaultKeys {
    /// Chunk id, encryption, address and proof commitment for one plaintext data chunk.
    pub fn seal(&self, plaintext: &[u8]) -> SealedChunk {
        self.data().seal(plaintext)
    }

    /// Checks `ciphertext` against `addr` and decrypts it under the key of `id`.
    pub fn open(&self, id: &ChunkId, addr: &Addr, ciphertext: &[u8]) -> Result<Vec<u8>, SealError> {
        self.data().open(id, addr, ciphertext)
    }

    /// [`VaultKeys::open`] in place.
    pub fn open_owned(&self, id: &ChunkId, addr: &Addr, ciphertext: Vec<u8>) -> Result<Vec<u8>, SealError> {
        self.data().open_owned(id, addr, ciphertext)
    }
}

impl ChunkKeys {
    /// Chunk id, encryption, address and proof commitment for one plaintext chunk.
    pub fn seal(&self, plaintext: &[u8]) -> SealedChunk {
        let id = self.chunk_id(plaintext);
        let ciphertext = encrypt_with_key(&self.content_key(&id), plaintext);
        let addr = Addr::of(&ciphertext);
        let commitment = self.proof_secret(&addr).commitment();
        SealedChunk { id, addr, ciphertext, commitment }
    }

    /// Checks `ciphertext` against `addr` and decrypts it under the key of `id`.
    ///
    /// The plaintext is not hashed again to compare it with `id`: the key is derived from `id`,
    /// so a ciphertext sealed for any other chunk id fails the tag check (`Auth`), and one that
    /// passes is exactly what was sealed for `id`.
    pub fn open(&self, id: &ChunkId, addr: &Addr, ciphertext: &[u8]) -> Result<Vec<u8>, SealError> {
        self.open_owned(id, addr, ciphertext.to_vec())
    }

    /// [`ChunkKeys::open`] in place (the read path owns the ciphertext it fetched or read).
    pub fn open_owned(&self, id: &ChunkId, addr: &Addr, ciphertext: Vec<u8>) -> Result<Vec<u8>, SealError> {
        decrypt_owned(&self.content_key(id), addr, ciphertext)
    }

    /// [`ChunkKeys::open`] of a ciphertext in `buf`, in place; returns the plaintext's length.
    pub fn open_in_place(&self, id: &ChunkId, addr: &Addr, buf: &mut [u8]) -> Result<usize, SealError> {
        decrypt_in_place(&self.content_key(id), addr, buf)
    }

    /// [`ChunkKeys::open_in_place`] of a ciphertext already checked against its addr.
    pub fn open_checked_in_place(&self, id: &ChunkId, buf: &mut [u8]) -> Result<usize, SealError> {
        decrypt_checked_in_place(&self.content_key(id), buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::keys::MasterKey;
    use proptest::prelude::*;

    fn keys() -> VaultKeys {
        MasterKey::from_bytes([9; 32]).derive()
    }

    #[test]
    fn identical_chunks_seal_identically_and_distinct_ones_do_not() {
        let k = keys();
        let a = k.seal(b"hello");
        let b = k.seal(b"hello");
        let c = k.seal(b"hellp");
        assert_eq!(a.ciphertext, b.ciphertext);
        assert_eq!(a.addr, b.addr);
        assert_ne!(a.addr, c.addr);
        assert_ne!(a.commitment, c.commitment, "two chunks must not share a commitment");
    }

    #[test]
    fn ciphertext_does_not_contain_plaintext() {
        let plain = vec![b'A'; 4096];
        let s = keys().seal(&plain);
        assert!(!s.ciphertext.windows(16).any(|w| w == &plain[..16]));
    }

    #[test]
    fn tampering_is_caught_before_decryption() {
        let k = keys();
        let s = k.seal(b"some bytes");
        let mut bad = s.ciphertext.clone();
        bad[0] ^= 1;
        assert_eq!(k.open(&s.id, &s.addr, &bad), Err(SealError::AddrMismatch(s.addr)));
        // A matching addr for altered bytes still fails authentication.
        assert_eq!(k.open(&s.id, &Addr::of(&bad), &bad), Err(SealError::Auth));
    }

    #[test]
    fn a_chunk_id_that_is_not_the_chunks_fails_authentication() {
        let k = keys();
        let s = k.seal(b"one chunk");
        let other = k.seal(b"another chunk");
        assert_eq!(k.open(&other.id, &s.addr, &s.ciphertext), Err(SealError::Auth));
        let mut buf = s.ciphertext.clone();
        assert_eq!(k.data().open_in_place(&other.id, &s.addr, &mut buf), Err(SealError::Auth));
        let mut buf = s.ciphertext.clone();
        let len = k.data().open_in_place(&s.id, &s.addr, &mut buf).unwrap();
        assert_eq!(&buf[..len], b"one chunk");
        // Checked elsewhere against its addr: the tag still catches a wrong key or a flip.
        let mut buf = s.ciphertext.clone();
        assert_eq!(k.data().open_checked_in_place(&other.id, &mut buf), Err(SealError::Auth));
        let mut buf = s.ciphertext.clone();
        buf[2] ^= 1;
        assert_eq!(k.data().open_checked_in_place(&s.id, &mut buf), Err(SealError::Auth));
        let mut buf = s.ciphertext.clone();
        let len = k.data().open_checked_in_place(&s.id, &mut buf).unwrap();
        assert_eq!(&buf[..len], b"one chunk");
    }

    #[test]
    fn another_owner_cannot_open() {
        let s = keys().seal(b"secret");
        let other = MasterKey::from_bytes([3; 32]).derive();
        assert!(other.open(&s.id, &s.addr, &s.ciphertext).is_err());
    }

    proptest! {
        #[test]
        fn seal_open_round_trip(data in proptest::collection::vec(any::<u8>(), 0..5000)) {
            let k = keys();
            let s = k.seal(&data);
            prop_assert_eq!(s.ciphertext.len(), data.len() + TAG_LEN);
            prop_assert_eq!(k.open(&s.id, &s.addr, &s.ciphertext).unwrap(), data);
        }
    }
}
