//! Med-R1's split format: a JSON list of `{"image", "problem", "solution": "<answer> X </answer>"}`
//! where `image` is relative to the OmniMedVQA root and `problem` ends with `A)opt, B)opt, ...`.
//! Files medr1 writes also carry `id`, `dataset`, `modality` and `question_type` (Med-R1's
//! loaders ignore extra keys); for the released files those come from the file name
//! (`CT_test.json` -> CT, `Lesion Grading_test.json` -> Lesion Grading) and the image path.

use crate::dataset::{Dataset, ReadOptions};
use crate::problems::{Problem, ProblemKind};
use crate::record::{letter_index, parse_solution, split_problem, Record};
use crate::taxonomy::{Modality, QuestionType};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Written by `medr1 data split` at the top of its output: where the images are.
pub const MANIFEST: &str = "medr1-split.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SplitManifest {
    /// The OmniMedVQA root the `image` paths are relative to.
    pub image_root: PathBuf,
    pub seed: u64,
    pub test_fraction: f64,
}

/// One record in Med-R1's format, with medr1's extra keys.
#[derive(Debug, Clone, Serialize)]
pub struct SplitRecord {
    pub image: String,
    pub problem: String,
    pub solution: String,
    pub id: String,
    pub dataset: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modality: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub question_type: Option<&'static str>,
}

impl SplitRecord {
    pub fn from_record(r: &Record) -> Self {
        SplitRecord {
            image: r.image.clone(),
            problem: r.problem(),
            solution: r.solution(),
            id: r.id.clone(),
            dataset: r.dataset.clone(),
            modality: r.modality.map(|m| m.name()),
            question_type: r.question_type.map(|q| q.name()),
        }
    }
}

/// What a split file's name says: `CT_test.json` is CT, `Lesion Grading_train.json` is Lesion Grading.
pub fn domain_of_file(file: &Path) -> (Option<Modality>, Option<QuestionType>) {
    let stem = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let base = stem.strip_suffix("_test").or_else(|| stem.strip_suffix("_train")).unwrap_or(&stem);
    match QuestionType::parse(base) {
        Some(q) => (None, Some(q)),
        None => (Modality::parse(base), None),
    }
}

/// The manifest in the file's folder or the nearest one above it.
pub fn find_manifest(file: &Path) -> Option<(PathBuf, SplitManifest)> {
    let mut dir = file.parent();
    while let Some(d) = dir {
        let m = d.join(MANIFEST);
        if m.is_file() {
            let text = std::fs::read_to_string(&m).ok()?;
            return serde_json::from_str(&text).ok().map(|s| (m, s));
        }
        dir = d.parent();
    }
    None
}

/// Reads one split file. Ids must be unique within the file (the same question legitimately
/// appears in several files: once per protocol).
pub fn read_file(file: &Path, opts: &ReadOptions) -> Dataset {
    let root = opts.image_root.clone().or_else(|| find_manifest(file).map(|(_, m)| m.image_root));
    let check = opts.check_images && root.is_some();
    let mut ds = Dataset { images_checked: check, ..Default::default() };
    let items = match crate::json_array(file) {
        Ok(items) => items,
        Err(p) => {
            ds.problems.push(p);
            ds.files.push((file.to_path_buf(), 0));
            return ds;
        }
    };
    let (file_modality, file_qtype) = domain_of_file(file);
    let stem = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let mut seen = HashSet::new();
    let mut n = 0;
    for (i, item) in items.iter().enumerate() {
        let at = format!("#{i}");
        let Some(obj) = item.as_object() else {
            ds.problems.push(Problem::new(ProblemKind::MissingField, file, Some(at), "record is not a JSON object"));
            continue;
        };
        let text = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_string);
        let wrong = ["id", "image", "problem", "solution", "modality", "question_type", "dataset"]
            .into_iter()
            .find_map(|k| crate::paths::text(obj, k).err().map(|t| (k, t)));
        let id = text("id").unwrap_or_else(|| format!("{stem}#{i}"));
        let name = Some(if obj.contains_key("id") { id.clone() } else { at });
        let missing = |k: &str| {
            Problem::new(ProblemKind::MissingField, file, name.clone(), format!("missing or non-text field `{k}`"))
        };
        if let Some((k, t)) = wrong {
            ds.problems.push(Problem::new(ProblemKind::WrongType, file, name, format!("`{k}` is {t}, not text")));
            continue;
        }
        let (Some(image), Some(problem), Some(solution)) = (text("image"), text("problem"), text("solution")) else {
            let k = ["image", "problem", "solution"].into_iter().find(|k| text(k).is_none()).unwrap();
            ds.problems.push(missing(k));
            continue;
        };
        let Some((question, options)) = split_problem(&problem) else {
            ds.problems.push(Problem::new(
                ProblemKind::BadOptions,
                file,
                name,
                "no `A)opt, B)opt` options at the end of `problem`",
            ));
            continue;
        };
        let Some(answer) = parse_solution(&solution).and_then(|c| letter_index(c, options.len())) else {
            ds.problems.push(Problem::new(
                ProblemKind::GoldNotAnOption,
                file,
                name,
                format!("solution `{solution}` names none of the {} options", options.len()),
            ));
            continue;
        };
        let modality = match text("modality") {
            Some(m) => match Modality::parse(&m) {
                Some(m) => Some(m),
                None => {
                    ds.problems.push(Problem::new(
                        ProblemKind::UnknownModality,
                        file,
                        name,
                        format!("unknown modality `{m}`"),
                    ));
                    continue;
                }
            },
            None => file_modality,
        };
        let question_type = match text("question_type") {
            Some(q) => match QuestionType::parse(&q) {
                Some(q) => Some(q),
                None => {
                    ds.problems.push(Problem::new(
                        ProblemKind::UnknownQuestionType,
                        file,
                        name,
                        format!("unknown question type `{q}`"),
                    ));
                    continue;
                }
            },
            None => file_qtype,
        };
        // `Images/<dataset>/...` names the data set.
        let dataset = text("dataset").unwrap_or_else(|| image.split('/').nth(1).unwrap_or("").to_string());
        let image_path = match &root {
            Some(r) => r.join(&image),
            None => PathBuf::from(&image),
        };
        if let Some(r) = root.as_ref().filter(|r| !crate::paths::inside(r, &image_path)) {
            ds.problems.push(Problem::new(
                ProblemKind::OutsideRoot,
                file,
                name,
                format!("image path `{image}` leaves the image root {}", r.display()),
            ));
            continue;
        }
        if check && !crate::paths::image_exists(&image_path) {
            ds.problems.push(Problem::new(
                ProblemKind::MissingImage,
                file,
                name,
                format!("image not found: {}", image_path.display()),
            ));
            continue;
        }
        if !seen.insert(id.clone()) {
            ds.problems.push(Problem::new(
                ProblemKind::DuplicateId,
                file,
                name,
                "id already seen in this file; this copy is skipped",
            ));
            continue;
        }
        ds.records.push(Record { id, dataset, modality, question_type, question, options, answer, image, image_path });
        n += 1;
    }
    ds.files.push((file.to_path_buf(), n));
    ds
}

/// Writes records in Med-R1's split format (pretty-printed like the released files).
pub fn write_file(path: &Path, records: &[&Record]) -> anyhow::Result<()> {
    let rows: Vec<SplitRecord> = records.iter().map(|r| SplitRecord::from_record(r)).collect();
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(&rows)? + "\n")
        .map_err(|e| anyhow::anyhow!("{}: cannot write: {e}", path.display()))
}
