//! Shared by the training tests: the bundled tiny checkpoint, a small phantom set, and small
//! training settings.

#![allow(dead_code)]

use candle_core::DType;
use data::phantoms::{self, PhantomConfig};
use data::prompts::PromptVariant;
use data::Record;
use rl::config::TrainConfig;
use std::path::{Path, PathBuf};
use vlm::Checkpoint;

pub fn model_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../vlm/tests/fixtures/qwen2vl-tiny/model")
}

pub fn ck() -> Checkpoint {
    Checkpoint::open(&model_dir(), DType::F32).unwrap()
}

/// 40 phantom questions at 56 px.
pub fn records(dir: &Path) -> Vec<Record> {
    phantoms::generate(dir, &PhantomConfig { per_cell: 1, size: 56, seed: 4, fixed_options: false }, &|_, _| {})
        .unwrap()
}

/// 4 updates of 2 prompts x G = 2, No-Think, short completions, KL on.
pub fn small(out: &Path) -> TrainConfig {
    TrainConfig {
        model: model_dir(),
        out: out.to_path_buf(),
        prompt: PromptVariant::NoThink,
        num_generations: 2,
        max_completion_length: 5,
        beta: 0.04,
        prompts_per_step: 2,
        max_steps: 4,
        max_pixels: 12544,
        sample_every: 0,
        ..TrainConfig::default()
    }
}

/// Every tensor of a safetensors file as (name, flat values), sorted by name: for comparing
/// saved weights bit for bit.
pub fn saved_tensors(file: &Path) -> Vec<(String, Vec<f32>)> {
    let mut w: Vec<(String, Vec<f32>)> = candle_core::safetensors::load(file, &candle_core::Device::Cpu)
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k, v.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect();
    w.sort_by(|a, b| a.0.cmp(&b.0));
    w
}
