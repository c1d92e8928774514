//! A checkpoint on this machine: batched greedy generation with the KV cache.

use super::{Answer, Backend, Item};
use crate::confidence::{answer_offset, letter_distribution, letter_token, token_at, LETTERS};
use anyhow::{anyhow, Result};
use vlm::generate::{generate_watching, GenerateOptions, Sampling};
use vlm::Checkpoint;

pub struct Local<'a> {
    pub checkpoint: &'a Checkpoint,
    pub name: String,
    pub batch_size: usize,
    pub max_new_tokens: usize,
}

impl Local<'_> {
    fn run(&self, items: &[Item]) -> Result<Vec<Answer>> {
        let ck = self.checkpoint;
        let prompts = items
            .iter()
            .map(|it| {
                ck.processor
                    .prompt_with_images(&crate::prompt::user_messages(&it.text), std::slice::from_ref(&it.image))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let enc = ck.processor.encode(&prompts, None, ck.model.device())?;
        let opts = GenerateOptions {
            max_new_tokens: self.max_new_tokens,
            eos_token_ids: ck.generation.eos_token_ids.clone(),
            // Vision placeholders are never a valid answer token.
            suppress_token_ids: ck.config.vision_token_ids(),
            sampling: vec![Sampling::greedy(); prompts.len()],
        };
        // Every vocabulary token shaped like a letter answer (`A`, ` A`, `>A`), watched at every
        // step: the answer token's alternatives are among them.
        let tok = &ck.processor.tokenizer;
        let shaped: Vec<(u32, String, char)> = tok
            .get_vocab(true)
            .into_iter()
            .filter(|(raw, _)| raw.chars().count() <= 4 && raw.ends_with(LETTERS))
            .filter_map(|(_, id)| {
                let (head, letter) = letter_token(&tok.decode(&[id], false).ok()?)?;
                Some((id, head, letter))
            })
            .collect();
        let watch: Vec<u32> = shaped.iter().map(|s| s.0).collect();
        let gens = generate_watching(&ck.model, &enc.batch, &opts, &watch, &mut |_, _| true)?;
        gens.iter()
            .zip(items)
            .map(|(g, it)| {
                let output = tok.decode(&g.tokens, true).map_err(|e| anyhow!("decoding: {e}"))?;
                let prefix_len = |k: usize| tok.decode(&g.tokens[..k], true).map_or(0, |t| t.len());
                let letter_probs =
                    answer_offset(&output).and_then(|off| token_at(off, g.tokens.len(), prefix_len)).and_then(|k| {
                        let (_, head, _) = shaped.iter().find(|s| s.0 == g.tokens[k])?;
                        let alternatives: Vec<(char, f32)> = shaped
                            .iter()
                            .zip(&g.watched[k])
                            .filter(|((_, h, _), _)| h == head)
                            .map(|((_, _, l), &lp)| (*l, lp))
                            .collect();
                        letter_distribution(&alternatives, it.options)
                    });
                // The EOS token is part of the completion, as servers count it.
                Ok(Answer { output, completion_tokens: g.tokens.len(), letter_probs })
            })
            .collect()
    }
}

impl Backend for Local<'_> {
    fn answer(&self, items: &[Item]) -> Vec<Result<Answer>> {
        match self.run(items) {
            Ok(a) => a.into_iter().map(Ok).collect(),
            // A batch-level failure (out of memory, a bad prompt) marks each of its items.
            Err(e) => items.iter().map(|_| Err(anyhow!("{e:#}"))).collect(),
        }
    }
    fn chunk_size(&self) -> usize {
        self.batch_size.max(1)
    }
    fn model_name(&self) -> String {
        self.name.clone()
    }
}
