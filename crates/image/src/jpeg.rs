//! JPEG decoding with libjpeg-turbo's decoder (via mozjpeg), configured as Pillow uses it (the
//! accurate integer IDCT, fancy upsampling), so decoded pixels — and hence the model's inputs — are
//! bit-identical to what transformers sees. Other JPEG decoders differ by one grey level here and
//! there, which moves the logits of a sensitive model by 1e-3.

use crate::error::{ImageError, Result};
use image::{DynamicImage, GrayImage, RgbImage};

pub fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.len() >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF
}

/// Decodes a JPEG. Greyscale files stay single-channel (PIL's mode "L"); colour files are
/// converted to RGB by the library. CMYK/YCCK files are left to the `image` crate.
pub fn decode(bytes: &[u8], what: &str) -> Result<DynamicImage> {
    refuse_truncated(bytes, what)?;
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
        Ok(Ok(None)) => Err(ImageError::input(format!("{what}: CMYK JPEG is not supported by the libjpeg path"))),
        Ok(Err(e)) => Err(ImageError::input(format!("{what}: cannot decode JPEG: {e}"))),
        Err(_) => Err(ImageError::input(format!("{what}: cannot decode JPEG: corrupt data"))),
    }
}

/// An error naming `what` when the JPEG stream is truncated ([`is_truncated`]).
pub fn refuse_truncated(bytes: &[u8], what: &str) -> Result<()> {
    if is_truncated(bytes) {
        return Err(ImageError::input(format!(
            "{what}: cannot decode image: image file is truncated (the JPEG data ends before its end-of-image marker)"
        )));
    }
    Ok(())
}

/// Whether a JPEG stream ends before its end-of-image marker: after the header segments (which
/// are skipped by their lengths, so an embedded thumbnail's markers are not mistaken for the
/// image's), the entropy-coded data must reach an EOI (`FF D9`). PIL refuses such a file ("image
/// file is truncated"); libjpeg alone would pad the missing rows with grey.
pub fn is_truncated(bytes: &[u8]) -> bool {
    let mut i = 2;
    // Walk the segments to the first start of scan.
    loop {
        if i + 4 > bytes.len() {
            return true;
        }
        if bytes[i] != 0xFF {
            return true;
        }
        match bytes[i + 1] {
            0xFF => i += 1, // fill byte
            0xDA => break,
            0xD9 => return false,
            0xD0..=0xD7 | 0x01 => i += 2,
            _ => i += 2 + u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]) as usize,
        }
    }
    // In scan data a 0xFF is followed by 0x00 (a stuffed byte), a restart marker or another
    // segment (progressive scans); the image ends at FF D9.
    !bytes[i..].windows(2).any(|w| w == [0xFF, 0xD9])
}

/// The frame size (width, height) from the header, if a frame header comes before the scan.
pub fn dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    header_segments(bytes).find(|(m, _)| (0xC0..=0xCF).contains(m) && !matches!(m, 0xC4 | 0xC8 | 0xCC)).and_then(
        |(_, p)| {
            Some((
                u16::from_be_bytes([*p.get(3)?, *p.get(4)?]) as u32,
                u16::from_be_bytes([*p.get(1)?, *p.get(2)?]) as u32,
            ))
        },
    )
}

/// The header segments before the first scan: (marker, payload) pairs. Stops at a truncated
/// segment, so callers see only what is really there.
fn header_segments(bytes: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    let mut i = 2;
    std::iter::from_fn(move || {
        if i + 4 > bytes.len() || bytes[i] != 0xFF || matches!(bytes[i + 1], 0xDA | 0xD9) {
            return None; // start of scan or end of image: no more header segments
        }
        let marker = bytes[i + 1];
        let len = u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]) as usize;
        let payload = bytes.get(i + 4..i + 2 + len)?;
        i += 2 + len;
        Some((marker, payload))
    })
}

/// The colour-transform flag of a complete Adobe APP14 segment, as Pillow reads it
/// (`info["adobe_transform"]`): None when there is no Adobe segment or it is too short to hold
/// the flag. DICOM readers use it to decide whether the components are to be colour-converted.
pub fn adobe_transform(bytes: &[u8]) -> Option<u8> {
    header_segments(bytes).find(|(m, p)| *m == 0xEE && p.starts_with(b"Adobe")).and_then(|(_, p)| p.get(11).copied())
}

/// The sample precision (bits) in the JPEG's frame header, if one is found before the scan.
pub fn sample_precision(bytes: &[u8]) -> Option<u8> {
    // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC).
    header_segments(bytes)
        .find(|(m, _)| (0xC0..=0xCF).contains(m) && !matches!(m, 0xC4 | 0xC8 | 0xCC))
        .and_then(|(_, p)| p.first().copied())
}

/// Decodes a JPEG without any colour conversion: the components as coded (Y, Cb, Cr for a
/// YCbCr-coded file). Returns (width, height, components, interleaved samples).
pub fn decode_components(bytes: &[u8], what: &str) -> Result<(usize, usize, usize, Vec<u8>)> {
    refuse_truncated(bytes, what)?;
    let bytes = bytes.to_vec();
    let r = std::panic::catch_unwind(move || -> std::io::Result<(usize, usize, usize, Vec<u8>)> {
        let mut d = mozjpeg::Decompress::new_mem(&bytes)?;
        d.dct_method(mozjpeg::DctMethod::IntegerSlow);
        d.do_fancy_upsampling(true);
        let (w, h) = (d.width(), d.height());
        let cs = d.color_space();
        let mut s = d.to_colorspace(cs)?;
        let c = {
            use mozjpeg::ColorSpaceExt;
            s.color_space().num_components()
        };
        let px: Vec<u8> = s.read_scanlines()?;
        s.finish()?;
        Ok((w, h, c, px))
    });
    match r {
        Ok(Ok(x)) => Ok(x),
        Ok(Err(e)) => Err(ImageError::input(format!("{what}: cannot decode JPEG: {e}"))),
        Err(_) => Err(ImageError::input(format!("{what}: cannot decode JPEG: corrupt data"))),
    }
}
