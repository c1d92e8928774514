//! The threading shared by the packed kernels (`int8`, `q4`, `bf16`): the output's channels are
//! cut into bands of whole 16-channel blocks, one task per band on every worker thread, and the
//! tasks' [m][band] results are laid out as [m, n] with the bias added.

use rayon::prelude::*;

/// Channels per packed block.
pub const BLOCK: usize = 16;

/// `y [m, n] = band(b0, b1) (+ bias)` where `band` returns the [m][(b1 - b0) * 16] products of
/// blocks `b0..b1` (padding channels past `n` are dropped). Bands hold at most `max_blocks`
/// blocks, fewer when that would leave a thread without work (small products at one row).
pub fn by_bands(
    m: usize,
    n: usize,
    max_blocks: usize,
    bias: Option<&[f32]>,
    band: impl Fn(usize, usize) -> Vec<f32> + Sync,
) -> Vec<f32> {
    let blocks = n.div_ceil(BLOCK);
    let per = max_blocks.min(blocks.div_ceil(2 * rayon::current_num_threads())).max(1);
    let parts: Vec<Vec<f32>> =
        (0..blocks.div_ceil(per)).into_par_iter().map(|t| band(t * per, ((t + 1) * per).min(blocks))).collect();
    let mut y = vec![0f32; m * n];
    for (t, part) in parts.iter().enumerate() {
        let c0 = t * per * BLOCK;
        let cols = part.len() / m.max(1);
        let take = cols.min(n - c0);
        for r in 0..m {
            let dst = &mut y[r * n + c0..r * n + c0 + take];
            dst.copy_from_slice(&part[r * cols..r * cols + take]);
            if let Some(b) = bias {
                for (o, bv) in dst.iter_mut().zip(&b[c0..c0 + take]) {
                    *o += bv;
                }
            }
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_cover_every_channel_once_and_add_the_bias() {
        // Each band writes, per row r and channel c, 1000 r + c: the assembled output must be
        // exactly that (padding past n dropped), plus the bias.
        for (m, n, max) in [(1, 1, 8), (3, 17, 1), (2, 300, 8), (5, 4096, 8)] {
            let bias: Vec<f32> = (0..n).map(|c| c as f32 * 0.5).collect();
            let y = by_bands(m, n, max, Some(&bias), |b0, b1| {
                let cols = (b1 - b0) * BLOCK;
                let mut out = vec![0f32; m * cols];
                for r in 0..m {
                    for j in 0..cols {
                        out[r * cols + j] = (1000 * r + b0 * BLOCK + j) as f32;
                    }
                }
                out
            });
            for r in 0..m {
                for c in 0..n {
                    assert_eq!(y[r * n + c], (1000 * r + c) as f32 + c as f32 * 0.5, "[{m},{n}] ({r},{c})");
                }
            }
        }
    }
}
