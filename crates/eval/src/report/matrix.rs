//! Generalization matrices as the paper draws them: rows are the domain a model was trained on,
//! columns the domain it was tested on, cells accuracy in percent; and the difference of two such
//! matrices (e.g. No-Think minus Think).

use super::{Axis, Run};
use crate::summary::Accuracy;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    pub title: String,
    pub rows: Vec<String>,
    pub cols: Vec<String>,
    /// cells[row][col]; None where no run tested that pair.
    pub cells: Vec<Vec<Option<f64>>>,
    /// Whether values are differences (drawn on a diverging scale, printed with a sign).
    pub signed: bool,
}

/// The cross-domain matrix of the runs made with `prompt` that name a training domain. Several
/// runs for the same training domain (e.g. one per test set) are pooled by counts.
pub fn cross_domain(runs: &[Run], axis: Axis, prompt: &str) -> Option<Matrix> {
    let mut pooled: BTreeMap<usize, BTreeMap<String, Accuracy>> = BTreeMap::new();
    for r in runs.iter().filter(|r| r.summary.prompt == prompt) {
        let Some(row) = r.train_domain.as_deref().and_then(|d| axis.position(d)) else { continue };
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
        .map(|r| cols.iter().map(|&c| pooled[r].get(names[c]).filter(|a| a.n > 0).map(|a| a.accuracy)).collect())
        .collect();
    Some(Matrix {
        title: format!("{} accuracy (%), prompt {prompt}", axis.title()),
        rows: rows.iter().map(|&i| names[i].to_string()).collect(),
        cols: cols.iter().map(|&i| names[i].to_string()).collect(),
        cells,
        signed: false,
    })
}

/// `a - b` on the pairs both measured.
pub fn difference(a: &Matrix, b: &Matrix, title: String) -> Matrix {
    let rows: Vec<String> = a.rows.iter().filter(|r| b.rows.contains(r)).cloned().collect();
    let cols: Vec<String> = a.cols.iter().filter(|c| b.cols.contains(c)).cloned().collect();
    let at = |m: &Matrix, r: &str, c: &str| -> Option<f64> {
        let i = m.rows.iter().position(|x| x == r)?;
        let j = m.cols.iter().position(|x| x == c)?;
        m.cells[i][j]
    };
    let cells = rows.iter().map(|r| cols.iter().map(|c| Some(at(a, r, c)? - at(b, r, c)?)).collect()).collect();
    Matrix { title, rows, cols, cells, signed: true }
}

impl Matrix {
    pub fn format(&self, v: Option<f64>) -> String {
        match v {
            None => "-".to_string(),
            Some(v) if self.signed => format!("{v:+.1}"),
            Some(v) => format!("{v:.1}"),
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
            s += &format!("| {r} | {} |\n", row.iter().map(|v| self.format(*v)).collect::<Vec<_>>().join(" | "));
        }
        s
    }

    pub fn to_csv(&self) -> String {
        let mut s = format!(
            "train_domain,{}\n",
            self.cols.iter().map(|c| super::tables::csv_field(c)).collect::<Vec<_>>().join(",")
        );
        for (r, row) in self.rows.iter().zip(&self.cells) {
            s += &format!(
                "{},{}\n",
                super::tables::csv_field(r),
                row.iter().map(|v| v.map(|x| format!("{x:.2}")).unwrap_or_default()).collect::<Vec<_>>().join(",")
            );
        }
        s
    }
}
