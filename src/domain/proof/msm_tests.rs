//! Tests of the proof module's group arithmetic: GLV split, wNAF digits, both MSM paths.

use super::*;

/// SplitMix64: tiny deterministic RNG for test inputs.
struct TestRng(u64);

impl TestRng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

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
