//! `Qwen2VLImageProcessor` (the PIL backend): convert to RGB, `smart_resize` to multiples of 28
//! within [min_pixels, max_pixels], PIL bicubic resize, rescale by 1/255, CLIP mean/std, and
//! flattening into [N, C*T*P*P] patch rows ordered by 2x2 merge windows, with `image_grid_thw`.

use crate::config::PreprocessorConfig;
use crate::error::{Result, VlmError};
use imaging::resample::resize_bicubic;
pub use imaging::RgbImage;

/// Python's `round` (half to even), which `smart_resize` uses.
fn round_half_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 {
        2.0 * (x / 2.0).round()
    } else {
        r
    }
}

/// Target (height, width): both multiples of `factor`, area within [min_pixels, max_pixels],
/// aspect ratio kept as closely as possible. Aspect ratios above 200 are refused.
pub fn smart_resize(
    height: usize,
    width: usize,
    factor: usize,
    min_pixels: usize,
    max_pixels: usize,
) -> Result<(usize, usize)> {
    if height == 0 || width == 0 {
        return Err(VlmError::input(format!("image has zero size ({width}x{height})")));
    }
    let (h, w, f) = (height as f64, width as f64, factor as f64);
    let ratio = h.max(w) / h.min(w);
    if ratio > 200.0 {
        return Err(VlmError::input(format!(
            "absolute aspect ratio must be at most 200, got {ratio:.1} ({width}x{height})"
        )));
    }
    let mut h_bar = (round_half_even(h / f) * f).max(f);
    let mut w_bar = (round_half_even(w / f) * f).max(f);
    if h_bar * w_bar > max_pixels as f64 {
        let beta = ((h * w) / max_pixels as f64).sqrt();
        h_bar = f.max((h / beta / f).floor() * f);
        w_bar = f.max((w / beta / f).floor() * f);
    } else if h_bar * w_bar < min_pixels as f64 {
        let beta = (min_pixels as f64 / (h * w)).sqrt();
        h_bar = (h * beta / f).ceil() * f;
        w_bar = (w * beta / f).ceil() * f;
    }
    Ok((h_bar as usize, w_bar as usize))
}

/// One processed image: its patch rows and grid.
#[derive(Debug, Clone)]
pub struct ProcessedImage {
    /// [grid_t * grid_h * grid_w, C * T * P * P] row-major, float32.
    pub patches: Vec<f32>,
    pub grid_thw: [usize; 3],
    pub resized_hw: (usize, usize),
}

impl ProcessedImage {
    /// Number of `<|image_pad|>` tokens this image takes in the prompt.
    pub fn n_tokens(&self, merge: usize) -> usize {
        self.grid_thw.iter().product::<usize>() / (merge * merge)
    }
}

#[derive(Debug, Clone)]
pub struct ImageProcessor {
    pub cfg: PreprocessorConfig,
}

impl ImageProcessor {
    pub fn new(cfg: PreprocessorConfig) -> Self {
        ImageProcessor { cfg }
    }

    pub fn process(&self, img: &RgbImage) -> Result<ProcessedImage> {
        let c = &self.cfg;
        let factor = c.patch_size * c.merge_size;
        let (rh, rw) = if c.do_resize {
            smart_resize(img.height, img.width, factor, c.min_pixels, c.max_pixels)?
        } else {
            (img.height, img.width)
        };
        if rh % factor != 0 || rw % factor != 0 {
            return Err(VlmError::input(format!(
                "image {}x{} is not a multiple of {factor} and resizing is off",
                img.width, img.height
            )));
        }
        let px = if (rh, rw) != (img.height, img.width) {
            resize_bicubic(&img.data, img.width, img.height, 3, rw, rh)
        } else {
            img.data.clone()
        };
        // Rescale and normalise as two float32 steps, like the reference.
        let scale = c.rescale_factor as f32;
        let norm = |v: u8, ch: usize| -> f32 {
            let mut x = v as f32;
            if c.do_rescale {
                x *= scale;
            }
            if c.do_normalize {
                x = (x - c.image_mean[ch]) / c.image_std[ch];
            }
            x
        };
        let (p, m, tp) = (c.patch_size, c.merge_size, c.temporal_patch_size);
        let (gh, gw) = (rh / p, rw / p);
        let row_len = 3 * tp * p * p;
        let mut patches = Vec::with_capacity(gh * gw * row_len);
        // Row order: (merge-window row, merge-window column, row in window, column in window);
        // column order: (channel, temporal copy, y in patch, x in patch). One still image fills
        // both temporal slots with the same frame.
        for bh in 0..gh / m {
            for bw in 0..gw / m {
                for mh in 0..m {
                    for mw in 0..m {
                        let (py0, px0) = ((bh * m + mh) * p, (bw * m + mw) * p);
                        for ch in 0..3 {
                            for _t in 0..tp {
                                for y in 0..p {
                                    for x in 0..p {
                                        let v = px[((py0 + y) * rw + px0 + x) * 3 + ch];
                                        patches.push(norm(v, ch));
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(ProcessedImage { patches, grid_thw: [1, gh, gw], resized_hw: (rh, rw) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smart_resize_hand_worked() {
        // 392x392 stays (Med-R1's 384 -> 392 after rounding): 14*28 each side.
        assert_eq!(smart_resize(384, 384, 28, 3136, 401408).unwrap(), (392, 392));
        // Python rounds halves to even: 70/28 = 2.5 -> 2, 98/28 = 3.5 -> 4.
        assert_eq!(smart_resize(70, 98, 28, 1, 1 << 30).unwrap(), (56, 112));
        // Too many pixels: scaled down by sqrt, floored to 28.
        assert_eq!(smart_resize(1000, 1000, 28, 3136, 12544).unwrap(), (112, 112));
        // Too few: scaled up, ceiled. 40x30 with min 3136: beta = sqrt(3136/1200)=1.6166
        // h = ceil(30*1.6166/28)*28 = 56, w = ceil(40*1.6166/28)*28 = 84.
        assert_eq!(smart_resize(30, 40, 28, 3136, 12544).unwrap(), (56, 84));
        assert!(smart_resize(10, 2010, 28, 3136, 12544).is_err());
        assert!(smart_resize(10, 2000, 28, 3136, 1 << 30).is_ok());
    }
}
