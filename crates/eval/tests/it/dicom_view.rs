//! A record's DICOM image through `eval --window / --frame` (ImagePrep): what the model is shown.

use data::dicom::Window;
use data::image::ImageOptions;
use eval::prompt::{record_image, ImagePrep};
use std::path::PathBuf;

fn record(file: &str) -> data::Record {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/tests/fixtures/dicom").join(file);
    data::Record {
        id: "r0".into(),
        dataset: "fixtures".into(),
        modality: Some(data::Modality::Ct),
        question_type: None,
        question: "Which organ?".into(),
        options: vec!["Brain".into(), "Liver".into()],
        answer: 0,
        image: file.into(),
        image_path: path,
    }
}

#[test]
fn window_and_frame_reach_the_model_image() {
    let ct = record("CT_small.dcm");
    let lung = ImagePrep {
        resize: None,
        view: ImageOptions { window: Some(Window::parse("lung").unwrap()), ..Default::default() },
    };
    let shown = record_image(&ct, lung).unwrap();
    let want = data::image::open_with(&ct.image_path, &lung.view).unwrap().remove(0);
    assert_eq!(shown, want);
    assert_ne!(shown, record_image(&ct, ImagePrep::default()).unwrap(), "the file's own window differs from lung");
    // Resized after windowing.
    let small = record_image(&ct, ImagePrep { resize: Some((32, 32)), ..lung }).unwrap();
    assert_eq!((small.width, small.height), (32, 32));
    // A frame of a multi-frame file; slices are not taken (one image per record).
    let mr = record("emri_small.dcm");
    let f2 = ImagePrep {
        view: ImageOptions { frame: Some(2), slices: Some(3), ..Default::default() },
        ..Default::default()
    };
    let px = data::dicom::read_stored(&std::fs::read(&mr.image_path).unwrap(), "emri").unwrap();
    assert_eq!(record_image(&mr, f2).unwrap(), data::dicom::render(&px, Some(2), "emri").unwrap());
}
