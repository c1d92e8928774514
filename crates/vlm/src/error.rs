//! Errors that name the file and the key, so a user can fix a checkpoint without reading code.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum VlmError {
    #[error("{file}: missing key `{key}`")]
    MissingKey { file: PathBuf, key: String },
    #[error("{file}: key `{key}`: {msg}")]
    BadKey { file: PathBuf, key: String, msg: String },
    #[error("{file}: {msg}")]
    File { file: PathBuf, msg: String },
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Image(#[from] imaging::ImageError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, VlmError>;

impl VlmError {
    pub fn file(file: impl Into<PathBuf>, msg: impl std::fmt::Display) -> Self {
        VlmError::File { file: file.into(), msg: msg.to_string() }
    }
    pub fn input(msg: impl std::fmt::Display) -> Self {
        VlmError::Input(msg.to_string())
    }
}
