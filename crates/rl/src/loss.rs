//! The GRPO-family policy loss on per-token log-probabilities, exactly as TRL 1.16's
//! `GRPOTrainer._compute_loss` computes it (checked against TRL on every setting of
//! `tests/fixtures/trl_loss_reference.json` and `trl_loss_reference_2026.json`).
//!
//! With `lp` the current policy's log-probs, `old` the sampling policy's (`lp.detach()` when the
//! current policy sampled: mu = 1), `A` the advantages and `m` the completion mask:
//! 1. top-entropy mask (`top_entropy_quantile` rho < 1): only tokens whose entropy reaches the
//!    (1 - rho) quantile of the batch's keep their policy term (Wang et al. 2025, "Beyond the 80/20 rule");
//! 2. off-policy sequence mask (`off_policy_mask_threshold`, DeepSeek-V3.2's OPSM): a sequence with
//!    A < 0 whose mean k1 KL from the sampler exceeds the threshold is dropped;
//! 3. the ratio `exp(lp - old)` per token, or per sequence (`importance_sampling_level =
//!    "sequence"`, GSPO, Zheng et al. 2025: exp of the mean log-ratio over the sequence's tokens);
//! 4. KL k3 = exp(ref - lp) - (ref - lp) - 1, times the ratio when `use_bias_correction_kl`;
//! 5. the per-token objective: PPO's clipped `-min(r A, clip(r, 1-eps_low, 1+eps_high) A)` (grpo,
//!    bnpo, dr_grpo, dapo, luspo; `delta` caps r first: INTELLECT-2's two-sided clipping), CISPO's
//!    `-sg(min(r, eps_high)) A lp` (MiniMax-M1), SAPO's soft gate `-sigmoid(tau (r - 1)) 4/tau A`
//!    (Qwen, 2025), or VESPO's `-sg(phi(w)) A lp` with the gamma weight phi(w) = e^l w^k e^(-l w)
//!    of the sequence's (summed) log-ratio;
//! 6. times the masks and, for rollouts from an inference engine, its importance-sampling ratio
//!    ([`crate::rollout_correction`]); plus beta * KL;
//! 7. aggregated: grpo / sapo mean over each sequence's tokens then over sequences (Med-R1's);
//!    bnpo over this batch's tokens; dr_grpo over B x max_completion_length; dapo / cispo / vespo
//!    over the whole accumulated batch's tokens; luspo each sequence's sum, averaged (Length-
//!    Unbiased Sequence Policy Optimization);
//! 8. minus `entropy_coef` times the mean entropy (the entropy bonus).

use anyhow::{bail, Result};
use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossType {
    Grpo,
    Bnpo,
    Dapo,
    DrGrpo,
    Cispo,
    Sapo,
    Luspo,
    Vespo,
}

impl LossType {
    /// The PPO-clipped objectives (which log clip ratios).
    pub fn clipped(self) -> bool {
        matches!(self, LossType::Grpo | LossType::Bnpo | LossType::Dapo | LossType::DrGrpo | LossType::Luspo)
    }
    /// Normalised by the whole accumulated batch's token count.
    pub fn global_tokens(self) -> bool {
        matches!(self, LossType::Dapo | LossType::Cispo | LossType::Vespo)
    }
}

/// Where the policy ratio is taken: per token (PPO, GRPO) or per sequence (GSPO).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ImportanceSamplingLevel {
    #[default]
    Token,
    Sequence,
}

#[derive(Debug, Clone)]
pub struct LossConfig {
    pub loss_type: LossType,
    /// KL coefficient; 0 needs no reference model.
    pub beta: f64,
    pub epsilon_low: f64,
    /// Upper clip; for cispo the absolute cap on the ratio.
    pub epsilon_high: f64,
    /// For `dr_grpo`'s normaliser.
    pub max_completion_length: usize,
    pub importance_sampling_level: ImportanceSamplingLevel,
    /// Two-sided clipping: the ratio is capped at delta before PPO's min.
    pub delta: Option<f64>,
    /// Multiply the per-token KL by the (differentiable) ratio.
    pub use_bias_correction_kl: bool,
    pub off_policy_mask_threshold: Option<f64>,
    /// rho: only the top-rho entropy tokens keep their policy term (1 = all).
    pub top_entropy_quantile: f64,
    pub sapo_temperature_pos: f64,
    pub sapo_temperature_neg: f64,
    pub vespo_k_pos: f64,
    pub vespo_lambda_pos: f64,
    pub vespo_k_neg: f64,
    pub vespo_lambda_neg: f64,
    /// Entropy bonus coefficient (0 = off).
    pub entropy_coef: f64,
}

impl Default for LossConfig {
    /// Med-R1's loss (grpo, beta 0.04, eps 0.2, no KL bias correction: the TRL it used had none),
    /// with TRL 1.16's defaults for every newer option.
    fn default() -> Self {
        LossConfig {
            loss_type: LossType::Grpo,
            beta: 0.04,
            epsilon_low: 0.2,
            epsilon_high: 0.2,
            max_completion_length: 256,
            importance_sampling_level: ImportanceSamplingLevel::Token,
            delta: None,
            use_bias_correction_kl: false,
            off_policy_mask_threshold: None,
            top_entropy_quantile: 1.0,
            sapo_temperature_pos: 1.0,
            sapo_temperature_neg: 1.05,
            vespo_k_pos: 2.0,
            vespo_lambda_pos: 3.0,
            vespo_k_neg: 3.0,
            vespo_lambda_neg: 2.0,
            entropy_coef: 0.0,
        }
    }
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
    /// Completion tokens in the whole accumulated batch (the dapo / cispo / vespo normaliser).
    pub tokens_in_batch: f64,
    /// The inference engine's log-probs of the sampled tokens, when an engine sampled (the
    /// off-policy mask measures the drift from them).
    pub sampling_logps: Option<&'a Tensor>,
    /// The engine-trainer importance-sampling ratio to weight the loss by ([B, T] or [B, 1], no
    /// gradient; see `rollout_correction`), when the correction is on.
    pub is_ratio: Option<&'a Tensor>,
    /// Per-token entropies of the policy (needed for `top_entropy_quantile` < 1 and the entropy
    /// bonus; the bonus's gradient flows only if they are tracked).
    pub entropies: Option<&'a Tensor>,
}

/// The loss and TRL's logged statistics.
pub struct LossOutput {
    pub loss: Tensor,
    /// The loss before the entropy bonus.
    pub policy_loss: f64,
    /// Mean KL over completion tokens, after the bias correction (when beta != 0).
    pub kl: Option<f64>,
    /// Mean entropy over completion tokens (when entropies are given).
    pub entropy: Option<f64>,
    /// Fractions of completion tokens clipped below (ratio < 1 - eps_low with A < 0) and above
    /// (ratio > 1 + eps_high with A > 0), as TRL logs them: the means over all completion tokens
    /// of the batch (over sequences at sequence level); the min (low) and max (high) over
    /// completions of each one's own fraction. Zero for the unclipped losses.
    pub clip_low_mean: f64,
    pub clip_low_min: f64,
    pub clip_high_mean: f64,
    pub clip_high_max: f64,
    pub clip_region_mean: f64,
    /// cispo: the fraction of ratios above the cap where A > 0.
    pub cispo_clip_ratio: Option<f64>,
    /// vespo: the mean gamma weight over sequences.
    pub vespo_phi_seq_mean: Option<f64>,
}

/// A scalar tensor's value in float64.
pub fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

/// `x` clamped to [lo, hi] with torch's gradient: it passes where lo <= x <= hi, stops outside.
fn clamp(x: &Tensor, lo: Option<f64>, hi: Option<f64>) -> Result<Tensor> {
    let mut y = x.clone();
    if let Some(lo) = lo {
        y = y.lt(lo)?.where_cond(&y.ones_like()?.affine(lo, 0.0)?, &y)?;
    }
    if let Some(hi) = hi {
        y = y.gt(hi)?.where_cond(&y.ones_like()?.affine(hi, 0.0)?, &y)?;
    }
    Ok(y)
}

/// 1 where `cond`, else 0, as float32.
fn float(cond: &Tensor) -> Result<Tensor> {
    Ok(cond.to_dtype(DType::F32)?)
}

/// TRL's `global_masked_mean`: over completion tokens for [B, T], over sequences for [B, 1].
fn global_masked_mean(x: &Tensor, mask: &Tensor) -> Result<f64> {
    let (b, t) = x.dims2()?;
    if t == 1 && mask.dim(1)? != 1 {
        return Ok(scalar(&x.sum_all()?)? / (b as f64).max(1.0));
    }
    Ok(scalar(&(x * mask)?.sum_all()?)? / scalar(&mask.sum_all()?)?.max(1.0))
}

/// TRL's `masked_seq_mean`: each sequence's mean over its tokens (NaN for an empty one).
fn masked_seq_mean(x: &Tensor, mask: &Tensor) -> Result<Vec<f64>> {
    if x.dim(1)? == 1 && mask.dim(1)? != 1 {
        return Ok(x.squeeze(1)?.to_dtype(DType::F64)?.to_vec1()?);
    }
    let sums: Vec<f64> = (x * mask)?.sum(1)?.to_dtype(DType::F64)?.to_vec1()?;
    let lens: Vec<f64> = mask.sum(1)?.to_dtype(DType::F64)?.to_vec1()?;
    Ok(sums.iter().zip(&lens).map(|(s, l)| s / l).collect())
}

/// The tokens whose entropy reaches the `q` quantile (linear interpolation, as `torch.quantile`)
/// of the completion tokens' entropies, inside the mask.
fn high_entropy_mask(entropies: &Tensor, mask: &Tensor, q: f64) -> Result<Tensor> {
    let e: Vec<Vec<f32>> = entropies.detach().to_dtype(DType::F32)?.to_vec2()?;
    let m: Vec<Vec<f32>> = mask.to_vec2()?;
    let mut v: Vec<f32> =
        e.iter().flatten().zip(m.iter().flatten()).filter(|(_, &k)| k != 0.0).map(|(&x, _)| x).collect();
    let keep: Vec<f32> = if v.is_empty() {
        vec![0.0; e.len() * e[0].len()]
    } else {
        v.sort_by(f32::total_cmp);
        let rank = q as f32 * (v.len() - 1) as f32;
        let below = rank.floor();
        let w = rank - below;
        let (a, b) = (v[below as usize], v[(below as usize + 1).min(v.len() - 1)]);
        // torch.lerp's two-sided formula.
        let thr = if w < 0.5 { a + w * (b - a) } else { b - (b - a) * (1.0 - w) };
        e.iter()
            .flatten()
            .zip(m.iter().flatten())
            .map(|(&x, &k)| if k != 0.0 && x * k >= thr { 1.0 } else { 0.0 })
            .collect()
    };
    Ok(Tensor::from_vec(keep, mask.shape(), mask.device())?)
}

/// VESPO's gamma weight per sequence ([B, 1], no gradient): w = exp(sum of the clamped token
/// log-ratios, plus the engine correction's log-ratios), phi(w) = exp(l + k log w - l w) with
/// (k, l) chosen by the advantage's sign; NaN or infinite weights become 0.
fn vespo_weights(
    cfg: &LossConfig,
    adv: &[f32],
    log_ratio: &Tensor,
    mask: &Tensor,
    is_ratio: Option<&Tensor>,
) -> Result<Tensor> {
    let lower = 1e-8f64.ln();
    let lr = clamp(&log_ratio.detach(), Some(-20.0), Some(20.0))?;
    let mut seq = (lr * mask)?.sum(1)?;
    if let Some(r) = is_ratio {
        let l = clamp(&r.log()?, Some(lower), Some(20.0))?;
        seq = (seq + l.sum(1)?)?;
    }
    let seq: Vec<f32> = clamp(&seq, Some(lower), Some(20.0))?.to_vec1()?;
    let phi: Vec<f32> = seq
        .iter()
        .zip(adv)
        .map(|(&log_w, &a)| {
            let (k, l) = if a >= 0.0 {
                (cfg.vespo_k_pos, cfg.vespo_lambda_pos)
            } else {
                (cfg.vespo_k_neg, cfg.vespo_lambda_neg)
            };
            let (k, l, log_w) = (k as f32, (l as f32).max(1e-4), log_w);
            let p = (l + k * log_w - l * log_w.exp()).exp();
            if p.is_finite() {
                p
            } else {
                0.0
            }
        })
        .collect();
    Ok(Tensor::from_vec(phi, (adv.len(), 1), mask.device())?)
}

pub fn grpo_loss(cfg: &LossConfig, x: &LossInputs) -> Result<LossOutput> {
    let (lp, mask) = (x.logps, x.mask);
    let (b, _t) = lp.dims2()?;
    let adv_v: Vec<f32> = x.advantages.to_dtype(DType::F32)?.to_vec1()?;
    let adv = x.advantages.unsqueeze(1)?; // [B, 1]
    let old = match x.old_logps {
        Some(o) => o.clone(),
        None => lp.detach(),
    };
    let lens = mask.sum_keepdim(1)?.clamp(1.0, f64::INFINITY)?; // [B, 1]

    // 1. Top-entropy mask.
    let entropy_mask = if cfg.top_entropy_quantile < 1.0 {
        let e = x.entropies.ok_or_else(|| anyhow::anyhow!("top_entropy_quantile < 1 needs per-token entropies"))?;
        Some(high_entropy_mask(e, mask, 1.0 - cfg.top_entropy_quantile)?)
    } else {
        None
    };
    // 2. Off-policy sequence mask: keep A >= 0, or a mean k1 drift from the sampler <= threshold.
    let off_policy_mask = match cfg.off_policy_mask_threshold {
        Some(thr) => {
            let s = x.sampling_logps.cloned().unwrap_or_else(|| old.clone());
            let kl = ((s - lp.detach())? * mask)?.sum_keepdim(1)?.broadcast_div(&lens)?;
            Some(float(&(adv.ge(0.0)?.to_dtype(DType::F32)? + float(&kl.le(thr)?)?)?.gt(0.0)?)?)
        }
        None => None,
    };
    // 3. The ratio, per token or per sequence.
    let log_ratio = (lp - &old)?;
    let log_w = match cfg.importance_sampling_level {
        ImportanceSamplingLevel::Token => log_ratio.clone(),
        ImportanceSamplingLevel::Sequence => (&log_ratio * mask)?.sum_keepdim(1)?.broadcast_div(&lens)?,
    };
    let mut coef_1 = log_w.exp()?;
    // 4. KL to the reference.
    let kl = if cfg.beta != 0.0 {
        let r = x.ref_logps.ok_or_else(|| anyhow::anyhow!("beta != 0 needs the reference model's log-probs"))?;
        let d = (r - lp)?;
        let k3 = ((d.exp()? - &d)? - 1.0)?;
        Some(if cfg.use_bias_correction_kl { k3.broadcast_mul(&coef_1)? } else { k3 })
    } else {
        None
    };
    // 5. The per-token objective.
    let mut phi = None;
    let mut per_token = match cfg.loss_type {
        LossType::Cispo => {
            let capped = clamp(&coef_1, None, Some(cfg.epsilon_high))?.detach();
            capped.broadcast_mul(&adv)?.broadcast_mul(lp)?.neg()?
        }
        LossType::Sapo => {
            let tau: Vec<f32> = adv_v
                .iter()
                .map(|&a| if a > 0.0 { cfg.sapo_temperature_pos } else { cfg.sapo_temperature_neg } as f32)
                .collect();
            let tau = Tensor::from_vec(tau, (b, 1), lp.device())?;
            let z = (coef_1.clone() - 1.0)?.broadcast_mul(&tau)?;
            let gate = (z.neg()?.exp()? + 1.0)?.recip()?;
            (gate.broadcast_mul(&(tau.recip()? * 4.0)?)?.broadcast_mul(&adv)?).neg()?
        }
        LossType::Vespo => {
            if x.is_ratio.is_some_and(|r| r.dim(1).ok() == Some(1) && mask.dim(1).ok() != Some(1)) {
                bail!("vespo takes a token-level engine correction only (TRL refuses sequence_* modes with vespo)");
            }
            let p = vespo_weights(cfg, &adv_v, &log_ratio, mask, x.is_ratio)?;
            let out = p.broadcast_mul(&adv)?.broadcast_mul(lp)?.neg()?;
            phi = Some(p);
            out
        }
        _ => {
            let coef_2 = clamp(&coef_1, Some(1.0 - cfg.epsilon_low), Some(1.0 + cfg.epsilon_high))?;
            if let Some(d) = cfg.delta {
                coef_1 = clamp(&coef_1, None, Some(d))?;
            }
            let l1 = coef_1.broadcast_mul(&adv)?;
            let l2 = coef_2.broadcast_mul(&adv)?;
            // -min(l1, l2); on ties (ratio inside the clip range) both branches have the same
            // value and gradient.
            l1.le(&l2)?.where_cond(&l1, &l2)?.neg()?
        }
    };
    // 6. Masks and the engine correction.
    if let Some(m) = &off_policy_mask {
        per_token = per_token.broadcast_mul(m)?;
    }
    if let Some(m) = &entropy_mask {
        per_token = per_token.broadcast_mul(m)?;
    }
    if let (Some(r), false) = (x.is_ratio, cfg.loss_type == LossType::Vespo) {
        per_token = per_token.broadcast_mul(r)?;
    }
    if let Some(k) = &kl {
        per_token = per_token.broadcast_add(&(k * cfg.beta)?)?;
    }
    // 7. Aggregation.
    let masked = per_token.broadcast_mul(mask)?;
    let mut loss = match cfg.loss_type {
        LossType::Grpo | LossType::Sapo => masked.sum_keepdim(1)?.broadcast_div(&lens)?.mean_all()?,
        LossType::Bnpo => (masked.sum_all()? / scalar(&mask.sum_all()?)?.max(1.0))?,
        LossType::DrGrpo => (masked.sum_all()? / (b * cfg.max_completion_length) as f64)?,
        LossType::Dapo | LossType::Cispo | LossType::Vespo => (masked.sum_all()? / x.tokens_in_batch.max(1.0))?,
        LossType::Luspo => masked.sum(1)?.mean_all()?,
    };
    let policy_loss = scalar(&loss)?;
    // 8. Entropy bonus, on the tokens the entropy mask keeps.
    let entropy = match x.entropies {
        Some(e) => Some(global_masked_mean(&e.detach(), mask)?),
        None => None,
    };
    if cfg.entropy_coef != 0.0 {
        let e = x.entropies.ok_or_else(|| anyhow::anyhow!("entropy_coef != 0 needs per-token entropies"))?;
        let m = match &entropy_mask {
            Some(em) => (mask * em)?,
            None => mask.clone(),
        };
        let sum = (e * &m)?.sum_all()?;
        let bonus = if cfg.loss_type.global_tokens() {
            (sum / x.tokens_in_batch.max(1.0))?
        } else {
            (sum / scalar(&m.sum_all()?)?.max(1.0))?
        };
        loss = (loss - (bonus * cfg.entropy_coef)?)?;
    }
    // Logged statistics, as TRL computes them.
    let kl_mean = match &kl {
        Some(k) => Some(global_masked_mean(&k.detach(), mask)?),
        None => None,
    };
    let mut out = LossOutput {
        loss,
        policy_loss,
        kl: kl_mean,
        entropy,
        clip_low_mean: 0.0,
        clip_low_min: 0.0,
        clip_high_mean: 0.0,
        clip_high_max: 0.0,
        clip_region_mean: 0.0,
        cispo_clip_ratio: None,
        vespo_phi_seq_mean: None,
    };
    let coef = coef_1.detach();
    let (a_neg, a_pos) = (float(&adv.lt(0.0)?)?, float(&adv.gt(0.0)?)?);
    if cfg.loss_type.clipped() {
        let low = float(&coef.lt(1.0 - cfg.epsilon_low)?)?.broadcast_mul(&a_neg)?;
        let high = float(&coef.gt(1.0 + cfg.epsilon_high)?)?.broadcast_mul(&a_pos)?;
        let region = float(&(&low + &high)?.gt(0.0)?)?;
        out.clip_low_mean = global_masked_mean(&low, mask)?;
        out.clip_high_mean = global_masked_mean(&high, mask)?;
        out.clip_region_mean = global_masked_mean(&region, mask)?;
        let nan_fold = |v: Vec<f64>, f: fn(f64, f64) -> f64, init: f64| {
            let r = v.into_iter().filter(|x| !x.is_nan()).fold(init, f);
            if r.is_finite() {
                r
            } else {
                f64::NAN
            }
        };
        out.clip_low_min = nan_fold(masked_seq_mean(&low, mask)?, f64::min, f64::INFINITY);
        out.clip_high_max = nan_fold(masked_seq_mean(&high, mask)?, f64::max, f64::NEG_INFINITY);
    } else if cfg.loss_type == LossType::Cispo {
        let clipped = float(&coef.gt(cfg.epsilon_high)?)?.broadcast_mul(&a_pos)?;
        out.cispo_clip_ratio = Some(global_masked_mean(&clipped, mask)?);
    } else if let Some(p) = &phi {
        out.vespo_phi_seq_mean = Some(global_masked_mean(p, mask)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn cfg(loss_type: LossType) -> LossConfig {
        LossConfig {
            loss_type,
            beta: 0.0,
            epsilon_low: 0.2,
            epsilon_high: 0.2,
            max_completion_length: 4,
            ..Default::default()
        }
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
            sampling_logps: None,
            is_ratio: None,
            entropies: None,
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
