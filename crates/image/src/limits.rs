//! The largest image medr1 decodes, checked from the file's header before any pixel is
//! decompressed: a 389 KB PNG can declare 20000 x 20000 pixels (1.6 GB decoded). One limit for
//! every path an image enters by (`ask`, `eval`, `train`, `data`, the server), set once from the
//! command line's `--max-image-pixels`.

use crate::error::{ImageError, Result};
use std::sync::atomic::{AtomicU64, Ordering};

/// 4096 x 4096, the server's default too.
pub const DEFAULT_MAX_PIXELS: u64 = 4096 * 4096;

static MAX_PIXELS: AtomicU64 = AtomicU64::new(DEFAULT_MAX_PIXELS);

/// Sets the process-wide limit (the command line does this once, before any image is read).
pub fn set_max_pixels(n: u64) {
    MAX_PIXELS.store(n.max(1), Ordering::Relaxed);
}

pub fn max_pixels() -> u64 {
    MAX_PIXELS.load(Ordering::Relaxed)
}

/// An error naming `what` when `width x height` (x `frames`) exceeds the limit.
pub fn check_pixels(width: u64, height: u64, frames: u64, what: &str) -> Result<()> {
    let n = width.saturating_mul(height).saturating_mul(frames.max(1));
    let limit = max_pixels();
    if n > limit {
        return Err(ImageError::input(format!(
            "{what}: the image is {width}x{height}{} = {n} pixels, more than the limit of {limit} \
             (--max-image-pixels); refused before decoding",
            if frames > 1 { format!(" x {frames} frames") } else { String::new() }
        )));
    }
    Ok(())
}
