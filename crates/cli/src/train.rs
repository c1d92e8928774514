//! `medr1 train` (GRPO), `medr1 sft` (the baseline) and `medr1 demo` (the bundled main job).

use anyhow::{bail, Context, Result};
use clap::Args;
use data::prompts::PromptVariant;
use experiments::demo::{self, DemoEvent, DemoOptions};
use indicatif::{ProgressBar, ProgressStyle};
use rl::config::TrainConfig;
use rl::metrics::StepMetrics;
use rl::optim::Schedule;
use std::path::PathBuf;
use vlm::precision::Precision;
use vlm::shapes::Shape;
use vlm::Checkpoint;

#[derive(Args)]
pub struct TrainArgs {
    /// TOML settings file (every key optional; `--print-config` lists them with Med-R1's defaults).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override one setting, e.g. `--set learning_rate=1e-5 --set prompt=nothink` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Starting checkpoint (same as `--set model=DIR`).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Training data (same as `--set data=PATH`).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Output folder (same as `--set out=DIR`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run saved in the output folder exactly where it stopped.
    #[arg(long)]
    pub resume: bool,
    /// Print the settings (defaults merged with the file and overrides) as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Weights' storage precision for loading: f32 or bf16 (training is float32 in any case; int8
    /// is refused).
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    pub dtype: Precision,
}

/// The demo's default question types as `--question-types` spells them.
fn demo_question_types() -> String {
    DemoOptions::default().question_types.iter().map(|q| q.code()).collect::<Vec<_>>().join(",")
}

// Defaults come from `DemoOptions::default()`, so `medr1 demo` and `medr1 train` with no
// arguments run the same job.
#[derive(Args)]
pub struct DemoArgs {
    /// Output folder: phantoms, checkpoints, metrics.jsonl, summary.json.
    #[arg(long, default_value = "runs/demo")]
    pub out: PathBuf,
    /// Prompt and format reward. nothink learns fastest here: the answer is a handful of tokens, so
    /// every rollout is cheap and the reward depends on the letter alone.
    #[arg(long, value_parser = crate::lenient::lenient::<PromptVariant>(), default_value_t = DemoOptions::default().prompt)]
    pub prompt: PromptVariant,
    /// Seed of the phantoms, the train/test split, the initial weights and the sampling: another
    /// seed is another whole run.
    #[arg(long, default_value_t = DemoOptions::default().seed)]
    pub seed: u64,
    /// Phantom questions per (modality, question type) cell (80% train, 20% held out).
    #[arg(long, default_value_t = DemoOptions::default().per_cell)]
    pub per_cell: usize,
    /// SFT warm-start updates (16 prompts each): enough for the answer format, not for the answers
    /// (30 leaves held-out accuracy near chance; 80 already reaches ~64% on mr,ai).
    #[arg(long, default_value_t = DemoOptions::default().sft_steps)]
    pub sft_steps: usize,
    /// Questions in the labelled warm-start slice.
    #[arg(long, default_value_t = DemoOptions::default().sft_records)]
    pub sft_records: usize,
    /// SFT warm-start learning rate.
    #[arg(long, default_value_t = DemoOptions::default().sft_lr)]
    pub sft_lr: f64,
    /// Question types to use, comma-separated: mr, ai, dd, lg, oba. By default modality and anatomy:
    /// the other three hinge on one lesion or 1-3-pixel dots in a 112-pixel image, which this 1 M
    /// parameter model does not learn to see in minutes (300 SFT updates on all five types: 32-35%
    /// held out on those, 82% on modality, 45% on anatomy).
    #[arg(long, default_value_t = demo_question_types())]
    pub question_types: String,
    /// GRPO updates (about 0.86 s each here with the defaults).
    #[arg(long, default_value_t = DemoOptions::default().grpo_steps)]
    pub grpo_steps: usize,
    /// GRPO learning rate (a tiny model needs ~1e-4; Med-R1's 1e-6 is for 2B parameters; 3e-4 and
    /// 1e-3 collapsed the policy onto one letter per question here).
    #[arg(long, default_value_t = DemoOptions::default().grpo_lr)]
    pub grpo_lr: f64,
    /// GRPO completions per prompt (G). 8 keeps sampling the right letter of prompts the policy is
    /// unsure of for longer than 4 does.
    #[arg(long, default_value_t = DemoOptions::default().num_generations)]
    pub num_generations: usize,
    /// GRPO prompts per update (2 let the answer prior of whole cells drift and collapse).
    #[arg(long, default_value_t = DemoOptions::default().prompts_per_step)]
    pub prompts_per_step: usize,
    /// GRPO KL coefficient against the warm start (0 keeps no reference model). Med-R1's 0.04
    /// keeps the letter distribution from collapsing before the image is read (with 0 the entropy
    /// fell 5x in 150 updates and held-out accuracy did not move).
    #[arg(long, default_value_t = DemoOptions::default().beta)]
    pub beta: f64,
    /// The tiny model's family: qwen2_vl (Med-R1's) or qwen2_5_vl (RMSNorm, SwiGLU and windowed
    /// attention in the vision tower; the bundled Qwen2.5-VL tokenizer).
    #[arg(long, value_enum, default_value_t = DemoOptions::default().family)]
    pub family: vlm::config::Family,
}

fn bar(total: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} [{elapsed_precise} < {eta_precise}]").unwrap(),
    );
    pb.set_message(what.to_string());
    pb
}

pub fn load(a: &TrainArgs, base: TrainConfig) -> Result<TrainConfig> {
    let mut overrides = a.overrides.clone();
    for (k, v) in [("model", &a.model), ("data", &a.data), ("out", &a.out)] {
        if let Some(p) = v {
            overrides.push(format!("{k}={}", toml_string(&p.display().to_string())));
        }
    }
    // Defaults first, then the file, then the flags.
    TrainConfig::load_over(&base, a.config.as_deref(), &overrides)
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn run_training(a: TrainArgs, sft: bool) -> Result<()> {
    let base = if sft {
        // The SFT baseline's own defaults: lr 2e-5, cosine, 10% warmup.
        TrainConfig {
            learning_rate: 2e-5,
            lr_scheduler: Schedule::Cosine,
            warmup_ratio: 0.1,
            out: PathBuf::from("runs/sft"),
            ..TrainConfig::default()
        }
    } else {
        TrainConfig::default()
    };
    let cfg = load(&a, base)?;
    if a.print_config {
        print!("{}", cfg.to_toml());
        return Ok(());
    }
    if cfg.model.as_os_str().is_empty() || cfg.data.as_os_str().is_empty() {
        bail!("give --model and --data (or run `medr1 demo` for the bundled main job)");
    }
    crate::output::ensure_writable(&cfg.out, "output")?;
    let records = crate::data::usable_records(&cfg.data, cfg.images.clone(), "training records")?;
    if a.dtype.quantized() {
        bail!("--dtype {} cannot train (training is float32): use f32 or bf16", a.dtype);
    }
    let ck = Checkpoint::open_as(&cfg.model, a.dtype)?;
    let settings = cfg.out.join("train_config.toml");
    std::fs::write(&settings, cfg.to_toml()).with_context(|| format!("{}: cannot write", settings.display()))?;
    let total = rl::trainer::total_steps(&cfg, records.len());
    let pb = bar(total as u64, if sft { "sft" } else { "grpo" });
    let mut on = |m: &StepMetrics| {
        pb.set_position(m.step as u64);
        pb.set_message(m.progress_message());
        if let Some(s) = m.grpo.as_ref().and_then(|g| g.sample.as_ref()) {
            pb.println(format!("step {} sample (gold {}): {:?}", m.step, s.gold, s.completion));
        }
        true
    };
    let state = if sft {
        rl::trainer::train_sft(ck, &records, &cfg, a.resume, &mut on)?
    } else {
        rl::trainer::train_grpo(ck, &records, &cfg, &cfg.rewards(), a.resume, &mut on)?
    };
    pb.finish_and_clear();
    println!(
        "{} updates done ({} records skipped); checkpoint and metrics.jsonl in {}",
        state.step,
        state.skipped_records,
        cfg.out.display()
    );
    Ok(())
}

pub fn train(a: TrainArgs) -> Result<()> {
    if a.config.is_none() && a.model.is_none() && a.data.is_none() && a.overrides.is_empty() && !a.print_config {
        // `medr1 train` with no arguments is the bundled main job.
        let d = DemoOptions::default();
        return demo(DemoArgs {
            out: a.out.unwrap_or(d.out),
            prompt: d.prompt,
            seed: d.seed,
            per_cell: d.per_cell,
            sft_steps: d.sft_steps,
            sft_records: d.sft_records,
            sft_lr: d.sft_lr,
            grpo_steps: d.grpo_steps,
            grpo_lr: d.grpo_lr,
            num_generations: d.num_generations,
            prompts_per_step: d.prompts_per_step,
            beta: d.beta,
            family: d.family,
            question_types: demo_question_types(),
        });
    }
    run_training(a, false)
}

pub fn sft(a: TrainArgs) -> Result<()> {
    run_training(a, true)
}

pub fn demo(a: DemoArgs) -> Result<()> {
    let prompt = a.prompt;
    let question_types = a
        .question_types
        .split(',')
        .map(|c| match data::QuestionType::ALL.into_iter().find(|q| q.code() == c.trim()) {
            Some(q) => Ok(q),
            None => bail!("--question-types: unknown `{}` (mr, ai, dd, lg, oba)", c.trim()),
        })
        .collect::<Result<Vec<_>>>()?;
    crate::output::ensure_writable(&a.out, "output")?;
    let o = DemoOptions {
        question_types,
        out: a.out.clone(),
        prompt,
        seed: a.seed,
        per_cell: a.per_cell,
        sft_steps: a.sft_steps,
        sft_records: a.sft_records,
        sft_lr: a.sft_lr,
        grpo_steps: a.grpo_steps,
        grpo_lr: a.grpo_lr,
        num_generations: a.num_generations,
        prompts_per_step: a.prompts_per_step,
        beta: a.beta,
        family: a.family,
        ..DemoOptions::default()
    };
    let mut pb: Option<ProgressBar> = None;
    let summary = demo::run(&o, &mut |e| match e {
        DemoEvent::Phase(p) => {
            if let Some(b) = pb.take() {
                b.finish_and_clear();
            }
            eprintln!("== {p}");
        }
        DemoEvent::Step(kind, m) => {
            let b = pb.get_or_insert_with(|| bar(m.total_steps as u64, kind));
            b.set_position(m.step as u64);
            b.set_message(m.progress_message());
        }
        DemoEvent::Eval(name, s) => {
            if let Some(b) = pb.take() {
                b.finish_and_clear();
            }
            eprintln!(
                "{name}: {:.1}% on {} held-out questions (format {:.0}%)",
                s.strict.overall.accuracy, s.strict.overall.n, s.format_rate
            );
            for (m, acc) in &s.strict.by.modality {
                eprintln!("  {m:<28} {:5.1}%  (n={})", acc.accuracy, acc.n);
            }
            for (q, acc) in &s.strict.by.question_type {
                eprintln!("  {q:<28} {:5.1}%  (n={})", acc.accuracy, acc.n);
            }
        }
    })?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}

#[derive(Args)]
pub struct PlotArgs {
    /// A metrics.jsonl written by `medr1 train`, `medr1 sft` or `medr1 demo`.
    pub metrics: PathBuf,
    /// The PNG to write: reward, accuracy, KL and completion length against the step.
    #[arg(long, default_value = "curves.png")]
    pub out: PathBuf,
}

pub fn plot(a: PlotArgs) -> Result<()> {
    experiments::plot::plot(&a.metrics, &a.out)?;
    println!("{}", a.out.display());
    Ok(())
}

#[derive(Args)]
pub struct BenchGrpoArgs {
    /// Checkpoint to train (default: the bundled tiny shape with random weights, built in a
    /// temporary folder).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// GRPO updates to time (the first is reported apart: it includes warm-up).
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Completions per prompt and prompts per update (Med-R1: 4 and 4).
    #[arg(long, default_value_t = 4)]
    pub num_generations: usize,
    #[arg(long, default_value_t = 4)]
    pub prompts_per_step: usize,
    /// Longest completion (random weights rarely stop early, so this sets the rollout length).
    #[arg(long, default_value_t = 32)]
    pub max_completion_length: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// `2b`: instead, one GRPO step at Qwen2-VL-2B's shape with random weights (one prompt with a
    /// 392x392 image, G = --num-generations completions of --max-completion-length tokens),
    /// reporting peak memory and the time split. Use with --lora-r (full fine-tuning does not fit).
    #[arg(long, value_enum)]
    pub shape: Option<Shape>,
    /// LoRA rank for --shape (0 = full fine-tuning).
    #[arg(long, default_value_t = 0)]
    pub lora_r: usize,
    /// Frozen base storage for --shape with LoRA: f32 or bf16.
    #[arg(long, value_enum, default_value_t = Precision::Bf16)]
    pub lora_base_dtype: Precision,
    /// KL coefficient for --shape (Med-R1: 0.04; needs the reference forward).
    #[arg(long, default_value_t = 0.04)]
    pub beta: f64,
    /// Completions per forward/backward pass for --shape (gradient accumulation; 0 = all).
    #[arg(long, default_value_t = 0)]
    pub micro_batch_size: usize,
    /// Recompute each layer in the backward pass for --shape (less memory, more compute).
    #[arg(long)]
    pub gradient_checkpointing: bool,
}

/// Times GRPO updates on phantom questions: rollout, scoring (reference log-probs), the policy's
/// forward + backward, and the optimizer.
pub fn bench_grpo(a: BenchGrpoArgs) -> Result<()> {
    if let Some(shape) = a.shape {
        if a.lora_base_dtype.quantized() {
            bail!("--lora-base-dtype {} is not supported yet (f32 or bf16)", a.lora_base_dtype);
        }
        let lora = (a.lora_r > 0).then(|| rl::lora::LoraSettings {
            r: a.lora_r,
            alpha: 2.0 * a.lora_r as f64,
            dropout: 0.0,
            target_modules: TrainConfig::default().lora_target_modules,
            vision: false,
            base_bf16: a.lora_base_dtype == Precision::Bf16,
        });
        let b = crate::bench_grpo_shape::ShapeBench {
            shape,
            lora,
            num_generations: a.num_generations,
            completion_length: a.max_completion_length,
            beta: a.beta,
            micro_batch_size: a.micro_batch_size,
            gradient_checkpointing: a.gradient_checkpointing,
        };
        let v = crate::bench_grpo_shape::run(&b)?;
        println!("{}", if a.json { v.to_string() } else { serde_json::to_string_pretty(&v)? });
        return Ok(());
    }
    let dir = std::env::temp_dir().join(format!("medr1-bench-grpo-{}", std::process::id()));
    let records = data::phantoms::generate(
        &dir.join("phantoms"),
        &data::phantoms::PhantomConfig { per_cell: 4, size: 112, seed: 0, fixed_options: false },
        &|_, _| {},
    )?;
    let model = match &a.model {
        Some(m) => m.clone(),
        None => {
            // The bundled checkpoint's shape and tokenizer; weights at its initializer_range.
            let m = dir.join("model");
            experiments::demo::write_random_checkpoint(&m, &vlm::shapes::tiny_config_json(), 0.15, 0)?;
            m
        }
    };
    let cfg = TrainConfig {
        model: model.clone(),
        out: dir.join("run"),
        prompt: PromptVariant::Think,
        num_generations: a.num_generations,
        prompts_per_step: a.prompts_per_step,
        max_completion_length: a.max_completion_length,
        max_steps: a.steps,
        learning_rate: 1e-5,
        sample_every: 0,
        ..TrainConfig::default()
    };
    let ck = Checkpoint::open(&model, candle_core::DType::F32)?;
    let mut lines = Vec::new();
    rl::trainer::train_grpo(ck, &records, &cfg, &cfg.rewards(), false, &mut |m: &StepMetrics| {
        lines.push(m.clone());
        true
    })?;
    let _ = std::fs::remove_dir_all(&dir);
    let rest: Vec<&rl::metrics::GrpoMetrics> =
        lines[1.min(lines.len())..].iter().filter_map(|m| m.grpo.as_ref()).collect();
    let n = rest.len().max(1) as f64;
    let avg = |f: fn(&rl::metrics::GrpoMetrics) -> f64| rest.iter().map(|g| f(g)).sum::<f64>() / n;
    let step_seconds = lines[1.min(lines.len())..].iter().map(|m| m.step_seconds).sum::<f64>() / n;
    let (rollout, scoring) = (avg(|g| g.rollout_seconds), avg(|g| g.scoring_seconds));
    let (fb, optimizer) = (avg(|g| g.forward_backward_seconds), avg(|g| g.optimizer_seconds));
    let out = serde_json::json!({
        "steps": lines.len(), "completions_per_step": a.num_generations * a.prompts_per_step,
        "step_seconds": step_seconds, "rollout_seconds": rollout, "scoring_seconds": scoring,
        "forward_backward_seconds": fb, "optimizer_seconds": optimizer,
        "rollout_tokens_per_second": avg(|g| g.tokens_per_second),
        "completion_length": avg(|g| g.completion_length.mean),
        "first_step_seconds": lines.first().map(|m| m.step_seconds),
    });
    if a.json {
        println!("{out}");
    } else {
        println!(
            "GRPO update, mean of {} (after the first): {step_seconds:.3} s = rollout {rollout:.3} s + reference \
             scoring {scoring:.3} s + forward/backward {fb:.3} s + optimizer {optimizer:.3} s (+ data and rewards)",
            rest.len()
        );
    }
    Ok(())
}

#[derive(Args)]
pub struct MergeArgs {
    /// The base checkpoint the adapter was trained on.
    #[arg(long)]
    pub model: PathBuf,
    /// A LoRA adapter folder (adapter_config.json + adapter_model.safetensors, as `medr1 train`
    /// with `lora_r` > 0 or PEFT writes).
    #[arg(long)]
    pub adapter: PathBuf,
    /// Where to write the merged full checkpoint (the base's layout and storage dtype).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn merge(a: MergeArgs) -> Result<()> {
    let n = rl::lora::merge_checkpoint(&a.model, &a.adapter, &a.out)?;
    println!("merged {n} adapted layers into {}", a.out.display());
    Ok(())
}
