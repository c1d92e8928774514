//! The one log-probability function: rollout scoring, the training loss, the reference model and
//! `medr1 dump` all call [`completion_logprobs`], so the image tokens, grids and rotary positions
//! are built once, the same way, everywhere.

use crate::error::Result;
use crate::model::{Batch, Qwen2Vl};
use candle_core::{DType, Tensor, D};

/// Per-token log-probabilities of the completion region.
pub struct CompletionLogprobs {
    /// [B, C]: log p(token | earlier tokens) for the last C positions of the batch (the completion
    /// region; completions are right-aligned because prompts are padded on the left). Tracks
    /// gradients when the model's parameters do.
    pub logprobs: Tensor,
    /// [B, C] float32: 1 where the position is a completion token of that row.
    pub mask: Tensor,
    /// Index of the first of the C positions in the padded sequence.
    pub start: usize,
    /// [B, C] entropy of each position's next-token distribution: for metrics, the top-entropy
    /// mask and the entropy bonus (no gradient unless asked for).
    pub entropy: Tensor,
}

impl CompletionLogprobs {
    /// Minus the sum of the completion tokens' log-probabilities.
    pub fn nll(&self) -> Result<Tensor> {
        Ok((self.logprobs.mul(&self.mask)?.sum_all()? * -1.0)?)
    }
}

/// Scores `completion_mask` [B][L] tokens of `batch`. Only the positions that predict completion
/// tokens go through the LM head, which keeps the [*, vocab] logits small during training.
pub fn completion_logprobs(model: &Qwen2Vl, batch: &Batch, completion_mask: &[Vec<u32>]) -> Result<CompletionLogprobs> {
    completion_logprobs_opts(model, batch, completion_mask, false)
}

/// As [`completion_logprobs`]; with `track_entropy` the entropies stay in the autograd graph (an
/// entropy bonus in the loss needs their gradient).
pub fn completion_logprobs_opts(
    model: &Qwen2Vl,
    batch: &Batch,
    completion_mask: &[Vec<u32>],
    track_entropy: bool,
) -> Result<CompletionLogprobs> {
    let l = batch.len();
    let c =
        completion_mask.iter().map(|r| r.iter().position(|&m| m != 0).map_or(0, |first| l - first)).max().unwrap_or(0);
    let dev = model.device().clone();
    let b = batch.rows();
    if c == 0 {
        return Ok(CompletionLogprobs {
            logprobs: Tensor::zeros((b, 0), DType::F32, &dev)?,
            mask: Tensor::zeros((b, 0), DType::F32, &dev)?,
            start: l,
            entropy: Tensor::zeros((b, 0), DType::F32, &dev)?,
        });
    }
    if c >= l {
        return Err(crate::error::VlmError::input("a completion must follow at least one prompt token"));
    }
    let (hidden, _) = model.forward_hidden(batch, None)?;
    // Positions l-c-1 .. l-2 predict tokens l-c .. l-1.
    let h = hidden.narrow(1, l - c - 1, c)?;
    let logits = model.text.logits(&h)?; // [B, C, V] f32
    let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    let targets: Vec<u32> = batch.input_ids.iter().flat_map(|r| r[l - c..].iter().copied()).collect();
    let targets = Tensor::from_vec(targets, (b, c, 1), &dev)?;
    let picked = logp.gather(&targets, 2)?.squeeze(2)?;
    let lp = if track_entropy { logp.clone() } else { logp.detach() };
    let entropy = (lp.exp()? * &lp)?.sum(D::Minus1)?.neg()?;
    let mask: Vec<f32> = completion_mask.iter().flat_map(|r| r[l - c..].iter().map(|&m| m as f32)).collect();
    let mask = Tensor::from_vec(mask, (b, c), &dev)?;
    Ok(CompletionLogprobs { logprobs: picked, mask, start: l - c, entropy })
}
