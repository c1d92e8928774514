//! What went wrong with a record or a file, said precisely enough to find and fix it. Readers
//! never drop a record silently: every record they skip is one `Problem`.

use serde::Serialize;
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// The file could not be read or is not the JSON it should be.
    UnreadableFile,
    /// A required field is missing or has the wrong type.
    MissingField,
    UnknownModality,
    UnknownQuestionType,
    /// Fewer than 2 or more than 4 options, or options that cannot be parsed from the text.
    BadOptions,
    /// The gold answer names no option.
    GoldNotAnOption,
    DuplicateId,
    MissingImage,
    UnreadableImage,
    /// A field holds the wrong JSON type (`"question": 123`).
    WrongType,
    /// The image path leaves the dataset root (`../../etc/passwd`, an absolute path, a link out).
    OutsideRoot,
}

#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub kind: ProblemKind,
    /// The file the record came from.
    pub file: PathBuf,
    /// Which record: its id when it has one, else its position in the file ("#12").
    pub record: Option<String>,
    pub message: String,
}

impl Problem {
    pub fn new(kind: ProblemKind, file: &Path, record: Option<String>, message: impl Into<String>) -> Self {
        Problem { kind, file: file.to_path_buf(), record, message: message.into() }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(r) = &self.record {
            write!(f, " record {r}")?;
        }
        write!(f, ": {}", self.message)
    }
}
