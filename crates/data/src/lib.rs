//! Medical VQA data for medr1.
//!
//! - [`record`]: one multiple-choice question about one image; [`taxonomy`]: the 8 modalities and
//!   5 question types with OmniMedVQA's spellings.
//! - Readers: [`omnimedvqa`] (the native layout), [`medr1_split`] (Med-R1's split files), and
//!   [`source::load`] which recognises either from a path. Every skipped record is a [`problems::Problem`].
//! - [`image`]: PNG / JPEG / BMP / TIFF and DICOM ([`dicom`]) into the model's RGB images.
//! - [`split`]: seeded 80/20 per-question splits and Med-R1's two protocols; [`stats`]: the tables.
//! - [`prompts`]: Med-R1's Think / No-Think prompts, medr1's Think-After, and zero-shot.
//! - [`phantoms`]: the bundled benchmark, procedurally rendered, in OmniMedVQA's layout.
//! - [`contact_sheet`]: a picture of sample images with their questions.

pub mod by_domain;
pub mod contact_sheet;
pub mod dataset;
pub mod dicom;
pub mod image;
pub mod medr1_split;
pub mod omnimedvqa;
pub mod paths;
pub mod phantoms;
pub mod problems;
pub mod prompts;
pub mod record;
pub mod source;
pub mod split;
pub mod stats;
pub mod taxonomy;

pub use dataset::{Dataset, ReadOptions};
pub use problems::{Problem, ProblemKind};
pub use record::Record;
pub use taxonomy::{Modality, QuestionType};

use serde_json::Value;
use std::path::Path;

/// A JSON file that must hold a list; anything else is an `UnreadableFile` problem.
pub(crate) fn json_array(file: &Path) -> Result<Vec<Value>, Problem> {
    let bad = |m: String| Problem::new(ProblemKind::UnreadableFile, file, None, m);
    let text = std::fs::read_to_string(file).map_err(|e| bad(format!("cannot read: {e}")))?;
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Array(items)) => Ok(items),
        Ok(_) => Err(bad("not a JSON list of records".into())),
        Err(e) => Err(bad(format!("invalid JSON: {e}"))),
    }
}
