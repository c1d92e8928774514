//! Paired comparisons: two sets of answers to the same records (two eval folders, two prompt
//! variants over a protocol's runs, a trained model against the base model), record by record —
//! the difference in accuracy with a paired bootstrap 95% interval and McNemar's exact p, overall,
//! per modality and per question type. Records only one side answered are counted and listed,
//! never silently dropped.

use super::matrix::{domain_of, RESAMPLES, SEED};
use super::Axis;
#[cfg(test)]
use crate::prediction::by_id;
use crate::prediction::Prediction;
use crate::statistics::{paired_bootstrap, PairedDifference};
use std::collections::{BTreeMap, HashMap};

pub struct Comparison {
    pub a: String,
    pub b: String,
    pub overall: PairedDifference,
    pub by_modality: BTreeMap<String, PairedDifference>,
    pub by_question_type: BTreeMap<String, PairedDifference>,
    /// Keys (record ids) answered by one side only.
    pub only_a: Vec<String>,
    pub only_b: Vec<String>,
}

/// Compares scored predictions keyed by record (the same key on both sides means the same
/// question).
pub fn compare(a: &HashMap<String, &Prediction>, b: &HashMap<String, &Prediction>, labels: (&str, &str)) -> Comparison {
    let mut keys: Vec<&String> = a.keys().filter(|k| b.contains_key(*k)).collect();
    keys.sort();
    let pair = |k: &String| (a[k].correct, b[k].correct);
    let group = |axis: Axis| {
        let mut g: BTreeMap<String, Vec<(bool, bool)>> = BTreeMap::new();
        for k in &keys {
            g.entry(domain_of(a[*k], axis).to_string()).or_default().push(pair(k));
        }
        g.into_iter().map(|(d, pairs)| (d, paired_bootstrap(&pairs, RESAMPLES, SEED))).collect()
    };
    let only = |x: &HashMap<String, &Prediction>, y: &HashMap<String, &Prediction>| {
        let mut v: Vec<String> = x.keys().filter(|k| !y.contains_key(*k)).cloned().collect();
        v.sort();
        v
    };
    Comparison {
        a: labels.0.to_string(),
        b: labels.1.to_string(),
        overall: paired_bootstrap(&keys.iter().map(|k| pair(k)).collect::<Vec<_>>(), RESAMPLES, SEED),
        by_modality: group(Axis::Modality),
        by_question_type: group(Axis::QuestionType),
        only_a: only(a, b),
        only_b: only(b, a),
    }
}

fn row(scope: &str, d: &PairedDifference) -> String {
    format!(
        "| {scope} | {} | {:.1} | {:.1} | {:+.1} [{:.1}, {:.1}]{} | {:.3} |\n",
        d.n,
        d.accuracy_a,
        d.accuracy_b,
        d.difference,
        d.ci_low,
        d.ci_high,
        if d.significant() { " *" } else { "" },
        d.p_value
    )
}

impl Comparison {
    pub fn to_markdown(&self) -> String {
        let mut s = format!(
            "| records | paired n | {} | {} | difference [95% CI] | McNemar p |\n|---|---:|---:|---:|---|---:|\n",
            self.a, self.b
        );
        s += &row("all", &self.overall);
        for (d, x) in self.by_modality.iter().chain(&self.by_question_type) {
            s += &row(d, x);
        }
        s += &format!(
            "\nPaired by record; intervals from {RESAMPLES} bootstrap resamples (seed {SEED}); `*`: the interval \
             excludes 0. Answered by one side only (left out of the pairs): {} only by {}, {} only by {}.\n",
            self.only_a.len(),
            self.a,
            self.only_b.len(),
            self.b
        );
        s
    }

    pub fn to_csv(&self) -> String {
        let mut s = String::from(
            "scope,group,n,accuracy_a,accuracy_b,difference,ci_low,ci_high,p_value,only_a_right,only_b_right\n",
        );
        let mut line = |scope: &str, g: &str, d: &PairedDifference| {
            s += &format!(
                "{scope},{},{},{:.2},{:.2},{:.2},{:.2},{:.2},{:.4},{},{}\n",
                super::tables::csv_field(g),
                d.n,
                d.accuracy_a,
                d.accuracy_b,
                d.difference,
                d.ci_low,
                d.ci_high,
                d.p_value,
                d.only_a_right,
                d.only_b_right
            );
        };
        line("overall", "all", &self.overall);
        for (g, d) in &self.by_modality {
            line("modality", g, d);
        }
        for (g, d) in &self.by_question_type {
            line("question_type", g, d);
        }
        s
    }

    /// The records only one side answered, one per line.
    pub fn unpaired_csv(&self) -> String {
        let mut s = String::from("answered_by,record\n");
        for (who, ids) in [(&self.a, &self.only_a), (&self.b, &self.only_b)] {
            for id in ids {
                s += &format!("{},{}\n", super::tables::csv_field(who), super::tables::csv_field(id));
            }
        }
        s
    }
}

/// A trained model's gain over the base model on the same test records.
pub struct Gain {
    pub trained_on: String,
    /// Test records of the training domain, of the other domains, and all.
    pub in_domain: PairedDifference,
    pub out_of_domain: PairedDifference,
    pub overall: PairedDifference,
}

/// Gains of each trained row over the `base` row, pairing their predictions by record.
pub fn gains_over_base(rows: &BTreeMap<String, HashMap<String, &Prediction>>, axis: Axis) -> Vec<Gain> {
    let Some(base) = rows.get(super::matrix::BASE) else { return Vec::new() };
    let mut out = Vec::new();
    for (domain, preds) in rows.iter().filter(|(d, _)| d.as_str() != super::matrix::BASE) {
        let mut parts: [Vec<(bool, bool)>; 2] = [Vec::new(), Vec::new()];
        let mut all = Vec::new();
        let mut ids: Vec<&String> = preds.keys().filter(|k| base.contains_key(*k)).collect();
        ids.sort();
        for id in ids {
            let (p, q) = (preds[id], base[id]);
            let inside = axis.canonical(domain_of(p, axis)) == axis.canonical(domain);
            parts[!inside as usize].push((p.correct, q.correct));
            all.push((p.correct, q.correct));
        }
        out.push(Gain {
            trained_on: domain.clone(),
            in_domain: paired_bootstrap(&parts[0], RESAMPLES, SEED),
            out_of_domain: paired_bootstrap(&parts[1], RESAMPLES, SEED),
            overall: paired_bootstrap(&all, RESAMPLES, SEED),
        });
    }
    out
}

pub fn gains_markdown(gains: &[Gain]) -> String {
    let cell = |d: &PairedDifference| {
        if d.n == 0 {
            "-".to_string()
        } else {
            format!(
                "{:+.1} [{:.1}, {:.1}]{} n={}",
                d.difference,
                d.ci_low,
                d.ci_high,
                if d.significant() { " *" } else { "" },
                d.n
            )
        }
    };
    let mut s = String::from(
        "| trained on | in-domain gain | out-of-domain gain | overall gain | overall p |\n|---|---|---|---|---:|\n",
    );
    for g in gains {
        s += &format!(
            "| {} | {} | {} | {} | {:.3} |\n",
            g.trained_on,
            cell(&g.in_domain),
            cell(&g.out_of_domain),
            cell(&g.overall),
            g.overall.p_value
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pred(id: &str, modality: &str, correct: bool) -> Prediction {
        Prediction {
            id: id.into(),
            modality: modality.into(),
            question_type: "Modality Recognition".into(),
            correct,
            ..Default::default()
        }
    }

    #[test]
    fn records_are_paired_by_id_and_the_unpaired_are_reported() {
        let a = [pred("1", "CT", true), pred("2", "CT", true), pred("3", "MRI", false), pred("4", "MRI", true)];
        let b = [pred("1", "CT", false), pred("2", "CT", true), pred("3", "MRI", false), pred("5", "MRI", true)];
        let c = compare(&by_id(&a), &by_id(&b), ("a", "b"));
        assert_eq!((c.overall.n, &c.only_a, &c.only_b), (3, &vec!["4".to_string()], &vec!["5".to_string()]));
        assert_eq!((c.overall.only_a_right, c.overall.only_b_right), (1, 0));
        assert!((c.overall.difference - 100.0 / 3.0).abs() < 1e-9);
        assert_eq!(c.by_modality["CT"].n, 2);
        assert_eq!(c.by_modality["MRI"].n, 1);
        assert!(c.unpaired_csv().contains("a,4\nb,5\n"));
        assert!(c.to_markdown().contains("1 only by a, 1 only by b"));
    }
}
