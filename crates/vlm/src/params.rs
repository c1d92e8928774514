//! Where a model's parameters come from. The model asks for each tensor by its canonical
//! (legacy-layout) checkpoint name and shape; a source answers from a checkpoint, from a map of
//! tensors (e.g. `Var`s for training), or with random values (benchmarks). The names handed out are
//! recorded so gradients and saved checkpoints can be keyed by the checkpoint's own names.

use crate::error::{Result, VlmError};
use crate::weights::Weights;
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::sync::Mutex;

pub trait ParamSource {
    fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor>;
    /// Whether the checkpoint has this tensor (for optional ones such as an untied `lm_head`).
    fn has(&self, name: &str) -> bool;
}

/// Parameters read from a checkpoint's safetensors, converted to `dtype`.
pub struct CheckpointParams<'a> {
    pub weights: &'a Weights,
    pub dtype: DType,
    pub device: Device,
}

impl ParamSource for CheckpointParams<'_> {
    fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        self.weights.get(name, shape, self.dtype, &self.device)
    }
    fn has(&self, name: &str) -> bool {
        self.weights.contains(name)
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
}

impl RandomParams {
    pub fn new(dtype: DType, device: Device, std: f64, seed: u64) -> Self {
        RandomParams { dtype, device, std, seed, counter: Mutex::new(0) }
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
}

/// Wraps a source and records every (name, tensor) handed out.
pub struct Recorder<'a> {
    pub inner: &'a dyn ParamSource,
    pub seen: Mutex<Vec<(String, Tensor)>>,
}

impl<'a> Recorder<'a> {
    pub fn new(inner: &'a dyn ParamSource) -> Self {
        Recorder { inner, seen: Mutex::new(Vec::new()) }
    }
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let t = self.inner.get(name, shape)?;
        self.seen.lock().unwrap().push((name.to_string(), t.clone()));
        Ok(t)
    }
    pub fn has(&self, name: &str) -> bool {
        self.inner.has(name)
    }

    /// `{name}.weight` [out, in] and, when `bias`, `{name}.bias` [out] as a linear layer.
    pub fn linear(&self, name: &str, out_dim: usize, in_dim: usize, bias: bool) -> Result<crate::ops::Linear> {
        let w = self.get(&format!("{name}.weight"), &[out_dim, in_dim])?;
        let b = if bias { Some(self.get(&format!("{name}.bias"), &[out_dim])?) } else { None };
        Ok(crate::ops::Linear::named(w, b, format!("{name}.weight")))
    }
}
