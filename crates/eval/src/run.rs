//! `medr1 eval`: score every record once, greedily, appending to `predictions.jsonl` as chunks
//! finish, then write `summary.json`. A rerun into the same folder skips the records that already
//! have an answer and retries the ones that failed.

use crate::backend::{Answer, Backend, Item};
use crate::extract::{lenient_answer, med_r1_answer};
use crate::prediction::{self, Prediction};
use crate::prompt::{record_image, ImagePrep};
use crate::summary::Summary;
use anyhow::{bail, Result};
use data::prompts::PromptVariant;
use data::Record;
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;

fn name_or_unknown(n: Option<&str>) -> String {
    n.unwrap_or("unknown").to_string()
}

/// A prediction for `r` from the backend's answer (or its failure).
pub fn score(
    r: &Record,
    variant: PromptVariant,
    prompt_text: &str,
    answer: Result<Answer, String>,
    seconds: f64,
) -> Prediction {
    let gold = r.gold_letter().to_string();
    let (output, completion_tokens, letter_probs, error) = match answer {
        Ok(a) => (a.output, a.completion_tokens, a.letter_probs, None),
        Err(e) => (String::new(), 0, None, Some(e)),
    };
    let extracted = med_r1_answer(&output);
    let confidence = extracted.as_ref().and_then(|x| letter_probs.as_ref()?.get(x).copied());
    let lenient = lenient_answer(&output, &r.options);
    Prediction {
        id: r.id.clone(),
        modality: name_or_unknown(r.modality.map(|m| m.name())),
        question_type: name_or_unknown(r.question_type.map(|q| q.name())),
        dataset: r.dataset.clone(),
        prompt: variant.name().to_string(),
        prompt_text: prompt_text.to_string(),
        options: r.options.clone(),
        correct: error.is_none() && extracted.as_deref() == Some(gold.as_str()),
        extracted,
        lenient_extracted: lenient.map(|(i, _)| data::record::letter(i).to_string()),
        lenient_method: lenient.map(|(_, m)| m),
        lenient_correct: error.is_none() && lenient.is_some_and(|(i, _)| i == r.answer),
        gold,
        output,
        completion_tokens,
        seconds,
        letter_probs,
        confidence,
        error,
    }
}

/// Scores a chunk of records: images are read here (an unreadable one fails only its record),
/// the rest go to the backend together.
pub fn score_chunk(
    backend: &dyn Backend,
    records: &[&Record],
    variant: PromptVariant,
    prep: ImagePrep,
) -> Vec<Prediction> {
    let t0 = Instant::now();
    let mut items = Vec::new();
    let mut slots: Vec<Result<usize, String>> = Vec::new();
    for r in records {
        match record_image(r, prep) {
            Ok(image) => {
                slots.push(Ok(items.len()));
                items.push(Item { text: variant.for_record(r), image, options: r.options.len() });
            }
            Err(e) => slots.push(Err(format!("image: {e:#}"))),
        }
    }
    let mut answers: Vec<Option<Result<Answer>>> = backend.answer(&items).into_iter().map(Some).collect();
    let share = t0.elapsed().as_secs_f64() / records.len().max(1) as f64;
    records
        .iter()
        .zip(slots)
        .map(|(r, slot)| {
            let text = variant.for_record(r);
            let answer = match slot {
                Ok(k) => {
                    answers[k].take().unwrap_or_else(|| Err(anyhow::anyhow!("no answer"))).map_err(|e| format!("{e:#}"))
                }
                Err(e) => Err(e),
            };
            score(r, variant, &text, answer, share)
        })
        .collect()
}

/// Scores records in memory (no files): what the demo and the protocol use between trainings.
pub fn evaluate(backend: &dyn Backend, records: &[Record], variant: PromptVariant, prep: ImagePrep) -> Vec<Prediction> {
    let refs: Vec<&Record> = records.iter().collect();
    refs.chunks(backend.chunk_size()).flat_map(|c| score_chunk(backend, c, variant, prep)).collect()
}

pub struct RunOptions {
    pub variant: PromptVariant,
    pub out: PathBuf,
    /// Resize and DICOM view of every record's image.
    pub image: ImagePrep,
    /// Only the first N records of the data (applied before resuming, so reruns agree).
    pub limit: Option<usize>,
    /// The data path, for the summary.
    pub data: String,
    pub train_domain: Option<String>,
}

/// Progress after each chunk.
pub struct Progress {
    pub done: usize,
    pub total: usize,
    /// Scored (not failed) records so far and how many Med-R1's rule counted correct.
    pub scored: usize,
    pub correct: usize,
    pub failed: usize,
    /// Records already answered by an earlier run into the same folder.
    pub resumed: usize,
}

pub fn run(
    backend: &dyn Backend,
    records: &[Record],
    o: &RunOptions,
    on: &mut dyn FnMut(&Progress),
) -> Result<Summary> {
    std::fs::create_dir_all(&o.out)?;
    let pred_path = o.out.join("predictions.jsonl");
    let (previous, torn) = prediction::read(&pred_path)?;
    for t in &torn {
        eprintln!("ignored (will be redone): {t}");
    }
    // The next append must not glue a record onto a torn fragment (it would be lost with it).
    prediction::repair_torn_tail(&pred_path)?;
    if let Some(p) = previous.iter().find(|p| p.prompt != o.variant.name()) {
        bail!(
            "{}: holds predictions made with --prompt {} (record {}); give a new --out for --prompt {}",
            pred_path.display(),
            p.prompt,
            p.id,
            o.variant.name()
        );
    }
    let records = &records[..o.limit.unwrap_or(records.len()).min(records.len())];
    let done: HashSet<&str> = previous.iter().filter(|p| p.error.is_none()).map(|p| p.id.as_str()).collect();
    let todo: Vec<&Record> = records.iter().filter(|r| !done.contains(r.id.as_str())).collect();
    let in_set: HashSet<&str> = records.iter().map(|r| r.id.as_str()).collect();
    let mut pr = Progress {
        done: records.len() - todo.len(),
        total: records.len(),
        scored: 0,
        correct: 0,
        failed: 0,
        resumed: records.len() - todo.len(),
    };
    for p in previous.iter().filter(|p| p.error.is_none() && in_set.contains(p.id.as_str())) {
        pr.scored += 1;
        pr.correct += p.correct as usize;
    }
    on(&pr);
    for chunk in todo.chunks(backend.chunk_size()) {
        let preds = score_chunk(backend, chunk, o.variant, o.image);
        prediction::append(&pred_path, &preds)?;
        for p in &preds {
            pr.done += 1;
            if p.error.is_some() {
                pr.failed += 1;
            } else {
                pr.scored += 1;
                pr.correct += p.correct as usize;
            }
        }
        on(&pr);
    }
    // The summary covers exactly this run's records, from what the file holds.
    let (all, _) = prediction::read(&pred_path)?;
    let mine: Vec<Prediction> = all.into_iter().filter(|p| in_set.contains(p.id.as_str())).collect();
    let mut s = Summary::from_predictions(&mine);
    s.model = backend.model_name();
    s.data = o.data.clone();
    s.prompt = o.variant.name().to_string();
    s.train_domain = o.train_domain.clone();
    write_summary(&o.out, &s)?;
    Ok(s)
}

pub fn write_summary(out: &std::path::Path, s: &Summary) -> Result<()> {
    std::fs::write(out.join("summary.json"), serde_json::to_string_pretty(s)? + "\n")?;
    Ok(())
}
