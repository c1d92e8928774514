//! `medr1 eval` on the tiny checkpoint: every record accounted for once, breakdowns that add up,
//! an unreadable image recorded as a failure (and retried), and a resumed run — after a stop and
//! after a kill that tore the last line — giving the same summary as a straight one.

use crate::common;

use candle_core::DType;
use data::prompts::PromptVariant;
use eval::backend::local::Local;
use eval::prediction;
use eval::run::{run, RunOptions};
use eval::Summary;
use vlm::Checkpoint;

fn opts(out: &std::path::Path, limit: Option<usize>) -> RunOptions {
    RunOptions {
        variant: PromptVariant::NoThink,
        out: out.to_path_buf(),
        image: Default::default(),
        limit,
        data: "phantoms".into(),
        train_domain: Some("CT".into()),
    }
}

/// `dst/predictions.jsonl`: the first `keep` lines of `src`'s and half of the next one, as a kill
/// mid-write leaves it.
fn torn_copy(src: &std::path::Path, dst: &std::path::Path, keep: usize) {
    std::fs::create_dir_all(dst).unwrap();
    let text = std::fs::read_to_string(src.join("predictions.jsonl")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let torn = &lines[keep][..lines[keep].len() / 2];
    std::fs::write(dst.join("predictions.jsonl"), format!("{}\n{torn}", lines[..keep].join("\n"))).unwrap();
}

fn same_but_time(a: &Summary, b: &Summary) {
    let strip = |s: &Summary| Summary { seconds: 0.0, ..s.clone() };
    assert_eq!(strip(a), strip(b));
}

#[test]
fn counts_add_up_and_resume_gives_the_same_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let mut records = common::phantom_records(tmp.path());
    // One record's image is corrupt: it must be recorded as failed, not dropped or scored.
    let bad = records[5].clone();
    let bad_path = tmp.path().join("corrupt.png");
    std::fs::write(&bad_path, b"not a png").unwrap();
    records[5].image_path = bad_path.clone();
    let ck = Checkpoint::open(&common::model_dir(), DType::F32).unwrap();
    let backend = Local { checkpoint: &ck, name: "tiny".into(), batch_size: 4, max_new_tokens: 6 };

    let straight = run(&backend, &records, &opts(&tmp.path().join("straight"), None), &mut |_| {}).unwrap();
    assert_eq!(straight.strict.overall.n + straight.failed, records.len());
    assert_eq!(straight.failed, 1);
    for m in [&straight.strict.by.modality, &straight.strict.by.question_type, &straight.strict.by.dataset] {
        assert_eq!(m.values().map(|a| a.n).sum::<usize>(), straight.strict.overall.n);
        assert_eq!(m.values().map(|a| a.correct).sum::<usize>(), straight.strict.overall.correct);
    }
    assert_eq!(straight.strict.by.modality.len(), 8);
    assert_eq!(straight.strict.by.question_type.len(), 5);
    assert_eq!(straight.lenient.overall.n, straight.strict.overall.n);
    assert!(straight.lenient.overall.correct >= straight.strict.overall.correct);
    assert_eq!(straight.train_domain.as_deref(), Some("CT"));
    let (preds, torn) = prediction::read(&tmp.path().join("straight/predictions.jsonl")).unwrap();
    assert!(torn.is_empty());
    assert_eq!(preds.len(), records.len());
    let failed = preds.iter().find(|p| p.id == bad.id).unwrap();
    assert!(failed.error.as_deref().unwrap().contains("corrupt.png"), "{failed:?}");
    assert!(!failed.correct && !failed.lenient_correct);
    assert_eq!(preds.iter().map(|p| p.completion_tokens).sum::<usize>(), straight.tokens);
    // Every scored record's output was generated (6 tokens at most) and read by both rules.
    for p in preds.iter().filter(|p| p.error.is_none()) {
        assert!(p.completion_tokens >= 1 && p.completion_tokens <= 6);
        assert_eq!(p.correct, p.extracted.as_deref() == Some(p.gold.as_str()));
        assert!(p.prompt_text.ends_with("2. No extra information or text outside of this tag."));
    }

    // Stopped after 9 records, then resumed.
    let resumed_dir = tmp.path().join("resumed");
    let partial = run(&backend, &records, &opts(&resumed_dir, Some(9)), &mut |_| {}).unwrap();
    assert_eq!(partial.strict.overall.n + partial.failed, 9);
    let mut seen = Vec::new();
    let resumed = run(&backend, &records, &opts(&resumed_dir, None), &mut |p| seen.push((p.done, p.resumed))).unwrap();
    assert_eq!(seen[0], (8, 8), "8 answered records skipped, the failed one retried");
    same_but_time(&straight, &resumed);

    // A kill mid-write: the last line is torn. It is ignored and its record redone.
    let killed_dir = tmp.path().join("killed");
    torn_copy(&tmp.path().join("straight"), &killed_dir, 12);
    let after_kill = run(&backend, &records, &opts(&killed_dir, None), &mut |_| {}).unwrap();
    same_but_time(&straight, &after_kill);

    // A folder made with another prompt variant is refused rather than mixed.
    let other = RunOptions { variant: PromptVariant::Think, ..opts(&resumed_dir, None) };
    let err = run(&backend, &records, &other, &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("--prompt nothink"), "{err}");

    // The summary file is what was returned.
    let on_disk: Summary =
        serde_json::from_str(&std::fs::read_to_string(resumed_dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(on_disk, resumed);
}

/// A kill mid-write tore the last line of a run whose other answers are all good: the resumed run
/// cuts the fragment, redoes that record, and every record is counted exactly once (appending
/// after the fragment would glue the next answer to it and lose both).
#[test]
fn resume_after_a_torn_line_counts_every_record_once() {
    let tmp = tempfile::tempdir().unwrap();
    let records = common::phantom_records(tmp.path());
    let ck = Checkpoint::open(&common::model_dir(), DType::F32).unwrap();
    let backend = Local { checkpoint: &ck, name: "tiny".into(), batch_size: 4, max_new_tokens: 6 };
    let straight = run(&backend, &records, &opts(&tmp.path().join("straight"), None), &mut |_| {}).unwrap();
    assert_eq!(straight.failed, 0);
    let dir = tmp.path().join("killed");
    torn_copy(&tmp.path().join("straight"), &dir, 12);
    let resumed = run(&backend, &records, &opts(&dir, None), &mut |_| {}).unwrap();
    same_but_time(&straight, &resumed);
    let (preds, bad) = prediction::read(&dir.join("predictions.jsonl")).unwrap();
    assert!(bad.is_empty(), "no line may be left unparseable: {bad:?}");
    assert_eq!(preds.len(), records.len());
    let ids: std::collections::HashSet<&str> = preds.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids.len(), records.len());
    assert_eq!(std::fs::read_to_string(dir.join("predictions.jsonl")).unwrap().lines().count(), records.len());
}

/// `medr1 eval` on the tiny Qwen2.5-VL: every record scored once, the breakdowns add up, and the
/// batched answers equal one-at-a-time answers (left padding and windows per image in a batch).
#[test]
fn qwen2_5_vl_checkpoints_evaluate() {
    let tmp = tempfile::tempdir().unwrap();
    let records: Vec<data::Record> = common::phantom_records(tmp.path()).into_iter().take(10).collect();
    let ck =
        Checkpoint::open(&common::repo().join("crates/vlm/tests/fixtures/qwen25vl-tiny/model"), DType::F32).unwrap();
    assert_eq!(ck.config.family, vlm::config::Family::Qwen2_5Vl);
    let batched = Local { checkpoint: &ck, name: "tiny25".into(), batch_size: 4, max_new_tokens: 6 };
    let single = Local { checkpoint: &ck, name: "tiny25".into(), batch_size: 1, max_new_tokens: 6 };
    let a = run(&batched, &records, &opts(&tmp.path().join("a"), None), &mut |_| {}).unwrap();
    let b = run(&single, &records, &opts(&tmp.path().join("b"), None), &mut |_| {}).unwrap();
    assert_eq!((a.strict.overall.n, a.failed), (10, 0));
    assert_eq!(a.strict.by.modality.values().map(|x| x.n).sum::<usize>(), 10);
    let outputs = |d: &str| -> Vec<String> {
        let (p, _) = prediction::read(&tmp.path().join(d).join("predictions.jsonl")).unwrap();
        p.into_iter().map(|p| p.output).collect()
    };
    assert_eq!(outputs("a"), outputs("b"), "batched answers differ from one-at-a-time answers");
    same_but_time(&a, &b);
}
