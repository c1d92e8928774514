//! transformers' `convert_to_rgb` on decoded images, and decoding itself: JPEG through the
//! PIL-exact libjpeg-turbo path, everything else through the `image` crate.

use crate::error::{ImageError, Result};
use image::DynamicImage;
use std::path::Path;

/// An RGB image as transformers' `convert_to_rgb` leaves it.
#[derive(Debug, Clone, PartialEq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    /// Interleaved RGB, row-major.
    pub data: Vec<u8>,
}

/// Composites straight alpha onto white the way Pillow's `alpha_composite` does for an opaque
/// white background (7-bit fixed point, division by 255 by shifts).
fn over_white(c: u8, a: u8) -> u8 {
    let coef1 = a as u32 * 128;
    let coef2 = 255 * 128 - coef1;
    let tmp = c as u32 * coef1 + 255 * coef2 + (0x80 << 7);
    ((((tmp >> 8) + tmp) >> 8) >> 7) as u8
}

impl RgbImage {
    /// transformers' `convert_to_rgb`: images with transparency (LA, RGBA, a palette with a
    /// transparent index — decoded to RGBA) are composited onto white; L becomes grey RGB.
    /// 16-bit images are reduced to 8 bits by their high byte.
    pub fn from_dynamic(img: DynamicImage) -> Self {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let data = if img.color().has_alpha() {
            let rgba = img.to_rgba8();
            let mut out = Vec::with_capacity(w * h * 3);
            for p in rgba.pixels() {
                let a = p.0[3];
                for c in 0..3 {
                    out.push(over_white(p.0[c], a));
                }
            }
            out
        } else {
            img.to_rgb8().into_raw()
        };
        RgbImage { width: w, height: h, data }
    }

    /// Decodes PNG, JPEG, BMP, TIFF, GIF or WebP bytes.
    pub fn decode(bytes: &[u8], what: &str) -> Result<Self> {
        let img = if crate::jpeg::is_jpeg(bytes) {
            match crate::jpeg::decode(bytes, what) {
                Ok(i) => i,
                // CMYK and other rarities: the `image` crate's decoder.
                Err(_) => image::load_from_memory(bytes)
                    .map_err(|e| ImageError::input(format!("{what}: cannot decode image: {e}")))?,
            }
        } else {
            image::load_from_memory(bytes)
                .map_err(|e| ImageError::input(format!("{what}: cannot decode image: {e}")))?
        };
        if img.width() == 0 || img.height() == 0 {
            return Err(ImageError::input(format!("{what}: image has zero size")));
        }
        Ok(Self::from_dynamic(img))
    }

    pub fn open(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| ImageError::file(path, format!("cannot read image: {e}")))?;
        Self::decode(&bytes, &path.display().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpha_over_white() {
        assert_eq!(over_white(0, 255), 0);
        assert_eq!(over_white(200, 255), 200);
        assert_eq!(over_white(0, 0), 255);
        assert_eq!(over_white(0, 128), 127);
    }
}
