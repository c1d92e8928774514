//! The losses TRL 1.16 added and its rollout-engine correction, against TRL's own `_compute_loss`
//! and `_generate_and_score_completions` (fixtures/trl_loss_reference_2026.json, 66 settings):
//! cispo, sapo, luspo, vespo, GSPO's sequence-level ratios, delta, the KL bias correction, the
//! off-policy sequence mask, the top-entropy mask, the entropy bonus and the four engine
//! importance-sampling modes. Loss, d loss / d log-probs (and / d entropies), the IS ratio and
//! every logged metric, to 1e-5.

use crate::common::{matrix, tensor};
use candle_core::{Device, Tensor, Var};
use rl::loss::{grpo_loss, LossConfig, LossInputs, LossType};
use rl::rollout_correction::{importance_sampling_ratio, CorrectionMode};
use serde_json::Value;

fn close(name: &str, what: &str, got: f64, want: f64) {
    assert!((got - want).abs() <= 1e-5 + 1e-5 * want.abs(), "{name}: {what} {got} vs TRL {want}");
}

fn opt(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn loss_type(s: &str) -> LossType {
    serde_json::from_value(Value::from(s)).unwrap()
}

#[test]
fn all_2026_settings_match_trl() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/trl_loss_reference_2026.json"))
            .unwrap();
    let r: Value = serde_json::from_str(&text).unwrap();
    let inp = &r["inputs"];
    let mask = tensor(&matrix(&inp["completion_mask"]));
    let cases = r["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 66);
    let mut checked_ratios = 0;
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let cf = &c["config"];
        let tr = &c["trainer"];
        let used = &c["inputs_used"];
        let input = |key: &Value| key.as_str().map(|k| tensor(&matrix(&inp[k])));
        let cfg = LossConfig {
            loss_type: loss_type(cf["loss_type"].as_str().unwrap()),
            beta: cf["beta"].as_f64().unwrap(),
            epsilon_low: tr["epsilon_low"].as_f64().unwrap(),
            epsilon_high: tr["epsilon_high"].as_f64().unwrap(),
            max_completion_length: cf["max_completion_length"].as_u64().unwrap() as usize,
            importance_sampling_level: serde_json::from_value(cf["importance_sampling_level"].clone()).unwrap(),
            delta: opt(&cf["delta"]),
            use_bias_correction_kl: cf["use_bias_correction_kl"].as_bool().unwrap(),
            off_policy_mask_threshold: opt(&cf["off_policy_mask_threshold"]),
            top_entropy_quantile: cf["top_entropy_quantile"].as_f64().unwrap(),
            sapo_temperature_pos: cf["sapo_temperature_pos"].as_f64().unwrap(),
            sapo_temperature_neg: cf["sapo_temperature_neg"].as_f64().unwrap(),
            vespo_k_pos: cf["vespo_k_pos"].as_f64().unwrap(),
            vespo_lambda_pos: cf["vespo_lambda_pos"].as_f64().unwrap(),
            vespo_k_neg: cf["vespo_k_neg"].as_f64().unwrap(),
            vespo_lambda_neg: cf["vespo_lambda_neg"].as_f64().unwrap(),
            entropy_coef: cf["entropy_coef"].as_f64().unwrap(),
        };
        let logps = Var::from_tensor(&tensor(&matrix(&inp["per_token_logps"]))).unwrap();
        let entropies = Var::from_tensor(&tensor(&matrix(&inp["entropies"]))).unwrap();
        let old = input(&used["old_per_token_logps"]);
        let sampling = input(&used["sampling_per_token_logps"]);
        let reference = input(&used["ref_per_token_logps"]);
        let adv: Vec<f32> = c["advantages"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
        let adv = Tensor::from_vec(adv.clone(), adv.len(), &Device::Cpu).unwrap();
        // The engine's correction, from the trainer's log-probs at rollout time (the current
        // policy's when mu = 1) and the engine's.
        let correct = cf["use_vllm"].as_bool().unwrap() && cf["vllm_importance_sampling_correction"].as_bool().unwrap();
        let ratio = if correct {
            let mode: CorrectionMode = serde_json::from_value(cf["vllm_importance_sampling_mode"].clone()).unwrap();
            let at_rollout = old.clone().unwrap_or_else(|| logps.as_tensor().detach());
            let (ratio, stats) = importance_sampling_ratio(
                &at_rollout,
                sampling.as_ref().unwrap(),
                &mask,
                mode,
                opt(&cf["vllm_importance_sampling_clip_min"]),
                opt(&cf["vllm_importance_sampling_clip_max"]),
            )
            .unwrap();
            let want = matrix(&c["importance_sampling_ratio"]);
            let got: Vec<Vec<f32>> = ratio.to_vec2().unwrap();
            assert_eq!((got.len(), got[0].len()), (want.len(), want[0].len()), "{name}: ratio shape");
            for (g, w) in got.iter().flatten().zip(want.iter().flatten()) {
                close(name, "IS ratio", *g as f64, *w as f64);
            }
            let m = &c["rollout_metrics"];
            close(
                name,
                "logp difference mean",
                stats.logp_difference_mean,
                m["sampling/sampling_logp_difference/mean"].as_f64().unwrap(),
            );
            close(
                name,
                "logp difference max",
                stats.logp_difference_max,
                m["sampling/sampling_logp_difference/max"].as_f64().unwrap(),
            );
            close(name, "IS ratio min", stats.ratio_min, m["sampling/importance_sampling_ratio/min"].as_f64().unwrap());
            close(
                name,
                "IS ratio mean",
                stats.ratio_mean,
                m["sampling/importance_sampling_ratio/mean"].as_f64().unwrap(),
            );
            close(name, "IS ratio max", stats.ratio_max, m["sampling/importance_sampling_ratio/max"].as_f64().unwrap());
            checked_ratios += 1;
            Some(ratio)
        } else {
            None
        };
        let out = grpo_loss(
            &cfg,
            &LossInputs {
                logps: logps.as_tensor(),
                old_logps: old.as_ref(),
                ref_logps: reference.as_ref(),
                advantages: &adv,
                mask: &mask,
                tokens_in_batch: used["num_items_in_batch"].as_f64().unwrap(),
                sampling_logps: sampling.as_ref(),
                is_ratio: ratio.as_ref(),
                entropies: Some(entropies.as_tensor()),
            },
        )
        .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        close(name, "loss", out.loss.to_scalar::<f32>().unwrap() as f64, c["loss"].as_f64().unwrap());
        let grads = out.loss.backward().unwrap();
        let g: Vec<Vec<f32>> = grads.get(logps.as_tensor()).unwrap().to_vec2().unwrap();
        for (i, (gr, wr)) in g.iter().zip(matrix(&c["grad_logps"])).enumerate() {
            for (j, (a, b)) in gr.iter().zip(wr).enumerate() {
                close(name, &format!("d loss / d logp[{i},{j}]"), *a as f64, b as f64);
            }
        }
        if !c["grad_entropies"].is_null() {
            let g: Vec<Vec<f32>> = grads.get(entropies.as_tensor()).unwrap().to_vec2().unwrap();
            for (a, b) in g.iter().flatten().zip(matrix(&c["grad_entropies"]).iter().flatten()) {
                close(name, "d loss / d entropy", *a as f64, *b as f64);
            }
        }
        let m = c["metrics"].as_object().unwrap();
        let ours = |k: &str| -> Option<f64> {
            match k {
                "kl" => out.kl,
                "entropy" => out.entropy,
                "clip_ratio/low_mean" => Some(out.clip_low_mean),
                "clip_ratio/high_mean" => Some(out.clip_high_mean),
                "clip_ratio/region_mean" => Some(out.clip_region_mean),
                "clip_ratio/low_min" => Some(out.clip_low_min),
                "clip_ratio/high_max" => Some(out.clip_high_max),
                "cispo_clip_ratio" => out.cispo_clip_ratio,
                "vespo/phi_seq_mean" => out.vespo_phi_seq_mean,
                "policy_loss" => Some(out.policy_loss),
                "entropy_coef" => Some(cfg.entropy_coef),
                _ => None,
            }
        };
        for (k, v) in m {
            let got = ours(k).unwrap_or_else(|| panic!("{name}: metric {k} not computed"));
            close(name, k, got, v.as_f64().unwrap());
        }
    }
    assert_eq!(checked_ratios, 22, "engine-correction cases");
}
