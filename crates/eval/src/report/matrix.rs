//! Generalization matrices as the paper draws them: rows are the domain a model was trained on,
//! columns the domain it was tested on, cells accuracy in percent with their Wilson 95% interval
//! and n; and the difference of two such matrices (e.g. No-Think minus Think), paired record by
//! record where the predictions are at hand (bootstrap interval, McNemar's p).

use super::{Axis, Run};
use crate::prediction::{by_id, Prediction};
use crate::statistics::{paired_bootstrap, PairedDifference};
use crate::summary::Accuracy;
use std::collections::{BTreeMap, HashMap};

/// Bootstrap resamples and seed of every paired interval in a report (fixed: a report is
/// reproducible).
pub const RESAMPLES: usize = 2000;
pub const SEED: u64 = 0;

/// One cell: a value with the records behind it and its 95% interval.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// Accuracy (percent) or difference (points).
    pub value: f64,
    /// Records tested (accuracies) or paired (differences).
    pub n: usize,
    /// Wilson (accuracies) or paired-bootstrap (differences) 95% interval; None for a difference
    /// of unpaired summaries.
    pub ci: Option<(f64, f64)>,
    /// McNemar's exact p-value (paired differences).
    pub p_value: Option<f64>,
}

impl Cell {
    pub fn accuracy(a: &Accuracy) -> Cell {
        Cell { value: a.accuracy, n: a.n, ci: Some(a.interval()), p_value: None }
    }

    pub fn paired(d: &PairedDifference) -> Cell {
        Cell { value: d.difference, n: d.n, ci: Some((d.ci_low, d.ci_high)), p_value: Some(d.p_value) }
    }

    /// Whether the interval excludes zero (a difference larger than its noise).
    pub fn excludes_zero(&self) -> bool {
        self.ci.is_some_and(|(lo, hi)| lo > 0.0 || hi < 0.0)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    pub title: String,
    pub rows: Vec<String>,
    pub cols: Vec<String>,
    /// cells[row][col]; None where no run tested that pair.
    pub cells: Vec<Vec<Option<Cell>>>,
    /// Whether values are differences (drawn on a diverging scale, printed with a sign).
    pub signed: bool,
}

/// The row label of the starting model's evaluations (`medr1 protocol`'s base row).
pub const BASE: &str = "base";

/// Where a training domain's row goes: the base model first, then the axis's canonical order.
fn row_key(axis: Axis, domain: &str) -> Option<usize> {
    if domain == BASE {
        Some(0)
    } else {
        axis.position(domain).map(|i| i + 1)
    }
}

fn row_name(axis: Axis, key: usize) -> String {
    if key == 0 {
        BASE.to_string()
    } else {
        axis.names()[key - 1].to_string()
    }
}

/// The cross-domain matrix of the runs made with `prompt` that name a training domain (the base
/// model's row first, when there is one). Several runs for the same training domain (e.g. one
/// per test set) are pooled by counts.
pub fn cross_domain(runs: &[Run], axis: Axis, prompt: &str) -> Option<Matrix> {
    let mut pooled: BTreeMap<usize, BTreeMap<String, Accuracy>> = BTreeMap::new();
    for r in runs.iter().filter(|r| r.summary.prompt == prompt) {
        let Some(row) = r.train_domain.as_deref().and_then(|d| row_key(axis, d)) else { continue };
        for (test, acc) in r.summary.by_axis(axis) {
            if axis.position(test).is_some() {
                pooled.entry(row).or_default().entry(test.clone()).or_default().merge(acc);
            }
        }
    }
    if pooled.is_empty() {
        return None;
    }
    let names = axis.names();
    let rows: Vec<usize> = pooled.keys().copied().collect();
    let mut cols: Vec<usize> = pooled.values().flat_map(|m| m.keys().filter_map(|k| axis.position(k))).collect();
    cols.sort_unstable();
    cols.dedup();
    let cells = rows
        .iter()
        .map(|r| cols.iter().map(|&c| pooled[r].get(names[c]).filter(|a| a.n > 0).map(Cell::accuracy)).collect())
        .collect();
    Some(Matrix {
        title: format!("{} accuracy (%), prompt {prompt}", axis.title()),
        rows: rows.iter().map(|&i| row_name(axis, i)).collect(),
        cols: cols.iter().map(|&i| names[i].to_string()).collect(),
        cells,
        signed: false,
    })
}

/// The test domain of a prediction along `axis`.
pub fn domain_of(p: &Prediction, axis: Axis) -> &str {
    match axis {
        Axis::Modality => &p.modality,
        Axis::QuestionType => &p.question_type,
    }
}

/// Scored predictions of the runs of `prompt` trained on each domain, by record id.
pub fn predictions_by_row<'a>(
    runs: &'a [Run],
    axis: Axis,
    prompt: &str,
) -> BTreeMap<String, HashMap<String, &'a Prediction>> {
    let mut out: BTreeMap<String, HashMap<String, &Prediction>> = BTreeMap::new();
    for r in runs.iter().filter(|r| r.summary.prompt == prompt) {
        let Some(row) = r.train_domain.as_deref().and_then(|d| row_key(axis, d)) else { continue };
        out.entry(row_name(axis, row)).or_default().extend(by_id(r.predictions.iter().flatten()));
    }
    out
}

/// `a - b`. Where both matrices' runs have their predictions, each cell pairs the records both
/// answered (paired bootstrap interval, McNemar's p); otherwise it is the difference of the two
/// accuracies, without an interval.
pub fn difference(runs: &[Run], axis: Axis, a: &Matrix, b: &Matrix, prompts: (&str, &str), title: String) -> Matrix {
    let rows: Vec<String> = a.rows.iter().filter(|r| b.rows.contains(r)).cloned().collect();
    let cols: Vec<String> = a.cols.iter().filter(|c| b.cols.contains(c)).cloned().collect();
    let at = |m: &Matrix, r: &str, c: &str| -> Option<f64> {
        let i = m.rows.iter().position(|x| x == r)?;
        let j = m.cols.iter().position(|x| x == c)?;
        m.cells[i][j].as_ref().map(|c| c.value)
    };
    let (pa, pb) = (predictions_by_row(runs, axis, prompts.0), predictions_by_row(runs, axis, prompts.1));
    let cells = rows
        .iter()
        .map(|r| {
            cols.iter()
                .map(|c| {
                    let unpaired = || Some(Cell { value: at(a, r, c)? - at(b, r, c)?, n: 0, ci: None, p_value: None });
                    let (Some(ia), Some(ib)) = (pa.get(r), pb.get(r)) else { return unpaired() };
                    let pairs: Vec<(bool, bool)> = ia
                        .iter()
                        .filter(|(_, p)| domain_of(p, axis) == c)
                        .filter_map(|(id, p)| ib.get(id).map(|q| (p.correct, q.correct)))
                        .collect();
                    if pairs.is_empty() {
                        return unpaired();
                    }
                    Some(Cell::paired(&paired_bootstrap(&pairs, RESAMPLES, SEED)))
                })
                .collect()
        })
        .collect();
    Matrix { title, rows, cols, cells, signed: true }
}

impl Matrix {
    /// The values alone (None where not measured).
    pub fn values(&self) -> Vec<Vec<Option<f64>>> {
        self.cells.iter().map(|r| r.iter().map(|c| c.as_ref().map(|c| c.value)).collect()).collect()
    }

    /// The value as a heatmap writes it (`80.0`, `+12.5`), a `*` after a difference whose
    /// interval excludes zero.
    pub fn format(&self, v: Option<&Cell>) -> String {
        match v {
            None => "-".to_string(),
            Some(c) if self.signed => format!("{:+.1}{}", c.value, if c.excludes_zero() { "*" } else { "" }),
            Some(c) => format!("{:.1}", c.value),
        }
    }

    /// The value with its interval and n, for tables: `80.0 [49.0, 94.3] n=10`.
    pub fn format_full(&self, v: Option<&Cell>) -> String {
        match v {
            None => "-".to_string(),
            Some(c) => {
                let mut s = self.format(v);
                if let Some((lo, hi)) = c.ci {
                    s += &format!(" [{lo:.1}, {hi:.1}]");
                }
                if c.n > 0 {
                    s += &format!(" n={}", c.n);
                }
                if let Some(p) = c.p_value {
                    s += &format!(" p={p:.3}");
                }
                s
            }
        }
    }

    /// Markdown: a header row of test domains, one row per training domain.
    pub fn to_markdown(&self) -> String {
        let mut s = format!(
            "| trained on \\ tested on | {} |\n|---|{}\n",
            self.cols.join(" | "),
            "---:|".repeat(self.cols.len())
        );
        for (r, row) in self.rows.iter().zip(&self.cells) {
            s += &format!(
                "| {r} | {} |\n",
                row.iter().map(|v| self.format_full(v.as_ref())).collect::<Vec<_>>().join(" | ")
            );
        }
        s
    }

    /// The values as a grid (what a spreadsheet wants).
    pub fn to_csv(&self) -> String {
        let mut s = format!(
            "train_domain,{}\n",
            self.cols.iter().map(|c| super::tables::csv_field(c)).collect::<Vec<_>>().join(",")
        );
        for (r, row) in self.values().iter().zip(&self.rows) {
            s += &format!(
                "{},{}\n",
                super::tables::csv_field(row),
                r.iter().map(|v| v.map(|x| format!("{x:.2}")).unwrap_or_default()).collect::<Vec<_>>().join(",")
            );
        }
        s
    }

    /// One line per cell with its interval, n and (differences) p-value.
    pub fn cells_csv(&self) -> String {
        let value = if self.signed { "difference" } else { "accuracy" };
        let mut s = format!("train_domain,test_domain,{value},ci_low,ci_high,n,p_value\n");
        for (r, row) in self.rows.iter().zip(&self.cells) {
            for (c, cell) in self.cols.iter().zip(row) {
                let Some(cell) = cell else { continue };
                let (lo, hi) =
                    cell.ci.map_or((String::new(), String::new()), |(l, h)| (format!("{l:.2}"), format!("{h:.2}")));
                let p = cell.p_value.map(|p| format!("{p:.4}")).unwrap_or_default();
                s += &format!(
                    "{},{},{:.2},{lo},{hi},{},{p}\n",
                    super::tables::csv_field(r),
                    super::tables::csv_field(c),
                    cell.value,
                    cell.n
                );
            }
        }
        s
    }
}
