//! The integration tests of this crate, gathered into one test binary (one link instead of one per file).

mod dicom;
mod phantoms;
mod readers;
mod splits;
mod dicom_codecs;
