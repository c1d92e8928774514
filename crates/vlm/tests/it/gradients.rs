//! Gradients of every layer type against central finite differences, and proof that the
//! training path never reaches one of candle's gradient-dropping fused kernels.
//!
//! For each op f and each input x_i we compare the analytic directional derivative
//! <dL/dx_i, v> with (L(x_i + h v) - L(x_i - h v)) / 2h, where L = sum(f(x) * R) for a fixed
//! random R and a random direction v.

use crate::common;

use candle_core::{DType, Device, Result, Tensor, Var};
use vlm::ops;

fn randn(shape: &[usize], seed: u64) -> Tensor {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn dot(a: &Tensor, b: &Tensor) -> f64 {
    a.to_dtype(DType::F64)
        .unwrap()
        .mul(&b.to_dtype(DType::F64).unwrap())
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

/// Checks every input's gradient; `needs` says which inputs must receive one.
fn check(name: &str, inputs: &[Tensor], f: impl Fn(&[Tensor]) -> Result<Tensor>) {
    let vars: Vec<Var> = inputs.iter().map(|t| Var::from_tensor(t).unwrap()).collect();
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let out = f(&ts).unwrap();
    let r = randn(out.dims(), 999);
    let loss = out.mul(&r).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    let eval = |xs: &[Tensor]| -> f64 {
        // Perturbed inputs are Vars too, so the forward takes the same (differentiable) path.
        let vs: Vec<Tensor> = xs.iter().map(|t| Var::from_tensor(t).unwrap().as_tensor().clone()).collect();
        dot(&f(&vs).unwrap(), &r)
    };
    for (i, v) in ts.iter().enumerate() {
        let g = grads.get(v).unwrap_or_else(|| panic!("{name}: input {i} got no gradient"));
        let dir = randn(v.dims(), 100 + i as u64);
        let analytic = dot(g, &dir);
        let h = 1e-2;
        let mut plus = inputs.to_vec();
        let mut minus = inputs.to_vec();
        plus[i] = (&inputs[i] + (&dir * h).unwrap()).unwrap();
        minus[i] = (&inputs[i] - (&dir * h).unwrap()).unwrap();
        let numeric = (eval(&plus) - eval(&minus)) / (2.0 * h);
        let err = (analytic - numeric).abs() / numeric.abs().max(analytic.abs()).max(1e-3);
        assert!(err < 2e-2, "{name}: input {i}: analytic {analytic} vs numeric {numeric} (rel {err})");
        assert!(analytic.abs() > 1e-6, "{name}: input {i}: gradient is zero");
    }
}

#[test]
fn rms_norm_gradients() {
    check("rms_norm", &[randn(&[3, 5, 16], 1), (randn(&[16], 2) + 1.5).unwrap()], |x| {
        ops::rms_norm(&x[0], &x[1], 1e-6)
    });
}

#[test]
fn layer_norm_gradients() {
    check("layer_norm", &[randn(&[7, 12], 3), (randn(&[12], 4) + 1.0).unwrap(), randn(&[12], 5)], |x| {
        ops::layer_norm(&x[0], &x[1], &x[2], 1e-6)
    });
}

#[test]
fn softmax_gradients() {
    check("softmax", &[(randn(&[2, 3, 9], 6) * 3.0).unwrap()], |x| ops::softmax_last_dim(&x[0]));
    // Rows longer than the 8-wide vector loop, with masked (-1e9) positions as in attention.
    let mask: Vec<f32> = (0..2 * 37).map(|i| if i % 37 > 30 { -1e9 } else { 0.0 }).collect();
    let mask = Tensor::from_vec(mask, (2, 1, 37), &Device::Cpu).unwrap();
    check("masked softmax", &[(randn(&[2, 4, 37], 7) * 3.0).unwrap()], |x| {
        ops::softmax_last_dim(&x[0].broadcast_add(&mask)?)
    });
}

#[test]
fn attention_softmax_gradients() {
    // [B=2, H=3, L=4, T=11] scores; causal-style mask per batch row, shared by the heads.
    let mask: Vec<f32> =
        (0..2 * 4 * 11).map(|i| if (i % 11) > 7 + (i / 11) % 4 - (i / 44) * 2 { -1e30 } else { 0.0 }).collect();
    let mask = Tensor::from_vec(mask, (2, 4, 11), &Device::Cpu).unwrap();
    check("attention softmax", &[(randn(&[2, 3, 4, 11], 10) * 3.0).unwrap()], |x| {
        ops::attention_softmax(&x[0], &mask, 0.35)
    });
    // Equal to the composition it replaces: softmax(scale * x + mask broadcast over heads).
    let x = (randn(&[2, 3, 4, 11], 11) * 3.0).unwrap();
    let fused = ops::attention_softmax(&x, &mask, 0.35).unwrap();
    let composed = candle_nn::ops::softmax(
        &(&x * 0.35).unwrap().broadcast_add(&mask.unsqueeze(1).unwrap()).unwrap(),
        candle_core::D::Minus1,
    )
    .unwrap();
    assert!(common::rel_err(&common::f32s(&fused), &common::f32s(&composed), |_| true) < 1e-6);
    // Masked keys get exactly zero probability.
    let m = common::f32s(&mask.unsqueeze(1).unwrap().broadcast_as((2, 3, 4, 11)).unwrap().contiguous().unwrap());
    assert!(common::f32s(&fused).iter().zip(&m).all(|(p, m)| *m == 0.0 || *p == 0.0));
}

#[test]
fn fused_softmax_backward_equals_candles_composition() {
    let x = (randn(&[3, 5, 70], 8) * 4.0).unwrap();
    let r = randn(&[3, 5, 70], 9);
    let grad_of = |f: &dyn Fn(&Tensor) -> Result<Tensor>| {
        let v = Var::from_tensor(&x).unwrap();
        let y = f(v.as_tensor()).unwrap();
        let g = y.mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
        (common::f32s(&y), common::f32s(g.get(v.as_tensor()).unwrap()))
    };
    let (y1, g1) = grad_of(&|t| ops::softmax_last_dim(t));
    let (y2, g2) = grad_of(&|t| candle_nn::ops::softmax(t, candle_core::D::Minus1));
    assert!(common::rel_err(&y1, &y2, |_| true) < 1e-6);
    assert!(common::rel_err(&g1, &g2, |_| true) < 1e-5, "{}", common::rel_err(&g1, &g2, |_| true));
}

#[test]
fn rotary_gradients() {
    let cos = randn(&[2, 5, 4], 7).cos().unwrap();
    let sin = randn(&[2, 5, 4], 7).sin().unwrap();
    check("rotary", &[randn(&[2, 3, 5, 8], 8)], move |x| ops::apply_rotary(&x[0], &cos, &sin));
}

#[test]
fn activation_gradients() {
    check("quick_gelu", &[(randn(&[4, 10], 9) * 3.0).unwrap()], |x| ops::quick_gelu(&x[0]));
    check("gelu_erf", &[(randn(&[4, 10], 10) * 3.0).unwrap()], |x| x[0].gelu_erf());
    check("silu", &[(randn(&[4, 10], 11) * 3.0).unwrap()], |x| x[0].silu());
}

#[test]
fn linear_gradients() {
    use candle_core::Module;
    check("linear", &[randn(&[2, 3, 6], 12), randn(&[5, 6], 13), randn(&[5], 14)], |x| {
        vlm::linear::Linear::new(x[1].clone(), Some(x[2].clone())).forward(&x[0])
    });
}

#[test]
fn frozen_linear_gives_input_gradient_only() {
    use candle_core::Module;
    let w = randn(&[5, 6], 15); // a plain tensor: frozen
    let b = randn(&[5], 16);
    let (w2, b2) = (w.clone(), b.clone());
    check("frozen linear", &[randn(&[2, 3, 6], 17)], move |x| {
        vlm::linear::Linear::new(w2.clone(), Some(b2.clone())).forward(&x[0])
    });
    // The same with the weight stored transposed for inference (as Checkpoint::open does).
    let (w3, b3) = (w.clone(), randn(&[5], 16));
    check("frozen transposed linear", &[randn(&[2, 3, 6], 19)], move |x| {
        let mut l = vlm::linear::Linear::new(w3.clone(), Some(b3.clone()));
        l.prepare_dense_f32()?;
        assert!(l.kernel.transposed());
        l.forward(&x[0])
    });
    // The frozen weight gets no gradient stored at all.
    let x = Var::from_tensor(&randn(&[4, 6], 18)).unwrap();
    let y = vlm::linear::Linear::new(w.clone(), Some(b)).forward(x.as_tensor()).unwrap();
    let g = y.sum_all().unwrap().backward().unwrap();
    assert!(g.get(&w).is_none(), "a frozen weight must not receive a gradient");
    assert!(g.get(x.as_tensor()).is_some());
}

#[test]
fn fused_kernels_are_unreachable_with_gradients() {
    // With a Var upstream, each op must deliver a gradient to the weight (a fused candle kernel
    // would silently deliver none).
    let w = Var::from_tensor(&(randn(&[8], 19) + 1.0).unwrap()).unwrap();
    let b = Var::from_tensor(&randn(&[8], 20)).unwrap();
    let x = Var::from_tensor(&randn(&[3, 8], 21)).unwrap();
    let y = ops::rms_norm(x.as_tensor(), w.as_tensor(), 1e-6).unwrap();
    let y = ops::layer_norm(&y, w.as_tensor(), b.as_tensor(), 1e-6).unwrap();
    let y = ops::softmax_last_dim(&y).unwrap();
    let cos = Tensor::ones((1, 3, 4), DType::F32, &Device::Cpu).unwrap();
    let sin = Tensor::ones((1, 3, 4), DType::F32, &Device::Cpu).unwrap();
    let y = ops::apply_rotary(&y.unsqueeze(0).unwrap().unsqueeze(0).unwrap(), &cos, &sin).unwrap();
    let g = (y.sqr().unwrap().sum_all().unwrap()).backward().unwrap();
    for (n, v) in [("weight", &w), ("bias", &b), ("input", &x)] {
        let gv = g.get(v.as_tensor()).unwrap_or_else(|| panic!("{n}: no gradient"));
        assert!(gv.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() > 0.0, "{n}: zero gradient");
    }
    // Without Vars the fused kernels run and agree with the differentiable forms.
    let xs = randn(&[3, 8], 22);
    let ws = (randn(&[8], 23) + 1.0).unwrap();
    let fused = ops::rms_norm(&xs, &ws, 1e-6).unwrap();
    let slow = ops::rms_norm(&Var::from_tensor(&xs).unwrap().as_tensor().clone(), &ws, 1e-6).unwrap();
    assert!(common::rel_err(&common::f32s(&fused), &common::f32s(&slow), |_| true) < 1e-6);
}

#[test]
fn whole_model_gradients_reach_every_parameter_and_match_finite_differences() {
    whole_model_gradients(&common::fixtures());
}

/// The same for Qwen2.5-VL: RMSNorms without bias, SwiGLU MLPs with biases, windowed and
/// full-attention blocks, and the window permutation and its reverse.
#[test]
fn qwen2_5_vl_gradients_reach_every_parameter_and_match_finite_differences() {
    whole_model_gradients(&common::fixtures_qwen25());
}

fn whole_model_gradients(root: &std::path::Path) {
    use vlm::dump::{trainable_copy, CaseRequest};
    let ck = vlm::Checkpoint::open(&root.join("model"), DType::F32).unwrap();
    let (json, _) = common::load_case_in(root, "completion_batch");
    let req = CaseRequest::from_json(&json, std::path::Path::new("x")).unwrap();
    let prompts: Vec<_> =
        req.conversations.iter().map(|m| ck.processor.prompt(m, &root.join("images")).unwrap()).collect();
    let enc = ck.processor.encode(&prompts, req.completions.as_deref(), &Device::Cpu).unwrap();
    let cm = enc.completion_mask.clone().unwrap();
    let (model, vars) = trainable_copy(&ck.model).unwrap();
    let loss = vlm::logprob::completion_logprobs(&model, &enc.batch, &cm).unwrap().nll().unwrap();
    let grads = loss.backward().unwrap();
    // Every parameter of every layer type gets a non-zero gradient.
    for (name, v) in &vars {
        let g = grads.get(v.as_tensor()).unwrap_or_else(|| panic!("{name}: no gradient"));
        let s = g.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(s > 0.0, "{name}: zero gradient");
    }
    // Directional derivative along a random direction in the space of all parameters.
    let dirs: Vec<Tensor> = vars.iter().enumerate().map(|(i, (_, v))| randn(v.dims(), 500 + i as u64)).collect();
    let analytic: f64 = vars.iter().zip(&dirs).map(|((_, v), d)| dot(grads.get(v.as_tensor()).unwrap(), d)).sum();
    let eval = |sign: f64, h: f64| -> f64 {
        let map: std::collections::HashMap<String, Tensor> = vars
            .iter()
            .zip(&dirs)
            .map(|((n, v), d)| (n.clone(), (v.as_tensor().detach() + (d * (sign * h)).unwrap()).unwrap()))
            .collect();
        let m = vlm::Qwen2Vl::load(&ck.config, &vlm::params::MapParams(&map)).unwrap();
        vlm::logprob::completion_logprobs(&m, &enc.batch, &cm).unwrap().nll().unwrap().to_scalar::<f32>().unwrap()
            as f64
    };
    let h = 1e-3;
    let numeric = (eval(1.0, h) - eval(-1.0, h)) / (2.0 * h);
    let err = (analytic - numeric).abs() / numeric.abs();
    assert!(err < 2e-2, "whole model: analytic {analytic} vs numeric {numeric} (rel {err})");
}

/// The Qwen2.5-VL vision tower on its own, against finite differences: the pixels and, one of each
/// new kind, an RMSNorm weight, the SwiGLU's gate weight and up bias, a windowed block's qkv and a
/// full-attention block's down_proj, over two images whose windows are permuted (a 3x3 merged
/// grid: windows of 4, 2, 2 and 1 merged tokens) and one that keeps raster order.
#[test]
fn qwen2_5_vl_vision_tower_gradients() {
    use vlm::params::{MapParams, Params, RandomParams};
    use vlm::vision::VisionTower;
    let cfg = vlm::shapes::Shape::TinyQwen2_5Vl.config().unwrap().vision;
    let random = RandomParams::new(DType::F32, Device::Cpu, 0.3, 5);
    let tower = VisionTower::load(Params::new(&random), &cfg).unwrap();
    let mut walk = vlm::linear::ParamWalk::default();
    tower.push_params(&mut walk).unwrap();
    let base: std::collections::HashMap<String, Tensor> = walk.tensors.into_iter().collect();
    let names = [
        "visual.blocks.0.norm1.weight",
        "visual.blocks.0.mlp.gate_proj.weight",
        "visual.blocks.0.mlp.up_proj.bias",
        "visual.blocks.2.attn.qkv.weight",
        "visual.blocks.3.mlp.down_proj.weight",
        "visual.merger.ln_q.weight",
    ];
    let grids = [[1usize, 6, 6], [1, 4, 2]];
    let n: usize = grids.iter().map(|g| g.iter().product::<usize>()).sum();
    let mut inputs = vec![randn(&[n, cfg.patch_dim()], 40)];
    inputs.extend(names.iter().map(|k| base[*k].clone()));
    check("qwen2.5-vl vision tower", &inputs, |x| {
        let mut map = base.clone();
        for (k, t) in names.iter().zip(&x[1..]) {
            map.insert(k.to_string(), t.clone());
        }
        let t = VisionTower::load(Params::new(&MapParams(&map)), &cfg).map_err(candle_core::Error::wrap)?;
        t.forward(&x[0], &grids)
    });
}
