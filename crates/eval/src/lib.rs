//! Evaluation with Med-R1's protocol.
//!
//! - [`extract`]: Med-R1's answer rule and the documented lenient fallback.
//! - [`prompt`]: a record as the model sees it (image + question in a prompt variant's words).
//! - [`backend`]: answers from a local checkpoint or any OpenAI-compatible endpoint.
//! - [`run`]: `medr1 eval` — resumable scoring into `predictions.jsonl` and `summary.json`.
//! - [`prediction`], [`summary`]: those two files.
//! - [`axis`]: what an experiment varies (modality or question type).
//! - [`statistics`]: Wilson intervals, McNemar's exact test, paired bootstrap, calibration;
//!   [`confidence`]: the option letters' probabilities at the answer position.
//! - [`report`]: tables, cross-domain and difference matrices, heatmaps and bar charts.

pub mod axis;
pub mod backend;
pub mod confidence;
pub mod extract;
pub mod prediction;
pub mod prompt;
pub mod report;
pub mod run;
pub mod statistics;
pub mod summary;

pub use summary::{Accuracy, Summary};
