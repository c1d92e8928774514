//! Batched generation with a KV cache: one prefill over the left-padded prompts, then one token per
//! step for every unfinished row. Greedy or sampled (temperature, top-k, top-p, each row with its
//! own seeded generator so a run can be repeated); stops at the EOS ids or `max_new_tokens`.

use crate::error::Result;
use crate::generator::{Finish, Generator, SequenceSpec};
use crate::model::{Batch, Qwen2Vl};
pub use crate::sampling::{choose, Sampling};

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
    /// Per token, the log-probabilities of the watched tokens (see [`generate_watching`]).
    pub watched: Vec<Vec<f32>>,
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
    generate_watching(model, batch, opts, &[], on_token)
}

/// [`generate`], also recording at every step the log-probabilities of the `watch` tokens
/// (`Generated::watched`; evaluation reads the option letters' from it).
pub fn generate_watching(
    model: &Qwen2Vl,
    batch: &Batch,
    opts: &GenerateOptions,
    watch: &[u32],
    on_token: &mut dyn FnMut(usize, u32) -> bool,
) -> Result<Vec<Generated>> {
    let b = batch.rows();
    assert_eq!(opts.sampling.len(), b, "one Sampling per row");
    let mut out: Vec<Generated> =
        (0..b).map(|_| Generated { tokens: vec![], logprobs: vec![], stopped: false, watched: vec![] }).collect();
    if opts.max_new_tokens == 0 || b == 0 {
        return Ok(out);
    }
    let mut g = Generator::new(model, opts.eos_token_ids.clone(), opts.suppress_token_ids.clone());
    g.watch(watch.to_vec());
    let specs = opts
        .sampling
        .iter()
        .enumerate()
        .map(|(i, s)| SequenceSpec {
            id: i as u64,
            sampling: s.clone(),
            max_new_tokens: opts.max_new_tokens,
            ignore_eos: false,
            top_logprobs: 0,
        })
        .collect();
    g.admit(batch, specs)?;
    while !g.is_empty() {
        for e in g.step()? {
            let r = e.id as usize;
            out[r].tokens.push(e.token);
            out[r].logprobs.push(e.logprob);
            if !watch.is_empty() {
                out[r].watched.push(e.watched);
            }
            out[r].stopped = e.finish == Some(Finish::Eos);
            if !on_token(r, e.token) && e.finish.is_none() {
                g.cancel(e.id)?;
            }
        }
    }
    Ok(out)
}
