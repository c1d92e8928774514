//! The training loops on the bundled tiny checkpoint and a small phantom set: an interrupted and
//! resumed run ends with exactly the weights of an uninterrupted one (GRPO and SFT); a bad record
//! mid-run is reported and skipped without stopping training or corrupting its counts; the saved
//! checkpoint loads back.

use crate::common;

use candle_core::DType;
use rl::config::TrainConfig;
use rl::metrics::StepMetrics;
use rl::trainer::{train_grpo, train_sft};
use std::path::Path;
use vlm::Checkpoint;

use common::{ck, model_dir, records};

fn cfg(out: &Path) -> TrainConfig {
    TrainConfig { num_iterations: 2, learning_rate: 1e-3, seed: 9, ..common::small(out) }
}

fn weights(dir: &Path) -> Vec<(String, Vec<f32>)> {
    common::saved_tensors(&dir.join("model.safetensors"))
}

#[test]
fn an_interrupted_and_resumed_run_ends_with_identical_weights() {
    let data = tempfile::tempdir().unwrap();
    let recs = records(data.path());
    for sft in [false, true] {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (straight, second) = common::straight_and_resumed(sft, &recs, cfg, a.path(), b.path());
        assert_eq!((second.step, second.cursor), (straight.step, straight.cursor));
        let (wa, wb) = (weights(a.path()), weights(b.path()));
        assert_eq!(wa.len(), wb.len());
        for ((na, va), (nb, vb)) in wa.iter().zip(&wb) {
            assert_eq!(na, nb);
            assert!(va == vb, "{} differs after resume (sft={sft})", na);
        }
        // And training moved them at all.
        let start = weights(&model_dir());
        assert!(wa.iter().zip(&start).any(|((_, x), (_, y))| x != y));
        // metrics.jsonl has one line per update in both runs.
        let lines = |d: &Path| std::fs::read_to_string(d.join("metrics.jsonl")).unwrap().lines().count();
        assert_eq!((lines(a.path()), lines(b.path())), (4, 4));
        // The checkpoint is a checkpoint: it opens and generates.
        let back = Checkpoint::open(a.path(), DType::F32).unwrap();
        assert_eq!(back.config.text.hidden_size, ck().config.text.hidden_size);
    }
}

#[test]
fn a_bad_record_mid_run_is_skipped_and_counted() {
    let data = tempfile::tempdir().unwrap();
    let mut recs = records(data.path());
    // Corrupt one image and point another record at a missing file.
    std::fs::write(&recs[3].image_path, b"not a png").unwrap();
    recs[5].image_path = data.path().join("missing.png");
    let out = tempfile::tempdir().unwrap();
    let mut c = cfg(out.path());
    c.max_steps = 0;
    c.epochs = 1; // 40 records, 2 per update: 20 updates, two records short
    c.num_iterations = 1;
    let mut seen = Vec::new();
    let state = train_grpo(ck(), &recs, &c, &c.rewards(), false, &mut |m: &StepMetrics| {
        seen.push(m.skipped_records);
        true
    })
    .unwrap();
    assert_eq!(state.step, 20);
    assert_eq!(state.skipped_records, 2);
    assert_eq!(*seen.last().unwrap(), 2);
    // Every update still had its full complement of prompts: 2 x G completions each.
    let metrics = std::fs::read_to_string(out.path().join("metrics.jsonl")).unwrap();
    for line in metrics.lines() {
        let m: StepMetrics = serde_json::from_str(line).unwrap();
        let g = m.grpo.expect("a GRPO line");
        assert!(g.completion_length.mean > 0.0);
        assert!(g.reward.is_finite() && m.grad_norm.is_finite());
    }
}

#[test]
fn sft_micro_batches_give_the_whole_batch_loss_and_gradient() {
    let data = tempfile::tempdir().unwrap();
    let recs = records(data.path());
    let metrics = |micro: usize| {
        let out = tempfile::tempdir().unwrap();
        let c = TrainConfig { micro_batch_size: micro, prompts_per_step: 3, max_steps: 2, ..cfg(out.path()) };
        train_sft(ck(), &recs, &c, false, &mut |_: &StepMetrics| true).unwrap();
        rl::metrics::read_jsonl(&out.path().join("metrics.jsonl")).unwrap()
    };
    let (whole, parts) = (metrics(0), metrics(1));
    assert_eq!((whole.len(), parts.len()), (2, 2));
    for (a, b) in whole.iter().zip(&parts) {
        for (k, x, y) in [("loss", a.loss, b.loss), ("grad_norm", a.grad_norm, b.grad_norm)] {
            assert!((x - y).abs() / x.abs() < 1e-4, "step {}: {k} {x} vs {y} with micro-batches of 1", a.step);
        }
    }
}

/// A reward a user writes: 1 for a completion of at most 8 characters.
struct Brevity;

impl rl::rewards::Reward for Brevity {
    fn name(&self) -> &str {
        "brevity"
    }
    fn score(&self, completion: &str, _gold: char) -> f32 {
        (completion.chars().count() <= 8) as u8 as f32
    }
}

#[test]
fn a_user_defined_reward_is_scored_weighted_and_logged_by_name() {
    let data = tempfile::tempdir().unwrap();
    let recs = records(data.path());
    let out = tempfile::tempdir().unwrap();
    let c = TrainConfig { max_steps: 2, ..cfg(out.path()) };
    let rewards = c.rewards().with(Brevity, 0.5);
    let mut lines = Vec::new();
    train_grpo(ck(), &recs, &c, &rewards, false, &mut |m: &StepMetrics| {
        lines.push(m.clone());
        true
    })
    .unwrap();
    assert_eq!(lines, rl::metrics::read_jsonl(&out.path().join("metrics.jsonl")).unwrap());
    for m in &lines {
        let g = m.grpo.as_ref().unwrap();
        let names: Vec<&str> = g.rewards.keys().map(String::as_str).collect();
        assert_eq!(names, ["accuracy", "brevity", "format"]);
        // The total is the weighted sum of the per-function means (weights 1, 0.5, 1).
        let want = g.rewards["accuracy"] + 0.5 * g.rewards["brevity"] + g.rewards["format"];
        assert!((g.reward - want).abs() < 1e-9, "reward {} vs {want}", g.reward);
        assert_eq!((g.accuracy, g.format_rate), (Some(g.rewards["accuracy"]), Some(g.rewards["format"])));
    }
}

/// A run killed after its last periodic checkpoint (step 2) had logged step 3; resuming from the
/// checkpoint redoes step 3, and `metrics.jsonl` holds every step exactly once.
#[test]
fn resuming_after_a_kill_leaves_one_metrics_line_per_step() {
    let data = tempfile::tempdir().unwrap();
    let recs = records(data.path());
    let out = tempfile::tempdir().unwrap();
    let c = TrainConfig { save_every: 2, num_iterations: 1, ..cfg(out.path()) };
    let killed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut on = |m: &StepMetrics| {
            assert!(m.step < 3, "killed at step 3");
            true
        };
        train_grpo(ck(), &recs, &c, &c.rewards(), false, &mut on)
    }));
    assert!(killed.is_err());
    let steps = |d: &Path| {
        rl::metrics::read_jsonl(&d.join("metrics.jsonl")).unwrap().iter().map(|m| m.step).collect::<Vec<_>>()
    };
    assert_eq!(steps(out.path()), [1, 2, 3], "the killed run logged step 3 after the step-2 checkpoint");
    let state = train_grpo(ck(), &recs, &c, &c.rewards(), true, &mut |_: &StepMetrics| true).unwrap();
    assert_eq!(state.step, 4);
    assert_eq!(steps(out.path()), [1, 2, 3, 4]);
}

/// The 2026 options in the real loop: GSPO-style sequence ratios with CISPO, the top-entropy mask
/// and an entropy bonus (its gradient through the entropies) train and log finite values.
#[test]
fn newer_loss_options_train() {
    let data = tempfile::tempdir().unwrap();
    let recs = records(data.path());
    let out = tempfile::tempdir().unwrap();
    let cfg = TrainConfig::load_over(
        &TrainConfig { max_steps: 2, ..cfg(out.path()) },
        None,
        &[
            "loss_type=cispo".into(),
            "epsilon_high=5.0".into(),
            "importance_sampling_level=sequence".into(),
            "top_entropy_quantile=0.5".into(),
            "entropy_coef=0.01".into(),
            "use_bias_correction_kl=true".into(),
        ],
    )
    .unwrap();
    let state = train_grpo(ck(), &recs, &cfg, &cfg.rewards(), false, &mut |_: &StepMetrics| true).unwrap();
    assert_eq!(state.step, 2);
    let text = std::fs::read_to_string(out.path().join("metrics.jsonl")).unwrap();
    for line in text.lines() {
        let m: StepMetrics = serde_json::from_str(line).unwrap();
        assert!(m.loss.is_finite() && m.grad_norm.is_finite() && m.grad_norm > 0.0, "{line}");
    }
    let bad = TrainConfig::load(None, &["top_entropy_quantile=0".into()]).unwrap_err();
    assert!(format!("{bad:#}").contains("top_entropy_quantile"));
    let bad = TrainConfig::load(None, &["loss_type=gspo".into()]).unwrap_err();
    assert!(format!("{bad:#}").contains("loss_type"));
}
