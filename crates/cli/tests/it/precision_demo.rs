//! The trained demo checkpoint answers alike in every precision (run by hand: it trains the demo,
//! about 4 minutes in release):
//!
//! ```sh
//! cargo test --release -p medr1 --test it precision_demo -- --ignored --nocapture
//! ```
//!
//! `medr1 eval` on the demo's held-out questions (`OUT/test.json`) with `--dtype bf16`, `int8`
//! and `q4`: accuracy within 1 point of float32's and at least 97% of the extracted answers
//! identical. Measured 2026-12-01: f32 52.08%; bf16 52.08% (192/192 answers identical), int8
//! 52.08% (190/192), q4 52.60% (191/192).

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

fn medr1(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_medr1")).args(args).output().unwrap()
}

fn answers(dir: &Path) -> HashMap<String, (String, bool)> {
    std::fs::read_to_string(dir.join("predictions.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let answer = v["extracted"].as_str().unwrap_or("").to_string();
            (v["id"].as_str().unwrap().to_string(), (answer, v["correct"].as_bool().unwrap()))
        })
        .collect()
}

#[test]
#[ignore]
fn precisions_answer_alike_on_the_trained_demo() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("demo");
    let demo = medr1(&["demo", "--out", out.to_str().unwrap()]);
    assert!(demo.status.success(), "{}", String::from_utf8_lossy(&demo.stderr));
    let eval = |dtype: &str| {
        let dir = tmp.path().join(format!("eval-{dtype}"));
        let (model, data, images) = (out.join("grpo"), out.join("test.json"), out.join("phantoms"));
        let o = medr1(&[
            "eval",
            "--model",
            model.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--images",
            images.to_str().unwrap(),
            "--prompt",
            "nothink",
            "--max-new-tokens",
            "16",
            "--dtype",
            dtype,
            "--out",
            dir.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{dtype}: {}", String::from_utf8_lossy(&o.stderr));
        answers(&dir)
    };
    let reference = eval("f32");
    let accuracy =
        |a: &HashMap<String, (String, bool)>| 100.0 * a.values().filter(|v| v.1).count() as f64 / a.len() as f64;
    for dtype in ["bf16", "int8", "q4"] {
        let got = eval(dtype);
        assert_eq!(got.len(), reference.len());
        let same = reference.iter().filter(|(id, v)| got[*id].0 == v.0).count();
        let (a, b) = (accuracy(&reference), accuracy(&got));
        eprintln!("{dtype}: accuracy {b:.2}% (f32 {a:.2}%), {same}/{} answers identical", reference.len());
        assert!((a - b).abs() <= 1.0, "{dtype}: accuracy {b:.2}% vs f32 {a:.2}%");
        assert!(same as f64 >= 0.97 * reference.len() as f64, "{dtype}: only {same} answers identical");
    }
}
