//! Schnorr proof of knowledge of a chunk's proof secret (docs/DESIGN.md §4), bound to one request.
//!
//! Statement: "I know `x` such that `P = x·G`", with `G` the generator of BN254 G1
//! (prime order `r`, cofactor 1). The proof is made non-interactive with Fiat–Shamir:
//! the challenge is BLAKE3 in derive-key mode (`"quloud v1 schnorr challenge"`) over
//! the fixed-width transcript
//! `purpose (1) ‖ P (64) ‖ R (64) ‖ addr (32) ‖ target (32) ‖ timestamp_ms (8, LE) ‖ request_id (16)`,
//! 64 bytes of XOF output reduced mod `r`. Every field has a fixed width, so the
//! transcript is unambiguous.
//!
//! Encodings (all little-endian, no compression, so decoding costs no square root):
//! * scalar: 32 bytes, canonical (`< r`);
//! * point: `x ‖ y`, each coordinate 32 bytes canonical (`< p`); the point must lie
//!   on the curve, which implies it is in G1 (cofactor 1). The identity has no
//!   encoding and is always rejected;
//! * [`Commitment`]: one point ([`COMMITMENT_LEN`] = 64 bytes);
//! * [`Proof`]: `R ‖ s` ([`PROOF_LEN`] = 96 bytes).
//!
//! Side channels: scalar multiplications are variable-time (as is arkworks itself);
//! the module assumes the prover is not exposed to fine-grained timing observation.

use std::fmt;
use std::sync::OnceLock;

use ark_bn254::{Fq, Fr, G1Affine};
use ark_ec::CurveGroup;
use ark_ff::{BigInt, BigInteger, Field, PrimeField, Zero};
use rand_core::{OsRng, RngCore};

use msm::{mul_generator, Terms};

mod msm;

#[cfg(test)]
mod adversarial_tests;

/// Byte length of an encoded [`Commitment`] (uncompressed affine `x ‖ y`).
pub const COMMITMENT_LEN: usize = 64;
/// Byte length of an encoded [`Proof`] (`R ‖ s`).
pub const PROOF_LEN: usize = COMMITMENT_LEN + SCALAR_LEN;

const SCALAR_LEN: usize = 32;
const CHALLENGE_DOMAIN: &str = "quloud v1 schnorr challenge";
const NONCE_DOMAIN: &str = "quloud v1 schnorr nonce";
const SEED_DOMAIN: &str = "quloud v1 schnorr secret from zero seed";
const WEIGHT_DOMAIN: &str = "quloud v1 schnorr batch weights";

/// Errors from decoding or verifying proofs.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum ProofError {
    /// The input has the wrong length for the type being decoded.
    #[error("malformed encoding: expected {expected} bytes, got {got}")]
    MalformedEncoding {
        /// Required length.
        expected: usize,
        /// Length received.
        got: usize,
    },
    /// A point coordinate is non-canonical, or the point is not on BN254 G1.
    #[error("invalid point: not a canonical encoding of a non-identity BN254 G1 point")]
    InvalidPoint,
    /// A scalar encoding is not the canonical one (it is `>=` the group order).
    #[error("non-canonical scalar: value is not below the group order")]
    NonCanonicalScalar,
    /// A proof secret of zero was supplied.
    #[error("invalid proof secret: zero")]
    ZeroSecret,
    /// The proof (or one proof of a batch) does not verify.
    #[error("proof verification failed")]
    VerificationFailed,
}

/// The secret exponent `x` of a chunk (its read secret); never printed by `Debug`.
///
/// The owner's secret of a chunk also carries the chunk's control secret `y` (commitment `Q`,
/// derived from a key of its own, never from `x`): proofs for renew, delete and audit are made
/// with it. A secret rebuilt from a share's seed ([`ProofSecret::from_seed`]) carries none, so it
/// can only read.
#[derive(Clone)]
pub struct ProofSecret {
    x: Fr,
    public: Commitment,
    control: Option<Box<ProofSecret>>,
}

impl ProofSecret {
    /// Derives the secret deterministically: `x = seed mod r` (little-endian).
    /// A seed reducing to zero is re-derived through BLAKE3 so `x` is never zero.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let mut x = Fr::from_le_bytes_mod_order(seed);
        let mut counter = 0u8;
        while x.is_zero() {
            let mut h = blake3::Hasher::new_derive_key(SEED_DOMAIN);
            h.update(seed);
            h.update(&[counter]);
            x = wide_scalar(&h);
            counter = counter.wrapping_add(1);
        }
        Self::from_scalar(x)
    }

    /// Canonical 32-byte little-endian encoding of `x`.
    pub fn to_bytes(&self) -> [u8; 32] {
        scalar_to_bytes(&self.x)
    }

    /// Decodes a canonical, non-zero secret produced by [`ProofSecret::to_bytes`].
    pub fn from_bytes(b: &[u8; 32]) -> Result<Self, ProofError> {
        let x = scalar_from_bytes(b)?;
        if x.is_zero() {
            return Err(ProofError::ZeroSecret);
        }
        Ok(Self::from_scalar(x))
    }

    /// The public commitment `P = x·G` (cached, no computation).
    pub fn commitment(&self) -> Commitment {
        self.public
    }

    /// This read secret with the chunk's control secret attached (the owner's view of a chunk).
    pub fn with_control(mut self, control: ProofSecret) -> Self {
        self.control = Some(Box::new(control.read_only()));
        self
    }

    /// The control secret `y`, if this is the owner's secret of the chunk.
    pub fn control(&self) -> Option<&ProofSecret> {
        self.control.as_deref()
    }

    /// The control commitment `Q = y·G`, if this is the owner's secret of the chunk.
    pub fn control_commitment(&self) -> Option<Commitment> {
        self.control.as_ref().map(|c| c.public)
    }

    /// The read secret alone (what a share hands over).
    pub fn read_only(&self) -> ProofSecret {
        ProofSecret { x: self.x, public: self.public, control: None }
    }

    fn from_scalar(x: Fr) -> Self {
        let public = Commitment(mul_generator(&x).into_affine());
        Self { x, public, control: None }
    }
}

impl fmt::Debug for ProofSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let control = if self.control.is_some() { ", with control" } else { "" };
        write!(f, "ProofSecret(<redacted>, commitment {:?}{control})", self.public)
    }
}

impl Drop for ProofSecret {
    fn drop(&mut self) {
        // Best-effort wipe of the scalar (arkworks types do not implement `Zeroize`); a volatile
        // write through `black_box` discourages elision. The control secret wipes itself.
        self.x = Fr::zero();
        std::hint::black_box(&self.x);
    }
}

/// Public commitment `P = x·G` to a chunk's proof secret; never the identity.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Commitment(G1Affine);

impl Commitment {
    /// Uncompressed encoding `x ‖ y`, each coordinate 32 bytes little-endian.
    pub fn to_bytes(&self) -> [u8; COMMITMENT_LEN] {
        point_to_bytes(&self.0)
    }

    /// Decodes and validates (length, canonical coordinates, on curve, not identity).
    pub fn from_bytes(b: &[u8]) -> Result<Self, ProofError> {
        let b: &[u8; COMMITMENT_LEN] = b.try_into().map_err(|_| len_err(COMMITMENT_LEN, b))?;
        point_from_bytes(b).map(Self)
    }
}

impl fmt::Debug for Commitment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Commitment(")?;
        for byte in &self.to_bytes()[..8] {
            write!(f, "{byte:02x}")?;
        }
        f.write_str("…)")
    }
}

/// What a proof authorises; bound into the challenge as one byte.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Purpose {
    /// Read a chunk.
    Get = 1,
    /// Prove continued storage of a chunk.
    Audit = 2,
    /// Extend a chunk's lease.
    Renew = 3,
    /// Delete a chunk.
    Delete = 4,
}

impl Purpose {
    /// Whether this purpose needs the control right (renew, delete, audit) rather than the read
    /// right (get).
    pub fn is_control(self) -> bool {
        self != Purpose::Get
    }
}

impl Purpose {
    /// Parses the wire byte of a purpose; `None` for unknown values.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Self::Get),
            2 => Some(Self::Audit),
            3 => Some(Self::Renew),
            4 => Some(Self::Delete),
            _ => None,
        }
    }
}

/// The request a proof is bound to; every field is covered by the challenge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProofContext {
    /// Operation being authorised.
    pub purpose: Purpose,
    /// Content address of the chunk.
    pub addr: [u8; 32],
    /// Node id the request is addressed to; all-zero means "any node".
    pub target: [u8; 32],
    /// Request time, unix milliseconds.
    pub timestamp_ms: u64,
    /// Random per-request identifier (replay protection).
    pub request_id: [u8; 16],
}

/// A Schnorr proof `(R, s)` with `s·G = R + c·P`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Proof {
    r: G1Affine,
    s: Fr,
}

impl Proof {
    /// Encoding `R ‖ s`: `R` as for [`Commitment::to_bytes`], `s` 32 bytes little-endian.
    pub fn to_bytes(&self) -> [u8; PROOF_LEN] {
        let mut out = [0u8; PROOF_LEN];
        out[..COMMITMENT_LEN].copy_from_slice(&point_to_bytes(&self.r));
        out[COMMITMENT_LEN..].copy_from_slice(&scalar_to_bytes(&self.s));
        out
    }

    /// Decodes and validates (length, `R` on curve and not identity, `s < r`).
    pub fn from_bytes(b: &[u8]) -> Result<Self, ProofError> {
        let b: &[u8; PROOF_LEN] = b.try_into().map_err(|_| len_err(PROOF_LEN, b))?;
        let (r, s) = b.split_at(COMMITMENT_LEN);
        let r = point_from_bytes(r.try_into().map_err(|_| len_err(COMMITMENT_LEN, r))?)?;
        let s = scalar_from_bytes(s.try_into().map_err(|_| len_err(SCALAR_LEN, s))?)?;
        Ok(Self { r, s })
    }
}

/// Proves knowledge of `secret` for the request `ctx`.
///
/// The nonce is hedged: `k = H(x, ctx, 32 bytes from the OS RNG) mod r`, so neither a
/// weak RNG nor repeated contexts alone can leak `x`.
pub fn prove(secret: &ProofSecret, ctx: &ProofContext) -> Proof {
    let p_bytes = secret.public.to_bytes();
    loop {
        let mut entropy = [0u8; 32];
        OsRng.fill_bytes(&mut entropy);
        let mut h = blake3::Hasher::new_derive_key(NONCE_DOMAIN);
        h.update(&scalar_to_bytes(&secret.x));
        h.update(&entropy);
        absorb_context(&mut h, ctx);
        let k = wide_scalar(&h);
        if k.is_zero() {
            continue;
        }
        let r = mul_generator(&k).into_affine();
        let c = challenge(&p_bytes, &point_to_bytes(&r), ctx);
        return Proof { r, s: k + c * secret.x };
    }
}

/// Verifies one proof: `s·G − c·P == R`.
///
/// `s·G − c·P` is one interleaved multiplication over four ~128-bit scalars (both full-size
/// scalars split with the GLV endomorphism), so the doublings are shared.
pub fn verify(commitment: &Commitment, ctx: &ProofContext, proof: &Proof) -> Result<(), ProofError> {
    let c = challenge(&commitment.to_bytes(), &point_to_bytes(&proof.r), ctx);
    let mut terms = Terms::with_capacity(4);
    terms.push_generator(&proof.s);
    terms.push_glv(-commitment.0, &c);
    if terms.sum() == proof.r {
        Ok(())
    } else {
        Err(ProofError::VerificationFailed)
    }
}

/// Verifies many proofs at once with random 128-bit weights `z_i`:
/// `(Σ z_i s_i)·G − Σ z_i R_i − Σ (z_i c_i) P_i == 0`, one multi-scalar multiplication.
///
/// Soundness: write `D_i = s_i·G − R_i − c_i·P_i`. Every point was validated on decoding and
/// BN254 G1 has prime order `r` (cofactor 1), so `D_i = d_i·G` for some `d_i mod r`, and proof
/// `i` is valid exactly when `d_i = 0`. The batch passes when `Σ z_i d_i ≡ 0 (mod r)`. If some
/// `d_j ≠ 0`, then for any fixed values of the other weights exactly one residue of `z_j`
/// passes, and `z_j` is uniform on `[0, 2^128)` with `2^128 < r`, independent of the items:
/// a batch with a bad proof passes with probability at most `2^-128`, the same as the
/// challenge space of a single proof allows. The weights come from 32 fresh bytes of the OS RNG
/// per call (hashed with the batch's challenges and responses, so a weak RNG alone still gives
/// batch-dependent weights); they are drawn after the items are fixed and never leave this
/// function.
///
/// Every full-size scalar is split with the GLV endomorphism so the MSM runs over ~128-bit
/// scalars. An empty batch is valid. On failure it does not say which item is bad; callers
/// should fall back to [`verify`] per item.
pub fn batch_verify(items: &[(Commitment, ProofContext, Proof)]) -> Result<(), ProofError> {
    match items {
        [] => return Ok(()),
        [(p, ctx, proof)] => return verify(p, ctx, proof),
        _ => {}
    }
    let challenges: Vec<Fr> = items
        .iter()
        .map(|(p, ctx, proof)| challenge(&p.to_bytes(), &point_to_bytes(&proof.r), ctx))
        .collect();
    let weights = batch_weights(items, &challenges);
    let mut terms = Terms::with_capacity(3 * items.len() + 2);
    let mut s_sum = Fr::zero();
    for (((p, _, proof), c), &z) in items.iter().zip(&challenges).zip(&weights) {
        let z_fr = Fr::from(z);
        s_sum += z_fr * proof.s;
        // Negate the points, not the scalars, so every scalar stays short.
        terms.push(proof.r, (true, z));
        terms.push_glv(-p.0, &(z_fr * c));
    }
    terms.push_generator(&s_sum);
    if terms.sum().is_zero() {
        Ok(())
    } else {
        Err(ProofError::VerificationFailed)
    }
}

/// One uniform 128-bit weight per item: BLAKE3 XOF keyed by 32 fresh bytes from the OS RNG,
/// hedged with the batch's challenges and responses.
fn batch_weights(items: &[(Commitment, ProofContext, Proof)], challenges: &[Fr]) -> Vec<u128> {
    let mut key = [0u8; 32];
    OsRng.fill_bytes(&mut key);
    let mut h = blake3::Hasher::new_derive_key(WEIGHT_DOMAIN);
    h.update(&key);
    for ((_, _, proof), c) in items.iter().zip(challenges) {
        h.update(&scalar_to_bytes(c));
        h.update(&scalar_to_bytes(&proof.s));
    }
    let mut xof = h.finalize_xof();
    let mut bytes = vec![0u8; 16 * items.len()];
    xof.fill(&mut bytes);
    bytes.chunks_exact(16).map(|z| u128::from_le_bytes(z.try_into().unwrap_or([0; 16]))).collect()
}

fn absorb_context(h: &mut blake3::Hasher, ctx: &ProofContext) {
    h.update(&[ctx.purpose as u8]);
    h.update(&ctx.addr);
    h.update(&ctx.target);
    h.update(&ctx.timestamp_ms.to_le_bytes());
    h.update(&ctx.request_id);
}

fn challenge(p: &[u8; COMMITMENT_LEN], r: &[u8; COMMITMENT_LEN], ctx: &ProofContext) -> Fr {
    static KEYED: OnceLock<blake3::Hasher> = OnceLock::new();
    let mut h = KEYED.get_or_init(|| blake3::Hasher::new_derive_key(CHALLENGE_DOMAIN)).clone();
    h.update(&[ctx.purpose as u8]);
    h.update(p);
    h.update(r);
    h.update(&ctx.addr);
    h.update(&ctx.target);
    h.update(&ctx.timestamp_ms.to_le_bytes());
    h.update(&ctx.request_id);
    wide_scalar(&h)
}

/// 64 bytes of XOF output reduced mod r (bias < 2^-250).
fn wide_scalar(h: &blake3::Hasher) -> Fr {
    let mut wide = [0u8; 64];
    h.finalize_xof().fill(&mut wide);
    reduce_wide(&wide)
}

/// Same value as `Fr::from_le_bytes_mod_order(b)`, ~10x faster: `lo + hi·2^256 mod r`.
fn reduce_wide(b: &[u8; 64]) -> Fr {
    static SHIFT: OnceLock<Fr> = OnceLock::new();
    let shift = SHIFT.get_or_init(|| Fr::from(2u64).pow([256]));
    let reduce = |half: &[u8]| {
        let mut v = limbs_from_le(half.try_into().unwrap_or(&[0; 32]));
        while v >= Fr::MODULUS {
            v.sub_with_borrow(&Fr::MODULUS);
        }
        Fr::from_bigint(v).unwrap_or_default()
    };
    reduce(&b[..32]) + reduce(&b[32..]) * shift
}

fn len_err(expected: usize, b: &[u8]) -> ProofError {
    ProofError::MalformedEncoding { expected, got: b.len() }
}

fn limbs_from_le(b: &[u8; 32]) -> BigInt<4> {
    let mut limbs = [0u64; 4];
    for (limb, chunk) in limbs.iter_mut().zip(b.chunks_exact(8)) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        *limb = u64::from_le_bytes(w);
    }
    BigInt::new(limbs)
}

fn limbs_to_le(limbs: BigInt<4>, out: &mut [u8]) {
    for (chunk, limb) in out.chunks_exact_mut(8).zip(limbs.0) {
        chunk.copy_from_slice(&limb.to_le_bytes());
    }
}

fn scalar_to_bytes(s: &Fr) -> [u8; 32] {
    let mut out = [0u8; 32];
    limbs_to_le(s.into_bigint(), &mut out);
    out
}

fn scalar_from_bytes(b: &[u8; 32]) -> Result<Fr, ProofError> {
    Fr::from_bigint(limbs_from_le(b)).ok_or(ProofError::NonCanonicalScalar)
}

fn point_to_bytes(p: &G1Affine) -> [u8; COMMITMENT_LEN] {
    let mut out = [0u8; COMMITMENT_LEN];
    limbs_to_le(p.x.into_bigint(), &mut out[..32]);
    limbs_to_le(p.y.into_bigint(), &mut out[32..]);
    out
}

fn point_from_bytes(b: &[u8; COMMITMENT_LEN]) -> Result<G1Affine, ProofError> {
    let (xb, yb) = b.split_at(32);
    let coord = |c: &[u8]| -> Result<Fq, ProofError> {
        let c: &[u8; 32] = c.try_into().map_err(|_| ProofError::InvalidPoint)?;
        Fq::from_bigint(limbs_from_le(c)).ok_or(ProofError::InvalidPoint)
    };
    // `new_unchecked` never yields the identity, and (0, 0) is not on y² = x³ + 3.
    let p = G1Affine::new_unchecked(coord(xb)?, coord(yb)?);
    // Cofactor 1: on the curve implies in the prime-order group.
    if p.is_on_curve() {
        Ok(p)
    } else {
        Err(ProofError::InvalidPoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ark_ec::AffineRepr;
    use ark_serialize::CanonicalSerialize;

    /// SplitMix64: tiny deterministic RNG for test inputs (the MSM tests add their own draws).
    pub(super) struct TestRng(pub(super) u64);

    impl TestRng {
        pub(super) fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn bytes<const N: usize>(&mut self) -> [u8; N] {
            let mut out = [0u8; N];
            self.fill(&mut out);
            out
        }

        fn fill(&mut self, out: &mut [u8]) {
            for b in out {
                *b = self.next() as u8;
            }
        }
    }

    fn ctx(rng: &mut TestRng) -> ProofContext {
        ProofContext {
            purpose: Purpose::Audit,
            addr: rng.bytes(),
            target: rng.bytes(),
            timestamp_ms: 1_700_000_000_000 + rng.next() % 1_000_000,
            request_id: rng.bytes(),
        }
    }

    fn secret(rng: &mut TestRng) -> ProofSecret {
        ProofSecret::from_seed(&rng.bytes())
    }

    fn batch(rng: &mut TestRng, n: usize) -> Vec<(Commitment, ProofContext, Proof)> {
        (0..n)
            .map(|_| {
                let sk = secret(rng);
                let c = ctx(rng);
                (sk.commitment(), c, prove(&sk, &c))
            })
            .collect()
    }

    #[test]
    fn completeness_and_roundtrip() {
        let mut rng = TestRng(1);
        for purpose in [Purpose::Get, Purpose::Audit, Purpose::Renew, Purpose::Delete] {
            let sk = secret(&mut rng);
            let c = ProofContext { purpose, ..ctx(&mut rng) };
            let proof = prove(&sk, &c);
            assert_eq!(verify(&sk.commitment(), &c, &proof), Ok(()));
            let proof2 = Proof::from_bytes(&proof.to_bytes()).unwrap();
            let cm2 = Commitment::from_bytes(&sk.commitment().to_bytes()).unwrap();
            assert_eq!((proof2, cm2), (proof, sk.commitment()));
            assert_eq!(verify(&cm2, &c, &proof2), Ok(()));
            let sk2 = ProofSecret::from_bytes(&sk.to_bytes()).unwrap();
            assert_eq!(sk2.commitment(), sk.commitment());
            assert_eq!(Purpose::from_byte(purpose as u8), Some(purpose));
        }
        assert_eq!(Purpose::from_byte(0), None);
        assert_eq!(Purpose::from_byte(5), None);
    }

    #[test]
    fn altered_context_fails() {
        let mut rng = TestRng(3);
        let sk = secret(&mut rng);
        let c = ctx(&mut rng);
        let proof = prove(&sk, &c);
        let p = sk.commitment();
        let mut altered = Vec::new();
        for purpose in [Purpose::Get, Purpose::Renew, Purpose::Delete] {
            altered.push(ProofContext { purpose, ..c });
        }
        for i in 0..32 {
            let mut x = c;
            x.addr[i] ^= 1;
            altered.push(x);
            let mut x = c;
            x.target[i] ^= 0x80;
            altered.push(x);
        }
        altered.push(ProofContext { target: [0; 32], ..c });
        altered.push(ProofContext { timestamp_ms: c.timestamp_ms + 1, ..c });
        altered.push(ProofContext { timestamp_ms: c.timestamp_ms ^ (1 << 63), ..c });
        for i in 0..16 {
            let mut x = c;
            x.request_id[i] ^= 4;
            altered.push(x);
        }
        for a in altered {
            assert_ne!(a, c);
            assert_eq!(verify(&p, &a, &proof), Err(ProofError::VerificationFailed));
        }
        assert_eq!(verify(&p, &c, &proof), Ok(()));
    }

    #[test]
    fn altered_proof_commitment_or_secret_fails() {
        let mut rng = TestRng(4);
        let sk = secret(&mut rng);
        let c = ctx(&mut rng);
        let proof = prove(&sk, &c);
        let p = sk.commitment();
        let fail = Err(ProofError::VerificationFailed);
        let bad_r = Proof { r: (proof.r + G1Affine::generator()).into_affine(), ..proof };
        assert_eq!(verify(&p, &c, &bad_r), fail);
        let bad_s = Proof { s: proof.s + Fr::from(1u64), ..proof };
        assert_eq!(verify(&p, &c, &bad_s), fail);
        let other = secret(&mut rng);
        assert_eq!(verify(&other.commitment(), &c, &proof), fail);
        assert_eq!(verify(&p, &c, &prove(&other, &c)), fail);
        // Flipping any single bit of the encoding either fails to decode or to verify.
        let enc = proof.to_bytes();
        for bit in 0..PROOF_LEN * 8 {
            let mut e = enc;
            e[bit / 8] ^= 1 << (bit % 8);
            if let Ok(q) = Proof::from_bytes(&e) {
                assert_eq!(verify(&p, &c, &q), fail);
            }
        }
    }

    #[test]
    fn batch_verify_rejects_one_forgery_among_valid_proofs_at_every_size() {
        let mut rng = TestRng(13);
        let valid = batch(&mut rng, 256);
        let fail = Err(ProofError::VerificationFailed);
        // Sizes on both sides of the wNAF/Pippenger switch and of the window-width changes.
        for n in [2usize, 3, 7, 8, 9, 16, 31, 32, 33, 64, 100, 255, 256] {
            let items = &valid[..n];
            assert_eq!(batch_verify(items), Ok(()), "n = {n}");
            for at in [0, n / 2, n - 1] {
                let other = valid[(at + 1) % n];
                let forgeries = [
                    (items[at].0, items[at].1, Proof { s: items[at].2.s + Fr::from(1u64), ..items[at].2 }),
                    (items[at].0, items[at].1, Proof { r: other.2.r, ..items[at].2 }),
                    (other.0, items[at].1, items[at].2),
                    (items[at].0, ProofContext { request_id: [0; 16], ..items[at].1 }, items[at].2),
                ];
                for forged in forgeries {
                    let mut bad = items.to_vec();
                    bad[at] = forged;
                    assert_eq!(batch_verify(&bad), fail, "n = {n}, at = {at}");
                }
            }
            // Two errors that cancel under equal weights must still be caught.
            let mut bad = items.to_vec();
            let delta = Fr::from(rng.next());
            bad[0].2.s += delta;
            bad[n - 1].2.s -= delta;
            assert_eq!(batch_verify(&bad), fail, "n = {n}, cancelling pair");
        }
    }

    #[test]
    fn batch_weights_are_fresh_per_call() {
        let mut rng = TestRng(14);
        let items = batch(&mut rng, 8);
        let challenges: Vec<Fr> =
            items.iter().map(|(p, c, q)| challenge(&p.to_bytes(), &point_to_bytes(&q.r), c)).collect();
        let first = batch_weights(&items, &challenges);
        let second = batch_weights(&items, &challenges);
        assert_eq!(first.len(), items.len());
        assert_ne!(first, second, "same batch, same weights twice");
        let mut all: Vec<u128> = first.iter().chain(&second).copied().collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 2 * items.len(), "weights repeat");
        // Full 128-bit range in use: some weight has its top byte set.
        assert!(first.iter().chain(&second).any(|z| z >> 120 != 0));
    }

    #[test]
    fn batch_verify_valid_and_one_bad_in_64() {
        let mut rng = TestRng(5);
        assert_eq!(batch_verify(&[]), Ok(()));
        let mut items = batch(&mut rng, 64);
        assert_eq!(batch_verify(&items), Ok(()));
        assert_eq!(batch_verify(&items[..1]), Ok(()));
        assert_eq!(batch_verify(&items[..2]), Ok(()));
        let fail = Err(ProofError::VerificationFailed);
        let good = items[37];
        items[37].1.timestamp_ms += 1;
        assert_eq!(batch_verify(&items), fail);
        assert_eq!(batch_verify(&items[37..38]), fail);
        items[37] = good;
        items[63].2.s += Fr::from(1u64);
        assert_eq!(batch_verify(&items), fail);
        items[63].2 = items[0].2;
        assert_eq!(batch_verify(&items), fail);
        // Duplicated items and every small size still verify.
        let good = batch(&mut rng, 20);
        let mut dup = good.clone();
        dup.extend_from_slice(&good);
        dup.push(good[0]);
        assert_eq!(batch_verify(&dup), Ok(()));
        for n in 2..=good.len() {
            assert_eq!(batch_verify(&good[..n]), Ok(()), "n = {n}");
            let mut bad = good[..n].to_vec();
            bad[n / 2].2.s = -bad[n / 2].2.s;
            assert_eq!(batch_verify(&bad), fail, "n = {n}");
        }
    }

    #[test]
    fn fast_wide_reduction_matches_arkworks() {
        let mut rng = TestRng(10);
        let mut inputs = vec![[0u8; 64], [0xff; 64]];
        inputs.extend((0..2000).map(|_| rng.bytes::<64>()));
        for b in inputs {
            assert_eq!(reduce_wide(&b), Fr::from_le_bytes_mod_order(&b));
        }
    }

    #[test]
    fn decoding_garbage_never_panics() {
        let mut rng = TestRng(6);
        let valid_c = secret(&mut rng).commitment().to_bytes();
        let valid_p = prove(&secret(&mut rng), &ctx(&mut rng)).to_bytes();
        for len in 0..200 {
            for _ in 0..20 {
                let mut buf = vec![0u8; len];
                rng.fill(&mut buf);
                assert!(Commitment::from_bytes(&buf).is_err());
                assert!(Proof::from_bytes(&buf).is_err());
            }
            let mut c = valid_c.to_vec();
            c.resize(len, 0);
            assert_eq!(Commitment::from_bytes(&c).is_ok(), len == COMMITMENT_LEN);
            let mut p = valid_p.to_vec();
            p.resize(len, 0);
            assert_eq!(Proof::from_bytes(&p).is_ok(), len == PROOF_LEN);
        }
        for _ in 0..3000 {
            assert_eq!(Commitment::from_bytes(&rng.bytes::<COMMITMENT_LEN>()), Err(ProofError::InvalidPoint));
            assert!(Proof::from_bytes(&rng.bytes::<PROOF_LEN>()).is_err());
            let mut p = valid_p;
            rng.fill(&mut p[COMMITMENT_LEN..]);
            p[PROOF_LEN - 1] |= 0x40; // >= 2^254 > r
            assert_eq!(Proof::from_bytes(&p), Err(ProofError::NonCanonicalScalar));
            let mut s = rng.bytes::<32>();
            s[31] |= 0x40;
            assert_eq!(ProofSecret::from_bytes(&s).err(), Some(ProofError::NonCanonicalScalar));
        }
        // Non-canonical coordinate: x + p encodes the same residue but must be rejected.
        let mut c = valid_c;
        let mut x = limbs_from_le(c[..32].try_into().unwrap());
        ark_ff::BigInteger::add_with_carry(&mut x, &Fq::MODULUS);
        if x.0[3] >> 63 == 0 {
            limbs_to_le(x, &mut c[..32]);
            assert_eq!(Commitment::from_bytes(&c), Err(ProofError::InvalidPoint));
        }
        assert_eq!(ProofSecret::from_bytes(&[0; 32]).err(), Some(ProofError::ZeroSecret));
    }

    #[test]
    fn identity_commitment_rejected() {
        assert_eq!(Commitment::from_bytes(&[0; COMMITMENT_LEN]), Err(ProofError::InvalidPoint));
        let mut ark = Vec::new();
        G1Affine::zero().serialize_uncompressed(&mut ark).unwrap();
        assert_eq!(ark.len(), COMMITMENT_LEN);
        assert_eq!(Commitment::from_bytes(&ark), Err(ProofError::InvalidPoint));
        let mut p = [0u8; PROOF_LEN];
        p[COMMITMENT_LEN] = 1;
        assert_eq!(Proof::from_bytes(&p), Err(ProofError::InvalidPoint));
    }

    #[test]
    fn seeds_are_deterministic_distinct_and_never_zero() {
        let a = ProofSecret::from_seed(&[7; 32]);
        assert_eq!(a.commitment(), ProofSecret::from_seed(&[7; 32]).commitment());
        assert_eq!(a.to_bytes(), ProofSecret::from_seed(&[7; 32]).to_bytes());
        assert_ne!(a.commitment(), ProofSecret::from_seed(&[8; 32]).commitment());
        let mut order = [0u8; 32];
        limbs_to_le(Fr::MODULUS, &mut order);
        for seed in [[0u8; 32], order] {
            let z = ProofSecret::from_seed(&seed);
            assert_ne!(z.to_bytes(), [0; 32]);
            assert!(!z.commitment().0.is_zero());
            let c = ctx(&mut TestRng(8));
            assert_eq!(verify(&z.commitment(), &c, &prove(&z, &c)), Ok(()));
        }
    }

    #[test]
    fn debug_does_not_leak_secret() {
        let sk = ProofSecret::from_seed(&[0x5a; 32]);
        let dbg = format!("{sk:?} {:?}", sk.clone());
        let hex: String = sk.to_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert!(!dbg.contains(&hex), "{dbg}");
        assert!(!dbg.contains(&hex[..16]), "{dbg}");
        assert!(!dbg.contains(&sk.x.to_string()), "{dbg}");
        assert!(dbg.contains("redacted"));
        let short: String = sk.commitment().to_bytes()[..8].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(format!("{:?}", sk.commitment()), format!("Commitment({short}…)"));
    }
}
