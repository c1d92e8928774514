//! Inference-only elementwise kernels (softmax, quick_gelu, SiLU) over float32 with a branch-free
//! exp that the compiler vectorises, spread over all worker threads. candle's versions call libm's
//! expf one value at a time on one thread: the vision tower's softmax and quick_gelu took a fifth
//! of its time at the 2B shape. Never used where gradients are needed (see `ops`).

use rayon::prelude::*;

/// e^x to about 2 ulp: 2^n * p(r) with x = n ln2 + r, |r| <= ln2 / 2. Below -80 it returns 0:
/// e^-87 is at the edge of float32's normal range and masked attention scores would otherwise
/// leave denormals behind, which x86 multiplies about 60x slower (measured: the decoder's
/// attention-times-values matmul took 59 ms instead of 0.9 ms per layer).
#[inline(always)]
#[allow(clippy::manual_clamp)] // clamp would pass NaN through; max/min map to SIMD instructions
pub fn exp(x: f32) -> f32 {
    let tiny = x < -80.0;
    // min/max written out (not clamp) and integer rounding by the 1.5 * 2^23 trick: all of it
    // maps to SIMD instructions.
    let x = if x < -87.3 {
        -87.3
    } else if x > 88.7 {
        88.7
    } else {
        x
    };
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer in the low bits
    let shifted = x * std::f32::consts::LOG2_E + MAGIC;
    let n = shifted - MAGIC;
    let ni = (shifted.to_bits() as i32).wrapping_sub(0x4B40_0000);
    // Cody-Waite: ln 2 split in two so n * ln2 is exact enough.
    let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
    // Polynomial for e^r on [-ln2/2, ln2/2] (degree 6).
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (0.166_666_67 + r * (0.041_666_41 + r * (0.008_333_5 + r * 0.001_394_7)))));
    let v = f32::from_bits((ni.wrapping_add(127) as u32) << 23) * p;
    if tiny {
        0.0
    } else {
        v
    }
}

/// Compiles a portable kernel twice more, for AVX2+FMA (8 lanes) and AVX-512 (16 lanes); the
/// compiler vectorises each for its width. [`dispatch`] picks one at run time.
macro_rules! with_simd {
    ($portable:ident, $avx2:ident, $avx512:ident, ($($arg:ident: $ty:ty),*)) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn $avx2($($arg: $ty),*) {
            $portable($($arg),*)
        }
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,avx2,fma")]
        unsafe fn $avx512($($arg: $ty),*) {
            $portable($($arg),*)
        }
    };
}

type Kernel<T> = unsafe fn(&mut [f32], T);

/// Runs the widest variant this CPU supports (AVX-512 kernels run the softmax about 1.6x faster
/// than AVX2 ones here).
fn dispatch<T>(
    f_portable: fn(&mut [f32], T),
    #[allow(unused)] simd: (Kernel<T>, Kernel<T>),
    chunk: &mut [f32],
    arg: T,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports the features the AVX-512 variant is compiled for.
            unsafe { (simd.1)(chunk, arg) };
            return;
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports the features the AVX2 variant is compiled for.
            unsafe { (simd.0)(chunk, arg) };
            return;
        }
    }
    f_portable(chunk, arg)
}

/// Replaces a row by e^(x - max) and returns the sum: a softmax without its division.
#[inline(always)]
fn exp_row(r: &mut [f32]) -> f32 {
    // Sixteen partial maxima and sums, so the loops vectorise at either width.
    let mut m16 = [f32::NEG_INFINITY; 16];
    let mut it = r.chunks_exact(16);
    for c in &mut it {
        for j in 0..16 {
            m16[j] = if c[j] > m16[j] { c[j] } else { m16[j] };
        }
    }
    let max = it.remainder().iter().chain(m16.iter()).copied().fold(f32::NEG_INFINITY, f32::max);
    let mut s16 = [0f32; 16];
    let mut it = r.chunks_exact_mut(16);
    for c in &mut it {
        for j in 0..16 {
            c[j] = exp(c[j] - max);
            s16[j] += c[j];
        }
    }
    let mut sum = s16.iter().sum::<f32>();
    for v in it.into_remainder() {
        *v = exp(*v - max);
        sum += *v;
    }
    sum
}

#[inline(always)]
fn exp_rows(data: &mut [f32], (row, sums): (usize, &mut [f32])) {
    for (r, s) in data.chunks_mut(row).zip(sums.iter_mut()) {
        *s = exp_row(r);
    }
}
with_simd!(exp_rows, exp_rows_avx2, exp_rows_avx512, (data: &mut [f32], args: (usize, &mut [f32])));

/// Rows of length `row`, in place, to e^(x - row max), with each row's sum written to `sums`:
/// softmax but for the division, which a caller multiplying by values can apply to the (narrower)
/// product instead. On the calling thread.
pub fn exp_rows_in_place(data: &mut [f32], row: usize, sums: &mut [f32]) {
    assert!(row > 0 && data.len() == sums.len() * row);
    dispatch(exp_rows, (exp_rows_avx2, exp_rows_avx512), data, (row, sums))
}

#[inline(always)]
fn softmax_rows(data: &mut [f32], row: usize) {
    for r in data.chunks_mut(row) {
        let sum = exp_row(r);
        let inv = 1.0 / sum;
        for v in r.iter_mut() {
            *v *= inv;
        }
    }
}
with_simd!(softmax_rows, softmax_rows_avx2, softmax_rows_avx512, (data: &mut [f32], row: usize));

/// Elements per parallel task: big enough to amortise scheduling, small enough to stay in L2.
const TASK: usize = 16384;

/// Applies `kernel` to a copy of `src`, task by task: each chunk is copied and then transformed
/// while it is still in cache, so the data crosses memory once. `align` keeps softmax rows whole.
fn map_copy(src: &[f32], align: usize, kernel: &(dyn Fn(&mut [f32]) + Sync)) -> Vec<f32> {
    let chunk = (TASK / align.max(1)).max(1) * align.max(1);
    let mut out: Vec<f32> = Vec::with_capacity(src.len());
    out.spare_capacity_mut()[..src.len()].par_chunks_mut(chunk).zip(src.par_chunks(chunk)).for_each(|(o, s)| {
        for (d, x) in o.iter_mut().zip(s) {
            d.write(*x);
        }
        // SAFETY: every element of `o` was initialised just above.
        let o = unsafe { &mut *(o as *mut [std::mem::MaybeUninit<f32>] as *mut [f32]) };
        kernel(o);
    });
    // SAFETY: the chunks cover all `src.len()` elements and each was initialised.
    unsafe { out.set_len(src.len()) };
    out
}

/// Softmax over rows of length `row`, in place, on the calling thread (for kernels that already
/// run one task per thread).
pub fn softmax_rows_in_place(data: &mut [f32], row: usize) {
    dispatch(softmax_rows, (softmax_rows_avx2, softmax_rows_avx512), data, row)
}

/// Softmax over rows of length `row` of `src`, into a new buffer.
pub fn softmax(src: &[f32], row: usize) -> Vec<f32> {
    map_copy(src, row, &|c| dispatch(softmax_rows, (softmax_rows_avx2, softmax_rows_avx512), c, row))
}

/// Attention probabilities: softmax over each row of `scale * scores + mask`, into a new buffer.
/// `scores` is [B, H, L, T] and `mask` [B, L, T] (shared by the H heads), both row-major.
pub fn masked_softmax(scores: &[f32], mask: &[f32], dims: [usize; 4], scale: f32) -> Vec<f32> {
    let [b, h, l, t] = dims;
    assert!(t > 0 && scores.len() == b * h * l * t && mask.len() == b * l * t);
    let rows_per_task = (TASK / t).max(1);
    let mut out = vec![0f32; scores.len()];
    out.par_chunks_mut(rows_per_task * t).enumerate().for_each(|(c, o)| {
        let r0 = c * rows_per_task;
        for (k, row) in o.chunks_exact_mut(t).enumerate() {
            let r = r0 + k;
            let (bi, i) = (r / (h * l), r % l);
            let src = &scores[r * t..(r + 1) * t];
            let m = &mask[(bi * l + i) * t..(bi * l + i + 1) * t];
            for ((d, x), m) in row.iter_mut().zip(src).zip(m) {
                *d = x * scale + m;
            }
        }
        dispatch(softmax_rows, (softmax_rows_avx2, softmax_rows_avx512), o, t);
    });
    out
}

/// The softmax's backward pass over rows of length `row`: given its output `s` and the gradient `g`
/// of its output, `scale * s * (g - sum(g * s))` per row, into a new buffer (one pass over each
/// row pair; `scale` is the factor the scores were multiplied by before the softmax).
pub fn softmax_backward(s: &[f32], g: &[f32], row: usize, scale: f32) -> Vec<f32> {
    assert!(row > 0 && s.len() == g.len() && s.len().is_multiple_of(row));
    let chunk = (TASK / row).max(1) * row;
    let mut out = vec![0f32; s.len()];
    out.par_chunks_mut(chunk).zip(s.par_chunks(chunk).zip(g.par_chunks(chunk))).for_each(|(o, (s, g))| {
        dispatch(
            softmax_backward_rows,
            (softmax_backward_rows_avx2, softmax_backward_rows_avx512),
            o,
            (s, g, row, scale),
        )
    });
    out
}

#[inline(always)]
fn softmax_backward_rows(out: &mut [f32], (s, g, row, scale): (&[f32], &[f32], usize, f32)) {
    for ((o, s), g) in out.chunks_exact_mut(row).zip(s.chunks_exact(row)).zip(g.chunks_exact(row)) {
        let mut d8 = [0f32; 8];
        let (mut si, mut gi) = (s.chunks_exact(8), g.chunks_exact(8));
        for (a, b) in (&mut si).zip(&mut gi) {
            for j in 0..8 {
                d8[j] += a[j] * b[j];
            }
        }
        let dot: f32 =
            d8.iter().sum::<f32>() + si.remainder().iter().zip(gi.remainder()).map(|(a, b)| a * b).sum::<f32>();
        for ((o, s), g) in o.iter_mut().zip(s).zip(g) {
            *o = scale * s * (g - dot);
        }
    }
}
with_simd!(softmax_backward_rows, softmax_backward_rows_avx2, softmax_backward_rows_avx512, (out: &mut [f32], args: (&[f32], &[f32], usize, f32)));

/// x * sigmoid(alpha x) of `src`, into a new buffer: quick_gelu with alpha = 1.702, SiLU with 1.
pub fn x_sigmoid(src: &[f32], alpha: f32) -> Vec<f32> {
    map_copy(src, 1, &|c| dispatch(sigmoid_mul, (sigmoid_mul_avx2, sigmoid_mul_avx512), c, alpha))
}

#[inline(always)]
fn sigmoid_mul(data: &mut [f32], alpha: f32) {
    for v in data.iter_mut() {
        *v /= 1.0 + exp(-alpha * *v);
    }
}
with_simd!(sigmoid_mul, sigmoid_mul_avx2, sigmoid_mul_avx512, (data: &mut [f32], alpha: f32));

/// The gated MLP's activation on a fused gate-and-up output: rows of `src` are [gate (width),
/// up (width)]; returns rows of silu(gate) * up, into a new buffer.
pub fn silu_glu(src: &[f32], width: usize) -> Vec<f32> {
    assert!(width > 0 && src.len().is_multiple_of(2 * width));
    let rows_per_task = (TASK / width).max(1);
    let mut out = vec![0f32; src.len() / 2];
    out.par_chunks_mut(rows_per_task * width)
        .zip(src.par_chunks(rows_per_task * 2 * width))
        .for_each(|(o, s)| dispatch(silu_glu_rows, (silu_glu_rows_avx2, silu_glu_rows_avx512), o, (s, width)));
    out
}

#[inline(always)]
fn silu_glu_rows(out: &mut [f32], (src, width): (&[f32], usize)) {
    for (o, r) in out.chunks_exact_mut(width).zip(src.chunks_exact(2 * width)) {
        let (g, u) = r.split_at(width);
        for ((o, g), u) in o.iter_mut().zip(g).zip(u) {
            *o = g / (1.0 + exp(-g)) * u;
        }
    }
}
with_simd!(silu_glu_rows, silu_glu_rows_avx2, silu_glu_rows_avx512, (out: &mut [f32], args: (&[f32], usize)));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate() {
        let mut worst = 0f64;
        let mut x = -80.0f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            let rel = ((exp(x) as f64 - want) / want).abs();
            worst = worst.max(rel);
            x += 0.0137;
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
        // Masked scores (-1e30, -inf) give exactly 0, never a denormal.
        assert_eq!(exp(-1e30), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-80.5), 0.0);
        assert!(exp(-79.9).is_normal());
    }

    #[test]
    fn softmax_and_activations_match_definitions() {
        let orig: Vec<f32> = (0..70).map(|i| ((i * 13 % 17) as f32 - 8.0) * 0.7).collect();
        let v = softmax(&orig, 7);
        for (r, o) in v.chunks(7).zip(orig.chunks(7)) {
            let m = o.iter().cloned().fold(f32::MIN, f32::max);
            let z: f32 = o.iter().map(|x| (x - m).exp()).sum();
            for (a, x) in r.iter().zip(o) {
                assert!((a - (x - m).exp() / z).abs() < 1e-6);
            }
        }
        let mut e = orig.clone();
        let mut sums = vec![0f32; 10];
        exp_rows_in_place(&mut e, 7, &mut sums);
        for ((r, s), p) in e.chunks(7).zip(&sums).zip(v.chunks(7)) {
            assert!((r.iter().sum::<f32>() - s).abs() < 1e-5);
            for (a, b) in r.iter().zip(p) {
                assert!((a / s - b).abs() < 1e-6);
            }
        }
        // silu(gate) * up over rows [gate (5), up (5)].
        let glu = silu_glu(&orig, 5);
        for (o, r) in glu.chunks(5).zip(orig.chunks(10)) {
            for j in 0..5 {
                let (g, u) = (r[j], r[5 + j]);
                assert!((o[j] - g / (1.0 + (-g).exp()) * u).abs() < 1e-5);
            }
        }
        let g = x_sigmoid(&orig, 1.702);
        for (a, x) in g.iter().zip(&orig) {
            assert!((a - x / (1.0 + (-1.702 * x).exp())).abs() < 1e-5);
        }
    }
}
