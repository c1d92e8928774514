//! PIL's bicubic resize for 8-bit images (Pillow's `ImagingResample` with `BICUBIC`): a separable
//! filter with a = -0.5, widened by the scale factor when shrinking (antialiasing), coefficients
//! normalised and turned into 22-bit fixed point, two passes each rounded and clipped to 8 bits,
//! in the order Pillow 13 runs them (horizontal first unless the height shrinks much more than the
//! width). Written from the algorithm's
//! description so that `Qwen2VLImageProcessor`'s pixels are reproduced to the byte.

const PRECISION_BITS: u32 = 32 - 8 - 2;

fn bicubic(x: f64) -> f64 {
    let a = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * a
    } else {
        0.0
    }
}

/// For each output index: the first input index, and the fixed-point weights from there on.
fn coefficients(in_size: usize, out_size: usize) -> Vec<(usize, Vec<i32>)> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = 2.0 * filterscale;
    let mut out = Vec::with_capacity(out_size);
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // Truncation toward zero, as the C cast does.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let mut k: Vec<f64> = (xmin..xmax).map(|x| bicubic((x as f64 - center + 0.5) * ss)).collect();
        let ww: f64 = k.iter().sum();
        if ww != 0.0 {
            for v in &mut k {
                *v /= ww;
            }
        }
        let fixed = k
            .iter()
            .map(|&v| {
                let s = v * (1u32 << PRECISION_BITS) as f64;
                if v < 0.0 {
                    (s - 0.5) as i32
                } else {
                    (s + 0.5) as i32
                }
            })
            .collect();
        out.push((xmin, fixed));
    }
    out
}

fn clip8(v: i64) -> u8 {
    let v = v >> PRECISION_BITS;
    v.clamp(0, 255) as u8
}

/// Whether Pillow (>= 13) runs the horizontal pass first: always, unless the height shrinks by more
/// than twice as many pixels as the width does; then the vertical pass runs first so that the
/// horizontal one has fewer rows (`ImagingResampleInner`). Each pass rounds to 8 bits, so the
/// order changes pixels by one level here and there.
pub fn horizontal_first(w: usize, h: usize, out_w: usize, out_h: usize) -> bool {
    let dh = h as i64 - out_h as i64;
    let dw = w as i64 - out_w as i64;
    !(dh > 0 && dh > 2 * dw)
}

/// One pass along the rows (each output pixel mixes neighbours in its row).
fn pass_horizontal(src: &[u8], w: usize, h: usize, channels: usize, out_w: usize) -> Vec<u8> {
    let round = 1i64 << (PRECISION_BITS - 1);
    let cx = coefficients(w, out_w);
    let mut tmp = vec![0u8; out_w * h * channels];
    for y in 0..h {
        let row = &src[y * w * channels..(y + 1) * w * channels];
        for (xx, (xmin, k)) in cx.iter().enumerate() {
            for c in 0..channels {
                let mut ss = round;
                for (i, &kv) in k.iter().enumerate() {
                    ss += row[(xmin + i) * channels + c] as i64 * kv as i64;
                }
                tmp[(y * out_w + xx) * channels + c] = clip8(ss);
            }
        }
    }
    tmp
}

/// One pass along the columns.
fn pass_vertical(src: &[u8], w: usize, h: usize, channels: usize, out_h: usize) -> Vec<u8> {
    let round = 1i64 << (PRECISION_BITS - 1);
    let cy = coefficients(h, out_h);
    let mut out = vec![0u8; w * out_h * channels];
    for (yy, (ymin, k)) in cy.iter().enumerate() {
        for x in 0..w {
            for c in 0..channels {
                let mut ss = round;
                for (i, &kv) in k.iter().enumerate() {
                    ss += src[((ymin + i) * w + x) * channels + c] as i64 * kv as i64;
                }
                out[(yy * w + x) * channels + c] = clip8(ss);
            }
        }
    }
    out
}

/// Resizes an interleaved 8-bit image (`channels` per pixel, row-major) to `out_w` x `out_h`,
/// passes in Pillow 13's order (see [`horizontal_first`]); a pass whose size is unchanged is
/// skipped, as Pillow does.
pub fn resize_bicubic(src: &[u8], w: usize, h: usize, channels: usize, out_w: usize, out_h: usize) -> Vec<u8> {
    resize_bicubic_ordered(src, w, h, channels, out_w, out_h, horizontal_first(w, h, out_w, out_h))
}

/// [`resize_bicubic`] with the pass order given (Pillow before 13 always ran the horizontal pass
/// first).
pub fn resize_bicubic_ordered(
    src: &[u8],
    w: usize,
    h: usize,
    channels: usize,
    out_w: usize,
    out_h: usize,
    horizontal_first: bool,
) -> Vec<u8> {
    let horizontal =
        |s: &[u8], h: usize| if out_w != w { pass_horizontal(s, w, h, channels, out_w) } else { s.to_vec() };
    let vertical = |s: &[u8], w: usize| if out_h != h { pass_vertical(s, w, h, channels, out_h) } else { s.to_vec() };
    if horizontal_first {
        vertical(&horizontal(src, h), out_w)
    } else {
        horizontal(&vertical(src, w), out_h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_size_is_a_copy() {
        let src: Vec<u8> = (0..(5 * 4 * 3)).map(|i| (i * 7 % 256) as u8).collect();
        assert_eq!(resize_bicubic(&src, 5, 4, 3, 5, 4), src);
    }

    #[test]
    fn constant_image_stays_constant() {
        let src = vec![173u8; 37 * 23];
        let out = resize_bicubic(&src, 37, 23, 1, 56, 28);
        assert!(out.iter().all(|&v| v == 173), "{out:?}");
        let out = resize_bicubic(&src, 37, 23, 1, 14, 9);
        assert!(out.iter().all(|&v| v == 173));
    }

    #[test]
    fn weights_sum_to_one_in_fixed_point() {
        for (i, o) in [(150, 112), (40, 56), (7, 3), (3, 7)] {
            for (_, k) in coefficients(i, o) {
                let s: i64 = k.iter().map(|&v| v as i64).sum();
                assert!((s - (1 << PRECISION_BITS)).abs() <= k.len() as i64, "{i}->{o}: {s}");
            }
        }
    }
}
