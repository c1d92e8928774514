//! Prompting as `Qwen2VLProcessor` does it: render the chat template (minijinja) for messages in the
//! qwen-vl-utils format, replace each `<|image_pad|>` by as many copies as the image has merged
//! patches (t*h*w/4), tokenize, and pad the batch on the left.

use crate::error::{Result, VlmError};
use crate::image_processor::{ImageProcessor, ProcessedImage, RgbImage};
use crate::model::Batch;
use candle_core::{Device, Tensor};
use serde_json::Value;
use std::path::Path;
use tokenizers::Tokenizer;

pub const IMAGE_PAD: &str = "<|image_pad|>";

/// Renders a Jinja chat template with `messages` and `add_generation_prompt`, as
/// `apply_chat_template(..., tokenize=False)` does.
pub fn render_chat_template(template: &str, messages: &Value, add_generation_prompt: bool) -> Result<String> {
    let mut env = minijinja::Environment::new();
    // transformers renders chat templates with trim_blocks and lstrip_blocks on.
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .expect("valid syntax config"),
    );
    env.add_function("raise_exception", |msg: String| -> std::result::Result<String, minijinja::Error> {
        Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
    });
    env.add_template("chat", template).map_err(|e| VlmError::input(format!("chat template does not parse: {e}")))?;
    let tpl = env.get_template("chat").unwrap();
    let out = tpl
        .render(minijinja::context! { messages => minijinja::Value::from(minijinja::value::Serde(messages)), add_generation_prompt => add_generation_prompt, add_vision_id => false })
        .map_err(|e| VlmError::input(format!("chat template failed to render: {e}")))?;
    Ok(out)
}

/// Where a message's image part points: `{"type":"image","image":PATH}`, `{"image":PATH}` or
/// `{"type":"image_url","image_url":{"url":PATH}}` (qwen-vl-utils accepts all three).
pub fn image_refs(messages: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(list) = messages.as_array() {
        for m in list {
            if let Some(parts) = m.get("content").and_then(|c| c.as_array()) {
                for p in parts {
                    let ty = p.get("type").and_then(|t| t.as_str()).unwrap_or("");
                    if let Some(s) = p.get("image").and_then(|v| v.as_str()) {
                        out.push(s.to_string());
                    } else if ty == "image_url" || p.get("image_url").is_some() {
                        let u = p.get("image_url");
                        let s = u
                            .and_then(|u| u.get("url"))
                            .and_then(|v| v.as_str())
                            .or_else(|| u.and_then(|u| u.as_str()));
                        if let Some(s) = s {
                            out.push(s.to_string());
                        }
                    }
                }
            }
        }
    }
    out
}

/// A prompt ready to tokenize: the rendered text (one `<|image_pad|>` per image) and its images.
#[derive(Debug, Clone)]
pub struct Prompt {
    pub text: String,
    pub images: Vec<ProcessedImage>,
}

#[derive(Clone)]
pub struct Processor {
    pub tokenizer: Tokenizer,
    pub chat_template: String,
    pub image_processor: ImageProcessor,
    pub pad_token_id: u32,
    pub merge_size: usize,
}

/// A tokenized batch and, when completions were appended, which tokens belong to them.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub batch: Batch,
    /// [B][L]: 1 on each row's completion tokens.
    pub completion_mask: Option<Vec<Vec<u32>>>,
    /// The texts given to the tokenizer (image pads expanded).
    pub texts: Vec<String>,
}

impl Processor {
    /// Renders messages and loads their images (paths resolved against `image_root`).
    pub fn prompt(&self, messages: &Value, image_root: &Path) -> Result<Prompt> {
        let text = render_chat_template(&self.chat_template, messages, true)?;
        let mut images = Vec::new();
        for r in image_refs(messages) {
            let p = image_root.join(r.strip_prefix("file://").unwrap_or(&r));
            images.push(self.image_processor.process(&RgbImage::open(&p)?)?);
        }
        self.check_pads(&text, images.len())?;
        Ok(Prompt { text, images })
    }

    /// A prompt from already-decoded images.
    pub fn prompt_with_images(&self, messages: &Value, images: &[RgbImage]) -> Result<Prompt> {
        let text = render_chat_template(&self.chat_template, messages, true)?;
        let images = images.iter().map(|i| self.image_processor.process(i)).collect::<Result<Vec<_>>>()?;
        self.check_pads(&text, images.len())?;
        Ok(Prompt { text, images })
    }

    fn check_pads(&self, text: &str, n_images: usize) -> Result<()> {
        let n = text.matches(IMAGE_PAD).count();
        if n != n_images {
            return Err(VlmError::input(format!(
                "the rendered prompt has {n} image placeholders but {n_images} images were given"
            )));
        }
        Ok(())
    }

    /// Expands every `<|image_pad|>` to its image's token count.
    pub fn expand(&self, prompt: &Prompt) -> String {
        let mut parts = prompt.text.split(IMAGE_PAD);
        let mut out = parts.next().unwrap_or("").to_string();
        for (img, rest) in prompt.images.iter().zip(parts) {
            out.push_str(&IMAGE_PAD.repeat(img.n_tokens(self.merge_size)));
            out.push_str(rest);
        }
        out
    }

    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.tokenizer.encode(text, true).map_err(|e| VlmError::input(format!("tokenizer: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Tokenizes prompts (optionally each followed by a completion, appended verbatim) into one
    /// left-padded batch.
    pub fn encode(&self, prompts: &[Prompt], completions: Option<&[String]>, device: &Device) -> Result<Encoded> {
        let mut rows = Vec::new();
        let mut comp_lens = Vec::new();
        let mut texts = Vec::new();
        for (i, p) in prompts.iter().enumerate() {
            let base = self.expand(p);
            let ids = match completions {
                Some(c) => {
                    let full_text = format!("{base}{}", c[i]);
                    let full = self.tokenize(&full_text)?;
                    let prompt_only = self.tokenize(&base)?;
                    if full.len() < prompt_only.len() || full[..prompt_only.len()] != prompt_only[..] {
                        return Err(VlmError::input(format!(
                            "row {i}: the completion merges with the prompt's last token"
                        )));
                    }
                    comp_lens.push(full.len() - prompt_only.len());
                    texts.push(full_text);
                    full
                }
                None => {
                    let ids = self.tokenize(&base)?;
                    texts.push(base);
                    ids
                }
            };
            rows.push(ids);
        }
        let l = rows.iter().map(|r| r.len()).max().unwrap_or(0);
        let mut input_ids = Vec::new();
        let mut attention_mask = Vec::new();
        let mut cmask = Vec::new();
        for (i, r) in rows.iter().enumerate() {
            let pad = l - r.len();
            let mut ids = vec![self.pad_token_id; pad];
            ids.extend_from_slice(r);
            let mut m = vec![0u32; pad];
            m.extend(std::iter::repeat_n(1, r.len()));
            input_ids.push(ids);
            attention_mask.push(m);
            if completions.is_some() {
                let mut c = vec![0u32; l];
                for v in &mut c[l - comp_lens[i]..] {
                    *v = 1;
                }
                cmask.push(c);
            }
        }
        let all: Vec<&ProcessedImage> = prompts.iter().flat_map(|p| p.images.iter()).collect();
        let pixel_values = if all.is_empty() {
            None
        } else {
            let width = all[0].patches.len() / all[0].grid_thw.iter().product::<usize>();
            let data: Vec<f32> = all.iter().flat_map(|i| i.patches.iter().copied()).collect();
            let n = data.len() / width;
            Some(Tensor::from_vec(data, (n, width), device)?)
        };
        Ok(Encoded {
            batch: Batch {
                input_ids,
                attention_mask,
                pixel_values,
                image_grid_thw: all.iter().map(|i| i.grid_thw).collect(),
            },
            completion_mask: completions.map(|_| cmask),
            texts,
        })
    }
}
