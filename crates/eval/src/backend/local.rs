//! A checkpoint on this machine: batched greedy generation with the KV cache.

use super::{Answer, Backend, Item};
use anyhow::{anyhow, Result};
use vlm::generate::{generate, GenerateOptions, Sampling};
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
        let gens = generate(&ck.model, &enc.batch, &opts, &mut |_, _| true)?;
        gens.iter()
            .map(|g| {
                let output = ck.processor.tokenizer.decode(&g.tokens, true).map_err(|e| anyhow!("decoding: {e}"))?;
                // The EOS token is part of the completion, as servers count it.
                Ok(Answer { output, completion_tokens: g.tokens.len() })
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
