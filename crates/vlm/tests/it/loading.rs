//! Checkpoint loading: both config and tensor-name layouts, sharded and reduced-precision
//! weights, and every kind of bad input as a clear error naming the file and key.

use crate::common;

use candle_core::{DType, Device, Tensor};
use common::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use vlm::dump::{run_case, CaseRequest};
use vlm::weights::NameLayout;
use vlm::Checkpoint;

fn copy_model() -> (tempfile::TempDir, PathBuf) {
    copy_model_of(&fixtures())
}

fn copy_model_of(root: &Path) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join("model");
    std::fs::create_dir(&dst).unwrap();
    for e in std::fs::read_dir(root.join("model")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
    (tmp, dst)
}

fn weights(dir: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap()
}

fn config(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
}

fn write_config(dir: &Path, v: &Value) {
    std::fs::write(dir.join("config.json"), serde_json::to_string_pretty(v).unwrap()).unwrap();
}

fn logits(dir: &Path, case: &str) -> Vec<f32> {
    logits_of(&fixtures(), dir, case)
}

/// Logits of a case of the fixture at `root`, computed by the checkpoint in `dir`.
fn logits_of(root: &Path, dir: &Path, case: &str) -> Vec<f32> {
    let ck = Checkpoint::open(dir, DType::F32).unwrap();
    let (json, _) = load_case_in(root, case);
    let req = CaseRequest::from_json(&json, Path::new(case)).unwrap();
    f32s(&run_case(&ck, &req, &root.join("images"), false).unwrap()["logits"])
}

fn open_err(dir: &Path) -> String {
    match Checkpoint::open(dir, DType::F32) {
        Ok(_) => panic!("expected an error for {}", dir.display()),
        Err(e) => e.to_string(),
    }
}

/// The text model's keys transformers >= 5 moves under `text_config`.
const TEXT_KEYS: [&str; 9] = [
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "rms_norm_eps",
    "max_position_embeddings",
    "hidden_act",
];

#[test]
fn transformers5_layout_loads_and_computes_the_same() {
    let (_t, dir) = copy_model();
    // Tensors renamed to model.language_model.* / model.visual.*, and an untied lm_head.
    let w = weights(&dir);
    let mut nested: HashMap<String, Tensor> =
        w.iter().map(|(k, v)| (NameLayout::Nested.stored_name(k), v.clone())).collect();
    nested.insert("lm_head.weight".into(), w["model.embed_tokens.weight"].clone());
    assert!(nested.contains_key("model.language_model.layers.0.self_attn.q_proj.weight"));
    assert!(nested.contains_key("model.visual.blocks.0.attn.qkv.weight"));
    candle_core::safetensors::save(&nested, dir.join("model.safetensors")).unwrap();
    // Config nested as transformers >= 5 writes it.
    let legacy = config(&dir);
    let mut text = serde_json::Map::new();
    for k in TEXT_KEYS {
        text.insert(k.into(), legacy[k].clone());
    }
    text.insert(
        "rope_parameters".into(),
        json!({"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 1000000.0}),
    );
    let mut vision = legacy["vision_config"].clone();
    let vo = vision.as_object_mut().unwrap();
    vo.remove("in_chans");
    vo.insert("in_channels".into(), json!(3));
    let cfg = json!({
        "architectures": ["Qwen2VLForConditionalGeneration"], "model_type": "qwen2_vl",
        "text_config": text, "vision_config": vision, "tie_word_embeddings": false,
        "image_token_id": 562, "video_token_id": 563, "vision_start_token_id": 559, "vision_end_token_id": 560,
    });
    write_config(&dir, &cfg);
    let ck = Checkpoint::open(&dir, DType::F32).unwrap();
    assert_eq!(ck.layout, NameLayout::Nested);
    assert!(ck.config.nested_layout);
    assert!(!ck.config.text.tie_word_embeddings);
    let a = logits(&dir, "two_images");
    let b = logits(&fixtures().join("model"), "two_images");
    assert!(rel_err(&a, &b, |_| true) < 1e-6);
    // And the untied head is really read from lm_head.weight: change it and logits move.
    nested.insert("lm_head.weight".into(), (w["model.embed_tokens.weight"].clone() * 0.5).unwrap());
    candle_core::safetensors::save(&nested, dir.join("model.safetensors")).unwrap();
    let c = logits(&dir, "two_images");
    assert!(rel_err(&c, &b, |_| true) > 0.1);
}

/// Qwen2.5-VL as transformers >= 5 saves it (see fixtures/qwen25vl-tiny/README.md): text keys
/// under `text_config` (`model_type: qwen2_5_vl_text`, the rope dict as `rope_parameters`, the
/// token ids inside), `vision_config.in_channels` and its `model_type` / `rope_parameters`,
/// `model.language_model.*` / `model.visual.*` tensors and an untied `lm_head.weight`.
#[test]
fn qwen2_5_vl_transformers5_layout_loads_and_computes_the_same() {
    let root = fixtures_qwen25();
    let (_t, dir) = copy_model_of(&root);
    let w = weights(&dir);
    let mut nested: HashMap<String, Tensor> =
        w.iter().map(|(k, v)| (NameLayout::Nested.stored_name(k), v.clone())).collect();
    nested.insert("lm_head.weight".into(), w["model.embed_tokens.weight"].clone());
    assert!(nested.contains_key("model.visual.blocks.0.mlp.gate_proj.bias"));
    candle_core::safetensors::save(&nested, dir.join("model.safetensors")).unwrap();
    let legacy = config(&dir);
    let mut text = serde_json::Map::new();
    for k in TEXT_KEYS.into_iter().chain([
        "bos_token_id",
        "eos_token_id",
        "sliding_window",
        "use_sliding_window",
        "max_window_layers",
    ]) {
        text.insert(k.into(), legacy[k].clone());
    }
    text.insert("model_type".into(), json!("qwen2_5_vl_text"));
    text.insert(
        "rope_parameters".into(),
        json!({"rope_type": "default", "type": "mrope", "mrope_section": [2, 3, 3], "rope_theta": 1000000.0}),
    );
    let mut vision = legacy["vision_config"].clone();
    let vo = vision.as_object_mut().unwrap();
    vo.insert("in_channels".into(), json!(3));
    vo.insert("model_type".into(), json!("qwen2_5_vl_vision"));
    vo.insert("rope_parameters".into(), json!({"rope_type": "axial", "rope_theta": 10000.0}));
    let cfg = json!({
        "architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl",
        "text_config": text, "vision_config": vision, "tie_word_embeddings": false,
        "image_token_id": 596, "video_token_id": 597, "vision_start_token_id": 593, "vision_end_token_id": 594,
    });
    write_config(&dir, &cfg);
    let ck = Checkpoint::open(&dir, DType::F32).unwrap();
    assert_eq!(ck.layout, NameLayout::Nested);
    assert_eq!(ck.config.family, vlm::config::Family::Qwen2_5Vl);
    assert!(ck.config.nested_layout && !ck.config.text.tie_word_embeddings);
    assert_eq!(
        (ck.config.vision.embed_dim, ck.config.vision.out_hidden_size, ck.config.text.vocab_size),
        (32, 64, 608)
    );
    let a = logits_of(&root, &dir, "two_images");
    let b = logits_of(&root, &root.join("model"), "two_images");
    assert!(rel_err(&a, &b, |_| true) < 1e-6);
    // Without model_type, `architectures` names the family; an older file's vision model_type
    // (`qwen2_5_vl`) and tie_word_embeddings inside text_config are accepted too.
    let mut c = cfg.clone();
    c.as_object_mut().unwrap().remove("model_type");
    c["vision_config"]["model_type"] = json!("qwen2_5_vl");
    write_config(&dir, &c);
    assert!(rel_err(&logits_of(&root, &dir, "two_images"), &b, |_| true) < 1e-6);
}

/// An unknown family, or a Qwen2.5-VL file read with Qwen2-VL's keys, is an error naming the key.
#[test]
fn unknown_families_and_family_keys_are_named() {
    let (_t, dir) = copy_model();
    let mut c = config(&dir);
    c["model_type"] = json!("llava");
    write_config(&dir, &c);
    let msg = open_err(&dir);
    assert!(msg.contains("model_type") && msg.contains("llava") && msg.contains("qwen2_5_vl"), "{msg}");
    c.as_object_mut().unwrap().remove("model_type");
    c["architectures"] = json!(["LlavaForConditionalGeneration"]);
    write_config(&dir, &c);
    let msg = open_err(&dir);
    assert!(msg.contains("architectures") && msg.contains("Llava"), "{msg}");

    let (_t, dir) = copy_model_of(&fixtures_qwen25());
    let mut c = config(&dir);
    c["vision_config"]["out_hidden_size"] = json!(48);
    write_config(&dir, &c);
    let msg = open_err(&dir);
    assert!(msg.contains("vision_config.out_hidden_size"), "{msg}");
    let mut c = config(&dir);
    c["vision_config"]["out_hidden_size"] = json!(64);
    c["vision_config"]["fullatt_block_indexes"] = json!([1, 9]);
    write_config(&dir, &c);
    let msg = open_err(&dir);
    assert!(msg.contains("fullatt_block_indexes") && msg.contains("block 9"), "{msg}");
    let mut c = config(&dir);
    c["vision_config"].as_object_mut().unwrap().remove("intermediate_size");
    c["vision_config"]["fullatt_block_indexes"] = json!([1, 3]);
    write_config(&dir, &c);
    let msg = open_err(&dir);
    assert!(msg.contains("vision_config.intermediate_size"), "{msg}");
}

#[test]
fn sharded_bf16_and_f16_weights_load() {
    let (_t, dir) = copy_model();
    let w = weights(&dir);
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let mut a = HashMap::new();
    let mut b = HashMap::new();
    let mut map = serde_json::Map::new();
    for (i, (k, v)) in w.iter().enumerate() {
        // Half the tensors in bf16, half in f16, across two shards.
        let (dst, file, dt) = if i % 2 == 0 {
            (&mut a, "model-00001-of-00002.safetensors", DType::BF16)
        } else {
            (&mut b, "model-00002-of-00002.safetensors", DType::F16)
        };
        dst.insert(k.clone(), v.to_dtype(dt).unwrap());
        map.insert(k.clone(), json!(file));
    }
    candle_core::safetensors::save(&a, dir.join("model-00001-of-00002.safetensors")).unwrap();
    candle_core::safetensors::save(&b, dir.join("model-00002-of-00002.safetensors")).unwrap();
    std::fs::write(dir.join("model.safetensors.index.json"), json!({"metadata": {}, "weight_map": map}).to_string())
        .unwrap();
    let got = logits(&dir, "text_only");
    let want = logits(&fixtures().join("model"), "text_only");
    let e = rel_err(&got, &want, |_| true);
    assert!(e > 0.0 && e < 5e-2, "rounded weights: rel err {e}");
    // A shard listed in the index but missing is named.
    std::fs::remove_file(dir.join("model-00002-of-00002.safetensors")).unwrap();
    let msg = open_err(&dir);
    assert!(msg.contains("model-00002-of-00002.safetensors") && msg.contains("missing"), "{msg}");
}

#[test]
fn missing_and_corrupt_files_are_named() {
    let (_t, dir) = copy_model();
    std::fs::write(dir.join("model.safetensors"), b"not a safetensors file at all").unwrap();
    let msg = open_err(&dir);
    assert!(msg.contains("model.safetensors"), "{msg}");

    let (_t, dir) = copy_model();
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    assert!(open_err(&dir).contains("model.safetensors"));

    let (_t, dir) = copy_model();
    std::fs::remove_file(dir.join("config.json")).unwrap();
    assert!(open_err(&dir).contains("config.json"));

    let (_t, dir) = copy_model();
    std::fs::write(dir.join("config.json"), "{ nope").unwrap();
    let msg = open_err(&dir);
    assert!(msg.contains("config.json") && msg.contains("JSON"), "{msg}");

    let (_t, dir) = copy_model();
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    assert!(open_err(&dir).contains("tokenizer.json"));

    let (_t, dir) = copy_model();
    std::fs::write(dir.join("tokenizer.json"), "{}").unwrap();
    assert!(open_err(&dir).contains("tokenizer.json"));

    let (_t, dir) = copy_model();
    std::fs::remove_file(dir.join("chat_template.json")).unwrap();
    // Falls back to tokenizer_config.json's template.
    assert!(Checkpoint::open(&dir, DType::F32).is_ok());
    let mut tc: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("tokenizer_config.json")).unwrap()).unwrap();
    tc.as_object_mut().unwrap().remove("chat_template");
    std::fs::write(dir.join("tokenizer_config.json"), tc.to_string()).unwrap();
    let msg = open_err(&dir);
    assert!(msg.contains("chat_template"), "{msg}");

    assert!(open_err(Path::new("/nonexistent/checkpoint")).contains("does not exist"));
}

#[test]
fn config_errors_name_the_key() {
    let (_t, dir) = copy_model();
    let mut c = config(&dir);
    c.as_object_mut().unwrap().remove("num_hidden_layers");
    write_config(&dir, &c);
    let msg = open_err(&dir);
    assert!(msg.contains("config.json") && msg.contains("num_hidden_layers"), "{msg}");

    let (_t, dir) = copy_model();
    let mut c = config(&dir);
    c["rope_scaling"]["mrope_section"] = json!([2, 3, 4]);
    write_config(&dir, &c);
    let msg = open_err(&dir);
    assert!(msg.contains("mrope_section"), "{msg}");

    let (_t, dir) = copy_model();
    let mut c = config(&dir);
    c["hidden_size"] = json!("sixty-four");
    write_config(&dir, &c);
    assert!(open_err(&dir).contains("hidden_size"));
}

#[test]
fn config_contradicting_weights_is_an_error() {
    let (_t, dir) = copy_model();
    let mut c = config(&dir);
    c["intermediate_size"] = json!(128);
    write_config(&dir, &c);
    let msg = open_err(&dir);
    // The first tensor the new width touches is layer 0's gate projection.
    assert!(msg.contains("model.safetensors") && msg.contains("model.layers.0.mlp.gate_proj.weight"), "{msg}");
    assert!(msg.contains("[160, 64]") && msg.contains("[128, 64]"), "{msg}");

    let (_t, dir) = copy_model();
    let mut c = config(&dir);
    c["num_hidden_layers"] = json!(3);
    write_config(&dir, &c);
    let msg = open_err(&dir);
    assert!(msg.contains("model.layers.2"), "{msg}");

    let (_t, dir) = copy_model();
    let mut c = config(&dir);
    c["image_token_id"] = json!(5);
    write_config(&dir, &c);
    let msg = open_err(&dir);
    assert!(msg.contains("image_token_id"), "{msg}");
}

#[test]
fn bad_images_and_prompts_are_clear_errors() {
    let ck = Checkpoint::open(&fixtures().join("model"), DType::F32).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let msg_for = |image: &str| -> String {
        let req = CaseRequest::from_json(
            &json!({"conversations": [[{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "What is this?"}]}]]}),
            Path::new("req.json"),
        )
        .unwrap();
        match run_case(&ck, &req, tmp.path(), false) {
            Ok(_) => panic!("expected an error for {image}"),
            Err(e) => e.to_string(),
        }
    };
    let msg = msg_for("missing.png");
    assert!(msg.contains("missing.png") && msg.contains("cannot read"), "{msg}");

    std::fs::write(tmp.path().join("corrupt.png"), b"\x89PNG\r\n\x1a\n garbage").unwrap();
    let msg = msg_for("corrupt.png");
    assert!(msg.contains("corrupt.png") && msg.contains("decode"), "{msg}");

    std::fs::write(tmp.path().join("corrupt.jpg"), b"\xFF\xD8\xFF\xE0 garbage").unwrap();
    let msg = msg_for("corrupt.jpg");
    assert!(msg.contains("corrupt.jpg") && msg.contains("decode"), "{msg}");

    image::GrayImage::from_pixel(402, 2, image::Luma([9])).save(tmp.path().join("thin.png")).unwrap();
    let msg = msg_for("thin.png");
    assert!(msg.contains("aspect ratio") && msg.contains("200"), "{msg}");

    // A prompt longer than the context.
    let (_t, dir) = copy_model();
    let mut c = config(&dir);
    c["max_position_embeddings"] = json!(40);
    write_config(&dir, &c);
    let small = Checkpoint::open(&dir, DType::F32).unwrap();
    let (json, _) = load_case("single_image");
    let req = CaseRequest::from_json(&json, Path::new("x")).unwrap();
    let msg = run_case(&small, &req, &fixtures().join("images"), false).expect_err("too long").to_string();
    assert!(msg.contains("context") && msg.contains("40"), "{msg}");
}
