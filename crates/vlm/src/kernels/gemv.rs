//! `x W^T` for a few rows of `x` (decoding): a memory-bound matrix-vector product.
//!
//! Decoding one token reads every weight once (6.2 GB at the 2B shape in float32), so its speed is
//! the memory bandwidth the matmul reaches. gemm streams a weight at about 14 GB/s here (one core's
//! worth); this kernel splits the weight's rows over all worker threads, reads each row once for all
//! the `m` input rows, and uses AVX2/FMA when the CPU has them (checked at run time; a portable
//! loop otherwise).

use rayon::prelude::*;

/// Most input rows handled in one pass over the weight.
pub const MAX_ROWS: usize = 8;

/// `w` is [n, k] row-major, `xs` is [m, k] row-major with m <= MAX_ROWS; returns [m, n].
pub fn gemv(w: &[f32], n: usize, k: usize, xs: &[f32], m: usize) -> Vec<f32> {
    assert!((1..=MAX_ROWS).contains(&m) && w.len() == n * k && xs.len() == m * k);
    // [n, m] first so each task writes one contiguous block.
    let mut out_nm = vec![0f32; n * m];
    const CHUNK: usize = 64;
    out_nm.par_chunks_mut(CHUNK * m).enumerate().for_each(|(c, block)| {
        let r0 = c * CHUNK;
        let rows = block.len() / m;
        let mut i = 0;
        // Four weight rows at a time when there is one input row: four concurrent memory
        // streams per thread keep more loads in flight (the product is bandwidth-bound).
        if m == 1 {
            while i + 4 <= rows {
                let ws = &w[(r0 + i) * k..(r0 + i + 4) * k];
                dot4(ws, xs, k, &mut block[i..i + 4]);
                i += 4;
            }
        }
        for (j, o) in block[i * m..].chunks_mut(m).enumerate() {
            let row = &w[(r0 + i + j) * k..(r0 + i + j + 1) * k];
            dot_rows(row, xs, k, o);
        }
    });
    to_row_major(out_nm, n, m)
}

/// [n, m] (how the kernels write, one contiguous block per task) -> [m, n].
fn to_row_major(out_nm: Vec<f32>, n: usize, m: usize) -> Vec<f32> {
    if m == 1 {
        return out_nm;
    }
    let mut out = vec![0f32; m * n];
    for j in 0..n {
        for r in 0..m {
            out[r * n + j] = out_nm[j * m + r];
        }
    }
    out
}

/// Column block of [`gemv_t`]: up to 16384 columns keep the accumulator in L2 while a band of
/// weight rows streams by, whole rows unbroken (2048-column blocks read a [1536, 8960] weight in
/// strided 8 KB pieces: 25 GB/s against 30 with whole rows, measured).
const NB: usize = 16384;

/// The same product with the weight stored transposed: `wt` is [k, n] row-major, `xs` [m, k];
/// returns [m, n]. Each thread takes a contiguous band of weight rows (one unbroken stream of
/// memory), accumulates its partial [m, n] product in cache, and the partials are summed.
pub fn gemv_t(wt: &[f32], k: usize, n: usize, xs: &[f32], m: usize) -> Vec<f32> {
    assert!((1..=MAX_ROWS).contains(&m) && wt.len() == n * k && xs.len() == m * k);
    let bands = rayon::current_num_threads().clamp(1, k.max(1));
    let per = k.div_ceil(bands);
    let partials: Vec<Vec<f32>> = (0..bands)
        .into_par_iter()
        .map(|b| {
            let (k0, k1) = (b * per, ((b + 1) * per).min(k));
            let mut acc = vec![0f32; m * n];
            let mut j0 = 0;
            while j0 < n {
                let nb = NB.min(n - j0);
                let mut block = vec![0f32; m * nb];
                axpy_block(wt, k0, k1, n, xs, k, m, j0, nb, &mut block);
                for r in 0..m {
                    acc[r * n + j0..r * n + j0 + nb].copy_from_slice(&block[r * nb..(r + 1) * nb]);
                }
                j0 += nb;
            }
            acc
        })
        .collect();
    let mut out = partials[0].clone();
    for p in &partials[1..] {
        for (o, v) in out.iter_mut().zip(p) {
            *o += v;
        }
    }
    out
}

/// acc[r, 0..nb] += sum over weight rows k0..k1 of xs[r, kk] * wt[kk, j0..j0+nb].
#[allow(clippy::too_many_arguments)]
fn axpy_block(
    wt: &[f32],
    k0: usize,
    k1: usize,
    n: usize,
    xs: &[f32],
    k: usize,
    m: usize,
    j0: usize,
    nb: usize,
    acc: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports the features the function is compiled for.
            unsafe { axpy_block_avx2(wt, k0, k1, n, xs, k, m, j0, nb, acc) };
            return;
        }
    }
    axpy_block_portable(wt, k0, k1, n, xs, k, m, j0, nb, acc)
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn axpy_block_portable(
    wt: &[f32],
    k0: usize,
    k1: usize,
    n: usize,
    xs: &[f32],
    k: usize,
    m: usize,
    j0: usize,
    nb: usize,
    acc: &mut [f32],
) {
    // Four weight rows per step: four concurrent memory streams and a quarter of the
    // accumulator traffic.
    let mut kk = k0;
    while kk + 4 <= k1 {
        let w0 = &wt[kk * n + j0..kk * n + j0 + nb];
        let w1 = &wt[(kk + 1) * n + j0..(kk + 1) * n + j0 + nb];
        let w2 = &wt[(kk + 2) * n + j0..(kk + 2) * n + j0 + nb];
        let w3 = &wt[(kk + 3) * n + j0..(kk + 3) * n + j0 + nb];
        for r in 0..m {
            let x = &xs[r * k + kk..r * k + kk + 4];
            let a = &mut acc[r * nb..(r + 1) * nb];
            for j in 0..nb {
                a[j] += x[0] * w0[j] + x[1] * w1[j] + x[2] * w2[j] + x[3] * w3[j];
            }
        }
        kk += 4;
    }
    for kk in kk..k1 {
        let w = &wt[kk * n + j0..kk * n + j0 + nb];
        for r in 0..m {
            let xr = xs[r * k + kk];
            let a = &mut acc[r * nb..(r + 1) * nb];
            for (a, &w) in a.iter_mut().zip(w) {
                *a += xr * w;
            }
        }
    }
}

/// The portable loop, compiled with AVX2/FMA enabled (it vectorises: no reduction inside).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn axpy_block_avx2(
    wt: &[f32],
    k0: usize,
    k1: usize,
    n: usize,
    xs: &[f32],
    k: usize,
    m: usize,
    j0: usize,
    nb: usize,
    acc: &mut [f32],
) {
    axpy_block_portable(wt, k0, k1, n, xs, k, m, j0, nb, acc)
}

/// `x W^T` with a bfloat16 weight `w` [n, k] and float32 rows `xs` [m, k]; returns [m, n] in
/// float32. Weights are widened to float32 in registers (exact: bf16 is float32's top half), so
/// decoding reads half the bytes of float32 weights.
pub fn gemv_bf16(w: &[half::bf16], n: usize, k: usize, xs: &[f32], m: usize) -> Vec<f32> {
    assert!((1..=MAX_ROWS).contains(&m) && w.len() == n * k && xs.len() == m * k);
    let mut out_nm = vec![0f32; n * m];
    const CHUNK: usize = 64;
    out_nm.par_chunks_mut(CHUNK * m).enumerate().for_each(|(c, block)| {
        let r0 = c * CHUNK;
        for (i, o) in block.chunks_mut(m).enumerate() {
            let row = &w[(r0 + i) * k..(r0 + i + 1) * k];
            for (r, o) in o.iter_mut().enumerate() {
                *o = dot_bf16(row, &xs[r * k..(r + 1) * k]);
            }
        }
    });
    to_row_major(out_nm, n, m)
}

fn dot_bf16(row: &[half::bf16], x: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports the features the function is compiled for.
            return unsafe { dot_bf16_avx2(row, x) };
        }
    }
    row.iter().zip(x).map(|(w, x)| w.to_f32() * x).sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_bf16_avx2(row: &[half::bf16], x: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let k = row.len();
    let full = k / 16 * 16;
    let wp = row.as_ptr() as *const u16;
    let xp = x.as_ptr();
    let (mut a0, mut a1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let mut t = 0;
    while t < full {
        let raw = _mm256_loadu_si256(wp.add(t) as *const __m256i);
        // bf16 -> f32: zero-extend each 16-bit value and shift it into the high half.
        let lo = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_castsi256_si128(raw)), 16));
        let hi = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_extracti128_si256(raw, 1)), 16));
        a0 = _mm256_fmadd_ps(lo, _mm256_loadu_ps(xp.add(t)), a0);
        a1 = _mm256_fmadd_ps(hi, _mm256_loadu_ps(xp.add(t + 8)), a1);
        t += 16;
    }
    let mut lanes = [0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), _mm256_add_ps(a0, a1));
    let mut s: f32 = lanes.iter().sum();
    for t in full..k {
        s += row[t].to_f32() * x[t];
    }
    s
}

/// out[i] = <ws row i, x> for four consecutive weight rows `ws` [4, k] and one input row `x`.
fn dot4(ws: &[f32], x: &[f32], k: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports the features the function is compiled for.
            unsafe { dot4_avx2(ws, x, k, out) };
            return;
        }
    }
    for i in 0..4 {
        dot_rows(&ws[i * k..(i + 1) * k], x, k, &mut out[i..i + 1]);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot4_avx2(ws: &[f32], x: &[f32], k: usize, out: &mut [f32]) {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_setzero_ps(); 4];
    let full = k / 8 * 8;
    let wp = ws.as_ptr();
    let xp = x.as_ptr();
    let mut t = 0;
    while t < full {
        let xv = _mm256_loadu_ps(xp.add(t));
        for (i, a) in acc.iter_mut().enumerate() {
            *a = _mm256_fmadd_ps(_mm256_loadu_ps(wp.add(i * k + t)), xv, *a);
        }
        t += 8;
    }
    for i in 0..4 {
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), acc[i]);
        let mut s: f32 = lanes.iter().sum();
        for t in full..k {
            s += ws[i * k + t] * x[t];
        }
        out[i] = s;
    }
}

/// out[r] = <row, xs[r]> for every input row r.
fn dot_rows(row: &[f32], xs: &[f32], k: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports the features the function is compiled for.
            unsafe { dot_rows_avx2(row, xs, k, out) };
            return;
        }
    }
    for (r, o) in out.iter_mut().enumerate() {
        let x = &xs[r * k..(r + 1) * k];
        let mut acc = [0f32; 8];
        let full = k / 8 * 8;
        for t in (0..full).step_by(8) {
            for j in 0..8 {
                acc[j] += row[t + j] * x[t + j];
            }
        }
        let mut s: f32 = acc.iter().sum();
        for t in full..k {
            s += row[t] * x[t];
        }
        *o = s;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_rows_avx2(row: &[f32], xs: &[f32], k: usize, out: &mut [f32]) {
    use std::arch::x86_64::*;
    let m = out.len();
    let mut acc = [_mm256_setzero_ps(); MAX_ROWS];
    let mut acc2 = [_mm256_setzero_ps(); MAX_ROWS];
    let full = k / 16 * 16;
    let wp = row.as_ptr();
    let xp = xs.as_ptr();
    let mut t = 0;
    while t < full {
        let w0 = _mm256_loadu_ps(wp.add(t));
        let w1 = _mm256_loadu_ps(wp.add(t + 8));
        for r in 0..m {
            let x = xp.add(r * k + t);
            acc[r] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x), acc[r]);
            acc2[r] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x.add(8)), acc2[r]);
        }
        t += 16;
    }
    for r in 0..m {
        let v = _mm256_add_ps(acc[r], acc2[r]);
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), v);
        let mut s: f32 = lanes.iter().sum();
        for t in full..k {
            s += row[t] * xs[r * k + t];
        }
        out[r] = s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_naive_product() {
        let (n, k) = (131, 77);
        let w: Vec<f32> = (0..n * k).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
        for m in [1, 3, 8] {
            let xs: Vec<f32> = (0..m * k).map(|i| ((i * 11 % 29) as f32 - 14.0) / 14.0).collect();
            let y = gemv(&w, n, k, &xs, m);
            for r in 0..m {
                for j in 0..n {
                    let want: f32 = (0..k).map(|t| w[j * k + t] * xs[r * k + t]).sum();
                    assert!((y[r * n + j] - want).abs() < 1e-4, "m={m} r={r} j={j}");
                    let wb: Vec<half::bf16> = w.iter().map(|&v| half::bf16::from_f32(v)).collect();
                    let yb = gemv_bf16(&wb, n, k, &xs, m);
                    let want_b: f32 = (0..k).map(|t| wb[j * k + t].to_f32() * xs[r * k + t]).sum();
                    assert!((yb[r * n + j] - want_b).abs() < 1e-4, "bf16 m={m} r={r} j={j}");
                    let wt: Vec<f32> = (0..k * n).map(|i| w[(i % n) * k + i / n]).collect();
                    let yt = gemv_t(&wt, k, n, &xs, m);
                    assert!((yt[r * n + j] - want).abs() < 1e-4, "transposed m={m} r={r} j={j}");
                }
            }
        }
    }

    #[test]
    fn transposed_product_spanning_several_column_blocks() {
        // n > NB: the accumulator is filled block by block.
        let (n, k) = (NB + 1000, 6);
        let wt: Vec<f32> = (0..k * n).map(|i| ((i * 13 % 61) as f32 - 30.0) / 30.0).collect();
        for m in [1, 2] {
            let xs: Vec<f32> = (0..m * k).map(|i| (i as f32 - 3.0) / 4.0).collect();
            let y = gemv_t(&wt, k, n, &xs, m);
            for r in 0..m {
                for j in (0..n).step_by(97).chain([NB - 1, NB, n - 1]) {
                    let want: f32 = (0..k).map(|t| wt[t * n + j] * xs[r * k + t]).sum();
                    assert!((y[r * n + j] - want).abs() < 1e-4, "m={m} r={r} j={j}");
                }
            }
        }
    }
}
