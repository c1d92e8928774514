//! LoRA: training starts exactly at the base model, only the adapters change (the shared base and
//! the reference never do), the adapter folder has PEFT's files and names, a resumed LoRA run
//! ends bit-identical to a straight one, and `merge` gives a full checkpoint computing what the
//! adapted model computes.

use crate::common;

use candle_core::{DType, Tensor};
use rl::config::TrainConfig;
use rl::policy::Policy;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use vlm::Checkpoint;

use common::{ck, model_dir};

fn cfg(out: &Path) -> TrainConfig {
    // Dropout on: resuming must redraw the same masks.
    TrainConfig { learning_rate: 5e-2, seed: 5, lora_r: 4, lora_alpha: 8.0, lora_dropout: 0.1, ..common::small(out) }
}

/// Logits of the model on one prompt with an image.
fn logits(m: &vlm::model::Qwen2Vl, c: &Checkpoint) -> Tensor {
    let img = data::image::open(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../samples/real/Images/RealSamples/xr_chest.png"),
    )
    .unwrap();
    let msgs = json!([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which modality? A)CT, B)X-ray"}]}]);
    let p = c.processor.prompt_with_images(&msgs, &[img]).unwrap();
    let enc = c.processor.encode(&[p], None, m.device()).unwrap();
    m.forward(&enc.batch, None).unwrap().0
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

fn adapter_weights(dir: &Path) -> Vec<(String, Vec<f32>)> {
    common::saved_tensors(&dir.join("adapter_model.safetensors"))
}

#[test]
fn starts_at_the_base_and_shares_its_weights() {
    let c = ck();
    let s = cfg(Path::new("/unused")).lora().unwrap();
    let p = Policy::new_lora(&c.model, &s, 1).unwrap();
    // 2 decoder layers x 7 projections, A and B each; the vision tower is left alone.
    assert_eq!(p.vars.len(), 2 * 7 * 2);
    assert!(p.vars.iter().all(
        |(n, _)| n.starts_with("model.layers.") && (n.ends_with(".lora_A.weight") || n.ends_with(".lora_B.weight"))
    ));
    // B = 0: the adapted model is the base (up to the training path's unfused kernels: ~4e-6).
    let d = max_diff(&logits(&p.model, &c), &logits(&c.model, &c));
    assert!(d < 1e-4, "{d}");
    assert_eq!(max_diff(&logits(&p.inference_model().unwrap(), &c), &logits(&c.model, &c)), 0.0);
    // No second copy: the policy's frozen base is the loaded model's storage.
    let name = "model.layers.0.mlp.up_proj.weight";
    let shared = c.model.params().iter().find(|(n, _)| n == name).unwrap().1.clone();
    let ptr = |t: &Tensor| {
        let (st, _) = t.storage_and_layout();
        &*st as *const candle_core::Storage as usize
    };
    assert_eq!(ptr(&p.frozen[name]), ptr(&shared), "the base weight was copied");
    let vision = Policy::new_lora(
        &c.model,
        &rl::lora::LoraSettings { vision: true, target_modules: vec!["qkv".into(), "q_proj".into()], ..s.clone() },
        1,
    )
    .unwrap();
    assert!(vision.vars.iter().any(|(n, _)| n.starts_with("visual.blocks.0.attn.qkv")));
    // Dropout acts in training forwards only, and draws the same mask for the same seed.
    let trained = Policy::new_lora(&c.model, &s, 1).unwrap();
    for (n, v) in &trained.vars {
        if n.ends_with("lora_B.weight") {
            v.set(&Tensor::ones(v.shape(), DType::F32, &candle_core::Device::Cpu).unwrap().affine(0.05, 0.0).unwrap())
                .unwrap();
        }
    }
    trained.set_dropout_seed(3, 0);
    let (d1, d2) = (logits(&trained.model, &c), logits(&trained.model, &c));
    assert_eq!(max_diff(&d1, &d2), 0.0, "same seed, same mask");
    let plain = logits(&trained.inference_model().unwrap(), &c);
    assert!(max_diff(&d1, &plain) > 1e-4, "dropout changed nothing");
    trained.set_dropout_seed(4, 0);
    assert!(max_diff(&logits(&trained.model, &c), &d1) > 1e-4, "a new seed draws a new mask");
    let bad =
        Policy::new_lora(&c.model, &rl::lora::LoraSettings { target_modules: vec!["nope".into()], ..s.clone() }, 1)
            .err()
            .unwrap()
            .to_string();
    assert!(bad.contains("match no layer"), "{bad}");
}

#[test]
fn trains_adapters_only_resumes_exactly_and_merges() {
    let data = tempfile::tempdir().unwrap();
    let recs = common::records(data.path());
    for sft in [false, true] {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (_, resumed) = common::straight_and_resumed(sft, &recs, cfg, a.path(), b.path());
        assert_eq!(resumed.step, 4);
        let (wa, wb) = (adapter_weights(a.path()), adapter_weights(b.path()));
        assert_eq!(wa, wb, "a resumed LoRA run differs from a straight one (sft={sft})");
        // PEFT's names and config; the B matrices moved off zero.
        assert!(
            wa.iter().any(|(n, _)| n == "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"),
            "{:?}",
            wa.iter().map(|w| &w.0).collect::<Vec<_>>()
        );
        assert!(
            wa.iter().filter(|(n, _)| n.ends_with("lora_B.weight")).any(|(_, v)| v.iter().any(|x| *x != 0.0)),
            "training did not move the adapters (sft={sft})"
        );
        let pc: Value =
            serde_json::from_str(&std::fs::read_to_string(a.path().join("adapter_config.json")).unwrap()).unwrap();
        assert_eq!(
            (pc["peft_type"].as_str(), pc["r"].as_u64(), pc["lora_alpha"].as_f64()),
            (Some("LORA"), Some(4), Some(8.0))
        );
        assert!(!a.path().join("model.safetensors").exists(), "a LoRA run saves the adapter only");
        let err = Checkpoint::open(a.path(), DType::F32).err().unwrap().to_string();
        assert!(err.contains("medr1 merge"), "opening an adapter folder as a model should point at merge: {err}");

        // Merged: a full checkpoint that computes what base + adapter computes.
        let merged = a.path().join("merged");
        assert_eq!(rl::lora::merge_checkpoint(&model_dir(), a.path(), &merged).unwrap(), 14);
        let m = Checkpoint::open(&merged, DType::F32).unwrap();
        let (s, t) = rl::lora::load_adapter(a.path()).unwrap();
        let mut adapted = vlm::model::Qwen2Vl::load(
            &ck().config,
            &vlm::params::MapParams(&ck().model.params().iter().cloned().collect()),
        )
        .unwrap();
        vlm::linear::attach_lora(adapted.linears_mut(), &rl::lora::adapters(&t, &s, None).unwrap());
        let c = ck();
        let (lm, la, lb) = (logits(&m.model, &c), logits(&adapted, &c), logits(&c.model, &c));
        assert!(max_diff(&lm, &la) < 1e-4, "merged vs adapted: {}", max_diff(&lm, &la));
        assert!(max_diff(&la, &lb) > 1e-3, "the adapter changes nothing");
    }
}
