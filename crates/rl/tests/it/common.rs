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

/// The Qwen2.5-VL oracle's tiny checkpoint (windowed vision tower, untokenizable vocab rows).
pub fn qwen25_model_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../vlm/tests/fixtures/qwen25vl-tiny/model")
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

/// Trains with `c` (SFT, or GRPO with Med-R1's rewards), stopping after update `stop_at`.
pub fn train_until(
    sft: bool,
    recs: &[Record],
    c: &TrainConfig,
    resume: bool,
    stop_at: usize,
) -> rl::save::TrainerState {
    let mut on = |m: &rl::metrics::StepMetrics| m.step < stop_at;
    let ck = Checkpoint::open(&c.model, DType::F32).unwrap();
    if sft {
        rl::trainer::train_sft(ck, recs, c, resume, &mut on).unwrap()
    } else {
        rl::trainer::train_grpo(ck, recs, c, &c.rewards(), resume, &mut on).unwrap()
    }
}

/// The stop/resume harness: a straight 4-update run into `a`, and into `b` a run "killed" after 2
/// updates then resumed to the end. Returns both final states.
pub fn straight_and_resumed(
    sft: bool,
    recs: &[Record],
    cfg: impl Fn(&Path) -> TrainConfig,
    a: &Path,
    b: &Path,
) -> (rl::save::TrainerState, rl::save::TrainerState) {
    let straight = train_until(sft, recs, &cfg(a), false, 99);
    assert_eq!(straight.step, 4);
    assert_eq!(train_until(sft, recs, &cfg(b), false, 2).step, 2);
    let resumed = train_until(sft, recs, &cfg(b), true, 99);
    (straight, resumed)
}

/// A JSON matrix (list of lists of numbers) as float32 rows.
pub fn matrix(v: &serde_json::Value) -> Vec<Vec<f32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect())
        .collect()
}

/// Rows as a [B, T] tensor.
pub fn tensor(m: &[Vec<f32>]) -> candle_core::Tensor {
    let (b, t) = (m.len(), m[0].len());
    candle_core::Tensor::from_vec(m.concat(), (b, t), &candle_core::Device::Cpu).unwrap()
}
