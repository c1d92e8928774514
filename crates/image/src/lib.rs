//! The bottom layer of medr1's pixels: bytes in, the 8-bit RGB image transformers' processor
//! starts from out, and PIL's resampler. Everything here is checked against Pillow byte for byte
//! (see `medr1-vlm`'s image-processing tests); nothing here knows about tensors or the model.

pub mod error;
pub mod jpeg;
pub mod jpeg_extended;
pub mod limits;
pub mod resample;
pub mod rgb;

pub use error::{ImageError, Result};
pub use limits::{check_pixels, max_pixels, set_max_pixels, DEFAULT_MAX_PIXELS};
pub use rgb::RgbImage;
