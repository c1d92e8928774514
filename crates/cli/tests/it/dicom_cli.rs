//! `medr1 data dicom` (its JSON, PNG and safetensors contracts), `ask` on a series folder with
//! `--slices`, and privacy: identifying attributes never reach any output.

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use safetensors::SafeTensors;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn codecs(name: &str) -> PathBuf {
    repo().join("crates/data/tests/fixtures/dicom-codecs").join(name)
}

fn medr1(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_medr1")).args(args).output().unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `--safetensors` writes `stored` and `modality_lut` exactly as pydicom's reference holds them
/// (lossless files), with pydicom's shapes and integer types.
#[test]
fn data_dicom_safetensors_and_json_match_pydicom() {
    let dir = tempfile::tempdir().unwrap();
    let reference = std::fs::read(codecs("pydicom_reference.safetensors")).unwrap();
    let reference = SafeTensors::deserialize(&reference).unwrap();
    for name in ["MR_small_jp2klossless", "examples_jpeg2k", "SC_ybr_full_422_uncompressed", "MR_small_bigendian"] {
        let out = dir.path().join(format!("{name}.safetensors"));
        let json =
            ok(&medr1(&["data", "dicom", s(&codecs(&format!("{name}.dcm"))), "--json", "--safetensors", s(&out)]));
        let bytes = std::fs::read(&out).unwrap();
        let ours = SafeTensors::deserialize(&bytes).unwrap();
        let (got, want) = (ours.tensor("stored").unwrap(), reference.tensor(&format!("{name}.pixels")).unwrap());
        assert_eq!((got.dtype(), got.shape()), (want.dtype(), want.shape()), "{name}");
        assert!(got.data() == want.data(), "{name}: stored values differ");
        match reference.tensor(&format!("{name}.modality_lut")) {
            Ok(want) => assert!(ours.tensor("modality_lut").unwrap().data() == want.data(), "{name}: modality LUT"),
            Err(_) => assert!(ours.tensor("modality_lut").is_err(), "{name}: colour files have no modality_lut"),
        }
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let shape: Vec<usize> = serde_json::from_value(v["pixel_array_shape"].clone()).unwrap();
        assert_eq!(shape, want.shape(), "{name}");
        assert!(v["tags"]["transfer_syntax_uid"].as_str().unwrap().starts_with("1.2.840.10008.1.2"), "{json}");
    }
}

/// `--png` is the image the model sees: the same pixels `ask` feeds it, through the window asked.
#[test]
fn data_dicom_png_is_the_model_image() {
    let dir = tempfile::tempdir().unwrap();
    let file = codecs("693_J2KI.dcm");
    for window in ["lung", "bone", "40,400"] {
        let png = dir.path().join(format!("{window}.png"));
        ok(&medr1(&["data", "dicom", s(&file), "--window", window, "--png", s(&png)]));
        let opts = data::image::ImageOptions {
            window: Some(data::dicom::Window::parse(window).unwrap()),
            ..Default::default()
        };
        let want = data::image::open_with(&file, &opts).unwrap().remove(0);
        let got = image::open(&png).unwrap().to_rgb8();
        assert_eq!((got.width() as usize, got.height() as usize), (want.width, want.height));
        assert!(got.into_raw() == want.data, "{window}");
    }
    let out = medr1(&["data", "dicom", s(&file), "--window", "lungs"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lungs") && err.contains("mediastinum"), "{err}");
}

fn with_patient(src: &Path, uid: &str, z: f64) -> Vec<u8> {
    let mut obj = dicom_object::open_file(src).unwrap();
    for (tag, vr, v) in [
        (tags::PATIENT_NAME, VR::PN, "DOE^JANE"),
        (tags::PATIENT_ID, VR::LO, "MRN7734521"),
        (tags::PATIENT_BIRTH_DATE, VR::DA, "19610417"),
        (tags::INSTITUTION_NAME, VR::LO, "SAINT ELSEWHERE"),
        (tags::ACCESSION_NUMBER, VR::SH, "ACC99812"),
        (tags::SERIES_INSTANCE_UID, VR::UI, uid),
        (tags::IMAGE_ORIENTATION_PATIENT, VR::DS, "1\\0\\0\\0\\1\\0"),
    ] {
        obj.put(DataElement::new(tag, vr, PrimitiveValue::from(v)));
    }
    obj.put(DataElement::new(tags::IMAGE_POSITION_PATIENT, VR::DS, PrimitiveValue::from(format!("0\\0\\{z}"))));
    let mut out = Vec::new();
    obj.write_all(&mut out).unwrap();
    out
}

/// A series of 5 slices carrying a patient's name, ID, birth date, institution and accession
/// number: `ask --slices 3` gives the model 3 images; no output of `data dicom`, `ask` or their
/// errors (a truncated slice, a mixed folder) holds any of those values.
#[test]
fn series_slices_and_privacy() {
    let dir = tempfile::tempdir().unwrap();
    let series = dir.path().join("series");
    std::fs::create_dir(&series).unwrap();
    let src = repo().join("crates/data/tests/fixtures/dicom/MR_small.dcm");
    for k in [3, 0, 4, 1, 2] {
        std::fs::write(series.join(format!("slice{k}.dcm")), with_patient(&src, "1.2.3", k as f64)).unwrap();
    }
    let m = repo().join("crates/vlm/tests/fixtures/qwen2vl-tiny/model");
    let ask = |image: &Path, extra: &[&str]| {
        let mut args = vec!["ask", "--model", s(&m), "--image", s(image), "--question", "Which organ?"];
        args.extend_from_slice(&["--max-new-tokens", "2", "--json"]);
        args.extend_from_slice(extra);
        medr1(&args)
    };
    let one: serde_json::Value = serde_json::from_str(&ok(&ask(&series, &[]))).unwrap();
    let three: serde_json::Value = serde_json::from_str(&ok(&ask(&series, &["--slices", "3"]))).unwrap();
    assert_eq!((one["images"].as_u64(), three["images"].as_u64()), (Some(1), Some(3)));
    assert!(three["prompt_tokens"].as_u64().unwrap() > one["prompt_tokens"].as_u64().unwrap());

    let mut outputs = vec![
        ask(&series, &["--slice", "4", "--window", "brain"]),
        medr1(&["data", "dicom", s(&series)]),
        medr1(&["data", "dicom", s(&series), "--json"]),
        medr1(&["data", "dicom", s(&series.join("slice2.dcm")), "--json"]),
    ];
    let listing = String::from_utf8_lossy(&outputs[1].stdout).into_owned();
    assert!(
        listing.contains("5 slices ordered by ImagePositionPatient") && listing.contains("slice2.dcm"),
        "{listing}"
    );
    // Errors: a truncated slice, then a second series in the folder.
    let whole = std::fs::read(series.join("slice2.dcm")).unwrap();
    let broken = dir.path().join("broken.dcm");
    std::fs::write(&broken, &whole[..whole.len() - 3000]).unwrap();
    outputs.push(medr1(&["data", "dicom", s(&broken)]));
    outputs.push(ask(&broken, &[]));
    std::fs::write(series.join("other.dcm"), with_patient(&src, "4.5.6", 9.0)).unwrap();
    outputs.push(medr1(&["data", "dicom", s(&series)]));
    outputs.push(ask(&series, &[]));
    for (k, out) in outputs.iter().enumerate() {
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        for secret in ["DOE", "JANE", "MRN7734521", "19610417", "1961", "SAINT", "ELSEWHERE", "ACC99812"] {
            assert!(!text.contains(secret), "output {k} shows {secret}:\n{text}");
        }
        assert!(!text.is_empty(), "output {k} is empty");
    }
    assert!(!outputs[4].status.success() && !outputs[6].status.success());
    let mixed = String::from_utf8_lossy(&outputs[6].stderr);
    assert!(mixed.contains("1.2.3 (5 files)") && mixed.contains("4.5.6 (1 files)"), "{mixed}");
}
