//! The integration tests of this crate, gathered into one test binary (one link instead of one per file).

mod cli;
mod data_cli;
mod dicom_cli;
mod eval_cli;
mod layout;
mod precision_demo;
mod serve_cli;
mod train_cli;
