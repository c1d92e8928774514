//! `predictions.jsonl`: one line per attempted record — what was asked, what came back, what was
//! read from it. It is also the resume log: a rerun skips every id that already has a line without
//! an error, and retries the ones that failed (a later line for an id replaces an earlier one).

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::Path;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    pub id: String,
    /// Canonical modality name, or "unknown" when the source does not say.
    pub modality: String,
    pub question_type: String,
    pub dataset: String,
    /// The prompt variant (think, nothink, thinkafter, zeroshot).
    pub prompt: String,
    /// The user-turn text that was sent after the image.
    pub prompt_text: String,
    pub options: Vec<String>,
    pub output: String,
    /// What Med-R1's rule read (`<answer>\s*(\w+)\s*</answer>`), verbatim.
    pub extracted: Option<String>,
    pub gold: String,
    /// Med-R1's rule: `extracted == gold`.
    pub correct: bool,
    /// The lenient reading's letter and how it was found.
    pub lenient_extracted: Option<String>,
    pub lenient_method: Option<crate::extract::Method>,
    pub lenient_correct: bool,
    pub completion_tokens: usize,
    /// This record's share of the wall time of the batch it ran in.
    pub seconds: f64,
    /// The model's probability of each option letter at the answer position (see
    /// [`crate::confidence`]): local scoring always, endpoints when asked for `top_logprobs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub letter_probs: Option<std::collections::BTreeMap<String, f64>>,
    /// The probability of the answer Med-R1's rule read, `letter_probs[extracted]`: what
    /// calibration and accuracy-at-coverage are computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    /// Set when the record could not be scored (unreadable image, endpoint failure); such a line
    /// is left out of every accuracy and retried on resume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Reads a predictions file; the last line for an id wins. A missing file is empty. A line that
/// is not a prediction (a torn last line after a kill) is reported in the second list and ignored.
pub fn read(path: &Path) -> Result<(Vec<Prediction>, Vec<String>)> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(e) => return Err(e).with_context(|| format!("{}: cannot read", path.display())),
    };
    let mut order: Vec<String> = Vec::new();
    let mut by_id: HashMap<String, Prediction> = HashMap::new();
    let mut bad = Vec::new();
    for (k, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.with_context(|| format!("{}: cannot read", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Prediction>(&line) {
            Ok(p) => {
                if !by_id.contains_key(&p.id) {
                    order.push(p.id.clone());
                }
                by_id.insert(p.id.clone(), p);
            }
            Err(e) => bad.push(format!("{} line {}: {e}", path.display(), k + 1)),
        }
    }
    Ok((order.into_iter().map(|id| by_id.remove(&id).unwrap()).collect(), bad))
}

/// Scored (not failed) predictions by record id.
pub fn by_id<'a>(preds: impl IntoIterator<Item = &'a Prediction>) -> HashMap<String, &'a Prediction> {
    preds.into_iter().filter(|p| p.error.is_none()).map(|p| (p.id.clone(), p)).collect()
}

/// Cuts a torn last line (a kill mid-write leaves one without its newline) so that what is
/// appended next starts on a line of its own; returns whether anything was cut. `read` reports
/// such a line and the resumed run redoes its record.
pub fn repair_torn_tail(path: &Path) -> Result<bool> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("{}: cannot read", path.display())),
    };
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Ok(false);
    }
    let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("{}: cannot open", path.display()))?;
    f.set_len(keep as u64).with_context(|| format!("{}: cannot truncate the torn last line", path.display()))?;
    Ok(true)
}

/// Appends predictions, one JSON line each, flushed so a kill loses at most the line being written.
pub fn append(path: &Path, preds: &[Prediction]) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("{}: cannot open", path.display()))?;
    let mut buf = String::new();
    for p in preds {
        buf += &serde_json::to_string(p)?;
        buf.push('\n');
    }
    f.write_all(buf.as_bytes()).with_context(|| format!("{}: cannot write", path.display()))?;
    f.flush()?;
    Ok(())
}
