//! A whole generalization experiment as in Med-R1: split the data 80/20 per modality (or per
//! question type), train one model on each domain's training part, test every model on every
//! domain's test part, and assemble the matrix (rows: trained on, columns: tested on).
//!
//! Folder layout under `out`:
//! - `train/<domain>/` — the checkpoint, metrics.jsonl and trainer state of that domain's model;
//! - `eval/<domain>/` — its predictions.jsonl and summary.json on all test sets;
//! - `report/` — `medr1 report` over the eval folders (matrix CSV/PNG/SVG, tables).
//!
//! Rerunning into the same folder continues: finished trainings are kept, an interrupted one
//! resumes from its trainer state, evaluations skip answered questions.

use anyhow::{bail, Result};
use candle_core::DType;
use data::split::{self, DomainSplit};
use data::Record;
use eval::backend::local::Local;
use eval::report::matrix::BASE;
use eval::report::{self, Axis, ReportOptions};
use eval::run::{run, Progress, RunOptions};
use rl::config::TrainConfig;
use rl::metrics::StepMetrics;
use rl::trainer::{train_grpo, train_sft};
use std::path::{Path, PathBuf};
use vlm::Checkpoint;

/// How each domain's model is trained: GRPO (Med-R1) or SFT (the baseline).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Trainer {
    Grpo,
    Sft,
}

pub struct ProtocolOptions {
    pub axis: Axis,
    pub trainer: Trainer,
    /// Training settings shared by every domain (`model` is the starting checkpoint; `out` is
    /// replaced per domain).
    pub train: TrainConfig,
    pub out: PathBuf,
    /// Split seed (the same one `medr1 data split` takes).
    pub split_seed: u64,
    /// Train only on these domains (canonical names); all when empty.
    pub domains: Vec<String>,
    /// Test questions per test domain (all when None).
    pub test_limit: Option<usize>,
    pub eval_batch_size: usize,
    pub eval_max_new_tokens: usize,
    /// Also test the starting checkpoint on every domain (the matrices' `base` row and the gains
    /// over it).
    pub base_row: bool,
}

pub enum ProtocolEvent<'a> {
    /// A domain's training starts (domain, number of training records).
    Train(&'a str, usize),
    Step(&'a StepMetrics),
    /// A domain's model is evaluated.
    Eval(&'a str, &'a Progress),
    Row(&'a str, &'a eval::Summary),
}

fn splits(records: &[Record], axis: Axis, seed: u64) -> Vec<DomainSplit<'_>> {
    match axis {
        Axis::Modality => split::by_modality(records, seed),
        Axis::QuestionType => split::by_question_type(records, seed),
    }
}

/// At most `limit` items spread evenly over `items` (all of them when no limit).
fn spread<'a>(items: &[&'a Record], limit: Option<usize>) -> Vec<&'a Record> {
    match limit {
        Some(n) if n < items.len() => (0..n).map(|i| items[i * items.len() / n]).collect(),
        _ => items.to_vec(),
    }
}

/// Whether `dir` holds a finished training of `total` updates.
fn finished(dir: &Path) -> Option<bool> {
    let state = rl::save::load_state(dir).ok()?.0;
    Some(state.step >= state.total_steps)
}

/// Runs the experiment; returns the report's files.
pub fn run_protocol(
    records: &[Record],
    o: &ProtocolOptions,
    on: &mut dyn FnMut(ProtocolEvent),
) -> Result<Vec<PathBuf>> {
    let parts = splits(records, o.axis, o.split_seed);
    // Every model is tested on the same questions: each domain's test part, capped by an even
    // spread over it (its records are in file order, grouped by the other axis, so its first N
    // would all share one question type or modality).
    let test: Vec<Record> = parts.iter().flat_map(|p| spread(&p.test, o.test_limit).into_iter().cloned()).collect();
    let wanted: Vec<String> = o
        .domains
        .iter()
        .map(|d| {
            o.axis.canonical(d).map(String::from).ok_or_else(|| {
                anyhow::anyhow!("unknown {} `{d}`", if o.axis == Axis::Modality { "modality" } else { "question type" })
            })
        })
        .collect::<Result<_>>()?;
    let image = o.train.image_prep()?;
    // Tests one checkpoint on every domain's test part into OUT/eval/<folder>.
    let test_model = |model_dir: &Path, row: &str, on: &mut dyn FnMut(ProtocolEvent)| -> Result<PathBuf> {
        let ck = Checkpoint::open(model_dir, DType::F32)?;
        let backend = Local {
            checkpoint: &ck,
            name: model_dir.display().to_string(),
            batch_size: o.eval_batch_size,
            max_new_tokens: o.eval_max_new_tokens,
        };
        let eval_dir = o.out.join("eval").join(report::file_safe(row));
        let ro = RunOptions {
            variant: o.train.prompt,
            out: eval_dir.clone(),
            image,
            limit: None,
            data: "protocol test sets".into(),
            train_domain: Some(row.to_string()),
        };
        let s = run(&backend, &test, &ro, &mut |pr| on(ProtocolEvent::Eval(row, pr)))?;
        on(ProtocolEvent::Row(row, &s));
        Ok(eval_dir)
    };
    let mut eval_dirs = Vec::new();
    // The starting checkpoint's row: what training is measured against.
    if o.base_row {
        eval_dirs.push(test_model(&o.train.model, BASE, on)?);
    }
    for p in &parts {
        let domain = o.axis.canonical(&p.domain).unwrap_or(&p.domain).to_string();
        if (!wanted.is_empty() && !wanted.contains(&domain)) || p.train.is_empty() {
            continue;
        }
        let train_dir = o.out.join("train").join(report::file_safe(&domain));
        let cfg = TrainConfig { out: train_dir.clone(), ..o.train.clone() };
        let train: Vec<Record> = p.train.iter().map(|r| (*r).clone()).collect();
        match finished(&train_dir) {
            Some(true) => {}
            state => {
                on(ProtocolEvent::Train(&domain, train.len()));
                std::fs::create_dir_all(&train_dir)?;
                std::fs::write(train_dir.join("train_config.toml"), cfg.to_toml())?;
                let ck = Checkpoint::open(&o.train.model, DType::F32)?;
                let mut cb = |m: &StepMetrics| {
                    on(ProtocolEvent::Step(m));
                    true
                };
                match o.trainer {
                    Trainer::Grpo => train_grpo(ck, &train, &cfg, &cfg.rewards(), state.is_some(), &mut cb)?,
                    Trainer::Sft => train_sft(ck, &train, &cfg, state.is_some(), &mut cb)?,
                };
            }
        }
        // A LoRA run saves an adapter: test the base with it folded in.
        let model_dir = if cfg.lora().is_some() {
            let merged = train_dir.join("merged");
            rl::lora::merge_checkpoint(&o.train.model, &train_dir, &merged)?;
            merged
        } else {
            train_dir.clone()
        };
        let eval_dir = test_model(&model_dir, &domain, on)?;
        eval_dirs.push(eval_dir);
    }
    if eval_dirs.is_empty() {
        bail!("no domain had training records (domains asked: {:?})", o.domains);
    }
    let runs = eval_dirs.iter().map(|d| report::load_run(&d.display().to_string())).collect::<Result<Vec<_>>>()?;
    report::write_report(&runs, &ReportOptions { out: o.out.join("report"), axis: Some(o.axis), diff: None })
}
