//! JPEG decoding with libjpeg-turbo's decoder (via mozjpeg), configured as Pillow uses it (the
//! accurate integer IDCT, fancy upsampling), so decoded pixels — and hence the model's inputs — are
//! bit-identical to what transformers sees. Other JPEG decoders differ by one grey level here and
//! there, which moves the logits of a sensitive model by 1e-3.

use crate::error::{Result, VlmError};
use image::{DynamicImage, GrayImage, RgbImage};

pub fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.len() >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF
}

/// Decodes a JPEG. Greyscale files stay single-channel (PIL's mode "L"); colour files are
/// converted to RGB by the library. CMYK/YCCK files are left to the `image` crate.
pub fn decode(bytes: &[u8], what: &str) -> Result<DynamicImage> {
    let bytes = bytes.to_vec();
    // mozjpeg reports fatal libjpeg errors by unwinding; keep them inside this function.
    let r = std::panic::catch_unwind(move || -> std::io::Result<Option<DynamicImage>> {
        let mut d = mozjpeg::Decompress::new_mem(&bytes)?;
        d.dct_method(mozjpeg::DctMethod::IntegerSlow);
        d.do_fancy_upsampling(true);
        let (w, h) = (d.width() as u32, d.height() as u32);
        match d.color_space() {
            mozjpeg::ColorSpace::JCS_GRAYSCALE => {
                let mut s = d.grayscale()?;
                let px: Vec<u8> = s.read_scanlines()?;
                s.finish()?;
                Ok(GrayImage::from_raw(w, h, px).map(DynamicImage::ImageLuma8))
            }
            mozjpeg::ColorSpace::JCS_CMYK | mozjpeg::ColorSpace::JCS_YCCK => Ok(None),
            _ => {
                let mut s = d.rgb()?;
                let px: Vec<[u8; 3]> = s.read_scanlines()?;
                s.finish()?;
                let flat: Vec<u8> = px.into_iter().flatten().collect();
                Ok(RgbImage::from_raw(w, h, flat).map(DynamicImage::ImageRgb8))
            }
        }
    });
    match r {
        Ok(Ok(Some(img))) => Ok(img),
        Ok(Ok(None)) => Err(VlmError::input(format!("{what}: CMYK JPEG is not supported by the libjpeg path"))),
        Ok(Err(e)) => Err(VlmError::input(format!("{what}: cannot decode JPEG: {e}"))),
        Err(_) => Err(VlmError::input(format!("{what}: cannot decode JPEG: corrupt data"))),
    }
}
