//! Training the tiny Qwen2.5-VL (the Qwen2.5-VL oracle's checkpoint): GRPO and SFT, full and
//! LoRA, on phantoms at 112 px (4x4 merged tokens: four 2x2 windows, so the permutation is not the
//! identity). A run stopped and resumed ends bit-identical to a straight one; the saved checkpoint
//! keeps the source's config and tensor names, shapes and dtypes (what transformers'
//! `from_pretrained` reads) and opens again; a LoRA adapter merges into a checkpoint that computes
//! what base + adapter computes.

use crate::common;

use candle_core::{DType, Tensor};
use data::phantoms::{self, PhantomConfig};
use rl::config::TrainConfig;
use std::path::Path;
use vlm::Checkpoint;

use common::qwen25_model_dir;

fn records(dir: &Path) -> Vec<data::Record> {
    phantoms::generate(dir, &PhantomConfig { per_cell: 1, size: 112, seed: 4, fixed_options: false }, &|_, _| {})
        .unwrap()
}

fn cfg(out: &Path) -> TrainConfig {
    TrainConfig { model: qwen25_model_dir(), num_iterations: 2, learning_rate: 1e-3, seed: 9, ..common::small(out) }
}

fn lora_cfg(out: &Path) -> TrainConfig {
    TrainConfig { learning_rate: 5e-2, lora_r: 4, lora_alpha: 8.0, lora_dropout: 0.1, lora_vision: true, ..cfg(out) }
}

/// (name, dtype, shape) of every tensor of a safetensors file, sorted.
fn header(file: &Path) -> Vec<(String, DType, Vec<usize>)> {
    let mut v: Vec<_> = candle_core::safetensors::load(file, &candle_core::Device::Cpu)
        .unwrap()
        .into_iter()
        .map(|(k, t)| (k, t.dtype(), t.dims().to_vec()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn grpo_and_sft_train_save_and_resume_exactly() {
    let data = tempfile::tempdir().unwrap();
    let recs = records(data.path());
    let src = qwen25_model_dir();
    for sft in [false, true] {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (straight, resumed) = common::straight_and_resumed(sft, &recs, cfg, a.path(), b.path());
        assert_eq!((resumed.step, resumed.cursor), (straight.step, straight.cursor));
        let (wa, wb) = (
            common::saved_tensors(&a.path().join("model.safetensors")),
            common::saved_tensors(&b.path().join("model.safetensors")),
        );
        assert_eq!(wa, wb, "a resumed Qwen2.5-VL run differs from a straight one (sft={sft})");
        // Training moved the decoder and the windowed vision tower.
        let start = common::saved_tensors(&src.join("model.safetensors"));
        let moved = |name: &str| {
            let i = wa.iter().position(|(n, _)| n == name).unwrap();
            wa[i].1 != start[i].1
        };
        assert!(moved("model.layers.0.self_attn.q_proj.weight"), "sft={sft}");
        assert!(moved("visual.blocks.0.mlp.gate_proj.bias") && moved("visual.blocks.1.attn.qkv.weight"), "sft={sft}");
        // Export: the same tensors under the same names, shapes and dtypes, and the same config.
        assert_eq!(header(&a.path().join("model.safetensors")), header(&src.join("model.safetensors")));
        let cfg_of = |d: &Path| -> serde_json::Value {
            serde_json::from_str(&std::fs::read_to_string(d.join("config.json")).unwrap()).unwrap()
        };
        assert_eq!(cfg_of(a.path()), cfg_of(&src));
        let back = Checkpoint::open(a.path(), DType::F32).unwrap();
        assert_eq!(back.config.family, vlm::config::Family::Qwen2_5Vl);
    }
}

#[test]
fn lora_trains_resumes_exactly_and_merges() {
    let data = tempfile::tempdir().unwrap();
    let recs = records(data.path());
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (_, resumed) = common::straight_and_resumed(false, &recs, lora_cfg, a.path(), b.path());
    assert_eq!(resumed.step, 4);
    let adapter = |d: &Path| common::saved_tensors(&d.join("adapter_model.safetensors"));
    let (wa, wb) = (adapter(a.path()), adapter(b.path()));
    assert_eq!(wa, wb, "a resumed LoRA run differs from a straight one");
    // The vision tower's SwiGLU projections got adapters too (lora_vision), under PEFT's names.
    assert!(
        wa.iter().any(|(n, _)| n == "base_model.model.visual.blocks.0.mlp.gate_proj.lora_B.weight"),
        "{:?}",
        wa.iter().map(|w| &w.0).collect::<Vec<_>>()
    );
    assert!(wa.iter().filter(|(n, _)| n.ends_with("lora_B.weight")).any(|(_, v)| v.iter().any(|x| *x != 0.0)));

    let src = qwen25_model_dir();
    let merged = a.path().join("merged");
    let n = rl::lora::merge_checkpoint(&src, a.path(), &merged).unwrap();
    assert!(n > 14, "{n} layers merged");
    let base = Checkpoint::open(&src, DType::F32).unwrap();
    let m = Checkpoint::open(&merged, DType::F32).unwrap();
    let (s, t) = rl::lora::load_adapter(a.path()).unwrap();
    let mut adapted = vlm::model::Qwen2Vl::load(
        &base.config,
        &vlm::params::MapParams(&base.model.params().iter().cloned().collect()),
    )
    .unwrap();
    vlm::linear::attach_lora(adapted.linears_mut(), &rl::lora::adapters(&t, &s, None).unwrap());
    let logits = |model: &vlm::model::Qwen2Vl| -> Tensor {
        let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../vlm/tests/fixtures/qwen25vl-tiny");
        let conv = serde_json::json!([{"role": "user", "content": [
            {"type": "image", "image": "exact.png"}, {"type": "text", "text": "Which organ is shown?"}]}]);
        let p = base.processor.prompt(&conv, &root.join("images")).unwrap();
        let enc = base.processor.encode(&[p], None, &candle_core::Device::Cpu).unwrap();
        model.forward(&enc.batch, None).unwrap().0
    };
    let diff = |x: &Tensor, y: &Tensor| (x - y).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    let (lm, la, lb) = (logits(&m.model), logits(&adapted), logits(&base.model));
    assert!(diff(&lm, &la) < 1e-4, "merged vs adapted: {}", diff(&lm, &la));
    assert!(diff(&la, &lb) > 1e-3, "the adapter changes nothing");
}
