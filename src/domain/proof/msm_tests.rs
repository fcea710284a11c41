//! Tests of the proof module's group arithmetic: GLV split, wNAF digits, both MSM paths.

use super::*;

use crate::domain::proof::tests::TestRng;

impl TestRng {
    fn u128(&mut self) -> u128 {
        u128::from(self.next()) << 64 | u128::from(self.next())
    }

    fn scalar(&mut self) -> Fr {
        let mut wide = [0u8; 64];
        for b in &mut wide {
            *b = self.next() as u8;
        }
        Fr::from_le_bytes_mod_order(&wide)
    }

    fn point(&mut self) -> G1Affine {
        (G1Projective::generator() * self.scalar()).into_affine()
    }
}

fn signed(&(negative, k): &Short) -> Fr {
    if negative {
        -Fr::from(k)
    } else {
        Fr::from(k)
    }
}

#[test]
fn fixed_base_table_matches_generic_multiplication() {
    let mut rng = TestRng(2);
    let mut ks = vec![Fr::zero(), Fr::from(1u64), Fr::from(15u64), Fr::from(16u64), -Fr::from(1u64)];
    ks.extend((0..32).map(|_| rng.scalar()));
    for k in ks {
        assert_eq!(mul_generator(&k), G1Projective::generator() * k);
    }
}

#[test]
fn glv_split_is_exact_and_short() {
    let mut rng = TestRng(11);
    let lambda = ark_bn254::g1::Config::LAMBDA;
    let mut ks = vec![Fr::zero(), Fr::from(1u64), -Fr::from(1u64), lambda, -lambda, Fr::from(u128::MAX)];
    ks.extend([lambda + Fr::from(1u64), Fr::from(2u64).pow([253]), -Fr::from(2u64).pow([127])]);
    ks.extend((0..20_000).map(|_| rng.scalar()));
    ks.extend((0..2_000).map(|_| Fr::from(rng.u128())));
    for k in ks {
        let (k1, k2) = glv_split(&k);
        assert_eq!(signed(&k1) + lambda * signed(&k2), k, "k = {k}");
        assert!(k1.1 < 1 << 127 && k2.1 < 1 << 127, "k = {k}");
    }
    let p = rng.point();
    assert_eq!(endomorphism(&p), (p * lambda).into_affine());
}

#[test]
fn wnaf_digits_recompose() {
    let mut rng = TestRng(12);
    let mut ks = vec![0, 1, 15, 16, 31, u128::MAX, u128::MAX - 7, 1 << 127, (1 << 127) - 1];
    ks.extend((0..2000).map(|_| rng.u128()));
    for k in ks {
        let mut digits = [0i8; SCALAR_BITS + 1];
        let len = wnaf(k, WNAF_BITS, &mut digits);
        let mut sum = Fr::zero();
        for &d in digits[..len].iter().rev() {
            sum = sum.double() + Fr::from(i64::from(d));
            assert!(d == 0 || (d % 2 != 0 && d.unsigned_abs() < 1 << (WNAF_BITS - 1)), "{d}");
        }
        assert_eq!(sum, Fr::from(k), "k = {k}");
    }
}

#[test]
fn msm_paths_match_naive() {
    let mut rng = TestRng(9);
    let g = G1Affine::generator();
    let p = rng.point();
    for n in [1usize, 2, 3, 5, 13, 50, 300] {
        let mut terms = Terms::with_capacity(3 * n);
        let mut expected = G1Projective::zero();
        for i in 0..n {
            // Repeated bases and their negations exercise doublings and P + (−P) in buckets.
            let base = match i % 4 {
                0 => g,
                1 => -g,
                2 => p,
                _ => rng.point(),
            };
            let short = match i % 5 {
                0 => rng.u128() % 16,
                1 => u128::MAX - rng.u128() % 4,
                _ => rng.u128(),
            };
            let negative = i % 3 == 0;
            terms.push(base, (negative, short));
            let k = rng.scalar();
            terms.push_glv(base, &k);
            expected += G1Projective::from(base) * (signed(&(negative, short)) + k);
            if i % 7 == 3 {
                let k = rng.scalar();
                terms.push_generator(&k);
                expected += G1Projective::generator() * k;
            }
        }
        assert_eq!(terms.sum_with(true), expected, "straus, n = {n}");
        assert_eq!(terms.sum_with(false), expected, "pippenger, n = {n}");
        assert_eq!(terms.sum(), expected, "n = {n}");
    }
    for straus_path in [true, false] {
        let mut terms = Terms::with_capacity(4);
        assert!(terms.sum_with(straus_path).is_zero());
        terms.push(g, (false, 0));
        assert!(terms.sum_with(straus_path).is_zero());
        terms.push(g, (false, 3));
        terms.push(-g, (false, 3));
        assert!(terms.sum_with(straus_path).is_zero());
        // Many equal points in one bucket: doublings and cancellations in the affine sums.
        let mut terms = Terms::with_capacity(64);
        for i in 0..64 {
            terms.push(if i % 3 == 0 { -p } else { p }, (false, 1 << 100 | 5));
        }
        let expected = G1Projective::from(p) * Fr::from(64 - 2 * 22u64) * Fr::from(1u128 << 100 | 5);
        assert_eq!(terms.sum_with(straus_path), expected);
    }
}

#[test]
fn window_choice_is_sane() {
    for n in [1, 10, 100, 1000, 100_000] {
        let c = window_bits(n);
        assert!((2..=16).contains(&c), "n = {n}: c = {c}");
    }
    assert!(window_bits(1000) > window_bits(10));
}

// ---- Adversarial cases: special points and scalars an attacker can steer into the MSM. ----

/// `Σ ±k_i·B_i` computed term by term with arkworks.
fn naive(terms: &Terms) -> G1Projective {
    terms.bases.iter().zip(&terms.scalars).map(|(b, k)| G1Projective::from(*b) * signed(k)).sum()
}

/// The identity, `±G`, `±φ(G)`, `±P`, `±φ(P)` and small multiples: every coincidence of
/// x-coordinates (equal points, negations) and every identity operand occurs among them.
fn special_points(p: G1Affine) -> Vec<G1Affine> {
    let g = G1Affine::generator();
    let mut out = vec![G1Affine::zero()];
    for q in [g, endomorphism(&g), p, endomorphism(&p), (p + p).into_affine(), (g + g + g).into_affine()] {
        out.extend([q, -q]);
    }
    out
}

/// Short scalars at the edges of every digit recoding: zero, one, window boundaries, the top
/// of the 128-bit range and the GLV bound.
fn special_shorts() -> Vec<u128> {
    let mut out = vec![0, 1, 2, 3, 7, 8, 15, 16, 17, 31, 32, 33, 127, 128, 129, 255, 256];
    for bit in [64u32, 100, 124, 125, 126, 127] {
        out.extend([(1u128 << bit) - 1, 1 << bit, (1 << bit) + 1]);
    }
    out.extend([
        u128::MAX,
        u128::MAX - 1,
        u128::MAX >> 1,
        u128::MAX - (1 << 15),
        0x5555 << 112,
        !(0x5555u128 << 112),
    ]);
    // 0.75·(A + B): the largest magnitude the GLV split may return.
    out.push((LATTICE_A + LATTICE_B) / 4 * 3);
    out
}

#[test]
fn affine_addition_special_cases_match_projective() {
    let mut rng = TestRng(21);
    let points = special_points(rng.point());
    let (mut acc, mut add) = (Vec::new(), Vec::new());
    for a in &points {
        for b in &points {
            let den = denominator(a, b);
            assert!(!den.is_zero(), "zero denominator for {a} + {b}");
            let inv = den.inverse().unwrap_or_default();
            assert_eq!(add_with_inverse(a, b, &inv), *a + b, "{a} + {b}");
            acc.push(*a);
            add.push(*b);
        }
    }
    // All cases in one batch: one special case must not disturb the other inversions.
    let expected: Vec<G1Projective> = acc.iter().zip(&add).map(|(a, b)| *a + b).collect();
    let mut inverses = Vec::new();
    add_in_place(&mut acc, &add, &mut inverses);
    for (got, want) in acc.iter().zip(&expected) {
        assert_eq!(*got, *want);
    }
}

#[test]
fn bucket_sums_with_repeats_cancellations_and_identities() {
    let mut rng = TestRng(22);
    let p = rng.point();
    let pool = special_points(p);
    // Buckets: empty, singletons, one point many times, alternating ±P, P P −P −P, runs that
    // cancel to the identity half way, identities mixed in, and random picks from the pool.
    let mut buckets: Vec<Vec<G1Affine>> = vec![vec![], vec![p], vec![G1Affine::zero()], vec![p, -p]];
    for len in 2..=17 {
        buckets.push(vec![p; len]);
        buckets.push((0..len).map(|i| if i % 2 == 0 { p } else { -p }).collect());
        buckets.push((0..len).map(|i| if i % 4 < 2 { p } else { -p }).collect());
        buckets.push((0..len).map(|i| if i < len / 2 { p } else { -p }).collect());
        buckets.push((0..len).map(|i| if i % 3 == 0 { G1Affine::zero() } else { p }).collect());
        buckets.push(vec![]);
        for _ in 0..4 {
            buckets.push((0..len).map(|_| pool[rng.next() as usize % pool.len()]).collect());
        }
    }
    let (mut starts, mut lens, mut points) = (Vec::new(), Vec::new(), Vec::new());
    for bucket in &buckets {
        starts.push(points.len());
        lens.push(bucket.len());
        points.extend_from_slice(bucket);
    }
    sum_buckets(&mut points, &starts, &mut lens);
    for (i, bucket) in buckets.iter().enumerate() {
        let want: G1Projective = bucket.iter().map(|q| G1Projective::from(*q)).sum();
        assert_eq!(lens[i], usize::from(!bucket.is_empty()), "bucket {i}");
        if !bucket.is_empty() {
            assert_eq!(points[starts[i]], want, "bucket {i}: {} points", bucket.len());
        }
    }
}

#[test]
fn running_sums_hit_doublings_and_cancellations() {
    let mut rng = TestRng(23);
    let p = rng.point();
    // Small multiples of one point: running sums and totals collide (T = R, T = −R, R = −bucket).
    let multiples: Vec<G1Affine> =
        (-3i64..=3).map(|m| (G1Projective::from(p) * Fr::from(m)).into_affine()).collect();
    for round in 0..3000 {
        let (windows, half) = (1 + round % 4, 1 + (round / 4) % 6);
        let table: Vec<G1Affine> =
            (0..windows * half).map(|_| multiples[rng.next() as usize % multiples.len()]).collect();
        let sums = running_sums(windows, half, |w, b| table[w * half + b]);
        for (w, got) in sums.iter().enumerate() {
            let want: G1Projective =
                (0..half).map(|b| G1Projective::from(table[w * half + b]) * Fr::from(b as u64 + 1)).sum();
            assert_eq!(*got, want, "round {round}, window {w}");
        }
    }
}

#[test]
fn pippenger_every_window_width_special_points_and_scalars() {
    let mut rng = TestRng(24);
    let pool = special_points(rng.point());
    let shorts = special_shorts();
    let max_c = if cfg!(debug_assertions) { 12 } else { 16 };
    for c in 2..=max_c {
        // Every special point with every special scalar, both signs, in one MSM.
        let mut terms = Terms::with_capacity(pool.len() * shorts.len());
        for (i, base) in pool.iter().enumerate() {
            for (j, &k) in shorts.iter().enumerate() {
                terms.push(*base, ((i + j) % 2 == 0, k));
            }
        }
        assert_eq!(terms.pippenger_window(c), naive(&terms), "c = {c}");
        // Terms that cancel exactly: k·B and k·(−B), and k·B with (−k)·B.
        let mut terms = Terms::with_capacity(4 * shorts.len());
        for &k in &shorts {
            let base = pool[1 + rng.next() as usize % (pool.len() - 1)];
            terms.push(base, (false, k));
            terms.push(-base, (false, k));
            terms.push(base, (true, k));
            terms.push(base, (false, k));
        }
        assert!(terms.pippenger_window(c).is_zero(), "c = {c}");
        assert!(naive(&terms).is_zero());
        // Digit boundaries of this width: ±2^(c−1), 2^c − 1 and carries through every window.
        let mut terms = Terms::with_capacity(64);
        let half = 1u128 << (c - 1);
        let mut ks = vec![half, half - 1, half + 1, 2 * half - 1, 2 * half, half * 3];
        ks.extend((0..128 / c).map(|w| (half << (w * c)) | ((half << (w * c)) - 1)));
        ks.push(u128::MAX / ((1 << c) - 1) * half);
        for k in ks {
            terms.push(pool[1 + rng.next() as usize % (pool.len() - 1)], (rng.next() % 2 == 0, k));
        }
        assert_eq!(terms.pippenger_window(c), naive(&terms), "c = {c}, digit boundaries");
    }
}

#[test]
fn both_paths_match_naive_for_colliding_bases_at_protocol_sizes() {
    let mut rng = TestRng(25);
    let p = rng.point();
    let pool = special_points(p);
    let shorts = special_shorts();
    // 4 terms (verify), 3n + 2 for n = 2..=64 (batches), and both sides of the switch.
    let mut sizes: Vec<usize> = (2..=64).map(|n| 3 * n + 2).collect();
    sizes.extend([1, 4, 38, 39, 40, 41]);
    for n in sizes {
        for variant in 0..3 {
            let mut terms = Terms::with_capacity(n + 2);
            for i in 0..n {
                let base = match variant {
                    0 => pool[rng.next() as usize % pool.len()],
                    1 => pool[1 + i % 2],
                    _ => p,
                };
                let k = match (variant + i) % 3 {
                    0 => shorts[rng.next() as usize % shorts.len()],
                    1 => rng.u128() >> (rng.next() % 128),
                    _ => rng.u128(),
                };
                terms.push(base, (rng.next() % 2 == 0, k));
            }
            let k = if variant == 0 { rng.scalar() } else { -Fr::from(1u64) };
            terms.push_generator(&k);
            let want = naive(&terms);
            assert_eq!(terms.sum_with(true), want, "straus, n = {n}, variant {variant}");
            assert_eq!(terms.sum_with(false), want, "pippenger, n = {n}, variant {variant}");
        }
    }
}

#[test]
fn glv_terms_of_special_bases_and_scalars_match_naive() {
    let mut rng = TestRng(26);
    let pool = special_points(rng.point());
    let mut scalars = edge_scalars();
    scalars.extend((0..8).map(|_| rng.scalar()));
    for straus_path in [true, false] {
        for base in &pool {
            for k in &scalars {
                // The shape of `verify`: k·G − k·B and k'·B as GLV terms next to a generator term.
                let mut terms = Terms::with_capacity(6);
                terms.push_generator(k);
                terms.push_glv(-*base, k);
                terms.push_glv(*base, &(*k + Fr::from(1u64)));
                let want = G1Projective::generator() * k + G1Projective::from(*base);
                assert_eq!(terms.sum_with(straus_path), want, "k = {k}, base = {base}");
            }
        }
    }
}

/// Scalars at the edges of the GLV split: `0, ±1, ±2, r − 1` (as `−1`), `±λ`, the lattice
/// constants, `2^126 … 2^128`, `(r ± 1)/2`, and values where `k·C/r` or `k·B/r` is within a
/// hair of a half-integer (the rounding boundary; computed offline, neighbours included).
fn edge_scalars() -> Vec<Fr> {
    use std::str::FromStr;
    let lambda = ark_bn254::g1::Config::LAMBDA;
    let one = Fr::from(1u64);
    let mut out = vec![Fr::zero(), one, -one, Fr::from(2u64), -Fr::from(2u64), lambda, -lambda, lambda + one];
    out.extend([
        lambda - one,
        lambda * lambda,
        Fr::from(LATTICE_A),
        Fr::from(LATTICE_B),
        Fr::from(LATTICE_C),
    ]);
    out.extend([-Fr::from(LATTICE_A), Fr::from(LATTICE_A) + lambda * Fr::from(LATTICE_B)]);
    for bit in [126u64, 127, 128, 129, 253] {
        let pow = Fr::from(2u64).pow([bit]);
        out.extend([pow - one, pow, pow + one, -pow]);
    }
    let half = Fr::from(2u64).inverse().unwrap_or_default();
    out.extend([half, half + one, half - one, -half]);
    let boundaries = [
        "73973378440894659500382515401901705364",
        "221920135322683978501147546205705116093",
        "148020730260230213660265413319205312434031",
        "170570997545855933970192212610535617347841573749079028543",
        "187544795163020159081420224209444912262780405008321481258548832479608",
        "10944121435919637611123202872628637544274182200208017171849102093287904247808",
        "21888242871839275222246405745257275088474391021975139684197821671173906790252",
        "1101980242574060960598341803751539021232841610311855631276",
        "3305940727722182881795025411254617063698524830935566893828",
        "10163973754524036576290302820702509639762042555236948833604517458955755449260",
        "21888242871839275221144425502683214127950022596664495322465362576263952864340",
    ];
    for s in boundaries {
        let k = Fr::from_str(s).unwrap_or_default();
        assert!(!k.is_zero(), "{s}");
        out.extend([k - one, k, k + one]);
    }
    out
}

#[test]
fn glv_split_edge_scalars_exact_and_within_bound() {
    let lambda = ark_bn254::g1::Config::LAMBDA;
    let bound = (LATTICE_A + LATTICE_B) / 4 * 3 + 1;
    for k in edge_scalars() {
        let (k1, k2) = glv_split(&k);
        assert_eq!(signed(&k1) + lambda * signed(&k2), k, "k = {k}");
        assert!(k1.1 <= bound && k2.1 <= bound, "k = {k}: |k1| = {}, |k2| = {}", k1.1, k2.1);
    }
}

#[test]
fn wnaf_digits_every_width_recompose_and_stay_in_table() {
    let mut rng = TestRng(27);
    let mut ks = special_shorts();
    ks.extend((0..500).map(|_| rng.u128() >> (rng.next() % 128)));
    for w in [2, 3, 4, WNAF_BITS, 6, 7, GEN_WNAF_BITS] {
        let table_len = 1usize << (w - 2);
        for &k in &ks {
            let mut digits = [0i8; SCALAR_BITS + 1];
            let len = wnaf(k, w, &mut digits);
            assert!(len <= SCALAR_BITS + 1);
            let mut sum = Fr::zero();
            let mut last_nonzero = None;
            for (i, &d) in digits[..len].iter().enumerate().rev() {
                sum = sum.double() + Fr::from(i64::from(d));
                if d != 0 {
                    assert!(d % 2 != 0 && usize::from(d.unsigned_abs() / 2) < table_len, "w = {w}: {d}");
                    // Non-adjacency: two non-zero digits are at least w apart.
                    if let Some(j) = last_nonzero {
                        assert!(j - i >= w, "w = {w}, k = {k}");
                    }
                    last_nonzero = Some(i);
                }
            }
            assert_eq!(sum, Fr::from(k), "w = {w}, k = {k}");
            assert!(len == 0 || digits[len - 1] != 0, "leading zero digit, k = {k}");
        }
    }
}

#[test]
fn signed_digits_every_width_recompose() {
    let mut rng = TestRng(28);
    let mut ks = special_shorts();
    ks.extend((0..200).map(|_| rng.u128()));
    for c in 2..=16 {
        let half = 1i32 << (c - 1);
        for &k in &ks {
            let mut digits = Vec::new();
            signed_digits(k, c, window_count(c), &mut digits);
            assert_eq!(digits.len(), window_count(c));
            let mut sum = Fr::zero();
            for &d in digits.iter().rev() {
                assert!(d > -half && d <= half, "c = {c}: {d}");
                sum = sum * Fr::from(1u64 << c) + Fr::from(i64::from(d));
            }
            assert_eq!(sum, Fr::from(k), "c = {c}, k = {k}");
        }
    }
}

#[test]
fn identity_and_zero_scalars_are_harmless() {
    let mut rng = TestRng(29);
    let p = rng.point();
    for straus_path in [true, false] {
        let mut terms = Terms::with_capacity(8);
        terms.push(G1Affine::zero(), (false, u128::MAX));
        terms.push_glv(G1Affine::zero(), &rng.scalar());
        terms.push_glv(p, &Fr::zero());
        terms.push_generator(&Fr::zero());
        assert!(terms.sum_with(straus_path).is_zero());
        terms.push(p, (true, 1));
        assert_eq!(terms.sum_with(straus_path), -p);
    }
}

#[test]
fn phi_term_without_a_plain_predecessor_builds_its_own_table() {
    let mut rng = TestRng(30);
    let p = rng.point();
    let phi = endomorphism(&p);
    let lambda = ark_bn254::g1::Config::LAMBDA;
    // A φ term first, and one right after a generator term (whose table is the static one).
    let mut terms = Terms::with_capacity(4);
    terms.push_kind(phi, (false, rng.u128()), Kind::Phi);
    terms.push_generator(&rng.scalar());
    terms.push_kind(-phi, (true, u128::MAX), Kind::Phi);
    let want = naive(&terms);
    assert_eq!(terms.sum_with(true), want);
    assert_eq!(terms.sum_with(false), want);
    assert_eq!(G1Projective::from(phi), G1Projective::from(p) * lambda);
}
