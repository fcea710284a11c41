//! Ed25519 signatures that plain `verify` accepts and `verify_strict` refuses, for the tests of
//! everything whose signature Quloud judges (root records, writer leases).

use curve25519_dalek::Scalar;
use ed25519_dalek::{Signature, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha512};

/// The encoding of the identity point, a point of small order.
const IDENTITY: [u8; 32] = {
    let mut b = [0u8; 32];
    b[0] = 1;
    b
};

/// A second valid signature of `msg` by `key`, different from the one `key.sign` makes: its R is
/// the identity point and s = k·a, where k = H(R ‖ A ‖ msg) and a is the secret scalar. Plain
/// `verify` checks only [s]B = R + [k]A and accepts it; `verify_strict` refuses the small-order R.
pub(crate) fn malleated(key: &SigningKey, msg: &[u8]) -> [u8; 64] {
    let hash = Sha512::digest(key.to_bytes());
    let mut a = [0u8; 32];
    a.copy_from_slice(&hash[..32]);
    a[0] &= 248;
    a[31] &= 127;
    a[31] |= 64;
    let a = Scalar::from_bytes_mod_order(a);
    let k_hash: [u8; 64] = Sha512::new()
        .chain_update(IDENTITY)
        .chain_update(key.verifying_key().as_bytes())
        .chain_update(msg)
        .finalize()
        .into();
    let s = Scalar::from_bytes_mod_order_wide(&k_hash) * a;
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&IDENTITY);
    sig[32..].copy_from_slice(s.as_bytes());
    let parsed = Signature::from_bytes(&sig);
    assert!(key.verifying_key().verify(msg, &parsed).is_ok(), "plain verify accepts it");
    assert!(key.verifying_key().verify_strict(msg, &parsed).is_err(), "verify_strict refuses it");
    sig
}

/// A key of small order (the identity point) and a signature that plain `verify` accepts for
/// every message under it: R = [0]B and s = 0. Anyone can make it; `verify_strict` refuses the
/// weak key.
pub(crate) fn weak_key_signature() -> (VerifyingKey, [u8; 64]) {
    let key = VerifyingKey::from_bytes(&IDENTITY).expect("the identity point decodes");
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&IDENTITY);
    assert!(key.verify(b"any message", &Signature::from_bytes(&sig)).is_ok());
    (key, sig)
}
