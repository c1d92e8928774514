//! `medr1 ask`: one image, one question, one answer.

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;
use vlm::generate::{generate, GenerateOptions, Sampling};
use vlm::precision::Precision;
use vlm::Checkpoint;

#[derive(Args)]
pub struct AskArgs {
    /// Checkpoint directory (config.json, model.safetensors, tokenizer.json, ...).
    #[arg(long)]
    pub model: PathBuf,
    /// Image file: PNG, JPEG, BMP, TIFF, GIF, WebP or DICOM (windowed as a viewer shows it;
    /// the middle frame of a multi-frame file), or a folder holding one DICOM series (its
    /// slices ordered along the slice normal; the middle one unless --slice or --slices says).
    #[arg(long)]
    pub image: Option<PathBuf>,
    #[command(flatten)]
    pub view: crate::view::ViewArgs,
    /// Give the model K evenly spaced frames of a multi-frame file or slices of a series (first
    /// to last) as K images in one prompt.
    #[arg(long, value_name = "K")]
    pub slices: Option<usize>,
    /// The question, sent after the image in the user turn.
    #[arg(long)]
    pub question: String,
    /// System prompt; the chat template's default ("You are a helpful assistant.") when absent.
    #[arg(long)]
    pub system: Option<String>,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 256)]
    pub max_new_tokens: usize,
    /// Sampling temperature; 0 means greedy decoding.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Nucleus sampling: keep the most likely tokens whose probability reaches P (1 = off).
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    /// Keep only the K most likely tokens (0 = off).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Random seed for sampling; the same seed gives the same answer.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Weights' precision: f32 (the reference), bf16, or int8 (linear layers and the embedding
    /// quantized per output channel as they load, or read as `medr1 quantize` stored them).
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    pub dtype: Precision,
    /// Keep special tokens (e.g. <|im_end|>) in the printed text.
    #[arg(long)]
    pub keep_special_tokens: bool,
    /// Print a JSON object: text, token ids, per-token log-probs, timing.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: AskArgs) -> Result<()> {
    let t0 = Instant::now();
    let ck = Checkpoint::open_as(&a.model, a.dtype)?;
    let load_s = t0.elapsed().as_secs_f64();
    let mut content = Vec::new();
    let mut images = Vec::new();
    if let Some(p) = &a.image {
        let opts = data::image::ImageOptions { slices: a.slices, ..a.view.options() };
        for img in data::image::open_with(p, &opts)? {
            images.push(img);
            content.push(json!({"type": "image", "image": p.display().to_string()}));
        }
    } else if a.slices.is_some() || a.view.frame.is_some() || a.view.window.is_some() {
        bail!("--window, --frame and --slices need an --image");
    }
    content.push(json!({"type": "text", "text": a.question}));
    let mut messages = Vec::new();
    if let Some(s) = &a.system {
        messages.push(json!({"role": "system", "content": s}));
    }
    messages.push(json!({"role": "user", "content": content}));
    let prompt = ck.processor.prompt_with_images(&json!(messages), &images)?;
    let enc = ck.processor.encode(&[prompt], None, ck.model.device())?;
    let prompt_tokens = enc.batch.len();
    let ctx = ck.config.text.max_position_embeddings;
    if prompt_tokens + a.max_new_tokens > ctx {
        bail!("the prompt ({prompt_tokens} tokens) plus --max-new-tokens ({}) exceeds the model's context of {ctx} tokens", a.max_new_tokens);
    }
    let opts = GenerateOptions {
        max_new_tokens: a.max_new_tokens,
        eos_token_ids: ck.generation.eos_token_ids.clone(),
        suppress_token_ids: ck.config.vision_token_ids(),
        sampling: vec![Sampling {
            temperature: a.temperature,
            top_k: (a.top_k > 0).then_some(a.top_k),
            top_p: (a.top_p < 1.0).then_some(a.top_p),
            seed: a.seed,
        }],
    };
    let t1 = Instant::now();
    let gen = generate(&ck.model, &enc.batch, &opts, &mut |_, _| true).context("generation failed")?;
    let gen_s = t1.elapsed().as_secs_f64();
    let g = &gen[0];
    let text = ck
        .processor
        .tokenizer
        .decode(&g.tokens, !a.keep_special_tokens)
        .map_err(|e| anyhow::anyhow!("decoding: {e}"))?;
    if a.json {
        let out = json!({
            "text": text,
            "token_ids": g.tokens,
            "logprobs": g.logprobs,
            "stopped_at_eos": g.stopped,
            "prompt_tokens": prompt_tokens,
            "images": images.len(),
            "completion_tokens": g.tokens.len(),
            "timing": {"load_seconds": load_s, "generate_seconds": gen_s,
                       "tokens_per_second": g.tokens.len() as f64 / gen_s.max(1e-9)},
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("{text}");
    }
    Ok(())
}
