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

    /// Decodes PNG, JPEG, BMP, TIFF, GIF or WebP bytes. The header's size is checked against
    /// [`crate::max_pixels`] first, and a truncated file is an error (as PIL makes it), never
    /// a partial image.
    pub fn decode(bytes: &[u8], what: &str) -> Result<Self> {
        let img = if crate::jpeg::is_jpeg(bytes) {
            if let Some((w, h)) = crate::jpeg::dimensions(bytes) {
                crate::check_pixels(w as u64, h as u64, 1, what)?;
            }
            crate::jpeg::refuse_truncated(bytes, what)?;
            match crate::jpeg::decode(bytes, what) {
                Ok(i) => i,
                // CMYK and other rarities: the `image` crate's decoder.
                Err(_) => image::load_from_memory(bytes)
                    .map_err(|e| ImageError::input(format!("{what}: cannot decode image: {e}")))?,
            }
        } else {
            let reader = || {
                image::ImageReader::new(std::io::Cursor::new(bytes))
                    .with_guessed_format()
                    .map_err(|e| ImageError::input(format!("{what}: cannot read image: {e}")))
            };
            // The header's size first: a small file can declare billions of pixels.
            if let Ok((w, h)) = reader()?.into_dimensions() {
                crate::check_pixels(w as u64, h as u64, 1, what)?;
            }
            // A decoder that panics on malformed data (found by fuzzing: png 0.18.1 indexes past a
            // short palette) is an error about this file, not a crash of the caller.
            match std::panic::catch_unwind(|| reader().map(|r| r.decode())) {
                Ok(decoded) => decoded?.map_err(|e| ImageError::input(format!("{what}: cannot decode image: {e}")))?,
                Err(_) => {
                    return Err(ImageError::input(format!(
                        "{what}: cannot decode image: the decoder failed on malformed data"
                    )))
                }
            }
        };
        if img.width() == 0 || img.height() == 0 {
            return Err(ImageError::input(format!("{what}: image has zero size")));
        }
        crate::check_pixels(img.width() as u64, img.height() as u64, 1, what)?;
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

    /// Fuzzing regression (`fuzz/`, target image_decode): a 568-byte palette PNG on which png
    /// 0.18.1 panics (a slice past its short palette). It must be an error naming the input.
    #[test]
    fn a_png_that_panics_its_decoder_is_an_error() {
        let bytes = include_bytes!("../tests/fixtures/fuzz/png_short_palette_panic.png");
        let Err(err) = RgbImage::decode(bytes, "crash.png") else { panic!("decoded a malformed file") };
        let err = err.to_string();
        assert!(err.contains("crash.png") && err.contains("cannot decode image"), "{err}");
    }
}

#[cfg(test)]
mod limit_tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../vlm/tests/fixtures/qwen2vl-tiny/images");
        std::fs::read(dir.join(name)).unwrap()
    }

    /// A JPEG or PNG cut short is refused, as PIL refuses it ("image file is truncated"); the
    /// whole file decodes.
    #[test]
    fn truncated_images_are_errors_not_partial_images() {
        for name in ["xray.jpg", "wide.png"] {
            let bytes = fixture(name);
            assert!(RgbImage::decode(&bytes, name).is_ok());
            for cut in [bytes.len() / 2, bytes.len() * 9 / 10] {
                let err = RgbImage::decode(&bytes[..cut], name).err().map(|e| e.to_string());
                let err = err.unwrap_or_else(|| panic!("{name} cut at {cut} of {} bytes decoded", bytes.len()));
                assert!(err.starts_with(name), "{err}");
            }
        }
        assert!(crate::jpeg::is_truncated(&fixture("xray.jpg")[..100]));
        assert!(!crate::jpeg::is_truncated(&fixture("xray.jpg")));
    }

    /// A PNG whose header declares more pixels than the limit is refused before decoding.
    #[test]
    fn a_png_bomb_is_refused_from_its_header() {
        // 20000 x 20000 grey, compressed to a small file.
        let img = image::GrayImage::new(20000, 20000);
        let mut png = std::io::Cursor::new(Vec::new());
        img.write_to(&mut png, image::ImageFormat::Png).unwrap();
        let bytes = png.into_inner();
        assert!(bytes.len() < 2_000_000, "{} bytes", bytes.len());
        let err = RgbImage::decode(&bytes, "bomb.png").err().unwrap().to_string();
        assert!(err.contains("bomb.png") && err.contains("20000x20000") && err.contains("--max-image-pixels"), "{err}");
    }
}
