//! `medr1 protocol`: a whole cross-modality or cross-task experiment, ending in its matrix.

use crate::train::TrainArgs;
use anyhow::{bail, Result};
use clap::Args;
use data::phantoms::{self, PhantomConfig};
use data::prompts::PromptVariant;
use eval::report::Axis;
use experiments::protocol::{run_protocol, ProtocolEvent, ProtocolOptions, Trainer};
use indicatif::{ProgressBar, ProgressStyle};
use rl::config::TrainConfig;
use rl::optim::Schedule;
use std::path::PathBuf;

#[derive(Args)]
pub struct ProtocolArgs {
    /// What the experiment varies: modality (8x8 matrix) or question_type (5x5).
    #[arg(long, default_value = "modality")]
    pub axis: Axis,
    /// How each domain's model is trained: grpo (Med-R1) or sft (the baseline).
    #[arg(long, value_enum, default_value_t = Trainer::Grpo)]
    pub trainer: Trainer,
    /// Train only these domains, comma-separated (e.g. `CT,MRI`); all by default.
    #[arg(long)]
    pub domains: Option<String>,
    /// Test questions per test domain (all by default).
    #[arg(long)]
    pub test_limit: Option<usize>,
    /// Questions answered together when testing.
    #[arg(long, default_value_t = 16)]
    pub eval_batch_size: usize,
    /// Most tokens per test answer (Med-R1: 256).
    #[arg(long, default_value_t = 256)]
    pub eval_max_new_tokens: usize,
    /// Seed of the 80/20 split (as `medr1 data split --seed`).
    #[arg(long, default_value_t = 0)]
    pub split_seed: u64,
    /// Skip testing the starting checkpoint (the matrices' `base` row and the gains over it).
    #[arg(long)]
    pub no_base_row: bool,
    /// Training settings: --model, --data, --out (default runs/protocol), --config, --set as for
    /// `medr1 train`. Without --model and --data: the bundled benchmark, sized so each cell's
    /// 95% interval is about +-10 points — phantom modality and anatomy questions (240 per
    /// modality x question type, fixed option order), 96 test questions per modality; the tiny
    /// model (--family) warm-started by 30 SFT updates on phantoms of another seed (near chance, as the
    /// demo's), then 60 GRPO updates of 4 prompts x G = 8 per modality unless --set says
    /// otherwise.
    #[command(flatten)]
    pub train: TrainArgs,
    /// The bundled benchmark's tiny model family: qwen2_vl or qwen2_5_vl (ignored with --model).
    #[arg(long, value_enum, default_value_t = vlm::config::Family::Qwen2Vl)]
    pub family: vlm::config::Family,
}

/// The bundled benchmark's sizes (see `ProtocolArgs::train`).
const BUNDLED_PER_CELL: usize = 240;
const BUNDLED_QUESTION_TYPES: [data::QuestionType; 2] =
    [data::QuestionType::ModalityRecognition, data::QuestionType::AnatomyIdentification];

pub fn run(mut a: ProtocolArgs) -> Result<()> {
    let out = a.train.out.clone().unwrap_or_else(|| PathBuf::from("runs/protocol"));
    crate::output::ensure_writable(&out, "output")?;
    let bundled = a.train.model.is_none() && a.train.data.is_none() && a.train.config.is_none();
    let trainer = a.trainer;
    let mut base = match trainer {
        Trainer::Sft => TrainConfig {
            learning_rate: 2e-5,
            lr_scheduler: Schedule::Cosine,
            warmup_ratio: 0.1,
            ..TrainConfig::default()
        },
        Trainer::Grpo => TrainConfig::default(),
    };
    if bundled {
        eprintln!("== the bundled benchmark: phantoms and the tiny {} in {}", a.family, out.display());
        let ph = out.join("phantoms");
        let cfg = PhantomConfig { per_cell: BUNDLED_PER_CELL, size: 112, seed: 0, fixed_options: true };
        phantoms::generate(&ph, &cfg, &|_, _| {})?;
        let mut init = out.join("model-init");
        if !init.join("model.safetensors").exists() {
            experiments::demo::make_tiny_checkpoint(&init, 0, a.family)?;
        }
        let small = TrainConfig { prompt: PromptVariant::NoThink, max_pixels: 12544, sample_every: 0, ..base };
        // The stand-in for an instruction-tuned base model: the demo's warm start (30 SFT updates
        // of 16 on 160 modality and anatomy questions drawn with another seed, other images than
        // the experiment's), so every domain's training starts from a model that answers in the
        // format but near chance.
        let warm = out.join("warm-start");
        if !warm.join("model.safetensors").exists() {
            eprintln!("== SFT warm start of the tiny model (30 updates on 160 questions of seed 1)");
            let slice: Vec<data::Record> = phantoms::generate(
                &out.join("warm-start-phantoms"),
                &PhantomConfig { per_cell: 10, size: 112, seed: 1, fixed_options: true },
                &|_, _| {},
            )?
            .into_iter()
            .filter(|r| r.question_type.is_some_and(|q| BUNDLED_QUESTION_TYPES.contains(&q)))
            .collect();
            let cfg = TrainConfig {
                model: init.clone(),
                out: warm.clone(),
                learning_rate: 2e-3,
                lr_scheduler: Schedule::Cosine,
                warmup_ratio: 0.1,
                prompts_per_step: 16,
                max_steps: 30,
                ..small.clone()
            };
            rl::trainer::train_sft(
                vlm::Checkpoint::open(&init, candle_core::DType::F32)?,
                &slice,
                &cfg,
                false,
                &mut |_| true,
            )?;
        }
        init = warm;
        base = match trainer {
            Trainer::Sft => TrainConfig { learning_rate: 1e-3, prompts_per_step: 16, max_steps: 20, ..small },
            Trainer::Grpo => TrainConfig {
                learning_rate: 1e-4,
                lr_scheduler: Schedule::Constant,
                prompts_per_step: 4,
                num_generations: 8,
                max_completion_length: 12,
                beta: 0.04,
                max_steps: 60,
                ..small
            },
        };
        a.train.model = Some(init);
        a.train.data = Some(ph);
        if a.eval_max_new_tokens == 256 {
            a.eval_max_new_tokens = 16;
        }
        if a.eval_batch_size == 16 {
            a.eval_batch_size = 32;
        }
    }
    a.train.out = Some(out.clone());
    let cfg = crate::train::load(&a.train, base)?;
    if a.train.print_config {
        print!("{}", cfg.to_toml());
        return Ok(());
    }
    if cfg.model.as_os_str().is_empty() || cfg.data.as_os_str().is_empty() {
        bail!("give --model and --data (or neither, for the bundled benchmark)");
    }
    let mut records = crate::data::usable_records(&cfg.data, cfg.images.clone(), "records")?;
    if bundled {
        // The question types the tiny model learns in minutes (see the demo).
        records.retain(|r| r.question_type.is_some_and(|q| BUNDLED_QUESTION_TYPES.contains(&q)));
    }
    let o = ProtocolOptions {
        axis: a.axis,
        trainer,
        train: cfg,
        out: out.clone(),
        split_seed: a.split_seed,
        domains: a
            .domains
            .as_deref()
            .map(|d| d.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default(),
        test_limit: a.test_limit,
        eval_batch_size: a.eval_batch_size,
        eval_max_new_tokens: a.eval_max_new_tokens,
        base_row: !a.no_base_row,
    };
    let mut pb: Option<ProgressBar> = None;
    let style = ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} [{elapsed_precise} < {eta_precise}]").unwrap();
    let files = run_protocol(&records, &o, &mut |e| match e {
        ProtocolEvent::Train(d, n) => {
            if let Some(b) = pb.take() {
                b.finish_and_clear();
            }
            eprintln!("== {d}: training on {n} questions");
        }
        ProtocolEvent::Step(m) => {
            let b = pb.get_or_insert_with(|| ProgressBar::new(m.total_steps as u64).with_style(style.clone()));
            b.set_position(m.step as u64);
            b.set_message(m.progress_message());
        }
        ProtocolEvent::Eval(_, p) => {
            let b = pb.get_or_insert_with(|| ProgressBar::new(p.total as u64).with_style(style.clone()));
            b.set_length(p.total as u64);
            b.set_position(p.done as u64);
            b.set_message(format!(
                "test accuracy {:.1}%",
                if p.scored == 0 { 0.0 } else { 100.0 * p.correct as f64 / p.scored as f64 }
            ));
        }
        ProtocolEvent::Row(d, s) => {
            if let Some(b) = pb.take() {
                b.finish_and_clear();
            }
            let axis = s.by_axis(o.axis);
            let cells: Vec<String> =
                axis.iter().map(|(k, v)| format!("{} {:.0}", eval::report::short_name(k), v.accuracy)).collect();
            eprintln!("   trained on {d}: {}", cells.join(", "));
        }
    })?;
    for f in files {
        println!("{}", f.display());
    }
    Ok(())
}
