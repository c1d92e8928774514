//! Qwen2-VL for medr1: everything needed to run the model that Med-R1 trains — config (both
//! `config.json` layouts), weights (both tensor-name layouts), the vision tower, the M-RoPE decoder,
//! the image processor, chat-template prompting, batched generation with a KV cache, and the one
//! log-probability function used by rollouts, training and scoring.
//!
//! float32 is the reference precision (checked against Hugging Face transformers in
//! `tests/parity.rs`); bfloat16 is an option. Every op on a path that carries gradients uses a
//! differentiable implementation (see [`ops`]).

pub mod checkpoint;
pub mod config;
pub mod dump;
pub mod embedding;
pub mod error;
pub mod generate;
pub mod generator;
pub mod image_processor;
pub mod json;
pub mod kernels;
pub mod linear;
pub mod loading;
pub mod logprob;
pub mod lora;
pub mod model;
pub mod ops;
pub mod params;
pub mod precision;
pub mod prompt;
pub mod quantized;
pub mod recompute;
pub mod rope;
pub mod sampling;
pub mod shapes;
pub mod text;
pub mod vision;
pub mod vision_windows;
pub mod weights;

pub use checkpoint::Checkpoint;
pub use config::{GenerationConfig, PreprocessorConfig, Qwen2VlConfig};
pub use error::{Result, VlmError};
pub use model::{Batch, Qwen2Vl};
