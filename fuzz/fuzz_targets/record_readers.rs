//! The OmniMedVQA QA-information reader and the Med-R1 split reader on any file: records or
//! problems (each bad record reported), never a panic; every record the readers keep is whole.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::collections::HashSet;

fuzz_target!(|input: &[u8]| {
    let dir = std::env::temp_dir().join(format!("medr1-fuzz-records-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let file = dir.join("records.json");
    std::fs::write(&file, input).unwrap();
    let opts = data::dataset::ReadOptions { image_root: Some(dir.clone()), check_images: false };
    let mut ds = data::dataset::Dataset::default();
    data::omnimedvqa::read_file_into(&file, &dir, &opts, &mut HashSet::new(), &mut ds);
    let split = data::medr1_split::read_file(&file, &opts);
    for r in ds.records.iter().chain(split.records.iter()) {
        assert!((2..=4).contains(&r.options.len()) && r.answer < r.options.len(), "{r:?}");
    }
});
