//! The training loops on the bundled tiny checkpoint and a small phantom set: an interrupted and
//! resumed run ends with exactly the weights of an uninterrupted one (GRPO and SFT); a bad record
//! mid-run is reported and skipped without stopping training or corrupting its counts; the saved
//! checkpoint loads back.

mod common;

use candle_core::DType;
use rl::config::TrainConfig;
use rl::trainer::{train_grpo, train_sft};
use serde_json::Value;
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
        let run = |c: &TrainConfig, resume: bool, stop_at: usize| {
            let mut on = |v: &Value| v["step"].as_u64().unwrap() < stop_at as u64;
            if sft {
                train_sft(ck(), &recs, c, resume, &mut on).unwrap()
            } else {
                train_grpo(ck(), &recs, c, resume, &mut on).unwrap()
            }
        };
        let straight = run(&cfg(a.path()), false, 99);
        assert_eq!(straight.step, 4);
        let first = run(&cfg(b.path()), false, 2); // "killed" after 2 updates
        assert_eq!(first.step, 2);
        let second = run(&cfg(b.path()), true, 99);
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
    let state = train_grpo(ck(), &recs, &c, false, &mut |v: &Value| {
        seen.push(v["skipped_records"].as_u64().unwrap());
        true
    })
    .unwrap();
    assert_eq!(state.step, 20);
    assert_eq!(state.skipped_records, 2);
    assert_eq!(*seen.last().unwrap(), 2);
    // Every update still had its full complement of prompts: 2 x G completions each.
    let metrics = std::fs::read_to_string(out.path().join("metrics.jsonl")).unwrap();
    for line in metrics.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        assert!(v["completion_length"]["mean"].as_f64().unwrap() > 0.0);
        assert!(v["reward"].is_number() && v["grad_norm"].is_number());
    }
}

#[test]
fn sft_micro_batches_give_the_whole_batch_loss_and_gradient() {
    let data = tempfile::tempdir().unwrap();
    let recs = records(data.path());
    let metrics = |micro: usize| {
        let out = tempfile::tempdir().unwrap();
        let c = TrainConfig { micro_batch_size: micro, prompts_per_step: 3, max_steps: 2, ..cfg(out.path()) };
        train_sft(ck(), &recs, &c, false, &mut |_: &Value| true).unwrap();
        std::fs::read_to_string(out.path().join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .collect::<Vec<_>>()
    };
    let (whole, parts) = (metrics(0), metrics(1));
    for (a, b) in whole.iter().zip(&parts) {
        for k in ["loss", "grad_norm"] {
            let (x, y) = (a[k].as_f64().unwrap(), b[k].as_f64().unwrap());
            assert!((x - y).abs() / x.abs() < 1e-4, "step {}: {k} {x} vs {y} with micro-batches of 1", a["step"]);
        }
    }
}
