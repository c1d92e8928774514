//! The integration tests of this crate, gathered into one test binary (one link instead of one per file).

mod api;
mod load;
