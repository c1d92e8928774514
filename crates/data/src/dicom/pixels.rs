//! A DICOM file's stored values, decoded and laid out as pydicom's `pixel_array` is: frames first,
//! samples interleaved, signed values sign-extended, colour converted to RGB (YBR_FULL,
//! YBR_FULL_422 and the JPEG 2000 colour transforms YBR_RCT / YBR_ICT), palette images as indices.
//!
//! Decoders: uncompressed, Deflated, Big Endian, RLE, JPEG 2000 (incl. HTJ2K, through dicom-rs's
//! pure-Rust `openjp2`), JPEG-LS (dicom-rs's CharLS binding, built from source), lossless JPEG and
//! 12-bit JPEG Extended (dicom-rs's jpeg-decoder), and 8-bit JPEG baseline / extended through
//! libjpeg-turbo, as PIL and pydicom decode it.

use anyhow::{anyhow, bail, Result};
use dicom_dictionary_std::tags;
use dicom_object::DefaultDicomObject;
use dicom_pixeldata::PixelDecoder;

use super::lut::{ModalityLut, Palette, Voi};
use super::parse::{error_chain, int, parse, text};
use super::tags::DisplayTags;
use super::window::{VoiFunction, Window};

/// Everything read from the file, before any display transform.
#[derive(Debug, Clone)]
pub struct StoredPixels {
    pub rows: usize,
    pub columns: usize,
    pub frames: usize,
    pub samples_per_pixel: usize,
    /// What `values` are now: RGB once colour has been converted, else the file's.
    pub photometric: String,
    pub bits_allocated: u16,
    pub bits_stored: u16,
    pub signed: bool,
    /// Stored values, frames first, samples interleaved, sign-extended when signed.
    pub values: Vec<i32>,
    pub modality_lut: ModalityLut,
    /// The file's window (its first one), if it gives one.
    pub window: Option<Window>,
    pub voi: Voi,
    /// Presentation LUT Shape INVERSE: the display levels are inverted.
    pub presentation_inverse: bool,
    pub palette: Option<Palette>,
    pub tags: DisplayTags,
}

impl StoredPixels {
    /// The shape of pydicom's `pixel_array` for these values.
    pub fn pixel_array_shape(&self) -> Vec<usize> {
        let mut s = vec![];
        if self.frames > 1 {
            s.push(self.frames);
        }
        s.extend([self.rows, self.columns]);
        if self.samples_per_pixel > 1 {
            s.push(self.samples_per_pixel);
        }
        s
    }

    /// The modality LUT applied to every stored value (single-sample images).
    pub fn modality_lut(&self) -> Vec<f64> {
        self.modality_lut.apply(&self.values)
    }

    pub fn tags(&self) -> &DisplayTags {
        &self.tags
    }

    /// The stored values' integer type as pydicom gives it: (bits 8 / 16 / 32, signed).
    pub fn integer_type(&self) -> (u16, bool) {
        let bits = match self.bits_allocated {
            0..=8 => 8,
            9..=16 => 16,
            _ => 32,
        };
        (bits, self.signed && self.samples_per_pixel == 1)
    }

    /// The values of one frame.
    pub fn frame(&self, f: usize) -> &[i32] {
        let len = self.rows * self.columns * self.samples_per_pixel;
        &self.values[f * len..(f + 1) * len]
    }
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

const JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";
const JPEG_EXTENDED: &str = "1.2.840.10008.1.2.4.51";

/// Transfer syntaxes whose pixel data is not encapsulated: dicom-rs hands the bytes over as the
/// file stores them (after inflating or byte-swapping), colour as the file codes it.
fn native(ts_uid: &str) -> bool {
    matches!(ts_uid, "1.2.840.10008.1.2" | "1.2.840.10008.1.2.1" | "1.2.840.10008.1.2.1.99" | "1.2.840.10008.1.2.2")
}

fn jpeg2000(ts_uid: &str) -> bool {
    matches!(
        ts_uid,
        "1.2.840.10008.1.2.4.90"
            | "1.2.840.10008.1.2.4.91"
            | "1.2.840.10008.1.2.4.201"
            | "1.2.840.10008.1.2.4.202"
            | "1.2.840.10008.1.2.4.203"
    )
}

fn read_stored_unguarded(bytes: &[u8], what: &str) -> Result<StoredPixels> {
    let obj = parse(bytes, what)?;
    let tags = DisplayTags::read(&obj);
    let ts_uid = tags.transfer_syntax_uid.clone();
    let ts_name = tags.transfer_syntax.clone();
    let signed = tags.pixel_representation == 1;
    let file_pi = tags.photometric_interpretation.clone();
    // The declared frame size, before any pixel data is decoded (a small file can declare a huge
    // one). Frames are not multiplied in: a long cine or CT series file is legitimate.
    imaging::check_pixels(tags.columns as u64, tags.rows as u64, 1, what)?;
    let mut jpeg = None;
    if ts_uid == JPEG_BASELINE || ts_uid == JPEG_EXTENDED {
        jpeg = decode_jpeg_frames(&obj, what, &ts_uid, &ts_name)?;
    }
    let (rows, columns, frames, spp, bits_allocated, bits_stored, mut photometric, mut values);
    if let Some((r, c, f, s, v, converted, precision)) = jpeg {
        // libjpeg-turbo (as PIL and pydicom use it), which honours the Adobe marker's colour
        // transform flag; dicom-rs's decoder ignores it and turns RGB-coded JPEGs into false colour.
        // 12-bit frames: medr1's own sequential-DCT decoder.
        (rows, columns, frames, spp, values) = (r, c, f, s, v);
        (bits_allocated, bits_stored) = if precision == 8 { (8, 8) } else { (16, tags.bits_stored.min(precision)) };
        photometric = if converted { "RGB".to_string() } else { file_pi.clone() };
    } else {
        let decoded = obj.decode_pixel_data().map_err(|e| {
            anyhow!("{what}: cannot decode pixel data stored as {ts_name} ({ts_uid}): {}", error_chain(&e))
        })?;
        rows = decoded.rows() as usize;
        columns = decoded.columns() as usize;
        frames = decoded.number_of_frames().max(1) as usize;
        spp = decoded.samples_per_pixel() as usize;
        bits_allocated = decoded.bits_allocated();
        bits_stored = decoded.bits_stored();
        photometric = if native(&ts_uid) || ts_uid == "1.2.840.10008.1.2.5" {
            // dicom-rs relabels RLE colour as RGB, which is wrong for YBR: keep the file's.
            file_pi.clone()
        } else if jpeg2000(&ts_uid) && matches!(file_pi.as_str(), "YBR_RCT" | "YBR_ICT") {
            // The JPEG 2000 decoder undoes the codestream's component transform.
            "RGB".to_string()
        } else {
            decoded.photometric_interpretation().as_str().to_string()
        };
        let planar =
            spp == 3 && int(&obj, tags::PLANAR_CONFIGURATION) == Some(1) && !ts_uid.starts_with("1.2.840.10008.1.2.5");
        let data = decoded.data();
        values = match bits_allocated {
            1..=8 => data.iter().map(|&b| if signed { b as i8 as i32 } else { b as i32 }).collect(),
            9..=16 => data.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]) as i32).collect(),
            32 => data.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            b => bail!("{what}: {b} bits allocated per sample is not supported"),
        };
        if native(&ts_uid) && spp == 3 && file_pi == "YBR_FULL_422" {
            // Uncompressed 4:2:2 stores Y1 Y2 Cb Cr for each pair of pixels: two samples per
            // pixel, not three.
            let need = rows * columns * 2 * frames;
            if values.len() < need {
                bail!(
                    "{what}: YBR_FULL_422 pixel data holds {} samples, {rows}x{columns}x2x{frames} expected",
                    values.len()
                );
            }
            values = expand_ybr422(&values[..need]);
        } else if planar {
            let n = rows * columns * 3 * frames;
            values.truncate(n);
            values = interleave_planes(&values, rows * columns);
        }
    }
    let n = rows * columns * spp * frames;
    if values.len() < n {
        bail!("{what}: pixel data holds {} samples, {rows}x{columns}x{spp}x{frames} expected", values.len());
    }
    values.truncate(n);
    if spp == 1 {
        keep_stored_bits(&mut values, bits_allocated, bits_stored, signed);
    }
    if spp == 3 && matches!(photometric.as_str(), "YBR_FULL" | "YBR_FULL_422") {
        ybr_full_to_rgb(&mut values, bits_stored.clamp(8, 16));
        photometric = "RGB".into();
    }
    let window = first_window(&tags);
    let voi = Voi::read(&obj, window, what)?;
    let palette = if photometric == "PALETTE COLOR" { Some(Palette::read(&obj, what)?) } else { None };
    Ok(StoredPixels {
        rows,
        columns,
        frames,
        samples_per_pixel: spp,
        photometric,
        bits_allocated,
        bits_stored,
        signed,
        values,
        modality_lut: ModalityLut::read(&obj, &tags, what)?,
        window,
        voi,
        presentation_inverse: text(&obj, tags::PRESENTATION_LUT_SHAPE).as_deref() == Some("INVERSE"),
        palette,
        tags,
    })
}

/// The first window the file gives (Window Center / Width are multi-valued: one per view).
fn first_window(t: &DisplayTags) -> Option<Window> {
    match (t.window_center.first(), t.window_width.first()) {
        (Some(&center), Some(&width)) if width > 0.0 => {
            let function = match t.voi_lut_function.as_deref() {
                Some("LINEAR_EXACT") => VoiFunction::LinearExact,
                Some("SIGMOID") => VoiFunction::Sigmoid,
                _ => VoiFunction::Linear,
            };
            Some(Window { center, width, function })
        }
        _ => None,
    }
}

/// Keeps only the stored bits; sign-extends them when the representation is signed.
fn keep_stored_bits(values: &mut [i32], bits_allocated: u16, bits_stored: u16, signed: bool) {
    if bits_allocated > 16 || bits_stored == 0 {
        return;
    }
    let bits = bits_stored.min(bits_allocated);
    let mask = (1i32 << bits) - 1;
    let sign = 1i32 << (bits - 1);
    for v in values {
        *v &= mask;
        if signed && *v & sign != 0 {
            *v -= 1 << bits;
        }
    }
}

/// Y1 Y2 Cb Cr per pair of pixels into Y Cb Cr per pixel.
fn expand_ybr422(values: &[i32]) -> Vec<i32> {
    let mut out = Vec::with_capacity(values.len() / 2 * 3);
    for q in values.chunks_exact(4) {
        out.extend_from_slice(&[q[0], q[2], q[3], q[1], q[2], q[3]]);
    }
    out
}

/// YCbCr (full range, ITU-R BT.601 as DICOM defines YBR_FULL) to RGB, in place, as pydicom
/// converts it: float32, the offset 2^(bits-1) taken from both chroma samples, rounded half up and
/// clipped to the sample range.
pub fn ybr_full_to_rgb(values: &mut [i32], bits: u16) {
    let half = (1u32 << (bits - 1)) as f32;
    let top = ((1u32 << bits) - 1) as f32;
    // numpy builds the matrix from Python floats (f64), then stores it as float32.
    let (g_cb, g_cr) = ((-0.114f64 * 1.772 / 0.587) as f32, (-0.299f64 * 1.402 / 0.587) as f32);
    for p in values.chunks_exact_mut(3) {
        let (y, cb, cr) = (p[0] as f32, p[1] as f32 - half, p[2] as f32 - half);
        let c = |v: f32| ((v + 0.5).floor()).clamp(0.0, top) as i32;
        p[0] = c(y + 1.402 * cr);
        p[1] = c(y + g_cb * cb + g_cr * cr);
        p[2] = c(y + 1.772 * cb);
    }
}

/// Planar configuration 1 (RRR..GGG..BBB per frame) to interleaved RGB.
fn interleave_planes(values: &[i32], plane: usize) -> Vec<i32> {
    let mut out = Vec::with_capacity(values.len());
    for f in values.chunks(plane * 3) {
        for i in 0..plane.min(f.len() / 3) {
            out.extend_from_slice(&[f[i], f[plane + i], f[2 * plane + i]]);
        }
    }
    out
}

/// Decodes encapsulated 8-bit JPEG frames: one fragment per frame, or all fragments as one frame.
/// Returns (rows, columns, frames, samples per pixel, samples, whether the decoder converted
/// colour to RGB, sample precision); 12-bit frames are decoded by `imaging::jpeg_extended`.
type JpegFrames = (usize, usize, usize, usize, Vec<i32>, bool, u16);
fn decode_jpeg_frames(obj: &DefaultDicomObject, what: &str, ts_uid: &str, ts_name: &str) -> Result<Option<JpegFrames>> {
    let elem = obj.element(tags::PIXEL_DATA).map_err(|_| anyhow!("{what}: no pixel data"))?;
    let fragments =
        elem.value().fragments().ok_or_else(|| anyhow!("{what}: {ts_name} pixel data is not encapsulated"))?;
    let precision = fragments.first().and_then(|f| imaging::jpeg::sample_precision(f)).unwrap_or(8);
    if precision != 8 && precision != 12 {
        return Ok(None);
    }
    let frames = int(obj, tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1) as usize;
    let streams: Vec<Vec<u8>> = if fragments.len() == frames {
        fragments.to_vec()
    } else if frames == 1 {
        vec![fragments.concat()]
    } else {
        bail!(
            "{what}: {} JPEG fragments for {frames} frames in {ts_name} ({ts_uid}): fragmented frames are not supported",
            fragments.len()
        );
    };
    let (mut rows, mut columns, mut spp) = (0, 0, 0);
    let mut values = Vec::new();
    for (k, stream) in streams.iter().enumerate() {
        let fail = |e: imaging::ImageError| {
            anyhow!("{what}: cannot decode pixel data stored as {ts_name} ({ts_uid}), frame {k}: {e}")
        };
        // As pydicom (through Pillow) does: a complete Adobe marker's transform flag decides the
        // colour conversion; without one the components are taken as coded, and the DICOM
        // photometric interpretation (applied later) says what they are.
        let (w, h, s, samples) = match imaging::jpeg::adobe_transform(stream) {
            _ if precision == 12 => {
                let (w, h, s, v) = imaging::jpeg_extended::decode(stream, what).map_err(fail)?;
                values.extend(v.into_iter().map(i32::from));
                (w, h, s, Vec::new())
            }
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
    let converted =
        precision == 8 && spp == 3 && streams.first().and_then(|s| imaging::jpeg::adobe_transform(s)).is_some();
    Ok(Some((rows, columns, frames, spp, values, converted, precision as u16)))
}
