//! Confidence end to end: after a short SFT the tiny model answers `<answer>X</answer>`, and
//! `medr1 eval`'s local backend records each answer's letter distribution at the answer position
//! (a probability distribution over the record's options whose value at the extracted letter is
//! the confidence), from which the summary's calibration and coverage are computed.

use crate::common;
use candle_core::DType;
use data::prompts::PromptVariant;
use eval::backend::local::Local;
use rl::config::TrainConfig;
use rl::optim::Schedule;
use vlm::Checkpoint;

#[test]
fn local_scoring_records_letter_probabilities_and_calibration() {
    let data = tempfile::tempdir().unwrap();
    let recs = common::records(data.path());
    let out = tempfile::tempdir().unwrap();
    let cfg = TrainConfig {
        prompt: PromptVariant::NoThink,
        learning_rate: 2e-3,
        lr_scheduler: Schedule::Constant,
        prompts_per_step: 8,
        max_steps: 24,
        ..common::small(out.path())
    };
    rl::trainer::train_sft(common::ck(), &recs, &cfg, false, &mut |_| true).unwrap();
    let ck = Checkpoint::open(out.path(), DType::F32).unwrap();
    let backend = Local { checkpoint: &ck, name: "sft".into(), batch_size: 8, max_new_tokens: 8 };
    let preds = eval::run::evaluate(&backend, &recs, PromptVariant::NoThink, None.into());
    let with: Vec<_> = preds.iter().filter(|p| p.confidence.is_some()).collect();
    assert!(
        with.len() * 2 > preds.len(),
        "the SFT model should answer in the format: {} of {} have a confidence; {:?}",
        with.len(),
        preds.len(),
        preds[0]
    );
    for p in &with {
        let probs = p.letter_probs.as_ref().unwrap();
        assert_eq!(probs.len(), p.options.len(), "{p:?}");
        assert!((probs.values().sum::<f64>() - 1.0).abs() < 1e-6);
        let x = p.extracted.as_ref().unwrap();
        assert_eq!(p.confidence, Some(probs[x]));
        // Greedy decoding emitted the letter: it is the most probable option there.
        assert!(probs.values().all(|&q| q <= probs[x] + 1e-9), "{probs:?} extracted {x}");
    }
    let s = eval::Summary::from_predictions(&preds);
    let cal = s.calibration.unwrap();
    assert_eq!(cal.n, with.len());
    assert_eq!(cal.bins.iter().map(|b| b.n).sum::<usize>(), with.len());
    assert_eq!(s.coverage[0].answered, with.len(), "threshold 0 answers everything with a confidence");
    assert_eq!(s.calibration_by_modality.values().map(|c| c.n).sum::<usize>(), with.len());
}
