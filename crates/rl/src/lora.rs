//! LoRA training in PEFT's terms: which layers get adapters, how they start (A uniform in
//! +-1/sqrt(in) as PEFT's kaiming-uniform(a = sqrt(5)), B zero, so training starts exactly at the
//! base model), and the adapter folder PEFT writes and reads: `adapter_config.json` +
//! `adapter_model.safetensors` with keys `base_model.model.<module>.lora_A.weight` /
//! `.lora_B.weight` in the base checkpoint's tensor-name layout. [`merge`] folds adapters into
//! full weights (W + alpha/r * B A), what `medr1 merge` writes.

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use vlm::lora::LoraAdapter;
use vlm::weights::NameLayout;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraSettings {
    pub r: usize,
    pub alpha: f64,
    pub dropout: f64,
    /// Module names (the last part, e.g. `q_proj`) that get adapters.
    pub target_modules: Vec<String>,
    /// Also adapt the vision tower's matching layers (PEFT would; Med-R1-style LoRA leaves it out).
    pub vision: bool,
    /// Keep the frozen base's linear weights in bfloat16.
    #[serde(default)]
    pub base_bf16: bool,
}

impl LoraSettings {
    pub fn scaling(&self) -> f64 {
        self.alpha / self.r as f64
    }

    /// Whether the layer named `module` gets an adapter.
    pub fn targets(&self, module: &str) -> bool {
        let last = module.rsplit('.').next().unwrap_or(module);
        (self.vision || !module.starts_with("visual."))
            && self.target_modules.iter().any(|t| t == last || module.ends_with(&format!(".{t}")))
    }
}

/// The trainable tensors' names: `<module>.lora_A.weight` and `<module>.lora_B.weight`.
pub fn names(module: &str) -> (String, String) {
    (format!("{module}.lora_A.weight"), format!("{module}.lora_B.weight"))
}

/// Fresh adapters for every targeted layer of `model`: (module, A [r, in], B [out, r]).
pub fn init(model: &mut vlm::model::Qwen2Vl, s: &LoraSettings, seed: u64) -> Result<Vec<(String, Tensor, Tensor)>> {
    if s.r == 0 {
        bail!("lora_r must be at least 1");
    }
    if !(0.0..1.0).contains(&s.dropout) {
        bail!("lora_dropout must be in [0, 1), got {}", s.dropout);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    for lin in model.linears_mut() {
        let module = lin.name.clone();
        if !s.targets(&module) {
            continue;
        }
        let (o, i) = lin.dims()?;
        let bound = 1.0 / (i as f64).sqrt();
        let a: Vec<f32> = (0..s.r * i).map(|_| rng.random_range(-bound..bound) as f32).collect();
        out.push((
            module,
            Tensor::from_vec(a, (s.r, i), &Device::Cpu)?,
            Tensor::zeros((o, s.r), DType::F32, &Device::Cpu)?,
        ));
    }
    if out.is_empty() {
        bail!("lora_target_modules {:?} match no layer of the model", s.target_modules);
    }
    Ok(out)
}

/// The adapters as the model takes them, by module name; `dropout_seed` switches LoRA dropout on
/// (training) with the trainer's per-forward seed.
pub fn adapters(
    tensors: &HashMap<String, Tensor>,
    s: &LoraSettings,
    dropout_seed: Option<&std::sync::Arc<std::sync::atomic::AtomicU64>>,
) -> Result<HashMap<String, LoraAdapter>> {
    let mut out = HashMap::new();
    for (name, a) in tensors {
        if let Some(module) = name.strip_suffix(".lora_A.weight") {
            let b = tensors
                .get(&names(module).1)
                .with_context(|| format!("adapter `{module}` has lora_A but no lora_B"))?;
            let dropout = dropout_seed.filter(|_| s.dropout > 0.0).map(|seed| vlm::lora::LoraDropout {
                p: s.dropout,
                seed: seed.clone(),
                salt: vlm::lora::salt(module),
            });
            out.insert(module.to_string(), LoraAdapter { a: a.clone(), b: b.clone(), scaling: s.scaling(), dropout });
        }
    }
    Ok(out)
}

#[derive(Serialize, Deserialize)]
struct PeftConfig {
    peft_type: String,
    task_type: String,
    r: usize,
    lora_alpha: f64,
    lora_dropout: f64,
    target_modules: Vec<String>,
    bias: String,
    fan_in_fan_out: bool,
    inference_mode: bool,
    use_rslora: bool,
    base_model_name_or_path: String,
    /// medr1's own key: whether the vision tower's layers were adapted (PEFT ignores unknown keys).
    #[serde(default)]
    medr1_vision: bool,
}

const PEFT_PREFIX: &str = "base_model.model.";

/// Writes `adapter_config.json` and `adapter_model.safetensors` (float32) into `out`.
pub fn save_adapter(
    out: &Path,
    tensors: &HashMap<String, Tensor>,
    s: &LoraSettings,
    layout: NameLayout,
    base: &Path,
) -> Result<()> {
    std::fs::create_dir_all(out)?;
    let cfg = PeftConfig {
        peft_type: "LORA".into(),
        task_type: "CAUSAL_LM".into(),
        r: s.r,
        lora_alpha: s.alpha,
        lora_dropout: s.dropout,
        target_modules: s.target_modules.clone(),
        bias: "none".into(),
        fan_in_fan_out: false,
        inference_mode: true,
        use_rslora: false,
        base_model_name_or_path: base.display().to_string(),
        medr1_vision: s.vision,
    };
    std::fs::write(out.join("adapter_config.json"), serde_json::to_string_pretty(&cfg)? + "\n")?;
    let mut stored = HashMap::new();
    for (name, t) in tensors {
        // The module's name in the base checkpoint's layout, then PEFT's prefix.
        let module = name
            .strip_suffix(".lora_A.weight")
            .or_else(|| name.strip_suffix(".lora_B.weight"))
            .with_context(|| format!("`{name}` is not an adapter tensor"))?;
        let stored_module = layout.stored_name(&format!("{module}.weight"));
        let stored_module = stored_module.strip_suffix(".weight").unwrap_or(&stored_module);
        stored.insert(
            format!("{PEFT_PREFIX}{stored_module}{}", &name[module.len()..]),
            t.to_dtype(DType::F32)?.contiguous()?,
        );
    }
    let tmp = out.join("adapter_model.safetensors.tmp");
    candle_core::safetensors::save(&stored, &tmp)?;
    std::fs::rename(&tmp, out.join("adapter_model.safetensors"))?;
    Ok(())
}

/// Reads a PEFT LoRA folder: its settings and its tensors under canonical names.
pub fn load_adapter(dir: &Path) -> Result<(LoraSettings, HashMap<String, Tensor>)> {
    let cf = dir.join("adapter_config.json");
    let cfg: PeftConfig = vlm::json::read_json(&cf, "a PEFT LoRA config")
        .with_context(|| format!("{}: is it a LoRA adapter folder?", cf.display()))?;
    if cfg.peft_type != "LORA" {
        bail!("{}: peft_type is {}, only LORA is supported", cf.display(), cfg.peft_type);
    }
    if cfg.use_rslora || cfg.fan_in_fan_out || cfg.bias != "none" {
        bail!("{}: use_rslora, fan_in_fan_out and bias other than \"none\" are not supported", cf.display());
    }
    let s = LoraSettings {
        r: cfg.r,
        alpha: cfg.lora_alpha,
        dropout: cfg.lora_dropout,
        target_modules: cfg.target_modules,
        vision: cfg.medr1_vision,
        base_bf16: false,
    };
    let tf = dir.join("adapter_model.safetensors");
    let raw =
        candle_core::safetensors::load(&tf, &Device::Cpu).with_context(|| format!("{}: cannot read", tf.display()))?;
    let mut out = HashMap::new();
    for (k, v) in raw {
        let rest = k
            .strip_prefix(PEFT_PREFIX)
            .with_context(|| format!("{}: tensor `{k}` lacks PEFT's `{PEFT_PREFIX}` prefix", tf.display()))?;
        // PEFT may keep the adapter name: `...q_proj.lora_A.default.weight`.
        let rest = rest
            .replace(".lora_A.default.weight", ".lora_A.weight")
            .replace(".lora_B.default.weight", ".lora_B.weight");
        let (module, kind) = rest
            .rsplit_once(".lora_")
            .with_context(|| format!("{}: tensor `{k}` is not lora_A / lora_B", tf.display()))?;
        let canonical = NameLayout::Nested.canonical_name(&format!("{module}.weight"));
        let canonical = canonical.strip_suffix(".weight").unwrap_or(&canonical).to_string();
        out.insert(format!("{canonical}.lora_{kind}"), v.to_dtype(DType::F32)?);
    }
    Ok((s, out))
}

/// Full weights with the adapters folded in: W + scaling * B A for each adapted layer, in the
/// base weight's dtype. Every adapter must find its layer.
pub fn merge(
    base: &BTreeMap<String, Tensor>,
    adapter_tensors: &HashMap<String, Tensor>,
    s: &LoraSettings,
) -> Result<BTreeMap<String, Tensor>> {
    let mut out = base.clone();
    for (module, a) in adapters(adapter_tensors, s, None)? {
        let wname = format!("{module}.weight");
        let w = out
            .get(&wname)
            .with_context(|| format!("the adapter for `{module}` has no layer `{wname}` in the base model"))?;
        let merged = (w.to_dtype(DType::F32)? + a.merged_delta()?)?.to_dtype(w.dtype())?;
        out.insert(wname, merged);
    }
    Ok(out)
}

/// `medr1 merge`: the base checkpoint with an adapter folded in, written as a full checkpoint in
/// the base's tensor-name layout and storage dtype. The adapter folder's preprocessor config (the
/// pixel budget it was trained at) wins over the base's. Returns how many layers were merged.
pub fn merge_checkpoint(base_dir: &Path, adapter_dir: &Path, out: &Path) -> Result<usize> {
    let (s, tensors) = load_adapter(adapter_dir)?;
    let ck = vlm::Checkpoint::open(base_dir, DType::F32)?;
    let base: BTreeMap<String, Tensor> = ck.model.params().into_iter().collect();
    let merged = merge(&base, &tensors, &s)?;
    let n = tensors.len() / 2;
    crate::save::save_model(out, base_dir, ck.layout, ck.stored_dtype, &merged.into_iter().collect())?;
    let pp = adapter_dir.join("preprocessor_config.json");
    if pp.is_file() && std::fs::canonicalize(adapter_dir).ok() != std::fs::canonicalize(out).ok() {
        std::fs::copy(&pp, out.join("preprocessor_config.json"))?;
    }
    Ok(n)
}
