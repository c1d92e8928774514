//! One GRPO update on a rollout: reference and (for mu > 1) sampling-policy log-probs once, then
//! mu optimizer updates, each: the policy's log-probs through the one log-prob function, the loss,
//! backward, global-norm clipping, AdamW.

use crate::loss::{grpo_loss, scalar, LossConfig, LossInputs, LossType};
use crate::optim::{clip_grad_norm, AdamW};
use crate::policy::Policy;
use crate::rollout::Rollout;
use anyhow::Result;
use candle_core::backprop::GradStore;
use candle_core::Tensor;
use serde::Serialize;
use vlm::logprob::{completion_logprobs, completion_logprobs_opts};
use vlm::model::Qwen2Vl;

#[derive(Debug, Clone, Default, Serialize)]
pub struct UpdateStats {
    pub loss: f64,
    pub kl: Option<f64>,
    pub clip_low_mean: f64,
    pub clip_high_mean: f64,
    pub clip_region_mean: f64,
    /// Mean entropy of the policy's next-token distributions over completion tokens.
    pub entropy: f64,
    pub grad_norm: f64,
    /// Time in the reference / old-policy scoring, the policy's forward and backward passes, and
    /// the optimizer (clipping + AdamW), summed over the mu updates.
    pub scoring_seconds: f64,
    pub forward_backward_seconds: f64,
    pub optimizer_seconds: f64,
}

pub struct UpdateConfig<'a> {
    pub loss: &'a LossConfig,
    /// Updates per rollout (mu); > 1 stores the sampling policy's log-probs for the ratio.
    pub num_iterations: usize,
    pub max_grad_norm: f64,
    /// Zero the loss mask of completions that hit max_new_tokens without an EOS.
    pub mask_truncated: bool,
    /// Completions per forward/backward pass (gradient accumulation); 0 = all at once.
    pub micro_batch_size: usize,
}

/// Adds a micro-batch's gradients to the running sum (the first becomes the sum).
pub fn accumulate(sum: Option<GradStore>, grads: GradStore, vars: &[(String, candle_core::Var)]) -> Result<GradStore> {
    let Some(mut sum) = sum else { return Ok(grads) };
    for (_, v) in vars {
        if let Some(g) = grads.get(v.as_tensor()) {
            let total = match sum.get(v.as_tensor()) {
                Some(s) => (s + g)?,
                None => g.clone(),
            };
            sum.insert(v.as_tensor(), total);
        }
    }
    Ok(sum)
}

/// Row groups of at most `micro` rows (all rows when `micro` is 0).
pub fn micro_batches(rows: usize, micro: usize) -> Vec<Vec<usize>> {
    let mb = if micro == 0 { rows.max(1) } else { micro };
    (0..rows).collect::<Vec<_>>().chunks(mb).map(|c| c.to_vec()).collect()
}

/// One micro-batch: its rows of the whole batch, their sub-batch and their completion masks.
pub struct MicroBatch {
    pub rows: Vec<usize>,
    pub batch: vlm::model::Batch,
    pub masks: Vec<Vec<u32>>,
}

/// The micro-batches of `batch`: each chunk of [`micro_batches`]'s rows as its own sub-batch
/// (with its rows' images), or the whole batch when it is one chunk.
pub fn split_batch(
    batch: &vlm::model::Batch,
    masks: &[Vec<u32>],
    micro: usize,
    cfg: &vlm::Qwen2VlConfig,
) -> Result<Vec<MicroBatch>> {
    let rows = batch.rows();
    micro_batches(rows, micro)
        .into_iter()
        .map(|c| {
            let b = if c.len() == rows {
                batch.clone()
            } else {
                batch.select_rows(&c, cfg.image_token_id, cfg.vision.spatial_merge_size)?
            };
            let masks = c.iter().map(|&r| masks[r].clone()).collect();
            Ok(MicroBatch { rows: c, batch: b, masks })
        })
        .collect()
}

/// Updates `policy` on `rollout` with per-completion `advantages`; `keep` says which completions
/// take part (dynamic sampling drops whole groups). Returns the last update's statistics.
#[allow(clippy::too_many_arguments)] // the pieces of one update, each from a different owner
pub fn update(
    policy: &mut Policy,
    reference: Option<&Qwen2Vl>,
    opt: &mut AdamW,
    rollout: &Rollout,
    advantages: &[f32],
    keep: &[bool],
    cfg: &UpdateConfig,
    lr: f64,
) -> Result<UpdateStats> {
    let dev = policy.model.device().clone();
    let mut cmask = rollout.completion_mask.clone();
    for (r, m) in cmask.iter_mut().enumerate() {
        if !keep[r] || (cfg.mask_truncated && rollout.truncated[r]) {
            m.iter_mut().for_each(|x| *x = 0);
        }
    }
    // Micro-batches of completions: each is scored, its loss scaled by its share of the whole
    // (rows for grpo / dr_grpo, tokens for bnpo; dapo already divides by the whole batch's
    // tokens), and backpropagated on its own; gradients add up to the whole batch's, so
    // accumulation only saves memory, it changes no result.
    let rows = rollout.batch.rows();
    let parts: Vec<(vlm::model::Batch, Vec<Vec<u32>>, Tensor)> =
        split_batch(&rollout.batch, &cmask, cfg.micro_batch_size, &policy.cfg)?
            .into_iter()
            .map(|MicroBatch { rows: c, batch: b, masks: m }| {
                let a = Tensor::from_vec(c.iter().map(|&r| advantages[r]).collect::<Vec<f32>>(), c.len(), &dev)?;
                Ok((b, m, a))
            })
            .collect::<Result<_>>()?;
    let total_tokens: f64 = cmask.iter().map(|m| m.iter().map(|&x| x as f64).sum::<f64>()).sum();
    let t_score = std::time::Instant::now();
    let mut ref_lp = Vec::new();
    let mut old_lp = Vec::new();
    let old_model = if cfg.num_iterations > 1 { Some(policy.inference_model()?) } else { None };
    for (b, m, _) in &parts {
        ref_lp.push(match (cfg.loss.beta != 0.0, reference) {
            (true, Some(r)) => Some(completion_logprobs(r, b, m)?.logprobs.detach()),
            (true, None) => anyhow::bail!("beta != 0 needs a reference model"),
            _ => None,
        });
        old_lp.push(match &old_model {
            Some(om) => Some(completion_logprobs(om, b, m)?.logprobs.detach()),
            None => None,
        });
    }
    drop(old_model);
    let scoring_seconds = t_score.elapsed().as_secs_f64();
    let mut stats = UpdateStats::default();
    let (mut fb, mut op) = (0.0, 0.0);
    for _ in 0..cfg.num_iterations.max(1) {
        let t_fb = std::time::Instant::now();
        let mut acc: Option<GradStore> = None;
        let (mut loss, mut kl, mut kl_w, mut ent) = (0.0, 0.0, 0.0, 0.0);
        let (mut clo, mut chi, mut creg) = (0.0, 0.0, 0.0);
        let mut any_kl = false;
        for (k, (b, m, a)) in parts.iter().enumerate() {
            policy.set_dropout_seed(opt.step, k);
            let lp = completion_logprobs_opts(&policy.model, b, m, cfg.loss.entropy_coef != 0.0)?;
            let tokens = scalar(&lp.mask.sum_all()?)?;
            let tokens_in_batch = if cfg.loss.loss_type.global_tokens() { total_tokens } else { tokens };
            let out = grpo_loss(
                cfg.loss,
                &LossInputs {
                    logps: &lp.logprobs,
                    old_logps: old_lp[k].as_ref(),
                    ref_logps: ref_lp[k].as_ref(),
                    advantages: a,
                    mask: &lp.mask,
                    tokens_in_batch,
                    sampling_logps: None,
                    is_ratio: None,
                    entropies: Some(&lp.entropy),
                },
            )?;
            let share = match cfg.loss.loss_type {
                LossType::Grpo | LossType::DrGrpo | LossType::Sapo | LossType::Luspo => b.rows() as f64 / rows as f64,
                LossType::Bnpo => {
                    if total_tokens > 0.0 {
                        tokens / total_tokens
                    } else {
                        0.0
                    }
                }
                LossType::Dapo | LossType::Cispo | LossType::Vespo => 1.0,
            };
            let scaled = if share == 1.0 { out.loss.clone() } else { (&out.loss * share)? };
            let grads = policy.backward(&scaled)?;
            acc = Some(accumulate(acc, grads, &policy.vars)?);
            loss += scalar(&scaled)?;
            if let Some(x) = out.kl {
                kl += x * tokens;
                any_kl = true;
            }
            kl_w += tokens;
            clo += out.clip_low_mean * tokens;
            chi += out.clip_high_mean * tokens;
            creg += out.clip_region_mean * tokens;
            ent += scalar(&(&lp.entropy * &lp.mask)?.sum_all()?)?;
        }
        let mut grads = acc.expect("at least one micro-batch");
        fb += t_fb.elapsed().as_secs_f64();
        let t_op = std::time::Instant::now();
        let norm = clip_grad_norm(&mut grads, &policy.vars, cfg.max_grad_norm)?;
        opt.step(&grads, lr)?;
        op += t_op.elapsed().as_secs_f64();
        let w = kl_w.max(1.0);
        stats = UpdateStats {
            loss,
            kl: any_kl.then_some(kl / w),
            clip_low_mean: clo / w,
            clip_high_mean: chi / w,
            clip_region_mean: creg / w,
            entropy: ent / w,
            grad_norm: norm,
            scoring_seconds,
            forward_backward_seconds: fb,
            optimizer_seconds: op,
        };
    }
    Ok(stats)
}
