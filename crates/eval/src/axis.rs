//! The axis a generalization experiment varies, shared by summaries and reports.

use data::{Modality, QuestionType};

/// What a generalization experiment varies: the imaging modality or the question type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Axis {
    Modality,
    QuestionType,
}

impl Axis {
    pub fn names(self) -> Vec<&'static str> {
        match self {
            Axis::Modality => Modality::ALL.iter().map(|m| m.name()).collect(),
            Axis::QuestionType => QuestionType::ALL.iter().map(|q| q.name()).collect(),
        }
    }
    /// Where a domain name (any spelling the data layer accepts) sits in the canonical order.
    pub fn position(self, name: &str) -> Option<usize> {
        match self {
            Axis::Modality => Modality::parse(name).and_then(|m| Modality::ALL.iter().position(|x| *x == m)),
            Axis::QuestionType => {
                QuestionType::parse(name).and_then(|q| QuestionType::ALL.iter().position(|x| *x == q))
            }
        }
    }
    pub fn canonical(self, name: &str) -> Option<&'static str> {
        self.position(name).map(|i| self.names()[i])
    }
    pub fn title(self) -> &'static str {
        match self {
            Axis::Modality => "Cross-modality",
            Axis::QuestionType => "Cross-task",
        }
    }
    pub fn file_stem(self) -> &'static str {
        match self {
            Axis::Modality => "by_modality",
            Axis::QuestionType => "by_question_type",
        }
    }
}

impl std::str::FromStr for Axis {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().replace(['-', '_', ' '], "").as_str() {
            "modality" | "modalities" => Ok(Axis::Modality),
            "questiontype" | "task" | "questiontypes" => Ok(Axis::QuestionType),
            _ => Err(format!("unknown axis `{s}` (modality, question_type)")),
        }
    }
}
