//! Checkpoints transformers can load: the input checkpoint's side files (config, tokenizer, chat
//! template, preprocessor and generation configs) and the weights in the input's tensor-name
//! layout and storage dtype. Trainer state (optimizer moments, float32 master weights when the
//! stored dtype is narrower, step, data cursor) goes beside it so `--resume` continues exactly.

use anyhow::{Context, Result};
use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use vlm::weights::NameLayout;

/// Files copied from the starting checkpoint (whichever exist).
const SIDE_FILES: [&str; 9] = [
    "config.json",
    "generation_config.json",
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.json",
    "chat_template.jinja",
    "vocab.json",
    "merges.txt",
];

/// Copies the starting checkpoint's tokenizer, template, processor and generation files (and
/// `config.json` when `with_config`) into `out`.
pub fn copy_side_files(out: &Path, source: &Path, with_config: bool) -> Result<()> {
    // Saving into the source folder itself: its side files are already there (copying a file
    // onto itself would truncate it).
    if std::fs::canonicalize(out).ok() == std::fs::canonicalize(source).ok() {
        return Ok(());
    }
    for f in SIDE_FILES.iter().filter(|f| with_config || **f != "config.json") {
        let src = source.join(f);
        if src.is_file() {
            std::fs::copy(&src, out.join(f)).with_context(|| format!("cannot copy {}", src.display()))?;
        }
    }
    Ok(())
}

pub fn save_model(
    out: &Path,
    source: &Path,
    layout: NameLayout,
    dtype: DType,
    tensors: &HashMap<String, Tensor>,
) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    copy_side_files(out, source, true)?;
    let mut stored = HashMap::new();
    for (name, t) in tensors {
        stored.insert(layout.stored_name(name), t.to_dtype(dtype)?.contiguous()?);
    }
    let tmp = out.join("model.safetensors.tmp");
    candle_core::safetensors::save(&stored, &tmp)?;
    // Rename last, so an interrupted save never leaves a half-written model in place.
    std::fs::rename(&tmp, out.join("model.safetensors"))?;
    Ok(())
}

/// Records the pixel budget the model was trained at in the saved `preprocessor_config.json`
/// (as TRL's saved processor does), so evaluating or serving the checkpoint sees images the way
/// training did. Both spellings are kept in step: `max_pixels` and `size.longest_edge`.
pub fn set_max_pixels(dir: &Path, max_pixels: usize) -> Result<()> {
    let f = dir.join("preprocessor_config.json");
    let Ok(text) = std::fs::read_to_string(&f) else { return Ok(()) };
    let mut v: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{}: not JSON", f.display()))?;
    let min = v["min_pixels"].as_u64().or_else(|| v["size"]["shortest_edge"].as_u64()).unwrap_or(0) as usize;
    let max_pixels = max_pixels.max(min);
    if v["max_pixels"].as_u64() == Some(max_pixels as u64) {
        return Ok(());
    }
    v["max_pixels"] = serde_json::json!(max_pixels);
    if v["size"].get("longest_edge").is_some() {
        v["size"]["longest_edge"] = serde_json::json!(max_pixels);
    }
    std::fs::write(&f, serde_json::to_string_pretty(&v)? + "\n")?;
    Ok(())
}

/// Where training stands, saved as `trainer_state.json` beside the model.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainerState {
    /// Updates done.
    pub step: usize,
    pub total_steps: usize,
    /// Records consumed from the shuffled stream (skipped ones included).
    pub cursor: usize,
    pub skipped_records: usize,
    pub seed: u64,
    /// What was being trained: "grpo" or "sft".
    pub kind: String,
    /// AdamW updates taken (training steps x num_iterations).
    pub optimizer_updates: u64,
}

pub fn save_state(
    out: &Path,
    state: &TrainerState,
    optimizer: &BTreeMap<String, Tensor>,
    master: Option<&HashMap<String, Tensor>>,
) -> Result<()> {
    let mut all: HashMap<String, Tensor> = optimizer.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    if let Some(m) = master {
        for (k, v) in m {
            all.insert(format!("master.{k}"), v.to_dtype(DType::F32)?);
        }
    }
    let tmp = out.join("trainer_state.safetensors.tmp");
    candle_core::safetensors::save(&all, &tmp)?;
    std::fs::rename(&tmp, out.join("trainer_state.safetensors"))?;
    std::fs::write(out.join("trainer_state.json"), serde_json::to_string_pretty(state)? + "\n")?;
    Ok(())
}

/// (state, optimizer moments, master weights if saved).
pub type LoadedState = (TrainerState, BTreeMap<String, Tensor>, HashMap<String, Tensor>);

pub fn load_state(dir: &Path) -> Result<LoadedState> {
    let f = dir.join("trainer_state.json");
    let state: TrainerState =
        vlm::json::read_json(&f, "a trainer state").with_context(|| format!("{}: nothing to resume?", f.display()))?;
    let tensors = candle_core::safetensors::load(dir.join("trainer_state.safetensors"), &candle_core::Device::Cpu)?;
    let mut moments = BTreeMap::new();
    let mut master = HashMap::new();
    for (k, v) in tensors {
        match k.strip_prefix("master.") {
            Some(name) => {
                master.insert(name.to_string(), v);
            }
            None => {
                moments.insert(k, v);
            }
        }
    }
    Ok((state, moments, master))
}
