//! medr1's own sequential-DCT JPEG decoder (12-bit JPEG Extended in DICOM): any bytes must give
//! samples of the declared size or an error, never a crash, a hang or an allocation the header
//! did not justify.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    if let Ok((w, h, c, samples)) = imaging::jpeg_extended::decode(input, "fuzz input") {
        assert_eq!(samples.len(), w * h * c);
    }
});
