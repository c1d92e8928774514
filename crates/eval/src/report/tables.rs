//! The accuracy tables: one row per run, in Markdown and CSV.

use super::{Axis, Run};
use crate::summary::Accuracy;

pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The columns of `axis` that any run measured, in the canonical order.
pub fn measured(runs: &[Run], axis: Axis) -> Vec<&'static str> {
    axis.names()
        .iter()
        .copied()
        .filter(|n| runs.iter().any(|r| r.summary.by_axis(axis).get(*n).is_some_and(|a| a.n > 0)))
        .collect()
}

fn cell<'a>(r: &'a Run, axis: Axis, name: &str) -> Option<&'a Accuracy> {
    r.summary.by_axis(axis).get(name).filter(|a| a.n > 0)
}

/// `80.0 [49.0, 94.3] n=10`, or `-` when not measured.
fn full(a: Option<&Accuracy>) -> String {
    a.map(|a| format!("{} n={}", a.with_interval(), a.n)).unwrap_or_else(|| "-".to_string())
}

/// CSV columns for an accuracy: value, interval and n (empty when not measured).
fn csv_cols(a: Option<&Accuracy>) -> String {
    match a {
        Some(a) => {
            let (lo, hi) = a.interval();
            format!("{:.2},{lo:.2},{hi:.2},{}", a.accuracy, a.n)
        }
        None => ",,,".to_string(),
    }
}

/// Runs overview: what was evaluated and the headline numbers.
pub fn runs_markdown(runs: &[Run]) -> String {
    let mut s = String::from("| run | model | prompt | trained on | n | accuracy | 95% CI | lenient | format rate | ECE | failed |\n|---|---|---|---|---:|---:|---|---:|---:|---:|---:|\n");
    for r in runs {
        let m = &r.summary;
        let (lo, hi) = m.strict.overall.interval();
        s += &format!(
            "| {} | {} | {} | {} | {} | {:.1} | [{lo:.1}, {hi:.1}] | {:.1} | {:.1} | {} | {} |\n",
            r.label,
            m.model,
            m.prompt,
            r.train_domain.as_deref().unwrap_or("-"),
            m.strict.overall.n,
            m.strict.overall.accuracy,
            m.lenient.overall.accuracy,
            m.format_rate,
            m.calibration.as_ref().map(|c| format!("{:.1}", c.ece)).unwrap_or_else(|| "-".into()),
            m.failed
        );
    }
    s
}

pub fn runs_csv(runs: &[Run]) -> String {
    let mut s = String::from(
        "run,model,prompt,train_domain,n,accuracy,ci_low,ci_high,lenient_accuracy,format_rate,ece,failed,tokens,seconds\n",
    );
    for r in runs {
        let m = &r.summary;
        let (lo, hi) = m.strict.overall.interval();
        s += &format!(
            "{},{},{},{},{},{:.2},{lo:.2},{hi:.2},{:.2},{:.2},{},{},{},{:.1}\n",
            csv_field(&r.label),
            csv_field(&m.model),
            m.prompt,
            csv_field(r.train_domain.as_deref().unwrap_or("")),
            m.strict.overall.n,
            m.strict.overall.accuracy,
            m.lenient.overall.accuracy,
            m.format_rate,
            m.calibration.as_ref().map(|c| format!("{:.2}", c.ece)).unwrap_or_default(),
            m.failed,
            m.tokens,
            m.seconds
        );
    }
    s
}

/// Accuracy per modality (or question type) with its interval and n: one row per run, one column
/// per domain, overall last.
pub fn breakdown_markdown(runs: &[Run], axis: Axis) -> String {
    let cols = measured(runs, axis);
    let mut s = format!("| run | {} | overall |\n|---|{}---:|\n", cols.join(" | "), "---:|".repeat(cols.len()));
    for r in runs {
        s += &format!(
            "| {} | {} | {} |\n",
            r.label,
            cols.iter().map(|c| full(cell(r, axis, c))).collect::<Vec<_>>().join(" | "),
            full(Some(&r.summary.strict.overall))
        );
    }
    s
}

/// The same in CSV: for each domain (and overall) four columns: accuracy, ci_low, ci_high, n.
pub fn breakdown_csv(runs: &[Run], axis: Axis) -> String {
    let cols = measured(runs, axis);
    let header: Vec<String> = cols
        .iter()
        .map(|c| c.to_string())
        .chain(["overall".to_string()])
        .map(|c| {
            let c = csv_field(&c);
            format!("{c},{c}_ci_low,{c}_ci_high,{c}_n")
        })
        .collect();
    let mut s = format!("run,{}\n", header.join(","));
    for r in runs {
        s += &format!(
            "{},{},{}\n",
            csv_field(&r.label),
            cols.iter().map(|c| csv_cols(cell(r, axis, c))).collect::<Vec<_>>().join(","),
            csv_cols(Some(&r.summary.strict.overall))
        );
    }
    s
}
