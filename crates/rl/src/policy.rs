//! The policy being trained: a Qwen2-VL whose trainable parameters are `Var`s (float32), with
//! the vision tower optionally frozen (its weights then stay plain tensors and go through the
//! frozen-weight matmul, so no gradient is ever computed for them). The reference model is a
//! separate, inference-only copy of the starting weights that shares nothing mutable.

use anyhow::Result;
use candle_core::{DType, Tensor, Var};
use std::collections::HashMap;
use vlm::config::Qwen2VlConfig;
use vlm::model::Qwen2Vl;
use vlm::params::MapParams;

pub struct Policy {
    pub cfg: Qwen2VlConfig,
    /// Trainable parameters by canonical name.
    pub vars: Vec<(String, Var)>,
    /// Frozen parameters by canonical name.
    pub frozen: HashMap<String, Tensor>,
    /// The model built on the parameters above (its forward tracks gradients).
    pub model: Qwen2Vl,
    /// LoRA: `vars` are the adapters, `frozen` the whole base model.
    pub lora: Option<crate::lora::LoraSettings>,
    /// Set when layers are recomputed in the backward pass: take gradients with [`Policy::backward`].
    pub recompute: Option<std::sync::Arc<vlm::recompute::SideGrads>>,
    /// LoRA dropout's seed for the next training forward (see [`Policy::set_dropout_seed`]).
    pub dropout_seed: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Policy {
    /// Trainable copy of `start` (float32); vision tower frozen when asked.
    pub fn new(start: &Qwen2Vl, freeze_vision: bool) -> Result<Policy> {
        let mut vars = Vec::new();
        let mut frozen = HashMap::new();
        let mut map = HashMap::new();
        for (name, t) in &start.params() {
            if map.contains_key(name) {
                continue; // tied weights appear twice
            }
            let t = t.to_dtype(DType::F32)?;
            if freeze_vision && name.starts_with("visual.") {
                frozen.insert(name.clone(), t.clone());
                map.insert(name.clone(), t);
            } else {
                // A fresh copy: the policy must never alias the starting model's storage.
                let v = Var::from_tensor(&t.copy()?)?;
                map.insert(name.clone(), v.as_tensor().clone());
                vars.push((name.clone(), v));
            }
        }
        let model = Qwen2Vl::load(&start.cfg, &MapParams(&map))?;
        Ok(Policy {
            cfg: start.cfg.clone(),
            vars,
            frozen,
            model,
            lora: None,
            recompute: None,
            dropout_seed: Default::default(),
        })
    }

    /// LoRA on `start`: its weights stay frozen and are shared, not copied (float32 ones are used
    /// as they are), and only the adapters are trainable.
    /// With `base_bf16` the linear layers' weights are kept in bfloat16 (shared when the start
    /// model already holds them so) and everything else in float32.
    pub fn new_lora(start: &Qwen2Vl, s: &crate::lora::LoraSettings, seed: u64) -> Result<Policy> {
        let mut linear_weights = std::collections::HashSet::new();
        let mut probe = Qwen2Vl::load(&start.cfg, &MapParams(&start.params().into_iter().collect()))?;
        for lin in probe.linears_mut() {
            linear_weights.insert(format!("{}.weight", lin.name));
        }
        drop(probe);
        let mut frozen = HashMap::new();
        for (name, t) in &start.params() {
            let dt = if s.base_bf16 && linear_weights.contains(name) { DType::BF16 } else { DType::F32 };
            frozen.insert(name.clone(), t.to_dtype(dt)?);
        }
        let mut model = Qwen2Vl::load(&start.cfg, &MapParams(&frozen))?;
        let mut vars = Vec::new();
        let mut tensors = HashMap::new();
        for (module, a, b) in crate::lora::init(&mut model, s, seed)? {
            let (na, nb) = crate::lora::names(&module);
            for (n, t) in [(na, a), (nb, b)] {
                let v = Var::from_tensor(&t)?;
                tensors.insert(n.clone(), v.as_tensor().clone());
                vars.push((n, v));
            }
        }
        let dropout_seed: std::sync::Arc<std::sync::atomic::AtomicU64> = Default::default();
        vlm::linear::attach_lora(model.linears_mut(), &crate::lora::adapters(&tensors, s, Some(&dropout_seed))?);
        Ok(Policy { cfg: start.cfg.clone(), vars, frozen, model, lora: Some(s.clone()), recompute: None, dropout_seed })
    }

    /// Seeds LoRA dropout for the next training forward (and its recomputation): a function of
    /// the update count and the micro-batch, so runs and resumed runs draw the same masks.
    pub fn set_dropout_seed(&self, updates: u64, micro_batch: usize) {
        let s = crate::rollout::row_seed(0x10_4a_d0, updates, micro_batch as u64);
        self.dropout_seed.store(s, std::sync::atomic::Ordering::SeqCst);
    }

    /// Per-layer activation recomputation from now on (memory for compute: each layer runs twice).
    pub fn enable_recompute(&mut self) {
        self.recompute = Some(self.model.enable_recompute());
    }

    /// The gradients of `loss` with respect to every parameter, recomputed layers included.
    pub fn backward(&self, loss: &Tensor) -> Result<candle_core::backprop::GradStore> {
        Ok(vlm::recompute::backward(loss, self.recompute.as_ref())?)
    }

    /// LoRA's reference model: the shared frozen base, the adapters disabled (nothing copied).
    pub fn base_model(&self) -> Result<Qwen2Vl> {
        Ok(Qwen2Vl::load(&self.cfg, &MapParams(&self.frozen))?)
    }

    /// The trainable tensors by name (detached views of the live values).
    pub fn var_tensors(&self) -> HashMap<String, Tensor> {
        self.vars.iter().map(|(n, v)| (n.clone(), v.as_tensor().detach())).collect()
    }

    /// All parameters by canonical name: views of the live values (updates show through; copy
    /// them to keep a snapshot).
    pub fn tensors(&self) -> HashMap<String, Tensor> {
        if let Some(s) = &self.lora {
            // The full model the adapters stand for.
            let base: std::collections::BTreeMap<String, Tensor> =
                self.frozen.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            // The adapters were made from this model's own layers, so every one finds its layer.
            return crate::lora::merge(&base, &self.var_tensors(), s)
                .expect("adapters match the layers they were made for")
                .into_iter()
                .collect();
        }
        let mut out = self.frozen.clone();
        for (n, v) in &self.vars {
            out.insert(n.clone(), v.as_tensor().detach());
        }
        out
    }

    /// A gradient-free model on the current weights, prepared for fast generation.
    pub fn inference_model(&self) -> Result<Qwen2Vl> {
        if let Some(s) = &self.lora {
            // The shared base with the adapters' current values attached (nothing merged or copied).
            // Not prepared for inference: that would store transposed copies of the base.
            let mut m = Qwen2Vl::load(&self.cfg, &MapParams(&self.frozen))?;
            vlm::linear::attach_lora(m.linears_mut(), &crate::lora::adapters(&self.var_tensors(), s, None)?);
            return Ok(m);
        }
        let mut m = Qwen2Vl::load(&self.cfg, &MapParams(&self.tensors()))?;
        m.prepare_for_inference()?;
        Ok(m)
    }
}
