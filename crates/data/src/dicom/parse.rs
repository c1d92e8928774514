//! A DICOM file's bytes into dicom-rs's object, and the typed attribute reads the pipeline uses.

use anyhow::{anyhow, bail, Result};
use dicom_object::{DefaultDicomObject, InMemDicomObject, OpenFileOptions, Tag};

use super::lengths::{self, Lengths};

/// Whether `bytes` is a DICOM Part 10 file (the "DICM" magic after the 128-byte preamble).
pub fn is_dicom(bytes: &[u8]) -> bool {
    bytes.len() >= 132 && &bytes[128..132] == b"DICM"
}

/// The whole file, pixel data included.
pub fn parse(bytes: &[u8], what: &str) -> Result<DefaultDicomObject> {
    parse_until(bytes, what, None)
}

/// The file's attributes up to (not including) `stop`: a series is sorted from its slices'
/// headers without reading their pixel data.
pub fn parse_until(bytes: &[u8], what: &str, stop: Option<Tag>) -> Result<DefaultDicomObject> {
    if !is_dicom(bytes) {
        bail!("{what}: not a DICOM file (no DICM marker at byte 128)");
    }
    // dicom-rs allocates each value's declared length before reading it: check them first.
    match lengths::check(bytes) {
        Lengths::Exceeds { tag, declared, left } => bail!(
            "{what}: the DICOM file is truncated or corrupt: element ({:04X},{:04X}) declares {declared} bytes but only {left} follow",
            tag.0,
            tag.1
        ),
        // Read as explicit VR first, such a body made dicom-rs allocate ~1.2 GB of garbage lengths
        // (8 s) before the implicit reading below succeeded.
        Lengths::FitImplicitBody => {
            if let Some(obj) = parse_implicit_body(bytes) {
                return Ok(obj);
            }
        }
        Lengths::Fit => {}
    }
    let mut options = OpenFileOptions::new();
    if let Some(tag) = stop {
        options = options.read_until(tag);
    }
    match options.from_reader(&bytes[128..]) {
        Ok(obj) => Ok(obj),
        Err(e) => parse_implicit_body(bytes).ok_or_else(|| anyhow!("{what}: cannot parse DICOM: {}", error_chain(&e))),
    }
}

/// Some writers (e.g. pydicom's `SC_rgb_jpeg.dcm`, written by highdicom) encode the data set in
/// Implicit VR Little Endian while the meta group announces a compressed (explicit VR) transfer
/// syntax. pydicom reads such files by guessing the VR mode; dicom-rs does not, so on failure the
/// body is re-read as implicit VR and given back its announced transfer syntax, which still
/// governs how the encapsulated pixel data is decompressed.
fn parse_implicit_body(bytes: &[u8]) -> Option<DefaultDicomObject> {
    let meta = dicom_object::meta::FileMetaTable::from_reader(&bytes[128..]).ok()?;
    // "DICM", then (0002,0000) UL as tag 4 + VR 2 + length 2 + value 4 bytes, then the group.
    let body = 128 + 4 + 12 + meta.information_group_length as usize;
    let implicit = dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN.erased();
    let obj = InMemDicomObject::read_dataset_with_ts(bytes.get(body..)?, &implicit).ok()?;
    Some(obj.with_exact_meta(meta))
}

/// A text attribute, trimmed; None when absent or empty.
pub fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    obj.element_opt(tag)
        .ok()
        .flatten()
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim().trim_end_matches('\0').to_string())
        .filter(|s| !s.is_empty())
}

/// The first value of a numeric (or numeric-string) attribute.
pub fn float(obj: &InMemDicomObject, tag: Tag) -> Option<f64> {
    floats(obj, tag).and_then(|v| v.first().copied())
}

pub fn floats(obj: &InMemDicomObject, tag: Tag) -> Option<Vec<f64>> {
    obj.element_opt(tag).ok().flatten().and_then(|e| e.to_multi_float64().ok()).filter(|v| !v.is_empty())
}

pub fn int(obj: &InMemDicomObject, tag: Tag) -> Option<i64> {
    ints(obj, tag).and_then(|v| v.first().copied())
}

pub fn ints(obj: &InMemDicomObject, tag: Tag) -> Option<Vec<i64>> {
    obj.element_opt(tag).ok().flatten().and_then(|e| e.to_multi_int::<i64>().ok()).filter(|v| !v.is_empty())
}

/// The raw bytes of a value (LUT data), in the file's byte order as dicom-rs delivers them.
pub fn bytes(obj: &InMemDicomObject, tag: Tag) -> Option<Vec<u8>> {
    obj.element_opt(tag).ok().flatten().and_then(|e| e.to_bytes().ok().map(|b| b.into_owned()))
}

/// The items of a sequence attribute (empty when absent).
pub fn items(obj: &InMemDicomObject, tag: Tag) -> Vec<InMemDicomObject> {
    obj.element_opt(tag).ok().flatten().and_then(|e| e.items().map(|i| i.to_vec())).unwrap_or_default()
}

/// The transfer syntax's name as PS3.6 (and pydicom) spell it; dicom-rs shortens a few.
pub fn transfer_syntax_name(uid: &str) -> String {
    use dicom_transfer_syntax_registry::TransferSyntaxIndex;
    match uid {
        "1.2.840.10008.1.2.4.50" => return "JPEG Baseline (Process 1)".into(),
        "1.2.840.10008.1.2.4.51" => return "JPEG Extended (Process 2 and 4)".into(),
        "1.2.840.10008.1.2.4.57" => return "JPEG Lossless, Non-Hierarchical (Process 14)".into(),
        "1.2.840.10008.1.2.4.70" => {
            return "JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 [Selection Value 1])".into()
        }
        _ => {}
    }
    dicom_transfer_syntax_registry::TransferSyntaxRegistry
        .get(uid)
        .map(|ts| ts.name().to_string())
        .unwrap_or_else(|| format!("unknown transfer syntax {uid}"))
}

/// dicom-rs errors say the most in their sources ("could not read data set token" alone does not
/// tell which element); join the whole chain.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s += &format!(": {x}");
        src = x.source();
    }
    s
}
