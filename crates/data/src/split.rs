//! Med-R1's splits: 80/20 per question (not per image), drawn separately for the cross-modality
//! protocol (one train/test pair per modality: 8) and the cross-task protocol (one per question
//! type: 5), written in Med-R1's split format.

use crate::medr1_split::{self, SplitManifest};
use crate::record::Record;
use crate::stats::Stats;
use crate::taxonomy::{Modality, QuestionType};
use anyhow::Result;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::Path;

pub const TEST_FRACTION: f64 = 0.2;

/// Splits `items` into (train, test): a seeded shuffle, then the first round(n * fraction) are
/// test. `stream` separates independent draws made with the same seed.
pub fn train_test<T: Clone>(items: &[T], test_fraction: f64, seed: u64, stream: u64) -> (Vec<T>, Vec<T>) {
    let mut idx: Vec<usize> = (0..items.len()).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    idx.shuffle(&mut rng);
    let n_test = (items.len() as f64 * test_fraction).round() as usize;
    let mut test: Vec<usize> = idx[..n_test].to_vec();
    let mut train: Vec<usize> = idx[n_test..].to_vec();
    // File order, not shuffle order, so the output reads like the input.
    test.sort_unstable();
    train.sort_unstable();
    (train.iter().map(|&i| items[i].clone()).collect(), test.iter().map(|&i| items[i].clone()).collect())
}

/// What one protocol split produced.
pub struct DomainSplit<'a> {
    pub domain: String,
    pub train: Vec<&'a Record>,
    pub test: Vec<&'a Record>,
}

/// One split per modality: that modality's records, 80/20.
pub fn by_modality(records: &[Record], seed: u64) -> Vec<DomainSplit<'_>> {
    Modality::ALL
        .iter()
        .enumerate()
        .map(|(k, &m)| {
            let mine: Vec<&Record> = records.iter().filter(|r| r.modality == Some(m)).collect();
            let (train, test) = train_test(&mine, TEST_FRACTION, seed, k as u64);
            DomainSplit { domain: m.medr1_stem().to_string(), train, test }
        })
        .collect()
}

/// One split per question type, drawn independently of the modality splits.
pub fn by_question_type(records: &[Record], seed: u64) -> Vec<DomainSplit<'_>> {
    QuestionType::ALL
        .iter()
        .enumerate()
        .map(|(k, &q)| {
            let mine: Vec<&Record> = records.iter().filter(|r| r.question_type == Some(q)).collect();
            let (train, test) = train_test(&mine, TEST_FRACTION, seed, 100 + k as u64);
            DomainSplit { domain: q.medr1_stem().to_string(), train, test }
        })
        .collect()
}

/// Writes `OUT/modality/{train,test}/<Modality>_{train,test}.json`,
/// `OUT/q_type/{train,test}/<Question type>_{train,test}.json`, the manifest naming the image
/// root, and `stats.md` (records per modality x question type for each protocol and split).
pub fn write_protocols(
    records: &[Record],
    image_root: &Path,
    out: &Path,
    seed: u64,
) -> Result<Vec<(String, usize, usize)>> {
    std::fs::create_dir_all(out)?;
    let manifest = SplitManifest { image_root: std::fs::canonicalize(image_root)?, seed, test_fraction: TEST_FRACTION };
    std::fs::write(out.join(medr1_split::MANIFEST), serde_json::to_string_pretty(&manifest)? + "\n")?;
    let mut md = format!(
        "# medr1 splits\n\nseed {seed}, {:.0}% test per question, {} records\n",
        TEST_FRACTION * 100.0,
        records.len()
    );
    let mut written = Vec::new();
    for (protocol, splits) in [("modality", by_modality(records, seed)), ("q_type", by_question_type(records, seed))] {
        let mut all_train = Vec::new();
        let mut all_test = Vec::new();
        for s in &splits {
            for (part, rows) in [("train", &s.train), ("test", &s.test)] {
                let path = out.join(protocol).join(part).join(format!("{}_{part}.json", s.domain));
                medr1_split::write_file(&path, rows)?;
            }
            written.push((format!("{protocol}/{}", s.domain), s.train.len(), s.test.len()));
            all_train.extend(s.train.iter().copied());
            all_test.extend(s.test.iter().copied());
        }
        md += &format!("\n## {protocol} protocol, train\n\n{}", Stats::table(&all_train));
        md += &format!("\n## {protocol} protocol, test\n\n{}", Stats::table(&all_test));
    }
    std::fs::write(out.join("stats.md"), md)?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_seeded_disjoint_and_complete() {
        let items: Vec<u32> = (0..103).collect();
        let (tr, te) = train_test(&items, 0.2, 7, 0);
        assert_eq!(te.len(), 21);
        assert_eq!(tr.len() + te.len(), 103);
        let mut all: Vec<u32> = tr.iter().chain(&te).copied().collect();
        all.sort();
        assert_eq!(all, items);
        assert_eq!(train_test(&items, 0.2, 7, 0), (tr.clone(), te.clone()));
        assert_ne!(train_test(&items, 0.2, 8, 0).1, te);
        assert_ne!(train_test(&items, 0.2, 7, 1).1, te);
    }
}
