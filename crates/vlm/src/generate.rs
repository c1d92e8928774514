//! Batched generation with a KV cache: one prefill over the left-padded prompts, then one token per
//! step for every unfinished row. Greedy or sampled (temperature, top-k, top-p, each row with its
//! own seeded generator so a run can be repeated); stops at the EOS ids or `max_new_tokens`.

use crate::error::Result;
use crate::generator::{Finish, Generator, SequenceSpec};
use crate::model::{Batch, Qwen2Vl};
use rand::Rng;

/// How one row picks its tokens.
#[derive(Debug, Clone)]
pub struct Sampling {
    /// 0 means greedy (argmax).
    pub temperature: f64,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
    pub seed: u64,
}

impl Sampling {
    pub fn greedy() -> Self {
        Sampling { temperature: 0.0, top_k: None, top_p: None, seed: 0 }
    }
}

#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    /// Generation stops for a row when it emits one of these (the EOS token is kept in `tokens`).
    pub eos_token_ids: Vec<u32>,
    /// Tokens never chosen (e.g. the vision placeholders; see `Qwen2VlConfig::vision_token_ids`).
    pub suppress_token_ids: Vec<u32>,
    /// One per batch row.
    pub sampling: Vec<Sampling>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    pub tokens: Vec<u32>,
    /// log p(token) under the distribution it was drawn from (temperature applied, before top-k /
    /// top-p truncation, as TRL scores rollouts); the plain log-softmax for greedy rows.
    pub logprobs: Vec<f32>,
    /// True when the row ended with an EOS token rather than at `max_new_tokens`.
    pub stopped: bool,
}

/// Chooses a token from one row's logits; returns it and its log-probability.
pub fn choose(logits: &[f32], s: &Sampling, suppress: &[u32], rng: &mut rand::rngs::StdRng) -> (u32, f32) {
    let mut l: Vec<f32> = logits.to_vec();
    for &t in suppress {
        if (t as usize) < l.len() {
            l[t as usize] = f32::NEG_INFINITY;
        }
    }
    let t = if s.temperature > 0.0 { s.temperature as f32 } else { 1.0 };
    for v in &mut l {
        *v /= t;
    }
    let max = l.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let lse = max + l.iter().map(|v| (v - max).exp()).sum::<f32>().ln();
    if s.temperature <= 0.0 {
        // First maximum, as torch.argmax.
        let mut best = 0;
        for (i, &v) in l.iter().enumerate() {
            if v > l[best] {
                best = i;
            }
        }
        return (best as u32, l[best] - lse);
    }
    let mut order: Vec<usize> = (0..l.len()).filter(|&i| l[i].is_finite()).collect();
    order.sort_by(|&a, &b| l[b].partial_cmp(&l[a]).unwrap().then(a.cmp(&b)));
    if let Some(k) = s.top_k {
        if k > 0 {
            order.truncate(k.max(1));
        }
    }
    let probs: Vec<f32> = order.iter().map(|&i| (l[i] - max).exp()).collect();
    let z: f32 = probs.iter().sum();
    let mut keep = probs.len();
    if let Some(p) = s.top_p {
        if p < 1.0 {
            // The smallest set of most likely tokens whose probability reaches top_p.
            let mut acc = 0.0;
            for (i, q) in probs.iter().enumerate() {
                acc += q / z;
                if acc >= p as f32 {
                    keep = i + 1;
                    break;
                }
            }
        }
    }
    let z2: f32 = probs[..keep].iter().sum();
    let mut u: f32 = rng.random::<f32>() * z2;
    let mut pick = order[keep - 1];
    for (i, q) in probs[..keep].iter().enumerate() {
        if u < *q {
            pick = order[i];
            break;
        }
        u -= q;
    }
    (pick as u32, l[pick] - lse)
}

/// Generates for every row of `batch`. `on_token(row, token)` is called as tokens are chosen
/// (for streaming); return `false` from it to stop that row (e.g. a client went away). Rows that
/// finish leave the batch, so the others run without them.
pub fn generate(
    model: &Qwen2Vl,
    batch: &Batch,
    opts: &GenerateOptions,
    on_token: &mut dyn FnMut(usize, u32) -> bool,
) -> Result<Vec<Generated>> {
    let b = batch.rows();
    assert_eq!(opts.sampling.len(), b, "one Sampling per row");
    let mut out: Vec<Generated> =
        (0..b).map(|_| Generated { tokens: vec![], logprobs: vec![], stopped: false }).collect();
    if opts.max_new_tokens == 0 || b == 0 {
        return Ok(out);
    }
    let mut g = Generator::new(model, opts.eos_token_ids.clone(), opts.suppress_token_ids.clone());
    let specs = opts
        .sampling
        .iter()
        .enumerate()
        .map(|(i, s)| SequenceSpec {
            id: i as u64,
            sampling: s.clone(),
            max_new_tokens: opts.max_new_tokens,
            ignore_eos: false,
        })
        .collect();
    g.admit(batch, specs)?;
    while !g.is_empty() {
        for e in g.step()? {
            let r = e.id as usize;
            out[r].tokens.push(e.token);
            out[r].logprobs.push(e.logprob);
            out[r].stopped = e.finish == Some(Finish::Eos);
            if !on_token(r, e.token) && e.finish.is_none() {
                g.cancel(e.id)?;
            }
        }
    }
    Ok(out)
}
