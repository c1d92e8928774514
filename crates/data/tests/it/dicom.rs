//! DICOM decoding against what pydicom 3.0.2 decoded for the same files
//! (fixtures/dicom, copied from the shared samples/dicom folder), and the display pipeline on
//! hand-worked values.

use data::dicom::{self, render, voi_lut, StoredPixels, VoiFunction, Window};
use safetensors::SafeTensors;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dicom").join(name)
}

fn stored(name: &str) -> StoredPixels {
    let bytes = std::fs::read(fixture(name)).unwrap();
    dicom::read_stored(&bytes, name).unwrap()
}

fn reference() -> Vec<u8> {
    std::fs::read(fixture("pydicom_reference.safetensors")).unwrap()
}

fn tensor_values(st: &SafeTensors, key: &str) -> Vec<f64> {
    let t = st.tensor(key).unwrap();
    let b = t.data();
    match t.dtype() {
        safetensors::Dtype::I16 => b.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]]) as f64).collect(),
        safetensors::Dtype::U16 => b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]) as f64).collect(),
        safetensors::Dtype::U8 => b.iter().map(|&v| v as f64).collect(),
        safetensors::Dtype::F32 => {
            b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).collect()
        }
        d => panic!("{key}: unexpected dtype {d:?}"),
    }
}

#[test]
fn stored_values_and_modality_lut_match_pydicom_exactly() {
    let bytes = reference();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    for name in ["CT_small", "MR_small", "MR_small_RLE", "emri_small", "examples_rgb_color"] {
        let px = stored(&format!("{name}.dcm"));
        let want = tensor_values(&st, &format!("{name}.stored"));
        let got: Vec<f64> = px.values.iter().map(|&v| v as f64).collect();
        assert_eq!(got.len(), want.len(), "{name}");
        assert!(got == want, "{name}: stored values differ from pydicom");
        if let Ok(t) = st.tensor(&format!("{name}.modality_lut")) {
            let _ = t;
            let want = tensor_values(&st, &format!("{name}.modality_lut"));
            let got = px.modality_lut();
            let worst = got.iter().zip(&want).map(|(a, b)| (*a as f32 as f64 - b).abs()).fold(0.0, f64::max);
            assert_eq!(worst, 0.0, "{name}: modality LUT differs by {worst}");
        }
    }
    // CT: Hounsfield units, air near -1000.
    let ct = stored("CT_small.dcm");
    assert_eq!(ct.modality_lut, dicom::ModalityLut::Rescale { slope: 1.0, intercept: -1024.0 });
    assert_eq!(ct.frames, 1);
    let emri = stored("emri_small.dcm");
    assert_eq!((emri.frames, emri.rows, emri.columns, emri.bits_stored), (10, 64, 64, 12));
}

#[test]
fn jpeg_baseline_matches_pydicom() {
    let bytes = reference();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let px = stored("SC_rgb_jpeg.dcm");
    assert_eq!(px.photometric, "RGB");
    let want = tensor_values(&st, "SC_rgb_jpeg.stored");
    assert_eq!(px.values.len(), want.len());
    let diffs: Vec<f64> = px.values.iter().zip(&want).map(|(a, b)| (*a as f64 - b).abs()).collect();
    let mean = diffs.iter().sum::<f64>() / diffs.len() as f64;
    let max = diffs.iter().cloned().fold(0.0, f64::max);
    // Lossy JPEG: decoders may round the IDCT and colour conversion differently.
    // Decoded as pydicom does (libjpeg-turbo, no colour transform for a file whose Adobe marker
    // is truncated): identical.
    assert_eq!((mean, max), (0.0, 0.0), "mean {mean} max {max}");
}

#[test]
fn twelve_bit_jpeg_extended_decodes() {
    // 12-bit JPEG Extended goes to jpeg-decoder (libjpeg-turbo here decodes 8-bit JPEG only).
    let px = stored("JPEG-lossy.dcm");
    assert_eq!((px.bits_stored, px.samples_per_pixel), (12, 1));
    assert!(px.values.iter().all(|&v| (0..4096).contains(&v)));
    assert!(px.values.iter().any(|&v| v > 255), "12-bit values");
    let img = data::image::decode(&std::fs::read(fixture("JPEG-lossy.dcm")).unwrap(), "JPEG-lossy.dcm").unwrap();
    assert_eq!((img.width, img.height), (px.columns, px.rows));
}

#[test]
fn voi_window_hand_worked() {
    // Window 600 / 1600 (MR_small): the ramp runs from c - 0.5 - (w-1)/2 = -200 to 1399.
    let w = Some(Window { center: 600.0, width: 1600.0, function: VoiFunction::Linear });
    assert_eq!(voi_lut(&[-1000.0, -200.0, 600.0, 1399.0, 1399.5, 5000.0], w), vec![0, 0, 128, 255, 255, 255]);
    // (600 - 599.5) / 1599 + 0.5 = 0.50031 -> 127.58 -> 128; 200: (200-599.5)/1599+.5 = 0.25016 -> 63.79 -> 64.
    assert_eq!(voi_lut(&[200.0], w), vec![64]);
    let exact = Some(Window { center: 100.0, width: 200.0, function: VoiFunction::LinearExact });
    assert_eq!(voi_lut(&[0.0, 50.0, 100.0, 200.0], exact), vec![0, 64, 128, 255]);
    let sig = Some(Window { center: 0.0, width: 100.0, function: VoiFunction::Sigmoid });
    assert_eq!(voi_lut(&[0.0], sig), vec![128]);
    // No window: the value range.
    assert_eq!(voi_lut(&[-1024.0, 0.0, 1024.0], None), vec![0, 128, 255]);
    assert_eq!(voi_lut(&[5.0, 5.0], None), vec![0, 0]);
}

#[test]
fn rendering_windows_inverts_and_picks_the_middle_frame() {
    let mr = stored("MR_small.dcm");
    assert_eq!(mr.window, Some(Window { center: 600.0, width: 1600.0, function: VoiFunction::Linear }));
    let img = render(&mr, None, "MR_small").unwrap();
    assert_eq!((img.width, img.height), (64, 64));
    let want = voi_lut(&mr.modality_lut(), mr.window);
    for (i, g) in want.iter().enumerate() {
        assert_eq!(&img.data[3 * i..3 * i + 3], &[*g, *g, *g]);
    }
    // MONOCHROME1: the same values, inverted.
    let mut m1 = mr.clone();
    m1.photometric = "MONOCHROME1".into();
    let inv = render(&m1, None, "m1").unwrap();
    assert!(inv.data.iter().zip(&img.data).all(|(a, b)| *a == 255 - *b));
    // RLE decodes to the same image as the uncompressed file.
    assert_eq!(render(&stored("MR_small_RLE.dcm"), None, "rle").unwrap(), img);
    // Ten frames: the middle one (index 5) by default.
    let emri = stored("emri_small.dcm");
    let mid = render(&emri, None, "emri").unwrap();
    assert_eq!(mid, render(&emri, Some(5), "emri").unwrap());
    assert_ne!(mid, render(&emri, Some(0), "emri").unwrap());
    assert!(render(&emri, Some(10), "emri").unwrap_err().to_string().contains("frame 10"));
    // RGB passes through.
    let rgb = stored("examples_rgb_color.dcm");
    let img = render(&rgb, None, "rgb").unwrap();
    assert!(img.data.iter().zip(&rgb.values).all(|(a, b)| *a as i32 == *b));
    // Through the generic image loader too.
    let via_loader = data::image::open(&fixture("examples_rgb_color.dcm")).unwrap();
    assert_eq!(via_loader, img);
}

#[test]
fn ybr_and_palette_colour() {
    // YBR_FULL is converted to RGB when read, as pydicom converts it.
    let mut v = vec![128, 128, 128, 76, 85, 255];
    dicom::ybr_full_to_rgb(&mut v, 8);
    assert_eq!(&v[..3], &[128, 128, 128]);
    // Pure red in BT.601 full range: Y 76.245, Cb 84.972, Cr 255.5.
    assert!(v[3] >= 253 && v[4] <= 2 && v[5] <= 2, "{v:?}");
    let mut px = stored("MR_small.dcm");
    px.rows = 1;
    px.columns = 2;
    px.frames = 1;
    px.photometric = "PALETTE COLOR".into();
    px.samples_per_pixel = 1;
    px.values = vec![10, 12];
    px.palette =
        Some(dicom::Palette { first_mapped: 10, red: vec![1, 2, 3], green: vec![4, 5, 6], blue: vec![7, 8, 9] });
    let img = render(&px, None, "palette").unwrap();
    assert_eq!(img.data, vec![1, 4, 7, 3, 6, 9]);
}

#[test]
fn not_dicom_is_refused_by_name() {
    let e = dicom::decode(b"hello", "notes.txt").unwrap_err().to_string();
    assert!(e.contains("notes.txt") && e.contains("not a DICOM"), "{e}");
}
