//! The server's chat-completions request checker on any JSON body (images as data URLs included):
//! a request or an OpenAI-style error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    imaging::set_max_pixels(1 << 20);
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let limits = serve::images::ImageLimits { max_bytes: 1 << 20, max_pixels: 1 << 20, allow_local_files: None };
    let _ = serve::request::parse(&body, &limits);
});
