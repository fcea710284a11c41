//! Adversarial tests of proof verification: commitments, nonces and responses built from
//! special points and scalars (the attacker chooses `P` at store time and `R`, `s` per
//! request), checked against a naive arkworks verifier, alone and inside batches.

use ark_bn254::G1Projective;
use ark_ec::scalar_mul::glv::GLVConfig;
use ark_ec::{AdditiveGroup, AffineRepr, PrimeGroup};

use super::*;

fn lambda() -> Fr {
    ark_bn254::g1::Config::LAMBDA
}

/// `s·G − c·P == R`, term by term with arkworks.
fn naive_verify(p: &Commitment, ctx: &ProofContext, proof: &Proof) -> bool {
    let c = challenge(&p.to_bytes(), &point_to_bytes(&proof.r), ctx);
    G1Projective::generator() * proof.s - G1Projective::from(p.0) * c == proof.r
}

fn context(i: u64) -> ProofContext {
    let mut request_id = [0u8; 16];
    request_id[..8].copy_from_slice(&i.to_le_bytes());
    ProofContext {
        purpose: Purpose::Get,
        addr: [i as u8; 32],
        target: [0; 32],
        timestamp_ms: 1_700_000_000_000 + i,
        request_id,
    }
}

/// Secrets whose commitments are special points: `±G`, `±φ(G)`, `±2G`, `φ(G) ± G`,
/// `(1/2)·G`, `2^127·G`, `2^128·G`, and one ordinary secret.
fn special_secrets() -> Vec<Fr> {
    let one = Fr::from(1u64);
    let half = Fr::from(2u64).inverse().unwrap_or_default();
    let mut out = vec![one, -one, lambda(), -lambda(), Fr::from(2u64), -Fr::from(2u64)];
    out.extend([lambda() + one, lambda() - one, half, Fr::from(1u128 << 127), Fr::from(2u64).pow([128])]);
    out.push(Fr::from_le_bytes_mod_order(b"an ordinary secret for the adversarial proof tests"));
    out
}

/// Nonces `k` that put `R = k·G` on a special point relative to `P = x·G`:
/// `±G`, `±φ(G)`, `±P`, `±φ(P)`, `2P`, and an ordinary nonce.
fn special_nonces(x: Fr) -> Vec<Fr> {
    let one = Fr::from(1u64);
    let ordinary = Fr::from_le_bytes_mod_order(b"an ordinary nonce");
    vec![one, -one, lambda(), -lambda(), x, -x, lambda() * x, -lambda() * x, x.double(), ordinary]
}

/// An honest proof for `P = x·G` with the nonce `k` chosen by the prover.
fn proof_with_nonce(x: Fr, k: Fr, ctx: &ProofContext) -> (Commitment, Proof) {
    let p = Commitment((G1Projective::generator() * x).into_affine());
    let r = (G1Projective::generator() * k).into_affine();
    let c = challenge(&p.to_bytes(), &point_to_bytes(&r), ctx);
    (p, Proof { r, s: k + c * x })
}

/// Every valid proof with a special commitment and a special nonce.
fn special_valid_items() -> Vec<(Commitment, ProofContext, Proof)> {
    let mut out = Vec::new();
    for x in special_secrets() {
        for k in special_nonces(x) {
            let ctx = context(out.len() as u64);
            let (p, proof) = proof_with_nonce(x, k, &ctx);
            out.push((p, ctx, proof));
        }
    }
    out
}

/// Forgeries derived from a valid item: responses `0, ±1, ±c, ±s, s ± 1, s + λ`, nonces
/// moved to `−R`, `φ(R)`, `R ± G`, `P`, `−P`, and the commitment moved to `−P`, `φ(P)`, `G`.
/// Responses that make `s·G − c·P` cancel to the identity (`s = c·x`) are among them.
fn forgeries(item: &(Commitment, ProofContext, Proof), x: Fr) -> Vec<(Commitment, ProofContext, Proof)> {
    let (p, ctx, proof) = *item;
    let c = challenge(&p.to_bytes(), &point_to_bytes(&proof.r), &ctx);
    let one = Fr::from(1u64);
    let g = G1Affine::generator();
    let mut out = Vec::new();
    for s in [Fr::zero(), one, -one, c, -c, c * x, -proof.s, proof.s + one, proof.s - one, proof.s + lambda()]
    {
        out.push((p, ctx, Proof { s, ..proof }));
    }
    for r in [
        -proof.r,
        msm::endomorphism(&proof.r),
        (proof.r + g).into_affine(),
        (proof.r - g).into_affine(),
        p.0,
        -p.0,
    ] {
        if !r.is_zero() && r != proof.r {
            out.push((p, ctx, Proof { r, ..proof }));
        }
    }
    for q in [-p.0, msm::endomorphism(&p.0), g] {
        if q != p.0 {
            out.push((Commitment(q), ctx, proof));
        }
    }
    out
}

#[test]
fn special_commitments_and_nonces_verify_alone_and_in_batches() {
    let items = special_valid_items();
    for (i, (p, ctx, proof)) in items.iter().enumerate() {
        assert!(naive_verify(p, ctx, proof), "item {i}");
        assert_eq!(verify(p, ctx, proof), Ok(()), "item {i}");
    }
    // Every window of the list at sizes on both sides of the wNAF/Pippenger switch.
    for n in [2, 3, 12, 13, 14, 21, 33, 64] {
        for start in (0..items.len()).step_by(n.max(7)) {
            let batch: Vec<_> = items.iter().cycle().skip(start).take(n).copied().collect();
            assert_eq!(batch_verify(&batch), Ok(()), "n = {n}, start = {start}");
        }
    }
    // One item repeated: every bucket receives the same points many times.
    for item in items.iter().step_by(5) {
        for n in [2, 12, 13, 40, 64] {
            assert_eq!(batch_verify(&vec![*item; n]), Ok(()), "{n} copies");
        }
    }
    // Mirrored pairs: (P, R) next to (−P, −R), both honest.
    for x in special_secrets() {
        let mut batch = Vec::new();
        for k in special_nonces(x) {
            for sign in [Fr::from(1u64), -Fr::from(1u64)] {
                let ctx = context(batch.len() as u64);
                let (p, proof) = proof_with_nonce(sign * x, sign * k, &ctx);
                batch.push((p, ctx, proof));
            }
        }
        assert_eq!(batch_verify(&batch), Ok(()), "x = {x}");
        assert_eq!(batch_verify(&batch[..12]), Ok(()), "x = {x}");
    }
}

#[test]
fn forgeries_from_special_points_are_rejected_alone_and_in_batches() {
    let items = special_valid_items();
    let secrets: Vec<Fr> =
        special_secrets().into_iter().flat_map(|x| vec![x; special_nonces(x).len()]).collect();
    let fail = Err(ProofError::VerificationFailed);
    let sizes = [2usize, 3, 12, 13, 14, 21, 40, 64];
    let mut count = 0usize;
    for (i, (item, &x)) in items.iter().zip(&secrets).enumerate() {
        for forged in forgeries(item, x) {
            let (p, ctx, proof) = forged;
            assert!(!naive_verify(&p, &ctx, &proof), "item {i}: forgery verifies naively");
            assert_eq!(verify(&p, &ctx, &proof), fail, "item {i}: {forged:?}");
            // Inside a batch of valid special items, at a position and size that vary.
            let n = sizes[count % sizes.len()];
            let at = count % n;
            let mut batch: Vec<_> = items.iter().cycle().skip(i + 1).take(n).copied().collect();
            batch[at] = forged;
            assert_eq!(batch_verify(&batch), fail, "item {i}, n = {n}, at = {at}");
            count += 1;
        }
        // The forgery hidden among copies of its own valid item (same P and R everywhere).
        if i % 4 == 0 {
            let forged = forgeries(item, x)[i % 7];
            let mut batch = vec![*item; 20];
            batch[19] = forged;
            assert_eq!(batch_verify(&batch), fail, "item {i} among copies");
        }
    }
    assert!(count > 1000, "{count} forgeries");
}

#[test]
fn verify_matches_naive_for_arbitrary_special_triples() {
    // Commitment, nonce point and response all from special sets, valid or not: the
    // optimised verifier must agree with the naive one on every triple.
    let points: Vec<G1Affine> = special_secrets()
        .into_iter()
        .map(|x| (G1Projective::generator() * x).into_affine())
        .chain([msm::endomorphism(&G1Affine::generator())])
        .collect();
    let one = Fr::from(1u64);
    let scalars = [
        Fr::zero(),
        one,
        -one,
        Fr::from(2u64),
        lambda(),
        -lambda(),
        Fr::from(u128::MAX),
        -Fr::from(1u128 << 127),
    ];
    let mut accepted = 0;
    for (i, p) in points.iter().enumerate() {
        for (j, r) in points.iter().enumerate() {
            for (l, s) in scalars.iter().enumerate() {
                let ctx = context((i * 100 + j * 10 + l) as u64);
                let (p, proof) = (Commitment(*p), Proof { r: *r, s: *s });
                let naive = naive_verify(&p, &ctx, &proof);
                assert_eq!(verify(&p, &ctx, &proof).is_ok(), naive, "P {i}, R {j}, s {l}");
                accepted += usize::from(naive);
            }
        }
    }
    assert_eq!(accepted, 0, "a triple with a hashed challenge verified");
}

#[test]
fn identity_has_no_encoding_anywhere() {
    // The identity cannot be a commitment or a nonce point: arkworks' encodings of it, the
    // all-zero string, and (0, 0) with flag bits in the top byte all fail to decode.
    let mut encodings = vec![[0u8; COMMITMENT_LEN]];
    for flag in [0x40u8, 0x80, 0xc0] {
        let mut e = [0u8; COMMITMENT_LEN];
        e[COMMITMENT_LEN - 1] = flag;
        encodings.push(e);
        let mut e = [0u8; COMMITMENT_LEN];
        e[31] = flag;
        encodings.push(e);
    }
    for e in encodings {
        assert_eq!(Commitment::from_bytes(&e), Err(ProofError::InvalidPoint));
        let mut proof = [0u8; PROOF_LEN];
        proof[..COMMITMENT_LEN].copy_from_slice(&e);
        proof[COMMITMENT_LEN] = 1;
        assert_eq!(Proof::from_bytes(&proof), Err(ProofError::InvalidPoint));
    }
    // No point of the curve has y = 0 (no 2-torsion), so the affine doubling never divides by 0.
    let mut rng_x = Fq::from(1u64);
    for _ in 0..1000 {
        let mut e = [0u8; COMMITMENT_LEN];
        limbs_to_le(rng_x.into_bigint(), &mut e[..32]);
        assert!(Commitment::from_bytes(&e).is_err());
        rng_x = rng_x.square() + Fq::from(7u64);
    }
    // The secrets behind the identity are refused, so an honest client never stores it.
    assert_eq!(ProofSecret::from_bytes(&[0; 32]).err(), Some(ProofError::ZeroSecret));
    let mut order = [0u8; 32];
    limbs_to_le(Fr::MODULUS, &mut order);
    assert_eq!(ProofSecret::from_bytes(&order).err(), Some(ProofError::NonCanonicalScalar));
}
