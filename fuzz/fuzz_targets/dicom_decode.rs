//! DICOM files (a 128-byte preamble and `DICM` are prepended when missing, so the fuzzer reaches
//! the data set parser and the pixel pipeline): an image or an error, never a crash.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "caught_panics.rs"]
mod caught_panics;
use caught_panics::keep_caught_panics;

fuzz_target!(|input: &[u8]| {
    keep_caught_panics();
    imaging::set_max_pixels(1 << 20);
    let bytes: Vec<u8> = if data::dicom::is_dicom(input) {
        input.to_vec()
    } else {
        let mut b = vec![0u8; 128];
        b.extend_from_slice(b"DICM");
        b.extend_from_slice(input);
        b
    };
    if let Ok(img) = data::dicom::decode(&bytes, "fuzz input") {
        assert_eq!(img.data.len(), img.width * img.height * 3);
    }
});
