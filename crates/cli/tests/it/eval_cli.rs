//! `medr1 eval`, `medr1 report` and `medr1 protocol` as a user runs them: the flags, the
//! summary's fields, resuming, the report's files, and a two-domain protocol end to end.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn medr1(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_medr1")).args(args).output().unwrap()
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn model() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../vlm/tests/fixtures/qwen2vl-tiny/model").display().to_string()
}

fn phantoms(dir: &Path) -> String {
    let p = dir.join("ph");
    ok(&medr1(&["data", "phantoms", "--out", p.to_str().unwrap(), "--per-cell", "2", "--size", "56", "--seed", "4"]));
    p.display().to_string()
}

#[test]
fn eval_writes_the_summary_fields_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = phantoms(tmp.path());
    let out = tmp.path().join("e");
    let args = [
        "eval",
        "--model",
        &model(),
        "--data",
        &data,
        "--prompt",
        "think",
        "--out",
        out.to_str().unwrap(),
        "--batch-size",
        "3",
        "--max-new-tokens",
        "5",
        "--limit",
        "7",
    ];
    let printed = ok(&medr1(&args));
    assert!(printed.contains("accuracy") && printed.contains("on 7 questions"), "{printed}");
    let s: Value = serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["overall"]["n"], 7);
    assert!(s["overall"]["accuracy"].is_number());
    for k in ["by_modality", "by_question_type", "by_dataset", "lenient"] {
        assert!(s[k].is_object(), "{k}");
    }
    for k in ["format_rate", "tokens", "seconds"] {
        assert!(s[k].is_number(), "{k}");
    }
    assert_eq!(s["prompt"], "think");
    let lines = std::fs::read_to_string(out.join("predictions.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 7);
    let p: Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    for k in ["id", "modality", "question_type", "dataset", "prompt", "output", "extracted", "gold", "correct"] {
        assert!(p.get(k).is_some(), "predictions.jsonl lacks {k}");
    }
    // Rerunning with a larger limit only answers the new records.
    let more = [
        "eval",
        "--model",
        &model(),
        "--data",
        &data,
        "--prompt",
        "think",
        "--out",
        out.to_str().unwrap(),
        "--max-new-tokens",
        "5",
        "--limit",
        "9",
    ];
    let r = medr1(&more);
    ok(&r);
    assert!(String::from_utf8_lossy(&r.stderr).contains("7 records already answered"));
    assert_eq!(std::fs::read_to_string(out.join("predictions.jsonl")).unwrap().lines().count(), 9);

    // Mistakes are named.
    let e = medr1(&["eval", "--endpoint", "http://127.0.0.1:9/v1", "--data", &data, "--prompt", "think", "--out", "x"]);
    assert!(!e.status.success() && String::from_utf8_lossy(&e.stderr).contains("--served-model"));
    let e = medr1(&["eval", "--model", &model(), "--data", &data, "--prompt", "cot", "--out", "x"]);
    assert!(!e.status.success() && String::from_utf8_lossy(&e.stderr).contains("unknown prompt variant"));

    // The report of this run.
    let rep = tmp.path().join("rep");
    let files = ok(&medr1(&["report", out.to_str().unwrap(), "--out", rep.to_str().unwrap()]));
    for f in ["report.md", "runs.csv", "by_modality.csv", "by_modality.png", "by_modality.svg"] {
        assert!(files.contains(f) && rep.join(f).is_file(), "{f}");
    }
}

#[test]
fn protocol_trains_each_domain_and_writes_the_matrix() {
    let tmp = tempfile::tempdir().unwrap();
    let data = phantoms(tmp.path());
    let out = tmp.path().join("p");
    let args = [
        "protocol",
        "--axis",
        "modality",
        "--trainer",
        "sft",
        "--domains",
        "CT,mri",
        "--test-limit",
        "2",
        "--eval-max-new-tokens",
        "4",
        "--model",
        &model(),
        "--data",
        &data,
        "--out",
        out.to_str().unwrap(),
        "--set",
        "max_steps=2",
        "--set",
        "prompts_per_step=2",
        "--set",
        "prompt=nothink",
        "--set",
        "max_pixels=3136",
    ];
    let first = medr1(&args);
    let files = ok(&first);
    assert!(files.contains("matrix_nothink.png"), "{files}");
    let csv = std::fs::read_to_string(out.join("report/matrix_nothink.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows[0], "train_domain,CT,MRI,X-ray,Ultrasound,Dermoscopy,Fundus,OCT,Microscopy");
    // The starting checkpoint's row first, then one per trained domain.
    assert_eq!(rows.len(), 4);
    assert!(rows[1].starts_with("base,") && rows[2].starts_with("CT,") && rows[3].starts_with("MRI,"));
    let report = std::fs::read_to_string(out.join("report/report.md")).unwrap();
    assert!(report.contains("Gain over the base model"), "{report}");
    // Each row is its model tested on 2 questions of each of the 8 modalities.
    let base: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("eval/base/summary.json")).unwrap()).unwrap();
    assert_eq!((base["overall"]["n"].as_u64(), base["train_domain"].as_str()), (Some(16), Some("base")));
    for d in ["CT", "MRI"] {
        let s: Value =
            serde_json::from_str(&std::fs::read_to_string(out.join(format!("eval/{d}/summary.json"))).unwrap())
                .unwrap();
        assert_eq!((s["overall"]["n"].as_u64(), s["train_domain"].as_str()), (Some(16), Some(d)));
        let st: Value =
            serde_json::from_str(&std::fs::read_to_string(out.join(format!("train/{d}/trainer_state.json"))).unwrap())
                .unwrap();
        assert_eq!(st["step"], 2);
        // The saved checkpoint records the pixel budget it was trained at.
        let pp: Value = serde_json::from_str(
            &std::fs::read_to_string(out.join(format!("train/{d}/preprocessor_config.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(pp["max_pixels"], 3136);
    }
    // A rerun keeps the finished trainings and evaluations.
    let again = medr1(&args);
    ok(&again);
    assert!(
        !String::from_utf8_lossy(&again.stderr).contains("training on"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(std::fs::read_to_string(out.join("report/matrix_nothink.csv")).unwrap(), csv);
}
