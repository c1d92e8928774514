//! int8 weights: symmetric per-output-channel quantization, and the two products that use it.
//!
//! - Many rows (prefill, the vision tower): W8A8. Each input row is quantized symmetrically to
//!   int8 with its own scale (per token), and the integer products run through AVX512-VNNI's
//!   `vpdpbusd` (64 multiply-adds of u8 x i8 per instruction, four times float32's rate). The
//!   instruction multiplies *unsigned* bytes, so activations are stored offset by 128 and the
//!   offset is taken back out with each weight row's precomputed sum: exact integer arithmetic,
//!   so the portable fallback gives bit-identical results.
//! - A few rows (decoding): weight-only in effect. Each input row is carried as two int8 digits
//!   (15 bits: an error of 1/64516 of the row's largest value, against the weights' 1/254), so the
//!   weights still stream through `vpdpbusd`, one instruction per 64 bytes; decoding reads a
//!   quarter of float32's bytes. (`matmul_weight_only`, the weights widened to float32, is the exact
//!   reference; as an AVX-512 kernel it took twelve instructions per 64 bytes, compute-bound at
//!   this machine's bandwidth: 20.7 tokens/s at the 2B shape.)
//!
//! Why per channel (not groups of 32-128): one scale per output row keeps the integer dot product
//! whole (a group scale would need a float rescale every group inside the VNNI loop), and at
//! 127 levels the rounding error of a row is already ~0.3% of its largest weight; the accuracy
//! tests (tiny oracle, demo checkpoint) measure what it costs end to end.
//!
//! Layout ("vnni16x4"): output channels in blocks of 16, and within a block the reduction axis in
//! steps of 4: bytes `[block][k/4][16 channels][4]`, so one 64-byte load is exactly the operand
//! `vpdpbusd` wants for 16 output channels and 4 inputs. `k` is padded to a multiple of 4 and `n`
//! to a multiple of 16 with zeros.

use rayon::prelude::*;

/// Channels per block of the packed layout (one zmm of int32 accumulators).
pub use super::bands::BLOCK;
/// Reduction steps per packed group (bytes per int32 lane of `vpdpbusd`).
pub const STEP: usize = 4;

/// A [n, k] weight quantized per output channel, in the packed layout.
#[derive(Clone)]
pub struct PackedI8 {
    pub n: usize,
    pub k: usize,
    /// `k` rounded up to [`STEP`].
    k4: usize,
    /// `[n.div_ceil(16)][k4 / 4][16][4]` quantized weights.
    data: Vec<i8>,
    /// Per-channel scale: weight ~= q * scale.
    pub scales: Vec<f32>,
    /// Per-channel sum of q (removes the activations' +128 offset).
    sums: Vec<i32>,
}

impl std::fmt::Debug for PackedI8 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedI8 [{}, {}]", self.n, self.k)
    }
}

/// Which instructions a product runs on (tests force the portable one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    Portable,
    /// AVX-512 F/BW plus VNNI.
    Avx512Vnni,
}

impl Isa {
    /// The best this CPU supports, checked once.
    pub fn detect() -> Isa {
        static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *ISA.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                if std::is_x86_feature_detected!("avx512f")
                    && std::is_x86_feature_detected!("avx512bw")
                    && std::is_x86_feature_detected!("avx512vnni")
                    && std::env::var_os("MEDR1_PORTABLE_KERNELS").is_none()
                {
                    return Isa::Avx512Vnni;
                }
            }
            Isa::Portable
        })
    }
}

/// Symmetric int8 of `v` with the given scale, clamped to +-127 and rounded half to even by
/// adding and subtracting 1.5 * 2^23 (exact for |x| < 2^22): two additions the compiler
/// vectorises, where `round` and `round_ties_even` are libm calls without SSE4.1 (the baseline
/// x86-64 target), which made quantizing the vision tower's inputs cost more than their products.
#[inline]
pub(crate) fn to_i8(v: f32, inv_scale: f32) -> i8 {
    round_even((v * inv_scale).clamp(-127.0, 127.0)) as i8
}

/// Round half to even for |x| < 2^22 (see [`to_i8`]).
#[inline(always)]
pub(crate) fn round_even(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23
    (x + MAGIC) - MAGIC
}

/// Scale for a row whose largest magnitude is `amax` (zero rows get scale 0 and all-zero q).
#[inline]
pub(crate) fn scale_for(amax: f32) -> (f32, f32) {
    if amax > 0.0 && amax.is_finite() {
        (amax / 127.0, 127.0 / amax)
    } else {
        (0.0, 0.0)
    }
}

impl PackedI8 {
    #[inline]
    fn offset(&self, c: usize, kk: usize) -> usize {
        (c / BLOCK) * self.k4 * BLOCK + (kk / STEP) * BLOCK * STEP + (c % BLOCK) * STEP + kk % STEP
    }

    /// Bytes this weight occupies (quantized values, scales and sums).
    pub fn bytes(&self) -> usize {
        self.data.len() + 4 * (self.scales.len() + self.sums.len())
    }

    /// Quantizes `w` [n, k] (row-major float32) per output channel.
    pub fn quantize(w: &[f32], n: usize, k: usize) -> PackedI8 {
        assert_eq!(w.len(), n * k, "weight is not [{n}, {k}]");
        let k4 = k.div_ceil(STEP) * STEP;
        let blocks = n.div_ceil(BLOCK);
        let mut p = PackedI8 { n, k, k4, data: vec![0; blocks * BLOCK * k4], scales: vec![0.0; n], sums: vec![0; n] };
        let block_bytes = k4 * BLOCK;
        let (scales, sums) = (&mut p.scales, &mut p.sums);
        p.data
            .par_chunks_mut(block_bytes)
            .zip(scales.par_chunks_mut(BLOCK))
            .zip(sums.par_chunks_mut(BLOCK))
            .enumerate()
            .for_each(|(b, ((dst, sc), su))| {
                for (lane, (s, sum)) in sc.iter_mut().zip(su.iter_mut()).enumerate() {
                    let c = b * BLOCK + lane;
                    let row = &w[c * k..(c + 1) * k];
                    let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
                    let (scale, inv) = scale_for(amax);
                    *s = scale;
                    let mut total = 0i32;
                    for (kk, &v) in row.iter().enumerate() {
                        let q = to_i8(v, inv);
                        total += q as i32;
                        dst[(kk / STEP) * BLOCK * STEP + lane * STEP + kk % STEP] = q;
                    }
                    *sum = total;
                }
            });
        p
    }

    /// Rebuilds a packed weight from its stored parts (see `crate::quantized`): `data` in the
    /// packed layout and one scale per channel. None when the sizes do not fit [n, k].
    pub fn from_parts(n: usize, k: usize, data: Vec<i8>, scales: Vec<f32>) -> Option<PackedI8> {
        let k4 = k.div_ceil(STEP) * STEP;
        if data.len() != n.div_ceil(BLOCK) * BLOCK * k4 || scales.len() != n {
            return None;
        }
        let mut p = PackedI8 { n, k, k4, data, scales, sums: vec![0; n] };
        for c in 0..n {
            p.sums[c] = (0..k).map(|kk| p.data[p.offset(c, kk)] as i32).sum();
        }
        Some(p)
    }

    /// The packed quantized values (for saving).
    pub fn data(&self) -> &[i8] {
        &self.data
    }

    /// Row `c` dequantized (an embedding lookup).
    pub fn row(&self, c: usize, out: &mut [f32]) {
        let s = self.scales[c];
        for (kk, o) in out.iter_mut().enumerate().take(self.k) {
            *o = self.data[self.offset(c, kk)] as f32 * s;
        }
    }

    /// The whole weight dequantized, [n, k] row-major.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.n * self.k];
        out.par_chunks_mut(self.k).enumerate().for_each(|(c, r)| self.row(c, r));
        out
    }
}

/// Row-quantized activations: `[m][k4]` bytes offset by 128, and each row's scale.
struct QuantizedRows {
    data: Vec<u8>,
    scales: Vec<f32>,
}

fn quantize_rows(x: &[f32], m: usize, k: usize, k4: usize) -> QuantizedRows {
    let mut data = vec![128u8; m * k4];
    let mut scales = vec![0f32; m];
    data.par_chunks_mut(k4).zip(scales.par_iter_mut()).enumerate().for_each(|(r, (dst, s))| {
        let row = &x[r * k..(r + 1) * k];
        let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        let (scale, inv) = scale_for(amax);
        *s = scale;
        for (d, &v) in dst.iter_mut().zip(row) {
            *d = (to_i8(v, inv) as i32 + 128) as u8;
        }
    });
    QuantizedRows { data, scales }
}

/// Rows of the W8A8 output tile.
const MR: usize = 6;
/// Blocks per task: 8 x 16 channels, a [128, k] band of the weight (L2-sized up to k = 8960).
const TASK_BLOCKS: usize = 8;

/// `x W^T (+ bias)` for `x` [m, k] float32 through W8A8 (activations quantized per row); returns
/// [m, n] float32.
pub fn matmul_w8a8(x: &[f32], m: usize, w: &PackedI8, bias: Option<&[f32]>, isa: Isa) -> Vec<f32> {
    assert_eq!(x.len(), m * w.k, "input is not [{m}, {}]", w.k);
    integer_product(&quantize_rows(x, m, w.k, w.k4), m, 1, w, bias, isa)
}

/// `x W^T (+ bias)` for a few rows (decoding) with the input kept to 15 bits: each row is split
/// into two int8 digits, `x ~= s1 q1 + s2 q2` with `s2 = s1 / 254`, so the input's rounding error
/// is at most 1/64516 of the row's largest value — nothing beside the weights' own rounding, which
/// makes this weight-only in effect — while the weights stream through `vpdpbusd` at one
/// instruction per 64 bytes (widening int8 to float32 costs twelve).
pub fn matmul_two_digit(x: &[f32], m: usize, w: &PackedI8, bias: Option<&[f32]>, isa: Isa) -> Vec<f32> {
    assert_eq!(x.len(), m * w.k, "input is not [{m}, {}]", w.k);
    let (k, k4) = (w.k, w.k4);
    let mut data = vec![128u8; 2 * m * k4];
    let mut scales = vec![0f32; 2 * m];
    for r in 0..m {
        let row = &x[r * k..(r + 1) * k];
        let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        let (s1, inv1) = scale_for(amax);
        let (s2, inv2) = if s1 > 0.0 { (s1 / 254.0, 254.0 / s1) } else { (0.0, 0.0) };
        scales[2 * r] = s1;
        scales[2 * r + 1] = s2;
        let (hi, lo) = data[2 * r * k4..2 * (r + 1) * k4].split_at_mut(k4);
        for (i, &v) in row.iter().enumerate() {
            let q1 = to_i8(v, inv1);
            hi[i] = (q1 as i32 + 128) as u8;
            lo[i] = (to_i8(v - q1 as f32 * s1, inv2) as i32 + 128) as u8;
        }
    }
    integer_product(&QuantizedRows { data, scales }, m, 2, w, bias, isa)
}

/// The integer products of `m` rows of `digits` quantized rows each, combined into float32:
/// `y[r, c] = w_scale[c] * sum_d a_scale[r, d] * (dot - 128 * sum_q[c]) + bias[c]`.
fn integer_product(
    a: &QuantizedRows,
    m: usize,
    digits: usize,
    w: &PackedI8,
    bias: Option<&[f32]>,
    isa: Isa,
) -> Vec<f32> {
    let (n, rows) = (w.n, m * digits);
    super::bands::by_bands(m, n, TASK_BLOCKS, bias, |b0, b1| {
        let cols = (b1 - b0) * BLOCK;
        let mut acc = vec![0i32; rows * cols];
        int_tile_band(&a.data, rows, w, b0, b1, &mut acc, isa);
        let mut out = vec![0f32; m * cols];
        for r in 0..m {
            for j in 0..cols.min(n - b0 * BLOCK) {
                let c = b0 * BLOCK + j;
                let mut v = 0f32;
                for d in 0..digits {
                    let q = r * digits + d;
                    v += (acc[q * cols + j] - 128 * w.sums[c]) as f32 * a.scales[q];
                }
                out[r * cols + j] = v * w.scales[c];
            }
        }
        out
    })
}

/// Integer products of all `m` rows with blocks `b0..b1`: `acc` is [m][(b1-b0)*16].
fn int_tile_band(a: &[u8], m: usize, w: &PackedI8, b0: usize, b1: usize, acc: &mut [i32], isa: Isa) {
    let cols = (b1 - b0) * BLOCK;
    let mut r0 = 0;
    while r0 < m {
        let rows = MR.min(m - r0);
        let mut b = b0;
        while b < b1 {
            let nb = if b + 1 < b1 { 2 } else { 1 };
            let mut tile = [[0i32; 2 * BLOCK]; MR];
            match isa {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: Isa::Avx512Vnni is only chosen when the CPU has the features; the tile
                // reads stay inside `a` (rows r0..r0+rows of k4 bytes) and blocks b..b+nb.
                Isa::Avx512Vnni => unsafe { vnni::tile(a, r0, rows, w, b, nb, &mut tile) },
                _ => tile_portable(a, r0, rows, w, b, nb, &mut tile),
            }
            for (i, t) in tile.iter().enumerate().take(rows) {
                let dst = &mut acc[(r0 + i) * cols + (b - b0) * BLOCK..];
                dst[..nb * BLOCK].copy_from_slice(&t[..nb * BLOCK]);
            }
            b += nb;
        }
        r0 += rows;
    }
}

fn tile_portable(
    a: &[u8],
    r0: usize,
    rows: usize,
    w: &PackedI8,
    b: usize,
    nb: usize,
    tile: &mut [[i32; 2 * BLOCK]; MR],
) {
    let k4 = w.k4;
    for (i, t) in tile.iter_mut().enumerate().take(rows) {
        let arow = &a[(r0 + i) * k4..(r0 + i + 1) * k4];
        for j in 0..nb {
            let blk = &w.data[(b + j) * k4 * BLOCK..(b + j + 1) * k4 * BLOCK];
            for lane in 0..BLOCK {
                let mut s = 0i32;
                for (g, av) in arow.chunks_exact(STEP).enumerate() {
                    let wv = &blk[g * BLOCK * STEP + lane * STEP..][..STEP];
                    for q in 0..STEP {
                        s += av[q] as i32 * wv[q] as i32;
                    }
                }
                t[j * BLOCK + lane] = s;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod vnni {
    use super::{PackedI8, BLOCK, MR, STEP};
    use std::arch::x86_64::*;

    /// Dispatches on the number of rows and blocks so the accumulators are constants the
    /// compiler keeps in registers (6 x 2 zmm).
    ///
    /// # Safety
    /// The CPU must have AVX-512 F/BW and VNNI; rows and blocks must be in bounds.
    pub unsafe fn tile(
        a: &[u8],
        r0: usize,
        rows: usize,
        w: &PackedI8,
        b: usize,
        nb: usize,
        tile: &mut [[i32; 2 * BLOCK]; MR],
    ) {
        assert!(a.len() >= (r0 + rows) * w.k4 && (b + nb) * w.k4 * BLOCK <= w.data.len());
        macro_rules! go {
            ($r:literal) => {
                if nb == 2 {
                    kernel::<$r, 2>(a, r0, w, b, tile)
                } else {
                    kernel::<$r, 1>(a, r0, w, b, tile)
                }
            };
        }
        match rows {
            1 => go!(1),
            2 => go!(2),
            3 => go!(3),
            4 => go!(4),
            5 => go!(5),
            _ => go!(6),
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn kernel<const R: usize, const NB: usize>(
        a: &[u8],
        r0: usize,
        w: &PackedI8,
        b: usize,
        tile: &mut [[i32; 2 * BLOCK]; MR],
    ) {
        let k4 = w.k4;
        let ap = a.as_ptr().add(r0 * k4);
        let bp = w.data.as_ptr().add(b * k4 * BLOCK);
        let mut acc = [[_mm512_setzero_si512(); NB]; R];
        for g in 0..k4 / STEP {
            let mut bv = [_mm512_setzero_si512(); NB];
            for (j, v) in bv.iter_mut().enumerate() {
                *v = _mm512_loadu_si512(bp.add(j * k4 * BLOCK + g * BLOCK * STEP) as *const _);
            }
            for (r, accr) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_epi32(std::ptr::read_unaligned(ap.add(r * k4 + g * STEP) as *const i32));
                for j in 0..NB {
                    accr[j] = _mm512_dpbusd_epi32(accr[j], av, bv[j]);
                }
            }
        }
        for (t, accr) in tile.iter_mut().zip(&acc) {
            for (j, v) in accr.iter().enumerate() {
                _mm512_storeu_si512(t.as_mut_ptr().add(j * BLOCK) as *mut _, *v);
            }
        }
    }
}

/// `x W^T (+ bias)` with the weights widened to float32 and the input kept exact (weight-only
/// int8): the reference the two-digit decode product is held to. One thread, no SIMD.
pub fn matmul_weight_only(x: &[f32], m: usize, w: &PackedI8, bias: Option<&[f32]>) -> Vec<f32> {
    assert_eq!(x.len(), m * w.k, "input is not [{m}, {}]", w.k);
    let (k, n) = (w.k, w.n);
    let mut y = vec![0f32; m * n];
    let mut row = vec![0f32; k];
    for c in 0..n {
        w.row(c, &mut row);
        for r in 0..m {
            let dot: f32 = row.iter().zip(&x[r * k..(r + 1) * k]).map(|(a, b)| a * b).sum();
            y[r * n + c] = dot + bias.map_or(0.0, |v| v[c]);
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random(len: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    /// float64 product of `x` [m, k] with `w` [n, k].
    fn reference(x: &[f32], m: usize, w: &[f32], n: usize, k: usize) -> Vec<f64> {
        let mut y = vec![0f64; m * n];
        for r in 0..m {
            for c in 0..n {
                y[r * n + c] = (0..k).map(|i| x[r * k + i] as f64 * w[c * k + i] as f64).sum();
            }
        }
        y
    }

    /// Largest error relative to the largest reference magnitude.
    fn rel_err(got: &[f32], want: &[f64]) -> f64 {
        let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
        got.iter().zip(want).map(|(g, w)| (*g as f64 - w).abs()).fold(0f64, f64::max) / scale
    }

    #[test]
    fn quantize_round_trips_within_half_a_step_and_packs_every_element() {
        // A hand-worked row: amax 2.54 -> scale 0.02; 1.0 -> 50, -2.54 -> -127, 0.011 -> 1 (0.55 rounds up).
        let w = [1.0f32, -2.54, 0.011, 0.0, 0.5];
        let p = PackedI8::quantize(&w, 1, 5);
        assert!((p.scales[0] - 0.02).abs() < 1e-7);
        let mut row = [0f32; 5];
        p.row(0, &mut row);
        let q: Vec<i32> = row.iter().map(|v| (v / 0.02).round() as i32).collect();
        assert_eq!(q, [50, -127, 1, 0, 25]);
        assert_eq!(p.sums[0], 50 - 127 + 1 + 25);
        // Odd shapes: every element comes back within half a quantization step.
        for (n, k) in [(1, 1), (17, 5), (33, 130), (3, 4)] {
            let w = random(n * k, 7);
            let p = PackedI8::quantize(&w, n, k);
            let back = p.dequantize();
            for c in 0..n {
                for i in 0..k {
                    let e = (back[c * k + i] - w[c * k + i]).abs();
                    assert!(e <= p.scales[c] * 0.5 + 1e-6, "[{n},{k}] at ({c},{i}): {e}");
                }
            }
            let again = PackedI8::from_parts(n, k, p.data().to_vec(), p.scales.clone()).unwrap();
            assert_eq!(again.sums, p.sums);
        }
        // A zero row stays zero (no division by zero).
        let z = PackedI8::quantize(&[0.0; 6], 2, 3);
        assert_eq!(z.dequantize(), vec![0.0; 6]);
        // The rounding is half to even, and exact elsewhere.
        for (x, want) in
            [(0.5f32, 0.0f32), (1.5, 2.0), (2.5, 2.0), (-0.5, 0.0), (-1.5, -2.0), (0.49, 0.0), (126.6, 127.0)]
        {
            assert_eq!(round_even(x), want, "{x}");
        }
    }

    #[test]
    fn w8a8_matches_float64_on_odd_shapes_and_vnni_equals_portable_exactly() {
        let isa = Isa::detect();
        // Rows not a multiple of the tile (6), channels not of the block (16) or task (128), k
        // not a multiple of 4; one row; a thousand rows.
        for (m, n, k) in [(1, 1, 1), (7, 17, 5), (13, 40, 130), (6, 300, 64), (1000, 33, 67), (9, 129, 1536)] {
            let x = random(m * k, 1);
            let w = random(n * k, 2);
            let bias = random(n, 3);
            let p = PackedI8::quantize(&w, n, k);
            let want = reference(&x, m, &w, n, k);
            let portable = matmul_w8a8(&x, m, &p, None, Isa::Portable);
            let fast = matmul_w8a8(&x, m, &p, None, isa);
            // Integer arithmetic: the two instruction sets agree bit for bit.
            assert_eq!(portable, fast, "[{m},{n},{k}]");
            let err = rel_err(&fast, &want);
            // Two roundings of <= 1/254 of each row's max; random signs average most of it away.
            assert!(err < 0.02, "[{m},{n},{k}] relative error {err}");
            let with_bias = matmul_w8a8(&x, m, &p, Some(&bias), isa);
            for r in 0..m {
                for c in 0..n {
                    assert!((with_bias[r * n + c] - fast[r * n + c] - bias[c]).abs() < 1e-5);
                }
            }
        }
    }

    #[test]
    fn weight_only_matches_the_dequantized_product_and_float64() {
        for (m, n, k) in [(1, 1, 1), (1, 17, 5), (2, 40, 130), (3, 300, 67), (8, 33, 1536), (5, 512, 64)] {
            let x = random(m * k, 4);
            let w = random(n * k, 5);
            let bias = random(n, 6);
            let p = PackedI8::quantize(&w, n, k);
            // Against the dequantized weight in float64: only summation order differs.
            let dq = reference(&x, m, &p.dequantize(), n, k);
            let mut dq_b = dq.clone();
            for r in 0..m {
                for c in 0..n {
                    dq_b[r * n + c] += bias[c] as f64;
                }
            }
            let y = matmul_weight_only(&x, m, &p, Some(&bias));
            assert!(rel_err(&y, &dq_b) < 1e-5, "[{m},{n},{k}]: {}", rel_err(&y, &dq_b));
            // And the weight rounding alone is small against the float weights.
            let y = matmul_weight_only(&x, m, &p, None);
            let err = rel_err(&y, &reference(&x, m, &w, n, k));
            assert!(err < 0.01, "[{m},{n},{k}] weight rounding error {err}");
        }
    }

    #[test]
    fn two_digit_decode_equals_the_float32_weight_only_product() {
        let isa = Isa::detect();
        for (m, n, k) in [(1, 1, 1), (1, 17, 5), (2, 40, 130), (3, 300, 67), (8, 33, 1536), (1, 4096, 64)] {
            let x = random(m * k, 14);
            let w = random(n * k, 15);
            let bias = random(n, 16);
            let p = PackedI8::quantize(&w, n, k);
            let exact = matmul_weight_only(&x, m, &p, Some(&bias));
            let portable = matmul_two_digit(&x, m, &p, Some(&bias), Isa::Portable);
            let fast = matmul_two_digit(&x, m, &p, Some(&bias), isa);
            // Integer arithmetic: bit for bit across instruction sets.
            assert_eq!(portable, fast, "[{m},{n},{k}]");
            // The 15-bit input loses ~1/64516 of a row's max: far inside the weights' 1/254.
            let scale = exact.iter().fold(0f32, |m, v| m.max(v.abs()));
            let err = exact.iter().zip(&fast).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max) / scale;
            assert!(err < 2e-4, "[{m},{n},{k}] two-digit vs float32 weight-only: {err}");
        }
    }

    #[test]
    fn a_wrong_scale_or_a_dropped_row_is_caught() {
        // The bounds above would catch a broken kernel: scaling one channel by 2, or zeroing one
        // row, moves the error far past them.
        let (m, n, k) = (4, 20, 64);
        let x = random(m * k, 8);
        let w = random(n * k, 9);
        let want = reference(&x, m, &w, n, k);
        let mut p = PackedI8::quantize(&w, n, k);
        p.scales[3] *= 2.0;
        assert!(rel_err(&matmul_w8a8(&x, m, &p, None, Isa::detect()), &want) > 0.1);
        let mut p = PackedI8::quantize(&w, n, k);
        p.scales[19] = 0.0;
        assert!(rel_err(&matmul_weight_only(&x, m, &p, None), &want) > 0.1);
        assert!(rel_err(&matmul_two_digit(&x, m, &p, None, Isa::detect()), &want) > 0.1);
    }
}
