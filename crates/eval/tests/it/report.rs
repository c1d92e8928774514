//! `medr1 report` on hand-made eval folders: the tables, the pooled cross-domain matrix, the
//! No-Think minus Think difference, and figures whose cells carry the right colours and values.

use eval::report::{self, heatmap, matrix, Axis, ReportOptions};
use eval::{Accuracy, Summary};
use std::path::Path;

fn acc(correct: usize, n: usize) -> Accuracy {
    Accuracy::of(correct, n)
}

/// An eval folder whose model was tested on CT and MRI questions.
fn eval_dir(
    root: &Path,
    name: &str,
    prompt: &str,
    domain: Option<&str>,
    ct: (usize, usize),
    mri: (usize, usize),
) -> String {
    let mut s = Summary {
        prompt: prompt.into(),
        model: format!("model-{name}"),
        train_domain: domain.map(String::from),
        ..Summary::default()
    };
    s.strict.by.modality.insert("CT".into(), acc(ct.0, ct.1));
    s.strict.by.modality.insert("MRI".into(), acc(mri.0, mri.1));
    s.strict.overall = acc(ct.0 + mri.0, ct.1 + mri.1);
    s.strict.by.question_type.insert("Modality Recognition".into(), s.strict.overall.clone());
    s.lenient.overall = s.strict.overall.clone();
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("summary.json"), serde_json::to_string(&s).unwrap()).unwrap();
    dir.display().to_string()
}

#[test]
fn matrices_tables_and_figures() {
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path();
    let specs = vec![
        eval_dir(r, "think-ct", "think", Some("CT"), (8, 10), (2, 10)),
        eval_dir(r, "think-mri", "think", Some("MRI"), (3, 10), (9, 10)),
        // Two runs for the same training domain pool their counts: (6 + 2) / (10 + 10) = 40%.
        eval_dir(r, "nothink-ct-a", "nothink", Some("CT"), (10, 10), (6, 10)),
        eval_dir(r, "nothink-ct-b", "nothink", None, (0, 10), (2, 10)),
        eval_dir(r, "nothink-mri", "nothink", Some("MRI"), (5, 10), (10, 10)),
    ];
    // The folder without a training domain gets one on the command line.
    let mut specs: Vec<String> = specs;
    specs[3] = format!("CT={}", specs[3]);
    let runs: Vec<_> = specs.iter().map(|s| report::load_run(s).unwrap()).collect();
    assert_eq!(runs[3].train_domain.as_deref(), Some("CT"));
    assert_eq!(runs[3].label, "nothink-ct-b");

    let think = matrix::cross_domain(&runs, Axis::Modality, "think").unwrap();
    assert_eq!(think.rows, ["CT", "MRI"]);
    assert_eq!(think.cols, ["CT", "MRI"]);
    assert_eq!(think.values(), vec![vec![Some(80.0), Some(20.0)], vec![Some(30.0), Some(90.0)]]);
    // Every cell carries its n and Wilson interval (8/10: 49.0 to 94.3, by hand).
    let ct = think.cells[0][0].as_ref().unwrap();
    assert_eq!(ct.n, 10);
    let (lo, hi) = ct.ci.unwrap();
    assert!((lo - 49.02).abs() < 0.01 && (hi - 94.33).abs() < 0.01, "{lo} {hi}");
    let nothink = matrix::cross_domain(&runs, Axis::Modality, "nothink").unwrap();
    assert_eq!(nothink.values(), vec![vec![Some(50.0), Some(40.0)], vec![Some(50.0), Some(100.0)]]);

    let out = r.join("report");
    let files = report::write_report(&runs, &ReportOptions { out: out.clone(), axis: None, diff: None }).unwrap();
    let names: Vec<String> = files.iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()).collect();
    for want in [
        "report.md",
        "runs.csv",
        "by_modality.csv",
        "by_question_type.csv",
        "by_modality.png",
        "by_modality.svg",
        "matrix_think.csv",
        "matrix_think.png",
        "matrix_think.svg",
        "matrix_nothink.png",
        "diff_nothink_minus_think.csv",
        "diff_nothink_minus_think.png",
        "diff_nothink_minus_think.svg",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
    }
    assert_eq!(
        std::fs::read_to_string(out.join("diff_nothink_minus_think.csv")).unwrap(),
        "train_domain,CT,MRI\nCT,-30.00,20.00\nMRI,20.00,10.00\n"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("by_modality.csv")).unwrap().lines().nth(1).unwrap(),
        "think-ct,80.00,49.02,94.33,10,20.00,5.67,50.98,10,50.00,29.93,70.07,20"
    );
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        md.contains(
            "| trained on \\ tested on | CT | MRI |\n|---|---:|---:|\n| CT | 80.0 [49.0, 94.3] n=10 | 20.0 [5.7, 51.0] n=10 |\n| MRI | 30.0 [10.8, 60.3] n=10 | 90.0 [59.6, 98.2] n=10 |"
        ),
        "{md}"
    );
    assert!(md.contains("| CT | -30.0 | +20.0 |"), "{md}");
    assert!(md.contains("| think-ct | model-think-ct | think | CT | 20 | 50.0 |"), "{md}");

    // The heatmap's cells: colour from the value, the value written in the cell.
    let svg = std::fs::read_to_string(out.join("matrix_think.svg")).unwrap();
    for v in ["80.0", "20.0", "30.0", "90.0"] {
        assert!(svg.contains(&format!(">{v}</text>")), "{v} not written in the SVG");
    }
    let png = image::open(out.join("matrix_think.png")).unwrap().to_rgb8();
    let l = heatmap::layout(&think);
    assert_eq!((png.width(), png.height()), ((l.width * 2.0).ceil() as u32, (l.height * 2.0).ceil() as u32));
    // A 90% cell is darker than a 20% one: sample each cell's corner, away from its text.
    let dark = |p: image::Rgb<u8>| p.0.iter().map(|&c| c as u32).sum::<u32>();
    let corner = |row: usize, col: usize| {
        let (x, y) = l.cell_origin(row, col);
        *png.get_pixel((x * 2.0) as u32 + 6, (y * 2.0) as u32 + 6)
    };
    assert!(
        dark(corner(1, 1)) < dark(corner(0, 0)) && dark(corner(0, 0)) < dark(corner(0, 1)),
        "{:?} {:?} {:?}",
        corner(1, 1),
        corner(0, 0),
        corner(0, 1)
    );
    let diff = image::open(out.join("diff_nothink_minus_think.png")).unwrap().to_rgb8();
    let (x, y) = l.cell_origin(0, 0);
    let loss = diff.get_pixel((x * 2.0) as u32 + 6, (y * 2.0) as u32 + 6).0;
    assert!(loss[0] > loss[2], "a loss is drawn red: {loss:?}");

    // An explicit difference that has no matrix is an error naming what exists.
    let err = report::write_report(
        &runs,
        &ReportOptions { out: r.join("r2"), axis: None, diff: Some(("thinkafter".into(), "think".into())) },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("have: nothink, think"), "{err}");
    // Not an eval folder: the error names the file.
    let err = report::load_run(&r.join("nope").display().to_string()).err().unwrap().to_string();
    assert!(err.contains("nope/summary.json"), "{err}");
}

fn pred(id: usize, modality: &str, correct: bool, prompt: &str, confidence: f64) -> eval::prediction::Prediction {
    eval::prediction::Prediction {
        id: format!("r{id}"),
        modality: modality.into(),
        question_type: "Modality Recognition".into(),
        prompt: prompt.into(),
        extracted: Some(if correct { "A" } else { "B" }.into()),
        gold: "A".into(),
        correct,
        lenient_correct: correct,
        confidence: Some(confidence),
        ..Default::default()
    }
}

/// An eval folder holding `preds` (predictions.jsonl and the summary computed from them).
fn pred_dir(root: &Path, name: &str, domain: &str, preds: &[eval::prediction::Prediction]) -> String {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    eval::prediction::append(&dir.join("predictions.jsonl"), preds).unwrap();
    let s = Summary {
        prompt: preds[0].prompt.clone(),
        train_domain: Some(domain.into()),
        ..Summary::from_predictions(preds)
    };
    std::fs::write(dir.join("summary.json"), serde_json::to_string(&s).unwrap()).unwrap();
    dir.display().to_string()
}

#[test]
fn paired_differences_gains_and_calibration_from_predictions() {
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path();
    // 60 CT and 60 MRI questions. The base model gets 30 right on each; the CT-trained model gets
    // 55 CT (+25 points: far outside the noise) and 28 MRI right; under "think" the CT model gets
    // 54 CT: a 1-point difference, well inside it. One record answered only under nothink.
    let set = |prompt: &str, ct_right: usize, mri_right: usize| -> Vec<eval::prediction::Prediction> {
        (0..120)
            .map(|i| {
                let (m, k) = if i < 60 { ("CT", i) } else { ("MRI", i - 60) };
                let right = k < if m == "CT" { ct_right } else { mri_right };
                pred(i, m, right, prompt, if right { 0.9 } else { 0.6 })
            })
            .collect()
    };
    let mut nothink_ct = set("nothink", 55, 28);
    nothink_ct.push(pred(999, "CT", true, "nothink", 0.9));
    let runs: Vec<_> = [
        pred_dir(r, "base", "base", &set("nothink", 30, 30)),
        pred_dir(r, "nothink-ct", "CT", &nothink_ct),
        pred_dir(r, "think-ct", "CT", &set("think", 54, 28)),
    ]
    .iter()
    .map(|d| report::load_run(d).unwrap())
    .collect();
    let out = r.join("report");
    let o =
        ReportOptions { out: out.clone(), axis: Some(Axis::Modality), diff: Some(("nothink".into(), "think".into())) };
    report::write_report(&runs, &o).unwrap();
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    // The base row comes first and the CT model's gain over it is significant in-domain only.
    let nothink = matrix::cross_domain(&runs, Axis::Modality, "nothink").unwrap();
    assert_eq!(nothink.rows, ["base", "CT"]);
    assert!(md.contains("Gain over the base model, prompt nothink"), "{md}");
    assert!(md.contains("| CT | +41.7 ["), "in-domain gain (55 - 30) / 60 = +41.7 points: {md}");
    // The paired difference matrix: CT/CT differs by 1 record of 60 (+1.7, interval spans 0).
    let cells = std::fs::read_to_string(out.join("diff_nothink_minus_think_cells.csv")).unwrap();
    let ct = cells.lines().find(|l| l.starts_with("CT,CT,")).unwrap();
    let f: Vec<&str> = ct.split(',').collect();
    assert_eq!((f[2], f[5]), ("1.67", "60"), "{ct}");
    assert!(f[3].parse::<f64>().unwrap() <= 0.0 && f[4].parse::<f64>().unwrap() > 0.0, "{ct}");
    assert_eq!(f[6], "1.0000", "one discordant pair: McNemar p = 1");
    // The pooled comparison reports the record only one side answered.
    let unpaired = std::fs::read_to_string(out.join("compare_nothink_vs_think_unpaired.csv")).unwrap();
    assert!(unpaired.contains("nothink,CT/r999"), "{unpaired}");
    // Calibration: these answers are 0.9 confident and right, or 0.6 and wrong.
    assert!(md.contains("## Calibration"), "{md}");
    assert!(out.join("reliability_nothink-ct.png").exists() && out.join("coverage.png").exists());
    assert!(out.join("reliability_nothink-ct_by_modality.png").exists());
    let s = &runs[1].summary;
    let cal = s.calibration.as_ref().unwrap();
    // ECE: right answers at 0.9 (bin accuracy 1: gap 0.1), wrong at 0.6 (gap 0.6), weighted.
    let right = 55 + 28 + 1;
    let want = 100.0 * (right as f64 * 0.1 + (121 - right) as f64 * 0.6) / 121.0;
    assert!((cal.ece - want).abs() < 1e-9, "{} vs {want}", cal.ece);
    assert_eq!(s.coverage.iter().find(|p| p.threshold == 0.7).unwrap().answered, right);

    // Two folders named directly: compared record by record.
    let o = ReportOptions { out: r.join("cmp"), axis: None, diff: Some(("nothink-ct".into(), "base".into())) };
    report::write_report(&runs, &o).unwrap();
    let csv = std::fs::read_to_string(r.join("cmp/compare_nothink-ct_vs_base.csv")).unwrap();
    let all = csv.lines().nth(1).unwrap();
    assert!(all.starts_with("overall,all,120,"), "{all}");
}
