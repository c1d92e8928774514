//! Counts of usable records per modality, question type, data set and modality x question type,
//! with the problems met — the `medr1 data stats` report.

use crate::by_domain::ByDomain;
use crate::dataset::Dataset;
use crate::problems::Problem;
use crate::record::Record;
use crate::taxonomy::{Modality, QuestionType};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Default)]
pub struct Stats {
    /// Usable records.
    pub records: usize,
    /// Records per canonical modality name, question type and data set.
    #[serde(flatten)]
    pub by: ByDomain<usize>,
    /// Records whose source does not say their modality / question type (Med-R1 split files
    /// name only one of the two); they count in `records` but in neither map above.
    pub unknown_modality: usize,
    pub unknown_question_type: usize,
    /// "MODALITY / QUESTION TYPE" -> records, for records that have both.
    pub cells: BTreeMap<String, usize>,
    /// Gold letter -> records (a biased letter distribution lets a model cheat).
    pub by_gold_letter: BTreeMap<String, usize>,
    pub files: Vec<FileCount>,
    pub images_checked: bool,
    pub problems: Vec<Problem>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileCount {
    pub file: PathBuf,
    pub records: usize,
}

impl Stats {
    pub fn of_records<'a>(records: impl IntoIterator<Item = &'a Record>) -> Stats {
        let mut s = Stats::default();
        for r in records {
            s.records += 1;
            s.by.update(r.modality.map(|m| m.name()), r.question_type.map(|q| q.name()), &r.dataset, |n| *n += 1);
            s.unknown_modality += r.modality.is_none() as usize;
            s.unknown_question_type += r.question_type.is_none() as usize;
            if let (Some(m), Some(q)) = (r.modality, r.question_type) {
                *s.cells.entry(format!("{m} / {q}")).or_default() += 1;
            }
            *s.by_gold_letter.entry(r.gold_letter().to_string()).or_default() += 1;
        }
        s
    }

    pub fn of(ds: &Dataset) -> Stats {
        let mut s = Stats::of_records(&ds.records);
        s.files = ds.files.iter().map(|(f, n)| FileCount { file: f.clone(), records: *n }).collect();
        s.images_checked = ds.images_checked;
        s.problems = ds.problems.clone();
        s
    }

    /// Records per modality (rows) x question type (columns), in Markdown.
    pub fn table(records: &[&Record]) -> String {
        let mut out = String::from("| modality |");
        for q in QuestionType::ALL {
            out += &format!(" {q} |");
        }
        out += " total |\n|---|";
        for _ in QuestionType::ALL {
            out += "---:|";
        }
        out += "---:|\n";
        let count = |m: Option<Modality>, q: Option<QuestionType>| {
            records
                .iter()
                .filter(|r| m.is_none_or(|m| r.modality == Some(m)) && q.is_none_or(|q| r.question_type == Some(q)))
                .count()
        };
        for m in Modality::ALL {
            out += &format!("| {m} |");
            for q in QuestionType::ALL {
                out += &format!(" {} |", count(Some(m), Some(q)));
            }
            out += &format!(" {} |\n", count(Some(m), None));
        }
        out += "| total |";
        for q in QuestionType::ALL {
            out += &format!(" {} |", count(None, Some(q)));
        }
        out += &format!(" {} |\n", records.len());
        out
    }

    /// A short human-readable summary.
    pub fn summary(&self) -> String {
        let mut out = format!("{} usable records", self.records);
        if !self.problems.is_empty() {
            out += &format!(", {} skipped (problems below)", self.problems.len());
        }
        out += "\n";
        if !self.images_checked {
            out += "images not checked (split files with no known image root; pass --images ROOT)\n";
        }
        out += "by modality:\n";
        for m in Modality::ALL {
            if let Some(n) = self.by.modality.get(m.name()) {
                out += &format!("  {:<28} {n}\n", m.name());
            }
        }
        if self.unknown_modality > 0 {
            out += &format!("  {:<28} {}\n", "(not given)", self.unknown_modality);
        }
        out += "by question type:\n";
        for q in QuestionType::ALL {
            if let Some(n) = self.by.question_type.get(q.name()) {
                out += &format!("  {:<28} {n}\n", q.name());
            }
        }
        if self.unknown_question_type > 0 {
            out += &format!("  {:<28} {}\n", "(not given)", self.unknown_question_type);
        }
        out += &format!("data sets: {}\n", self.by.dataset.len());
        out += "gold letters:";
        for (l, n) in &self.by_gold_letter {
            out += &format!(" {l}={n}");
        }
        out += "\n";
        for p in &self.problems {
            out += &format!("problem: {p}\n");
        }
        out
    }
}
