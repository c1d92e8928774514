//! Shared by the eval tests: the tiny checkpoint and a small phantom set.

#![allow(dead_code)]

use data::phantoms::{self, PhantomConfig};
use data::Record;
use std::path::{Path, PathBuf};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn model_dir() -> PathBuf {
    repo().join("crates/vlm/tests/fixtures/qwen2vl-tiny/model")
}

/// 40 phantom questions (one per modality x question type) at 56 px.
pub fn phantom_records(dir: &Path) -> Vec<Record> {
    phantoms::generate(
        &dir.join("phantoms"),
        &PhantomConfig { per_cell: 1, size: 56, seed: 3, fixed_options: false },
        &|_, _| {},
    )
    .unwrap()
}
