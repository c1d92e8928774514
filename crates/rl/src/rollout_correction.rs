//! Rollout correction: when an inference engine (vLLM, SGLang, `medr1 serve`) sampled the
//! completions, its log-probs differ from the trainer's (other kernels, precision, a policy a step
//! old), and the update is weighted by the truncated or masked importance-sampling ratio between
//! the two, as TRL 1.16 computes it in `_generate_and_score_completions` (checked against TRL on
//! every engine setting of `tests/fixtures/trl_loss_reference_2026.json`).
//!
//! With `old` the trainer's log-probs of the sampled tokens at rollout time and `s` the engine's:
//! d = (old - s) on completion tokens (NaN counted as 0). Token modes: ratio = exp(d) per token
//! (1 at padding). Sequence modes: ratio = exp(sum_t d) per sequence (a product of the token
//! ratios, not GSPO's geometric mean). `*_truncate` clamps it to [clip_min, clip_max];
//! `*_mask` zeroes it outside (the token or sequence stays in every normaliser). No gradient.

use anyhow::{bail, Result};
use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

/// TRL's `vllm_importance_sampling_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CorrectionMode {
    TokenTruncate,
    TokenMask,
    SequenceTruncate,
    /// TRL 1.16's default (its docstring says token_truncate; its code says sequence_mask).
    #[default]
    SequenceMask,
}

impl CorrectionMode {
    pub fn sequence_level(self) -> bool {
        matches!(self, CorrectionMode::SequenceTruncate | CorrectionMode::SequenceMask)
    }
}

/// What is logged about the engine-trainer mismatch (TRL's `sampling/*` metrics, plus the KL
/// and the fraction masked).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CorrectionStats {
    /// Mean and max |old - s| over completion tokens.
    pub logp_difference_mean: f64,
    pub logp_difference_max: f64,
    /// Over completion tokens (token modes) or sequences (sequence modes), zeros of masking included.
    pub ratio_min: f64,
    pub ratio_mean: f64,
    pub ratio_max: f64,
    /// Mean over completion tokens of k3(s -> old) = exp(s - old) - (s - old) - 1, an estimate of
    /// KL(engine || trainer): near 0 when they agree.
    pub mismatch_kl: f64,
    /// Fraction of tokens (token modes) or sequences (sequence modes) the mask zeroed.
    pub masked_fraction: f64,
}

/// The importance-sampling ratio ([B, T] or [B, 1]) and its statistics. `old` and `sampling` are
/// [B, T] log-probs of the same tokens, `mask` the completion mask.
pub fn importance_sampling_ratio(
    old: &Tensor,
    sampling: &Tensor,
    mask: &Tensor,
    mode: CorrectionMode,
    clip_min: Option<f64>,
    clip_max: Option<f64>,
) -> Result<(Tensor, CorrectionStats)> {
    if clip_min.is_none() && clip_max.is_none() {
        bail!("the importance-sampling correction needs clip_min or clip_max (or both)");
    }
    let (b, t) = old.dims2()?;
    let o: Vec<f32> = old.detach().to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let s: Vec<f32> = sampling.detach().to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let m: Vec<f32> = mask.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let diff: Vec<f32> = o
        .iter()
        .zip(&s)
        .zip(&m)
        .map(|((a, b), k)| {
            let d = (a - b) * k;
            if d.is_nan() {
                0.0
            } else {
                d
            }
        })
        .collect();
    let raw: Vec<f32> = if mode.sequence_level() {
        diff.chunks(t).map(|row| row.iter().sum::<f32>().exp()).collect()
    } else {
        diff.iter().map(|d| d.exp()).collect()
    };
    let (lo, hi) = (clip_min.unwrap_or(f64::NEG_INFINITY) as f32, clip_max.unwrap_or(f64::INFINITY) as f32);
    let truncate = matches!(mode, CorrectionMode::TokenTruncate | CorrectionMode::SequenceTruncate);
    let ratio: Vec<f32> = raw
        .iter()
        .map(|&r| {
            if truncate {
                r.max(lo).min(hi)
            } else if r < lo || r > hi {
                0.0
            } else {
                r
            }
        })
        .collect();
    // Statistics over completion tokens (token modes) or all sequences (sequence modes).
    let on: Vec<usize> = (0..b * t).filter(|&i| m[i] != 0.0).collect();
    let deltas: Vec<f32> = on.iter().map(|&i| (o[i] - s[i]).abs()).filter(|d| !d.is_nan()).collect();
    // The values the statistics are over: every sequence (sequence modes) or every completion
    // token (token modes); masking zeroes a ratio that was not 0.
    let flat: Vec<(f32, f32)> = if mode.sequence_level() {
        raw.iter().copied().zip(ratio.iter().copied()).collect()
    } else {
        on.iter().map(|&i| (raw[i], ratio[i])).collect()
    };
    let masked = flat.iter().filter(|(r, x)| *x == 0.0 && *r != 0.0).count();
    let flat: Vec<f32> = flat.into_iter().map(|(_, x)| x).collect();
    let mean = |v: &[f32]| if v.is_empty() { 0.0 } else { v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64 };
    let kl: Vec<f32> = on
        .iter()
        .map(|&i| {
            let d = s[i] - o[i];
            if d.is_nan() {
                0.0
            } else {
                d.exp() - d - 1.0
            }
        })
        .collect();
    let stats = CorrectionStats {
        logp_difference_mean: mean(&deltas),
        logp_difference_max: deltas.iter().cloned().fold(0.0f32, f32::max) as f64,
        ratio_min: flat.iter().cloned().reduce(f32::min).unwrap_or(0.0) as f64,
        ratio_mean: mean(&flat),
        ratio_max: flat.iter().cloned().reduce(f32::max).unwrap_or(0.0) as f64,
        mismatch_kl: mean(&kl),
        masked_fraction: if truncate || flat.is_empty() { 0.0 } else { masked as f64 / flat.len() as f64 },
    };
    let shape = if mode.sequence_level() { (b, 1) } else { (b, t) };
    Ok((Tensor::from_vec(ratio, shape, old.device())?, stats))
}
