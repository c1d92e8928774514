//! `medr1 eval` (score a checkpoint or an endpoint on any data the data layer reads) and
//! `medr1 report` (tables, matrices and figures from eval folders).

use anyhow::{bail, Context, Result};
use clap::Args;
use data::prompts::PromptVariant;
use eval::backend::endpoint::{Endpoint, EndpointOptions};
use eval::backend::local::Local;
use eval::backend::Backend;
use eval::report::{self, Axis, ReportOptions};
use eval::run::{run, Progress, RunOptions};
use eval::Summary;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::time::Duration;
use vlm::precision::Precision;
use vlm::Checkpoint;

/// Answers are read two ways. Med-R1's rule: the word in the first `<answer> X </answer>` must equal
/// the gold letter (the paper's number; applied to every prompt variant — Med-R1's released
/// No-Think scripts compared the raw output instead, scoring `<answer>C</answer>` wrong). Lenient:
/// also a lone letter (`C`, `(c)`, `C) text`, "the answer is C") or the one option whose text
/// appears, inside the answer tag or anywhere — reported separately under "lenient".
#[derive(Args)]
#[command(after_help = "Answers are read two ways. Med-R1's rule (the headline accuracy): the word in the first \
<answer> X </answer> must equal the gold letter; it applies to every prompt variant (Med-R1's released \
No-Think scripts compared the raw output instead, scoring <answer>C</answer> wrong). Lenient (reported \
under \"lenient\"): also a letter in any case inside the tag, an option's text inside the tag, and \
without tags a lone letter (C, (C), C.), a capital letter opening the text followed by ), . or :, \
\"answer is C\" / \"Answer: C\", or the one option whose text appears in the output.")]
pub struct EvalArgs {
    /// Checkpoint directory to score locally (or use --endpoint).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The questions: an OmniMedVQA root or QA file, a Med-R1 split file or folder, or a folder
    /// written by `medr1 data phantoms` / `medr1 data split`.
    #[arg(long)]
    pub data: PathBuf,
    /// Where images are, when not beside the data (OmniMedVQA root for split files).
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// Prompt variant: think, nothink, thinkafter (Med-R1's instructions) or zeroshot (the bare question).
    #[arg(long, value_parser = crate::lenient::lenient::<PromptVariant>())]
    pub prompt: PromptVariant,
    /// Output folder: predictions.jsonl and summary.json. Rerunning into it resumes.
    #[arg(long)]
    pub out: PathBuf,
    /// Questions answered together (local model), as one left-padded batch.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Most tokens generated per answer (Med-R1: 256).
    #[arg(long, default_value_t = 256)]
    pub max_new_tokens: usize,
    /// Score only the first N records of the data (in file order; a resumed run uses the same N).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Resize every image to WxH first (PIL bicubic), as Med-R1 does with 384x384.
    #[arg(long, value_name = "WxH", value_parser = parse_size)]
    pub resize: Option<(u32, u32)>,
    #[command(flatten)]
    pub view: crate::view::ViewArgs,
    /// Weights' precision: f32 (the reference), bf16, or int8 (linear layers and the embedding
    /// quantized per output channel as they load, or read as `medr1 quantize` stored them).
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    pub dtype: Precision,
    /// The domain the model was trained on (a modality or question type), recorded in the summary
    /// so `medr1 report` can place this run in a cross-domain matrix.
    #[arg(long)]
    pub train_domain: Option<String>,
    /// Score an OpenAI-compatible chat-completions server instead (vLLM, SGLang, `medr1 serve`):
    /// its base URL, e.g. http://localhost:8000/v1.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// The model name the endpoint serves (the request's `model` field).
    #[arg(long)]
    pub served_model: Option<String>,
    /// Requests in flight at once (endpoint).
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Environment variable holding the endpoint's API key (sent as a Bearer token).
    #[arg(long)]
    pub api_key_env: Option<String>,
    /// Seconds before one endpoint request is abandoned (then retried).
    #[arg(long, default_value_t = 300.0)]
    pub timeout: f64,
    /// Retries of a failed endpoint request (transport errors, timeouts, 408, 429, 5xx), waiting
    /// 1 s, 2 s, 4 s, ... in between; a record that still fails is recorded with its error and
    /// retried by the next run into the same --out.
    #[arg(long, default_value_t = 3)]
    pub retries: usize,
    /// With --endpoint: ask for `logprobs` with this many `top_logprobs` per token (0-20), so each
    /// record gets the option letters' probabilities at the answer position and the summary its
    /// calibration (vLLM and SGLang return them; `medr1 serve` does not yet). Local scoring always
    /// records them.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=20))]
    pub top_logprobs: Option<u8>,
}

pub fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(|| format!("`{s}`: give WxH, e.g. 384x384"))?;
    let p = |v: &str| {
        v.trim().parse::<u32>().ok().filter(|&n| n > 0).ok_or_else(|| format!("`{s}`: give WxH with positive integers"))
    };
    Ok((p(w)?, p(h)?))
}

fn progress_bar() -> ProgressBar {
    let pb = ProgressBar::new(0);
    pb.set_style(
        ProgressStyle::with_template("eval {bar:30} {pos}/{len} [{elapsed_precise} < {eta_precise}] {msg}").unwrap(),
    );
    pb
}

pub fn print_summary(s: &Summary) {
    println!(
        "accuracy {:.1}% on {} questions (lenient {:.1}%, format rate {:.1}%, {} failed)",
        s.strict.overall.accuracy, s.strict.overall.n, s.lenient.overall.accuracy, s.format_rate, s.failed
    );
    for (title, m) in [("modality", &s.strict.by.modality), ("question type", &s.strict.by.question_type)] {
        for (k, a) in m {
            println!("  {title:<13} {k:<28} {:>5.1}%  (n={})", a.accuracy, a.n);
        }
    }
}

pub fn eval(a: EvalArgs) -> Result<()> {
    crate::output::ensure_writable(&a.out, "output")?;
    let records = crate::data::usable_records(&a.data, a.images.clone(), "records")?;
    if records.is_empty() {
        bail!("{}: no usable records", a.data.display());
    }
    let ck;
    let local;
    let endpoint;
    let backend: &dyn Backend = match (&a.model, &a.endpoint) {
        (Some(m), None) => {
            ck = Checkpoint::open_as(m, a.dtype)?;
            local = Local {
                checkpoint: &ck,
                name: m.display().to_string(),
                batch_size: a.batch_size,
                max_new_tokens: a.max_new_tokens,
            };
            &local
        }
        (None, Some(url)) => {
            let served_model =
                a.served_model.clone().context("--endpoint needs --served-model (the model name the server knows)")?;
            let api_key = match &a.api_key_env {
                Some(var) => {
                    Some(std::env::var(var).with_context(|| format!("--api-key-env {var}: the variable is not set"))?)
                }
                None => None,
            };
            endpoint = Endpoint::new(EndpointOptions {
                url: url.clone(),
                served_model,
                api_key,
                concurrency: a.concurrency.max(1),
                max_new_tokens: a.max_new_tokens,
                timeout: Duration::from_secs_f64(a.timeout),
                retries: a.retries,
                backoff: Duration::from_secs(1),
                top_logprobs: a.top_logprobs.map(usize::from),
            });
            &endpoint
        }
        (Some(_), Some(_)) => bail!("give --model or --endpoint, not both"),
        (None, None) => bail!("give --model DIR (a local checkpoint) or --endpoint URL --served-model NAME"),
    };
    let pb = progress_bar();
    let mut on = |p: &Progress| {
        pb.set_length(p.total as u64);
        pb.set_position(p.done as u64);
        let acc = if p.scored == 0 { 0.0 } else { 100.0 * p.correct as f64 / p.scored as f64 };
        pb.set_message(format!(
            "accuracy {acc:.1}%{}",
            if p.failed > 0 { format!(", {} failed", p.failed) } else { String::new() }
        ));
        if p.resumed > 0 && p.done == p.resumed {
            // Said on stderr even when no bar is drawn (not a terminal), so logs show it.
            pb.suspend(|| eprintln!("resuming: {} records already answered in {}", p.resumed, a.out.display()));
        }
    };
    let o = RunOptions {
        variant: a.prompt,
        out: a.out.clone(),
        image: eval::prompt::ImagePrep { resize: a.resize, view: a.view.options() },
        limit: a.limit,
        data: a.data.display().to_string(),
        train_domain: a.train_domain.clone(),
    };
    let s = run(backend, &records, &o, &mut on)?;
    pb.finish_and_clear();
    print_summary(&s);
    println!("predictions.jsonl and summary.json in {}", a.out.display());
    if s.failed > 0 {
        eprintln!(
            "{} records failed (their errors are in predictions.jsonl); rerun the same command to retry them",
            s.failed
        );
    }
    Ok(())
}

#[derive(Args)]
pub struct ReportArgs {
    /// `medr1 eval` output folders. Write DOMAIN=DIR to say what the model scored in DIR was
    /// trained on (otherwise its --train-domain is used); runs with a training domain form the
    /// cross-domain matrix, one per prompt variant.
    #[arg(required = true, value_name = "[DOMAIN=]DIR")]
    pub runs: Vec<String>,
    /// Output folder for report.md, the CSV tables and the PNG/SVG figures.
    #[arg(long, default_value = "report")]
    pub out: PathBuf,
    /// The matrices' axis: modality or question_type (inferred from the training domains).
    #[arg(long)]
    pub axis: Option<Axis>,
    /// Difference matrix A minus B between two prompt variants, e.g. `nothink,think` (the default
    /// when both are present).
    #[arg(long, value_name = "A,B")]
    pub diff: Option<String>,
}

pub fn report(a: ReportArgs) -> Result<()> {
    let runs = a.runs.iter().map(|s| report::load_run(s)).collect::<Result<Vec<_>>>()?;
    let diff = match &a.diff {
        Some(d) => {
            let (x, y) = d.split_once(',').context("--diff takes two prompt variants or two run labels: A,B")?;
            // A run's label is kept as it is; otherwise a prompt variant in any spelling.
            let name = |v: &str| -> Result<String> {
                let v = v.trim();
                if runs.iter().any(|r| r.label == v) {
                    return Ok(v.to_string());
                }
                v.parse::<PromptVariant>().map(|p| p.name().to_string()).map_err(|e| {
                    anyhow::anyhow!(
                        "--diff `{v}`: neither a run label ({}) nor {e}",
                        runs.iter().map(|r| r.label.as_str()).collect::<Vec<_>>().join(", ")
                    )
                })
            };
            Some((name(x)?, name(y)?))
        }
        None => None,
    };
    crate::output::ensure_writable(&a.out, "report")?;
    let files = report::write_report(&runs, &ReportOptions { out: a.out.clone(), axis: a.axis, diff })?;
    for f in files {
        println!("{}", f.display());
    }
    Ok(())
}
