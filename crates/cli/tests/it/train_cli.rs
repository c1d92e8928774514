//! `medr1 train|sft|plot` flags: the printed settings carry Med-R1's defaults (and SFT's own),
//! overrides apply, mistakes are named, and plot draws a metrics file.

use std::process::Command;

fn medr1(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_medr1")).args(args).output().unwrap()
}

#[test]
fn settings_defaults_overrides_and_errors() {
    let out = medr1(&["train", "--print-config"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let t: toml::Table = toml::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    let f = |k: &str| t[k].as_float().unwrap_or_else(|| t[k].as_integer().unwrap() as f64);
    assert_eq!(
        (f("num_generations"), f("temperature"), f("max_completion_length"), f("beta")),
        (4.0, 1.0, 256.0, 0.04)
    );
    assert_eq!(
        (f("learning_rate"), f("max_grad_norm"), f("prompts_per_step"), f("epochs"), f("max_pixels")),
        (1e-6, 1.0, 4.0, 2.0, 401408.0)
    );
    assert_eq!(
        (t["lr_scheduler"].as_str(), t["loss_type"].as_str(), t["prompt"].as_str()),
        (Some("linear"), Some("grpo"), Some("think"))
    );
    let sft: toml::Table = toml::from_str(&String::from_utf8_lossy(&medr1(&["sft", "--print-config"]).stdout)).unwrap();
    assert_eq!(
        (sft["learning_rate"].as_float(), sft["lr_scheduler"].as_str(), sft["warmup_ratio"].as_float()),
        (Some(2e-5), Some("cosine"), Some(0.1))
    );
    let o: toml::Table = toml::from_str(&String::from_utf8_lossy(
        &medr1(&["train", "--print-config", "--set", "loss_type=dapo", "--set", "epsilon_high=0.28"]).stdout,
    ))
    .unwrap();
    assert_eq!((o["loss_type"].as_str(), o["epsilon_high"].as_float()), (Some("dapo"), Some(0.28)));
    let bad = medr1(&["train", "--print-config", "--set", "learning_rat=1"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("learning_rat"));
    let missing = medr1(&["train", "--set", "prompt=nothink"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("--model"));
}

#[test]
fn plot_draws_a_metrics_file() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("metrics.jsonl");
    std::fs::write(&m, "{\"step\":1,\"reward\":0.5,\"accuracy\":0.25,\"kl\":0.0,\"completion_length\":{\"mean\":9}}\n{\"step\":2,\"reward\":1.0,\"accuracy\":0.5,\"kl\":0.01,\"completion_length\":{\"mean\":8}}\n").unwrap();
    let png = dir.path().join("c.png");
    let out = medr1(&["plot", m.to_str().unwrap(), "--out", png.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(image::open(&png).unwrap().width() > 0);
    let none = medr1(&["plot", "/no/such/metrics.jsonl"]);
    assert!(!none.status.success());
}

/// An output folder that cannot be made fails first, with its path — before the data is read
/// (the data path here does not exist) or any model loaded.
#[test]
fn unwritable_output_folders_are_named_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let out = file.join("out");
    let out = out.to_str().unwrap();
    for args in [
        vec!["train", "--model", "/no/model", "--data", "/no/data", "--out", out],
        vec!["eval", "--model", "/no/model", "--data", "/no/data", "--prompt", "nothink", "--out", out],
        vec!["demo", "--out", out],
        vec!["data", "phantoms", "--out", out],
    ] {
        let r = medr1(&args);
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(
            !r.status.success() && err.contains("plain-file/out: cannot create the output folder"),
            "{args:?}: {err}"
        );
    }
}
