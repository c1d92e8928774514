//! The bundled benchmark: "phantoms", procedurally drawn images of the 8 modalities with
//! multiple-choice questions of all 5 types whose answers are fixed by the pixels, written in
//! OmniMedVQA's layout so the same reader reads them.
//!
//! Each image is drawn from a [`Scene`] (modality, region, finding, grade, attribute, seed);
//! each question type asks about exactly one of those properties:
//!
//! | question type | property | answers |
//! |---|---|---|
//! | Modality Recognition | modality | 4 of the 8 modality names |
//! | Anatomy Identification | region | the modality's 3 regions (e.g. CT: Head / Chest / Abdomen) |
//! | Disease Diagnosis | finding | the modality's 3 findings (e.g. CT: No abnormality / Tumor / Cyst) |
//! | Lesion Grading | grade | Mild (1-2 small lesions), Moderate (3-5), Severe (6-9) |
//! | Other Biological Attributes | attribute | side of the small lesions (Left / Right / Both sides); microscopy: cells in the field (<20 / 20-40 / >40) |
//!
//! See `docs/phantoms.md` for the rendering rules of each modality.

pub mod canvas;
pub mod render;
pub mod vocab;

use crate::omnimedvqa::{NativeRecord, QA_DIR};
use crate::record::Record;
use crate::taxonomy::{Modality, QuestionType};
use anyhow::{Context, Result};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use vocab::{modality_label, vocab, DENSITIES, GRADES, MODALITY_QUESTIONS, SIDES};

/// Everything a phantom image shows. Property values index the vocabularies in [`vocab`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scene {
    pub modality: Modality,
    pub region: usize,
    pub finding: usize,
    pub grade: usize,
    pub attribute: usize,
    /// Positions, sizes and noise.
    pub seed: u64,
}

/// One question about a scene.
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    pub text: String,
    pub options: Vec<String>,
    pub answer: usize,
}

impl Scene {
    /// The property a question type asks about.
    pub fn property(&self, q: QuestionType) -> usize {
        match q {
            QuestionType::ModalityRecognition => Modality::ALL.iter().position(|&m| m == self.modality).unwrap(),
            QuestionType::AnatomyIdentification => self.region,
            QuestionType::DiseaseDiagnosis => self.finding,
            QuestionType::LesionGrading => self.grade,
            QuestionType::OtherBiologicalAttributes => self.attribute,
        }
    }

    /// The correct answer's text for a question type.
    pub fn answer_text(&self, q: QuestionType) -> String {
        let v = vocab(self.modality);
        match q {
            QuestionType::ModalityRecognition => modality_label(self.modality).to_string(),
            QuestionType::AnatomyIdentification => v.regions[self.region].to_string(),
            QuestionType::DiseaseDiagnosis => v.findings[self.finding].to_string(),
            QuestionType::LesionGrading => GRADES[self.grade].to_string(),
            QuestionType::OtherBiologicalAttributes => self.attribute_answers()[self.attribute].to_string(),
        }
    }

    fn attribute_answers(&self) -> [&'static str; 3] {
        if self.modality == Modality::Microscopy {
            DENSITIES
        } else {
            SIDES
        }
    }

    /// The question text and all possible answers for a question type (before shuffling).
    fn question_and_vocabulary(&self, q: QuestionType, phrasing: usize) -> (String, Vec<String>) {
        let v = vocab(self.modality);
        let own = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        match q {
            QuestionType::ModalityRecognition => (
                MODALITY_QUESTIONS[phrasing % MODALITY_QUESTIONS.len()].to_string(),
                Modality::ALL.iter().map(|&m| modality_label(m).to_string()).collect(),
            ),
            QuestionType::AnatomyIdentification => (v.region_question.to_string(), own(&v.regions)),
            QuestionType::DiseaseDiagnosis => (v.finding_question.to_string(), own(&v.findings)),
            QuestionType::LesionGrading => (
                format!("How severe are the {} in this image (mild: 1-2, moderate: 3-5, severe: 6 or more)?", v.spots),
                own(&GRADES),
            ),
            QuestionType::OtherBiologicalAttributes => {
                if self.modality == Modality::Microscopy {
                    ("How many cells are in this field of view?".to_string(), own(&DENSITIES))
                } else {
                    (format!("On which side of the image are the {}?", v.spots), own(&SIDES))
                }
            }
        }
    }

    /// The question of type `q` with its options in the vocabulary's fixed order (modality
    /// questions: the 4 modalities of the scene's group — radiology CT, MRI, X-ray, Ultrasound or
    /// optical Dermoscopy, Fundus, OCT, Microscopy), so the letter names the class.
    pub fn question_fixed(&self, q: QuestionType, rng: &mut ChaCha8Rng) -> Question {
        let phrasing = rng.random_range(0..3);
        let (text, all) = self.question_and_vocabulary(q, phrasing);
        let gold = self.property(q);
        if q == QuestionType::ModalityRecognition {
            let group = gold / 4 * 4;
            return Question { text, options: all[group..group + 4].to_vec(), answer: gold - group };
        }
        Question { text, options: all, answer: gold }
    }

    /// The question of type `q`, with up to 4 options, the correct one at position `gold_slot`
    /// (modulo the option count) and distractors drawn from the same vocabulary by `rng`.
    pub fn question(&self, q: QuestionType, gold_slot: usize, rng: &mut ChaCha8Rng) -> Question {
        let phrasing = rng.random_range(0..3);
        let (text, all) = self.question_and_vocabulary(q, phrasing);
        let gold = self.property(q);
        let mut distractors: Vec<String> =
            all.iter().enumerate().filter(|(i, _)| *i != gold).map(|(_, s)| s.clone()).collect();
        distractors.shuffle(rng);
        distractors.truncate(3);
        let n = distractors.len() + 1;
        let slot = gold_slot % n;
        let mut options = distractors;
        options.insert(slot, all[gold].clone());
        Question { text, options, answer: slot }
    }
}

/// The generator's settings.
#[derive(Debug, Clone, Copy)]
pub struct PhantomConfig {
    /// Questions per (modality, question type) cell: 40 cells in all.
    pub per_cell: usize,
    /// Image side in pixels.
    pub size: usize,
    pub seed: u64,
    /// Options always in the vocabulary's order (the letter names the class) instead of shuffled
    /// with balanced letters. Easier: a model can learn to classify without learning to match
    /// option text to the image (the demo uses it; see docs/phantoms.md).
    pub fixed_options: bool,
}

impl Default for PhantomConfig {
    fn default() -> Self {
        PhantomConfig { per_cell: 25, size: 112, seed: 0, fixed_options: false }
    }
}

/// A generated record with the scene it shows.
#[derive(Debug, Clone)]
pub struct Phantom {
    pub record: Record,
    pub scene: Scene,
}

pub fn dataset_name(m: Modality) -> String {
    format!("Phantom-{}", m.medr1_stem())
}

/// A seed for record `i` of a cell, independent of every other record's.
fn record_seed(seed: u64, m: usize, q: usize, i: usize) -> u64 {
    // splitmix64 over the packed coordinates.
    let mut z = seed ^ ((m as u64) << 56) ^ ((q as u64) << 48) ^ (i as u64);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The records and scenes of a phantom set (no pixels yet), in file order: modality by
/// modality, question type by question type. Within a cell the gold letter cycles A, B, C(, D)
/// and the asked property cycles through its values, so both are balanced: exactly when
/// `per_cell` is a multiple of 36, otherwise to within one cycle.
pub fn plan(cfg: &PhantomConfig) -> Vec<Phantom> {
    let mut out = Vec::with_capacity(cfg.per_cell * 40);
    for (mi, &m) in Modality::ALL.iter().enumerate() {
        for (qi, &q) in QuestionType::ALL.iter().enumerate() {
            for i in 0..cfg.per_cell {
                let s = record_seed(cfg.seed, mi, qi, i);
                let mut rng = ChaCha8Rng::seed_from_u64(s);
                let mut scene = Scene {
                    modality: m,
                    region: rng.random_range(0..3),
                    finding: rng.random_range(0..3),
                    grade: rng.random_range(0..3),
                    attribute: rng.random_range(0..3),
                    seed: rng.random(),
                };
                let n_options = if q == QuestionType::ModalityRecognition { 4 } else { 3 };
                // Cycle the asked property so that every (value, letter) pair occurs equally often
                // (with fixed options the value decides the letter, so cycle it directly).
                let value = if cfg.fixed_options { i % 3 } else { (i / n_options) % 3 };
                match q {
                    QuestionType::ModalityRecognition => {}
                    QuestionType::AnatomyIdentification => scene.region = value,
                    QuestionType::DiseaseDiagnosis => scene.finding = value,
                    QuestionType::LesionGrading => scene.grade = value,
                    QuestionType::OtherBiologicalAttributes => scene.attribute = value,
                }
                let question = if cfg.fixed_options {
                    scene.question_fixed(q, &mut rng)
                } else {
                    scene.question(q, i % n_options, &mut rng)
                };
                let id = format!("phantom-{}-{}-{:05}", m.medr1_stem().to_lowercase(), q.code(), i);
                let dataset = dataset_name(m);
                let image = format!("Images/{dataset}/{id}.png");
                let record = Record {
                    id,
                    dataset,
                    modality: Some(m),
                    question_type: Some(q),
                    question: question.text,
                    options: question.options,
                    answer: question.answer,
                    image_path: PathBuf::from(&image),
                    image,
                };
                out.push(Phantom { record, scene });
            }
        }
    }
    out
}

/// The scene's picture as PNG bytes (8-bit grey for grey modalities, RGB otherwise).
pub fn render_png(scene: &Scene, size: usize) -> Result<Vec<u8>> {
    let canvas = render::render(scene, size);
    let px = canvas.to_u8();
    let color = if canvas.channels == 1 { image::ExtendedColorType::L8 } else { image::ExtendedColorType::Rgb8 };
    let mut out = Vec::new();
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(&mut out),
        &px,
        size as u32,
        size as u32,
        color,
    )?;
    Ok(out)
}

/// Writes a phantom set under `out` in OmniMedVQA's layout: `Images/Phantom-<Modality>/<id>.png`
/// and `QA_information/Open-access/Phantom-<Modality>.json`. `progress(done, total)` is called
/// as images are written. Returns the records (with `image_path` under `out`).
pub fn generate(out: &Path, cfg: &PhantomConfig, progress: &(dyn Fn(usize, usize) + Sync)) -> Result<Vec<Record>> {
    anyhow::ensure!(cfg.size >= 28, "--size must be at least 28 pixels (one 28x28 merged patch), got {}", cfg.size);
    let plan = plan(cfg);
    let qa = out.join(QA_DIR);
    std::fs::create_dir_all(&qa).with_context(|| format!("{}: cannot create", qa.display()))?;
    for m in Modality::ALL {
        let d = out.join("Images").join(dataset_name(m));
        std::fs::create_dir_all(&d).with_context(|| format!("{}: cannot create", d.display()))?;
    }
    let done = std::sync::atomic::AtomicUsize::new(0);
    plan.par_iter().try_for_each(|p| -> Result<()> {
        let png = render_png(&p.scene, cfg.size)?;
        let path = out.join(&p.record.image);
        std::fs::write(&path, png).with_context(|| format!("{}: cannot write", path.display()))?;
        let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        progress(n, plan.len());
        Ok(())
    })?;
    let mut records = Vec::with_capacity(plan.len());
    for m in Modality::ALL {
        let rows: Vec<NativeRecord> =
            plan.iter().filter(|p| p.scene.modality == m).map(|p| NativeRecord::from_record(&p.record)).collect();
        let path = qa.join(format!("{}.json", dataset_name(m)));
        std::fs::write(&path, serde_json::to_string_pretty(&rows)? + "\n")
            .with_context(|| format!("{}: cannot write", path.display()))?;
    }
    for p in plan {
        let mut r = p.record;
        r.image_path = out.join(&r.image);
        records.push(r);
    }
    Ok(records)
}
