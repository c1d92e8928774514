//! Med-R1's protocols written from a phantom set and read back.

use data::medr1_split;
use data::phantoms::{self, PhantomConfig};
use data::{source, split, Modality, QuestionType, ReadOptions};
use std::collections::HashSet;

#[test]
fn protocols_are_80_20_per_domain_disjoint_complete_seeded_and_readable() {
    let src = tempfile::tempdir().unwrap();
    let recs = phantoms::generate(
        src.path(),
        &PhantomConfig { per_cell: 6, size: 32, seed: 2, fixed_options: false },
        &|_, _| {},
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let written = split::write_protocols(&recs, src.path(), out.path(), 42).unwrap();
    assert_eq!(written.len(), 13);
    // Med-R1's file names.
    for name in [
        "modality/train/CT_train.json",
        "modality/test/X-Ray_test.json",
        "modality/test/ultrasound_test.json",
        "q_type/train/Lesion Grading_train.json",
        "q_type/test/Other Biological Attributes_test.json",
    ] {
        assert!(out.path().join(name).is_file(), "{name}");
    }
    let opts = ReadOptions { image_root: None, check_images: true };
    for m in Modality::ALL {
        let tr =
            medr1_split::read_file(&out.path().join(format!("modality/train/{}_train.json", m.medr1_stem())), &opts);
        let te = medr1_split::read_file(&out.path().join(format!("modality/test/{}_test.json", m.medr1_stem())), &opts);
        assert!(tr.images_checked && tr.problems.is_empty() && te.problems.is_empty());
        // 30 records per modality: 6 test, 24 train, no overlap, nothing lost.
        assert_eq!((tr.records.len(), te.records.len()), (24, 6), "{m}");
        let a: HashSet<_> = tr.records.iter().map(|r| r.id.clone()).collect();
        let b: HashSet<_> = te.records.iter().map(|r| r.id.clone()).collect();
        assert!(a.is_disjoint(&b));
        let all: HashSet<_> = recs.iter().filter(|r| r.modality == Some(m)).map(|r| r.id.clone()).collect();
        assert_eq!(&a | &b, all);
        // Records survive the round trip whole (question, options, gold, modality, type).
        for r in tr.records.iter().chain(&te.records) {
            let orig = recs.iter().find(|o| o.id == r.id).unwrap();
            assert_eq!(
                (&r.question, &r.options, r.answer, r.modality, r.question_type),
                (&orig.question, &orig.options, orig.answer, orig.modality, orig.question_type)
            );
            assert_eq!(r.image_path, std::fs::canonicalize(src.path()).unwrap().join(&orig.image));
        }
    }
    for q in QuestionType::ALL {
        let te = medr1_split::read_file(&out.path().join(format!("q_type/test/{}_test.json", q.medr1_stem())), &opts);
        assert_eq!(te.records.len(), 10, "{q}: 48 records, 20% = 9.6 -> 10");
    }
    // The folder reads as a whole (each record once per protocol) with the stats tables.
    let ds = source::load(out.path(), &opts).unwrap();
    assert_eq!(ds.records.len(), 2 * 240);
    assert!(ds.images_checked);
    let md = std::fs::read_to_string(out.path().join("stats.md")).unwrap();
    // q_type protocol, test: 20% of each type's 48 records.
    assert!(md.contains("## q_type protocol, test") && md.contains("| total | 10 | 10 | 10 | 10 | 10 | 50 |"), "{md}");
    // modality protocol, test: 6 of each modality's 30, in an 8-row table.
    let section = md.split("## modality protocol, test").nth(1).unwrap().split("##").next().unwrap();
    assert!(section.lines().filter(|l| l.ends_with(" 6 |")).count() == 8 && section.contains(" 48 |"), "{section}");
    // Seeded: the same seed writes the same files, another seed other test sets.
    let again = tempfile::tempdir().unwrap();
    split::write_protocols(&recs, src.path(), again.path(), 42).unwrap();
    let other = tempfile::tempdir().unwrap();
    split::write_protocols(&recs, src.path(), other.path(), 43).unwrap();
    let f = "modality/test/CT_test.json";
    let read = |d: &std::path::Path| std::fs::read(d.join(f)).unwrap();
    assert_eq!(read(out.path()), read(again.path()));
    assert_ne!(read(out.path()), read(other.path()));
}
