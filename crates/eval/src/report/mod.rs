//! `medr1 report`: from one or more `medr1 eval` folders, the paper's tables and figures.
//!
//! Writes into the output folder:
//! - `report.md` — every table below, in Markdown;
//! - `runs.csv`, `by_modality.csv`, `by_question_type.csv` — one row per run;
//! - `by_modality.png` / `.svg` — per-modality accuracy of all runs side by side;
//! - for each prompt variant whose runs name a training domain: `matrix_<prompt>.csv|png|svg`,
//!   the cross-domain matrix (rows: trained on, columns: tested on);
//! - for two prompt variants with matrices: `diff_<a>_minus_<b>.csv|png|svg`.

pub mod bars;
pub mod canvas;
pub mod heatmap;
pub mod matrix;
pub mod tables;

pub use crate::axis::Axis;
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
    Ok(Run { label, dir, summary, train_domain })
}

pub struct ReportOptions {
    pub out: PathBuf,
    /// The matrices' axis; inferred from the training-domain names when not given.
    pub axis: Option<Axis>,
    /// Difference matrix `a - b` between two prompt variants; by default nothink - think when
    /// both have matrices, else the two variants present in name order.
    pub diff: Option<(String, String)>,
}

fn infer_axis(runs: &[Run]) -> Result<Option<Axis>> {
    let domains: Vec<&str> = runs.iter().filter_map(|r| r.train_domain.as_deref()).collect();
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
    *md += &format!("\n## {}\n\n{}", m.title, m.to_markdown());
    let csv = out.join(format!("{stem}.csv"));
    std::fs::write(&csv, m.to_csv())?;
    files.push(csv);
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
                            .map(|g| r.summary.strict.by.modality.get(g).filter(|a| a.n > 0).map(|a| a.accuracy))
                            .collect(),
                    )
                })
                .collect(),
            groups,
        };
        files.extend(write_figure(&o.out, "by_modality", bars::size(&b), &|c| bars::draw(&b, c))?);
        md += "\n![accuracy by modality](by_modality.png)\n";
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
                    let d = matrix::difference(ma, mb, format!("{}: {a} minus {b} (points)", axis.title()));
                    let stem = format!("diff_{a}_minus_{b}");
                    write_matrix(&o.out, &stem, &d, &mut md, &mut files)?;
                    md += &format!("\n![{}]({stem}.png)\n", d.title);
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
