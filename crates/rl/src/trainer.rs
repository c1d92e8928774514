//! The training loops, top to bottom: GRPO (Med-R1) and SFT (the baseline), one JSON line of
//! metrics per update, checkpoints that transformers loads, exact resume.

use crate::advantages::{advantages, zero_std_groups};
use crate::config::TrainConfig;
use crate::grpo::{update, UpdateConfig};
use crate::metrics::{mean, GrpoMetrics, Length, Sample, Spread, StepMetrics};
use crate::optim::{clip_grad_norm, lr_at, AdamW, AdamWConfig};
use crate::policy::Policy;
use crate::rewards::RewardSet;
use crate::rollout::{append_completions, rollout, RolloutConfig};
use crate::save::{load_state, save_model, save_state, TrainerState};
use crate::stream::next_prompts;
use anyhow::{Context, Result};
use candle_core::DType;
use data::prompts::PromptVariant;
use data::Record;
use std::io::Write;
use std::path::Path;
use std::time::Instant;
use vlm::logprob::completion_logprobs;
use vlm::Checkpoint;

/// Called after every update with its metrics line (for progress bars and sample printing);
/// returning false stops training there, with a checkpoint and trainer state to `--resume` from.
pub type OnStep<'a> = &'a mut dyn FnMut(&StepMetrics) -> bool;

/// Updates in a run over `n` records: `max_steps`, or `epochs` passes of `prompts_per_step`.
pub fn total_steps(cfg: &TrainConfig, n: usize) -> usize {
    if cfg.max_steps > 0 {
        cfg.max_steps
    } else {
        (cfg.epochs * n).div_ceil(cfg.prompts_per_step)
    }
}

fn append_line(path: &Path, m: &StepMetrics) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("{}: cannot open", path.display()))?;
    writeln!(f, "{}", m.to_json_line()).with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(())
}

/// The next `prompts_per_step` usable records; skipped ones are reported on stderr and counted.
fn next_batch(
    records: &[Record],
    processor: &vlm::prompt::Processor,
    cfg: &TrainConfig,
    state: &mut TrainerState,
) -> Result<Vec<(usize, vlm::prompt::Prompt)>> {
    let (batch, problems) = next_prompts(
        records,
        processor,
        cfg.prompt,
        cfg.image_prep()?,
        cfg.seed,
        &mut state.cursor,
        cfg.prompts_per_step,
    );
    for p in &problems {
        eprintln!("{p}");
    }
    state.skipped_records += problems.len();
    if batch.is_empty() {
        anyhow::bail!("no usable training records ({} skipped)", state.skipped_records);
    }
    Ok(batch)
}

/// Restores optimizer, weights and position from `out` when resuming; returns the state.
fn resume_into(out: &Path, policy: &mut Policy, opt: &mut AdamW, kind: &str) -> Result<TrainerState> {
    let (state, moments, master) = load_state(out)?;
    anyhow::ensure!(state.kind == kind, "{}: holds a {} run, not {kind}", out.display(), state.kind);
    let weights = if master.is_empty() {
        let m = candle_core::safetensors::load(out.join("model.safetensors"), &candle_core::Device::Cpu)?;
        // Stored names -> canonical: the policy's names are canonical; match by suffix-free lookup.
        let layout = vlm::weights::Weights::open(out)?.layout;
        m.into_iter().map(|(k, v)| (layout.canonical_name(&k), v)).collect()
    } else {
        master
    };
    for (name, v) in &policy.vars {
        let w = weights.get(name).with_context(|| format!("resume: no weights for `{name}`"))?;
        v.set(&w.to_dtype(DType::F32)?)?;
    }
    // mu > 1 takes several optimizer updates per training step: restore the real count (it sets
    // AdamW's bias correction).
    opt.load_state(&moments, state.optimizer_updates)?;
    Ok(state)
}

/// What both loops keep between updates: the policy, its optimizer, the position, and where
/// checkpoints go.
struct Run {
    out: std::path::PathBuf,
    source: std::path::PathBuf,
    layout: vlm::weights::NameLayout,
    dtype: DType,
    policy: Policy,
    opt: AdamW,
    state: TrainerState,
    warmup: usize,
    /// The pixel budget images were trained at, written into the saved preprocessor config.
    max_pixels: usize,
}

impl Run {
    /// A fresh run, or the one saved in `cfg.out` when resuming. `origin`: the starting
    /// checkpoint's folder, tensor-name layout and storage dtype, which saved checkpoints keep.
    fn start(
        kind: &str,
        origin: (std::path::PathBuf, vlm::weights::NameLayout, DType),
        start: &vlm::model::Qwen2Vl,
        cfg: &TrainConfig,
        n_records: usize,
        resume: bool,
    ) -> Result<Run> {
        let (ck_dir, layout, dtype) = origin;
        let out = cfg.out.clone();
        std::fs::create_dir_all(&out)?;
        let mut policy = match cfg.lora() {
            Some(l) => Policy::new_lora(start, &l, cfg.seed)?,
            None => Policy::new(start, cfg.freeze_vision)?,
        };
        if cfg.gradient_checkpointing {
            policy.enable_recompute();
        }
        let opt_cfg = AdamWConfig {
            lr: cfg.learning_rate,
            beta1: cfg.adam_beta1,
            beta2: cfg.adam_beta2,
            eps: cfg.adam_epsilon,
            weight_decay: cfg.weight_decay,
        };
        let mut opt = AdamW::new(policy.vars.clone(), opt_cfg)?;
        let total = total_steps(cfg, n_records);
        let mut state = TrainerState {
            step: 0,
            total_steps: total,
            cursor: 0,
            skipped_records: 0,
            seed: cfg.seed,
            kind: kind.into(),
            optimizer_updates: 0,
        };
        if resume {
            state = resume_into(&out, &mut policy, &mut opt, kind)?;
            // A run killed after its last checkpoint logged updates that will be redone: keep
            // exactly the lines up to the resumed step, so every step appears once.
            crate::metrics::truncate_jsonl(&out.join("metrics.jsonl"), state.step)?;
        } else {
            let _ = std::fs::remove_file(out.join("metrics.jsonl"));
        }
        let warmup = (cfg.warmup_ratio * total as f64).round() as usize;
        Ok(Run { out, source: ck_dir, layout, dtype, policy, opt, state, warmup, max_pixels: cfg.max_pixels })
    }

    fn lr(&self, cfg: &TrainConfig) -> f64 {
        lr_at(cfg.learning_rate, cfg.lr_scheduler, self.state.step, self.warmup, self.state.total_steps)
    }

    /// Saves model + trainer state to `out`.
    fn checkpoint(&self) -> Result<()> {
        let state = TrainerState { optimizer_updates: self.opt.step, ..self.state.clone() };
        if let Some(l) = &self.policy.lora {
            // A PEFT adapter folder (plus the tokenizer and processor files); the adapters are
            // also the "master weights" a resume restores.
            let adapters = self.policy.var_tensors();
            crate::lora::save_adapter(&self.out, &adapters, l, self.layout, &self.source)?;
            crate::save::copy_side_files(&self.out, &self.source, false)?;
            crate::save::set_max_pixels(&self.out, self.max_pixels)?;
            return save_state(&self.out, &state, &self.opt.state(), Some(&adapters));
        }
        let tensors = self.policy.tensors();
        save_model(&self.out, &self.source, self.layout, self.dtype, &tensors)?;
        crate::save::set_max_pixels(&self.out, self.max_pixels)?;
        let master = (self.dtype != DType::F32).then_some(&tensors);
        save_state(&self.out, &state, &self.opt.state(), master)
    }

    /// After an update: log its line, report it, save periodically. False: stop here.
    fn after_step(&self, cfg: &TrainConfig, line: &StepMetrics, on_step: OnStep) -> Result<bool> {
        append_line(&self.out.join("metrics.jsonl"), line)?;
        if !on_step(line) {
            return Ok(false);
        }
        if cfg.save_every > 0
            && self.state.step.is_multiple_of(cfg.save_every)
            && self.state.step < self.state.total_steps
        {
            self.checkpoint()?;
        }
        Ok(true)
    }

    fn finish(self) -> Result<TrainerState> {
        self.checkpoint()?;
        Ok(self.state)
    }
}

/// GRPO on `records`, rewarded by `rewards` (Med-R1's: [`TrainConfig::rewards`]). Writes
/// `out/metrics.jsonl`, the checkpoint and trainer state in `out`.
pub fn train_grpo(
    ck: Checkpoint,
    records: &[Record],
    cfg: &TrainConfig,
    rewards: &RewardSet,
    resume: bool,
    on_step: OnStep,
) -> Result<TrainerState> {
    let Checkpoint { dir: source, config, generation, model, mut processor, layout, stored_dtype } = ck;
    processor.image_processor.cfg.max_pixels = cfg.max_pixels.max(processor.image_processor.cfg.min_pixels);
    let mut run = Run::start("grpo", (source, layout, stored_dtype), &model, cfg, records.len(), resume)?;
    // beta = 0 keeps no reference model.
    // Under LoRA the reference is the policy's own frozen base with the adapters disabled, so no
    // second copy of the weights exists; the starting model is released.
    let reference = match (cfg.beta != 0.0, run.policy.lora.is_some()) {
        (false, _) => None,
        (true, false) => Some(model),
        (true, true) => {
            drop(model);
            Some(run.policy.base_model()?)
        }
    };
    let names = rewards.names();
    let rcfg = RolloutConfig {
        num_generations: cfg.num_generations,
        max_new_tokens: cfg.max_completion_length,
        temperature: cfg.temperature,
        top_p: cfg.top_p,
        top_k: cfg.top_k,
        eos_token_ids: generation.eos_token_ids.clone(),
        suppress_token_ids: config.vision_token_ids(),
    };
    let loss_cfg = cfg.loss_config();
    let ucfg = UpdateConfig {
        loss: &loss_cfg,
        num_iterations: cfg.num_iterations,
        max_grad_norm: cfg.max_grad_norm,
        mask_truncated: cfg.mask_truncated_completions,
        micro_batch_size: cfg.micro_batch_size,
    };
    let g = cfg.num_generations;
    let total = run.state.total_steps;
    while run.state.step < total {
        let t0 = Instant::now();
        let batch = next_batch(records, &processor, cfg, &mut run.state)?;
        let prompts: Vec<_> = batch.iter().map(|(_, p)| p.clone()).collect();
        let infer = run.policy.inference_model()?;
        let t_gen = Instant::now();
        let ro = rollout(&infer, &processor, &prompts, &rcfg, cfg.seed, run.state.step as u64)?;
        let gen_s = t_gen.elapsed().as_secs_f64();
        let mut per_fn = vec![Vec::new(); names.len()];
        let mut totals = Vec::new();
        for (row, text) in ro.texts.iter().enumerate() {
            let gold = records[batch[row / g].0].gold_letter();
            let (each, total_r) = rewards.score(text, gold);
            for (k, v) in each.into_iter().enumerate() {
                per_fn[k].push(v);
            }
            totals.push(total_r);
        }
        let adv = advantages(&totals, g, cfg.scale_rewards);
        let zero = zero_std_groups(&totals, g);
        let keep: Vec<bool> = (0..totals.len()).map(|r| !(cfg.drop_zero_std_groups && zero[r / g])).collect();
        let lr = run.lr(cfg);
        let t_upd = Instant::now();
        let stats = update(&mut run.policy, reference.as_ref(), &mut run.opt, &ro, &adv, &keep, &ucfg, lr)?;
        let upd_s = t_upd.elapsed().as_secs_f64();
        run.state.step += 1;
        let lens: Vec<f32> = ro.completion_ids.iter().map(|c| c.len() as f32).collect();
        let gen_tokens: usize = ro.completion_ids.iter().map(Vec::len).sum();
        let step_s = t0.elapsed().as_secs_f64();
        let reward_means: std::collections::BTreeMap<String, f64> =
            names.iter().zip(&per_fn).map(|(n, v)| (n.clone(), mean(v))).collect();
        let fraction = |flags: &[bool]| flags.iter().filter(|&&t| t).count() as f64 / flags.len().max(1) as f64;
        let sample = (cfg.sample_every > 0 && run.state.step.is_multiple_of(cfg.sample_every)).then(|| Sample {
            record: records[batch[0].0].id.clone(),
            gold: records[batch[0].0].gold_letter().to_string(),
            completion: ro.texts[0].clone(),
            reward: totals[0],
        });
        let line = StepMetrics {
            step: run.state.step,
            total_steps: total,
            lr,
            loss: stats.loss,
            grad_norm: stats.grad_norm,
            step_seconds: step_s,
            skipped_records: run.state.skipped_records,
            tokens: None,
            grpo: Some(GrpoMetrics {
                reward: mean(&totals),
                accuracy: reward_means.get("accuracy").copied(),
                format_rate: reward_means.get("format").copied(),
                rewards: reward_means,
                advantage: Spread::of(&adv),
                kl: stats.kl,
                clip_low: stats.clip_low_mean,
                clip_high: stats.clip_high_mean,
                clip_region: stats.clip_region_mean,
                entropy: stats.entropy,
                completion_length: Length { mean: mean(&lens), max: lens.iter().cloned().fold(0.0, f32::max) },
                truncated_fraction: fraction(&ro.truncated),
                zero_std_fraction: fraction(&zero),
                rollout_seconds: gen_s,
                update_seconds: upd_s,
                scoring_seconds: stats.scoring_seconds,
                forward_backward_seconds: stats.forward_backward_seconds,
                optimizer_seconds: stats.optimizer_seconds,
                tokens_per_second: gen_tokens as f64 / gen_s.max(1e-9),
                sample,
            }),
        };
        if !run.after_step(cfg, &line, on_step)? {
            break;
        }
    }
    run.finish()
}

/// The SFT target for a record: the answer in the prompt variant's format (an empty think block
/// for the reasoning formats — there are no reasoning labels, and Med-R1's literal "None" is not
/// copied), then the end-of-turn token.
pub fn sft_target(variant: PromptVariant, letter: char) -> String {
    match variant {
        PromptVariant::Think => format!("<think>\n</think>\n<answer>{letter}</answer>"),
        PromptVariant::ThinkAfter => format!("<answer>{letter}</answer>\n<think>\n</think>"),
        _ => format!("<answer>{letter}</answer>"),
    }
}

/// SFT: cross-entropy on the answer tokens only (the prompt is masked out).
pub fn train_sft(
    ck: Checkpoint,
    records: &[Record],
    cfg: &TrainConfig,
    resume: bool,
    on_step: OnStep,
) -> Result<TrainerState> {
    let Checkpoint { dir: source, generation, model, mut processor, layout, stored_dtype, .. } = ck;
    processor.image_processor.cfg.max_pixels = cfg.max_pixels.max(processor.image_processor.cfg.min_pixels);
    let mut run = Run::start("sft", (source, layout, stored_dtype), &model, cfg, records.len(), resume)?;
    drop(model);
    let eos = *generation.eos_token_ids.first().context("generation_config.json names no EOS token")?;
    let total = run.state.total_steps;
    while run.state.step < total {
        let t0 = Instant::now();
        let batch = next_batch(records, &processor, cfg, &mut run.state)?;
        let prompts: Vec<_> = batch.iter().map(|(_, p)| p.clone()).collect();
        let enc = processor.encode(&prompts, None, run.policy.model.device())?;
        let targets: Vec<Vec<u32>> = batch
            .iter()
            .map(|(i, _)| -> Result<Vec<u32>> {
                let mut ids = processor.tokenize(&sft_target(cfg.prompt, records[*i].gold_letter()))?;
                ids.push(eos);
                Ok(ids)
            })
            .collect::<Result<_>>()?;
        let (scoring, cmask) = append_completions(&enc.batch, &targets, processor.pad_token_id);
        // Mean cross-entropy over all answer tokens of the update; micro-batches each add their
        // share (their summed NLL over the whole update's token count).
        let n_tok: f64 = cmask.iter().map(|m| m.iter().map(|&x| x as f64).sum::<f64>()).sum();
        let mut acc = None;
        let mut loss = 0.0;
        let parts = crate::grpo::split_batch(&scoring, &cmask, cfg.micro_batch_size, &run.policy.cfg)?;
        for (k, crate::grpo::MicroBatch { batch: b, masks: m, .. }) in parts.into_iter().enumerate() {
            run.policy.set_dropout_seed(run.opt.step, k);
            let lp = completion_logprobs(&run.policy.model, &b, &m)?;
            let part = (lp.nll()? / n_tok.max(1.0))?;
            loss += part.to_scalar::<f32>()? as f64;
            acc = Some(crate::grpo::accumulate(acc, run.policy.backward(&part)?, &run.policy.vars)?);
        }
        let mut grads = acc.context("an SFT update with no examples")?;
        let norm = clip_grad_norm(&mut grads, &run.policy.vars, cfg.max_grad_norm)?;
        let lr = run.lr(cfg);
        run.opt.step(&grads, lr)?;
        run.state.step += 1;
        let line = StepMetrics {
            step: run.state.step,
            total_steps: total,
            lr,
            loss,
            grad_norm: norm,
            step_seconds: t0.elapsed().as_secs_f64(),
            skipped_records: run.state.skipped_records,
            tokens: Some(n_tok),
            grpo: None,
        };
        if !run.after_step(cfg, &line, on_step)? {
            break;
        }
    }
    run.finish()
}
