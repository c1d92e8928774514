//! The attributes that decide how an image is displayed, and only those: what `medr1 data dicom`
//! prints. Patient- and study-identifying attributes (names, IDs, dates, institution, UIDs other
//! than the transfer syntax) are never read into it, so no output built from it can leak them.

use dicom_dictionary_std::tags;
use dicom_object::DefaultDicomObject;
use serde::Serialize;

use super::parse::{float, floats, int, items, text, transfer_syntax_name};

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct DisplayTags {
    pub modality: Option<String>,
    pub photometric_interpretation: String,
    pub rows: usize,
    pub columns: usize,
    pub samples_per_pixel: usize,
    pub frames: usize,
    pub bits_allocated: u16,
    pub bits_stored: u16,
    pub high_bit: u16,
    pub pixel_representation: u16,
    pub planar_configuration: Option<u16>,
    pub transfer_syntax: String,
    pub transfer_syntax_uid: String,
    pub rescale_slope: f64,
    pub rescale_intercept: f64,
    pub rescale_type: Option<String>,
    pub window_center: Vec<f64>,
    pub window_width: Vec<f64>,
    pub voi_lut_function: Option<String>,
    /// Items of the Modality LUT Sequence (0028,3000).
    pub modality_lut_sequence: usize,
    /// Items of the VOI LUT Sequence (0028,3010).
    pub voi_lut_sequence: usize,
    /// "table", "segmented" or None: how PALETTE COLOR tables are stored.
    pub palette: Option<String>,
    pub presentation_lut_shape: Option<String>,
}

impl DisplayTags {
    pub fn read(obj: &DefaultDicomObject) -> DisplayTags {
        let u = |tag| int(obj, tag).unwrap_or(0).max(0) as usize;
        let ts_uid = obj.meta().transfer_syntax().trim_end_matches('\0').to_string();
        let palette = if obj.element_opt(tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA).ok().flatten().is_some() {
            Some("table".to_string())
        } else if obj.element_opt(tags::SEGMENTED_RED_PALETTE_COLOR_LOOKUP_TABLE_DATA).ok().flatten().is_some() {
            Some("segmented".to_string())
        } else {
            None
        };
        DisplayTags {
            modality: text(obj, tags::MODALITY),
            photometric_interpretation: text(obj, tags::PHOTOMETRIC_INTERPRETATION)
                .unwrap_or_else(|| "MONOCHROME2".into()),
            rows: u(tags::ROWS),
            columns: u(tags::COLUMNS),
            samples_per_pixel: u(tags::SAMPLES_PER_PIXEL).max(1),
            frames: u(tags::NUMBER_OF_FRAMES).max(1),
            bits_allocated: u(tags::BITS_ALLOCATED) as u16,
            bits_stored: u(tags::BITS_STORED) as u16,
            high_bit: u(tags::HIGH_BIT) as u16,
            pixel_representation: u(tags::PIXEL_REPRESENTATION) as u16,
            planar_configuration: int(obj, tags::PLANAR_CONFIGURATION).map(|v| v as u16),
            transfer_syntax: transfer_syntax_name(&ts_uid),
            transfer_syntax_uid: ts_uid,
            rescale_slope: float(obj, tags::RESCALE_SLOPE).unwrap_or(1.0),
            rescale_intercept: float(obj, tags::RESCALE_INTERCEPT).unwrap_or(0.0),
            rescale_type: text(obj, tags::RESCALE_TYPE),
            window_center: floats(obj, tags::WINDOW_CENTER).unwrap_or_default(),
            window_width: floats(obj, tags::WINDOW_WIDTH).unwrap_or_default(),
            voi_lut_function: text(obj, tags::VOILUT_FUNCTION),
            modality_lut_sequence: items(obj, tags::MODALITY_LUT_SEQUENCE).len(),
            voi_lut_sequence: items(obj, tags::VOILUT_SEQUENCE).len(),
            palette,
            presentation_lut_shape: text(obj, tags::PRESENTATION_LUT_SHAPE),
        }
    }

    /// `key: value` lines for a terminal.
    pub fn lines(&self) -> Vec<String> {
        let v = serde_json::to_value(self).unwrap_or_default();
        let mut out = Vec::new();
        if let serde_json::Value::Object(m) = v {
            for (k, v) in m {
                let shown = match &v {
                    serde_json::Value::Null => continue,
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Array(a) if a.is_empty() => continue,
                    other => other.to_string(),
                };
                out.push(format!("{k}: {shown}"));
            }
        }
        out
    }
}
