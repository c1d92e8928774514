//! `medr1 bench`: prefill seconds and decode tokens/s on the same prompt as
//! `shared/bench/torch_2b_baseline.py` (one 392x392 image = 196 visual tokens, plus 60 text
//! tokens), with random weights at a bundled tiny shape or a real one (Qwen2-VL-2B, Qwen2.5-VL-3B).

use anyhow::Result;
use candle_core::{DType, Device};
use clap::Args;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::time::Instant;
use vlm::generate::{generate, GenerateOptions, Sampling};
use vlm::image_processor::{ImageProcessor, RgbImage};
use vlm::model::Batch;
use vlm::params::RandomParams;
use vlm::precision::Precision;
use vlm::shapes::Shape;
use vlm::{PreprocessorConfig, Qwen2Vl};

#[derive(Args)]
pub struct BenchArgs {
    /// Model shape: `tiny` / `tiny25` (the bundled Qwen2-VL / Qwen2.5-VL test checkpoints'), `2b`
    /// (Qwen2-VL-2B-Instruct's) or `3b` (Qwen2.5-VL-3B-Instruct's).
    #[arg(long, value_enum, default_value_t = Shape::Tiny)]
    pub shape: Shape,
    /// Weights' precision: f32 (the reference), bf16 or int8.
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    pub dtype: Precision,
    /// Tokens to decode after the prefill.
    #[arg(long, default_value_t = 16)]
    pub new_tokens: usize,
    /// Worker threads (the baseline uses 2).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Also build the float32 model from the same random draws and report how far this dtype is
    /// from it: the prompt's next-token logits (relative L2 error) and the greedy tokens (the
    /// fraction of the --new-tokens positions that agree, and the common prefix).
    #[arg(long)]
    pub against_f32: bool,
    /// Long-prompt mode: time one prefill of a prompt this many tokens long (the image, then
    /// random text) and report its peak memory above the loaded model (`prefill_peak_rss_bytes`);
    /// no decoding.
    #[arg(long)]
    pub prompt_tokens: Option<usize>,
    /// Largest attention score buffer the decoder computes at once, in bytes, before going a
    /// block of queries at a time (0: never block, the whole prompt's scores at once).
    #[arg(long, default_value_t = 64 << 20)]
    pub attention_block_bytes: usize,
    /// Print {"prefill_seconds", "decode_tokens_per_second", "prompt_tokens", ..., "peak_rss_bytes",
    /// "weights_bytes"} as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: BenchArgs) -> Result<()> {
    // Must happen before candle or gemm touch the global thread pool.
    std::env::set_var("RAYON_NUM_THREADS", a.threads.to_string());
    let cfg = a.shape.config()?;
    let t0 = Instant::now();
    let loading = vlm::loading::LoadingGuard::begin();
    let mut model = Qwen2Vl::load(&cfg, &RandomParams::with_precision(a.dtype, candle_core::Device::Cpu, 0.02, 0))?;
    model.prepare_for_inference()?;
    drop(loading);
    let footprint = model.footprint()?;
    eprintln!(
        "{} shape: {:.3} B parameters in {:.2} GB ({}), built in {:.1}s",
        a.shape,
        footprint.params as f64 / 1e9,
        footprint.bytes as f64 / 1e9,
        a.dtype,
        t0.elapsed().as_secs_f64()
    );

    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let img = RgbImage { width: 384, height: 384, data: (0..384 * 384 * 3).map(|_| rng.random::<u8>()).collect() };
    let proc = ImageProcessor::new(PreprocessorConfig { min_pixels: 3136, max_pixels: 401408, ..Default::default() });
    let pi = proc.process(&img)?;
    let n_img = pi.n_tokens(2);
    let vocab_text = (cfg.text.vocab_size as u32).min(150000).min(cfg.vision_start_token_id);
    let n_text = match a.prompt_tokens {
        Some(p) => p.checked_sub(n_img + 2).filter(|&t| t >= 10).ok_or_else(|| {
            anyhow::anyhow!("--prompt-tokens {p}: at least {} (the image's {n_img} tokens and 12 more)", n_img + 12)
        })?,
        None => 60,
    };
    model.text.attention_score_bytes = if a.attention_block_bytes == 0 { usize::MAX } else { a.attention_block_bytes };
    let text: Vec<u32> = (0..n_text).map(|_| rng.random_range(0..vocab_text)).collect();
    let mut ids = text[..10].to_vec();
    ids.push(cfg.vision_start_token_id);
    ids.extend(std::iter::repeat_n(cfg.image_token_id, n_img));
    ids.push(cfg.vision_end_token_id);
    ids.extend_from_slice(&text[10..]);
    let n = ids.len();
    let px = candle_core::Tensor::from_vec(
        pi.patches.clone(),
        (pi.grid_thw.iter().product::<usize>(), cfg.vision.patch_dim()),
        &candle_core::Device::Cpu,
    )?;
    let batch = Batch {
        input_ids: vec![ids],
        attention_mask: vec![vec![1; n]],
        pixel_values: Some(px),
        image_grid_thw: vec![pi.grid_thw],
    };
    eprintln!("prompt tokens {n}, image tokens {n_img}");
    eprintln!("peak resident memory after loading {:.2} GB", peak_rss_bytes().unwrap_or(0) as f64 / 1e9);
    if a.prompt_tokens.is_some() {
        return long_prompt(&a, &model, &batch, footprint.bytes);
    }

    // The prefill as generation runs it: the prompt's forward and the next token's logits. The
    // baseline script's timed `model(**inputs)` also computes logits at every prompt position
    // (about 120 GFLOP more at the 2B shape); that variant is timed too, alternately, to compare
    // with its `prefill_s` (its `generate_1_s` is the prefill as generation runs it).
    let (mut prefill, mut prefill_all) = (0.0, 0.0);
    let mut next_logits = Vec::new();
    for _ in 0..2 {
        let t = Instant::now();
        let (hidden, _) = model.forward_hidden(&batch, None)?;
        let next = model.text.logits(&hidden.narrow(1, n - 1, 1)?)?;
        next_logits = next.flatten_all()?.to_vec1::<f32>()?;
        prefill = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let (logits, _) = model.forward(&batch, None)?;
        drop(logits);
        prefill_all = t.elapsed().as_secs_f64();
        eprintln!("prefill {prefill:.2}s (with every position's logits: {prefill_all:.2}s)");
    }
    let opts = GenerateOptions {
        max_new_tokens: a.new_tokens,
        eos_token_ids: vec![],
        suppress_token_ids: vec![],
        sampling: vec![Sampling::greedy()],
    };
    let t = Instant::now();
    let vision_seconds = {
        let _f = model.visual.forward(batch.pixel_values.as_ref().unwrap(), &batch.image_grid_thw)?;
        t.elapsed().as_secs_f64()
    };
    eprintln!("of which vision tower {vision_seconds:.2}s");
    // Decode speed from the tokens' own timestamps: the first token comes with the prefill.
    let t = Instant::now();
    let mut stamps = Vec::new();
    let generated = generate(&model, &batch, &opts, &mut |_, _| {
        stamps.push(t.elapsed().as_secs_f64());
        true
    })?;
    let tokens = generated[0].tokens.clone();
    let total = t.elapsed().as_secs_f64();
    let decode_tps = if stamps.len() > 1 {
        (stamps.len() - 1) as f64 / (stamps[stamps.len() - 1] - stamps[0]).max(1e-9)
    } else {
        0.0
    };
    let peak_rss = peak_rss_bytes();
    eprintln!("peak resident memory {:.2} GB", peak_rss.unwrap_or(0) as f64 / 1e9);
    let mut against = serde_json::Map::new();
    if a.against_f32 {
        drop(model);
        let loading = vlm::loading::LoadingGuard::begin();
        let mut reference = Qwen2Vl::load(&cfg, &RandomParams::new(DType::F32, Device::Cpu, 0.02, 0))?;
        reference.prepare_for_inference()?;
        drop(loading);
        let (hidden, _) = reference.forward_hidden(&batch, None)?;
        let want: Vec<f32> = reference.text.logits(&hidden.narrow(1, n - 1, 1)?)?.flatten_all()?.to_vec1()?;
        let err = rel_l2(&next_logits, &want);
        let ref_tokens = generate(&reference, &batch, &opts, &mut |_, _| true)?[0].tokens.clone();
        let same = tokens.iter().zip(&ref_tokens).filter(|(a, b)| a == b).count();
        let prefix = tokens.iter().zip(&ref_tokens).take_while(|(a, b)| a == b).count();
        let frac = same as f64 / ref_tokens.len().max(1) as f64;
        eprintln!(
            "against f32: next-token logits rel err {err:.3e}; greedy tokens {same}/{} agree, common prefix {prefix}",
            ref_tokens.len()
        );
        against.insert("logits_rel_err_vs_f32".into(), json!(err));
        against.insert("greedy_match_vs_f32".into(), json!(frac));
        against.insert("greedy_prefix_vs_f32".into(), json!(prefix));
    }
    if a.json {
        let v = json!({"prefill_seconds": prefill, "decode_tokens_per_second": decode_tps, "prompt_tokens": n,
            "shape": a.shape.name(), "dtype": a.dtype.name(), "new_tokens": a.new_tokens, "threads": a.threads,
            "generate_seconds": total, "prefill_all_logits_seconds": prefill_all, "vision_seconds": vision_seconds, "avx512": std::is_x86_feature_detected!("avx512f"),
            "peak_rss_bytes": peak_rss, "weights_bytes": footprint.bytes, "parameters": footprint.params});
        let mut v = v;
        v.as_object_mut().expect("an object").extend(against);
        println!("{v}");
    } else {
        println!("RESULT shape={} dtype={} prefill_s={prefill:.2} prefill_all_logits_s={prefill_all:.2} generate_{}_s={total:.2} decode_tok_per_s={decode_tps:.3} peak_rss_gb={:.2} weights_gb={:.2}", a.shape, a.dtype, a.new_tokens, peak_rss.unwrap_or(0) as f64 / 1e9, footprint.bytes as f64 / 1e9);
    }
    Ok(())
}

/// |a - b| / |b| in the L2 norm.
fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

/// The process's peak resident set (VmHWM in /proc/self/status), where the system reports it.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// `--prompt-tokens`: one prefill as generation runs it (the prompt's forward and the next token's
/// logits), its time and its peak resident memory above the loaded model.
fn long_prompt(a: &BenchArgs, model: &Qwen2Vl, batch: &Batch, weights_bytes: usize) -> Result<()> {
    let before = current_rss_bytes().unwrap_or(0);
    // Resets the kernel's peak (VmHWM) to the current size, so the peak below is the prefill's.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let n = batch.len();
    let t = Instant::now();
    let (hidden, _) = model.forward_hidden(batch, None)?;
    let _next = model.text.logits(&hidden.narrow(1, n - 1, 1)?)?;
    let seconds = t.elapsed().as_secs_f64();
    drop(hidden);
    let peak = peak_rss_bytes().unwrap_or(0);
    let blocked = a.attention_block_bytes != 0;
    eprintln!(
        "prefill of {n} tokens: {seconds:.2}s, peak {:.2} GB ({:.2} GB above the loaded model), attention {}",
        peak as f64 / 1e9,
        peak.saturating_sub(before) as f64 / 1e9,
        if blocked { "in blocks" } else { "whole prompt at once" }
    );
    let v = json!({
        "shape": a.shape.name(), "dtype": a.dtype.name(), "threads": a.threads, "prompt_tokens": n,
        "prefill_seconds": seconds, "peak_rss_bytes": peak, "prefill_peak_rss_bytes": peak.saturating_sub(before),
        "rss_before_prefill_bytes": before, "weights_bytes": weights_bytes,
        "attention_block_bytes": a.attention_block_bytes,
    });
    if a.json {
        println!("{v}");
    } else {
        println!(
            "RESULT shape={} dtype={} prompt_tokens={n} prefill_s={seconds:.2} prefill_peak_gb={:.2}",
            a.shape.name(),
            a.dtype.name(),
            peak.saturating_sub(before) as f64 / 1e9
        );
    }
    Ok(())
}

/// The process's resident size now (VmRSS), in bytes.
fn current_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024)
}
