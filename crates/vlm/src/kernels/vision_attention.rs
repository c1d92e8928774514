//! The vision tower's self-attention for inference, fused: rotary embedding, scaling,
//! block-diagonal attention (each image frame attends to itself only) and the head merge, straight
//! from the qkv projection's output.
//!
//! Each (image frame, head) pair is one task on one thread: its rotated queries, transposed keys and
//! values are gathered once (a quarter megabyte each at the 2B shape), then query rows go through
//! in blocks whose score matrix stays in L2 (scores, exponentials in place, times values, then the
//! softmax's division on the narrow product), so the [len, len] score matrix never reaches
//! memory. candle's version (per head: rope, a contiguous
//! K^T, matmul, softmax, matmul, each op a pass over memory with both threads meeting at every
//! step) took 24-28 ms per block at the 2B shape; PyTorch's flash attention takes 14.5.
//!
//! The training path does not come here: it needs gradients (see `vision::VisionBlock`).

use crate::kernels::dense::{self, View};
use rayon::prelude::*;

/// Largest score block computed at once, in bytes: well inside one core's L2.
const SCORE_BLOCK_BYTES: usize = 512 * 1024;

/// `qkv` is [N, 3 * heads * head_dim] (q, k, v of every head, as the qkv projection writes them);
/// `cos`/`sin` are [N, head_dim / 2] (the vision rotary table); `spans` gives each frame's
/// (first patch, patch count). Returns the attention output [N, heads * head_dim].
pub fn attention(
    qkv: &[f32],
    heads: usize,
    head_dim: usize,
    cos: &[f32],
    sin: &[f32],
    spans: &[(usize, usize)],
) -> Vec<f32> {
    let e = heads * head_dim;
    let n = qkv.len() / (3 * e).max(1);
    assert!(head_dim.is_multiple_of(2) && qkv.len() == n * 3 * e, "qkv is not [N, 3 * {e}]");
    assert!(cos.len() == n * head_dim / 2 && sin.len() == cos.len(), "rotary tables are not [{n}, {}]", head_dim / 2);
    assert!(spans.iter().all(|&(s, len)| s + len <= n), "a span runs past the {n} patches");
    let tasks: Vec<((usize, usize), usize)> =
        spans.iter().flat_map(|&span| (0..heads).map(move |h| (span, h))).collect();
    let outs: Vec<Vec<f32>> = tasks
        .par_iter()
        .with_max_len(1)
        .map(|&((s, len), h)| {
            head_attention(qkv, e, head_dim, h, &cos[s * head_dim / 2..], &sin[s * head_dim / 2..], s, len)
        })
        .collect();
    let mut o = vec![0f32; n * e];
    for (&((s, len), h), out) in tasks.iter().zip(&outs) {
        for i in 0..len {
            o[(s + i) * e + h * head_dim..][..head_dim].copy_from_slice(&out[i * head_dim..][..head_dim]);
        }
    }
    o
}

/// One head of one frame: returns its output [len, head_dim].
#[allow(clippy::too_many_arguments)]
fn head_attention(
    qkv: &[f32],
    e: usize,
    hd: usize,
    h: usize,
    cos: &[f32],
    sin: &[f32],
    s: usize,
    len: usize,
) -> Vec<f32> {
    let half = hd / 2;
    let scale = 1.0 / (hd as f32).sqrt();
    // Rotary (x * cos + rotate_half(x) * sin), with the softmax scale folded into q (small) rather
    // than applied to the scores (large); k is stored transposed, which gemm reads fastest.
    let mut q = vec![0f32; len * hd];
    let mut kt = vec![0f32; hd * len];
    let mut v = vec![0f32; len * hd];
    for i in 0..len {
        let row = &qkv[(s + i) * 3 * e..][..3 * e];
        let (qr, kr, vr) = (&row[h * hd..][..hd], &row[e + h * hd..][..hd], &row[2 * e + h * hd..][..hd]);
        let (c, sn) = (&cos[i * half..][..half], &sin[i * half..][..half]);
        let qi = &mut q[i * hd..][..hd];
        for d in 0..half {
            qi[d] = (qr[d] * c[d] - qr[d + half] * sn[d]) * scale;
            qi[d + half] = (qr[d + half] * c[d] + qr[d] * sn[d]) * scale;
            kt[d * len + i] = kr[d] * c[d] - kr[d + half] * sn[d];
            kt[(d + half) * len + i] = kr[d + half] * c[d] + kr[d] * sn[d];
        }
        v[i * hd..][..hd].copy_from_slice(vr);
    }
    let block = (SCORE_BLOCK_BYTES / (4 * len)).clamp(1, len.max(1));
    let mut scores = vec![0f32; block * len];
    let mut sums = vec![0f32; block];
    let mut out = vec![0f32; len * hd];
    for r0 in (0..len).step_by(block) {
        let rows = block.min(len - r0);
        let sc = &mut scores[..rows * len];
        dense::matmul(sc, len, View::rows(&q[r0 * hd..], rows, hd), View::rows(&kt, hd, len), false, 1);
        // The softmax's division is applied to the [rows, hd] product rather than the
        // [rows, len] probabilities: one pass over the scores fewer.
        crate::kernels::fastmath::exp_rows_in_place(sc, len, &mut sums[..rows]);
        let o = &mut out[r0 * hd..(r0 + rows) * hd];
        dense::matmul(o, hd, View::rows(sc, rows, len), View::rows(&v, len, hd), false, 1);
        for (orow, s) in o.chunks_exact_mut(hd).zip(&sums) {
            let inv = 1.0 / s;
            orow.iter_mut().for_each(|x| *x *= inv);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, in float64 loops: rotate q and k, softmax(q k^T / sqrt(d)) v per head and
    /// frame.
    fn reference(qkv: &[f32], heads: usize, hd: usize, cos: &[f32], sin: &[f32], spans: &[(usize, usize)]) -> Vec<f64> {
        let e = heads * hd;
        let n = qkv.len() / (3 * e);
        let half = hd / 2;
        let rot = |x: &[f32], t: usize| -> Vec<f64> {
            (0..hd)
                .map(|d| {
                    let (c, s) = (cos[t * half + d % half] as f64, sin[t * half + d % half] as f64);
                    let other = if d < half { -(x[d + half] as f64) } else { x[d - half] as f64 };
                    x[d] as f64 * c + other * s
                })
                .collect()
        };
        let mut o = vec![0f64; n * e];
        for &(s, len) in spans {
            for h in 0..heads {
                let get = |t: usize, part: usize| &qkv[t * 3 * e + part * e + h * hd..][..hd];
                for i in s..s + len {
                    let qi = rot(get(i, 0), i);
                    let logits: Vec<f64> = (s..s + len)
                        .map(|j| qi.iter().zip(rot(get(j, 1), j)).map(|(a, b)| a * b).sum::<f64>() / (hd as f64).sqrt())
                        .collect();
                    let m = logits.iter().cloned().fold(f64::MIN, f64::max);
                    let z: f64 = logits.iter().map(|l| (l - m).exp()).sum();
                    for (j, l) in (s..s + len).zip(&logits) {
                        let p = (l - m).exp() / z;
                        for d in 0..hd {
                            o[i * e + h * hd + d] += p * get(j, 2)[d] as f64;
                        }
                    }
                }
            }
        }
        o
    }

    fn pseudo_random(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32 / (1u32 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn equals_the_definition_over_frames_heads_and_score_blocks() {
        // Three frames of different lengths; one long enough to need several score blocks of
        // 512 KB (len 600: 218 rows per block).
        let (heads, hd) = (3, 8);
        let spans = [(0, 5), (5, 600), (605, 11)];
        let n = 616;
        let qkv: Vec<f32> = pseudo_random(n * 3 * heads * hd, 7).iter().map(|x| x * 3.0).collect();
        let angles = pseudo_random(n * hd / 2, 11);
        let cos: Vec<f32> = angles.iter().map(|a| (a * 9.0).cos()).collect();
        let sin: Vec<f32> = angles.iter().map(|a| (a * 9.0).sin()).collect();
        let got = attention(&qkv, heads, hd, &cos, &sin, &spans);
        let want = reference(&qkv, heads, hd, &cos, &sin, &spans);
        let worst = got.iter().zip(&want).map(|(g, w)| (*g as f64 - w).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-5, "worst difference {worst}");
    }
}
