//! Safetensors weights from a checkpoint directory: `model.safetensors` or the shards listed in
//! `model.safetensors.index.json`, memory-mapped, in either tensor-name layout:
//!
//! - legacy (Qwen2-VL-2B-Instruct, Med-R1): `model.*` (decoder), `visual.*`, `lm_head.weight`;
//! - transformers >= 5: `model.language_model.*`, `model.visual.*`, `lm_head.weight`.
//!
//! Names are handled in the legacy layout internally ("canonical" names); [`NameLayout`] maps them
//! back for saving so a checkpoint is written as it was read.

use crate::error::{Result, VlmError};
use candle_core::{safetensors::MmapedSafetensors, DType, Device, Tensor};
use std::collections::{BTreeSet, HashMap};
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
}

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
        for f in &files {
            if !f.exists() {
                return Err(VlmError::file(f, "weight file is missing (listed in model.safetensors.index.json)"));
            }
            // Open each file on its own first so that a corrupt one is named.
            let one = unsafe { MmapedSafetensors::new(f) }
                .map_err(|e| VlmError::file(f, format!("not a valid safetensors file: {e}")))?;
            for (name, view) in one.tensors() {
                let dt = match view.dtype() {
                    safetensors::Dtype::F32 => DType::F32,
                    safetensors::Dtype::BF16 => DType::BF16,
                    safetensors::Dtype::F16 => DType::F16,
                    other => {
                        return Err(VlmError::file(
                            f,
                            format!("tensor `{name}` has unsupported dtype {other:?} (expected F32, BF16 or F16)"),
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
        for (name, f) in stored {
            names.insert(layout.canonical_name(&name), (name, f));
        }
        let st = unsafe { MmapedSafetensors::multi(&files) }
            .map_err(|e| VlmError::file(&files[0], format!("cannot map: {e}")))?;
        let stored_dtype = dtype_counts.into_iter().max_by_key(|(_, c)| *c).map(|(d, _)| d).unwrap_or(DType::F32);
        Ok(Weights { st, names, layout, stored_dtype })
    }

    pub fn contains(&self, canonical: &str) -> bool {
        self.names.contains_key(canonical)
    }

    pub fn canonical_names(&self) -> impl Iterator<Item = &String> {
        self.names.keys()
    }

    /// Loads a tensor by canonical name, checks its shape against what the config implies, and
    /// converts it to `dtype` on `device`.
    pub fn get(&self, canonical: &str, shape: &[usize], dtype: DType, device: &Device) -> Result<Tensor> {
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
