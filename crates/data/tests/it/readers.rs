//! Readers on real Med-R1 split records and on a hand-made OmniMedVQA tree holding one record of
//! every kind of problem.

use data::record::{letter, options_text};
use data::{source, Modality, ProblemKind, QuestionType, ReadOptions};
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn json_list(path: &std::path::Path) -> Vec<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn all_thirteen_real_medr1_split_files_parse_with_the_counts_the_text_says() {
    let root = fixtures().join("medr1-splits");
    let mut files = Vec::new();
    for sub in ["modality/test", "q_type/test"] {
        for e in std::fs::read_dir(root.join(sub)).unwrap() {
            files.push(e.unwrap().path());
        }
    }
    files.sort();
    assert_eq!(files.len(), 13);
    let mut total = 0;
    for f in &files {
        let ds = source::load(f, &ReadOptions::default()).unwrap();
        assert!(ds.problems.is_empty(), "{}: {:?}", f.display(), ds.problems);
        let raw = json_list(f);
        assert_eq!(ds.records.len(), raw.len(), "{}", f.display());
        for (r, v) in ds.records.iter().zip(&raw) {
            let problem = v["problem"].as_str().unwrap();
            // Options: as many as there are "X)" markers after the question, in order.
            let markers = (0..4).filter(|&i| problem.contains(&format!("{})", letter(i)))).count();
            assert_eq!(r.options.len(), markers, "{problem}");
            // The problem text is rebuilt exactly from the parsed parts.
            assert_eq!(format!("{} {}", r.question, options_text(&r.options)), problem);
            assert_eq!(r.problem(), problem);
            // The gold letter is the one in the solution, and names an option.
            let sol = v["solution"].as_str().unwrap();
            assert_eq!(sol, format!("<answer> {} </answer>", r.gold_letter()));
            assert!(r.answer < r.options.len());
            assert_eq!(r.image, v["image"].as_str().unwrap());
            assert_eq!(r.dataset, r.image.split('/').nth(1).unwrap());
        }
        // The file name says the domain.
        let stem = f.file_stem().unwrap().to_string_lossy().replace("_test", "");
        if f.parent().unwrap().ends_with("modality/test") {
            let m = Modality::parse(&stem).unwrap();
            assert!(ds.records.iter().all(|r| r.modality == Some(m) && r.question_type.is_none()));
        } else {
            let q = QuestionType::parse(&stem).unwrap();
            assert!(ds.records.iter().all(|r| r.question_type == Some(q) && r.modality.is_none()));
        }
        total += ds.records.len();
    }
    assert_eq!(total, 13 * 60);
    // The folder as a whole: the same 780 records, and no image check without a root.
    let ds = source::load(&root, &ReadOptions { image_root: None, check_images: true }).unwrap();
    assert_eq!(ds.records.len(), 780);
    assert!(!ds.images_checked);
    // Option counts seen in the real data: 2, 3 and 4.
    let mut counts = [0; 5];
    for r in &ds.records {
        counts[r.options.len()] += 1;
    }
    assert_eq!(counts, [0, 0, 61, 5, 714]);
}

#[test]
fn split_records_without_images_are_reported_when_the_root_is_known() {
    let f = fixtures().join("medr1-splits/modality/test/CT_test.json");
    let ds = source::load(&f, &ReadOptions { image_root: Some(fixtures()), check_images: true }).unwrap();
    assert!(ds.images_checked);
    assert_eq!(ds.records.len(), 0);
    assert_eq!(ds.problems.len(), 60);
    assert!(ds
        .problems
        .iter()
        .all(|p| p.kind == ProblemKind::MissingImage && p.file == f && p.record.as_deref().unwrap().starts_with('#')));
}

#[test]
fn every_bad_omnimedvqa_record_is_reported_with_its_file_and_record() {
    let root = fixtures().join("omnimedvqa-bad");
    let ds = source::load(&root, &ReadOptions { image_root: None, check_images: true }).unwrap();
    let ids: Vec<&str> = ds.records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, vec!["demo_1", "demo_2", "demo_11"]);
    // demo_2 spells the key `modality`, and OmniMedVQA's truncated OCT name.
    assert_eq!(ds.records[1].modality, Some(Modality::Oct));
    assert_eq!(ds.records[1].options.len(), 4);
    assert_eq!(ds.records[1].gold_letter(), 'C');
    assert_eq!(ds.records[0].modality, Some(Modality::Mri));
    // " yes" matches the option "Yes" (case and spaces ignored when nothing matches exactly).
    assert_eq!(ds.records[2].gold_letter(), 'A');
    let qa = root.join("QA_information/Open-access");
    let got: Vec<(ProblemKind, String, Option<String>)> = ds
        .problems
        .iter()
        .map(|p| (p.kind, p.file.file_name().unwrap().to_string_lossy().into_owned(), p.record.clone()))
        .collect();
    let s = |x: &str| Some(x.to_string());
    let want = vec![
        (ProblemKind::UnreadableFile, "Broken.json".to_string(), None),
        (ProblemKind::UnknownModality, "Demo.json".to_string(), s("demo_3")),
        (ProblemKind::UnknownQuestionType, "Demo.json".to_string(), s("demo_4")),
        (ProblemKind::GoldNotAnOption, "Demo.json".to_string(), s("demo_5")),
        (ProblemKind::MissingImage, "Demo.json".to_string(), s("demo_7")),
        (ProblemKind::MissingField, "Demo.json".to_string(), s("demo_8")),
        (ProblemKind::BadOptions, "Demo.json".to_string(), s("demo_9")),
        (ProblemKind::BadOptions, "Demo.json".to_string(), s("demo_10")),
        (ProblemKind::MissingField, "Demo.json".to_string(), s("#10")),
        (ProblemKind::DuplicateId, "Demo_copy.json".to_string(), s("demo_1")),
        (ProblemKind::UnreadableFile, "NotAList.json".to_string(), None),
    ];
    assert_eq!(got, want);
    // Messages say what is wrong.
    let msg = |k: ProblemKind| ds.problems.iter().find(|p| p.kind == k).unwrap().to_string();
    assert!(msg(ProblemKind::UnknownModality).contains("`PET`"));
    assert!(msg(ProblemKind::GoldNotAnOption).contains("`Ultrasound`"));
    assert!(msg(ProblemKind::MissingField).contains("`question`"));
    assert!(msg(ProblemKind::MissingImage).contains("does_not_exist.png"));
    assert!(msg(ProblemKind::UnreadableFile).contains(&qa.join("Broken.json").display().to_string()));
    // Nothing is lost: every record in the files is either usable or a problem.
    let in_files = 11 + 1;
    let record_problems = ds.problems.iter().filter(|p| p.record.is_some()).count();
    assert_eq!(ds.records.len() + record_problems, in_files);
    // Per-file counts.
    let per_file: Vec<usize> = ds.files.iter().map(|(_, n)| *n).collect();
    assert_eq!(per_file, vec![0, 3, 0, 0]);
}

#[test]
fn a_single_native_qa_file_is_read_against_its_root() {
    let f = fixtures().join("omnimedvqa-bad/QA_information/Open-access/Demo.json");
    let ds = source::load(&f, &ReadOptions { image_root: None, check_images: true }).unwrap();
    assert_eq!(ds.records.len(), 3);
    assert!(ds.records[0].image_path.ends_with("omnimedvqa-bad/Images/Demo/img1.png"));
    assert!(ds.records[0].image_path.is_file());
    assert!(source::load(&fixtures().join("nothing-here"), &ReadOptions::default()).is_err());
}

#[test]
fn the_bundled_real_samples_read_cleanly_and_every_image_decodes() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../samples/real");
    let ds = source::load(&root, &ReadOptions { image_root: None, check_images: true }).unwrap();
    assert!(ds.problems.is_empty(), "{:?}", ds.problems);
    assert_eq!(ds.records.len(), 27);
    let images: std::collections::HashSet<_> = ds.records.iter().map(|r| r.image_path.clone()).collect();
    assert_eq!(images.len(), 13);
    for p in images {
        let img = data::image::open(&p).unwrap();
        assert!(img.width >= 100 && img.height >= 100, "{}", p.display());
    }
    // The manifest's modality agrees with every question's.
    let manifest: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(root.join("manifest.json")).unwrap()).unwrap();
    for r in &ds.records {
        let file = r.image.rsplit('/').next().unwrap();
        let entry = manifest.iter().find(|e| e["file"] == file).unwrap();
        assert_eq!(Modality::parse(entry["modality"].as_str().unwrap()), r.modality, "{}", r.id);
    }
}

/// Hostile records: an image path that leaves the dataset root (by `..`, absolutely, or through a
/// link) and text fields of the wrong JSON type are each reported as a problem of their own, never
/// counted as usable; the one good record stays.
#[test]
fn image_paths_outside_the_root_and_wrong_types_are_reported_per_record() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("OmniMedVQA");
    let qa = root.join("QA_information/Open-access");
    std::fs::create_dir_all(&qa).unwrap();
    std::fs::create_dir_all(root.join("Images/D")).unwrap();
    std::fs::write(root.join("Images/D/a.png"), b"x").unwrap();
    std::fs::write(tmp.path().join("outside.png"), b"x").unwrap();
    std::os::unix::fs::symlink(tmp.path().join("outside.png"), root.join("Images/D/link.png")).unwrap();
    let rec = |id: &str, image: serde_json::Value, question: serde_json::Value| {
        serde_json::json!({"question_id": id, "question": question, "gt_answer": "CT", "image_path": image,
            "question_type": "Modality Recognition", "modality_type": "CT", "option_A": "CT", "option_B": "MRI"})
    };
    let records = serde_json::json!([
        rec("good", "Images/D/a.png".into(), "Which modality?".into()),
        rec("dotdot", "../outside.png".into(), "Which modality?".into()),
        rec("absolute", "/etc/passwd".into(), "Which modality?".into()),
        rec("link", "Images/D/link.png".into(), "Which modality?".into()),
        rec("number", "Images/D/a.png".into(), 123.into()),
        rec("array", serde_json::json!(["Images/D/a.png"]), "Which modality?".into()),
    ]);
    std::fs::write(qa.join("D.json"), records.to_string()).unwrap();
    let ds = source::load(&root, &ReadOptions { image_root: None, check_images: true }).unwrap();
    assert_eq!(ds.records.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["good"]);
    let got: Vec<(ProblemKind, &str)> =
        ds.problems.iter().map(|p| (p.kind, p.record.as_deref().unwrap_or(""))).collect();
    assert_eq!(
        got,
        [
            (ProblemKind::OutsideRoot, "dotdot"),
            (ProblemKind::OutsideRoot, "absolute"),
            (ProblemKind::OutsideRoot, "link"),
            (ProblemKind::WrongType, "number"),
            (ProblemKind::WrongType, "array"),
        ]
    );
    assert!(ds.problems[3].message.contains("`question` is a number"), "{}", ds.problems[3]);
}
