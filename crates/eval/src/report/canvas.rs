//! One drawing, two files: figures are drawn once onto a [`Canvas`] and come out as SVG (real
//! text, scalable) and PNG (the public-domain 8x8 bitmap font, drawn at 2x, so no font files are
//! needed). Coordinates are logical pixels; a character is 8 wide and 8 high at `size` 1.

use image::{Rgb, RgbImage};
use std::fmt::Write;

pub type Color = [u8; 3];

#[derive(Clone, Copy, PartialEq)]
pub enum Anchor {
    Start,
    Middle,
    End,
}

pub trait Canvas {
    fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, fill: Color);
    /// Text whose vertical centre is `y`; `size` multiplies the 8-pixel glyphs.
    fn text(&mut self, x: f64, y: f64, s: &str, color: Color, anchor: Anchor, size: u32);
    fn line(&mut self, x0: f64, y0: f64, x1: f64, y1: f64, color: Color);
}

/// Width of `s` in logical pixels at `size`.
pub fn text_width(s: &str, size: u32) -> f64 {
    (s.chars().count() * 8 * size as usize) as f64
}

fn start_x(x: f64, s: &str, anchor: Anchor, size: u32) -> f64 {
    match anchor {
        Anchor::Start => x,
        Anchor::Middle => x - text_width(s, size) / 2.0,
        Anchor::End => x - text_width(s, size),
    }
}

pub struct Svg {
    width: f64,
    height: f64,
    body: String,
}

fn hex(c: Color) -> String {
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

impl Svg {
    pub fn new(width: f64, height: f64) -> Svg {
        let mut s = Svg { width, height, body: String::new() };
        s.rect(0.0, 0.0, width, height, [255, 255, 255]);
        s
    }
    pub fn finish(self) -> String {
        format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"DejaVu Sans Mono, Menlo, Consolas, monospace\">\n{}</svg>\n",
            self.body,
            w = self.width,
            h = self.height
        )
    }
}

impl Canvas for Svg {
    fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, fill: Color) {
        let _ = writeln!(
            self.body,
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" fill=\"{}\"/>",
            hex(fill)
        );
    }
    fn text(&mut self, x: f64, y: f64, s: &str, color: Color, anchor: Anchor, size: u32) {
        let a = match anchor {
            Anchor::Start => "start",
            Anchor::Middle => "middle",
            Anchor::End => "end",
        };
        // A monospace glyph is about 0.6 em wide: 13.3 px per 8-pixel cell.
        let _ = writeln!(
            self.body,
            "<text x=\"{x:.1}\" y=\"{y:.1}\" font-size=\"{:.1}\" fill=\"{}\" text-anchor=\"{a}\" dominant-baseline=\"central\">{}</text>",
            13.3 * size as f64,
            hex(color),
            escape(s)
        );
    }
    fn line(&mut self, x0: f64, y0: f64, x1: f64, y1: f64, color: Color) {
        let _ = writeln!(
            self.body,
            "<line x1=\"{x0:.1}\" y1=\"{y0:.1}\" x2=\"{x1:.1}\" y2=\"{y1:.1}\" stroke=\"{}\" stroke-width=\"1\"/>",
            hex(color)
        );
    }
}

/// A bitmap at `SCALE` device pixels per logical pixel.
pub struct Png {
    pub img: RgbImage,
}

const SCALE: f64 = 2.0;

impl Png {
    pub fn new(width: f64, height: f64) -> Png {
        Png {
            img: RgbImage::from_pixel(
                (width * SCALE).ceil() as u32,
                (height * SCALE).ceil() as u32,
                Rgb([255, 255, 255]),
            ),
        }
    }
    fn fill(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: Color) {
        let (w, h) = (self.img.width() as i64, self.img.height() as i64);
        for y in y0.max(0)..y1.min(h) {
            for x in x0.max(0)..x1.min(w) {
                self.img.put_pixel(x as u32, y as u32, Rgb(c));
            }
        }
    }
}

impl Canvas for Png {
    fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, fill: Color) {
        let d = |v: f64| (v * SCALE).round() as i64;
        self.fill(d(x), d(y), d(x + w), d(y + h), fill);
    }
    fn text(&mut self, x: f64, y: f64, s: &str, color: Color, anchor: Anchor, size: u32) {
        let px = (SCALE as i64) * size as i64;
        let x0 = (start_x(x, s, anchor, size) * SCALE).round() as i64;
        let y0 = ((y - 4.0 * size as f64) * SCALE).round() as i64;
        for (k, ch) in s.chars().enumerate() {
            let code = if ch.is_ascii() && !ch.is_ascii_control() { ch as usize } else { '?' as usize };
            for (row, bits) in font8x8::legacy::BASIC_LEGACY[code].iter().enumerate() {
                for col in 0..8 {
                    if bits & (1 << col) != 0 {
                        let gx = x0 + (k as i64 * 8 + col) * px;
                        let gy = y0 + row as i64 * px;
                        self.fill(gx, gy, gx + px, gy + px, color);
                    }
                }
            }
        }
    }
    fn line(&mut self, x0: f64, y0: f64, x1: f64, y1: f64, color: Color) {
        let n = ((x1 - x0).abs().max((y1 - y0).abs()) * SCALE).ceil().max(1.0) as usize;
        for i in 0..=n {
            let f = i as f64 / n as f64;
            let (x, y) = ((x0 + (x1 - x0) * f) * SCALE, (y0 + (y1 - y0) * f) * SCALE);
            self.fill(x as i64, y as i64, x as i64 + 2, y as i64 + 2, color);
        }
    }
}

/// Blues from white (0) to dark blue (1).
pub fn sequential(t: f64) -> Color {
    let t = t.clamp(0.0, 1.0);
    let (a, b) = ([247.0, 251.0, 255.0], [8.0, 48.0, 107.0]);
    [0, 1, 2].map(|i| (a[i] + (b[i] - a[i]) * t).round() as u8)
}

/// Red (-1) through white (0) to blue (+1).
pub fn diverging(t: f64) -> Color {
    let t = t.clamp(-1.0, 1.0);
    let end = if t < 0.0 { [178.0, 24.0, 43.0] } else { [33.0, 102.0, 172.0] };
    let w = [247.0, 247.0, 247.0];
    [0, 1, 2].map(|i| (w[i] + (end[i] - w[i]) * t.abs()).round() as u8)
}

/// Black or white, whichever reads on `bg`.
pub fn ink_on(bg: Color) -> Color {
    let l = 0.299 * bg[0] as f64 + 0.587 * bg[1] as f64 + 0.114 * bg[2] as f64;
    if l < 140.0 {
        [255, 255, 255]
    } else {
        [20, 20, 20]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_backends_draw_the_same_shapes() {
        let mut svg = Svg::new(100.0, 50.0);
        let mut png = Png::new(100.0, 50.0);
        for c in [&mut svg as &mut dyn Canvas, &mut png] {
            c.rect(10.0, 10.0, 20.0, 10.0, [255, 0, 0]);
            c.text(50.0, 30.0, "A<b", [0, 0, 0], Anchor::Middle, 1);
        }
        let s = svg.finish();
        assert!(s.contains("<rect x=\"10.0\" y=\"10.0\" width=\"20.0\" height=\"10.0\" fill=\"#ff0000\"/>"));
        assert!(s.contains(">A&lt;b</text>"));
        assert_eq!((png.img.width(), png.img.height()), (200, 100));
        assert_eq!(png.img.get_pixel(30, 30).0, [255, 0, 0]);
        assert_eq!(png.img.get_pixel(70, 30).0, [255, 255, 255]);
        // The text is 24 logical pixels wide, centred on x = 50: ink only in x 38..62.
        let ink: Vec<u32> = (0..200).filter(|&x| (44..76).any(|y| png.img.get_pixel(x, y).0 == [0, 0, 0])).collect();
        assert!(*ink.first().unwrap() >= 76 && *ink.last().unwrap() < 124, "{ink:?}");
    }

    #[test]
    fn colour_scales() {
        assert_eq!(sequential(0.0), [247, 251, 255]);
        assert_eq!(sequential(1.0), [8, 48, 107]);
        assert_eq!(diverging(0.0), [247, 247, 247]);
        assert_eq!(diverging(-1.0), [178, 24, 43]);
        assert_eq!(ink_on(sequential(1.0)), [255, 255, 255]);
        assert_eq!(ink_on(sequential(0.0)), [20, 20, 20]);
    }
}
