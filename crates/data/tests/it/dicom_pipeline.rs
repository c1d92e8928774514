//! The display pipeline on files edited by the tests: Modality and VOI LUT Sequences, Presentation
//! LUT Shape INVERSE, segmented palettes, the CT window presets, and series folders.

use data::dicom::{self, lut::expand_segmented, render, render_view, View, Voi, Window};
use data::image::{open_with, ImageOptions};
use dicom_core::value::DataSetSequence;
use dicom_core::{dicom_value, DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, InMemDicomObject};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dicom").join(name)
}

/// A fixture with the test's edits, as file bytes.
fn edited(name: &str, edit: impl FnOnce(&mut DefaultDicomObject)) -> Vec<u8> {
    let mut obj = dicom_object::open_file(fixture(name)).unwrap();
    edit(&mut obj);
    let mut out = Vec::new();
    obj.write_all(&mut out).unwrap();
    out
}

fn lut_item(descriptor: [u16; 3], data: &[u16]) -> InMemDicomObject {
    InMemDicomObject::from_element_iter([
        DataElement::new(
            tags::LUT_DESCRIPTOR,
            VR::US,
            dicom_value!(U16, [descriptor[0], descriptor[1], descriptor[2]]),
        ),
        DataElement::new(tags::LUT_DATA, VR::US, PrimitiveValue::U16(data.iter().copied().collect())),
    ])
}

fn sequence(items: Vec<InMemDicomObject>) -> DataSetSequence<InMemDicomObject> {
    DataSetSequence::from(items)
}

#[test]
fn modality_lut_sequence_replaces_rescale() {
    let bytes = edited("CT_small.dcm", |o| {
        // CT_small's stored values span 128..=2191: 2048 entries from 128, entry i = 3 i, so the
        // values above 2175 take the last entry.
        let data: Vec<u16> = (0..2048).map(|i| 3 * i).collect();
        o.put(DataElement::new(tags::MODALITY_LUT_SEQUENCE, VR::SQ, sequence(vec![lut_item([2048, 128, 16], &data)])));
    });
    let px = dicom::read_stored(&bytes, "lut.dcm").unwrap();
    assert_eq!(px.tags.modality_lut_sequence, 1);
    let want: Vec<f64> = px.values.iter().map(|&v| 3.0 * (v - 128).clamp(0, 2047) as f64).collect();
    assert_eq!(px.modality_lut(), want);
    assert!(px.values.iter().any(|&v| v > 2175) && px.values.iter().any(|&v| v < 1000));
    // The plain file: rescale (intercept -1024).
    let plain = dicom::read_stored(&std::fs::read(fixture("CT_small.dcm")).unwrap(), "ct").unwrap();
    assert_eq!(plain.modality_lut()[0], plain.values[0] as f64 - 1024.0);
}

#[test]
fn voi_lut_sequence_and_its_precedence() {
    // A 16-bit table over MR_small's values (127..=2145, no rescale): entry i = 32 i for
    // i < 2000, so the values above 1999 take the last entry.
    let table = |o: &mut DefaultDicomObject| {
        let data: Vec<u16> = (0..2000).map(|i| 32 * i).collect();
        o.put(DataElement::new(tags::VOILUT_SEQUENCE, VR::SQ, sequence(vec![lut_item([2000, 0, 16], &data)])));
    };
    let only_lut = edited("MR_small.dcm", |o| {
        table(o);
        o.remove_element(tags::WINDOW_CENTER);
        o.remove_element(tags::WINDOW_WIDTH);
    });
    let px = dicom::read_stored(&only_lut, "voi.dcm").unwrap();
    assert!(matches!(px.voi, Voi::Table(_)));
    let img = render(&px, None, "voi").unwrap();
    for (i, &v) in px.values.iter().enumerate() {
        let want = ((32 * v.clamp(0, 1999)) as f64 / 65535.0 * 255.0).round() as u8;
        assert_eq!(img.data[3 * i], want, "pixel {i} (stored {v})");
    }
    // With the file's window as well, the window is shown.
    let both = dicom::read_stored(&edited("MR_small.dcm", table), "both.dcm").unwrap();
    assert_eq!(both.voi, Voi::Window(Window::linear(600.0, 1600.0)));
    assert_eq!(both.tags.voi_lut_sequence, 1);
}

#[test]
fn presentation_lut_shape_inverse_inverts() {
    let plain = dicom::read_stored(&std::fs::read(fixture("MR_small.dcm")).unwrap(), "mr").unwrap();
    let inverse = edited("MR_small.dcm", |o| {
        o.put(DataElement::new(tags::PRESENTATION_LUT_SHAPE, VR::CS, PrimitiveValue::from("INVERSE")));
    });
    let inv = dicom::read_stored(&inverse, "inv.dcm").unwrap();
    assert!(inv.presentation_inverse);
    let (a, b) = (render(&plain, None, "a").unwrap(), render(&inv, None, "b").unwrap());
    assert!(a.data.iter().zip(&b.data).all(|(x, y)| *x == 255 - *y));
}

#[test]
fn segmented_palette_colour() {
    // 4096-entry 16-bit palettes over MR_small's values (127..=2145): red ramps 0 -> 65535 (one
    // discrete 0, then linear over 4095), green is constant, blue ramps down.
    let red = [0u16, 1, 0, 1, 4095, 65535];
    let green = [0u16, 1, 32768, 1, 4095, 32768];
    let blue = [0u16, 1, 65535, 1, 4095, 0];
    let bytes = edited("MR_small.dcm", |o| {
        o.put(DataElement::new(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, PrimitiveValue::from("PALETTE COLOR")));
        o.put(DataElement::new(tags::PIXEL_REPRESENTATION, VR::US, dicom_value!(U16, [0])));
        for (desc, data, segs) in [
            (
                tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
                tags::SEGMENTED_RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
                &red,
            ),
            (
                tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
                tags::SEGMENTED_GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
                &green,
            ),
            (
                tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
                tags::SEGMENTED_BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
                &blue,
            ),
        ] {
            o.put(DataElement::new(desc, VR::US, dicom_value!(U16, [4096, 0, 16])));
            o.put(DataElement::new(data, VR::OW, PrimitiveValue::U16(segs.iter().copied().collect())));
        }
    });
    let px = dicom::read_stored(&bytes, "palette.dcm").unwrap();
    assert_eq!(px.tags.palette.as_deref(), Some("segmented"));
    let img = render(&px, None, "palette").unwrap();
    let (r, g, b) = (
        expand_segmented(&red, 4096).unwrap(),
        expand_segmented(&green, 4096).unwrap(),
        expand_segmented(&blue, 4096).unwrap(),
    );
    assert_eq!((r.len(), r[4095], g[100], b[0], b[4095]), (4096, 65535, 32768, 65535, 0));
    for (i, &v) in px.values.iter().enumerate() {
        let k = v.clamp(0, 4095) as usize;
        assert_eq!(
            &img.data[3 * i..3 * i + 3],
            &[(r[k] >> 8) as u8, (g[k] >> 8) as u8, (b[k] >> 8) as u8],
            "pixel {i}"
        );
    }
}

#[test]
fn ct_at_lung_and_bone_windows() {
    let ct = dicom::read_stored(&std::fs::read(fixture("CT_small.dcm")).unwrap(), "ct").unwrap();
    let hu = ct.modality_lut();
    let show =
        |w: &str| render_view(&ct, &View { window: Some(Window::parse(w).unwrap()), frame: None }, "ct").unwrap();
    let (lung, bone) = (show("lung"), show("bone"));
    assert_eq!(
        lung.data.iter().step_by(3).copied().collect::<Vec<_>>(),
        dicom::voi_lut(&hu, Some(Window::linear(-600.0, 1500.0)))
    );
    assert_eq!(
        bone.data.iter().step_by(3).copied().collect::<Vec<_>>(),
        dicom::voi_lut(&hu, Some(Window::linear(400.0, 1800.0)))
    );
    // Hand-worked: -1000 HU (air) is (−1000 − (−600.5)) / 1499 + 0.5 = 0.2335 -> 60 in the lung
    // window and 0 in the bone window (below 400 − 0.5 − 899.5 = −500).
    assert_eq!(dicom::voi_lut(&[-1000.0], Some(Window::linear(-600.0, 1500.0))), vec![60]);
    assert_eq!(dicom::voi_lut(&[-1000.0], Some(Window::linear(400.0, 1800.0))), vec![0]);
    assert_ne!(lung, bone);
    // The file's own window is what shows without --window.
    assert_eq!(
        render(&ct, None, "ct").unwrap(),
        render_view(&ct, &View { window: ct.window, frame: None }, "ct").unwrap()
    );
}

/// Writes `n` slices of one series into `dir`: slice k (in anatomical order) has every stored value
/// k * 100, position z = 2.5 k along the normal of orientation [1,0,0, 0,1,0]; file names and
/// instance numbers are shuffled.
fn write_series(dir: &Path, n: usize, positions: bool) -> Vec<PathBuf> {
    let shuffle = [3usize, 0, 4, 1, 2, 6, 5];
    let mut names = Vec::new();
    for (k, file) in shuffle.iter().take(n).enumerate() {
        let name = dir.join(format!("IM{file:04}"));
        let bytes = edited("MR_small.dcm", |o| {
            o.put(DataElement::new(tags::SERIES_INSTANCE_UID, VR::UI, PrimitiveValue::from("1.2.3.4")));
            o.put(DataElement::new(
                tags::INSTANCE_NUMBER,
                VR::IS,
                PrimitiveValue::from(format!("{}", if positions { 10 - k } else { k + 1 })),
            ));
            if positions {
                o.put(DataElement::new(
                    tags::IMAGE_ORIENTATION_PATIENT,
                    VR::DS,
                    PrimitiveValue::from("1\\0\\0\\0\\1\\0"),
                ));
                o.put(DataElement::new(
                    tags::IMAGE_POSITION_PATIENT,
                    VR::DS,
                    PrimitiveValue::from(format!("0\\0\\{}", 2.5 * k as f64)),
                ));
            } else {
                o.remove_element(tags::IMAGE_ORIENTATION_PATIENT);
                o.remove_element(tags::IMAGE_POSITION_PATIENT);
            }
            o.put(DataElement::new(
                tags::PIXEL_DATA,
                VR::OW,
                PrimitiveValue::U16(vec![(k * 100) as u16; 64 * 64].into()),
            ));
        });
        std::fs::write(&name, bytes).unwrap();
        names.push(name);
    }
    names
}

#[test]
fn series_folders_are_ordered_along_the_slice_normal() {
    let dir = tempfile::tempdir().unwrap();
    let written = write_series(dir.path(), 5, true);
    std::fs::write(dir.path().join("notes.txt"), "not dicom").unwrap();
    let s = dicom::read_series(dir.path()).unwrap();
    assert_eq!(s.ordered_by, "ImagePositionPatient");
    assert_eq!(s.slices, written, "anatomical order, not file names or instance numbers");
    assert_eq!(s.skipped.len(), 1);
    // --slices 3: the first, middle and last slices, through a window that tells them apart.
    let opts = ImageOptions { window: Some(Window::linear(200.0, 401.0)), frame: None, slices: Some(3) };
    let imgs = open_with(dir.path(), &opts).unwrap();
    let levels: Vec<u8> = imgs.iter().map(|i| i.data[0]).collect();
    let want: Vec<u8> = [0.0, 200.0, 400.0].iter().map(|&v| dicom::voi_lut(&[v], opts.window)[0]).collect();
    assert_eq!((imgs.len(), levels), (3, want));
    // --slice 1 and the default (the middle).
    let one = open_with(dir.path(), &ImageOptions { frame: Some(1), ..opts }).unwrap_err();
    assert!(one.to_string().contains("not both"), "{one}");
    let mid = open_with(dir.path(), &ImageOptions { window: opts.window, ..Default::default() }).unwrap();
    assert_eq!(mid[0].data[0], dicom::voi_lut(&[200.0], opts.window)[0]);
    let e = open_with(dir.path(), &ImageOptions { slices: Some(6), ..Default::default() }).unwrap_err();
    assert!(e.to_string().contains("6 slices asked for, there are 5"), "{e}");
}

#[test]
fn series_without_positions_use_instance_numbers_and_mixed_series_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let written = write_series(dir.path(), 4, false);
    let s = dicom::read_series(dir.path()).unwrap();
    assert_eq!((s.ordered_by, &s.slices), ("InstanceNumber", &written));
    let other = edited("MR_small.dcm", |o| {
        o.put(DataElement::new(tags::SERIES_INSTANCE_UID, VR::UI, PrimitiveValue::from("9.8.7")));
    });
    std::fs::write(dir.path().join("other.dcm"), other).unwrap();
    let e = dicom::read_series(dir.path()).unwrap_err().to_string();
    assert!(e.contains("1.2.3.4 (4 files)") && e.contains("9.8.7 (1 files)") && e.contains("2 series"), "{e}");
    let empty = tempfile::tempdir().unwrap();
    assert!(dicom::read_series(empty.path()).unwrap_err().to_string().contains("no DICOM files"));
}

#[test]
fn multi_frame_files_take_frame_and_slices() {
    let path = fixture("emri_small.dcm");
    let all = dicom::read_stored(&std::fs::read(&path).unwrap(), "emri").unwrap();
    let three = open_with(&path, &ImageOptions { slices: Some(3), ..Default::default() }).unwrap();
    let want: Vec<_> = [0, 5, 9].iter().map(|&f| render(&all, Some(f), "emri").unwrap()).collect();
    assert_eq!(three, want);
    assert_eq!(
        open_with(&path, &ImageOptions { frame: Some(2), ..Default::default() }).unwrap(),
        vec![render(&all, Some(2), "emri").unwrap()]
    );
    let e = open_with(&path, &ImageOptions { frame: Some(10), ..Default::default() }).unwrap_err().to_string();
    assert!(e.contains("frame 10") && e.contains("emri_small.dcm"), "{e}");
}

/// What medr1 cannot decode (here JPEG XL and MPEG-2, which need codecs not built in) fails with
/// the file and the transfer syntax named.
#[test]
fn unsupported_transfer_syntaxes_are_named() {
    for (uid, name) in [("1.2.840.10008.1.2.4.110", "JPEG XL"), ("1.2.840.10008.1.2.4.100", "MPEG2")] {
        let bytes = edited("MR_small.dcm", |o| {
            o.meta_mut().transfer_syntax = format!("{uid}\0");
        });
        let e = format!("{:#}", dicom::read_stored(&bytes, "xl.dcm").unwrap_err());
        assert!(e.contains("xl.dcm") && e.contains(uid) && e.contains(name), "{e}");
    }
}
