//! One frame of stored values into the 8-bit RGB image a viewer shows (PS3.3 C.11): modality LUT
//! -> VOI (the window asked for, else the file's window, else its VOI LUT, else the frame's value
//! range) -> Presentation LUT (MONOCHROME1 and INVERSE inverted); colour passes through at 8 bits;
//! palette indices through the palette.

use anyhow::{anyhow, bail, Result};
use imaging::RgbImage;

use super::lut::Voi;
use super::pixels::StoredPixels;
use super::window::Window;

/// How to show a file: which window, which frame.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct View {
    /// Replaces the file's window and VOI LUT (grey images only).
    pub window: Option<Window>,
    /// The frame of a multi-frame file; None = the middle one.
    pub frame: Option<usize>,
}

/// One frame of a DICOM file as the 8-bit RGB image a viewer shows. `frame` None = the middle one.
pub fn render(px: &StoredPixels, frame: Option<usize>, what: &str) -> Result<RgbImage> {
    render_view(px, &View { window: None, frame }, what)
}

pub fn render_view(px: &StoredPixels, view: &View, what: &str) -> Result<RgbImage> {
    let f = view.frame.unwrap_or(px.frames / 2);
    if f >= px.frames {
        bail!("{what}: frame {f} asked for, the file has {} (0 to {})", px.frames, px.frames - 1);
    }
    let stored = px.frame(f);
    let plane = px.rows * px.columns;
    let mut data = Vec::with_capacity(plane * 3);
    match (px.photometric.as_str(), px.samples_per_pixel) {
        ("MONOCHROME1" | "MONOCHROME2", 1) => {
            let voi = match view.window {
                Some(w) => Voi::Window(w),
                None => px.voi.clone(),
            };
            let grey = voi.apply(&px.modality_lut.apply(stored));
            // MONOCHROME1 files that also say INVERSE (required of them in e.g. DX) describe one
            // inversion, not two.
            let invert = px.photometric == "MONOCHROME1" || px.presentation_inverse;
            for g in grey {
                let g = if invert { 255 - g } else { g };
                data.extend_from_slice(&[g, g, g]);
            }
        }
        ("RGB", 3) => {
            let shift = px.bits_stored.max(8) - 8;
            data.extend(stored.iter().map(|&v| (v >> shift).clamp(0, 255) as u8));
        }
        ("PALETTE COLOR", 1) => {
            let pal = px.palette.as_ref().ok_or_else(|| anyhow!("{what}: PALETTE COLOR without a palette"))?;
            let last = pal.red.len().saturating_sub(1) as i32;
            for &v in stored {
                let i = (v - pal.first_mapped).clamp(0, last) as usize;
                data.extend_from_slice(&[pal.red[i], pal.green[i], pal.blue[i]]);
            }
        }
        (pi, spp) => bail!(
            "{what}: photometric interpretation {pi} with {spp} sample(s) per pixel is not supported ({})",
            px.tags.transfer_syntax
        ),
    }
    Ok(RgbImage { width: px.columns, height: px.rows, data })
}
