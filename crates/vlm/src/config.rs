//! `config.json` of the two model families (Qwen2-VL and Qwen2.5-VL, told apart by `model_type`
//! or `architectures`), each in both layouts its checkpoints ship:
//!
//! - legacy (Qwen2-VL-2B-Instruct, Med-R1): text keys at the top level, `rope_scaling.mrope_section`,
//!   `vision_config.in_chans`;
//! - transformers >= 5: text keys nested under `text_config`, `rope_parameters` with `mrope_section`
//!   and `rope_theta`, `vision_config.in_channels`.
//!
//! In Qwen2.5-VL's files `vision_config.hidden_size` is the tower's own width (Qwen2-VL calls that
//! `embed_dim` and uses `hidden_size` for the merger's output, Qwen2.5-VL's `out_hidden_size`), the
//! MLP width is `intermediate_size` (no `mlp_ratio`), and `window_size` / `fullatt_block_indexes`
//! lay out the windowed attention.
//!
//! All are read into one [`Qwen2VlConfig`]; every missing or malformed key is an error naming the
//! file and the key.

use crate::error::{Result, VlmError};
use serde_json::Value;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq)]
pub struct TextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    /// Rotary channel pairs given to the (temporal, height, width) axes; sums to head_dim / 2.
    pub mrope_section: [usize; 3],
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
}

/// The model family: which vision tower the checkpoint has (the decoders are the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `Qwen2VLForConditionalGeneration`: LayerNorm, quick-GELU MLP, attention over whole images.
    Qwen2Vl,
    /// `Qwen2_5_VLForConditionalGeneration`: RMSNorm, SwiGLU MLP, windowed attention but in
    /// `fullatt_block_indexes`.
    Qwen2_5Vl,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::Qwen2Vl, Family::Qwen2_5Vl];

    /// The `model_type` transformers writes (and the command line's spelling).
    pub fn model_type(self) -> &'static str {
        match self {
            Family::Qwen2Vl => "qwen2_vl",
            Family::Qwen2_5Vl => "qwen2_5_vl",
        }
    }

    /// The transformers class.
    pub fn architecture(self) -> &'static str {
        match self {
            Family::Qwen2Vl => "Qwen2VLForConditionalGeneration",
            Family::Qwen2_5Vl => "Qwen2_5_VLForConditionalGeneration",
        }
    }

    pub fn parse(name: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.model_type() == name || f.architecture() == name)
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.model_type())
    }
}

impl std::str::FromStr for Family {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Family::parse(s).ok_or_else(|| format!("unknown model family `{s}` (qwen2_vl or qwen2_5_vl)"))
    }
}

#[cfg(feature = "clap")]
impl clap::ValueEnum for Family {
    fn value_variants<'a>() -> &'a [Self] {
        &Self::ALL
    }
    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.model_type()))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct VisionConfig {
    pub family: Family,
    pub depth: usize,
    /// The tower's width (Qwen2-VL's `embed_dim`, Qwen2.5-VL's `vision_config.hidden_size`).
    pub embed_dim: usize,
    pub num_heads: usize,
    /// The MLP's width (Qwen2-VL: `embed_dim * mlp_ratio`).
    pub intermediate_size: usize,
    pub in_channels: usize,
    /// Output width of the patch merger = the decoder's hidden size.
    pub out_hidden_size: usize,
    pub patch_size: usize,
    pub spatial_merge_size: usize,
    pub temporal_patch_size: usize,
    /// Qwen2.5-VL: the attention window's side in pixels (0: every block sees whole images).
    pub window_size: usize,
    /// Qwen2.5-VL: the blocks that attend over whole images.
    pub fullatt_block_indexes: Vec<usize>,
}

impl VisionConfig {
    pub fn head_dim(&self) -> usize {
        self.embed_dim / self.num_heads
    }
    /// Width of one flattened patch row: channels x temporal x patch x patch (1176 for Qwen2-VL).
    pub fn patch_dim(&self) -> usize {
        self.in_channels * self.temporal_patch_size * self.patch_size * self.patch_size
    }
    /// A window's side in merged tokens (`window_size // spatial_merge_size // patch_size`), or
    /// `None` when every block attends over whole images.
    pub fn window_tokens(&self) -> Option<usize> {
        let w = self.window_size / self.spatial_merge_size.max(1) / self.patch_size.max(1);
        (self.family == Family::Qwen2_5Vl && w > 0).then_some(w)
    }
    /// Whether block `i` attends over whole images (always for Qwen2-VL).
    pub fn full_attention(&self, i: usize) -> bool {
        self.window_tokens().is_none() || self.fullatt_block_indexes.contains(&i)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Qwen2VlConfig {
    pub family: Family,
    pub text: TextConfig,
    pub vision: VisionConfig,
    pub image_token_id: u32,
    pub video_token_id: u32,
    pub vision_start_token_id: u32,
    pub vision_end_token_id: u32,
    /// Which layout the file used, so a saved checkpoint can be written back the same way.
    pub nested_layout: bool,
}

/// Looks keys up in a JSON object and reports failures against the file.
struct Reader<'a> {
    file: &'a Path,
}

impl Reader<'_> {
    fn err(&self, key: &str, msg: impl std::fmt::Display) -> VlmError {
        VlmError::BadKey { file: self.file.to_path_buf(), key: key.to_string(), msg: msg.to_string() }
    }
    fn missing(&self, key: &str) -> VlmError {
        VlmError::MissingKey { file: self.file.to_path_buf(), key: key.to_string() }
    }
    /// First of `scopes` (objects, with their printed prefix) that holds `key`.
    fn find<'v>(&self, scopes: &[(&str, &'v Value)], key: &str) -> Result<(String, &'v Value)> {
        for (prefix, obj) in scopes {
            if let Some(v) = obj.get(key) {
                if !v.is_null() {
                    return Ok((format!("{prefix}{key}"), v));
                }
            }
        }
        Err(self.missing(&format!("{}{key}", scopes.first().map(|s| s.0).unwrap_or(""))))
    }
    fn usize(&self, scopes: &[(&str, &Value)], key: &str) -> Result<usize> {
        let (name, v) = self.find(scopes, key)?;
        v.as_u64()
            .map(|x| x as usize)
            .ok_or_else(|| self.err(&name, format!("expected a non-negative integer, got {v}")))
    }
    fn f64(&self, scopes: &[(&str, &Value)], key: &str) -> Result<f64> {
        let (name, v) = self.find(scopes, key)?;
        v.as_f64().ok_or_else(|| self.err(&name, format!("expected a number, got {v}")))
    }
    fn opt<'v>(&self, scopes: &[(&str, &'v Value)], key: &str) -> Option<&'v Value> {
        self.find(scopes, key).ok().map(|x| x.1)
    }
}

impl Qwen2VlConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| VlmError::file(path, format!("cannot read: {e}")))?;
        let json: Value =
            serde_json::from_str(&text).map_err(|e| VlmError::file(path, format!("not valid JSON: {e}")))?;
        Self::from_json(&json, path)
    }

    pub fn from_json(json: &Value, file: &Path) -> Result<Self> {
        let r = Reader { file };
        if !json.is_object() {
            return Err(VlmError::file(file, "expected a JSON object"));
        }
        let family = Self::family(json, &r)?;
        let null = Value::Null;
        let nested = json.get("text_config").filter(|v| v.is_object());
        let nested_layout = nested.is_some();
        let tc = nested.unwrap_or(&null);
        // Nested keys win; legacy files keep everything at the top level.
        let text_scopes: Vec<(&str, &Value)> =
            if nested_layout { vec![("text_config.", tc), ("", json)] } else { vec![("", json)] };
        let ts = &text_scopes[..];

        let hidden_size = r.usize(ts, "hidden_size")?;
        let num_attention_heads = r.usize(ts, "num_attention_heads")?;
        let head_dim = match r.opt(ts, "head_dim") {
            Some(v) => v.as_u64().ok_or_else(|| r.err("head_dim", "expected an integer"))? as usize,
            None => hidden_size / num_attention_heads.max(1),
        };
        // rope: transformers >= 5 `rope_parameters`, legacy `rope_scaling` + top-level `rope_theta`.
        let rope_obj = r.opt(ts, "rope_parameters").or_else(|| r.opt(ts, "rope_scaling"));
        let rope_key = if r.opt(ts, "rope_parameters").is_some() { "rope_parameters" } else { "rope_scaling" };
        let rope_obj = rope_obj.ok_or_else(|| r.missing("rope_scaling.mrope_section"))?;
        let sec = rope_obj.get("mrope_section").ok_or_else(|| r.missing(&format!("{rope_key}.mrope_section")))?;
        let sec: Vec<usize> = serde_json::from_value(sec.clone())
            .map_err(|_| r.err(&format!("{rope_key}.mrope_section"), "expected three integers"))?;
        if sec.len() != 3 {
            return Err(
                r.err(&format!("{rope_key}.mrope_section"), format!("expected three integers, got {}", sec.len()))
            );
        }
        let rope_theta = match rope_obj.get("rope_theta").and_then(|v| v.as_f64()) {
            Some(t) => t,
            None => r.f64(ts, "rope_theta").unwrap_or(1_000_000.0),
        };
        let text = TextConfig {
            vocab_size: r.usize(ts, "vocab_size")?,
            hidden_size,
            intermediate_size: r.usize(ts, "intermediate_size")?,
            num_hidden_layers: r.usize(ts, "num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads: r.usize(ts, "num_key_value_heads").unwrap_or(num_attention_heads),
            head_dim,
            rms_norm_eps: r.f64(ts, "rms_norm_eps").unwrap_or(1e-6),
            rope_theta,
            mrope_section: [sec[0], sec[1], sec[2]],
            max_position_embeddings: r.usize(ts, "max_position_embeddings").unwrap_or(32768),
            tie_word_embeddings: json
                .get("tie_word_embeddings")
                .or_else(|| tc.get("tie_word_embeddings"))
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
        };
        if num_attention_heads == 0
            || text.num_key_value_heads == 0
            || num_attention_heads % text.num_key_value_heads != 0
        {
            return Err(r.err(
                "num_key_value_heads",
                format!(
                    "{} attention heads cannot be shared by {} key/value heads",
                    num_attention_heads, text.num_key_value_heads
                ),
            ));
        }
        if 2 * sec.iter().sum::<usize>() != head_dim {
            return Err(r.err(
                &format!("{rope_key}.mrope_section"),
                format!(
                    "{:?} covers {} channels but head_dim is {head_dim} (twice the sum must equal it)",
                    sec,
                    2 * sec.iter().sum::<usize>()
                ),
            ));
        }

        let vc = json.get("vision_config").ok_or_else(|| r.missing("vision_config"))?;
        let vs: &[(&str, &Value)] = &[("vision_config.", vc)];
        let in_channels = match vc.get("in_channels").or_else(|| vc.get("in_chans")) {
            Some(v) => v.as_u64().ok_or_else(|| r.err("vision_config.in_channels", "expected an integer"))? as usize,
            None => 3,
        };
        let vision = match family {
            Family::Qwen2Vl => {
                let embed_dim = r.usize(vs, "embed_dim")?;
                VisionConfig {
                    family,
                    depth: r.usize(vs, "depth")?,
                    embed_dim,
                    num_heads: r.usize(vs, "num_heads")?,
                    intermediate_size: (embed_dim as f64 * r.f64(vs, "mlp_ratio").unwrap_or(4.0)) as usize,
                    in_channels,
                    // The merger's output width; transformers >= 5 calls it `out_hidden_size` in some dumps.
                    out_hidden_size: r
                        .usize(vs, "hidden_size")
                        .or_else(|_| r.usize(vs, "out_hidden_size"))
                        .unwrap_or(hidden_size),
                    patch_size: r.usize(vs, "patch_size").unwrap_or(14),
                    spatial_merge_size: r.usize(vs, "spatial_merge_size").unwrap_or(2),
                    temporal_patch_size: r.usize(vs, "temporal_patch_size").unwrap_or(2),
                    window_size: 0,
                    fullatt_block_indexes: vec![],
                }
            }
            Family::Qwen2_5Vl => {
                if let Some(act) = vc.get("hidden_act").and_then(|v| v.as_str()) {
                    if act != "silu" {
                        return Err(r.err("vision_config.hidden_act", format!("`{act}` is not supported (silu)")));
                    }
                }
                let full = match vc.get("fullatt_block_indexes") {
                    None | Some(Value::Null) => vec![7, 15, 23, 31],
                    Some(v) => serde_json::from_value::<Vec<usize>>(v.clone()).map_err(|_| {
                        r.err("vision_config.fullatt_block_indexes", "expected a list of block numbers")
                    })?,
                };
                VisionConfig {
                    family,
                    depth: r.usize(vs, "depth")?,
                    embed_dim: r.usize(vs, "hidden_size")?,
                    num_heads: r.usize(vs, "num_heads")?,
                    intermediate_size: r.usize(vs, "intermediate_size")?,
                    in_channels,
                    out_hidden_size: r.usize(vs, "out_hidden_size").unwrap_or(hidden_size),
                    patch_size: r.usize(vs, "patch_size").unwrap_or(14),
                    spatial_merge_size: r.usize(vs, "spatial_merge_size").unwrap_or(2),
                    temporal_patch_size: r.usize(vs, "temporal_patch_size").unwrap_or(2),
                    window_size: r.usize(vs, "window_size").unwrap_or(112),
                    fullatt_block_indexes: full,
                }
            }
        };
        if vision.num_heads == 0 || !vision.embed_dim.is_multiple_of(vision.num_heads) {
            return Err(r.err(
                "vision_config.num_heads",
                format!("the vision width {} is not divisible by {} heads", vision.embed_dim, vision.num_heads),
            ));
        }
        if !vision.head_dim().is_multiple_of(4) {
            return Err(r.err(
                "vision_config.num_heads",
                format!("the vision head width {} is not a multiple of 4 (2-D rotary)", vision.head_dim()),
            ));
        }
        if let Some(&b) = vision.fullatt_block_indexes.iter().find(|&&b| b >= vision.depth) {
            return Err(r.err(
                "vision_config.fullatt_block_indexes",
                format!("names block {b} but the tower has {} (depth)", vision.depth),
            ));
        }
        if vision.out_hidden_size != hidden_size {
            let key = match family {
                Family::Qwen2Vl => "vision_config.hidden_size",
                Family::Qwen2_5Vl => "vision_config.out_hidden_size",
            };
            return Err(r.err(
                key,
                format!(
                    "the patch merger outputs {} features but the decoder's hidden_size is {hidden_size}",
                    vision.out_hidden_size
                ),
            ));
        }
        let top: &[(&str, &Value)] = &[("", json), ("text_config.", tc)];
        let id = |k: &str| -> Result<u32> { Ok(r.usize(top, k)? as u32) };
        Ok(Qwen2VlConfig {
            family,
            text,
            vision,
            image_token_id: id("image_token_id")?,
            video_token_id: id("video_token_id")?,
            vision_start_token_id: id("vision_start_token_id")?,
            vision_end_token_id: id("vision_end_token_id")?,
            nested_layout,
        })
    }

    /// The family from `model_type`, else `architectures`; a file with neither is Qwen2-VL (the
    /// original Med-R1 checkpoints' family).
    fn family(json: &Value, r: &Reader) -> Result<Family> {
        if let Some(mt) = json.get("model_type").filter(|v| !v.is_null()) {
            let name = mt.as_str().ok_or_else(|| r.err("model_type", format!("expected a string, got {mt}")))?;
            return Family::parse(name).ok_or_else(|| {
                r.err("model_type", format!("`{name}` is not a supported model family (qwen2_vl or qwen2_5_vl)"))
            });
        }
        if let Some(archs) = json.get("architectures").and_then(|v| v.as_array()) {
            let names: Vec<&str> = archs.iter().filter_map(|a| a.as_str()).collect();
            return names.iter().find_map(|a| Family::parse(a)).ok_or_else(|| {
                r.err(
                    "architectures",
                    format!(
                        "{names:?} names no supported model (Qwen2VLForConditionalGeneration or Qwen2_5_VLForConditionalGeneration)"
                    ),
                )
            });
        }
        Ok(Family::Qwen2Vl)
    }

    /// Token ids a sampler must never emit: a sampled `<|image_pad|>` would desynchronise the image
    /// features from the placeholders in the training forward.
    pub fn vision_token_ids(&self) -> Vec<u32> {
        vec![self.image_token_id, self.video_token_id, self.vision_start_token_id, self.vision_end_token_id]
    }
}

/// `generation_config.json`: what `ask` and `serve` default to.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationConfig {
    pub eos_token_ids: Vec<u32>,
    pub pad_token_id: Option<u32>,
    pub temperature: Option<f64>,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
    pub do_sample: bool,
}

impl GenerationConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| VlmError::file(path, format!("cannot read: {e}")))?;
        let json: Value =
            serde_json::from_str(&text).map_err(|e| VlmError::file(path, format!("not valid JSON: {e}")))?;
        let eos = match json.get("eos_token_id") {
            Some(Value::Number(n)) => vec![n.as_u64().unwrap_or(0) as u32],
            Some(Value::Array(a)) => a.iter().filter_map(|v| v.as_u64()).map(|v| v as u32).collect(),
            Some(Value::Null) | None => vec![],
            Some(other) => {
                return Err(VlmError::BadKey {
                    file: path.into(),
                    key: "eos_token_id".into(),
                    msg: format!("expected an id or a list, got {other}"),
                })
            }
        };
        Ok(GenerationConfig {
            eos_token_ids: eos,
            pad_token_id: json.get("pad_token_id").and_then(|v| v.as_u64()).map(|v| v as u32),
            temperature: json.get("temperature").and_then(|v| v.as_f64()),
            top_k: json.get("top_k").and_then(|v| v.as_u64()).map(|v| v as usize),
            top_p: json.get("top_p").and_then(|v| v.as_f64()),
            do_sample: json.get("do_sample").and_then(|v| v.as_bool()).unwrap_or(false),
        })
    }
}

/// `preprocessor_config.json` (Qwen2VLImageProcessor's settings).
#[derive(Debug, Clone, PartialEq)]
pub struct PreprocessorConfig {
    pub min_pixels: usize,
    pub max_pixels: usize,
    pub patch_size: usize,
    pub temporal_patch_size: usize,
    pub merge_size: usize,
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
    pub rescale_factor: f64,
    pub do_resize: bool,
    pub do_rescale: bool,
    pub do_normalize: bool,
    pub do_convert_rgb: bool,
}

impl Default for PreprocessorConfig {
    /// Qwen2-VL-2B-Instruct's processor.
    fn default() -> Self {
        PreprocessorConfig {
            min_pixels: 56 * 56,
            max_pixels: 28 * 28 * 1280,
            patch_size: 14,
            temporal_patch_size: 2,
            merge_size: 2,
            // OpenAI CLIP's constants as the processor's config writes them (float32 rounds them).
            #[allow(clippy::excessive_precision)]
            image_mean: [0.48145466, 0.4578275, 0.40821073],
            #[allow(clippy::excessive_precision)]
            image_std: [0.26862954, 0.26130258, 0.27577711],
            rescale_factor: 1.0 / 255.0,
            do_resize: true,
            do_rescale: true,
            do_normalize: true,
            do_convert_rgb: true,
        }
    }
}

impl PreprocessorConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| VlmError::file(path, format!("cannot read: {e}")))?;
        let json: Value =
            serde_json::from_str(&text).map_err(|e| VlmError::file(path, format!("not valid JSON: {e}")))?;
        let d = Self::default();
        let bad = |k: &str, m: &str| VlmError::BadKey { file: PathBuf::from(path), key: k.into(), msg: m.into() };
        let u = |k: &str, dflt: usize| -> Result<usize> {
            match json.get(k) {
                None | Some(Value::Null) => Ok(dflt),
                Some(v) => v.as_u64().map(|x| x as usize).ok_or_else(|| bad(k, "expected an integer")),
            }
        };
        let b = |k: &str, dflt: bool| json.get(k).and_then(|v| v.as_bool()).unwrap_or(dflt);
        let tri = |k: &str, dflt: [f32; 3]| -> Result<[f32; 3]> {
            match json.get(k) {
                None | Some(Value::Null) => Ok(dflt),
                Some(v) => {
                    let xs: Vec<f32> =
                        serde_json::from_value(v.clone()).map_err(|_| bad(k, "expected three numbers"))?;
                    if xs.len() != 3 {
                        return Err(bad(k, "expected three numbers"));
                    }
                    Ok([xs[0], xs[1], xs[2]])
                }
            }
        };
        // transformers >= 5 may store the bounds as `size: {shortest_edge, longest_edge}`.
        let size = json.get("size");
        let min_dflt = size
            .and_then(|s| s.get("shortest_edge"))
            .and_then(|v| v.as_u64())
            .map(|v| v as usize)
            .unwrap_or(d.min_pixels);
        let max_dflt = size
            .and_then(|s| s.get("longest_edge"))
            .and_then(|v| v.as_u64())
            .map(|v| v as usize)
            .unwrap_or(d.max_pixels);
        let cfg = PreprocessorConfig {
            min_pixels: u("min_pixels", min_dflt)?,
            max_pixels: u("max_pixels", max_dflt)?,
            patch_size: u("patch_size", d.patch_size)?,
            temporal_patch_size: u("temporal_patch_size", d.temporal_patch_size)?,
            merge_size: u("merge_size", d.merge_size)?,
            image_mean: tri("image_mean", d.image_mean)?,
            image_std: tri("image_std", d.image_std)?,
            rescale_factor: json.get("rescale_factor").and_then(|v| v.as_f64()).unwrap_or(d.rescale_factor),
            do_resize: b("do_resize", true),
            do_rescale: b("do_rescale", true),
            do_normalize: b("do_normalize", true),
            do_convert_rgb: b("do_convert_rgb", true),
        };
        if cfg.min_pixels > cfg.max_pixels {
            return Err(bad(
                "min_pixels",
                &format!("min_pixels {} exceeds max_pixels {}", cfg.min_pixels, cfg.max_pixels),
            ));
        }
        if let Some(r) = json.get("resample").and_then(|v| v.as_u64()) {
            if r != 3 {
                return Err(bad("resample", &format!("only bicubic (3) resampling is implemented, got {r}")));
            }
        }
        Ok(cfg)
    }
}
