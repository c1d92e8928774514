//! The integration tests of this crate, gathered into one test binary (one link instead of one per file).

mod dicom;
mod dicom_codecs;
mod dicom_pipeline;
mod phantoms;
mod readers;
mod splits;
