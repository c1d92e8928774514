//! The integration tests of this crate, gathered into one test binary (one link instead of one per file).

mod common;
mod convert_rgb;
mod generation;
mod gradients;
mod loading;
mod parity;
mod pillow_order;
mod tokenizer;
