//! Continuous batching: sequences join a running batch (their prompts prefilled together, their
//! KV caches left-padded to the batch's length and appended), step one token at a time with
//! everyone else, and leave as soon as they finish or are cancelled, so a finished or abandoned
//! sequence costs nothing further. `generate` (one batch, start to end) and the HTTP server
//! (requests arriving at any time) both decode through this.

use crate::error::Result;
use crate::model::{Batch, ChunkedPrefill, Qwen2Vl};
use crate::sampling::{choose, top_logprobs, Sampling};
use crate::text::KvCache;
use candle_core::DType;
use rand::SeedableRng;

/// A sequence to add: its caller-chosen id, how it samples, and its token budget.
#[derive(Debug, Clone)]
pub struct SequenceSpec {
    pub id: u64,
    pub sampling: Sampling,
    pub max_new_tokens: usize,
    /// Keep going past EOS tokens until `max_new_tokens` (vLLM's `ignore_eos`; load tests).
    pub ignore_eos: bool,
    /// Report this many most likely tokens with every event (OpenAI's `top_logprobs`; 0 = none).
    pub top_logprobs: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// Emitted an EOS token (included in the output).
    Eos,
    /// Reached its `max_new_tokens`.
    Length,
}

/// One chosen token.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: u64,
    pub token: u32,
    pub logprob: f32,
    /// Set on the sequence's last token; it has then left the batch.
    pub finish: Option<Finish>,
    /// The log-probabilities (plain log-softmax of the logits, before temperature or
    /// suppression) of the tokens given to [`Generator::watch`], in that order; empty otherwise.
    /// Evaluation reads the option letters' probabilities at the answer position from these.
    pub watched: Vec<f32>,
    /// The sequence's `top_logprobs` most likely tokens and their log-probabilities, from the
    /// distribution `logprob` is taken from; empty when none were asked for.
    pub top: Vec<(u32, f32)>,
}

/// log_softmax(logits)[t] for each watched token t (none when nothing is watched).
fn watched_logprobs(logits: &[f32], tokens: &[u32]) -> Vec<f32> {
    if tokens.is_empty() {
        return Vec::new();
    }
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let lse = max + logits.iter().map(|v| (v - max).exp()).sum::<f32>().ln();
    tokens.iter().map(|&t| logits.get(t as usize).map_or(f32::NEG_INFINITY, |l| l - lse)).collect()
}

struct Row {
    id: u64,
    sampling: Sampling,
    rng: rand::rngs::StdRng,
    max_new_tokens: usize,
    ignore_eos: bool,
    top_logprobs: usize,
    generated: usize,
    /// Next-token logits, when computed; None while the last chosen token awaits its decode.
    logits: Option<Vec<f32>>,
    last: u32,
}

pub struct Generator<'m> {
    model: &'m Qwen2Vl,
    eos_token_ids: Vec<u32>,
    suppress_token_ids: Vec<u32>,
    /// Tokens whose log-probabilities every event reports (see [`Event::watched`]).
    watch_token_ids: Vec<u32>,
    cache: KvCache,
    /// Real (1) / padding (0) keys over the cache, per row.
    key_mask: Vec<Vec<u32>>,
    rope_deltas: Vec<i64>,
    rows: Vec<Row>,
    /// A long prompt being prefilled a chunk per [`Generator::step`], and the sequences it starts.
    pending: Option<Pending>,
}

struct Pending {
    prefill: ChunkedPrefill,
    specs: Vec<SequenceSpec>,
    chunk: usize,
}

impl<'m> Generator<'m> {
    pub fn new(model: &'m Qwen2Vl, eos_token_ids: Vec<u32>, suppress_token_ids: Vec<u32>) -> Self {
        Generator {
            model,
            eos_token_ids,
            suppress_token_ids,
            watch_token_ids: vec![],
            cache: KvCache::new(model.cfg.text.num_hidden_layers),
            key_mask: vec![],
            rope_deltas: vec![],
            rows: vec![],
            pending: None,
        }
    }

    /// Sequences in the batch, those of a chunked prefill under way included.
    pub fn len(&self) -> usize {
        self.rows.len() + self.pending.as_ref().map_or(0, |p| p.specs.len())
    }

    /// Nothing running and nothing being prefilled.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.pending.is_none()
    }

    /// Whether a chunked prefill is under way (see [`Generator::admit_chunked`]).
    pub fn prefilling(&self) -> bool {
        self.pending.is_some()
    }

    pub fn ids(&self) -> Vec<u64> {
        self.rows.iter().map(|r| r.id).collect()
    }

    /// Key positions in the cache (the longest sequence's length).
    pub fn cache_len(&self) -> usize {
        self.cache.len()
    }

    /// Prefills `batch` (one row per spec, in order) and adds its sequences to the batch.
    pub fn admit(&mut self, batch: &Batch, specs: Vec<SequenceSpec>) -> Result<()> {
        assert_eq!(batch.rows(), specs.len(), "one SequenceSpec per batch row");
        if specs.is_empty() {
            return Ok(());
        }
        // Everyone already here gets their next logits first, so all rows are in the same state.
        self.flush()?;
        let mut cache = KvCache::new(self.model.cfg.text.num_hidden_layers);
        let (hidden, ri) = self.model.forward_hidden(batch, Some(&mut cache))?;
        let last = hidden.narrow(1, batch.len() - 1, 1)?.squeeze(1)?;
        self.join(cache, batch.attention_mask.clone(), &ri.rope_deltas, &last, specs)
    }

    /// Admits `batch` a `chunk` of prompt positions at a time: each [`Generator::step`] prefills
    /// one chunk before the running sequences' token, so a long prompt never stalls them for its
    /// whole prefill; its sequences join when the prompt is done. One at a time: fails while
    /// another is under way.
    pub fn admit_chunked(&mut self, batch: &Batch, specs: Vec<SequenceSpec>, chunk: usize) -> Result<()> {
        assert_eq!(batch.rows(), specs.len(), "one SequenceSpec per batch row");
        if self.pending.is_some() {
            return Err(crate::error::VlmError::input("a chunked prefill is already under way"));
        }
        if specs.is_empty() {
            return Ok(());
        }
        let prefill = self.model.start_prefill(batch)?;
        self.pending = Some(Pending { prefill, specs, chunk: chunk.max(1) });
        Ok(())
    }

    /// The next chunk of the pending prefill; its sequences join the batch after the last.
    fn advance_prefill(&mut self) -> Result<()> {
        let Some(p) = self.pending.as_mut() else { return Ok(()) };
        let last = match self.model.prefill_chunk(&mut p.prefill, p.chunk) {
            Ok(Some(last)) => last,
            Ok(None) => return Ok(()),
            Err(e) => {
                self.pending = None;
                return Err(e);
            }
        };
        let Pending { prefill, specs, .. } = self.pending.take().expect("pending");
        self.flush()?;
        self.join(prefill.cache, prefill.attention_mask, &prefill.rope.rope_deltas, &last, specs)
    }

    /// Adds freshly prefilled sequences: their cache and key masks (left-padded to the batch's
    /// length, or the batch's to theirs), rope deltas, and the logits of `last` [B, D], their
    /// prompts' last hidden states. The running rows must be flushed.
    fn join(
        &mut self,
        mut cache: KvCache,
        mut masks: Vec<Vec<u32>>,
        rope_deltas: &[i64],
        last: &candle_core::Tensor,
        specs: Vec<SequenceSpec>,
    ) -> Result<()> {
        let logits: Vec<Vec<f32>> = self.model.text.logits(last)?.to_dtype(DType::F32)?.to_vec2()?;
        if self.rows.is_empty() {
            self.cache = cache;
            self.key_mask = masks;
            self.rope_deltas = rope_deltas.to_vec();
        } else {
            let (old, new) = (self.cache.len(), cache.len());
            if old < new {
                self.cache.pad_front(new - old)?;
                for m in &mut self.key_mask {
                    m.splice(0..0, std::iter::repeat_n(0, new - old));
                }
            } else if new < old {
                cache.pad_front(old - new)?;
                for m in &mut masks {
                    m.splice(0..0, std::iter::repeat_n(0, old - new));
                }
            }
            self.cache.append_rows(&cache)?;
            self.key_mask.extend(masks);
            self.rope_deltas.extend(rope_deltas.iter().copied());
        }
        for (spec, l) in specs.into_iter().zip(logits) {
            self.rows.push(Row {
                id: spec.id,
                rng: rand::rngs::StdRng::seed_from_u64(spec.sampling.seed),
                sampling: spec.sampling,
                max_new_tokens: spec.max_new_tokens,
                ignore_eos: spec.ignore_eos,
                top_logprobs: spec.top_logprobs,
                generated: 0,
                logits: Some(l),
                last: 0,
            });
        }
        // A zero budget finishes before choosing anything.
        let empty: Vec<u64> = self.rows.iter().filter(|r| r.max_new_tokens == 0).map(|r| r.id).collect();
        self.remove(&empty)
    }

    /// Runs the decode for rows whose last token is not in the cache yet.
    fn flush(&mut self) -> Result<()> {
        if self.rows.is_empty() || self.rows.iter().all(|r| r.logits.is_some()) {
            return Ok(());
        }
        let tokens: Vec<u32> = self.rows.iter().map(|r| r.last).collect();
        for m in &mut self.key_mask {
            m.push(1);
        }
        let logits: Vec<Vec<f32>> = self
            .model
            .decode_step(&tokens, &self.rope_deltas, &self.key_mask, &mut self.cache)?
            .to_dtype(DType::F32)?
            .to_vec2()?;
        for (r, l) in self.rows.iter_mut().zip(logits) {
            r.logits = Some(l);
        }
        Ok(())
    }

    /// One chunk of a pending prefill (if any), then one token for every running sequence.
    /// Finished sequences leave the batch before the next decode.
    pub fn step(&mut self) -> Result<Vec<Event>> {
        self.advance_prefill()?;
        if self.rows.is_empty() {
            return Ok(Vec::new());
        }
        self.flush()?;
        let mut events = Vec::with_capacity(self.rows.len());
        let mut finished = Vec::new();
        for r in &mut self.rows {
            let logits = r.logits.take().expect("flushed");
            let watched = watched_logprobs(&logits, &self.watch_token_ids);
            let top = if r.top_logprobs > 0 {
                top_logprobs(&logits, &r.sampling, &self.suppress_token_ids, r.top_logprobs)
            } else {
                Vec::new()
            };
            let (token, logprob) = choose(&logits, &r.sampling, &self.suppress_token_ids, &mut r.rng);
            r.generated += 1;
            r.last = token;
            let finish = if !r.ignore_eos && self.eos_token_ids.contains(&token) {
                Some(Finish::Eos)
            } else if r.generated >= r.max_new_tokens {
                Some(Finish::Length)
            } else {
                None
            };
            if finish.is_some() {
                finished.push(r.id);
            }
            events.push(Event { id: r.id, token, logprob, finish, watched, top });
        }
        self.remove(&finished)?;
        Ok(events)
    }

    /// Reports, with every event, the log-probabilities of these tokens at that step.
    pub fn watch(&mut self, token_ids: Vec<u32>) {
        self.watch_token_ids = token_ids;
    }

    /// Stops a sequence now (e.g. its client went away), whether running or still being
    /// prefilled (a pending prefill none of whose sequences remain is dropped). Unknown ids are
    /// ignored.
    pub fn cancel(&mut self, id: u64) -> Result<()> {
        if let Some(p) = self.pending.as_mut() {
            if p.specs.iter().any(|s| s.id == id) {
                // The batch's rows cannot leave a prefill midway; its sequence is dropped when it
                // joins, or the whole prefill when none is left.
                p.specs.iter_mut().filter(|s| s.id == id).for_each(|s| s.max_new_tokens = 0);
                if p.specs.iter().all(|s| s.max_new_tokens == 0) {
                    self.pending = None;
                }
                return Ok(());
            }
        }
        self.remove(&[id])
    }

    fn remove(&mut self, ids: &[u64]) -> Result<()> {
        if ids.is_empty() || !self.rows.iter().any(|r| ids.contains(&r.id)) {
            return Ok(());
        }
        let keep: Vec<usize> = (0..self.rows.len()).filter(|&i| !ids.contains(&self.rows[i].id)).collect();
        if keep.is_empty() {
            self.rows.clear();
            self.key_mask.clear();
            self.rope_deltas.clear();
            self.cache = KvCache::new(self.model.cfg.text.num_hidden_layers);
            return Ok(());
        }
        // Rows whose last token awaits decoding have one more key than the cache; the masks are
        // only extended at decode time, so they match the cache here.
        self.cache.select_rows(&keep)?;
        let mut k = keep.iter().peekable();
        let mut i = 0;
        self.rows.retain(|_| {
            let hit = k.peek() == Some(&&i);
            if hit {
                k.next();
            }
            i += 1;
            hit
        });
        self.key_mask = keep.iter().map(|&i| self.key_mask[i].clone()).collect();
        self.rope_deltas = keep.iter().map(|&i| self.rope_deltas[i]).collect();
        // Padding every remaining row has at the front is dead weight: drop it.
        let common = self.key_mask.iter().map(|m| m.iter().position(|&x| x == 1).unwrap_or(m.len())).min().unwrap_or(0);
        if common > 0 {
            self.cache.drop_front(common)?;
            for m in &mut self.key_mask {
                m.drain(..common);
            }
        }
        Ok(())
    }
}
