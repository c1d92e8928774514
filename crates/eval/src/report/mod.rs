//! `medr1 report`: from one or more `medr1 eval` folders, the paper's tables and figures.
//!
//! Writes into the output folder:
//! - `report.md` — every table below, in Markdown;
//! - `runs.csv`, `by_modality.csv`, `by_question_type.csv` — one row per run;
//! - `by_modality.png` / `.svg` — per-modality accuracy of all runs side by side;
//! - for each prompt variant whose runs name a training domain: `matrix_<prompt>.csv|png|svg`,
//!   the cross-domain matrix (rows: trained on, columns: tested on);
//! - for two prompt variants with matrices: `diff_<a>_minus_<b>.csv|png|svg`, paired record by
//!   record (`*`: the bootstrap interval excludes 0), and the pooled paired comparison;
//! - `--diff A,B` naming two runs: `compare_<A>_vs_<B>.csv` (and `_unpaired.csv`);
//! - with a `base` row (`medr1 protocol`): the gain of each trained model over it;
//! - for runs with confidences: `reliability_<run>.png|svg` (and `_by_modality`), `coverage.png|svg`, ECE and
//!   accuracy-at-coverage tables.
//!
//! Every accuracy carries its Wilson 95% interval and n (`*_cells.csv` for matrices).

pub mod bars;
pub mod canvas;
pub mod compare;
pub mod heatmap;
pub mod matrix;
pub mod reliability;
pub mod tables;

pub use crate::axis::Axis;
use crate::prediction::Prediction;
use crate::summary::Summary;
use anyhow::{bail, Context, Result};
use canvas::{Canvas, Png, Svg};
use data::QuestionType;
use matrix::Matrix;
use std::path::{Path, PathBuf};

/// Column header for a domain: question types by their initials (MR, AI, DD, LG, OBA), so a
/// 5-column matrix stays narrow; modalities as they are.
pub fn short_name(name: &str) -> String {
    if QuestionType::parse(name).is_some() && name.contains(' ') {
        name.split_whitespace().filter_map(|w| w.chars().next()).collect()
    } else {
        name.to_string()
    }
}

/// One evaluation folder.
pub struct Run {
    pub label: String,
    pub dir: PathBuf,
    pub summary: Summary,
    /// Canonical training-domain name, from `DOMAIN=DIR` or the summary's `train_domain`.
    pub train_domain: Option<String>,
    /// The folder's `predictions.jsonl`, when it has one (paired comparisons need it).
    pub predictions: Option<Vec<Prediction>>,
}

/// Reads `DIR` or `DOMAIN=DIR` (the training domain of the model evaluated there).
pub fn load_run(spec: &str) -> Result<Run> {
    let (domain, dir) = match spec.split_once('=') {
        Some((d, p)) if !Path::new(spec).exists() => (Some(d.to_string()), PathBuf::from(p)),
        _ => (None, PathBuf::from(spec)),
    };
    let path = dir.join("summary.json");
    let summary: Summary = vlm::json::read_json(&path, "a medr1 eval summary")
        .with_context(|| format!("{}: is {} a `medr1 eval` folder?", path.display(), dir.display()))?;
    let train_domain = domain.or_else(|| summary.train_domain.clone());
    let label = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| dir.display().to_string());
    let pred_path = dir.join("predictions.jsonl");
    let predictions = if pred_path.exists() {
        let (preds, torn) = crate::prediction::read(&pred_path)?;
        for t in torn {
            eprintln!("ignored: {t}");
        }
        Some(preds)
    } else {
        None
    };
    Ok(Run { label, dir, summary, train_domain, predictions })
}

pub struct ReportOptions {
    pub out: PathBuf,
    /// The matrices' axis; inferred from the training-domain names when not given.
    pub axis: Option<Axis>,
    /// `a - b`: two runs' labels (a paired comparison of the two folders) or two prompt variants
    /// (the difference matrix and the pooled comparison); by default nothink - think when both
    /// have matrices, else the two variants present in name order.
    pub diff: Option<(String, String)>,
}

fn infer_axis(runs: &[Run]) -> Result<Option<Axis>> {
    // The base model's row belongs to either axis.
    let domains: Vec<&str> =
        runs.iter().filter_map(|r| r.train_domain.as_deref()).filter(|d| *d != matrix::BASE).collect();
    if domains.is_empty() {
        return Ok(None);
    }
    for axis in [Axis::Modality, Axis::QuestionType] {
        if domains.iter().all(|d| axis.position(d).is_some()) {
            return Ok(Some(axis));
        }
    }
    bail!("training domains {domains:?} are neither all modalities nor all question types (give --axis)")
}

fn write_figure(out: &Path, stem: &str, size: (f64, f64), draw: &dyn Fn(&mut dyn Canvas)) -> Result<Vec<PathBuf>> {
    let mut svg = Svg::new(size.0, size.1);
    draw(&mut svg);
    let mut png = Png::new(size.0, size.1);
    draw(&mut png);
    let (s, p) = (out.join(format!("{stem}.svg")), out.join(format!("{stem}.png")));
    std::fs::write(&s, svg.finish()).with_context(|| format!("{}: cannot write", s.display()))?;
    png.img.save(&p).with_context(|| format!("{}: cannot write", p.display()))?;
    Ok(vec![p, s])
}

fn write_matrix(out: &Path, stem: &str, m: &Matrix, md: &mut String, files: &mut Vec<PathBuf>) -> Result<()> {
    let note = if m.signed {
        "Cells: difference [paired bootstrap 95% CI] n=paired records p=McNemar's exact p; `*`: the interval excludes 0."
    } else {
        "Cells: accuracy [Wilson 95% CI] n=test questions."
    };
    *md += &format!("\n## {}\n\n{note}\n\n{}", m.title, m.to_markdown());
    let csv = out.join(format!("{stem}.csv"));
    std::fs::write(&csv, m.to_csv())?;
    files.push(csv);
    let cells = out.join(format!("{stem}_cells.csv"));
    std::fs::write(&cells, m.cells_csv())?;
    files.push(cells);
    let l = heatmap::layout(m);
    files.extend(write_figure(out, stem, (l.width, l.height), &|c| heatmap::draw(m, c))?);
    Ok(())
}

/// Writes every table and figure; returns the files written.
pub fn write_report(runs: &[Run], o: &ReportOptions) -> Result<Vec<PathBuf>> {
    if runs.is_empty() {
        bail!("no runs given");
    }
    std::fs::create_dir_all(&o.out)?;
    let mut files = Vec::new();
    let mut md = format!("# medr1 report\n\nAccuracy in percent under Med-R1's rule (`<answer>\\s*(\\w+)\\s*</answer>` equals the gold letter); \"lenient\" also reads answers outside that format (see `medr1 eval --help`).\n\n## Runs\n\n{}", tables::runs_markdown(runs));
    std::fs::write(o.out.join("runs.csv"), tables::runs_csv(runs))?;
    files.push(o.out.join("runs.csv"));
    for axis in [Axis::Modality, Axis::QuestionType] {
        if tables::measured(runs, axis).is_empty() {
            continue;
        }
        let title = match axis {
            Axis::Modality => "Accuracy by modality",
            Axis::QuestionType => "Accuracy by question type",
        };
        md += &format!("\n## {title}\n\n{}", tables::breakdown_markdown(runs, axis));
        let csv = o.out.join(format!("{}.csv", axis.file_stem()));
        std::fs::write(&csv, tables::breakdown_csv(runs, axis))?;
        files.push(csv);
    }
    let groups: Vec<String> = tables::measured(runs, Axis::Modality).iter().map(|s| s.to_string()).collect();
    if !groups.is_empty() {
        let b = bars::Bars {
            title: "Accuracy by modality (%)".to_string(),
            series: runs
                .iter()
                .map(|r| {
                    (
                        format!("{} ({})", r.label, r.summary.prompt),
                        groups
                            .iter()
                            .map(|g| {
                                r.summary.strict.by.modality.get(g).filter(|a| a.n > 0).map(|a| {
                                    let (low, high) = a.interval();
                                    bars::BarValue { value: a.accuracy, low, high }
                                })
                            })
                            .collect(),
                    )
                })
                .collect(),
            groups,
        };
        files.extend(write_figure(&o.out, "by_modality", bars::size(&b), &|c| bars::draw(&b, c))?);
        md += "\n![accuracy by modality](by_modality.png)\n";
    }
    md += &calibration_section(runs, &o.out, &mut files)?;
    // Two runs named on the command line: compare those folders record by record.
    if let Some((a, b)) = &o.diff {
        let find = |l: &str| runs.iter().find(|r| r.label == l);
        if let (Some(ra), Some(rb)) = (find(a), find(b)) {
            md += &compare_runs(ra, rb, &o.out, &mut files)?;
            let md_path = o.out.join("report.md");
            std::fs::write(&md_path, md)?;
            files.insert(0, md_path);
            return Ok(files);
        }
    }
    let axis = match o.axis {
        Some(a) => Some(a),
        None => infer_axis(runs)?,
    };
    if let Some(axis) = axis {
        let mut prompts: Vec<String> =
            runs.iter().filter(|r| r.train_domain.is_some()).map(|r| r.summary.prompt.clone()).collect();
        prompts.sort();
        prompts.dedup();
        let mut matrices = Vec::new();
        for p in &prompts {
            if let Some(m) = matrix::cross_domain(runs, axis, p) {
                let stem = format!("matrix_{p}");
                write_matrix(&o.out, &stem, &m, &mut md, &mut files)?;
                md += &format!("\n![{}]({stem}.png)\n", m.title);
                md += &gains_section(runs, axis, p);
                matrices.push((p.clone(), m));
            }
        }
        let pair = match &o.diff {
            Some(d) => Some(d.clone()),
            None if matrices.iter().any(|(p, _)| p == "nothink") && matrices.iter().any(|(p, _)| p == "think") => {
                Some(("nothink".to_string(), "think".to_string()))
            }
            None if matrices.len() == 2 => Some((matrices[0].0.clone(), matrices[1].0.clone())),
            None => None,
        };
        if let Some((a, b)) = pair {
            let find = |p: &str| matrices.iter().find(|(q, _)| q == p).map(|(_, m)| m);
            match (find(&a), find(&b)) {
                (Some(ma), Some(mb)) => {
                    let title = format!("{}: {a} minus {b} (points)", axis.title());
                    let d = matrix::difference(runs, axis, ma, mb, (&a, &b), title);
                    let stem = format!("diff_{a}_minus_{b}");
                    write_matrix(&o.out, &stem, &d, &mut md, &mut files)?;
                    md += &format!("\n![{}]({stem}.png)\n", d.title);
                    md += &pooled_prompt_comparison(runs, axis, (&a, &b), &o.out, &mut files)?;
                }
                _ => bail!(
                    "--diff {a},{b}: a matrix needs runs with a training domain for both prompts (have: {})",
                    matrices.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>().join(", ")
                ),
            }
        }
    }
    let md_path = o.out.join("report.md");
    std::fs::write(&md_path, md)?;
    files.insert(0, md_path);
    Ok(files)
}

/// ECE per run and per modality, accuracy at coverage, reliability diagrams and coverage curves,
/// for the runs whose predictions carry confidences.
fn calibration_section(runs: &[Run], out: &Path, files: &mut Vec<PathBuf>) -> Result<String> {
    let with: Vec<&Run> = runs.iter().filter(|r| r.summary.calibration.is_some()).collect();
    if with.is_empty() {
        return Ok(String::new());
    }
    let mut md = String::from(
        "\n## Calibration\n\nConfidence: the model's probability of the answer it gave, over the option letters at the \
         answer position. ECE: expected calibration error over 10 equal-width bins, in points.\n\n",
    );
    let modalities: Vec<String> = {
        let mut m: Vec<String> = with.iter().flat_map(|r| r.summary.calibration_by_modality.keys().cloned()).collect();
        m.sort();
        m.dedup();
        m
    };
    md += &format!(
        "| run | n | ECE | {} |\n|---|---:|---:|{}\n",
        modalities.join(" | "),
        "---:|".repeat(modalities.len())
    );
    for r in &with {
        let c = r.summary.calibration.as_ref().unwrap();
        let per: Vec<String> = modalities
            .iter()
            .map(|m| {
                r.summary.calibration_by_modality.get(m).map_or("-".into(), |c| format!("{:.1} (n={})", c.ece, c.n))
            })
            .collect();
        md += &format!("| {} | {} | {:.1} | {} |\n", r.label, c.n, c.ece, per.join(" | "));
    }
    let thresholds: Vec<f64> = with[0].summary.coverage.iter().map(|p| p.threshold).collect();
    md += &format!(
        "\nAccuracy at coverage (answer only when confidence >= t): accuracy % (coverage %)\n\n| run | {} |\n|---|{}\n",
        thresholds.iter().map(|t| format!("t={t:.1}")).collect::<Vec<_>>().join(" | "),
        "---:|".repeat(thresholds.len())
    );
    for r in &with {
        let cells: Vec<String> = r
            .summary
            .coverage
            .iter()
            .map(|p| if p.answered == 0 { "- (0)".into() } else { format!("{:.1} ({:.0})", p.accuracy, p.coverage) })
            .collect();
        md += &format!("| {} | {} |\n", r.label, cells.join(" | "));
    }
    for r in &with {
        let stem = format!("reliability_{}", file_safe(&r.label));
        let cal = r.summary.calibration.clone().unwrap();
        files.extend(write_figure(out, &stem, reliability::reliability_size(), &|c| {
            reliability::draw_reliability(&r.label, &cal, c)
        })?);
        md += &format!("\n![reliability of {}]({stem}.png)\n", r.label);
        let per: Vec<(String, crate::statistics::Calibration)> =
            r.summary.calibration_by_modality.iter().map(|(m, c)| (m.clone(), c.clone())).collect();
        if !per.is_empty() {
            let grid = format!("{stem}_by_modality");
            files.extend(write_figure(out, &grid, reliability::grid_size(per.len()), &|c| {
                reliability::draw_reliability_grid(&r.label, &per, c)
            })?);
            md += &format!("\n![reliability of {} per modality]({grid}.png)\n", r.label);
        }
    }
    let curves: Vec<(String, Vec<crate::statistics::CoveragePoint>)> =
        with.iter().map(|r| (r.label.clone(), r.summary.coverage.clone())).collect();
    files.extend(write_figure(out, "coverage", reliability::coverage_size(&curves), &|c| {
        reliability::draw_coverage(&curves, c)
    })?);
    md += "\n![accuracy at coverage](coverage.png)\n";
    Ok(md)
}

/// A label usable in a file or folder name (letters, digits, `-`, `_`; anything else `_`).
pub fn file_safe(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

fn write_comparison(c: &compare::Comparison, stem: &str, out: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    for (name, text) in [(format!("{stem}.csv"), c.to_csv()), (format!("{stem}_unpaired.csv"), c.unpaired_csv())] {
        let p = out.join(name);
        std::fs::write(&p, text).with_context(|| format!("{}: cannot write", p.display()))?;
        files.push(p);
    }
    Ok(())
}

/// Two eval folders over the same records, compared record by record.
fn compare_runs(a: &Run, b: &Run, out: &Path, files: &mut Vec<PathBuf>) -> Result<String> {
    let (Some(pa), Some(pb)) = (&a.predictions, &b.predictions) else {
        bail!("--diff {},{}: both folders need their predictions.jsonl to be paired", a.label, b.label);
    };
    let c = compare::compare(&crate::prediction::by_id(pa), &crate::prediction::by_id(pb), (&a.label, &b.label));
    let stem = format!("compare_{}_vs_{}", file_safe(&a.label), file_safe(&b.label));
    write_comparison(&c, &stem, out, files)?;
    Ok(format!("\n## {} minus {}, paired by record\n\n{}", a.label, b.label, c.to_markdown()))
}

/// Two prompt variants over every training domain's runs: pairs are (training domain, record).
fn pooled_prompt_comparison(
    runs: &[Run],
    axis: Axis,
    (a, b): (&str, &str),
    out: &Path,
    files: &mut Vec<PathBuf>,
) -> Result<String> {
    let flat = |p: &str| -> std::collections::HashMap<String, &Prediction> {
        matrix::predictions_by_row(runs, axis, p)
            .into_iter()
            .filter(|(row, _)| row != matrix::BASE)
            .flat_map(|(row, m)| m.into_iter().map(move |(id, p)| (format!("{row}/{id}"), p)))
            .collect()
    };
    let (fa, fb) = (flat(a), flat(b));
    if fa.is_empty() || fb.is_empty() {
        return Ok(String::new());
    }
    let c = compare::compare(&fa, &fb, (a, b));
    write_comparison(&c, &format!("compare_{a}_vs_{b}"), out, files)?;
    Ok(format!(
        "\n### {a} minus {b}, all training domains pooled, paired by (training domain, record)\n\n{}",
        c.to_markdown()
    ))
}

/// The gain of each trained model over the base model (`medr1 protocol`'s base row).
fn gains_section(runs: &[Run], axis: Axis, prompt: &str) -> String {
    let rows = matrix::predictions_by_row(runs, axis, prompt);
    let gains = compare::gains_over_base(&rows, axis);
    if gains.is_empty() {
        return String::new();
    }
    format!(
        "\n### Gain over the base model, prompt {prompt}\n\nEach trained model against the starting checkpoint on the same \
         test questions: points [paired bootstrap 95% CI]; `*`: the interval excludes 0.\n\n{}",
        compare::gains_markdown(&gains)
    )
}
