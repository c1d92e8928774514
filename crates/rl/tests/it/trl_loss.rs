//! Every loss variant and advantage mode against TRL 1.16's own `_compute_loss`
//! (fixtures/trl_loss_reference.json): advantages, loss, d loss / d log-probs, KL and clip
//! statistics, to 1e-5.

use crate::common::{matrix, tensor};
use candle_core::{Device, Tensor, Var};
use rl::advantages::{advantages, ScaleRewards};
use rl::loss::{grpo_loss, LossConfig, LossInputs, LossType};
use serde_json::Value;

#[test]
fn all_settings_match_trl() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/trl_loss_reference.json"))
        .unwrap();
    let r: Value = serde_json::from_str(&text).unwrap();
    let inp = &r["inputs"];
    let g = r["shape"]["G"].as_u64().unwrap() as usize;
    let rewards: Vec<f32> = inp["rewards"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    let mask = tensor(&matrix(&inp["completion_mask"]));
    let logps = matrix(&inp["per_token_logps"]);
    let old = tensor(&matrix(&inp["old_per_token_logps"]));
    let reference = tensor(&matrix(&inp["ref_per_token_logps"]));
    let tokens = mask.sum_all().unwrap().to_scalar::<f32>().unwrap() as f64;
    let cases = r["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 24);
    for c in cases {
        let name =
            format!("{} beta={} old={} scale={}", c["loss_type"], c["beta"], c["old_logps_given"], c["scale_rewards"]);
        let scale = match c["scale_rewards"].as_str().unwrap() {
            "group" => ScaleRewards::Group,
            "batch" => ScaleRewards::Batch,
            _ => ScaleRewards::None,
        };
        let adv = advantages(&rewards, g, scale);
        let want_adv: Vec<f32> =
            c["advantages"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
        for (a, b) in adv.iter().zip(&want_adv) {
            assert!((a - b).abs() < 1e-5, "{name}: advantages {adv:?} vs {want_adv:?}");
        }
        let cfg = LossConfig {
            loss_type: match c["loss_type"].as_str().unwrap() {
                "grpo" => LossType::Grpo,
                "bnpo" => LossType::Bnpo,
                "dapo" => LossType::Dapo,
                _ => LossType::DrGrpo,
            },
            beta: c["beta"].as_f64().unwrap(),
            epsilon_low: c["epsilon_low"].as_f64().unwrap(),
            epsilon_high: c["epsilon_high"].as_f64().unwrap(),
            max_completion_length: c["max_completion_length"].as_u64().unwrap() as usize,
            ..Default::default()
        };
        let var = Var::from_tensor(&tensor(&logps)).unwrap();
        let adv_t = Tensor::from_vec(adv.clone(), adv.len(), &Device::Cpu).unwrap();
        let use_old = c["old_logps_given"].as_bool().unwrap();
        let out = grpo_loss(
            &cfg,
            &LossInputs {
                logps: var.as_tensor(),
                old_logps: use_old.then_some(&old),
                ref_logps: Some(&reference),
                advantages: &adv_t,
                mask: &mask,
                tokens_in_batch: tokens,
                sampling_logps: None,
                is_ratio: None,
                entropies: None,
            },
        )
        .unwrap();
        let loss = out.loss.to_scalar::<f32>().unwrap() as f64;
        let want = c["loss"].as_f64().unwrap();
        assert!((loss - want).abs() < 1e-5, "{name}: loss {loss} vs {want}");
        let grads = out.loss.backward().unwrap();
        let grad = grads.get(var.as_tensor()).unwrap().to_vec2::<f32>().unwrap();
        let want_grad = matrix(&c["grad_logps"]);
        let worst =
            grad.iter().flatten().zip(want_grad.iter().flatten()).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "{name}: gradient differs by {worst}");
        let m = &c["metrics"];
        match (out.kl, m.get("kl")) {
            (Some(k), Some(w)) => assert!((k - w.as_f64().unwrap()).abs() < 1e-5, "{name}: kl {k} vs {w}"),
            (None, None) => {}
            (a, b) => panic!("{name}: kl {a:?} vs {b:?}"),
        }
        for (got, key) in [
            (out.clip_low_mean, "clip_ratio/low_mean"),
            (out.clip_low_min, "clip_ratio/low_min"),
            (out.clip_high_mean, "clip_ratio/high_mean"),
            (out.clip_high_max, "clip_ratio/high_max"),
            (out.clip_region_mean, "clip_ratio/region_mean"),
        ] {
            let w = m[key].as_f64().unwrap();
            assert!((got - w).abs() < 1e-5, "{name}: {key} {got} vs {w}");
        }
    }
}
