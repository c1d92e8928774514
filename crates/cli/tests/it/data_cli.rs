//! `medr1 data` contracts: flags, the stats JSON fields, exit statuses, and `ask` on DICOM.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn medr1(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_medr1")).args(args).output().unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn phantoms_stats_split_and_show_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let ph = dir.path().join("ph");
    let out = medr1(&["data", "phantoms", "--out", s(&ph), "--per-cell", "5", "--size", "56", "--seed", "3"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("200 phantom records"));

    let out = medr1(&["data", "stats", s(&ph), "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["records"], 200);
    assert_eq!(v["by_modality"]["CT"], 25);
    assert_eq!(v["by_modality"]["X-ray"], 25);
    assert_eq!(v["by_question_type"]["Lesion Grading"], 40);
    assert_eq!(v["problems"].as_array().unwrap().len(), 0);
    let by_mod: u64 = v["by_modality"].as_object().unwrap().values().map(|x| x.as_u64().unwrap()).sum();
    assert_eq!(by_mod, 200);

    let sp = dir.path().join("splits");
    let out = medr1(&["data", "split", "--omnimedvqa", s(&ph), "--out", s(&sp), "--seed", "1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = medr1(&["data", "stats", s(&sp.join("modality/test/CT_test.json")), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["records"], 5);
    assert_eq!(v["images_checked"], true);

    let sheet = dir.path().join("sheet.png");
    let out = medr1(&["data", "show", s(&ph), "--out", s(&sheet), "--n", "10"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let img = image::open(&sheet).unwrap();
    assert_eq!(img.width(), 5 * 188);
}

#[test]
fn stats_lists_problems_with_file_and_record_and_still_exits_zero() {
    let bad = repo().join("crates/data/tests/fixtures/omnimedvqa-bad");
    let out = medr1(&["data", "stats", s(&bad), "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["records"], 3);
    let problems = v["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 11);
    for p in problems {
        assert!(p["file"].as_str().unwrap().ends_with(".json"));
        assert!(p["kind"].is_string() && p["message"].is_string());
    }
    assert!(problems.iter().any(|p| p["record"] == "demo_5" && p["kind"] == "gold_not_an_option"));
    // Unreadable PATH: a non-zero exit and the path in the message.
    let out = medr1(&["data", "stats", "/no/such/data"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/data"));
    // The text report names the problems too.
    let out = medr1(&["data", "stats", s(&bad)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("3 usable records, 11 skipped") && text.contains("demo_3"), "{text}");
}

#[test]
fn ask_reads_dicom() {
    let m = repo().join("crates/vlm/tests/fixtures/qwen2vl-tiny/model");
    let dcm = repo().join("crates/data/tests/fixtures/dicom/CT_small.dcm");
    let out = medr1(&[
        "ask",
        "--model",
        s(&m),
        "--image",
        s(&dcm),
        "--question",
        "Which organ?",
        "--max-new-tokens",
        "3",
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // 12-bit JPEG Extended too (medr1's own sequential-DCT decoder).
    let twelve = repo().join("crates/data/tests/fixtures/dicom/JPEG-lossy.dcm");
    let out = medr1(&["ask", "--model", s(&m), "--image", s(&twelve), "--question", "x", "--max-new-tokens", "3"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
