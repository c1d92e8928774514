//! Loading a record's image, whatever it is stored as: PNG, JPEG, BMP, TIFF (through the model's
//! decoder, which matches PIL exactly) or DICOM.

use crate::dicom;
use anyhow::{Context, Result};
use imaging::RgbImage;
use std::path::Path;

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
