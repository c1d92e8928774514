//! Shared by the decoder targets (included with `#[path]`: the targets are separate binaries).

/// medr1 turns a decoder's panic into an error (`catch_unwind`); libfuzzer-sys's panic hook would
/// abort on it first, so the default hook comes back. A panic medr1 does not catch still unwinds
/// into libfuzzer-sys, which reports it as a crash.
pub fn keep_caught_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::panic::set_hook(Box::new(|_| {})));
}
