//! DICOM images into 8-bit RGB, the way a radiologist's viewer would show them.
//!
//! - [`pixels`]: the stored values, decoded from every transfer syntax hospital archives use and
//!   laid out as pydicom's `pixel_array` is.
//! - [`lut`]: modality LUT (rescale or table), VOI LUT (window or table), palettes (incl. segmented).
//! - [`window`]: the VOI window and the named CT windows; [`render`]: one frame to RGB.
//! - [`series`]: a folder of slices, ordered; [`tags`]: the display attributes (nothing identifying).
//! - [`lengths`]: a header walk that refuses declared lengths longer than the file.

pub mod lengths;
pub mod lut;
pub mod parse;
pub mod pixels;
pub mod render;
pub mod series;
pub mod tags;
pub mod window;

use anyhow::{Context, Result};
use imaging::RgbImage;

pub use lut::{ModalityLut, Palette, Voi};
pub use parse::is_dicom;
pub use pixels::{read_stored, ybr_full_to_rgb, StoredPixels};
pub use render::{render, render_view, View};
pub use series::{pick, read_series, Series};
pub use tags::DisplayTags;
pub use window::{voi_lut, VoiFunction, Window, PRESETS};

/// Decodes DICOM bytes into the image a viewer shows (middle frame of a multi-frame file).
pub fn decode(bytes: &[u8], what: &str) -> Result<RgbImage> {
    let px = read_stored(bytes, what)?;
    render(&px, None, what)
}

/// A DICOM file's stored values; errors name the path.
pub fn read_file(path: &std::path::Path) -> Result<StoredPixels> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    read_stored(&bytes, &path.display().to_string())
}

pub fn open(path: &std::path::Path) -> Result<RgbImage> {
    render(&read_file(path)?, None, &path.display().to_string())
}
