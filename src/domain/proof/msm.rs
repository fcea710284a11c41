//! Group arithmetic behind the Schnorr proofs: the fixed-base generator table, a fast GLV
//! split, and multi-scalar multiplication over short (≤ 128-bit) scalars — Pippenger with
//! batch-affine bucket sums for large batches, interleaved wNAF (Straus) for small ones.
//!
//! Every function here is variable-time and only ever sees public values on the verifier
//! side (the prover uses [`mul_generator`] alone). Inputs are valid BN254 G1 points; the
//! functions never panic on any input of that kind.

use std::sync::OnceLock;

use ark_bn254::{Fq, Fr, G1Affine, G1Projective};
use ark_ec::scalar_mul::glv::GLVConfig;
use ark_ec::{AdditiveGroup, AffineRepr, CurveGroup, PrimeGroup};
use ark_ff::{batch_inversion, Field, PrimeField, Zero};

/// A short signed scalar `(negative, |k|)`.
pub(super) type Short = (bool, u128);

/// `A`, `B`, `C` of the reduced basis `(−A, B)`, `(−B, −C)` of the lattice
/// `{(a, b) : a + λ·b ≡ 0 (mod r)}` (arkworks' `SCALAR_DECOMP_COEFFS`); `A·C + B² = r`.
const LATTICE_A: u128 = 0x6f4d_8248_eeb8_59fc_8211_bbeb_7d4f_1128;
const LATTICE_B: u128 = 0x89d3_2568_94d2_13e3;
const LATTICE_C: u128 = 0x6f4d_8248_eeb8_59fd_0be4_e154_1221_250b;
/// `⌊C·2^256 / r⌋` and `⌊B·2^256 / r⌋`, little-endian 64-bit limbs.
const ROUND_C: [u64; 3] = [0x5398_fd03_00ff_6565, 0x4cce_f014_a773_d2d2, 0x2];
const ROUND_B: [u64; 3] = [0xd91d_232e_c7e0_b3d7, 0x2, 0];

/// Splits `k` into `k1 + λ·k2 ≡ k (mod r)` with `|k1|, |k2| < 2^127` (Babai rounding).
///
/// `u = round(k·C/r)` and `w = round(k·B/r)` are computed from the precomputed quotients with
/// an error below 3/4 each (truncation of the constant < 1/4 as `k < 2^254`, rounding ≤ 1/2).
/// Then `k1 = k − u·A − w·B` and `k2 = u·B − w·C`: `(u, w)·basis` is a lattice vector, so the
/// split is exact, and as `k = (kC/r)·A + (kB/r)·B` exactly (`AC + B² = r`), `|k1| < ¾(A + B)`
/// and `|k2| < ¾(B + C)`, both below `2^126.4`. Values that small are exact in wrapping
/// 128-bit arithmetic. Same result class as arkworks' `scalar_decomposition`, ~10× faster.
pub(super) fn glv_split(k: &Fr) -> (Short, Short) {
    let limbs = k.into_bigint().0;
    let u = mul_shift_round(&limbs, &ROUND_C);
    let w = mul_shift_round(&limbs, &ROUND_B);
    let k_low = u128::from(limbs[0]) | u128::from(limbs[1]) << 64;
    let k1 = k_low.wrapping_sub(u.wrapping_mul(LATTICE_A)).wrapping_sub(w.wrapping_mul(LATTICE_B)) as i128;
    let k2 = u.wrapping_mul(LATTICE_B).wrapping_sub(w.wrapping_mul(LATTICE_C)) as i128;
    ((k1 < 0, k1.unsigned_abs()), (k2 < 0, k2.unsigned_abs()))
}

/// `round(k·g / 2^256)`; for `k < 2^254` and `g < 2^131` the result is below `2^128`.
fn mul_shift_round(k: &[u64; 4], g: &[u64; 3]) -> u128 {
    let mut prod = [0u64; 7];
    for (i, &a) in k.iter().enumerate() {
        let mut carry = 0u128;
        for (j, &b) in g.iter().enumerate() {
            let t = u128::from(a) * u128::from(b) + u128::from(prod[i + j]) + carry;
            prod[i + j] = t as u64;
            carry = t >> 64;
        }
        prod[i + g.len()] = carry as u64;
    }
    let round_up = prod[3] >> 63;
    (u128::from(prod[4]) | u128::from(prod[5]) << 64) + u128::from(round_up)
}

/// `φ(P) = (β·x, y) = λ·P`, one field multiplication.
pub(super) fn endomorphism(p: &G1Affine) -> G1Affine {
    ark_bn254::g1::Config::endomorphism_affine(p)
}

const GEN_WINDOW_BITS: usize = 4;
const GEN_WINDOW_SIZE: usize = (1 << GEN_WINDOW_BITS) - 1;
const GEN_WINDOWS: usize = 256 / GEN_WINDOW_BITS;

/// Table `d·16^i·G` for windows `i` and digits `d = 1..=15`, built once (~70 KiB).
fn generator_table() -> &'static [G1Affine] {
    static TABLE: OnceLock<Vec<G1Affine>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut entries = Vec::with_capacity(GEN_WINDOWS * GEN_WINDOW_SIZE);
        let mut base = G1Projective::generator();
        for _ in 0..GEN_WINDOWS {
            let mut acc = base;
            for _ in 0..GEN_WINDOW_SIZE {
                entries.push(acc);
                acc += base;
            }
            base = acc;
        }
        G1Projective::normalize_batch(&entries)
    })
}

/// `k·G` with the fixed-base table: at most 64 mixed additions, no doublings.
pub(super) fn mul_generator(k: &Fr) -> G1Projective {
    let table = generator_table();
    let limbs = k.into_bigint().0;
    let mut acc = G1Projective::zero();
    for i in 0..GEN_WINDOWS {
        let bit = i * GEN_WINDOW_BITS;
        let digit = ((limbs[bit / 64] >> (bit % 64)) & GEN_WINDOW_SIZE as u64) as usize;
        if digit != 0 {
            acc += &table[i * GEN_WINDOW_SIZE + digit - 1];
        }
    }
    acc
}

/// How a term's base relates to the others (lets wNAF reuse or skip its table).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// Any point.
    Plain,
    /// `φ` of the previous term's base.
    Phi,
    /// The generator `G`.
    Generator,
    /// `φ(G)`.
    GeneratorPhi,
}

/// Terms `±k_i·B_i` of a multi-scalar multiplication, every `k_i` below `2^128`.
pub(super) struct Terms {
    bases: Vec<G1Affine>,
    scalars: Vec<Short>,
    kinds: Vec<Kind>,
}

impl Terms {
    pub(super) fn with_capacity(n: usize) -> Self {
        Self { bases: Vec::with_capacity(n), scalars: Vec::with_capacity(n), kinds: Vec::with_capacity(n) }
    }

    /// Adds `±k·base`.
    pub(super) fn push(&mut self, base: G1Affine, k: Short) {
        self.push_kind(base, k, Kind::Plain);
    }

    /// Adds `k·base` as `k1·base + k2·φ(base)` ([`glv_split`]).
    pub(super) fn push_glv(&mut self, base: G1Affine, k: &Fr) {
        let (k1, k2) = glv_split(k);
        self.push_kind(base, k1, Kind::Plain);
        self.push_kind(endomorphism(&base), k2, Kind::Phi);
    }

    /// Adds `k·G`; wNAF uses precomputed tables for it.
    pub(super) fn push_generator(&mut self, k: &Fr) {
        let (k1, k2) = glv_split(k);
        let g = G1Affine::generator();
        self.push_kind(g, k1, Kind::Generator);
        self.push_kind(endomorphism(&g), k2, Kind::GeneratorPhi);
    }

    fn push_kind(&mut self, base: G1Affine, k: Short, kind: Kind) {
        self.bases.push(base);
        self.scalars.push(k);
        self.kinds.push(kind);
    }

    /// `Σ ±k_i·B_i`, by interleaved wNAF for few terms and by Pippenger for many.
    pub(super) fn sum(&self) -> G1Projective {
        if self.bases.len() < STRAUS_MAX_TERMS {
            self.straus()
        } else {
            self.pippenger()
        }
    }

    #[cfg(test)]
    pub(super) fn sum_with(&self, straus_path: bool) -> G1Projective {
        if straus_path {
            self.straus()
        } else {
            self.pippenger()
        }
    }
}

/// Below this many terms interleaved wNAF beats Pippenger (measured, see PERFORMANCE.md §2).
const STRAUS_MAX_TERMS: usize = 40;
/// Scalar width handled by the MSMs.
const SCALAR_BITS: usize = 128;
/// wNAF window for per-call tables (odd multiples `1·B … 15·B`).
const WNAF_BITS: usize = 5;
/// wNAF window for the static tables of `G` and `φ(G)` (odd multiples up to `127·G`).
const GEN_WNAF_BITS: usize = 8;

/// Odd multiples `G, 3G, …, 127G` and the same of `φ(G)`, built once (~9 KiB).
fn generator_wnaf_tables() -> &'static (Vec<G1Affine>, Vec<G1Affine>) {
    static TABLES: OnceLock<(Vec<G1Affine>, Vec<G1Affine>)> = OnceLock::new();
    TABLES.get_or_init(|| {
        let g = G1Affine::generator();
        let table = odd_multiples(&[g], 1 << (GEN_WNAF_BITS - 2));
        let phi = table.iter().map(endomorphism).collect();
        (table, phi)
    })
}

/// `B, 3B, …, (2·per_base − 1)·B` for every base, normalised with one shared inversion.
fn odd_multiples(bases: &[G1Affine], per_base: usize) -> Vec<G1Affine> {
    let mut out = Vec::with_capacity(bases.len() * per_base);
    for base in bases {
        let double = G1Projective::from(*base).double();
        let mut acc = G1Projective::from(*base);
        for _ in 0..per_base {
            out.push(acc);
            acc += double;
        }
    }
    G1Projective::normalize_batch(&out)
}

/// Width-`w` NAF of `k < 2^128`, least significant digit first (at most 129 digits):
/// every non-zero digit is odd and below `2^(w−1)` in magnitude.
fn wnaf(k: u128, w: usize, out: &mut [i8; SCALAR_BITS + 1]) -> usize {
    let (mut k, mut high) = (k, false);
    let (modulus, half) = (1i32 << w, 1i32 << (w - 1));
    let mut len = 0;
    while k != 0 || high {
        let mut d = 0i32;
        if k & 1 == 1 {
            d = (k & (modulus as u128 - 1)) as i32;
            if d >= half {
                d -= modulus;
            }
            if d >= 0 {
                k -= d as u128;
            } else {
                let (sum, carry) = k.overflowing_add(d.unsigned_abs() as u128);
                k = sum;
                high |= carry;
            }
        }
        out[len] = d as i8;
        len += 1;
        k = k >> 1 | u128::from(high) << 127;
        high = false;
    }
    len
}

impl Terms {
    /// Interleaved wNAF: one shared doubling chain; odd-multiple tables built per call for
    /// plain bases, derived with `φ` for a `φ` base, static for the generator.
    fn straus(&self) -> G1Projective {
        let plain: Vec<G1Affine> =
            self.bases.iter().zip(&self.kinds).filter(|(_, k)| **k == Kind::Plain).map(|(b, _)| *b).collect();
        let per_table = 1 << (WNAF_BITS - 2);
        let built = odd_multiples(&plain, per_table);
        let (gen, gen_phi) = generator_wnaf_tables();
        let mut tables: Vec<std::borrow::Cow<'_, [G1Affine]>> = Vec::with_capacity(self.bases.len());
        let mut digits = vec![[0i8; SCALAR_BITS + 1]; self.bases.len()];
        let mut next_plain = built.chunks_exact(per_table);
        let mut top = 0;
        for (i, kind) in self.kinds.iter().enumerate() {
            let (table, w): (std::borrow::Cow<'_, [G1Affine]>, usize) = match kind {
                Kind::Plain => (next_plain.next().unwrap_or_default().into(), WNAF_BITS),
                Kind::Phi => match tables.last() {
                    Some(t) if t.len() == per_table => (t.iter().map(endomorphism).collect(), WNAF_BITS),
                    _ => (odd_multiples(&self.bases[i..=i], per_table).into(), WNAF_BITS),
                },
                Kind::Generator => (gen.as_slice().into(), GEN_WNAF_BITS),
                Kind::GeneratorPhi => (gen_phi.as_slice().into(), GEN_WNAF_BITS),
            };
            tables.push(table);
            top = top.max(wnaf(self.scalars[i].1, w, &mut digits[i]));
        }
        let mut acc = G1Projective::zero();
        for bit in (0..top).rev() {
            acc.double_in_place();
            for ((d, table), (negative, _)) in digits.iter().zip(&tables).zip(&self.scalars) {
                let d = d[bit];
                if d != 0 {
                    let p = &table[(d.unsigned_abs() / 2) as usize];
                    if (d < 0) == *negative {
                        acc += p;
                    } else {
                        acc -= p;
                    }
                }
            }
        }
        acc
    }
}

/// Windows of `c`-bit signed digits that cover a 128-bit scalar and its final carry.
fn window_count(c: usize) -> usize {
    (SCALAR_BITS + 1).div_ceil(c)
}

/// Window width minimising an estimated cost: per window, one batch-affine addition (weight 6)
/// per term not landing in an empty bucket and two per bucket for the running sums; per bucket
/// index, one inversion shared by all windows (weight 200). The weights are fitted to
/// measurement (CPU time at 16, 64 and 256 proofs: the best of the widths tried is picked);
/// an inversion itself costs ~2.1 µs, a batch-affine addition ~0.2 µs.
fn window_bits(n: usize) -> usize {
    let cost = |c: usize| {
        let (w, h) = (window_count(c) as f64, (1u64 << (c - 1)) as f64);
        let filled = h * (1.0 - (-(n as f64) / h).exp());
        w * (6.0 * (n as f64 - filled) + 12.0 * h) + 200.0 * h
    };
    (2..=16).min_by(|&a, &b| cost(a).total_cmp(&cost(b))).unwrap_or(4)
}

/// Signed base-`2^c` digits of `k` in `(−2^(c−1), 2^(c−1)]`, least significant first.
fn signed_digits(k: u128, c: usize, windows: usize, out: &mut Vec<i32>) {
    let (mask, half) = ((1u128 << c) - 1, 1i32 << (c - 1));
    let mut rest = k;
    let mut carry = 0i32;
    for _ in 0..windows {
        let mut d = (rest & mask) as i32 + carry;
        rest = rest.checked_shr(c as u32).unwrap_or(0);
        carry = 0;
        if d > half {
            d -= 1 << c;
            carry = 1;
        }
        out.push(d);
    }
}

impl Terms {
    /// Pippenger's bucket method with signed digits, in affine coordinates with shared
    /// inversions (Montgomery's trick): each bucket is summed pairwise, one inversion per
    /// round for all buckets of all windows; then the windows' running sums advance in lock
    /// step, one inversion per bucket index. Only the final combination is projective.
    fn pippenger(&self) -> G1Projective {
        self.pippenger_window(window_bits(self.bases.len()))
    }

    /// [`Terms::pippenger`] with `c`-bit windows, `2 ≤ c ≤ 16`.
    fn pippenger_window(&self, c: usize) -> G1Projective {
        let (windows, half) = (window_count(c), 1usize << (c - 1));
        let mut digits = Vec::with_capacity(self.bases.len() * windows);
        for (_, k) in &self.scalars {
            signed_digits(*k, c, windows, &mut digits);
        }
        let bucket = |i: usize, d: i32| (i % windows) * half + d.unsigned_abs() as usize - 1;
        // Counting sort of the (bucket, ±base) pairs: bucket b owns points[starts[b]..][..lens[b]].
        let mut lens = vec![0usize; windows * half];
        for (i, &d) in digits.iter().enumerate() {
            if d != 0 {
                lens[bucket(i, d)] += 1;
            }
        }
        let mut starts = Vec::with_capacity(lens.len());
        let mut total = 0;
        for len in &lens {
            starts.push(total);
            total += len;
        }
        let mut fill = starts.clone();
        let mut points = vec![G1Affine::zero(); total];
        for (i, &d) in digits.iter().enumerate() {
            if d != 0 {
                let (b, t) = (bucket(i, d), i / windows);
                let base = self.bases[t];
                points[fill[b]] = if (d < 0) != self.scalars[t].0 { -base } else { base };
                fill[b] += 1;
            }
        }
        sum_buckets(&mut points, &starts, &mut lens);
        let bucket_sum = |w: usize, b: usize| {
            let i = w * half + b;
            if lens[i] == 0 {
                G1Affine::zero()
            } else {
                points[starts[i]]
            }
        };
        let window_sums = running_sums(windows, half, bucket_sum);
        let mut sum = G1Projective::zero();
        for window in window_sums.iter().rev() {
            for _ in 0..c {
                sum.double_in_place();
            }
            sum += window;
        }
        sum
    }
}

/// `Σ_b (b + 1)·bucket(w, b)` for every window `w` by running sums from the top bucket down:
/// with `S_b = Σ_{b' ≥ b} bucket(w, b')` the result is `Σ_b S_b`. Each step adds the previous
/// running sum into the total while the running sum takes its next bucket; the two additions
/// are independent, so all windows' additions of a step share one inversion.
fn running_sums(windows: usize, half: usize, bucket: impl Fn(usize, usize) -> G1Affine) -> Vec<G1Projective> {
    // lanes[..windows] are the totals, lanes[windows..] the running sums.
    let mut lanes = vec![G1Affine::zero(); 2 * windows];
    let mut operands = Vec::with_capacity(2 * windows);
    let mut inverses = Vec::with_capacity(2 * windows);
    for b in (0..half).rev() {
        operands.clear();
        operands.extend_from_slice(&lanes[windows..]);
        operands.extend((0..windows).map(|w| bucket(w, b)));
        add_in_place(&mut lanes, &operands, &mut inverses);
    }
    let (totals, running) = lanes.split_at(windows);
    totals.iter().zip(running).map(|(t, r)| *t + r).collect()
}

/// `acc[i] += add[i]` for all `i`, with one shared inversion.
fn add_in_place(acc: &mut [G1Affine], add: &[G1Affine], inverses: &mut Vec<Fq>) {
    inverses.clear();
    inverses.extend(acc.iter().zip(add).map(|(a, b)| denominator(a, b)));
    batch_inversion(inverses);
    for ((a, b), inv) in acc.iter_mut().zip(add).zip(inverses.iter()) {
        *a = add_with_inverse(a, b, inv);
    }
}

/// Sums each bucket in place, pairwise in rounds; every round shares one inversion among all
/// its additions. Afterwards a non-empty bucket `b` holds its sum at `points[starts[b]]`.
fn sum_buckets(points: &mut [G1Affine], starts: &[usize], lens: &mut [usize]) {
    // (destination, first operand): pair `k` of a bucket adds its points `2k` and `2k + 1`
    // into its point `k`. In bucket order a write never lands on a point still to be read.
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    let mut inverses: Vec<Fq> = Vec::new();
    loop {
        pairs.clear();
        for (&start, &len) in starts.iter().zip(lens.iter()) {
            pairs.extend((0..len / 2).map(|k| (start + k, start + 2 * k)));
        }
        if pairs.is_empty() {
            return;
        }
        inverses.clear();
        inverses.extend(pairs.iter().map(|&(_, a)| denominator(&points[a], &points[a + 1])));
        batch_inversion(&mut inverses);
        for (&(dst, a), inv) in pairs.iter().zip(&inverses) {
            points[dst] = add_with_inverse(&points[a], &points[a + 1], inv);
        }
        for (&start, len) in starts.iter().zip(lens.iter_mut()) {
            if *len > 1 && *len % 2 == 1 {
                points[start + *len / 2] = points[start + *len - 1];
            }
            *len = len.div_ceil(2);
        }
    }
}

/// The denominator of the affine addition `a + b`: `x_b − x_a`, or `2y` for a doubling;
/// one when no inversion is needed (an identity operand, or `a = −b`).
fn denominator(a: &G1Affine, b: &G1Affine) -> Fq {
    if a.infinity || b.infinity {
        Fq::ONE
    } else if a.x != b.x {
        b.x - a.x
    } else if a.y == b.y {
        a.y.double()
    } else {
        Fq::ONE
    }
}

/// `a + b` given `inv`, the inverse of [`denominator`]`(a, b)`.
fn add_with_inverse(a: &G1Affine, b: &G1Affine, inv: &Fq) -> G1Affine {
    if a.infinity {
        return *b;
    }
    if b.infinity {
        return *a;
    }
    let lambda = if a.x != b.x {
        (b.y - a.y) * inv
    } else if a.y == b.y {
        let x2 = a.x.square();
        (x2.double() + x2) * inv
    } else {
        return G1Affine::zero();
    };
    let x = lambda.square() - a.x - b.x;
    let y = lambda * (a.x - x) - a.y;
    G1Affine::new_unchecked(x, y)
}

#[cfg(test)]
#[path = "msm_tests.rs"]
mod tests;
