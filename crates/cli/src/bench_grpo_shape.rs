//! `medr1 bench-grpo --shape 2b`: one GRPO step at Qwen2-VL-2B's shape with random weights —
//! one prompt (a 392x392 image = 196 visual tokens, plus 60 text tokens), G completions of a few
//! tokens — for peak memory and time. Full fine-tuning does not fit in 24 GiB at this shape
//! (weights + gradients + AdamW moments in float32 are about 35 GB); LoRA with a bfloat16 frozen
//! base is what this measures.

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rl::advantages::{advantages, ScaleRewards};
use rl::grpo::{update, UpdateConfig};
use rl::lora::LoraSettings;
use rl::loss::{LossConfig, LossType};
use rl::optim::{AdamW, AdamWConfig};
use rl::policy::Policy;
use rl::rollout::{append_completions, Rollout};
use serde_json::{json, Value};
use std::time::Instant;
use vlm::generate::{generate, GenerateOptions, Sampling};
use vlm::image_processor::{ImageProcessor, RgbImage};
use vlm::model::Batch;
use vlm::params::RandomParams;
use vlm::{PreprocessorConfig, Qwen2Vl};

/// Peak resident memory of this process so far (VmHWM), in GiB.
pub fn peak_rss_gib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / (1024.0 * 1024.0))
}

pub struct ShapeBench {
    pub shape: vlm::shapes::Shape,
    pub lora: Option<LoraSettings>,
    pub num_generations: usize,
    pub completion_length: usize,
    pub beta: f64,
    /// Completions per forward/backward pass (0 = all).
    pub micro_batch_size: usize,
    /// Recompute layers in the backward pass.
    pub gradient_checkpointing: bool,
}

pub fn run(b: &ShapeBench) -> Result<Value> {
    let cfg = b.shape.config()?;
    let bf16 = b.lora.as_ref().is_some_and(|l| l.base_bf16);
    let t0 = Instant::now();
    let start =
        Qwen2Vl::load(&cfg, &RandomParams::new(if bf16 { DType::BF16 } else { DType::F32 }, Device::Cpu, 0.02, 0))?;
    let mut policy = match &b.lora {
        Some(l) => Policy::new_lora(&start, l, 0)?,
        None => Policy::new(&start, false)?,
    };
    if b.gradient_checkpointing {
        policy.enable_recompute();
    }
    let reference = match (b.beta != 0.0, b.lora.is_some()) {
        (false, _) => None,
        (true, true) => Some(policy.base_model()?),
        (true, false) => Some(start),
    };
    let trainable: usize = policy.vars.iter().map(|(_, v)| v.elem_count()).sum();
    let build_s = t0.elapsed().as_secs_f64();
    let mem_built = peak_rss_gib();

    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let img = RgbImage { width: 384, height: 384, data: (0..384 * 384 * 3).map(|_| rng.random::<u8>()).collect() };
    let pi = ImageProcessor::new(PreprocessorConfig { min_pixels: 3136, max_pixels: 401408, ..Default::default() })
        .process(&img)?;
    let n_img = pi.n_tokens(2);
    let vocab_text = (cfg.text.vocab_size as u32).min(150000).min(cfg.vision_start_token_id);
    let mut ids: Vec<u32> = (0..10).map(|_| rng.random_range(0..vocab_text)).collect();
    ids.push(cfg.vision_start_token_id);
    ids.extend(std::iter::repeat_n(cfg.image_token_id, n_img));
    ids.push(cfg.vision_end_token_id);
    ids.extend((0..50).map(|_| rng.random_range(0..vocab_text)));
    let g = b.num_generations;
    let n_patches = pi.grid_thw.iter().product::<usize>();
    let px: Vec<f32> = (0..g).flat_map(|_| pi.patches.iter().copied()).collect();
    let prompt = Batch {
        input_ids: vec![ids.clone(); g],
        attention_mask: vec![vec![1; ids.len()]; g],
        pixel_values: Some(Tensor::from_vec(px, (g * n_patches, cfg.vision.patch_dim()), &Device::Cpu)?),
        image_grid_thw: vec![pi.grid_thw; g],
    };

    let t = Instant::now();
    let infer = policy.inference_model()?;
    let opts = GenerateOptions {
        max_new_tokens: b.completion_length,
        eos_token_ids: vec![],
        suppress_token_ids: cfg.vision_token_ids(),
        sampling: (0..g).map(|r| Sampling { temperature: 1.0, top_k: None, top_p: None, seed: r as u64 }).collect(),
    };
    let gens = generate(&infer, &prompt, &opts, &mut |_, _| true)?;
    drop(infer);
    let rollout_s = t.elapsed().as_secs_f64();
    let completion_ids: Vec<Vec<u32>> = gens.iter().map(|x| x.tokens.clone()).collect();
    let (batch, completion_mask) = append_completions(&prompt, &completion_ids, 0);
    let ro = Rollout {
        prompt_len: prompt.len(),
        batch,
        completion_mask,
        texts: vec![String::new(); g],
        truncated: vec![true; g],
        completion_ids,
    };
    let rewards: Vec<f32> = (0..g).map(|r| (r % 2) as f32).collect();
    let adv = advantages(&rewards, g, ScaleRewards::Group);
    let mut opt = AdamW::new(
        policy.vars.clone(),
        AdamWConfig { lr: 1e-6, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 },
    )?;
    let loss = LossConfig {
        loss_type: LossType::Grpo,
        beta: b.beta,
        epsilon_low: 0.2,
        epsilon_high: 0.2,
        max_completion_length: b.completion_length,
        ..Default::default()
    };
    let ucfg = UpdateConfig {
        loss: &loss,
        num_iterations: 1,
        max_grad_norm: 1.0,
        mask_truncated: false,
        micro_batch_size: b.micro_batch_size,
    };
    let t = Instant::now();
    let stats = update(&mut policy, reference.as_ref(), &mut opt, &ro, &adv, &vec![true; g], &ucfg, 1e-6)?;
    let update_s = t.elapsed().as_secs_f64();
    Ok(json!({
        "shape": b.shape.name(), "lora_r": b.lora.as_ref().map(|l| l.r), "frozen_base": if bf16 { "bf16" } else { "f32" },
        "trainable_parameters": trainable, "num_generations": g, "prompt_tokens": ids.len(), "completion_tokens": b.completion_length, "beta": b.beta, "micro_batch_size": b.micro_batch_size, "gradient_checkpointing": b.gradient_checkpointing,
        "build_seconds": build_s, "peak_gib_after_build": mem_built,
        "rollout_seconds": rollout_s, "update_seconds": update_s,
        "scoring_seconds": stats.scoring_seconds, "forward_backward_seconds": stats.forward_backward_seconds, "optimizer_seconds": stats.optimizer_seconds,
        "step_seconds": rollout_s + update_s, "peak_gib": peak_rss_gib(), "grad_norm": stats.grad_norm, "loss": stats.loss,
    }))
}
