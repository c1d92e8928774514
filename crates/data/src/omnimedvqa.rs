//! OmniMedVQA's native layout: `ROOT/QA_information/Open-access/<dataset>.json`, each a list of
//! `{question_id, dataset, question_type, modality_type, question, gt_answer, image_path,
//! option_A, option_B[, option_C, option_D]}` with `image_path` relative to ROOT and `gt_answer`
//! the correct option's text.

use crate::dataset::{Dataset, ReadOptions};
use crate::problems::{Problem, ProblemKind};
use crate::record::{letter, Record, MAX_OPTIONS, MIN_OPTIONS};
use crate::taxonomy::{Modality, QuestionType};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

pub const QA_DIR: &str = "QA_information/Open-access";

/// Whether `root` looks like an OmniMedVQA root.
pub fn is_root(root: &Path) -> bool {
    root.join(QA_DIR).is_dir()
}

/// Reads every `*.json` under `ROOT/QA_information/Open-access`, in name order.
pub fn read_root(root: &Path, opts: &ReadOptions) -> anyhow::Result<Dataset> {
    let dir = root.join(QA_DIR);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| anyhow::anyhow!("{}: cannot list: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut seen = HashSet::new();
    let mut ds = Dataset { images_checked: opts.check_images, ..Default::default() };
    for f in files {
        read_file_into(&f, root, opts, &mut seen, &mut ds);
    }
    Ok(ds)
}

/// Reads one QA file; `seen` carries question ids across files so duplicates are caught.
pub fn read_file_into(file: &Path, root: &Path, opts: &ReadOptions, seen: &mut HashSet<String>, ds: &mut Dataset) {
    let items = match crate::json_array(file) {
        Ok(items) => items,
        Err(p) => {
            ds.problems.push(p);
            ds.files.push((file.to_path_buf(), 0));
            return;
        }
    };
    let default_dataset = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let mut n = 0;
    for (i, item) in items.iter().enumerate() {
        match parse_record(item, i, file, root, &default_dataset, opts) {
            Ok(r) => {
                if !seen.insert(r.id.clone()) {
                    ds.problems.push(Problem::new(
                        ProblemKind::DuplicateId,
                        file,
                        Some(r.id.clone()),
                        "question_id already seen; this copy is skipped",
                    ));
                    continue;
                }
                ds.records.push(r);
                n += 1;
            }
            Err(p) => ds.problems.push(p),
        }
    }
    ds.files.push((file.to_path_buf(), n));
}

fn text_field(obj: &Map<String, Value>, key: &str) -> Option<String> {
    match obj.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn parse_record(
    item: &Value,
    index: usize,
    file: &Path,
    root: &Path,
    default_dataset: &str,
    opts: &ReadOptions,
) -> Result<Record, Problem> {
    let at = format!("#{index}");
    let Some(obj) = item.as_object() else {
        return Err(Problem::new(ProblemKind::MissingField, file, Some(at), "record is not a JSON object"));
    };
    let id = text_field(obj, "question_id");
    let name = Some(id.clone().unwrap_or(at.clone()));
    let missing = |k: &str| {
        Problem::new(ProblemKind::MissingField, file, name.clone(), format!("missing or non-text field `{k}`"))
    };
    let id = id.ok_or_else(|| missing("question_id"))?;
    // Text fields must be text: `"question": 123` is a mistake in the file, not a question.
    for key in ["question", "image_path", "question_type", "modality_type", "modality", "dataset"] {
        if let Err(t) = crate::paths::text(obj, key) {
            return Err(Problem::new(ProblemKind::WrongType, file, name.clone(), format!("`{key}` is {t}, not text")));
        }
    }
    let question = text_field(obj, "question").ok_or_else(|| missing("question"))?;
    let gt = text_field(obj, "gt_answer").ok_or_else(|| missing("gt_answer"))?;
    let image = text_field(obj, "image_path").ok_or_else(|| missing("image_path"))?;
    let qt_text = text_field(obj, "question_type").ok_or_else(|| missing("question_type"))?;
    // One real record spells the key `modality`.
    let mod_text = text_field(obj, "modality_type")
        .or_else(|| text_field(obj, "modality"))
        .ok_or_else(|| missing("modality_type"))?;
    let modality = Modality::parse(&mod_text).ok_or_else(|| {
        Problem::new(ProblemKind::UnknownModality, file, name.clone(), format!("unknown modality `{mod_text}`"))
    })?;
    let question_type = QuestionType::parse(&qt_text).ok_or_else(|| {
        Problem::new(ProblemKind::UnknownQuestionType, file, name.clone(), format!("unknown question type `{qt_text}`"))
    })?;
    let mut options = Vec::new();
    for i in 0..MAX_OPTIONS {
        let key = format!("option_{}", letter(i));
        match obj.get(&key) {
            None | Some(Value::Null) => {}
            Some(_) => match text_field(obj, &key) {
                Some(t) if options.len() == i => options.push(t),
                Some(_) => {
                    return Err(Problem::new(
                        ProblemKind::BadOptions,
                        file,
                        name,
                        format!("`{key}` present but an earlier option is missing"),
                    ))
                }
                None => return Err(Problem::new(ProblemKind::BadOptions, file, name, format!("`{key}` is not text"))),
            },
        }
    }
    if options.len() < MIN_OPTIONS {
        return Err(Problem::new(
            ProblemKind::BadOptions,
            file,
            name,
            format!("{} option(s); at least {MIN_OPTIONS} needed", options.len()),
        ));
    }
    let answer =
        gold_index(&options, &gt).map_err(|m| Problem::new(ProblemKind::GoldNotAnOption, file, name.clone(), m))?;
    let image_path = root.join(&image);
    if !crate::paths::inside(root, &image_path) {
        return Err(Problem::new(
            ProblemKind::OutsideRoot,
            file,
            name,
            format!("image path `{image}` leaves the dataset root {}", root.display()),
        ));
    }
    if opts.check_images && !crate::paths::image_exists(&image_path) {
        return Err(Problem::new(
            ProblemKind::MissingImage,
            file,
            name,
            format!("image not found: {}", image_path.display()),
        ));
    }
    let dataset = text_field(obj, "dataset").unwrap_or_else(|| default_dataset.to_string());
    Ok(Record {
        id,
        dataset,
        modality: Some(modality),
        question_type: Some(question_type),
        question,
        options,
        answer,
        image,
        image_path,
    })
}

/// The option whose text is the gold answer: exact match first, then ignoring case and
/// surrounding spaces. Two options matching equally is ambiguous and refused.
fn gold_index(options: &[String], gt: &str) -> Result<usize, String> {
    let exact: Vec<usize> = (0..options.len()).filter(|&i| options[i] == gt).collect();
    let loose: Vec<usize> = (0..options.len()).filter(|&i| options[i].trim().eq_ignore_ascii_case(gt.trim())).collect();
    let hits = if exact.is_empty() { loose } else { exact };
    match hits.as_slice() {
        [i] => Ok(*i),
        [] => Err(format!("gt_answer `{gt}` matches no option")),
        _ => Err(format!("gt_answer `{gt}` matches {} options", hits.len())),
    }
}

/// One record as OmniMedVQA writes it (the phantom generator's output).
#[derive(Debug, Clone, Serialize)]
pub struct NativeRecord {
    pub question_id: String,
    pub dataset: String,
    pub question_type: String,
    pub modality_type: String,
    pub question: String,
    pub gt_answer: String,
    pub image_path: String,
    #[serde(rename = "option_A")]
    pub option_a: String,
    #[serde(rename = "option_B")]
    pub option_b: String,
    #[serde(rename = "option_C", skip_serializing_if = "Option::is_none")]
    pub option_c: Option<String>,
    #[serde(rename = "option_D", skip_serializing_if = "Option::is_none")]
    pub option_d: Option<String>,
}

impl NativeRecord {
    pub fn from_record(r: &Record) -> Self {
        let opt = |i: usize| r.options.get(i).cloned();
        NativeRecord {
            question_id: r.id.clone(),
            dataset: r.dataset.clone(),
            question_type: r.question_type.map(|q| q.name()).unwrap_or("").to_string(),
            modality_type: r.modality.map(|m| m.omnimedvqa_name()).unwrap_or("").to_string(),
            question: r.question.clone(),
            gt_answer: r.options[r.answer].clone(),
            image_path: r.image.clone(),
            option_a: r.options[0].clone(),
            option_b: r.options[1].clone(),
            option_c: opt(2),
            option_d: opt(3),
        }
    }
}
