//! A tiny anti-aliased painter for the phantom images: shapes are signed-distance functions in
//! normalised coordinates (0..1 across the image, y down), so a scene renders the same at any
//! resolution; values are linear intensities in [0, 1] per channel.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

pub struct Canvas {
    pub size: usize,
    /// 1 (grey) or 3 (RGB) channels.
    pub channels: usize,
    /// Row-major, channels interleaved.
    pub data: Vec<f32>,
}

/// A colour or a grey level; grey canvases use the first component.
pub type Color = [f32; 3];

pub fn grey(v: f32) -> Color {
    [v, v, v]
}

impl Canvas {
    pub fn new(size: usize, channels: usize, fill: Color) -> Canvas {
        let mut data = Vec::with_capacity(size * size * channels);
        for _ in 0..size * size {
            data.extend_from_slice(&fill[..channels]);
        }
        Canvas { size, channels, data }
    }

    fn px(&self) -> f32 {
        self.size as f32
    }

    /// Paints `color` where `sdf(u, v)` (normalised units, negative inside) is below zero, with
    /// an anti-aliased edge `soft` pixels wide, at the given opacity. `bbox` = (u0, v0, u1, v1)
    /// limits the work.
    pub fn fill(
        &mut self,
        bbox: (f32, f32, f32, f32),
        soft: f32,
        color: Color,
        opacity: f32,
        sdf: impl Fn(f32, f32) -> f32,
    ) {
        let n = self.px();
        let soft = soft.max(0.5);
        let lo = |a: f32| ((a * n).floor() as isize - 2).clamp(0, self.size as isize) as usize;
        let hi = |a: f32| ((a * n).ceil() as isize + 2).clamp(0, self.size as isize) as usize;
        let (x0, y0, x1, y1) = (lo(bbox.0), lo(bbox.1), hi(bbox.2), hi(bbox.3));
        for y in y0..y1 {
            for x in x0..x1 {
                let (u, v) = ((x as f32 + 0.5) / n, (y as f32 + 0.5) / n);
                let d = sdf(u, v) * n; // in pixels
                let a = ((0.5 - d / soft).clamp(0.0, 1.0)) * opacity;
                if a > 0.0 {
                    let i = (y * self.size + x) * self.channels;
                    for (v, c) in self.data[i..i + self.channels].iter_mut().zip(color) {
                        *v += (c - *v) * a;
                    }
                }
            }
        }
    }

    /// A filled ellipse centred at (cx, cy) with radii (rx, ry) rotated by `angle` radians.
    #[allow(clippy::too_many_arguments)] // a drawing primitive: centre, radii, angle, edge, colour
    pub fn ellipse(&mut self, cx: f32, cy: f32, rx: f32, ry: f32, angle: f32, soft: f32, color: Color) {
        let r = rx.max(ry);
        let (s, c) = angle.sin_cos();
        self.fill((cx - r, cy - r, cx + r, cy + r), soft, color, 1.0, |u, v| {
            let (du, dv) = (u - cx, v - cy);
            let (a, b) = ((du * c + dv * s) / rx, (-du * s + dv * c) / ry);
            ((a * a + b * b).sqrt() - 1.0) * rx.min(ry)
        });
    }

    pub fn circle(&mut self, cx: f32, cy: f32, r: f32, soft: f32, color: Color) {
        self.ellipse(cx, cy, r, r, 0.0, soft, color);
    }

    /// An elliptical ring of the given thickness (normalised units).
    pub fn ring(&mut self, cx: f32, cy: f32, rx: f32, ry: f32, thickness: f32, color: Color) {
        let r = rx.max(ry) + thickness;
        self.fill((cx - r, cy - r, cx + r, cy + r), 1.0, color, 1.0, |u, v| {
            let (a, b) = ((u - cx) / rx, (v - cy) / ry);
            (((a * a + b * b).sqrt() - 1.0) * rx.min(ry)).abs() - thickness / 2.0
        });
    }

    /// A straight stroke from (x0, y0) to (x1, y1) with round caps.
    pub fn line(&mut self, x0: f32, y0: f32, x1: f32, y1: f32, width: f32, color: Color) {
        let pad = width;
        let bbox = (x0.min(x1) - pad, y0.min(y1) - pad, x0.max(x1) + pad, y0.max(y1) + pad);
        let (dx, dy) = (x1 - x0, y1 - y0);
        let len2 = (dx * dx + dy * dy).max(1e-12);
        self.fill(bbox, 1.0, color, 1.0, |u, v| {
            let t = (((u - x0) * dx + (v - y0) * dy) / len2).clamp(0.0, 1.0);
            let (px, py) = (x0 + t * dx - u, y0 + t * dy - v);
            (px * px + py * py).sqrt() - width / 2.0
        });
    }

    /// A polyline through `points`.
    pub fn polyline(&mut self, points: &[(f32, f32)], width: f32, color: Color) {
        for w in points.windows(2) {
            self.line(w[0].0, w[0].1, w[1].0, w[1].1, width, color);
        }
    }

    /// Multiplies every value by `f(u, v)` (vignetting, shading).
    pub fn shade(&mut self, f: impl Fn(f32, f32) -> f32) {
        let n = self.px();
        for y in 0..self.size {
            for x in 0..self.size {
                let k = f((x as f32 + 0.5) / n, (y as f32 + 0.5) / n);
                let i = (y * self.size + x) * self.channels;
                for c in 0..self.channels {
                    self.data[i + c] *= k;
                }
            }
        }
    }

    /// Additive Gaussian noise of standard deviation `sigma`, the same on every channel of a pixel.
    pub fn noise(&mut self, rng: &mut ChaCha8Rng, sigma: f32) {
        let normal = Normal::new(0.0f32, sigma).unwrap();
        for p in self.data.chunks_mut(self.channels) {
            let e = normal.sample(rng);
            for v in p {
                *v += e;
            }
        }
    }

    /// Multiplicative speckle (Rayleigh-distributed, mean 1) where `mask(u, v)` holds: the
    /// granular texture of ultrasound and OCT.
    pub fn speckle(&mut self, rng: &mut ChaCha8Rng, strength: f32, mask: impl Fn(f32, f32) -> bool) {
        let n = self.px();
        // Rayleigh with sigma s has mean s * sqrt(pi / 2).
        let s = 1.0 / (std::f32::consts::PI / 2.0).sqrt();
        for y in 0..self.size {
            for x in 0..self.size {
                let r: f32 = rng.random::<f32>().max(1e-6);
                if !mask((x as f32 + 0.5) / n, (y as f32 + 0.5) / n) {
                    continue;
                }
                let k = s * (-2.0 * r.ln()).sqrt();
                let k = 1.0 + strength * (k - 1.0);
                let i = (y * self.size + x) * self.channels;
                for c in 0..self.channels {
                    self.data[i + c] *= k;
                }
            }
        }
    }

    /// A 3x3 binomial blur, `passes` times (a gentle point-spread function).
    pub fn blur(&mut self, passes: usize) {
        let (n, ch) = (self.size, self.channels);
        for _ in 0..passes {
            let src = self.data.clone();
            for y in 0..n {
                for x in 0..n {
                    for c in 0..ch {
                        let mut acc = 0.0;
                        for (dy, wy) in [(-1isize, 1.0f32), (0, 2.0), (1, 1.0)] {
                            for (dx, wx) in [(-1isize, 1.0f32), (0, 2.0), (1, 1.0)] {
                                let yy = (y as isize + dy).clamp(0, n as isize - 1) as usize;
                                let xx = (x as isize + dx).clamp(0, n as isize - 1) as usize;
                                acc += wy * wx * src[(yy * n + xx) * ch + c];
                            }
                        }
                        self.data[(y * n + x) * ch + c] = acc / 16.0;
                    }
                }
            }
        }
    }

    /// 8-bit samples, clamped and rounded.
    pub fn to_u8(&self) -> Vec<u8> {
        self.data.iter().map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_cover_what_they_should() {
        let mut c = Canvas::new(100, 1, grey(0.0));
        c.circle(0.5, 0.5, 0.2, 1.0, grey(1.0));
        let at = |c: &Canvas, x: usize, y: usize| c.data[y * 100 + x];
        assert_eq!(at(&c, 50, 50), 1.0);
        assert_eq!(at(&c, 50, 20), 0.0);
        assert_eq!(at(&c, 80, 50), 0.0);
        assert_eq!(at(&c, 50, 68), 1.0);
        // Area within a pixel's worth of pi r^2.
        let area: f32 = c.data.iter().sum();
        assert!((area - std::f32::consts::PI * 400.0).abs() < 2.0 * std::f32::consts::PI * 20.0, "{area}");
        let mut l = Canvas::new(100, 3, grey(0.0));
        l.line(0.1, 0.5, 0.9, 0.5, 0.04, [1.0, 0.0, 0.0]);
        assert_eq!(&l.data[(50 * 100 + 50) * 3..][..3], &[1.0, 0.0, 0.0]);
        assert_eq!(l.data[(40 * 100 + 50) * 3], 0.0);
    }
}
