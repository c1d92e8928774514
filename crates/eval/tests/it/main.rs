//! The integration tests of this crate, gathered into one test binary (one link instead of one per file).

mod common;
mod dicom_view;
mod endpoint;
mod eval_local;
mod report;
