//! The `medr1` binary's contracts: ask, dump and bench flags and output fields.

use std::path::PathBuf;
use std::process::Command;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../vlm/tests/fixtures/qwen2vl-tiny")
}

fn medr1(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_medr1")).args(args).output().unwrap()
}

#[test]
fn ask_json_reports_text_tokens_logprobs_and_timing() {
    let m = fixtures().join("model");
    let img = fixtures().join("images/wide.png");
    let out = medr1(&[
        "ask",
        "--model",
        m.to_str().unwrap(),
        "--image",
        img.to_str().unwrap(),
        "--question",
        "What imaging modality is used to acquire this image? A: CT B: MRI C: X-ray D: Ultrasound",
        "--max-new-tokens",
        "16",
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<u32> = serde_json::from_value(v["token_ids"].clone()).unwrap();
    let lps: Vec<f32> = serde_json::from_value(v["logprobs"].clone()).unwrap();
    assert!(!ids.is_empty() && ids.len() <= 16);
    assert_eq!(ids.len(), lps.len());
    assert!(lps.iter().all(|l| *l <= 0.0));
    assert!(v["text"].is_string());
    assert!(v["timing"]["generate_seconds"].as_f64().unwrap() > 0.0);
    // Greedy `ask` reproduces transformers' greedy tokens for the same prompt (single_image case),
    // up to the first EOS, which `ask` stops at.
    let refs =
        candle_core::safetensors::load(fixtures().join("cases/single_image.safetensors"), &candle_core::Device::Cpu)
            .unwrap();
    let want: Vec<i64> = refs["generated_ids"].flatten_all().unwrap().to_vec1().unwrap();
    for (a, b) in ids.iter().zip(&want) {
        assert_eq!(*a as i64, *b);
    }
    // Plain output is the text alone.
    let plain = medr1(&[
        "ask",
        "--model",
        m.to_str().unwrap(),
        "--image",
        img.to_str().unwrap(),
        "--question",
        "Which organ?",
        "--max-new-tokens",
        "4",
    ]);
    assert!(plain.status.success());
    // Sampling is repeatable with a seed.
    let s = |seed: &str| {
        medr1(&[
            "ask",
            "--model",
            m.to_str().unwrap(),
            "--question",
            "Which organ?",
            "--max-new-tokens",
            "12",
            "--temperature",
            "1.0",
            "--top-p",
            "0.95",
            "--top-k",
            "50",
            "--seed",
            seed,
            "--json",
        ])
        .stdout
    };
    let (a, b) = (s("5"), s("5"));
    let ta: serde_json::Value = serde_json::from_slice(&a).unwrap();
    let tb: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(ta["token_ids"], tb["token_ids"]);
}

#[test]
fn ask_errors_are_clear() {
    let m = fixtures().join("model");
    let out = medr1(&["ask", "--model", m.to_str().unwrap(), "--image", "/no/such/image.png", "--question", "x"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/no/such/image.png"), "{err}");
    let out = medr1(&["ask", "--model", "/no/such/model", "--question", "x"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/model"));
    let out = medr1(&["ask", "--model", m.to_str().unwrap(), "--question", "x", "--max-new-tokens", "40000"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("context"));
}

#[test]
fn dump_writes_the_oracle_tensors() {
    let tmp = tempfile::tempdir().unwrap();
    let outp = tmp.path().join("out.safetensors");
    let out = medr1(&[
        "dump",
        "--model",
        fixtures().join("model").to_str().unwrap(),
        "--request",
        fixtures().join("cases/completion.json").to_str().unwrap(),
        "--image-root",
        fixtures().join("images").to_str().unwrap(),
        "--out",
        outp.to_str().unwrap(),
        "--grads",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ours = candle_core::safetensors::load(&outp, &candle_core::Device::Cpu).unwrap();
    let refs =
        candle_core::safetensors::load(fixtures().join("cases/completion.safetensors"), &candle_core::Device::Cpu)
            .unwrap();
    for (k, r) in &refs {
        let o = ours.get(k).unwrap_or_else(|| panic!("dump lacks `{k}`"));
        assert_eq!(o.dims(), r.dims(), "{k}");
        assert_eq!(o.dtype(), r.dtype(), "{k}");
    }
    // Every parameter's gradient is written, named as in the checkpoint.
    assert!(ours.contains_key("grad.model.layers.1.mlp.gate_proj.weight"));
    assert!(ours.contains_key("grad.visual.blocks.1.attn.proj.bias"));
}

/// Qwen2.5-VL through the binary: greedy `ask` reproduces transformers' tokens (the Qwen2.5-VL
/// oracle's `single_image`), and `bench` runs the tiny Qwen2.5-VL shape.
#[test]
fn ask_and_bench_run_qwen2_5_vl() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../vlm/tests/fixtures/qwen25vl-tiny");
    let case: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("cases/single_image.json")).unwrap()).unwrap();
    let question = case["conversations"][0][0]["content"][1]["text"].as_str().unwrap();
    let (m, img) = (root.join("model"), root.join("images/wide.png"));
    let out = medr1(&[
        "ask",
        "--model",
        m.to_str().unwrap(),
        "--image",
        img.to_str().unwrap(),
        "--question",
        question,
        "--max-new-tokens",
        "8",
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<u32> = serde_json::from_value(v["token_ids"].clone()).unwrap();
    let refs =
        candle_core::safetensors::load(root.join("cases/single_image.safetensors"), &candle_core::Device::Cpu).unwrap();
    let want: Vec<i64> = refs["generated_ids"].flatten_all().unwrap().to_vec1().unwrap();
    assert!(!ids.is_empty());
    for (a, b) in ids.iter().zip(&want) {
        assert_eq!(*a as i64, *b);
    }
    let out = medr1(&["bench", "--shape", "tiny25", "--new-tokens", "2", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["shape"], "tiny25");
    assert!(v["prefill_seconds"].as_f64().unwrap() > 0.0);
}

#[test]
fn bench_json_has_the_contract_fields() {
    let out = medr1(&["bench", "--shape", "tiny", "--new-tokens", "4", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["prefill_seconds"].as_f64().unwrap() > 0.0);
    assert!(v["decode_tokens_per_second"].as_f64().unwrap() > 0.0);
    assert_eq!(v["prompt_tokens"].as_u64().unwrap(), 258);
    // Every precision runs, and reports its peak memory and weights' bytes: int8 holds under half
    // of float32's at this tiny shape (42%: norms, biases and the patch embedding stay float32,
    // and channels are padded to 16; at the 2B shape it is 25%).
    let mut bytes = Vec::new();
    for dtype in ["f32", "bf16", "int8", "q4"] {
        let out = medr1(&["bench", "--shape", "tiny", "--new-tokens", "2", "--dtype", dtype, "--json"]);
        assert!(out.status.success(), "{dtype}: {}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["dtype"], dtype);
        assert!(v["peak_rss_bytes"].as_u64().unwrap() > v["weights_bytes"].as_u64().unwrap());
        bytes.push(v["weights_bytes"].as_u64().unwrap());
    }
    // bf16: the tables at half, norms and biases still float32, channels padded to 16 (60% here,
    // 50.05% at the 2B shape).
    assert!(bytes[1] * 2 >= bytes[0] && bytes[1] * 10 < bytes[0] * 7, "bf16 {} vs f32 {}", bytes[1], bytes[0]);
    // --against-f32 compares with the float32 model built from the same draws.
    let out = medr1(&["bench", "--shape", "tiny", "--new-tokens", "8", "--dtype", "int8", "--against-f32", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let err = v["logits_rel_err_vs_f32"].as_f64().unwrap();
    assert!(err > 0.0 && err < 0.05, "int8 next-token logits off f32 by {err}");
    let frac = v["greedy_match_vs_f32"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&frac) && v["greedy_prefix_vs_f32"].as_u64().unwrap() <= 8);
    assert!(bytes[2] * 2 < bytes[0], "int8 {} vs f32 {}", bytes[2], bytes[0]);
    assert!(bytes[3] < bytes[2], "q4 {} vs int8 {}", bytes[3], bytes[2]);
}

/// `medr1 quantize` writes an int8 checkpoint (I8 tables + per-channel scales, a fraction of the
/// float file) that answers exactly as quantizing at load does, and still loads in float32.
#[test]
fn quantize_writes_an_int8_checkpoint_that_answers_as_quantizing_at_load() {
    let m = fixtures().join("model");
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("int8");
    let out = medr1(&["quantize", "--model", m.to_str().unwrap(), "--out", q.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(q.join("quantization_config.json")).unwrap()).unwrap();
    assert_eq!(cfg["quant_method"], "medr1-int8");
    assert!(q.join("tokenizer.json").is_file() && q.join("config.json").is_file());
    let (fsize, qsize) = (
        std::fs::metadata(m.join("model.safetensors")).unwrap().len(),
        std::fs::metadata(q.join("model.safetensors")).unwrap().len(),
    );
    assert!(qsize * 2 < fsize, "int8 file {qsize} bytes vs float {fsize}");
    // SAFETY: the file is not modified while mapped.
    let st = unsafe { candle_core::safetensors::MmapedSafetensors::new(q.join("model.safetensors")) }.unwrap();
    let view = st.get("model.layers.0.mlp.gate_proj.weight").unwrap();
    assert_eq!(view.dtype(), safetensors::Dtype::I8);
    assert!(st.get("model.layers.0.mlp.gate_proj.weight_scale").is_ok());
    let img = fixtures().join("images/wide.png");
    let ask = |model: &std::path::Path, dtype: &str| {
        let out = medr1(&[
            "ask",
            "--model",
            model.to_str().unwrap(),
            "--image",
            img.to_str().unwrap(),
            "--question",
            "Which organ? A: lung B: liver",
            "--max-new-tokens",
            "12",
            "--dtype",
            dtype,
            "--json",
        ]);
        assert!(out.status.success(), "{dtype}: {}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (v["token_ids"].clone(), v["logprobs"].clone())
    };
    // Same quantized values, same kernels: bit-identical tokens and log-probs.
    assert_eq!(ask(&q, "int8"), ask(&m, "int8"));
    // In float32 the tables are dequantized: it runs, and is not the float model's exact output.
    let (_, lp_deq) = ask(&q, "f32");
    let (_, lp_f32) = ask(&m, "f32");
    assert_ne!(lp_deq, lp_f32);
    // Refusals: another dtype, and writing over the source.
    let bad = medr1(&["quantize", "--model", m.to_str().unwrap(), "--out", q.to_str().unwrap(), "--dtype", "bf16"]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("only int8"));
    let same = medr1(&["quantize", "--model", m.to_str().unwrap(), "--out", m.to_str().unwrap()]);
    assert!(!same.status.success() && String::from_utf8_lossy(&same.stderr).contains("source checkpoint"));
}

/// The pixel limit holds for `ask`, `eval` and the server alike: a PNG whose header declares
/// 20000 x 20000 is refused, and a JPEG cut in half is refused rather than answered.
#[test]
fn image_bombs_and_truncated_images_are_refused_everywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let bomb = tmp.path().join("bomb.png");
    image::GrayImage::new(20000, 20000).save(&bomb).unwrap();
    let jpg = fixtures().join("images/xray.jpg");
    let bytes = std::fs::read(&jpg).unwrap();
    let cut = tmp.path().join("cut.jpg");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let model = fixtures().join("model");
    for (img, want) in [(&bomb, "--max-image-pixels"), (&cut, "truncated")] {
        let out = Command::new(env!("CARGO_BIN_EXE_medr1"))
            .args(["ask", "--model", model.to_str().unwrap(), "--image", img.to_str().unwrap(), "--question", "What?"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(want) && err.contains(img.to_str().unwrap()), "{err}");
    }
    // eval: both records fail with their file named, and are counted as failed, not scored.
    let split = tmp.path().join("split.json");
    let recs = serde_json::json!([
        {"image": "bomb.png", "problem": "What modality? A)CT, B)MRI", "solution": "<answer> A </answer>"},
        {"image": "cut.jpg", "problem": "What modality? A)CT, B)MRI", "solution": "<answer> B </answer>"},
    ]);
    std::fs::write(&split, recs.to_string()).unwrap();
    let out_dir = tmp.path().join("eval");
    let out = medr1(&[
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--data",
        split.to_str().unwrap(),
        "--images",
        tmp.path().to_str().unwrap(),
        "--prompt",
        "nothink",
        "--out",
        out_dir.to_str().unwrap(),
        "--max-new-tokens",
        "4",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!((summary["failed"].as_u64(), summary["overall"]["n"].as_u64()), (Some(2), Some(0)), "{summary}");
    let preds = std::fs::read_to_string(out_dir.join("predictions.jsonl")).unwrap();
    for (name, want) in [("bomb.png", "--max-image-pixels"), ("cut.jpg", "truncated")] {
        let line = preds.lines().find(|l| l.contains(name)).unwrap_or_else(|| panic!("no prediction for {name}"));
        let err = serde_json::from_str::<serde_json::Value>(line).unwrap()["error"].as_str().unwrap_or("").to_string();
        assert!(err.contains(want) && err.contains(name), "{name}: {err}");
    }
    // serve: both as data URLs get 400 with the reason.
    let (child, addr, log) = crate::serve_cli::start_server(&model, &[]);
    for (img, mime, want) in [(&bomb, "image/png", "pixels"), (&cut, "image/jpeg", "truncated")] {
        use base64::Engine;
        let url = format!(
            "data:{mime};base64,{}",
            base64::engine::general_purpose::STANDARD.encode(std::fs::read(img).unwrap())
        );
        let body = serde_json::json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "What?"}]}]});
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut res = agent
            .post(&format!("http://{addr}/v1/chat/completions"))
            .header("content-type", "application/json")
            .send(body.to_string())
            .unwrap();
        let status = res.status().as_u16();
        let text = res.body_mut().read_to_string().unwrap();
        assert!(status == 400 && text.contains(want), "{mime}: {status} {text}");
    }
    crate::serve_cli::stop_server(child, log);
    // The limit is the global flag's: lowered to 100 pixels, even the small fixture is refused.
    let small = Command::new(env!("CARGO_BIN_EXE_medr1"))
        .args([
            "--max-image-pixels",
            "100",
            "ask",
            "--model",
            model.to_str().unwrap(),
            "--image",
            jpg.to_str().unwrap(),
            "--question",
            "What?",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&small.stderr);
    assert!(!small.status.success() && err.contains("more than the limit of 100"), "{err}");
}
