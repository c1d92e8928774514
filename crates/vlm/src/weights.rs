//! Safetensors weights from a checkpoint directory: `model.safetensors` or the shards listed in
//! `model.safetensors.index.json`, memory-mapped, in either tensor-name layout:
//!
//! - legacy (Qwen2-VL-2B-Instruct, Med-R1): `model.*` (decoder), `visual.*`, `lm_head.weight`;
//! - transformers >= 5: `model.language_model.*`, `model.visual.*`, `lm_head.weight`.
//!
//! Names are handled in the legacy layout internally ("canonical" names); [`NameLayout`] maps them
//! back for saving so a checkpoint is written as it was read.

use crate::error::{Result, VlmError};
use crate::kernels::int8::PackedI8;
use candle_core::{safetensors::MmapedSafetensors, DType, Device, Tensor};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameLayout {
    Legacy,
    Nested,
}

impl NameLayout {
    /// Canonical (legacy) name -> the name stored in a file of this layout.
    pub fn stored_name(&self, canonical: &str) -> String {
        match self {
            NameLayout::Legacy => canonical.to_string(),
            NameLayout::Nested => {
                if let Some(rest) = canonical.strip_prefix("visual.") {
                    format!("model.visual.{rest}")
                } else if let Some(rest) = canonical.strip_prefix("model.") {
                    format!("model.language_model.{rest}")
                } else {
                    canonical.to_string()
                }
            }
        }
    }
    /// Stored name -> canonical (legacy) name.
    pub fn canonical_name(&self, stored: &str) -> String {
        match self {
            NameLayout::Legacy => stored.to_string(),
            NameLayout::Nested => {
                if let Some(rest) = stored.strip_prefix("model.language_model.") {
                    format!("model.{rest}")
                } else if let Some(rest) = stored.strip_prefix("model.visual.") {
                    format!("visual.{rest}")
                } else {
                    stored.to_string()
                }
            }
        }
    }
}

/// The checkpoint's tensors, opened lazily from memory-mapped files.
pub struct Weights {
    st: MmapedSafetensors,
    /// canonical name -> (stored name, file it lives in)
    names: HashMap<String, (String, PathBuf)>,
    pub layout: NameLayout,
    /// dtype the tensors are stored in (the most common one).
    pub stored_dtype: DType,
    /// Canonical names of weights stored quantized (`medr1 quantize`): I8 values in the packed
    /// layout of `kernels::int8`, with per-channel scales in `{name}_scale`.
    int8: HashSet<String>,
}

/// The suffix of an int8 weight's per-channel scales.
pub const INT8_SCALE_SUFFIX: &str = "_scale";

impl Weights {
    /// Opens `dir/model.safetensors`, or the shards of `dir/model.safetensors.index.json`.
    pub fn open(dir: &Path) -> Result<Self> {
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        let files: Vec<PathBuf> = if index.exists() {
            let json: serde_json::Value = crate::json::read_json(&index, "valid JSON")?;
            let map = json
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| VlmError::MissingKey { file: index.clone(), key: "weight_map".into() })?;
            let shards: BTreeSet<String> = map.values().filter_map(|v| v.as_str().map(String::from)).collect();
            if shards.is_empty() {
                return Err(VlmError::BadKey {
                    file: index.clone(),
                    key: "weight_map".into(),
                    msg: "lists no files".into(),
                });
            }
            shards.into_iter().map(|s| dir.join(s)).collect()
        } else if single.exists() {
            vec![single]
        } else {
            return Err(VlmError::file(
                dir,
                "no model.safetensors or model.safetensors.index.json in the checkpoint directory",
            ));
        };
        let mut names = HashMap::new();
        let mut stored: Vec<(String, PathBuf)> = Vec::new();
        let mut dtype_counts: HashMap<DType, usize> = HashMap::new();
        let mut int8_found: Vec<(String, PathBuf)> = Vec::new();
        for f in &files {
            if !f.exists() {
                return Err(VlmError::file(f, "weight file is missing (listed in model.safetensors.index.json)"));
            }
            // Open each file on its own first so that a corrupt one is named.
            let one = unsafe { MmapedSafetensors::new(f) }
                .map_err(|e| VlmError::file(f, format!("not a valid safetensors file: {e}")))?;
            for (name, view) in one.tensors() {
                let dt = match view.dtype() {
                    safetensors::Dtype::I8 => {
                        int8_found.push((name.clone(), f.clone()));
                        stored.push((name, f.clone()));
                        continue;
                    }
                    safetensors::Dtype::F32 => DType::F32,
                    safetensors::Dtype::BF16 => DType::BF16,
                    safetensors::Dtype::F16 => DType::F16,
                    other => {
                        return Err(VlmError::file(
                            f,
                            format!("tensor `{name}` has unsupported dtype {other:?} (expected F32, BF16, F16, or I8 from `medr1 quantize`)"),
                        ))
                    }
                };
                *dtype_counts.entry(dt).or_default() += 1;
                stored.push((name, f.clone()));
            }
        }
        let layout =
            if stored.iter().any(|(n, _)| n.starts_with("model.language_model.") || n.starts_with("model.visual.")) {
                NameLayout::Nested
            } else {
                NameLayout::Legacy
            };
        let all: HashSet<&str> = stored.iter().map(|(n, _)| n.as_str()).collect();
        let mut int8_set = HashSet::new();
        for (name, f) in &int8_found {
            if !all.contains(format!("{name}{INT8_SCALE_SUFFIX}").as_str()) {
                return Err(VlmError::file(
                    f,
                    format!("int8 tensor `{name}` has no `{name}{INT8_SCALE_SUFFIX}` (per-channel scales)"),
                ));
            }
            int8_set.insert(layout.canonical_name(name));
        }
        for (name, f) in stored {
            names.insert(layout.canonical_name(&name), (name, f));
        }
        let st = unsafe { MmapedSafetensors::multi(&files) }
            .map_err(|e| VlmError::file(&files[0], format!("cannot map: {e}")))?;
        let stored_dtype = dtype_counts.into_iter().max_by_key(|(_, c)| *c).map(|(d, _)| d).unwrap_or(DType::F32);
        Ok(Weights { st, names, layout, stored_dtype, int8: int8_set })
    }

    /// The [n, k] weight `canonical` as stored in int8; None when it is stored as floats.
    pub fn get_int8(&self, canonical: &str, n: usize, k: usize) -> Result<Option<PackedI8>> {
        if !self.int8.contains(canonical) {
            return Ok(None);
        }
        let (stored, file) = &self.names[canonical];
        let view = self.st.get(stored).map_err(|e| VlmError::file(file, format!("tensor `{stored}`: {e}")))?;
        let data: Vec<i8> = view.data().iter().map(|&b| b as i8).collect();
        let scales = self.get(&format!("{canonical}{INT8_SCALE_SUFFIX}"), &[n], DType::F32, &Device::Cpu)?;
        let scales: Vec<f32> = scales.to_vec1()?;
        PackedI8::from_parts(n, k, data, scales).map(Some).ok_or_else(|| {
            VlmError::file(
                file,
                format!("int8 tensor `{stored}` holds {} values, which is not the packed size of [{n}, {k}] that config.json implies", view.data().len()),
            )
        })
    }

    pub fn contains(&self, canonical: &str) -> bool {
        self.names.contains_key(canonical)
    }

    pub fn canonical_names(&self) -> impl Iterator<Item = &String> {
        self.names.keys()
    }

    /// Loads a tensor by canonical name, checks its shape against what the config implies, and
    /// converts it to `dtype` on `device`.
    /// An int8 weight is dequantized to `dtype`.
    pub fn get(&self, canonical: &str, shape: &[usize], dtype: DType, device: &Device) -> Result<Tensor> {
        if let (true, &[n, k]) = (self.int8.contains(canonical), shape) {
            let p = self.get_int8(canonical, n, k)?.expect("listed as int8");
            return Ok(Tensor::from_vec(p.dequantize(), (n, k), device)?.to_dtype(dtype)?);
        }
        let (stored, file) = self.names.get(canonical).ok_or_else(|| {
            VlmError::Input(format!(
                "checkpoint has no tensor `{}` (needed by config.json's architecture)",
                self.layout.stored_name(canonical)
            ))
        })?;
        let t = self.st.load(stored, device).map_err(|e| VlmError::file(file, format!("tensor `{stored}`: {e}")))?;
        if t.dims() != shape {
            return Err(VlmError::file(
                file,
                format!("tensor `{stored}` has shape {:?} but config.json implies {:?}", t.dims(), shape),
            ));
        }
        Ok(t.to_dtype(dtype)?)
    }
}
