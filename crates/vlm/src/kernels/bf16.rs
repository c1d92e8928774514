//! bfloat16 weights multiplied through AVX512_BF16's `vdpbf16ps`: each instruction takes 16 output
//! channels x 2 inputs of bf16 pairs and accumulates their products in float32 (32 multiply-adds,
//! twice float32's FMA rate, from half the bytes). The input rows are rounded to bfloat16 (round
//! to nearest even) as PyTorch's bf16 linear does; products of two bf16 values are exact in
//! float32, so only the accumulation order differs from the widened float32 product.
//!
//! Layout ("bf16x2"): output channels in blocks of 16, the reduction axis in pairs:
//! `[block][k/2][16 channels][2]`, so one 64-byte load is the operand for 16 channels. `k` is
//! padded to even and `n` to a multiple of 16 with zeros. The same layout serves every row
//! count: decoding streams it (half of float32's bytes per token) with one row broadcast.
//!
//! CPUs without AVX512_BF16 get the portable loop (widening in registers), compiled for AVX2/FMA
//! where the CPU has them.

use half::bf16;
use rayon::prelude::*;

pub use super::bands::BLOCK;
pub const STEP: usize = 2;

/// A [n, k] bfloat16 weight in the packed layout.
#[derive(Clone)]
pub struct PackedBf16 {
    pub n: usize,
    pub k: usize,
    k2: usize,
    data: Vec<u16>,
}

impl std::fmt::Debug for PackedBf16 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedBf16 [{}, {}]", self.n, self.k)
    }
}

/// Which instructions a product runs on (tests force the portable one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    Portable,
    Avx2Fma,
    Avx512Bf16,
}

impl Isa {
    pub fn detect() -> Isa {
        static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *ISA.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                if std::env::var_os("MEDR1_PORTABLE_KERNELS").is_some() {
                    return Isa::Portable;
                }
                if std::is_x86_feature_detected!("avx512f")
                    && std::is_x86_feature_detected!("avx512bw")
                    && std::is_x86_feature_detected!("avx512bf16")
                {
                    return Isa::Avx512Bf16;
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    return Isa::Avx2Fma;
                }
            }
            Isa::Portable
        })
    }
}

impl PackedBf16 {
    #[inline]
    fn offset(&self, c: usize, kk: usize) -> usize {
        (c / BLOCK) * self.k2 * BLOCK + (kk / STEP) * BLOCK * STEP + (c % BLOCK) * STEP + kk % STEP
    }

    /// Packs `w` [n, k] (row-major bfloat16).
    pub fn pack(w: &[bf16], n: usize, k: usize) -> PackedBf16 {
        assert_eq!(w.len(), n * k, "weight is not [{n}, {k}]");
        let k2 = k.div_ceil(STEP) * STEP;
        let mut data = vec![0u16; n.div_ceil(BLOCK) * BLOCK * k2];
        data.par_chunks_mut(k2 * BLOCK).enumerate().for_each(|(b, dst)| {
            for lane in 0..BLOCK {
                let c = b * BLOCK + lane;
                if c >= n {
                    break;
                }
                for (kk, v) in w[c * k..(c + 1) * k].iter().enumerate() {
                    dst[(kk / STEP) * BLOCK * STEP + lane * STEP + kk % STEP] = v.to_bits();
                }
            }
        });
        PackedBf16 { n, k, k2, data }
    }

    pub fn bytes(&self) -> usize {
        2 * self.data.len()
    }

    /// The weight as [n, k] row-major bfloat16.
    pub fn unpack(&self) -> Vec<bf16> {
        let mut out = vec![bf16::ZERO; self.n * self.k];
        out.par_chunks_mut(self.k.max(1)).enumerate().for_each(|(c, row)| {
            for (kk, o) in row.iter_mut().enumerate() {
                *o = bf16::from_bits(self.data[self.offset(c, kk)]);
            }
        });
        out
    }
}

const MR: usize = 6;
const TASK_BLOCKS: usize = 8;

/// `x W^T (+ bias)` for `x` [m, k] (float32 values, rounded to bfloat16 here) with a packed
/// bfloat16 weight; float32 accumulation; returns [m, n] float32.
pub fn matmul(x: &[f32], m: usize, w: &PackedBf16, bias: Option<&[f32]>, isa: Isa) -> Vec<f32> {
    assert_eq!(x.len(), m * w.k, "input is not [{m}, {}]", w.k);
    let (k, k2, n) = (w.k, w.k2, w.n);
    // Rows rounded to bf16, padded to k2 with zeros.
    let mut a = vec![0u16; m * k2];
    a.par_chunks_mut(k2.max(1)).enumerate().for_each(|(r, dst)| {
        for (d, &v) in dst.iter_mut().zip(&x[r * k..(r + 1) * k]) {
            *d = bf16::from_f32(v).to_bits();
        }
    });
    super::bands::by_bands(m, n, TASK_BLOCKS, bias, |b0, b1| {
        let mut out = vec![0f32; m * (b1 - b0) * BLOCK];
        band(&a, m, w, b0, b1, &mut out, isa);
        out
    })
}

fn band(a: &[u16], m: usize, w: &PackedBf16, b0: usize, b1: usize, out: &mut [f32], isa: Isa) {
    let cols = (b1 - b0) * BLOCK;
    let mut r0 = 0;
    while r0 < m {
        let rows = MR.min(m - r0);
        let mut b = b0;
        while b < b1 {
            let nb = if b + 1 < b1 { 2 } else { 1 };
            let mut tile = [[0f32; 2 * BLOCK]; MR];
            match isa {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: chosen only when the CPU has AVX512_BF16; bounds asserted inside.
                Isa::Avx512Bf16 => unsafe { avx512::tile(a, r0, rows, w, b, nb, &mut tile) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: chosen only when the CPU has AVX2 and FMA.
                Isa::Avx2Fma => unsafe { tile_avx2(a, r0, rows, w, b, nb, &mut tile) },
                _ => tile_portable(a, r0, rows, w, b, nb, &mut tile),
            }
            for (i, t) in tile.iter().enumerate().take(rows) {
                out[(r0 + i) * cols + (b - b0) * BLOCK..][..nb * BLOCK].copy_from_slice(&t[..nb * BLOCK]);
            }
            b += nb;
        }
        r0 += rows;
    }
}

#[inline(always)]
fn widen(v: u16) -> f32 {
    f32::from_bits((v as u32) << 16)
}

#[inline(always)]
fn tile_portable(
    a: &[u16],
    r0: usize,
    rows: usize,
    w: &PackedBf16,
    b: usize,
    nb: usize,
    tile: &mut [[f32; 2 * BLOCK]; MR],
) {
    let k2 = w.k2;
    for (i, t) in tile.iter_mut().enumerate().take(rows) {
        let arow = &a[(r0 + i) * k2..(r0 + i + 1) * k2];
        for j in 0..nb {
            let blk = &w.data[(b + j) * k2 * BLOCK..(b + j + 1) * k2 * BLOCK];
            let mut acc = [0f32; BLOCK];
            for (g, av) in arow.chunks_exact(STEP).enumerate() {
                let (x0, x1) = (widen(av[0]), widen(av[1]));
                let wg = &blk[g * BLOCK * STEP..(g + 1) * BLOCK * STEP];
                for (lane, acc) in acc.iter_mut().enumerate() {
                    *acc += widen(wg[2 * lane]) * x0 + widen(wg[2 * lane + 1]) * x1;
                }
            }
            t[j * BLOCK..(j + 1) * BLOCK].copy_from_slice(&acc);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2(
    a: &[u16],
    r0: usize,
    rows: usize,
    w: &PackedBf16,
    b: usize,
    nb: usize,
    tile: &mut [[f32; 2 * BLOCK]; MR],
) {
    tile_portable(a, r0, rows, w, b, nb, tile)
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{PackedBf16, BLOCK, MR, STEP};
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must have AVX-512 F/BW and BF16.
    pub unsafe fn tile(
        a: &[u16],
        r0: usize,
        rows: usize,
        w: &PackedBf16,
        b: usize,
        nb: usize,
        tile: &mut [[f32; 2 * BLOCK]; MR],
    ) {
        assert!(a.len() >= (r0 + rows) * w.k2 && (b + nb) * w.k2 * BLOCK <= w.data.len());
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

    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    unsafe fn kernel<const R: usize, const NB: usize>(
        a: &[u16],
        r0: usize,
        w: &PackedBf16,
        b: usize,
        tile: &mut [[f32; 2 * BLOCK]; MR],
    ) {
        let k2 = w.k2;
        let ap = a.as_ptr().add(r0 * k2);
        let bp = w.data.as_ptr().add(b * k2 * BLOCK);
        let mut acc = [[_mm512_setzero_ps(); NB]; R];
        for g in 0..k2 / STEP {
            let mut bv = [_mm512_setzero_si512(); NB];
            for (j, v) in bv.iter_mut().enumerate() {
                *v = _mm512_loadu_si512(bp.add(j * k2 * BLOCK + g * BLOCK * STEP) as *const _);
            }
            for (r, accr) in acc.iter_mut().enumerate() {
                let pair = std::ptr::read_unaligned(ap.add(r * k2 + g * STEP) as *const i32);
                let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(pair));
                for j in 0..NB {
                    accr[j] = _mm512_dpbf16_ps(accr[j], av, std::mem::transmute::<__m512i, __m512bh>(bv[j]));
                }
            }
        }
        for (t, accr) in tile.iter_mut().zip(&acc) {
            for (j, v) in accr.iter().enumerate() {
                _mm512_storeu_ps(t.as_mut_ptr().add(j * BLOCK), *v);
            }
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
    fn products_match_float64_of_the_bf16_values_on_odd_shapes() {
        for (m, n, k) in [(1, 1, 1), (1, 17, 5), (7, 40, 131), (6, 300, 64), (1000, 33, 67), (9, 129, 1536)] {
            let x = random(m * k, 1);
            let w: Vec<bf16> = random(n * k, 2).into_iter().map(bf16::from_f32).collect();
            let bias = random(n, 3);
            let p = PackedBf16::pack(&w, n, k);
            assert_eq!(p.unpack(), w);
            // The reference: the bf16-rounded input times the bf16 weight, in float64.
            let xr: Vec<f64> = x.iter().map(|&v| bf16::from_f32(v).to_f64()).collect();
            let scale = (k as f64).sqrt();
            let avx2 = cfg!(target_arch = "x86_64") && Isa::detect() != Isa::Portable;
            let isas = [Some(Isa::Portable), avx2.then_some(Isa::Avx2Fma), Some(Isa::detect())];
            for isa in isas.into_iter().flatten() {
                let y = matmul(&x, m, &p, Some(&bias), isa);
                for r in 0..m {
                    for c in 0..n {
                        let want: f64 =
                            (0..k).map(|i| xr[r * k + i] * w[c * k + i].to_f64()).sum::<f64>() + bias[c] as f64;
                        let e = (y[r * n + c] as f64 - want).abs();
                        assert!(e < 1e-5 * scale, "{isa:?} [{m},{n},{k}] at ({r},{c}): {} vs {want}", y[r * n + c]);
                    }
                }
            }
        }
    }
}
