//! A process-wide hook around model loading, so the binary can run its allocator differently
//! while weights are built: `medr1` keeps freed memory mapped for reuse while it computes (fresh
//! pages fault on first touch), but while a model is built, the freed originals of transposed,
//! fused or quantized weights would then stay resident (measured at Qwen2.5-VL-3B's shape in
//! float32: peak 18.6 GB for 15.0 GB of weights; returned to the system while loading: 15.4 GB).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

static HOOK: OnceLock<fn(bool)> = OnceLock::new();
static DEPTH: AtomicUsize = AtomicUsize::new(0);

/// Sets the hook, called with `true` when the first model build starts and `false` when the last
/// one ends. Only the first call takes effect.
pub fn set_hook(f: fn(bool)) {
    let _ = HOOK.set(f);
}

/// Marks a model build for as long as it lives (builds may nest).
pub struct LoadingGuard(());

impl LoadingGuard {
    pub fn begin() -> Self {
        if DEPTH.fetch_add(1, Ordering::SeqCst) == 0 {
            if let Some(f) = HOOK.get() {
                f(true);
            }
        }
        LoadingGuard(())
    }
}

impl Drop for LoadingGuard {
    fn drop(&mut self) {
        if DEPTH.fetch_sub(1, Ordering::SeqCst) == 1 {
            if let Some(f) = HOOK.get() {
                f(false);
            }
        }
    }
}
