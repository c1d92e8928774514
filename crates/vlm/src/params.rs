//! Where a model's parameters come from. The model asks for each tensor by its canonical
//! (legacy-layout) checkpoint name and shape; a source answers from a checkpoint, from a map of
//! tensors (e.g. `Var`s for training), or with random values (benchmarks). The names handed out are
//! recorded so gradients and saved checkpoints can be keyed by the checkpoint's own names.

use crate::embedding::Embedding;
use crate::error::{Result, VlmError};
use crate::kernels::int8::PackedI8;
use crate::kernels::q4::PackedQ4;
use crate::linear::{Linear, LinearKernel};
use crate::precision::Precision;
use crate::weights::Weights;
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::sync::Mutex;

pub trait ParamSource {
    fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor>;
    /// Whether the checkpoint has this tensor (for optional ones such as an untied `lm_head`).
    fn has(&self, name: &str) -> bool;
    /// The precision linear weights and the embedding table are handed out in: float32 sources
    /// hand out everything as `get` does; bf16 ones give those tables in bfloat16 (the rest in
    /// float32); int8 ones quantize them ([`ParamSource::get_int8`]).
    fn precision(&self) -> Precision {
        Precision::F32
    }
    /// The [n, k] weight `name` in int8 for an int8 source: read as stored when the checkpoint is
    /// already int8, otherwise quantized from `get` as it is read.
    fn get_int8(&self, name: &str, n: usize, k: usize) -> Result<PackedI8> {
        quantized(self, name, n, k)
    }
}

/// `get` as float32, handed to `quantize` in place (no second float copy: the 2B embedding is
/// 0.93 GB in float32); the float tensor lives only until it is quantized, so loading holds one
/// float weight at a time.
fn quantized_with<S: ParamSource + ?Sized, Q>(
    source: &S,
    name: &str,
    shape: [usize; 2],
    quantize: impl Fn(&[f32]) -> Q,
) -> Result<Q> {
    let w = source.get(name, &shape)?.to_dtype(DType::F32)?;
    match crate::kernels::dense::with_f32(&w, &quantize) {
        Some(q) => Ok(q),
        None => Ok(quantize(&w.flatten_all()?.to_vec1::<f32>()?)),
    }
}

/// Per-channel int8 of the [n, k] weight `name`.
fn quantized<S: ParamSource + ?Sized>(source: &S, name: &str, n: usize, k: usize) -> Result<PackedI8> {
    quantized_with(source, name, [n, k], |v| PackedI8::quantize(v, n, k))
}

/// Parameters read from a checkpoint's safetensors for a model in `precision` (float tensors
/// converted to its dtype; int8 tables read as stored when the checkpoint is already int8).
pub struct CheckpointParams<'a> {
    pub weights: &'a Weights,
    pub precision: Precision,
    pub device: Device,
}

impl ParamSource for CheckpointParams<'_> {
    fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        self.weights.get(name, shape, self.precision.dtype(), &self.device)
    }
    fn has(&self, name: &str) -> bool {
        self.weights.contains(name)
    }
    fn precision(&self) -> Precision {
        self.precision
    }
    fn get_int8(&self, name: &str, n: usize, k: usize) -> Result<PackedI8> {
        match self.weights.get_int8(name, n, k)? {
            Some(p) => Ok(p),
            None => quantized(self, name, n, k),
        }
    }
}

/// Parameters from a map of canonical names to tensors.
pub struct MapParams<'a>(pub &'a HashMap<String, Tensor>);

impl ParamSource for MapParams<'_> {
    fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let t = self.0.get(name).ok_or_else(|| VlmError::input(format!("no tensor `{name}`")))?;
        if t.dims() != shape {
            return Err(VlmError::input(format!("tensor `{name}` has shape {:?}, expected {:?}", t.dims(), shape)));
        }
        Ok(t.clone())
    }
    fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
}

/// Normal(0, std) weights, ones for norms, zeros for biases: for benchmarks at real shapes
/// without a download. Seeded, so two runs build the same model.
pub struct RandomParams {
    pub dtype: DType,
    pub device: Device,
    pub std: f64,
    pub seed: u64,
    pub counter: Mutex<u64>,
    /// How linear weights and the embedding are handed out (the same draws in every precision).
    pub precision: Precision,
}

impl RandomParams {
    pub fn new(dtype: DType, device: Device, std: f64, seed: u64) -> Self {
        RandomParams { dtype, device, std, seed, counter: Mutex::new(0), precision: Precision::F32 }
    }

    /// The source for a model in `precision`.
    pub fn with_precision(precision: Precision, device: Device, std: f64, seed: u64) -> Self {
        RandomParams { precision, ..Self::new(precision.dtype(), device, std, seed) }
    }
}

impl ParamSource for RandomParams {
    fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let is_norm = name.contains("norm") || name.contains("ln_q");
        let t = if is_norm && name.ends_with(".weight") {
            Tensor::ones(shape, self.dtype, &self.device)?
        } else if name.ends_with(".bias") {
            Tensor::zeros(shape, self.dtype, &self.device)?
        } else {
            use rand::{Rng, SeedableRng};
            let mut c = self.counter.lock().unwrap();
            *c += 1;
            let mut rng = rand::rngs::StdRng::seed_from_u64(self.seed.wrapping_mul(1_000_003).wrapping_add(*c));
            let n: usize = shape.iter().product();
            // Uniform with the requested std: fast to draw for billions of values.
            let a = (3.0f64).sqrt() * self.std;
            let v: Vec<f32> = (0..n).map(|_| rng.random_range(-a..a) as f32).collect();
            Tensor::from_vec(v, shape, &self.device)?.to_dtype(self.dtype)?
        };
        Ok(t)
    }
    fn has(&self, _name: &str) -> bool {
        false
    }
    fn precision(&self) -> Precision {
        self.precision
    }
}

/// A source seen through a name prefix, as candle's `VarBuilder` scopes names: the model asks
/// `p.pp("model").pp("layers").pp(0).get("input_layernorm.weight", ..)` for
/// `model.layers.0.input_layernorm.weight`.
#[derive(Clone, Copy)]
pub struct Params<'a> {
    source: &'a dyn ParamSource,
    prefix: Option<&'a str>,
}

/// An owned prefix for [`Params`] (prefixes are built as the model descends into its modules).
pub struct Scoped<'a> {
    source: &'a dyn ParamSource,
    prefix: String,
}

impl<'a> Params<'a> {
    pub fn new(source: &'a dyn ParamSource) -> Self {
        Params { source, prefix: None }
    }

    fn path(&self, name: &str) -> String {
        match self.prefix {
            Some(p) => format!("{p}.{name}"),
            None => name.to_string(),
        }
    }

    /// The scope `{prefix}.{name}`.
    pub fn pp(&self, name: impl std::fmt::Display) -> Scoped<'a> {
        Scoped { source: self.source, prefix: self.path(&name.to_string()) }
    }

    /// This scope's full name (the module's checkpoint name).
    pub fn name(&self) -> &str {
        self.prefix.unwrap_or("")
    }

    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        self.source.get(&self.path(name), shape)
    }

    pub fn has(&self, name: &str) -> bool {
        self.source.has(&self.path(name))
    }

    /// This scope as a linear layer: `weight` [out, in] and, when `bias`, `bias` [out]. An int8
    /// source gives the weight an int8 kernel (the bias stays float).
    pub fn linear(&self, out_dim: usize, in_dim: usize, bias: bool) -> Result<Linear> {
        // The weight first, then the bias: the load order is the checkpoint walk's order.
        let kernel = match self.source.precision() {
            // The decoder's layers in 4 bits; the vision tower's (prefill only) and an untied LM
            // head in int8.
            Precision::Q4 if self.name().starts_with("model.") => {
                let q = quantized_with(self.source, &self.path("weight"), [out_dim, in_dim], |v| {
                    PackedQ4::quantize(v, out_dim, in_dim)
                })?;
                LinearKernel::Q4(std::sync::Arc::new(q))
            }
            Precision::Int8 | Precision::Q4 => {
                LinearKernel::Int8(std::sync::Arc::new(self.source.get_int8(&self.path("weight"), out_dim, in_dim)?))
            }
            Precision::Bf16 => LinearKernel::Bf16(self.get("weight", &[out_dim, in_dim])?.to_dtype(DType::BF16)?),
            Precision::F32 => LinearKernel::for_weight(self.get("weight", &[out_dim, in_dim])?),
        };
        let bias = if bias { Some(self.get("bias", &[out_dim])?) } else { None };
        Ok(Linear { kernel, bias, name: self.name().to_string(), lora: None })
    }

    /// The table `name` [rows, dim] as an embedding, in the source's precision.
    pub fn embedding(&self, name: &str, rows: usize, dim: usize) -> Result<Embedding> {
        Ok(match self.source.precision() {
            Precision::Int8 | Precision::Q4 => {
                Embedding::Int8(std::sync::Arc::new(self.source.get_int8(&self.path(name), rows, dim)?))
            }
            Precision::Bf16 => Embedding::Bf16(self.get(name, &[rows, dim])?.to_dtype(DType::BF16)?),
            Precision::F32 => Embedding::Dense(self.get(name, &[rows, dim])?),
        })
    }
}

impl<'a> Scoped<'a> {
    /// The scope as [`Params`] (borrowing its prefix).
    pub fn params(&self) -> Params<'_> {
        Params { source: self.source, prefix: Some(&self.prefix) }
    }

    pub fn pp(&self, name: impl std::fmt::Display) -> Scoped<'a> {
        Scoped { source: self.source, prefix: format!("{}.{name}", self.prefix) }
    }

    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        self.params().get(name, shape)
    }

    pub fn linear(&self, out_dim: usize, in_dim: usize, bias: bool) -> Result<Linear> {
        self.params().linear(out_dim, in_dim, bias)
    }

    pub fn embedding(&self, name: &str, rows: usize, dim: usize) -> Result<Embedding> {
        self.params().embedding(name, rows, dim)
    }

    pub fn name(&self) -> &str {
        &self.prefix
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_join_names_with_dots() {
        let t = Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap();
        let map = HashMap::from([("a.b.0.w.weight".to_string(), t.clone()), ("top".to_string(), t)]);
        let src = MapParams(&map);
        let p = Params::new(&src);
        assert!(p.get("top", &[2, 3]).is_ok());
        let w = p.pp("a").pp("b").pp(0).pp("w");
        assert_eq!(w.name(), "a.b.0.w");
        let lin = w.linear(2, 3, false).unwrap();
        assert_eq!(lin.name, "a.b.0.w");
        let err = w.get("bias", &[2]).unwrap_err().to_string();
        assert!(err.contains("a.b.0.w.bias"), "{err}");
    }
}
