//! The training data stream: records in a seeded order, reshuffled every epoch, each turned into
//! a prompt (image loaded, resized if asked, question in the chosen prompt's words). A record
//! whose image cannot be read is reported and skipped; the stream position counts it, so a resumed
//! run skips it at the same place.

use data::prompts::PromptVariant;
use data::Record;
use eval::prompt::record_prompt;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vlm::prompt::{Processor, Prompt};

/// The record order of `epoch`.
pub fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(epoch);
    idx.shuffle(&mut rng);
    idx
}

/// Pulls the next `n` usable records from position `cursor` of the endless epoch-by-epoch stream.
/// Returns (record index, prompt) pairs and the problems met; advances `cursor`.
pub fn next_prompts(
    records: &[Record],
    processor: &Processor,
    variant: PromptVariant,
    prep: eval::prompt::ImagePrep,
    seed: u64,
    cursor: &mut usize,
    n: usize,
) -> (Vec<(usize, Prompt)>, Vec<String>) {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    if records.is_empty() {
        return (out, problems);
    }
    let mut tries = 0;
    let mut order: Option<(u64, Vec<usize>)> = None;
    while out.len() < n && tries < records.len() {
        let epoch = (*cursor / records.len()) as u64;
        if order.as_ref().is_none_or(|(e, _)| *e != epoch) {
            order = Some((epoch, epoch_order(records.len(), seed, epoch)));
        }
        let i = order.as_ref().unwrap().1[*cursor % records.len()];
        *cursor += 1;
        match record_prompt(processor, &records[i], variant, prep) {
            Ok(p) => {
                out.push((i, p));
                tries = 0;
            }
            Err(e) => {
                problems.push(format!("record {} skipped: {e:#}", records[i].id));
                tries += 1;
            }
        }
    }
    (out, problems)
}
