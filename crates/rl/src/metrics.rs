//! One update's metrics: what `metrics.jsonl` holds a line of, what progress bars, the demo, the
//! plots and the benchmarks read. Typed, so a field is spelled once; the JSON names are the
//! documented ones (README, "Loop").

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A metrics line. GRPO and SFT share the first fields; GRPO adds [`GrpoMetrics`] (flattened into
/// the same JSON object), SFT its token count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    pub step: usize,
    pub total_steps: usize,
    pub lr: f64,
    pub loss: f64,
    pub grad_norm: f64,
    pub step_seconds: f64,
    pub skipped_records: usize,
    /// SFT: answer tokens in the update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<f64>,
    #[serde(flatten)]
    pub grpo: Option<GrpoMetrics>,
}

/// What a GRPO update adds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GrpoMetrics {
    /// Mean weighted total reward of the update's completions.
    pub reward: f64,
    /// Mean score of each reward function, by its [`crate::rewards::Reward::name`].
    pub rewards: BTreeMap<String, f64>,
    /// `rewards["accuracy"]` and `rewards["format"]`, when those rewards are in the set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format_rate: Option<f64>,
    pub advantage: Spread,
    /// Mean k3 KL to the reference model (null when `beta` = 0 keeps none).
    pub kl: Option<f64>,
    pub clip_low: f64,
    pub clip_high: f64,
    pub clip_region: f64,
    pub entropy: f64,
    pub completion_length: Length,
    pub truncated_fraction: f64,
    pub zero_std_fraction: f64,
    pub rollout_seconds: f64,
    pub update_seconds: f64,
    pub scoring_seconds: f64,
    pub forward_backward_seconds: f64,
    pub optimizer_seconds: f64,
    pub tokens_per_second: f64,
    /// Every `sample_every` updates: the first completion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<Sample>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub mean: f64,
    pub std: f64,
    pub min: f32,
    pub max: f32,
}

impl Spread {
    /// Mean, population standard deviation, min and max (min = +inf, max = -inf when empty).
    pub fn of(x: &[f32]) -> Spread {
        let mean = mean(x);
        let std = (x.iter().map(|a| (*a as f64 - mean).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt();
        Spread {
            mean,
            std,
            min: x.iter().cloned().fold(f32::INFINITY, f32::min),
            max: x.iter().cloned().fold(f32::NEG_INFINITY, f32::max),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Length {
    pub mean: f64,
    pub max: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub record: String,
    pub gold: String,
    pub completion: String,
    pub reward: f32,
}

/// The mean in float64 (0 for an empty slice).
pub fn mean(x: &[f32]) -> f64 {
    x.iter().map(|&v| v as f64).sum::<f64>() / x.len().max(1) as f64
}

impl StepMetrics {
    /// The line as written to `metrics.jsonl`.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("metrics serialise")
    }

    /// The progress-bar message: GRPO's reward and sampled accuracy, or SFT's loss.
    pub fn progress_message(&self) -> String {
        match &self.grpo {
            Some(g) => format!("grpo reward {:.2} sampled acc {:.2}", g.reward, g.accuracy.unwrap_or(0.0)),
            None => format!("sft loss {:.3}", self.loss),
        }
    }
}

/// Keeps the lines of a `metrics.jsonl` whose step is at most `step` (a torn or unreadable line is
/// dropped too), rewriting the file; a missing file stays missing.
pub fn truncate_jsonl(path: &std::path::Path, step: usize) -> anyhow::Result<()> {
    use anyhow::Context;
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("{}: cannot read", path.display())),
    };
    let kept: String = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v["step"].as_u64())
                .is_some_and(|s| s as usize <= step)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    if kept != text {
        std::fs::write(path, kept).with_context(|| format!("{}: cannot rewrite", path.display()))?;
    }
    Ok(())
}

/// Reads a `metrics.jsonl`; lines that do not parse (a torn last line) are skipped.
pub fn read_jsonl(path: &std::path::Path) -> anyhow::Result<Vec<StepMetrics>> {
    use anyhow::Context;
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grpo_line() -> StepMetrics {
        StepMetrics {
            step: 3,
            total_steps: 10,
            lr: 1e-4,
            loss: 0.5,
            grad_norm: 1.25,
            step_seconds: 0.75,
            skipped_records: 1,
            tokens: None,
            grpo: Some(GrpoMetrics {
                reward: 1.5,
                rewards: BTreeMap::from([("accuracy".into(), 0.5), ("format".into(), 1.0)]),
                accuracy: Some(0.5),
                format_rate: Some(1.0),
                advantage: Spread::of(&[1.0, -1.0]),
                kl: None,
                clip_low: 0.0,
                clip_high: 0.0,
                clip_region: 0.0,
                entropy: 0.25,
                completion_length: Length { mean: 4.0, max: 6.0 },
                truncated_fraction: 0.0,
                zero_std_fraction: 0.5,
                rollout_seconds: 0.5,
                update_seconds: 0.25,
                scoring_seconds: 0.1,
                forward_backward_seconds: 0.1,
                optimizer_seconds: 0.05,
                tokens_per_second: 100.0,
                sample: None,
            }),
        }
    }

    #[test]
    fn lines_keep_the_documented_names_and_read_back() {
        let m = grpo_line();
        let v: serde_json::Value = serde_json::from_str(&m.to_json_line()).unwrap();
        assert_eq!(v["rewards"]["format"], 1.0);
        assert_eq!(v["accuracy"], 0.5);
        assert_eq!(v["advantage"]["std"], 1.0);
        assert!(v["kl"].is_null());
        assert!(v.get("tokens").is_none() && v.get("sample").is_none());
        assert_eq!(serde_json::from_value::<StepMetrics>(v).unwrap(), m);
        let sft = StepMetrics { grpo: None, tokens: Some(12.0), ..m };
        let back: StepMetrics = serde_json::from_str(&sft.to_json_line()).unwrap();
        assert_eq!(back, sft);
        assert!(back.grpo.is_none());
        assert_eq!(back.progress_message(), "sft loss 0.500");
    }
}
