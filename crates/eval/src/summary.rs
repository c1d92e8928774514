//! `summary.json`: accuracy (percent) overall and per modality, question type and data set, under
//! Med-R1's rule and, separately, the lenient reading — all computed from the predictions alone,
//! so a resumed run and a straight run give the same summary.

use crate::prediction::Prediction;
use data::by_domain::ByDomain;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    /// Percent.
    pub accuracy: f64,
    pub n: usize,
    pub correct: usize,
}

impl Accuracy {
    pub fn add(&mut self, ok: bool) {
        self.n += 1;
        self.correct += ok as usize;
        self.accuracy = 100.0 * self.correct as f64 / self.n as f64;
    }

    /// Merges counts (for a matrix row assembled from several runs).
    pub fn merge(&mut self, o: &Accuracy) {
        self.n += o.n;
        self.correct += o.correct;
        self.accuracy = if self.n == 0 { 0.0 } else { 100.0 * self.correct as f64 / self.n as f64 };
    }
}

/// Accuracy overall and broken down three ways (`by_modality`, `by_question_type`,
/// `by_dataset` in JSON).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Breakdown {
    pub overall: Accuracy,
    #[serde(flatten)]
    pub by: ByDomain<Accuracy>,
}

impl Breakdown {
    fn add(&mut self, p: &Prediction, ok: bool) {
        self.overall.add(ok);
        self.by.update(Some(&p.modality), Some(&p.question_type), &p.dataset, |a| a.add(ok));
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Under Med-R1's rule (the headline numbers: `overall`, `by_modality`, ... in JSON).
    #[serde(flatten)]
    pub strict: Breakdown,
    /// Outputs Med-R1's rule could read an answer word from, percent of scored records.
    pub format_rate: f64,
    /// The same breakdown under the lenient reading.
    pub lenient: Breakdown,
    /// Records that could not be scored (left out of every accuracy; see predictions.jsonl).
    pub failed: usize,
    /// Completion tokens generated.
    pub tokens: usize,
    /// Wall time spent on the scored records, summed over resumed sessions.
    pub seconds: f64,
    /// What was evaluated: model (or endpoint model), data, prompt variant, training domain.
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub data: String,
    #[serde(default)]
    pub prompt: String,
    /// The domain the model was trained on, when the run is one cell row of a protocol matrix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_domain: Option<String>,
}

impl Summary {
    pub fn from_predictions(preds: &[Prediction]) -> Summary {
        let mut s = Summary::default();
        let mut formatted = 0;
        for p in preds {
            if p.error.is_some() {
                s.failed += 1;
                continue;
            }
            s.strict.add(p, p.correct);
            s.lenient.add(p, p.lenient_correct);
            formatted += p.extracted.is_some() as usize;
            s.tokens += p.completion_tokens;
            s.seconds += p.seconds;
        }
        let n = s.strict.overall.n;
        s.format_rate = if n == 0 { 0.0 } else { 100.0 * formatted as f64 / n as f64 };
        s
    }

    /// The breakdown along `axis` ("modality" or "question_type").
    pub fn by_axis(&self, axis: crate::axis::Axis) -> &BTreeMap<String, Accuracy> {
        match axis {
            crate::axis::Axis::Modality => &self.strict.by.modality,
            crate::axis::Axis::QuestionType => &self.strict.by.question_type,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// summary.json is read back by resumed runs and reports; a float must come back bit for bit.
    /// (serde_json's default parser rounds some 17-digit values by one ulp, e.g. this one, which a
    /// CI run produced; the `float_roundtrip` feature makes parsing exact.)
    #[test]
    fn summary_round_trips_through_json_exactly() {
        let s = Summary { seconds: 0.24748164275000006, format_rate: 100.0 / 3.0, ..Summary::default() };
        let back: Summary = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back.seconds.to_bits(), s.seconds.to_bits());
        assert_eq!(back, s);
    }
}
