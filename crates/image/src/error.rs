//! Image errors name what was being read (a file path or a request's part).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{file}: {msg}")]
    File { file: PathBuf, msg: String },
    #[error("{0}")]
    Input(String),
}

pub type Result<T> = std::result::Result<T, ImageError>;

impl ImageError {
    pub fn file(file: impl Into<PathBuf>, msg: impl std::fmt::Display) -> Self {
        ImageError::File { file: file.into(), msg: msg.to_string() }
    }
    pub fn input(msg: impl std::fmt::Display) -> Self {
        ImageError::Input(msg.to_string())
    }
}
