//! `medr1 dump`: runs one request in the oracle's case format and returns the tensors the oracle
//! stores, with the oracle's names, shapes and dtypes, so parity can be checked by anyone.
//!
//! Request: `conversations` (one or more message lists), optional `completion` (for every row) or
//! `completions` (one per row) appended verbatim after the generation prompt, optional `generate`
//! (that many greedy tokens, EOS ignored).

use crate::checkpoint::Checkpoint;
use crate::error::{Result, VlmError};
use crate::generate::{generate, GenerateOptions, Sampling};
use crate::logprob::completion_logprobs;
use crate::model::Qwen2Vl;
use crate::params::MapParams;
use candle_core::{DType, Device, Tensor, Var};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

pub struct CaseRequest {
    pub conversations: Vec<Value>,
    pub completions: Option<Vec<String>>,
    pub generate: Option<usize>,
}

impl CaseRequest {
    pub fn from_json(v: &Value, file: &Path) -> Result<Self> {
        let convs = v
            .get("conversations")
            .and_then(|c| c.as_array())
            .ok_or_else(|| VlmError::MissingKey { file: file.into(), key: "conversations".into() })?
            .clone();
        if convs.is_empty() {
            return Err(VlmError::BadKey { file: file.into(), key: "conversations".into(), msg: "is empty".into() });
        }
        let completions = match (v.get("completions"), v.get("completion")) {
            (Some(Value::Array(a)), _) => {
                let c: Vec<String> = a.iter().map(|x| x.as_str().unwrap_or("").to_string()).collect();
                if c.len() != convs.len() {
                    return Err(VlmError::BadKey {
                        file: file.into(),
                        key: "completions".into(),
                        msg: format!("has {} entries for {} conversations", c.len(), convs.len()),
                    });
                }
                Some(c)
            }
            (_, Some(Value::String(s))) => Some(vec![s.clone(); convs.len()]),
            _ => None,
        };
        let generate = v.get("generate").and_then(|g| g.as_u64()).map(|g| g as usize);
        Ok(CaseRequest { conversations: convs, completions, generate })
    }
}

fn i64_2d(rows: &[Vec<u32>], dev: &Device) -> Result<Tensor> {
    let (b, l) = (rows.len(), rows.first().map_or(0, |r| r.len()));
    let v: Vec<i64> = rows.iter().flatten().map(|&x| x as i64).collect();
    Ok(Tensor::from_vec(v, (b, l), dev)?)
}

/// A copy of the model whose every parameter is a fresh `Var`, for gradients.
pub fn trainable_copy(model: &Qwen2Vl) -> Result<(Qwen2Vl, Vec<(String, Var)>)> {
    let mut map = HashMap::new();
    let mut vars = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (name, t) in &model.params() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let v = Var::from_tensor(&t.to_dtype(DType::F32)?)?;
        map.insert(name.clone(), v.as_tensor().clone());
        vars.push((name.clone(), v));
    }
    let m = Qwen2Vl::load(&model.cfg, &MapParams(&map))?;
    Ok((m, vars))
}

/// Runs the request; returns tensors by oracle name.
pub fn run_case(
    ck: &Checkpoint,
    req: &CaseRequest,
    image_root: &Path,
    grads: bool,
) -> Result<BTreeMap<String, Tensor>> {
    let dev = ck.model.device().clone();
    let prompts = req.conversations.iter().map(|m| ck.processor.prompt(m, image_root)).collect::<Result<Vec<_>>>()?;
    let enc = ck.processor.encode(&prompts, req.completions.as_deref(), &dev)?;
    let batch = &enc.batch;
    let mut out = BTreeMap::new();
    out.insert("input_ids".to_string(), i64_2d(&batch.input_ids, &dev)?);
    out.insert("attention_mask".to_string(), i64_2d(&batch.attention_mask, &dev)?);
    if let Some(px) = &batch.pixel_values {
        out.insert("pixel_values".into(), px.clone());
        let g: Vec<i64> = batch.image_grid_thw.iter().flatten().map(|&x| x as i64).collect();
        out.insert("image_grid_thw".into(), Tensor::from_vec(g, (batch.image_grid_thw.len(), 3), &dev)?);
        // The vision tower's output: the rows that replace the `<|image_pad|>` embeddings.
        out.insert("image_embeds".into(), ck.model.visual.forward(px, &batch.image_grid_thw)?);
    }
    let ri = ck.model.rope_index(batch)?;
    let (b, l) = (batch.rows(), batch.len());
    let pos: Vec<i64> = ri.position_ids.iter().flatten().flatten().copied().collect();
    out.insert("position_ids".into(), Tensor::from_vec(pos, (3, b, l), &dev)?);
    out.insert("rope_deltas".into(), Tensor::from_vec(ri.rope_deltas.clone(), (b, 1), &dev)?);
    match &enc.completion_mask {
        None => {
            let (logits, _) = ck.model.forward(batch, None)?;
            out.insert("logits".into(), logits);
        }
        Some(cm) => {
            out.insert("completion_mask".into(), i64_2d(cm, &dev)?);
            let (model, vars) = if grads {
                let (m, v) = trainable_copy(&ck.model)?;
                (Some(m), v)
            } else {
                (None, vec![])
            };
            let m = model.as_ref().unwrap_or(&ck.model);
            let s = completion_logprobs(m, batch, cm)?;
            let loss = s.nll()?;
            let lp = s.logprobs.mul(&s.mask)?.detach();
            let full = Tensor::cat(&[&Tensor::zeros((b, s.start), DType::F32, &dev)?, &lp], 1)?;
            out.insert("completion_logprobs".into(), full);
            out.insert("loss".into(), loss.detach().reshape(1)?);
            if grads {
                let g = loss.backward()?;
                for (name, v) in &vars {
                    let grad = match g.get(v.as_tensor()) {
                        Some(t) => t.clone(),
                        None => v.as_tensor().zeros_like()?,
                    };
                    out.insert(format!("grad.{}", ck.layout.stored_name(name)), grad);
                }
            }
        }
    }
    if let Some(n) = req.generate {
        let opts = GenerateOptions {
            max_new_tokens: n,
            eos_token_ids: vec![],
            suppress_token_ids: vec![],
            sampling: vec![Sampling::greedy(); b],
        };
        let gen = generate(&ck.model, batch, &opts, &mut |_, _| true)?;
        let v: Vec<i64> = gen.iter().flat_map(|g| g.tokens.iter().map(|&t| t as i64)).collect();
        out.insert("generated_ids".into(), Tensor::from_vec(v, (b, n), &dev)?);
    }
    Ok(out)
}
