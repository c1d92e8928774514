//! The int8 checkpoint `medr1 quantize` writes: a `model.safetensors` that loads in seconds (no
//! quantization at load) beside the source checkpoint's config, tokenizer and processor files.
//!
//! Format (`quantization_config.json`: `{"quant_method": "medr1-int8", "layout": "vnni16x4", ...}`):
//! - every linear weight and the token embedding: `{name}` as I8 of shape `[ceil(n/16)*16,
//!   ceil(k/4)*4]` holding the packed layout of [`crate::kernels::int8`] (blocks of 16 output
//!   channels, the reduction axis in steps of 4: byte `[c/16][kk/4][c%16][kk%4]`, zero-padded),
//!   and `{name}_scale` as F32 `[n]` (weight ~= q * scale, symmetric, per output channel);
//! - everything else (norms, biases, the patch embedding) as F32, in the source's name layout.
//!
//! Loaded with `--dtype int8` the tables are used as stored; loaded in f32 or bf16 they are
//! dequantized.

use crate::error::{Result, VlmError};
use crate::kernels::int8::PackedI8;
use crate::linear::ParamWalk;
use crate::model::Qwen2Vl;
use crate::weights::{NameLayout, INT8_SCALE_SUFFIX};
use candle_core::DType;
use safetensors::tensor::{Dtype, View};
use std::borrow::Cow;
use std::path::Path;

/// The name `quantization_config.json` gives this format.
pub const QUANT_METHOD: &str = "medr1-int8";

/// Raw little-endian bytes with a dtype and shape, for the safetensors writer.
struct Raw {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl View for &Raw {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

fn f32_raw(v: &[f32], shape: Vec<usize>) -> Raw {
    Raw { dtype: Dtype::F32, shape, bytes: v.iter().flat_map(|x| x.to_le_bytes()).collect() }
}

fn int8_raw(p: &PackedI8) -> Raw {
    let rows = p.n.div_ceil(crate::kernels::int8::BLOCK) * crate::kernels::int8::BLOCK;
    let bytes: Vec<u8> = p.data().iter().map(|&q| q as u8).collect();
    Raw { dtype: Dtype::I8, shape: vec![rows, bytes.len() / rows], bytes }
}

/// Writes an int8 model's weights to `dir/model.safetensors` (via a temporary file, renamed last)
/// and `dir/quantization_config.json`. The model must have been loaded in int8.
pub fn save_int8(model: &Qwen2Vl, layout: NameLayout, dir: &Path) -> Result<()> {
    let walk = model.walk_params(ParamWalk::keeping_int8());
    let int8 = walk.int8.unwrap_or_default();
    if int8.is_empty() {
        return Err(VlmError::input("the model holds no int8 weights (load it with --dtype int8)"));
    }
    let mut raws: Vec<(String, Raw)> = Vec::new();
    for (name, t) in &walk.tensors {
        let v: Vec<f32> = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        raws.push((layout.stored_name(name), f32_raw(&v, t.dims().to_vec())));
    }
    for (name, p) in &int8 {
        let stored = layout.stored_name(name);
        raws.push((format!("{stored}{INT8_SCALE_SUFFIX}"), f32_raw(&p.scales, vec![p.n])));
        raws.push((stored, int8_raw(p)));
    }
    let tmp = dir.join("model.safetensors.tmp");
    safetensors::serialize_to_file(raws.iter().map(|(n, r)| (n.clone(), r)), None, &tmp)
        .map_err(|e| VlmError::file(&tmp, format!("cannot write: {e}")))?;
    std::fs::rename(&tmp, dir.join("model.safetensors"))
        .map_err(|e| VlmError::file(dir.join("model.safetensors"), format!("cannot write: {e}")))?;
    let cfg = serde_json::json!({
        "quant_method": QUANT_METHOD,
        "layout": "vnni16x4",
        "bits": 8,
        "symmetric": true,
        "granularity": "per-output-channel",
        "scale_suffix": INT8_SCALE_SUFFIX,
        "tensors": int8.len(),
    });
    let f = dir.join("quantization_config.json");
    std::fs::write(&f, serde_json::to_string_pretty(&cfg).expect("JSON") + "\n")
        .map_err(|e| VlmError::file(&f, format!("cannot write: {e}")))?;
    Ok(())
}
