//! A checkpoint directory as transformers saves it: `config.json`, safetensors weights,
//! `generation_config.json`, `preprocessor_config.json`, `tokenizer.json`, and the chat template
//! from `chat_template.json` or `tokenizer_config.json`. [`Checkpoint::open`] reads all of it and
//! builds the model and its processor.

use crate::config::{GenerationConfig, PreprocessorConfig, Qwen2VlConfig};
use crate::error::{Result, VlmError};
use crate::image_processor::ImageProcessor;
use crate::model::Qwen2Vl;
use crate::params::CheckpointParams;
use crate::precision::Precision;
use crate::prompt::Processor;
use crate::weights::{NameLayout, Weights};
use candle_core::{DType, Device};
use serde_json::Value;
use std::path::{Path, PathBuf};
use tokenizers::Tokenizer;

pub struct Checkpoint {
    pub dir: PathBuf,
    pub config: Qwen2VlConfig,
    pub generation: GenerationConfig,
    pub model: Qwen2Vl,
    pub processor: Processor,
    pub layout: NameLayout,
    pub stored_dtype: DType,
}

fn read_json(path: &Path) -> Result<Value> {
    crate::json::read_json(path, "valid JSON")
}

/// The chat template: `chat_template.json` first (what transformers >= 4.43 writes), then the
/// `chat_template` key of `tokenizer_config.json`, then a `chat_template.jinja` file.
pub fn load_chat_template(dir: &Path) -> Result<String> {
    let ct = dir.join("chat_template.json");
    if ct.exists() {
        let v = read_json(&ct)?;
        return v
            .get("chat_template")
            .and_then(|t| t.as_str())
            .map(String::from)
            .ok_or_else(|| VlmError::MissingKey { file: ct.clone(), key: "chat_template".into() });
    }
    let jinja = dir.join("chat_template.jinja");
    if jinja.exists() {
        return std::fs::read_to_string(&jinja).map_err(|e| VlmError::file(&jinja, format!("cannot read: {e}")));
    }
    let tc = dir.join("tokenizer_config.json");
    if tc.exists() {
        let v = read_json(&tc)?;
        return match v.get("chat_template") {
            Some(Value::String(s)) => Ok(s.clone()),
            // A list of named templates: take "default".
            Some(Value::Array(a)) => a
                .iter()
                .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
                .and_then(|t| t.get("template"))
                .and_then(|t| t.as_str())
                .map(String::from)
                .ok_or_else(|| VlmError::BadKey {
                    file: tc.clone(),
                    key: "chat_template".into(),
                    msg: "no template named `default`".into(),
                }),
            _ => Err(VlmError::MissingKey { file: tc.clone(), key: "chat_template".into() }),
        };
    }
    Err(VlmError::file(
        dir,
        "no chat template: expected chat_template.json or a `chat_template` in tokenizer_config.json",
    ))
}

pub fn load_tokenizer(dir: &Path) -> Result<Tokenizer> {
    let p = dir.join("tokenizer.json");
    if !p.exists() {
        return Err(VlmError::file(&p, "missing (the checkpoint needs its tokenizer.json)"));
    }
    Tokenizer::from_file(&p).map_err(|e| VlmError::file(&p, format!("not a valid tokenizer: {e}")))
}

impl Checkpoint {
    /// Opens a checkpoint directory and builds the model in `dtype` (float32 or bfloat16) on the
    /// CPU; see [`Checkpoint::open_as`] for int8.
    pub fn open(dir: &Path, dtype: DType) -> Result<Self> {
        let precision = match dtype {
            DType::BF16 => Precision::Bf16,
            DType::F32 => Precision::F32,
            other => return Err(VlmError::input(format!("cannot load a model in {other:?} (f32, bf16 or int8)"))),
        };
        Self::open_as(dir, precision)
    }

    /// Opens a checkpoint directory and builds the model in `precision` on the CPU. With int8,
    /// float weights are quantized as they are read (one at a time), and a checkpoint written by
    /// `medr1 quantize` is read as stored; in float precisions an int8 checkpoint is dequantized.
    pub fn open_as(dir: &Path, precision: Precision) -> Result<Self> {
        let _loading = crate::loading::LoadingGuard::begin();
        if !dir.is_dir() {
            return Err(VlmError::file(dir, "checkpoint directory does not exist"));
        }
        let cfg_path = dir.join("config.json");
        if !cfg_path.exists() {
            if dir.join("adapter_config.json").exists() {
                return Err(VlmError::file(&cfg_path, "missing: this folder is a LoRA adapter (adapter_config.json); fold it into its base first with `medr1 merge --model BASE --adapter DIR --out MERGED`"));
            }
            return Err(VlmError::file(&cfg_path, "missing"));
        }
        let config = Qwen2VlConfig::from_file(&cfg_path)?;
        let gen_path = dir.join("generation_config.json");
        let generation = if gen_path.exists() {
            GenerationConfig::from_file(&gen_path)?
        } else {
            GenerationConfig {
                eos_token_ids: vec![],
                pad_token_id: None,
                temperature: None,
                top_k: None,
                top_p: None,
                do_sample: false,
            }
        };
        let pre_path = dir.join("preprocessor_config.json");
        let pre =
            if pre_path.exists() { PreprocessorConfig::from_file(&pre_path)? } else { PreprocessorConfig::default() };
        if pre.patch_size != config.vision.patch_size
            || pre.merge_size != config.vision.spatial_merge_size
            || pre.temporal_patch_size != config.vision.temporal_patch_size
        {
            return Err(VlmError::file(&pre_path, format!(
                "patch_size/merge_size/temporal_patch_size ({}/{}/{}) contradict config.json's vision_config ({}/{}/{})",
                pre.patch_size, pre.merge_size, pre.temporal_patch_size,
                config.vision.patch_size, config.vision.spatial_merge_size, config.vision.temporal_patch_size)));
        }
        let tokenizer = load_tokenizer(dir)?;
        let chat_template = load_chat_template(dir)?;
        let tok_vocab = tokenizer.get_vocab_size(true);
        if tok_vocab > config.text.vocab_size {
            return Err(VlmError::file(
                dir.join("tokenizer.json"),
                format!("has {tok_vocab} tokens but config.json's vocab_size is {}", config.text.vocab_size),
            ));
        }
        let image_pad = tokenizer.token_to_id(crate::prompt::IMAGE_PAD);
        if image_pad != Some(config.image_token_id) {
            return Err(VlmError::BadKey {
                file: cfg_path.clone(),
                key: "image_token_id".into(),
                msg: format!("is {} but tokenizer.json maps <|image_pad|> to {:?}", config.image_token_id, image_pad),
            });
        }
        let mut generation = generation;
        if generation.eos_token_ids.is_empty() {
            generation.eos_token_ids = tokenizer.token_to_id("<|im_end|>").into_iter().collect();
        }
        let pad_token_id = generation.pad_token_id.or_else(|| tokenizer.token_to_id("<|endoftext|>")).unwrap_or(0);
        let weights = Weights::open(dir)?;
        let device = Device::Cpu;
        let source = CheckpointParams { weights: &weights, precision, device };
        let mut model = Qwen2Vl::load(&config, &source)?;
        model.prepare_for_inference()?;
        let processor = Processor {
            tokenizer,
            chat_template,
            image_processor: ImageProcessor::new(pre),
            pad_token_id,
            merge_size: config.vision.spatial_merge_size,
        };
        Ok(Checkpoint {
            dir: dir.to_path_buf(),
            config,
            generation,
            model,
            processor,
            layout: weights.layout,
            stored_dtype: weights.stored_dtype,
        })
    }
}
