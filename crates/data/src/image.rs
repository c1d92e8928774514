//! Loading a record's image, whatever it is stored as: PNG, JPEG, BMP, TIFF (through the model's
//! decoder, which matches PIL exactly), a DICOM file, or a folder holding one DICOM series.

use crate::dicom::{self, View, Window};
use anyhow::{bail, Context, Result};
use imaging::RgbImage;
use std::path::Path;

/// How DICOM images are shown; raster images ignore it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ImageOptions {
    /// Replaces the file's window (`--window lung` or `C,W`).
    pub window: Option<Window>,
    /// The frame of a multi-frame file or the slice of a series (0-based); default the middle.
    pub frame: Option<usize>,
    /// Give this many evenly spaced frames or slices, as that many images.
    pub slices: Option<usize>,
}

/// Decodes image bytes; `what` names them in errors.
pub fn decode(bytes: &[u8], what: &str) -> Result<RgbImage> {
    if dicom::is_dicom(bytes) {
        dicom::decode(bytes, what)
    } else {
        Ok(RgbImage::decode(bytes, what)?)
    }
}

pub fn open(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read image", path.display()))?;
    decode(&bytes, &path.display().to_string())
}

/// The image or images a path gives under `opts`: one for a raster file; for a DICOM file or a
/// series folder, the chosen frame or slice, or `opts.slices` evenly spaced ones.
pub fn open_with(path: &Path, opts: &ImageOptions) -> Result<Vec<RgbImage>> {
    let what = path.display().to_string();
    if path.is_dir() {
        let series = dicom::read_series(path)?;
        let picked = dicom::pick(series.slices.len(), opts.frame, opts.slices, &what)?;
        return picked
            .into_iter()
            .map(|i| {
                let p = &series.slices[i];
                let view = View { window: opts.window, frame: None };
                dicom::render_view(&dicom::read_file(p)?, &view, &p.display().to_string())
            })
            .collect();
    }
    let bytes = std::fs::read(path).with_context(|| format!("{what}: cannot read image"))?;
    if !dicom::is_dicom(&bytes) {
        if opts.frame.is_some_and(|f| f > 0) || opts.slices.is_some_and(|k| k > 1) {
            bail!("{what}: --frame / --slices pick frames of a DICOM file or slices of a series folder; this is a single image");
        }
        return Ok(vec![RgbImage::decode(&bytes, &what)?]);
    }
    let px = dicom::read_stored(&bytes, &what)?;
    dicom::pick(px.frames, opts.frame, opts.slices, &what)?
        .into_iter()
        .map(|f| dicom::render_view(&px, &View { window: opts.window, frame: Some(f) }, &what))
        .collect()
}
