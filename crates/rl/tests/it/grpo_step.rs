//! A GRPO step on the bundled tiny Qwen2-VL: the loss's gradient reaches the vision tower and the
//! decoder; a frozen vision tower and the reference model are never changed.

use candle_core::{DType, Tensor};
use data::prompts::PromptVariant;
use rl::advantages::{advantages, ScaleRewards};
use rl::grpo::{update, UpdateConfig};
use rl::loss::{grpo_loss, LossConfig, LossInputs, LossType};
use rl::optim::{AdamW, AdamWConfig};
use rl::policy::Policy;
use rl::rollout::{rollout, RolloutConfig};
use serde_json::json;
use std::path::PathBuf;
use vlm::logprob::completion_logprobs;
use vlm::Checkpoint;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn setup() -> (Checkpoint, Vec<vlm::prompt::Prompt>) {
    setup_with("qwen2vl-tiny")
}

/// The checkpoint of `tests/fixtures/{fixture}/model` and two prompts on a real chest X-ray.
fn setup_with(fixture: &str) -> (Checkpoint, Vec<vlm::prompt::Prompt>) {
    let ck = Checkpoint::open(&repo().join(format!("crates/vlm/tests/fixtures/{fixture}/model")), DType::F32).unwrap();
    let img = data::image::open(&repo().join("samples/real/Images/RealSamples/xr_chest.png")).unwrap();
    let prompts = ["What imaging modality is this? A)CT, B)X-ray", "Which organ? A)Lung, B)Liver"]
        .iter()
        .map(|q| {
            let m = json!([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PromptVariant::NoThink.render(q)}]}]);
            ck.processor.prompt_with_images(&m, std::slice::from_ref(&img)).unwrap()
        })
        .collect();
    (ck, prompts)
}

fn rcfg(ck: &Checkpoint) -> RolloutConfig {
    RolloutConfig {
        num_generations: 2,
        max_new_tokens: 6,
        temperature: 1.0,
        top_p: 1.0,
        top_k: 0,
        eos_token_ids: ck.generation.eos_token_ids.clone(),
        suppress_token_ids: ck.config.vision_token_ids(),
    }
}

fn lcfg() -> LossConfig {
    LossConfig {
        loss_type: LossType::Grpo,
        beta: 0.04,
        epsilon_low: 0.2,
        epsilon_high: 0.2,
        max_completion_length: 6,
        ..Default::default()
    }
}

fn norm(t: &Tensor) -> f64 {
    t.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap().sqrt() as f64
}

#[test]
fn the_gradient_reaches_vision_tower_and_decoder() {
    let (ck, prompts) = setup();
    let policy = Policy::new(&ck.model, false).unwrap();
    let ro = rollout(&policy.inference_model().unwrap(), &ck.processor, &prompts, &rcfg(&ck), 1, 0).unwrap();
    assert_eq!(ro.texts.len(), 4);
    let adv = advantages(&[1.0, 0.0, 0.0, 1.0], 2, ScaleRewards::Group);
    let dev = candle_core::Device::Cpu;
    let lp = completion_logprobs(&policy.model, &ro.batch, &ro.completion_mask).unwrap();
    let reflp = completion_logprobs(&ck.model, &ro.batch, &ro.completion_mask).unwrap().logprobs;
    let adv_t = Tensor::from_vec(adv, 4, &dev).unwrap();
    let out = grpo_loss(
        &lcfg(),
        &LossInputs {
            logps: &lp.logprobs,
            old_logps: None,
            ref_logps: Some(&reflp),
            advantages: &adv_t,
            mask: &lp.mask,
            tokens_in_batch: 1.0,
            sampling_logps: None,
            is_ratio: None,
            entropies: None,
        },
    )
    .unwrap();
    let grads = out.loss.backward().unwrap();
    let grad_of = |name: &str| {
        let v = &policy.vars.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no parameter {name}")).1;
        grads.get(v.as_tensor()).map(norm).unwrap_or(0.0)
    };
    for name in [
        "visual.patch_embed.proj.weight",
        "visual.blocks.0.attn.qkv.weight",
        "visual.merger.mlp.0.weight",
        "model.layers.0.self_attn.q_proj.weight",
        "model.layers.1.mlp.down_proj.weight",
        "model.embed_tokens.weight",
    ] {
        assert!(grad_of(name) > 0.0, "no gradient reaches {name}");
    }
    // The reference model's weights are plain tensors: nothing to differentiate.
    assert!(ck.model.params().iter().all(|(_, t)| grads.get(t).is_none()));
}

#[test]
fn updates_change_the_policy_but_never_a_frozen_tower_or_the_reference() {
    let (ck, prompts) = setup();
    let before: Vec<(String, Vec<f32>)> = ck
        .model
        .params()
        .iter()
        .map(|(n, t)| (n.clone(), t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect();
    for freeze in [false, true] {
        let mut policy = Policy::new(&ck.model, freeze).unwrap();
        assert_eq!(policy.vars.iter().any(|(n, _)| n.starts_with("visual.")), !freeze);
        // Copies: `tensors()` views the live parameters, which updates overwrite in place.
        let start: std::collections::HashMap<String, Tensor> =
            policy.tensors().into_iter().map(|(n, t)| (n, t.copy().unwrap())).collect();
        let mut opt = AdamW::new(
            policy.vars.clone(),
            AdamWConfig { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 },
        )
        .unwrap();
        let ro = rollout(&policy.inference_model().unwrap(), &ck.processor, &prompts, &rcfg(&ck), 2, 0).unwrap();
        let adv = advantages(&[1.0, 0.0, 0.0, 1.0], 2, ScaleRewards::Group);
        let cfg = UpdateConfig {
            loss: &lcfg(),
            num_iterations: 2,
            max_grad_norm: 1.0,
            mask_truncated: false,
            micro_batch_size: 0,
        };
        let stats = update(&mut policy, Some(&ck.model), &mut opt, &ro, &adv, &[true; 4], &cfg, 1e-3).unwrap();
        assert!(stats.grad_norm > 0.0 && stats.kl.is_some() && stats.entropy > 0.0);
        let after = policy.tensors();
        let changed = |prefix: &str| {
            start.iter().filter(|(n, _)| n.starts_with(prefix)).any(|(n, t)| {
                let d = (t - &after[n]).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                d > 0.0
            })
        };
        assert!(changed("model.layers."), "decoder unchanged (freeze={freeze})");
        assert_eq!(changed("visual."), !freeze, "vision tower (freeze={freeze})");
    }
    // The reference (the checkpoint's own model) is untouched.
    for ((n, t), (n0, v0)) in ck.model.params().iter().zip(&before) {
        assert_eq!(n, n0);
        assert_eq!(&t.flatten_all().unwrap().to_vec1::<f32>().unwrap(), v0, "reference weight {n} changed");
    }
}

#[test]
fn micro_batches_accumulate_to_the_whole_batch_update() {
    // Prompts with different images, so each micro-batch must carry its own rows' patches.
    let (ck, mut prompts) = setup();
    let img = data::image::open(&repo().join("samples/real/Images/RealSamples/ct_head.png")).unwrap();
    let m = json!([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PromptVariant::NoThink.render("Which organ? A)Brain, B)Liver")}]}]);
    prompts.push(ck.processor.prompt_with_images(&m, &[img]).unwrap());
    let ro =
        rollout(&ck.model, &ck.processor, &prompts, &RolloutConfig { max_new_tokens: 5, ..rcfg(&ck) }, 3, 0).unwrap();
    assert_eq!(ro.batch.rows(), 6);
    let adv = advantages(&[1.0, 0.0, 0.0, 1.0, 1.0, 0.5], 2, ScaleRewards::Group);
    // The last group is dropped (dynamic sampling), so one micro-batch has no loss tokens at all.
    let keep = [true, true, true, true, false, false];
    for loss_type in [
        LossType::Grpo,
        LossType::Bnpo,
        LossType::Dapo,
        LossType::DrGrpo,
        LossType::Cispo,
        LossType::Sapo,
        LossType::Luspo,
        LossType::Vespo,
    ] {
        let lc = LossConfig { loss_type, epsilon_high: if loss_type == LossType::Cispo { 5.0 } else { 0.2 }, ..lcfg() };
        let run = |micro: usize| {
            let mut policy = Policy::new(&ck.model, false).unwrap();
            let mut opt = AdamW::new(
                policy.vars.clone(),
                AdamWConfig { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 },
            )
            .unwrap();
            // No clipping, so grad_norm is the accumulated gradient's own norm.
            let cfg = UpdateConfig {
                loss: &lc,
                num_iterations: 1,
                max_grad_norm: 0.0,
                mask_truncated: false,
                micro_batch_size: micro,
            };
            let s = update(&mut policy, Some(&ck.model), &mut opt, &ro, &adv, &keep, &cfg, 1e-3).unwrap();
            (
                s,
                policy.tensors()["model.layers.1.mlp.down_proj.weight"]
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap(),
            )
        };
        let (whole, w_whole) = run(0);
        assert!(whole.grad_norm > 0.0);
        for micro in [1, 4] {
            let (part, w_part) = run(micro);
            let rel = |a: f64, b: f64| (a - b).abs() / b.abs().max(1e-12);
            assert!(
                rel(part.grad_norm, whole.grad_norm) < 1e-4,
                "{loss_type:?} micro {micro}: grad norm {} vs {}",
                part.grad_norm,
                whole.grad_norm
            );
            assert!(
                (part.loss - whole.loss).abs() < 1e-5,
                "{loss_type:?} micro {micro}: loss {} vs {}",
                part.loss,
                whole.loss
            );
            assert!(rel(part.kl.unwrap(), whole.kl.unwrap()) < 1e-4, "{loss_type:?} micro {micro}: kl");
            let d = w_part.iter().zip(&w_whole).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            // AdamW's first step is about lr * g / (|g| + eps): float rounding of near-zero
            // gradients moves a weight by up to ~1e-6 here, 0.1% of the 1e-3 step.
            assert!(d < 1e-5, "{loss_type:?} micro {micro}: weights differ by {d}");
        }
    }
}

#[test]
fn recomputed_layers_give_the_same_gradients() {
    recomputed_layers_match("qwen2vl-tiny");
}

/// Qwen2.5-VL: recomputed windowed and full-attention vision blocks (and SwiGLU LoRA targets).
#[test]
fn recomputed_qwen2_5_vl_layers_give_the_same_gradients() {
    recomputed_layers_match("qwen25vl-tiny");
}

fn recomputed_layers_match(fixture: &str) {
    let (ck, prompts) = setup_with(fixture);
    let ro = rollout(&ck.model, &ck.processor, &prompts, &rcfg(&ck), 4, 0).unwrap();
    // LoRA with dropout: the recomputation must redraw the forward's masks.
    let lora = rl::lora::LoraSettings {
        r: 2,
        alpha: 4.0,
        dropout: 0.3,
        target_modules: vec!["q_proj".into(), "down_proj".into(), "qkv".into()],
        vision: true,
        base_bf16: false,
    };
    for use_lora in [false, true] {
        let grads = |recompute: bool| {
            let mut p = if use_lora {
                Policy::new_lora(&ck.model, &lora, 7).unwrap()
            } else {
                Policy::new(&ck.model, false).unwrap()
            };
            if use_lora {
                // Non-zero B, so gradients reach A too.
                for (n, v) in &p.vars {
                    if n.ends_with("lora_B.weight") {
                        v.set(
                            &Tensor::ones(v.shape(), DType::F32, &candle_core::Device::Cpu)
                                .unwrap()
                                .affine(0.01, 0.0)
                                .unwrap(),
                        )
                        .unwrap();
                    }
                }
            }
            if recompute {
                p.enable_recompute();
            }
            p.set_dropout_seed(11, 0);
            let lp = completion_logprobs(&p.model, &ro.batch, &ro.completion_mask).unwrap();
            let g = p.backward(&lp.nll().unwrap()).unwrap();
            p.vars
                .iter()
                .map(|(n, v)| {
                    (n.clone(), g.get(v.as_tensor()).map(|t| t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
                })
                .collect::<Vec<_>>()
        };
        let (plain, again) = (grads(false), grads(true));
        let mut checked = 0;
        for ((n, a), (_, b)) in plain.iter().zip(&again) {
            let a = a.as_ref().unwrap_or_else(|| panic!("{n}: no gradient without recomputation"));
            let b = b.as_ref().unwrap_or_else(|| panic!("{n}: no gradient with recomputation (lora={use_lora})"));
            let scale = a.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-12);
            let d = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            assert!(d / scale < 1e-5, "{n}: gradients differ by {d} (max {scale}, lora={use_lora})");
            checked += 1;
        }
        assert!(checked >= if use_lora { 12 } else { 30 }, "{checked}");
    }
}
