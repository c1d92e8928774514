//! Raster images (PNG, JPEG, BMP, TIFF, GIF, WebP) as `ask`, `eval` and the server decode them:
//! any bytes must give an image within the pixel limit or an error, never a crash or a hang.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "caught_panics.rs"]
mod caught_panics;
use caught_panics::keep_caught_panics;

fuzz_target!(|input: &[u8]| {
    // A small limit keeps each input cheap; the check comes from the header, before decoding.
    keep_caught_panics();
    imaging::set_max_pixels(1 << 20);
    if let Ok(img) = data::image::decode(input, "fuzz input") {
        assert_eq!(img.data.len(), img.width * img.height * 3);
        assert!((img.width * img.height) as u64 <= 1 << 20);
    }
});
