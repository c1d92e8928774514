//! Experiments built from the layers below: the bundled demo ([`demo`]: the main job on the
//! bundled default), Med-R1's cross-domain protocol ([`protocol`]: train per domain, test on
//! every domain, report) and training-curve plots ([`plot`]). Nothing here is needed to ask,
//! train, evaluate or serve; it composes `rl` and `eval`.

pub mod demo;
pub mod plot;
pub mod protocol;
