//! AdamW (decoupled weight decay, bias-corrected moments, as torch.optim.AdamW), learning-rate
//! schedules (warmup, then constant, linear or cosine decay, as transformers' schedulers) and
//! global-norm gradient clipping. The optimizer's state is plain tensors so it can be saved and
//! restored exactly for `--resume`.

use anyhow::{bail, Result};
use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

pub struct AdamW {
    pub cfg: AdamWConfig,
    /// Parameters by name (the checkpoint's canonical tensor names).
    pub params: Vec<(String, Var)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    /// Updates taken so far.
    pub step: u64,
}

impl AdamW {
    pub fn new(params: Vec<(String, Var)>, cfg: AdamWConfig) -> Result<AdamW> {
        let m = params.iter().map(|(_, p)| p.zeros_like()).collect::<candle_core::Result<Vec<_>>>()?;
        let v = params.iter().map(|(_, p)| p.zeros_like()).collect::<candle_core::Result<Vec<_>>>()?;
        Ok(AdamW { cfg, params, m, v, step: 0 })
    }

    /// One update at learning rate `lr` from `grads` (parameters without a gradient are left
    /// alone, as torch does for `grad is None`).
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.step += 1;
        let t = self.step as i32;
        let (b1, b2) = (self.cfg.beta1, self.cfg.beta2);
        let bc1 = 1.0 - b1.powi(t);
        let bc2 = 1.0 - b2.powi(t);
        for (i, (_, p)) in self.params.iter().enumerate() {
            let Some(g) = grads.get(p.as_tensor()) else { continue };
            let g = g.to_dtype(DType::F32)?;
            // Decoupled weight decay first, as torch: p <- p * (1 - lr * wd).
            let mut w = p.as_tensor().clone();
            if self.cfg.weight_decay != 0.0 {
                w = (w * (1.0 - lr * self.cfg.weight_decay))?;
            }
            self.m[i] = ((&self.m[i] * b1)? + (&g * (1.0 - b1))?)?;
            self.v[i] = ((&self.v[i] * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let denom = ((&self.v[i] / bc2)?.sqrt()? + self.cfg.eps)?;
            let update = ((&self.m[i] / denom)? * (lr / bc1))?;
            p.set(&(w - update)?)?;
        }
        Ok(())
    }

    /// Moments by parameter name, for saving.
    pub fn state(&self) -> BTreeMap<String, Tensor> {
        let mut out = BTreeMap::new();
        for (i, (name, _)) in self.params.iter().enumerate() {
            out.insert(format!("exp_avg.{name}"), self.m[i].clone());
            out.insert(format!("exp_avg_sq.{name}"), self.v[i].clone());
        }
        out
    }

    pub fn load_state(&mut self, state: &BTreeMap<String, Tensor>, step: u64) -> Result<()> {
        for (i, (name, p)) in self.params.iter().enumerate() {
            let (Some(m), Some(v)) = (state.get(&format!("exp_avg.{name}")), state.get(&format!("exp_avg_sq.{name}")))
            else {
                bail!("optimizer state has no moments for `{name}`");
            };
            if m.dims() != p.dims() || v.dims() != p.dims() {
                bail!("optimizer state for `{name}` has shape {:?}, the parameter {:?}", m.dims(), p.dims());
            }
            self.m[i] = m.clone();
            self.v[i] = v.clone();
        }
        self.step = step;
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    Constant,
    Linear,
    Cosine,
}

/// The learning rate for update `step` (0-based) of `total`: linear warmup over `warmup` updates,
/// then the schedule's decay to 0 at `total` (transformers' get_*_schedule_with_warmup).
pub fn lr_at(base: f64, schedule: Schedule, step: usize, warmup: usize, total: usize) -> f64 {
    if step < warmup {
        return base * step as f64 / warmup.max(1) as f64;
    }
    let progress = (step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
    match schedule {
        Schedule::Constant => base,
        Schedule::Linear => base * (1.0 - progress).max(0.0),
        Schedule::Cosine => base * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
    }
}

/// Scales all gradients so their global L2 norm is at most `max_norm` (torch's
/// clip_grad_norm_: factor max_norm / (norm + 1e-6) when the norm is larger). Returns the norm
/// before clipping.
pub fn clip_grad_norm(grads: &mut GradStore, params: &[(String, Var)], max_norm: f64) -> Result<f64> {
    let mut sq = 0.0f64;
    for (_, p) in params {
        if let Some(g) = grads.get(p.as_tensor()) {
            sq += g.to_dtype(DType::F64)?.sqr()?.sum_all()?.to_scalar::<f64>()?;
        }
    }
    let norm = sq.sqrt();
    if max_norm > 0.0 && norm > max_norm {
        let k = max_norm / (norm + 1e-6);
        for (_, p) in params {
            if let Some(g) = grads.remove(p.as_tensor()) {
                grads.insert(p.as_tensor(), (g * k)?);
            }
        }
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn one_adamw_step_by_hand() {
        // p = 1, g = 0.5, lr 0.1, wd 0.01: m = 0.05, v = 0.00025 (after bias correction 0.5 and
        // 0.25), update = 0.1 * 0.5 / (0.5 + 1e-8); p = 1 * (1 - 0.001) - 0.1 = 0.899.
        let p = Var::new(&[1.0f32], &Device::Cpu).unwrap();
        let mut opt = AdamW::new(
            vec![("w".into(), p.clone())],
            AdamWConfig { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01 },
        )
        .unwrap();
        let loss = (p.as_tensor() * 0.5).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        opt.step(&grads, 0.1).unwrap();
        let got = p.as_tensor().to_vec1::<f32>().unwrap()[0];
        assert!((got - 0.899).abs() < 1e-6, "{got}");
        // Save and restore gives the same next step.
        let state = opt.state();
        let q = Var::new(&[got], &Device::Cpu).unwrap();
        let mut opt2 = AdamW::new(vec![("w".into(), q.clone())], opt.cfg).unwrap();
        opt2.load_state(&state, opt.step).unwrap();
        let g2 = (q.as_tensor() * 0.5).unwrap().sum_all().unwrap().backward().unwrap();
        let g1 = (p.as_tensor() * 0.5).unwrap().sum_all().unwrap().backward().unwrap();
        opt.step(&g1, 0.1).unwrap();
        opt2.step(&g2, 0.1).unwrap();
        assert_eq!(p.as_tensor().to_vec1::<f32>().unwrap(), q.as_tensor().to_vec1::<f32>().unwrap());
    }

    #[test]
    fn schedules_and_clipping() {
        assert_eq!(lr_at(1.0, Schedule::Linear, 0, 0, 10), 1.0);
        assert_eq!(lr_at(1.0, Schedule::Linear, 5, 0, 10), 0.5);
        assert_eq!(lr_at(1.0, Schedule::Linear, 1, 2, 12), 0.5); // warmup
        assert!((lr_at(1.0, Schedule::Cosine, 5, 0, 10) - 0.5).abs() < 1e-12);
        assert_eq!(lr_at(2.0, Schedule::Constant, 7, 0, 10), 2.0);
        let a = Var::new(&[3.0f32], &Device::Cpu).unwrap();
        let b = Var::new(&[4.0f32], &Device::Cpu).unwrap();
        let loss = ((a.as_tensor() * 3.0).unwrap() + (b.as_tensor() * 4.0).unwrap()).unwrap().sum_all().unwrap();
        let mut g = loss.backward().unwrap();
        let params = vec![("a".to_string(), a.clone()), ("b".to_string(), b.clone())];
        // Gradients (3, 4): norm 5, clipped to 1 -> (0.6, 0.8).
        assert_eq!(clip_grad_norm(&mut g, &params, 1.0).unwrap(), 5.0);
        let ga = g.get(a.as_tensor()).unwrap().to_vec1::<f32>().unwrap()[0];
        assert!((ga - 0.6).abs() < 1e-6);
    }
}
