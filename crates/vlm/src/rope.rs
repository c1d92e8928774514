//! Rotary positions.
//! - [`get_rope_index`]: the decoder's 3-D (temporal, height, width) M-RoPE position ids, exactly as
//!   transformers' `Qwen2VLModel.get_rope_index` builds them: text tokens advance all three axes
//!   together; an image's tokens take (t, h, w) grid coordinates offset by the text before them; the
//!   text after an image resumes at one past the largest position used. Left padding is skipped
//!   (positions count from the first real token; padding gets 0 as in transformers 5), and
//!   `rope_deltas` = (largest position + 1) - number of real tokens, which decoding adds to the
//!   count of real tokens before the new one.
//! - [`mrope_cos_sin`]: cos/sin tables where each rotary channel pair reads the axis its
//!   `mrope_section` assigns it.
//! - [`vision_rotary`]: the vision tower's 2-D (row, column) rotary table in the merger's patch order.

use candle_core::{Device, Result, Tensor};

/// Position ids [3][B][L] (as i64) and rope deltas [B].
#[derive(Debug, Clone, PartialEq)]
pub struct RopeIndex {
    pub position_ids: Vec<Vec<Vec<i64>>>,
    pub rope_deltas: Vec<i64>,
}

/// `input_ids` and `attention_mask` are [B][L]; `image_grid_thw` lists every image of the batch in
/// order (row by row), as (t, h, w) in patches.
pub fn get_rope_index(
    input_ids: &[Vec<u32>],
    attention_mask: &[Vec<u32>],
    image_grid_thw: &[[usize; 3]],
    image_token_id: u32,
    vision_start_token_id: u32,
    spatial_merge_size: usize,
) -> std::result::Result<RopeIndex, String> {
    let b = input_ids.len();
    let l = input_ids.first().map_or(0, |r| r.len());
    let mut pos = vec![vec![vec![0i64; l]; b]; 3];
    let mut deltas = vec![0i64; b];
    let mut image_iter = image_grid_thw.iter();
    for row in 0..b {
        let ids: Vec<u32> =
            input_ids[row].iter().zip(&attention_mask[row]).filter(|(_, &m)| m != 0).map(|(&t, _)| t).collect();
        // An image starts where a vision-start token is followed by an image token.
        let n_images = ids.windows(2).filter(|w| w[0] == vision_start_token_id && w[1] == image_token_id).count();
        let mut out: [Vec<i64>; 3] =
            [Vec::with_capacity(ids.len()), Vec::with_capacity(ids.len()), Vec::with_capacity(ids.len())];
        let mut next = 0i64; // one past the largest position so far
        let mut st = 0usize;
        for _ in 0..n_images {
            let ed =
                st + ids[st..].iter().position(|&t| t == image_token_id).ok_or("image start without image tokens")?;
            let [t, h, w] = *image_iter.next().ok_or("more images in the prompt than image_grid_thw rows")?;
            let (gh, gw) = (h / spatial_merge_size, w / spatial_merge_size);
            for k in 0..(ed - st) {
                for a in &mut out {
                    a.push(next + k as i64);
                }
            }
            let base = next + (ed - st) as i64;
            for ti in 0..t {
                for hi in 0..gh {
                    for wi in 0..gw {
                        out[0].push(base + ti as i64);
                        out[1].push(base + hi as i64);
                        out[2].push(base + wi as i64);
                    }
                }
            }
            next = base + (t.max(gh).max(gw)) as i64;
            st = ed + t * gh * gw;
            if st > ids.len() {
                return Err(format!("row {row}: image needs {} tokens but the prompt ends first", t * gh * gw));
            }
        }
        for k in 0..(ids.len() - st) {
            for a in &mut out {
                a.push(next + k as i64);
            }
        }
        let max = out.iter().flat_map(|a| a.iter().copied()).max().unwrap_or(-1);
        deltas[row] = max + 1 - ids.len() as i64;
        let mut j = 0;
        for (i, &m) in attention_mask[row].iter().enumerate() {
            if m != 0 {
                for a in 0..3 {
                    pos[a][row][i] = out[a][j];
                }
                j += 1;
            }
        }
    }
    if image_iter.next().is_some() {
        return Err("image_grid_thw has more rows than the prompts have images".into());
    }
    Ok(RopeIndex { position_ids: pos, rope_deltas: deltas })
}

/// Inverse frequencies 1 / theta^(2i / dim), i < dim / 2, in float32 as transformers computes them.
pub fn inv_freq(dim: usize, theta: f64) -> Vec<f32> {
    (0..dim / 2).map(|i| 1.0f32 / (theta as f32).powf((2 * i) as f32 / dim as f32)).collect()
}

/// cos and sin of shape [B, L, head_dim / 2] for M-RoPE: channel pair j reads the temporal, height or
/// width position according to `mrope_section` (the second half of the full table repeats the first).
#[allow(clippy::needless_range_loop)] // three position axes indexed together
pub fn mrope_cos_sin(
    position_ids: &[Vec<Vec<i64>>],
    head_dim: usize,
    theta: f64,
    mrope_section: [usize; 3],
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let inv = inv_freq(head_dim, theta);
    let half = head_dim / 2;
    let mut axis_of = Vec::with_capacity(half);
    for (a, &n) in mrope_section.iter().enumerate() {
        axis_of.extend(std::iter::repeat_n(a, n));
    }
    let b = position_ids[0].len();
    let l = position_ids[0].first().map_or(0, |r| r.len());
    let mut cos = Vec::with_capacity(b * l * half);
    let mut sin = Vec::with_capacity(b * l * half);
    for row in 0..b {
        for i in 0..l {
            for j in 0..half {
                let f = position_ids[axis_of[j]][row][i] as f32 * inv[j];
                cos.push(f.cos());
                sin.push(f.sin());
            }
        }
    }
    Ok((Tensor::from_vec(cos, (b, l, half), device)?, Tensor::from_vec(sin, (b, l, half), device)?))
}

/// The vision tower's rotary table [N, head_dim / 2] (first half: row frequencies, second half:
/// column frequencies) for the patches of all images, in the order the image processor emits them
/// (merge windows of 2x2 patches, row-major inside each window).
pub fn vision_rotary(grids: &[[usize; 3]], head_dim: usize, merge: usize, device: &Device) -> Result<(Tensor, Tensor)> {
    // VisionRotaryEmbedding(head_dim / 2, theta 10000): head_dim / 4 frequencies per axis.
    let inv = inv_freq(head_dim / 2, 10000.0);
    let q = inv.len();
    let mut cos = Vec::new();
    let mut sin = Vec::new();
    for &[t, h, w] in grids {
        for _ in 0..t {
            for bh in 0..h / merge {
                for bw in 0..w / merge {
                    for mh in 0..merge {
                        for mw in 0..merge {
                            let (r, c) = ((bh * merge + mh) as f32, (bw * merge + mw) as f32);
                            for f in inv.iter().map(|f| r * f).chain(inv.iter().map(|f| c * f)) {
                                cos.push(f.cos());
                                sin.push(f.sin());
                            }
                        }
                    }
                }
            }
        }
    }
    let n = cos.len() / (2 * q);
    Ok((Tensor::from_vec(cos, (n, 2 * q), device)?, Tensor::from_vec(sin, (n, 2 * q), device)?))
}
