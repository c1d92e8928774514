//! 4-bit weights in groups of 32 with a float scale each (as llama.cpp's Q4_0), for decode-bound
//! use: decoding reads half of int8's bytes per token (4.5 bits per weight with the f16 scales).
//!
//! Quantization: per output channel and group of 32 inputs, symmetric, `q = round(w / s)` in
//! [-7, 7] with `s = max|w| / 7` (stored as f16), kept as the unsigned nibble `q + 8`.
//!
//! Products (every row count, as llama.cpp does): W4A8. Input rows are quantized symmetrically
//! per row to int8, and `vpdpbusd` multiplies the unsigned nibbles (u8 operand) with the signed
//! inputs (s8 operand); the +8 offset comes back out with the input's per-group sum. Each group's
//! int32 dot product is scaled by its f16 scale into a float32 accumulator. The portable loop does
//! the same integer arithmetic, so both give identical results.
//!
//! Layout ("q4x16"): channels in blocks of 16; per block and group of 32 inputs, 256 bytes where
//! byte `[s][c][j]` (s < 4, c < 16, j < 4) holds input `4s + j` of channel `c` in its low nibble
//! and input `16 + 4s + j` in its high nibble — so masking and shifting one 64-byte load gives the
//! two `vpdpbusd` operands of steps `s` and `s + 4`. Then the block's 16 f16 scales per group.
//! `k` is padded to a multiple of 32 and `n` to 16 with zeros.

use rayon::prelude::*;

pub use super::bands::BLOCK;
pub const GROUP: usize = 32;
const GROUP_BYTES: usize = BLOCK * GROUP / 2;

#[derive(Clone)]
pub struct PackedQ4 {
    pub n: usize,
    pub k: usize,
    /// `k` rounded up to [`GROUP`].
    k32: usize,
    /// `[block][group][256]` nibbles.
    data: Vec<u8>,
    /// `[block][group][16]` f16 scales.
    scales: Vec<half::f16>,
}

impl std::fmt::Debug for PackedQ4 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedQ4 [{}, {}]", self.n, self.k)
    }
}

use super::int8::round_even;
pub use super::int8::Isa;

impl PackedQ4 {
    fn groups(&self) -> usize {
        self.k32 / GROUP
    }

    pub fn bytes(&self) -> usize {
        self.data.len() + 2 * self.scales.len()
    }

    /// Byte index and nibble shift of input `kk` of channel `c`.
    #[inline]
    fn at(&self, c: usize, kk: usize) -> (usize, u32) {
        let (b, lane) = (c / BLOCK, c % BLOCK);
        let (g, i) = (kk / GROUP, kk % GROUP);
        let (half, i) = (i / 16, i % 16);
        let (s, j) = (i / 4, i % 4);
        ((b * self.groups() + g) * GROUP_BYTES + s * 64 + lane * 4 + j, 4 * half as u32)
    }

    /// Quantizes `w` [n, k] (row-major float32).
    pub fn quantize(w: &[f32], n: usize, k: usize) -> PackedQ4 {
        assert_eq!(w.len(), n * k, "weight is not [{n}, {k}]");
        let k32 = k.div_ceil(GROUP) * GROUP;
        let (blocks, groups) = (n.div_ceil(BLOCK), k32 / GROUP);
        let mut p = PackedQ4 {
            n,
            k,
            k32,
            data: vec![0x88; blocks * groups * GROUP_BYTES],
            scales: vec![half::f16::ZERO; blocks * groups * BLOCK],
        };
        let rows: Vec<(Vec<half::f16>, Vec<u8>)> = (0..n)
            .into_par_iter()
            .map(|c| {
                let row = &w[c * k..(c + 1) * k];
                let mut scales = vec![half::f16::ZERO; groups];
                let mut q = vec![8u8; k32];
                for g in 0..groups {
                    let part = &row[(g * GROUP).min(k)..((g + 1) * GROUP).min(k)];
                    let amax = part.iter().fold(0f32, |m, v| m.max(v.abs()));
                    // The scale as stored (f16), so rounding uses the value the product will.
                    let s = half::f16::from_f32(amax / 7.0);
                    let sf = s.to_f32();
                    scales[g] = s;
                    if sf > 0.0 && sf.is_finite() {
                        for (i, &v) in part.iter().enumerate() {
                            q[g * GROUP + i] = (round_even((v / sf).clamp(-7.0, 7.0)) as i32 + 8) as u8;
                        }
                    }
                }
                (scales, q)
            })
            .collect();
        for (c, (scales, q)) in rows.into_iter().enumerate() {
            let (b, lane) = (c / BLOCK, c % BLOCK);
            for (g, s) in scales.into_iter().enumerate() {
                p.scales[(b * groups + g) * BLOCK + lane] = s;
            }
            for (kk, &v) in q.iter().enumerate() {
                let (i, shift) = p.at(c, kk);
                p.data[i] = (p.data[i] & !(0x0F << shift)) | (v << shift);
            }
        }
        p
    }

    /// The whole weight dequantized, [n, k] row-major.
    pub fn dequantize(&self) -> Vec<f32> {
        let groups = self.groups();
        let mut out = vec![0f32; self.n * self.k];
        out.par_chunks_mut(self.k.max(1)).enumerate().for_each(|(c, row)| {
            let (b, lane) = (c / BLOCK, c % BLOCK);
            for (kk, o) in row.iter_mut().enumerate() {
                let (i, shift) = self.at(c, kk);
                let q = ((self.data[i] >> shift) & 0x0F) as i32 - 8;
                *o = q as f32 * self.scales[(b * groups + kk / GROUP) * BLOCK + lane].to_f32();
            }
        });
        out
    }
}

/// Rows quantized to int8 (signed, per row), padded to `k32`, with each row's scale and its
/// per-group sums (for the nibbles' +8 offset).
struct Rows {
    data: Vec<i8>,
    scales: Vec<f32>,
    sums: Vec<i32>,
}

fn quantize_rows(x: &[f32], m: usize, k: usize, k32: usize) -> Rows {
    let groups = k32 / GROUP;
    let mut data = vec![0i8; m * k32];
    let mut scales = vec![0f32; m];
    let mut sums = vec![0i32; m * groups];
    data.par_chunks_mut(k32).zip(scales.par_iter_mut()).zip(sums.par_chunks_mut(groups)).enumerate().for_each(
        |(r, ((dst, s), gs))| {
            let row = &x[r * k..(r + 1) * k];
            let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            let (scale, inv) = super::int8::scale_for(amax);
            *s = scale;
            for (i, (d, &v)) in dst.iter_mut().zip(row).enumerate() {
                *d = super::int8::to_i8(v, inv);
                gs[i / GROUP] += *d as i32;
            }
        },
    );
    Rows { data, scales, sums }
}

const MR: usize = 6;
const TASK_BLOCKS: usize = 8;

/// `x W^T (+ bias)` for `x` [m, k] through W4A8; returns [m, n] float32.
pub fn matmul(x: &[f32], m: usize, w: &PackedQ4, bias: Option<&[f32]>, isa: Isa) -> Vec<f32> {
    assert_eq!(x.len(), m * w.k, "input is not [{m}, {}]", w.k);
    let a = quantize_rows(x, m, w.k, w.k32);
    super::bands::by_bands(m, w.n, TASK_BLOCKS, bias, |b0, b1| {
        let cols = (b1 - b0) * BLOCK;
        let mut out = vec![0f32; m * cols];
        let mut r0 = 0;
        while r0 < m {
            let rows = MR.min(m - r0);
            for b in b0..b1 {
                let mut tile = [[0f32; BLOCK]; MR];
                match isa {
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: Avx512Vnni is chosen only when the CPU has it; bounds asserted.
                    Isa::Avx512Vnni => unsafe { vnni::tile(&a, r0, rows, w, b, &mut tile) },
                    _ => tile_portable(&a, r0, rows, w, b, &mut tile),
                }
                for (i, t) in tile.iter().enumerate().take(rows) {
                    let dst = &mut out[(r0 + i) * cols + (b - b0) * BLOCK..][..BLOCK];
                    for (d, v) in dst.iter_mut().zip(t) {
                        *d = v * a.scales[r0 + i];
                    }
                }
            }
            r0 += rows;
        }
        out
    })
}

/// Sum over groups of scale[g, c] * (sum_i nibble * x_i - 8 * xsum[g]) for rows r0.. and block b
/// (before the rows' scales).
fn tile_portable(a: &Rows, r0: usize, rows: usize, w: &PackedQ4, b: usize, tile: &mut [[f32; BLOCK]; MR]) {
    let (k32, groups) = (w.k32, w.groups());
    for (i, t) in tile.iter_mut().enumerate().take(rows) {
        let r = r0 + i;
        for g in 0..groups {
            let bytes = &w.data[(b * groups + g) * GROUP_BYTES..][..GROUP_BYTES];
            let x = &a.data[r * k32 + g * GROUP..][..GROUP];
            for (lane, t) in t.iter_mut().enumerate() {
                let mut dot = 0i32;
                for s in 0..4 {
                    for j in 0..4 {
                        let byte = bytes[s * 64 + lane * 4 + j];
                        dot += (byte & 0x0F) as i32 * x[4 * s + j] as i32;
                        dot += (byte >> 4) as i32 * x[16 + 4 * s + j] as i32;
                    }
                }
                let dot = dot - 8 * a.sums[r * groups + g];
                *t += dot as f32 * w.scales[(b * groups + g) * BLOCK + lane].to_f32();
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod vnni {
    use super::{PackedQ4, Rows, BLOCK, GROUP, GROUP_BYTES, MR};
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must have AVX-512 F/BW and VNNI.
    pub unsafe fn tile(a: &Rows, r0: usize, rows: usize, w: &PackedQ4, b: usize, tile: &mut [[f32; BLOCK]; MR]) {
        assert!(a.data.len() >= (r0 + rows) * w.k32 && (b + 1) * w.groups() * GROUP_BYTES <= w.data.len());
        // P independent partial dot products per row: with one row (decoding) a single chain of
        // eight dependent vpdpbusd per group would leave the unit idle for their latency.
        match rows {
            1 => kernel::<1, 4>(a, r0, w, b, tile),
            2 => kernel::<2, 4>(a, r0, w, b, tile),
            3 => kernel::<3, 2>(a, r0, w, b, tile),
            4 => kernel::<4, 2>(a, r0, w, b, tile),
            5 => kernel::<5, 2>(a, r0, w, b, tile),
            _ => kernel::<6, 2>(a, r0, w, b, tile),
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn kernel<const R: usize, const P: usize>(
        a: &Rows,
        r0: usize,
        w: &PackedQ4,
        b: usize,
        tile: &mut [[f32; BLOCK]; MR],
    ) {
        let (k32, groups) = (w.k32, w.groups());
        let low = _mm512_set1_epi8(0x0F);
        let mut acc = [_mm512_setzero_ps(); R];
        let wp = w.data.as_ptr().add(b * groups * GROUP_BYTES);
        let sp = w.scales.as_ptr().add(b * groups * BLOCK);
        let xp = a.data.as_ptr();
        for g in 0..groups {
            // The group's 8 operands: steps 0-3 from the low nibbles, 4-7 from the high ones.
            let mut ops = [_mm512_setzero_si512(); 8];
            for s in 0..4 {
                let v = _mm512_loadu_si512(wp.add(g * GROUP_BYTES + s * 64) as *const _);
                ops[s] = _mm512_and_si512(v, low);
                ops[s + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low);
            }
            let scale = _mm512_cvtph_ps(_mm256_loadu_si256(sp.add(g * BLOCK) as *const _));
            for (r, acc) in acc.iter_mut().enumerate() {
                let row = xp.add((r0 + r) * k32 + g * GROUP);
                let mut dots = [_mm512_setzero_si512(); P];
                for (s, op) in ops.iter().enumerate() {
                    // Steps 0-3 are inputs 4s..4s+4; steps 4-7 are 16 + 4(s-4).
                    let off = if s < 4 { 4 * s } else { 16 + 4 * (s - 4) };
                    let xv = _mm512_set1_epi32(std::ptr::read_unaligned(row.add(off) as *const i32));
                    dots[s % P] = _mm512_dpbusd_epi32(dots[s % P], *op, xv);
                }
                let mut dot = dots[0];
                for d in &dots[1..] {
                    dot = _mm512_add_epi32(dot, *d);
                }
                let corr = _mm512_set1_epi32(8 * a.sums[(r0 + r) * groups + g]);
                let dot = _mm512_cvtepi32_ps(_mm512_sub_epi32(dot, corr));
                *acc = _mm512_fmadd_ps(dot, scale, *acc);
            }
        }
        for (t, v) in tile.iter_mut().zip(&acc) {
            _mm512_storeu_ps(t.as_mut_ptr(), *v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random(len: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    #[test]
    fn quantize_keeps_each_group_within_half_a_step() {
        for (n, k) in [(1, 1), (17, 5), (33, 70), (16, 64)] {
            let w = random(n * k, 3);
            let p = PackedQ4::quantize(&w, n, k);
            let back = p.dequantize();
            for c in 0..n {
                for g in 0..k.div_ceil(GROUP) {
                    let part = g * GROUP..((g + 1) * GROUP).min(k);
                    let amax = w[c * k..][part.clone()].iter().fold(0f32, |m, v| m.max(v.abs()));
                    for i in part {
                        let e = (back[c * k + i] - w[c * k + i]).abs();
                        // Half a step of amax / 7, plus the f16 rounding of the scale.
                        assert!(e <= amax / 14.0 * 1.01 + 1e-6, "[{n},{k}] ({c},{i}): {e}");
                    }
                }
            }
        }
    }

    #[test]
    fn w4a8_matches_the_dequantized_product_and_vnni_equals_portable() {
        for (m, n, k) in [(1, 1, 1), (1, 17, 5), (7, 40, 131), (6, 300, 64), (300, 33, 67), (9, 129, 1536)] {
            let x = random(m * k, 1);
            let w = random(n * k, 2);
            let bias = random(n, 4);
            let p = PackedQ4::quantize(&w, n, k);
            let dq = p.dequantize();
            let portable = matmul(&x, m, &p, Some(&bias), Isa::Portable);
            let fast = matmul(&x, m, &p, Some(&bias), Isa::detect());
            // Same integer products and the same float operations per group: equal up to FMA
            // contraction.
            for (a, b) in portable.iter().zip(&fast) {
                assert!((a - b).abs() <= 1e-4 * a.abs().max(1.0), "[{m},{n},{k}] {a} vs {b}");
            }
            // Against the dequantized weight in float64: only the inputs' int8 rounding differs.
            let mut worst = 0f64;
            let mut scale = 0f64;
            for r in 0..m {
                for c in 0..n {
                    let want: f64 =
                        (0..k).map(|i| x[r * k + i] as f64 * dq[c * k + i] as f64).sum::<f64>() + bias[c] as f64;
                    worst = worst.max((fast[r * n + c] as f64 - want).abs());
                    scale = scale.max(want.abs());
                }
            }
            assert!(worst / scale < 0.02, "[{m},{n},{k}] relative error {}", worst / scale);
        }
    }
}
