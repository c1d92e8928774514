//! Rollouts: G sampled completions per prompt with the KV-cache generator, and the batch that
//! scores them — each prompt (left-padded) followed by its completion's own token ids (never
//! re-tokenised text, which could split differently) and right padding. A completion's mask
//! covers its tokens up to and including the first EOS.

use anyhow::Result;
use vlm::generate::{generate, GenerateOptions, Sampling};
use vlm::model::{Batch, Qwen2Vl};
use vlm::prompt::{Processor, Prompt};

pub struct Rollout {
    /// Prompt + completion, one row per completion (prompt-major: G rows per prompt).
    pub batch: Batch,
    /// [rows][len]: 1 on completion tokens.
    pub completion_mask: Vec<Vec<u32>>,
    pub completion_ids: Vec<Vec<u32>>,
    /// Decoded with special tokens skipped (what the rewards read).
    pub texts: Vec<String>,
    /// Ended at max_new_tokens without an EOS.
    pub truncated: Vec<bool>,
    pub prompt_len: usize,
}

pub struct RolloutConfig {
    pub num_generations: usize,
    pub max_new_tokens: usize,
    pub temperature: f64,
    pub top_p: f64,
    pub top_k: usize,
    pub eos_token_ids: Vec<u32>,
    /// Never sampled: the vision placeholders (a sampled `<|image_pad|>` would break the
    /// scoring forward's image-token count).
    pub suppress_token_ids: Vec<u32>,
}

/// A seed per (base, step, row), so every rollout is reproducible on its own.
pub fn row_seed(base: u64, step: u64, row: u64) -> u64 {
    let mut z = base ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ row.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub fn rollout(
    model: &Qwen2Vl,
    processor: &Processor,
    prompts: &[Prompt],
    cfg: &RolloutConfig,
    seed: u64,
    step: u64,
) -> Result<Rollout> {
    let g = cfg.num_generations;
    let rows: Vec<Prompt> = prompts.iter().flat_map(|p| std::iter::repeat_n(p.clone(), g)).collect();
    let enc = processor.encode(&rows, None, model.device())?;
    let sampling = (0..rows.len())
        .map(|r| Sampling {
            temperature: cfg.temperature,
            top_k: (cfg.top_k > 0).then_some(cfg.top_k),
            top_p: (cfg.top_p < 1.0).then_some(cfg.top_p),
            seed: row_seed(seed, step, r as u64),
        })
        .collect();
    let opts = GenerateOptions {
        max_new_tokens: cfg.max_new_tokens,
        eos_token_ids: cfg.eos_token_ids.clone(),
        suppress_token_ids: cfg.suppress_token_ids.clone(),
        sampling,
    };
    let gens = generate(model, &enc.batch, &opts, &mut |_, _| true)?;
    let completion_ids: Vec<Vec<u32>> = gens.iter().map(|x| x.tokens.clone()).collect();
    let truncated = gens.iter().map(|x| !x.stopped).collect();
    let texts = completion_ids
        .iter()
        .map(|c| processor.tokenizer.decode(c, true).map_err(|e| anyhow::anyhow!("decoding: {e}")))
        .collect::<Result<Vec<_>>>()?;
    let (batch, completion_mask) = append_completions(&enc.batch, &completion_ids, processor.pad_token_id);
    Ok(Rollout { prompt_len: enc.batch.len(), batch, completion_mask, completion_ids, texts, truncated })
}

/// The scoring batch: each prompt row followed by its completion, right-padded.
pub fn append_completions(prompt: &Batch, completions: &[Vec<u32>], pad: u32) -> (Batch, Vec<Vec<u32>>) {
    let c = completions.iter().map(Vec::len).max().unwrap_or(0);
    let mut b = prompt.clone();
    let mut cmask = Vec::with_capacity(completions.len());
    for (r, comp) in completions.iter().enumerate() {
        let mut m = vec![0u32; prompt.len()];
        b.input_ids[r].extend(comp);
        b.attention_mask[r].extend(std::iter::repeat_n(1, comp.len()));
        m.extend(std::iter::repeat_n(1, comp.len()));
        let padn = c - comp.len();
        b.input_ids[r].extend(std::iter::repeat_n(pad, padn));
        b.attention_mask[r].extend(std::iter::repeat_n(0, padn));
        m.extend(std::iter::repeat_n(0, padn));
        cmask.push(m);
    }
    (b, cmask)
}
