//! The GRPO policy loss on per-token log-probabilities, as TRL's `GRPOTrainer._compute_loss`
//! computes it (checked against TRL 1.16 on every setting in `tests/trl_loss.rs`):
//!
//! ratio = exp(logp - old) (old = logp.detach() when the policy that sampled is the current one,
//! Med-R1's mu = 1), clipped to [1 - eps_low, 1 + eps_high]; per-token loss =
//! -min(ratio * A, clipped * A) + beta * k3 with k3 = exp(ref - logp) - (ref - logp) - 1; then
//! aggregated:
//! - `grpo`: mean over each completion's tokens, then over completions (Med-R1's);
//! - `bnpo`: mean over all tokens of this batch;
//! - `dapo`: sum over tokens / the number of completion tokens in the whole accumulated batch;
//! - `dr_grpo`: sum over tokens / (completions x max completion length).

use anyhow::Result;
use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossType {
    Grpo,
    Bnpo,
    Dapo,
    DrGrpo,
}

#[derive(Debug, Clone)]
pub struct LossConfig {
    pub loss_type: LossType,
    /// KL coefficient; 0 needs no reference model.
    pub beta: f64,
    pub epsilon_low: f64,
    pub epsilon_high: f64,
    /// For `dr_grpo`'s normaliser.
    pub max_completion_length: usize,
}

/// What the loss is computed from; [B, T] tensors, `mask` 1.0 on completion tokens.
pub struct LossInputs<'a> {
    /// The current policy's log-probs (tracked by autograd).
    pub logps: &'a Tensor,
    /// The sampling policy's log-probs (None: the current policy sampled, mu = 1).
    pub old_logps: Option<&'a Tensor>,
    /// The reference model's log-probs (needed when beta != 0).
    pub ref_logps: Option<&'a Tensor>,
    /// [B]
    pub advantages: &'a Tensor,
    pub mask: &'a Tensor,
    /// Completion tokens in the whole accumulated batch (DAPO's normaliser).
    pub tokens_in_batch: f64,
}

/// The loss and TRL's logged statistics.
pub struct LossOutput {
    pub loss: Tensor,
    /// Mean k3 over completion tokens (when beta != 0).
    pub kl: Option<f64>,
    /// Fractions of completion tokens clipped below (ratio < 1 - eps_low with A < 0) and above
    /// (ratio > 1 + eps_high with A > 0), as TRL logs them: the means over all completion tokens
    /// of the batch; the min (low) and max (high) over completions of each one's own fraction.
    pub clip_low_mean: f64,
    pub clip_low_min: f64,
    pub clip_high_mean: f64,
    pub clip_high_max: f64,
    pub clip_region_mean: f64,
}

/// A scalar tensor's value in float64.
pub fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

pub fn grpo_loss(cfg: &LossConfig, x: &LossInputs) -> Result<LossOutput> {
    let logps = x.logps;
    let mask = x.mask;
    let (b, _t) = logps.dims2()?;
    let adv = x.advantages.unsqueeze(1)?.broadcast_as(logps.shape())?;
    let old = match x.old_logps {
        Some(o) => o.clone(),
        None => logps.detach(),
    };
    let coef_1 = (logps - &old)?.exp()?;
    let lo = 1.0 - cfg.epsilon_low;
    let hi = 1.0 + cfg.epsilon_high;
    // Clamp written with masks so the gradient passes inside the range and stops outside.
    let below = coef_1.lt(lo)?;
    let above = coef_1.gt(hi)?;
    let coef_2 = below.where_cond(
        &coef_1.ones_like()?.affine(lo, 0.0)?,
        &above.where_cond(&coef_1.ones_like()?.affine(hi, 0.0)?, &coef_1)?,
    )?;
    let l1 = (&coef_1 * &adv)?;
    let l2 = (&coef_2 * &adv)?;
    // -min(l1, l2); on ties either branch has the same value and gradient.
    let mut per_token = l1.le(&l2)?.where_cond(&l1, &l2)?.neg()?;
    let mut kl = None;
    if cfg.beta != 0.0 {
        let r = x.ref_logps.ok_or_else(|| anyhow::anyhow!("beta != 0 needs the reference model's log-probs"))?;
        let d = (r - logps)?;
        let k3 = ((d.exp()? - &d)? - 1.0)?;
        let tokens = scalar(&mask.sum_all()?)?.max(1.0);
        kl = Some(scalar(&(&k3 * mask)?.sum_all()?)? / tokens);
        per_token = (per_token + (k3 * cfg.beta)?)?;
    }
    let masked = (&per_token * mask)?;
    let loss = match cfg.loss_type {
        LossType::Grpo => {
            let lens = mask.sum(1)?.clamp(1.0, f64::INFINITY)?;
            (masked.sum(1)? / lens)?.mean_all()?
        }
        LossType::Bnpo => {
            let n = scalar(&mask.sum_all()?)?.max(1.0);
            (masked.sum_all()? / n)?
        }
        LossType::Dapo => (masked.sum_all()? / x.tokens_in_batch.max(1.0))?,
        LossType::DrGrpo => (masked.sum_all()? / (b * cfg.max_completion_length) as f64)?,
    };
    // Clip statistics per completion, as TRL logs them.
    let a_neg = x.advantages.lt(0.0)?.unsqueeze(1)?.broadcast_as(logps.shape())?;
    let a_pos = x.advantages.gt(0.0)?.unsqueeze(1)?.broadcast_as(logps.shape())?;
    let low = (below.to_dtype(DType::F32)? * a_neg.to_dtype(DType::F32)?)?;
    let high = (above.to_dtype(DType::F32)? * a_pos.to_dtype(DType::F32)?)?;
    let lens = mask.sum(1)?.clamp(1.0, f64::INFINITY)?;
    let per_seq =
        |m: &Tensor| -> Result<Vec<f32>> { Ok(((m * mask)?.sum(1)? / &lens)?.to_dtype(DType::F32)?.to_vec1::<f32>()?) };
    let tokens = scalar(&mask.sum_all()?)?.max(1.0);
    let batch_mean = |m: &Tensor| -> Result<f64> { Ok(scalar(&(m * mask)?.sum_all()?)? / tokens) };
    let (low_s, high_s) = (per_seq(&low)?, per_seq(&high)?);
    let (low_mean, high_mean) = (batch_mean(&low)?, batch_mean(&high)?);
    Ok(LossOutput {
        loss,
        kl,
        clip_low_mean: low_mean,
        clip_low_min: low_s.iter().cloned().fold(f32::INFINITY, f32::min) as f64,
        clip_high_mean: high_mean,
        clip_high_max: high_s.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64,
        clip_region_mean: low_mean + high_mean,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn cfg(loss_type: LossType) -> LossConfig {
        LossConfig { loss_type, beta: 0.0, epsilon_low: 0.2, epsilon_high: 0.2, max_completion_length: 4 }
    }

    #[test]
    fn a_fully_masked_completion_contributes_nothing_but_counts() {
        // Row 0: two tokens, A = 1; row 1: no tokens (e.g. an empty completion), A = -1.
        let dev = Device::Cpu;
        let logps = Var::from_tensor(&Tensor::new(&[[-1.0f32, -2.0], [-0.5, -0.7]], &dev).unwrap()).unwrap();
        let mask = Tensor::new(&[[1.0f32, 1.0], [0.0, 0.0]], &dev).unwrap();
        let adv = Tensor::new(&[1.0f32, -1.0], &dev).unwrap();
        let x = LossInputs {
            logps: logps.as_tensor(),
            old_logps: None,
            ref_logps: None,
            advantages: &adv,
            mask: &mask,
            tokens_in_batch: 2.0,
        };
        // grpo: row means (-1, 0 / max(0, 1)) averaged over both rows = -0.5.
        let out = grpo_loss(&cfg(LossType::Grpo), &x).unwrap();
        assert_eq!(out.loss.to_scalar::<f32>().unwrap(), -0.5);
        let g = out.loss.backward().unwrap().get(logps.as_tensor()).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(g, vec![vec![-0.25, -0.25], vec![0.0, 0.0]]);
        // bnpo / dapo: -2 over 2 tokens; dr_grpo: -2 / (2 rows x 4).
        assert_eq!(grpo_loss(&cfg(LossType::Bnpo), &x).unwrap().loss.to_scalar::<f32>().unwrap(), -1.0);
        assert_eq!(grpo_loss(&cfg(LossType::Dapo), &x).unwrap().loss.to_scalar::<f32>().unwrap(), -1.0);
        assert_eq!(grpo_loss(&cfg(LossType::DrGrpo), &x).unwrap().loss.to_scalar::<f32>().unwrap(), -0.25);
        // An all-masked batch gives 0, not NaN.
        let none = Tensor::zeros((2, 2), DType::F32, &dev).unwrap();
        let x0 = LossInputs { mask: &none, tokens_in_batch: 0.0, ..x };
        for t in [LossType::Grpo, LossType::Bnpo, LossType::Dapo, LossType::DrGrpo] {
            assert_eq!(grpo_loss(&cfg(t), &x0).unwrap().loss.to_scalar::<f32>().unwrap(), 0.0);
        }
        // beta != 0 without reference log-probs is an error, not a silent zero.
        assert!(grpo_loss(&LossConfig { beta: 0.04, ..cfg(LossType::Grpo) }, &x).is_err());
    }
}
