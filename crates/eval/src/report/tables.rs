//! The accuracy tables: one row per run, in Markdown and CSV.

use super::{Axis, Run};

pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn pct(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".to_string())
}

/// The columns of `axis` that any run measured, in the canonical order.
pub fn measured(runs: &[Run], axis: Axis) -> Vec<&'static str> {
    axis.names()
        .iter()
        .copied()
        .filter(|n| runs.iter().any(|r| r.summary.by_axis(axis).get(*n).is_some_and(|a| a.n > 0)))
        .collect()
}

fn cell(r: &Run, axis: Axis, name: &str) -> Option<f64> {
    r.summary.by_axis(axis).get(name).filter(|a| a.n > 0).map(|a| a.accuracy)
}

/// Runs overview: what was evaluated and the headline numbers.
pub fn runs_markdown(runs: &[Run]) -> String {
    let mut s = String::from("| run | model | prompt | trained on | n | accuracy | lenient | format rate | failed |\n|---|---|---|---|---:|---:|---:|---:|---:|\n");
    for r in runs {
        let m = &r.summary;
        s += &format!(
            "| {} | {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {} |\n",
            r.label,
            m.model,
            m.prompt,
            r.train_domain.as_deref().unwrap_or("-"),
            m.strict.overall.n,
            m.strict.overall.accuracy,
            m.lenient.overall.accuracy,
            m.format_rate,
            m.failed
        );
    }
    s
}

pub fn runs_csv(runs: &[Run]) -> String {
    let mut s =
        String::from("run,model,prompt,train_domain,n,accuracy,lenient_accuracy,format_rate,failed,tokens,seconds\n");
    for r in runs {
        let m = &r.summary;
        s += &format!(
            "{},{},{},{},{},{:.2},{:.2},{:.2},{},{},{:.1}\n",
            csv_field(&r.label),
            csv_field(&m.model),
            m.prompt,
            csv_field(r.train_domain.as_deref().unwrap_or("")),
            m.strict.overall.n,
            m.strict.overall.accuracy,
            m.lenient.overall.accuracy,
            m.format_rate,
            m.failed,
            m.tokens,
            m.seconds
        );
    }
    s
}

/// Accuracy per modality (or question type): one row per run, one column per domain, overall last.
pub fn breakdown_markdown(runs: &[Run], axis: Axis) -> String {
    let cols = measured(runs, axis);
    let mut s = format!("| run | {} | overall |\n|---|{}---:|\n", cols.join(" | "), "---:|".repeat(cols.len()));
    for r in runs {
        s += &format!(
            "| {} | {} | {:.1} |\n",
            r.label,
            cols.iter().map(|c| pct(cell(r, axis, c))).collect::<Vec<_>>().join(" | "),
            r.summary.strict.overall.accuracy
        );
    }
    s
}

pub fn breakdown_csv(runs: &[Run], axis: Axis) -> String {
    let cols = measured(runs, axis);
    let mut s = format!("run,{},overall\n", cols.iter().map(|c| csv_field(c)).collect::<Vec<_>>().join(","));
    for r in runs {
        s += &format!(
            "{},{},{:.2}\n",
            csv_field(&r.label),
            cols.iter()
                .map(|c| cell(r, axis, c).map(|v| format!("{v:.2}")).unwrap_or_default())
                .collect::<Vec<_>>()
                .join(","),
            r.summary.strict.overall.accuracy
        );
    }
    s
}
