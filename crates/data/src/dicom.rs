//! DICOM images into 8-bit RGB, the way a radiologist's viewer would show them.
//!
//! dicom-rs parses the file and decompresses the pixel data (native, RLE Lossless, JPEG baseline);
//! the display pipeline is ours, following PS3.3 C.11: stored values -> modality LUT (rescale
//! slope / intercept) -> VOI LUT (window centre / width, or the frame's value range when the file
//! gives no window) -> 8 bits; MONOCHROME1 inverted; RGB, YBR_FULL(_422) and PALETTE COLOR to RGB.
//! Multi-frame files show their middle frame unless a frame is asked for. What dicom-rs cannot
//! decode (e.g. 12-bit JPEG Extended, JPEG 2000 without a codec) fails with an error naming the
//! file and the transfer syntax.

use anyhow::{anyhow, bail, Context, Result};
use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use dicom_pixeldata::PixelDecoder;
use imaging::RgbImage;

/// Whether `bytes` is a DICOM Part 10 file (the "DICM" magic after the 128-byte preamble).
pub fn is_dicom(bytes: &[u8]) -> bool {
    bytes.len() >= 132 && &bytes[128..132] == b"DICM"
}

/// The window a VOI LUT applies (PS3.3 C.11.2.1.2).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub center: f64,
    pub width: f64,
    pub function: VoiFunction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoiFunction {
    Linear,
    LinearExact,
    Sigmoid,
}

/// Everything read from the file, before any display transform.
#[derive(Debug, Clone)]
pub struct StoredPixels {
    pub rows: usize,
    pub columns: usize,
    pub frames: usize,
    pub samples_per_pixel: usize,
    /// As the pixels are now (after decompression: JPEG decoders deliver RGB).
    pub photometric: String,
    pub bits_stored: u16,
    /// Stored values, frames first, samples interleaved, sign-extended when signed.
    pub values: Vec<i32>,
    pub rescale_slope: f64,
    pub rescale_intercept: f64,
    pub window: Option<Window>,
    pub palette: Option<Palette>,
    pub transfer_syntax: String,
}

/// PALETTE COLOR lookup tables, reduced to 8 bits.
#[derive(Debug, Clone)]
pub struct Palette {
    pub first_mapped: i32,
    pub red: Vec<u8>,
    pub green: Vec<u8>,
    pub blue: Vec<u8>,
}

fn parse(bytes: &[u8], what: &str) -> Result<DefaultDicomObject> {
    if !is_dicom(bytes) {
        bail!("{what}: not a DICOM file (no DICM marker at byte 128)");
    }
    // dicom-rs allocates each value's declared length before reading it: check them first.
    match crate::dicom_lengths::check(bytes) {
        crate::dicom_lengths::Lengths::Exceeds { tag, declared, left } => bail!(
            "{what}: the DICOM file is truncated or corrupt: element ({:04X},{:04X}) declares {declared} bytes but only {left} follow",
            tag.0,
            tag.1
        ),
        // Read as explicit VR first, such a body made dicom-rs allocate ~1.2 GB of garbage lengths
        // (8 s) before the implicit reading below succeeded.
        crate::dicom_lengths::Lengths::FitImplicitBody => {
            if let Some(obj) = parse_implicit_body(bytes) {
                return Ok(obj);
            }
        }
        crate::dicom_lengths::Lengths::Fit => {}
    }
    match OpenFileOptions::new().from_reader(&bytes[128..]) {
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
    let obj = dicom_object::InMemDicomObject::read_dataset_with_ts(bytes.get(body..)?, &implicit).ok()?;
    Some(obj.with_exact_meta(meta))
}

fn text(obj: &DefaultDicomObject, tag: dicom_object::Tag) -> Option<String> {
    obj.element_opt(tag).ok().flatten().and_then(|e| e.to_str().ok()).map(|s| s.trim().to_string())
}

fn float(obj: &DefaultDicomObject, tag: dicom_object::Tag) -> Option<f64> {
    obj.element_opt(tag).ok().flatten().and_then(|e| e.to_multi_float64().ok()).and_then(|v| v.first().copied())
}

fn int(obj: &DefaultDicomObject, tag: dicom_object::Tag) -> Option<i64> {
    obj.element_opt(tag).ok().flatten().and_then(|e| e.to_multi_int::<i64>().ok()).and_then(|v| v.first().copied())
}

/// Reads the stored values and display attributes of a DICOM file's bytes. A dicom-rs decoder that
/// panics on malformed data (found by fuzzing: its RLE decoder indexes past a short segment) is an
/// error about this file, not a crash of the caller.
pub fn read_stored(bytes: &[u8], what: &str) -> Result<StoredPixels> {
    match std::panic::catch_unwind(|| read_stored_unguarded(bytes, what)) {
        Ok(r) => r,
        Err(_) => bail!("{what}: cannot decode DICOM: the decoder failed on malformed data"),
    }
}

fn read_stored_unguarded(bytes: &[u8], what: &str) -> Result<StoredPixels> {
    let obj = parse(bytes, what)?;
    let ts_uid = obj.meta().transfer_syntax().trim_end_matches('\0').to_string();
    let ts_name = dicom_transfer_syntax_name(&ts_uid);
    let signed = int(&obj, tags::PIXEL_REPRESENTATION) == Some(1);
    let file_pi = text(&obj, tags::PHOTOMETRIC_INTERPRETATION).unwrap_or_else(|| "MONOCHROME2".into());
    let is_jpeg = ts_uid == JPEG_BASELINE || ts_uid == JPEG_EXTENDED;
    // The declared frame size, before any pixel data is decoded (a small file can declare a huge
    // one). Frames are not multiplied in: a long cine or CT series file is legitimate.
    let declared = |tag| int(&obj, tag).unwrap_or(0).max(0) as u64;
    imaging::check_pixels(declared(tags::COLUMNS), declared(tags::ROWS), 1, what)?;
    let (rows, columns, frames, spp, bits_alloc, bits_stored, photometric, mut values);
    if is_jpeg {
        // libjpeg-turbo (as PIL and pydicom use it), which honours the Adobe marker's colour
        // transform flag; dicom-rs's decoder ignores it and turns RGB-coded JPEGs into false colour.
        let (r, c, f, s, v, converted) = decode_jpeg_frames(&obj, what, &ts_uid, &ts_name)?;
        (rows, columns, frames, spp, values) = (r, c, f, s, v);
        (bits_alloc, bits_stored) = (8, 8);
        photometric = if converted { "RGB".to_string() } else { file_pi };
    } else {
        let decoded = obj.decode_pixel_data().map_err(|e| {
            anyhow!("{what}: cannot decode pixel data stored as {ts_name} ({ts_uid}): {}", error_chain(&e))
        })?;
        rows = decoded.rows() as usize;
        columns = decoded.columns() as usize;
        frames = decoded.number_of_frames().max(1) as usize;
        spp = decoded.samples_per_pixel() as usize;
        bits_alloc = decoded.bits_allocated();
        bits_stored = decoded.bits_stored();
        // dicom-rs relabels decoded colour as RGB, which is wrong for RLE YBR: keep the file's.
        photometric = file_pi;
        let planar =
            spp == 3 && int(&obj, tags::PLANAR_CONFIGURATION) == Some(1) && !ts_uid.starts_with("1.2.840.10008.1.2.5");
        let data = decoded.data();
        let n = rows * columns * spp * frames;
        values = match bits_alloc {
            8 => data.iter().take(n).map(|&b| if signed { b as i8 as i32 } else { b as i32 }).collect(),
            16 => data.chunks_exact(2).take(n).map(|c| u16::from_le_bytes([c[0], c[1]]) as i32).collect(),
            32 => data.chunks_exact(4).take(n).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            b => bail!("{what}: {b} bits allocated per sample is not supported"),
        };
        if planar {
            values = interleave_planes(&values, rows * columns);
        }
    }
    let n = rows * columns * spp * frames;
    if values.len() < n {
        bail!("{what}: pixel data holds {} samples, {rows}x{columns}x{spp}x{frames} expected", values.len());
    }
    if bits_alloc == 16 && bits_stored < 16 {
        // Keep only the stored bits; sign-extend them when the representation is signed.
        let mask = (1i32 << bits_stored) - 1;
        let sign = 1i32 << (bits_stored - 1);
        for v in &mut values {
            *v &= mask;
            if signed && *v & sign != 0 {
                *v -= 1 << bits_stored;
            }
        }
    } else if bits_alloc == 16 && signed {
        for v in &mut values {
            *v = *v as u16 as i16 as i32;
        }
    }
    let window = match (float(&obj, tags::WINDOW_CENTER), float(&obj, tags::WINDOW_WIDTH)) {
        (Some(center), Some(width)) if width > 0.0 => {
            let function = match text(&obj, tags::VOILUT_FUNCTION).as_deref() {
                Some("LINEAR_EXACT") => VoiFunction::LinearExact,
                Some("SIGMOID") => VoiFunction::Sigmoid,
                _ => VoiFunction::Linear,
            };
            Some(Window { center, width, function })
        }
        _ => None,
    };
    let palette = if photometric == "PALETTE COLOR" { Some(read_palette(&obj, what)?) } else { None };
    Ok(StoredPixels {
        rows,
        columns,
        frames,
        samples_per_pixel: spp,
        photometric,
        bits_stored,
        values,
        rescale_slope: float(&obj, tags::RESCALE_SLOPE).unwrap_or(1.0),
        rescale_intercept: float(&obj, tags::RESCALE_INTERCEPT).unwrap_or(0.0),
        window,
        palette,
        transfer_syntax: ts_name,
    })
}

const JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";
const JPEG_EXTENDED: &str = "1.2.840.10008.1.2.4.51";

/// Planar configuration 1 (RRR..GGG..BBB per frame) to interleaved RGB.
fn interleave_planes(values: &[i32], plane: usize) -> Vec<i32> {
    let mut out = Vec::with_capacity(values.len());
    for f in values.chunks(plane * 3) {
        for i in 0..plane {
            out.extend_from_slice(&[f[i], f[plane + i], f[2 * plane + i]]);
        }
    }
    out
}

/// Decodes encapsulated JPEG frames: one fragment per frame, or all fragments as one frame.
/// Returns (rows, columns, frames, samples per pixel, samples, whether the decoder converted
/// colour to RGB).
type JpegFrames = (usize, usize, usize, usize, Vec<i32>, bool);
fn decode_jpeg_frames(obj: &DefaultDicomObject, what: &str, ts_uid: &str, ts_name: &str) -> Result<JpegFrames> {
    let elem = obj.element(tags::PIXEL_DATA).map_err(|_| anyhow!("{what}: no pixel data"))?;
    let fragments =
        elem.value().fragments().ok_or_else(|| anyhow!("{what}: {ts_name} pixel data is not encapsulated"))?;
    let frames = int(obj, tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1) as usize;
    let streams: Vec<Vec<u8>> = if fragments.len() == frames {
        fragments.to_vec()
    } else if frames == 1 {
        vec![fragments.concat()]
    } else {
        bail!("{what}: {} JPEG fragments for {frames} frames (fragmented frames are not supported)", fragments.len());
    };
    let (mut rows, mut columns, mut spp) = (0, 0, 0);
    let mut values = Vec::new();
    for (k, stream) in streams.iter().enumerate() {
        if let Some(bits) = imaging::jpeg::sample_precision(stream).filter(|&b| b != 8) {
            bail!("{what}: {bits}-bit {ts_name} ({ts_uid}) is not supported: only 8-bit JPEG can be decoded (convert the file, e.g. with dcmdjpeg)");
        }
        let fail = |e: imaging::ImageError| {
            anyhow!("{what}: cannot decode pixel data stored as {ts_name} ({ts_uid}), frame {k}: {e}")
        };
        // As pydicom (through Pillow) does: a complete Adobe marker's transform flag decides the
        // colour conversion; without one the components are taken as coded, and the DICOM
        // photometric interpretation (applied later) says what they are.
        let (w, h, s, samples) = match imaging::jpeg::adobe_transform(stream) {
            Some(_) => {
                let img = imaging::jpeg::decode(stream, what).map_err(fail)?;
                let (w, h) = (img.width() as usize, img.height() as usize);
                if img.color().channel_count() == 1 {
                    (w, h, 1, img.to_luma8().into_raw())
                } else {
                    (w, h, 3, img.to_rgb8().into_raw())
                }
            }
            None => imaging::jpeg::decode_components(stream, what).map_err(fail)?,
        };
        if s != 1 && s != 3 {
            bail!("{what}: JPEG frame {k} has {s} components (1 or 3 supported)");
        }
        if k > 0 && (w, h, s) != (columns, rows, spp) {
            bail!("{what}: JPEG frame {k} is {w}x{h}x{s}, frame 0 was {columns}x{rows}x{spp}");
        }
        (rows, columns, spp) = (h, w, s);
        values.extend(samples.into_iter().map(i32::from));
    }
    let converted = spp == 3 && streams.first().and_then(|s| imaging::jpeg::adobe_transform(s)).is_some();
    Ok((rows, columns, frames, spp, values, converted))
}

fn read_palette(obj: &DefaultDicomObject, what: &str) -> Result<Palette> {
    let channel = |desc: dicom_object::Tag, data: dicom_object::Tag, name: &str| -> Result<(i32, Vec<u8>)> {
        let d: Vec<i64> = obj
            .element(desc)
            .ok()
            .and_then(|e| e.to_multi_int::<i64>().ok())
            .ok_or_else(|| anyhow!("{what}: PALETTE COLOR without a {name} palette descriptor"))?;
        if d.len() != 3 {
            bail!("{what}: {name} palette descriptor has {} values, 3 expected", d.len());
        }
        let bytes =
            obj.element(data).ok().and_then(|e| e.to_bytes().ok().map(|b| b.into_owned())).ok_or_else(|| {
                anyhow!("{what}: PALETTE COLOR without {name} palette data (segmented palettes are not supported)")
            })?;
        let entries = if d[0] == 0 { 65536 } else { d[0] as usize };
        let bits = d[2];
        let table: Vec<u8> = if bits == 8 && bytes.len() == entries {
            bytes
        } else {
            let words: Vec<u16> = bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
            words.iter().take(entries).map(|&w| if bits <= 8 { w as u8 } else { (w >> (bits - 8)) as u8 }).collect()
        };
        Ok((d[1] as i32, table))
    };
    let (first_mapped, red) =
        channel(tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR, tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA, "red")?;
    let (_, green) = channel(
        tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
        tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
        "green",
    )?;
    let (_, blue) =
        channel(tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR, tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA, "blue")?;
    Ok(Palette { first_mapped, red, green, blue })
}

/// The modality LUT: stored value * slope + intercept (Hounsfield units for CT).
pub fn modality_lut(stored: &[i32], slope: f64, intercept: f64) -> Vec<f64> {
    stored.iter().map(|&v| v as f64 * slope + intercept).collect()
}

/// The VOI LUT into 0..=255 (PS3.3 C.11.2.1.2.1-2 with y_min 0, y_max 255).
pub fn voi_lut(values: &[f64], window: Option<Window>) -> Vec<u8> {
    let to_u8 = |y: f64| y.round().clamp(0.0, 255.0) as u8;
    match window {
        Some(Window { center: c, width: w, function: VoiFunction::Linear }) => {
            // Width 1 makes the ramp a step at c - 0.5.
            let w1 = (w - 1.0).max(0.0);
            let lo = c - 0.5 - w1 / 2.0;
            let hi = c - 0.5 + w1 / 2.0;
            values
                .iter()
                .map(|&x| {
                    if x <= lo {
                        0
                    } else if x > hi {
                        255
                    } else {
                        to_u8(((x - (c - 0.5)) / w1 + 0.5) * 255.0)
                    }
                })
                .collect()
        }
        Some(Window { center: c, width: w, function: VoiFunction::LinearExact }) => {
            values.iter().map(|&x| to_u8(((x - c) / w + 0.5) * 255.0)).collect()
        }
        Some(Window { center: c, width: w, function: VoiFunction::Sigmoid }) => {
            values.iter().map(|&x| to_u8(255.0 / (1.0 + (-4.0 * (x - c) / w).exp()))).collect()
        }
        None => {
            let (lo, hi) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
            if values.is_empty() || hi <= lo {
                return vec![0; values.len()];
            }
            values.iter().map(|&x| to_u8((x - lo) / (hi - lo) * 255.0)).collect()
        }
    }
}

/// YCbCr (full range, ITU-R BT.601 as DICOM defines YBR_FULL) to RGB.
pub fn ybr_to_rgb(y: i32, cb: i32, cr: i32) -> [u8; 3] {
    let (y, cb, cr) = (y as f64, cb as f64 - 128.0, cr as f64 - 128.0);
    let c = |v: f64| v.round().clamp(0.0, 255.0) as u8;
    [c(y + 1.402 * cr), c(y - 0.344136 * cb - 0.714136 * cr), c(y + 1.772 * cb)]
}

/// One frame of a DICOM file as the 8-bit RGB image a viewer shows. `frame` None = the middle one.
pub fn render(px: &StoredPixels, frame: Option<usize>, what: &str) -> Result<RgbImage> {
    let f = frame.unwrap_or(px.frames / 2);
    if f >= px.frames {
        bail!("{what}: frame {f} asked for, the file has {}", px.frames);
    }
    let plane = px.rows * px.columns;
    let len = plane * px.samples_per_pixel;
    let stored = &px.values[f * len..(f + 1) * len];
    let mut data = Vec::with_capacity(plane * 3);
    match (px.photometric.as_str(), px.samples_per_pixel) {
        ("MONOCHROME1" | "MONOCHROME2", 1) => {
            let grey = voi_lut(&modality_lut(stored, px.rescale_slope, px.rescale_intercept), px.window);
            let invert = px.photometric == "MONOCHROME1";
            for g in grey {
                let g = if invert { 255 - g } else { g };
                data.extend_from_slice(&[g, g, g]);
            }
        }
        ("RGB", 3) => {
            let shift = px.bits_stored.saturating_sub(8);
            data.extend(stored.iter().map(|&v| (v >> shift).clamp(0, 255) as u8));
        }
        ("YBR_FULL", 3) => {
            for p in stored.chunks_exact(3) {
                data.extend_from_slice(&ybr_to_rgb(p[0], p[1], p[2]));
            }
        }
        ("YBR_FULL_422", 3) => {
            // Uncompressed 4:2:2 stores Y1 Y2 Cb Cr for each pair of pixels in the first
            // two-thirds of the frame's samples.
            for q in stored[..plane * 2].chunks_exact(4) {
                data.extend_from_slice(&ybr_to_rgb(q[0], q[2], q[3]));
                data.extend_from_slice(&ybr_to_rgb(q[1], q[2], q[3]));
            }
        }
        ("PALETTE COLOR", 1) => {
            let pal = px.palette.as_ref().ok_or_else(|| anyhow!("{what}: PALETTE COLOR without a palette"))?;
            let last = pal.red.len().saturating_sub(1) as i32;
            for &v in stored {
                let i = (v - pal.first_mapped).clamp(0, last) as usize;
                data.extend_from_slice(&[pal.red[i], pal.green[i], pal.blue[i]]);
            }
        }
        (pi, spp) => bail!("{what}: photometric interpretation {pi} with {spp} sample(s) per pixel is not supported"),
    }
    Ok(RgbImage { width: px.columns, height: px.rows, data })
}

/// Decodes DICOM bytes into the image a viewer shows (middle frame of a multi-frame file).
pub fn decode(bytes: &[u8], what: &str) -> Result<RgbImage> {
    let px = read_stored(bytes, what)?;
    render(&px, None, what)
}

pub fn open(path: &std::path::Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    decode(&bytes, &path.display().to_string())
}

fn dicom_transfer_syntax_name(uid: &str) -> String {
    use dicom_transfer_syntax_registry::TransferSyntaxIndex;
    dicom_transfer_syntax_registry::TransferSyntaxRegistry
        .get(uid)
        .map(|ts| ts.name().to_string())
        .unwrap_or_else(|| format!("unknown transfer syntax {uid}"))
}

/// dicom-rs errors say the most in their sources ("could not read data set token" alone does not
/// tell which element); join the whole chain.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s += &format!(": {x}");
        src = x.source();
    }
    s
}
