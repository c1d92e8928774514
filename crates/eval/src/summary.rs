//! `summary.json`: accuracy (percent) overall and per modality, question type and data set, under
//! Med-R1's rule and, separately, the lenient reading — all computed from the predictions alone,
//! so a resumed run and a straight run give the same summary.

use crate::prediction::Prediction;
use crate::statistics::{calibration, coverage, Calibration, CoveragePoint, THRESHOLDS};
use data::by_domain::ByDomain;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// An accuracy with its sample size and Wilson 95% interval (all in percent).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    /// Percent.
    pub accuracy: f64,
    pub n: usize,
    pub correct: usize,
    /// Wilson 95% interval, percent (written for readers; recomputed from the counts on use,
    /// so summaries from before it existed read back as well).
    #[serde(default)]
    pub ci_low: f64,
    #[serde(default)]
    pub ci_high: f64,
}

impl Accuracy {
    pub fn of(correct: usize, n: usize) -> Accuracy {
        let (lo, hi) = crate::statistics::wilson(correct, n);
        let accuracy = if n == 0 { 0.0 } else { 100.0 * correct as f64 / n as f64 };
        Accuracy { accuracy, n, correct, ci_low: 100.0 * lo, ci_high: 100.0 * hi }
    }

    pub fn add(&mut self, ok: bool) {
        *self = Accuracy::of(self.correct + ok as usize, self.n + 1);
    }

    /// Merges counts (for a matrix row assembled from several runs).
    pub fn merge(&mut self, o: &Accuracy) {
        *self = Accuracy::of(self.correct + o.correct, self.n + o.n);
    }

    /// The Wilson 95% interval in percent, from the counts.
    pub fn interval(&self) -> (f64, f64) {
        let (lo, hi) = crate::statistics::wilson(self.correct, self.n);
        (100.0 * lo, 100.0 * hi)
    }

    /// `52.1 [45.0, 59.0]`: the accuracy and its interval, one decimal.
    pub fn with_interval(&self) -> String {
        let (lo, hi) = self.interval();
        format!("{:.1} [{lo:.1}, {hi:.1}]", self.accuracy)
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
    /// Calibration of the answers that have a confidence (see `Prediction::confidence`): ECE and
    /// a reliability diagram's bins, over all of them and per modality; accuracy at coverage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub calibration_by_modality: BTreeMap<String, Calibration>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub coverage: Vec<CoveragePoint>,
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

/// Equal-width confidence bins of the reliability diagram and the ECE.
pub const CALIBRATION_BINS: usize = 10;

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
        let confident: Vec<&Prediction> =
            preds.iter().filter(|p| p.error.is_none() && p.confidence.is_some()).collect();
        if !confident.is_empty() {
            let pairs = |ps: &[&Prediction]| ps.iter().map(|p| (p.confidence.unwrap(), p.correct)).collect::<Vec<_>>();
            let all = pairs(&confident);
            s.calibration = Some(calibration(&all, CALIBRATION_BINS));
            s.coverage = coverage(&all, &THRESHOLDS);
            let mut by_modality: BTreeMap<&str, Vec<&Prediction>> = BTreeMap::new();
            for p in &confident {
                by_modality.entry(p.modality.as_str()).or_default().push(p);
            }
            s.calibration_by_modality = by_modality
                .into_iter()
                .map(|(m, ps)| (m.to_string(), calibration(&pairs(&ps), CALIBRATION_BINS)))
                .collect();
        }
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
