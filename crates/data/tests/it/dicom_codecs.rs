//! Every file of fixtures/dicom-codecs (pydicom 3.0.2's own test files for the transfer syntaxes
//! hospital archives use, copied from the shared samples/dicom-codecs folder with its README)
//! decoded as pydicom decoded it.

use data::dicom;
use safetensors::SafeTensors;
use serde_json::Value;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dicom-codecs").join(name)
}

fn tensor_values(st: &SafeTensors, key: &str) -> (Vec<usize>, Vec<f64>) {
    let t = st.tensor(key).unwrap_or_else(|_| panic!("{key} missing"));
    let b = t.data();
    let v = match t.dtype() {
        safetensors::Dtype::I16 => b.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]]) as f64).collect(),
        safetensors::Dtype::U16 => b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]) as f64).collect(),
        safetensors::Dtype::U8 => b.iter().map(|&v| v as f64).collect(),
        safetensors::Dtype::I8 => b.iter().map(|&v| v as i8 as f64).collect(),
        safetensors::Dtype::F32 => {
            b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).collect()
        }
        d => panic!("{key}: unexpected dtype {d:?}"),
    };
    (t.shape().to_vec(), v)
}

/// The transfer syntaxes whose decoding may differ from pydicom's decoder by a level.
fn lossy(uid: &str) -> bool {
    matches!(uid, "1.2.840.10008.1.2.4.91" | "1.2.840.10008.1.2.4.81" | "1.2.840.10008.1.2.4.51")
}

#[test]
fn every_codec_file_decodes_as_pydicom_did() {
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("pydicom_reference.json")).unwrap()).unwrap();
    let bytes = std::fs::read(fixture("pydicom_reference.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut failures = Vec::new();
    for (file, tags) in reference.as_object().unwrap() {
        let name = file.trim_end_matches(".dcm");
        let uid = tags["TransferSyntaxUID"].as_str().unwrap();
        let px = match dicom::read_stored(&std::fs::read(fixture(file)).unwrap(), file) {
            Ok(px) => px,
            Err(e) => {
                failures.push(format!("{file}: {e:#}"));
                continue;
            }
        };
        let (shape, want) = tensor_values(&st, &format!("{name}.pixels"));
        let got: Vec<f64> = px.values.iter().map(|&v| v as f64).collect();
        if px.pixel_array_shape() != shape || got.len() != want.len() {
            failures.push(format!("{file}: shape {:?}, pydicom {shape:?}", px.pixel_array_shape()));
            continue;
        }
        let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        let allowed = if lossy(uid) { 1.0 } else { 0.0 };
        eprintln!("{file}: largest difference from pydicom {worst}");
        if worst > allowed {
            let n = got.iter().zip(&want).filter(|(a, b)| a != b).count();
            failures.push(format!("{file}: {n} values differ, by up to {worst} ({uid})"));
        }
        if let Ok(t) = st.tensor(&format!("{name}.modality_lut")) {
            let _ = t;
            let (_, want) = tensor_values(&st, &format!("{name}.modality_lut"));
            let got = px.modality_lut();
            let worst = got.iter().zip(&want).map(|(a, b)| (*a as f32 as f64 - b).abs()).fold(0.0, f64::max);
            if worst > allowed * px.tags.rescale_slope.abs() {
                failures.push(format!("{file}: modality LUT differs by up to {worst}"));
            }
        }
        let t = px.tags();
        let checks = [
            ("Modality", Value::from(t.modality.clone().unwrap_or_default())),
            ("PhotometricInterpretation", Value::from(t.photometric_interpretation.clone())),
            ("BitsStored", Value::from(t.bits_stored)),
            ("PixelRepresentation", Value::from(t.pixel_representation)),
            ("TransferSyntax", Value::from(t.transfer_syntax.clone())),
            ("TransferSyntaxUID", Value::from(t.transfer_syntax_uid.clone())),
            ("NumberOfFrames", Value::from(t.frames)),
            ("RescaleSlope", Value::from(t.rescale_slope)),
            ("RescaleIntercept", Value::from(t.rescale_intercept)),
        ];
        // pydicom's str() of the window: "None", "40", or "[40, 50]" for several.
        for (key, got) in [("WindowCenter", &t.window_center), ("WindowWidth", &t.window_width)] {
            let text = tags[key].as_str().unwrap();
            let want: Vec<f64> = if text == "None" {
                vec![]
            } else {
                text.trim_matches(['[', ']']).split(',').map(|v| v.trim().trim_matches('\'').parse().unwrap()).collect()
            };
            if *got != want {
                failures.push(format!("{file}: {key} {got:?}, pydicom {text}"));
            }
        }
        for (key, got) in checks {
            if tags[key] != got {
                failures.push(format!("{file}: {key} {got}, pydicom {}", tags[key]));
            }
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

/// HTJ2K (fixtures/dicom-htj2k, written by its make_htj2k.py with OpenJPH through imagecodecs):
/// lossless, so the decoded values are exactly the pixels encoded.
#[test]
fn htj2k_decodes_losslessly() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dicom-htj2k");
    let bytes = std::fs::read(dir.join("htj2k_reference.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    for name in ["MR_small_htj2k", "RGB_htj2k"] {
        let px = dicom::read_stored(&std::fs::read(dir.join(format!("{name}.dcm"))).unwrap(), name).unwrap();
        assert_eq!(px.tags.transfer_syntax_uid, "1.2.840.10008.1.2.4.201", "{name}");
        let (shape, want) = tensor_values(&st, &format!("{name}.pixels"));
        assert_eq!(px.pixel_array_shape(), shape, "{name}");
        let got: Vec<f64> = px.values.iter().map(|&v| v as f64).collect();
        assert!(got == want, "{name}: values differ from the pixels encoded");
    }
}
