//! Something per modality, per question type and per data set — counts in `medr1 data stats`,
//! accuracies in an eval summary — kept and updated in one way. In JSON the three maps are
//! `by_modality`, `by_question_type` and `by_dataset` (flattened into the owner's object).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ByDomain<T> {
    /// Canonical modality name -> value.
    #[serde(rename = "by_modality")]
    pub modality: BTreeMap<String, T>,
    #[serde(rename = "by_question_type")]
    pub question_type: BTreeMap<String, T>,
    #[serde(rename = "by_dataset")]
    pub dataset: BTreeMap<String, T>,
}

impl<T: Default> ByDomain<T> {
    /// Applies `f` to the entries of a record's modality, question type (each when known) and
    /// data set, creating them as needed.
    pub fn update(&mut self, modality: Option<&str>, question_type: Option<&str>, dataset: &str, f: impl Fn(&mut T)) {
        if let Some(m) = modality {
            f(self.modality.entry(m.to_string()).or_default());
        }
        if let Some(q) = question_type {
            f(self.question_type.entry(q.to_string()).or_default());
        }
        f(self.dataset.entry(dataset.to_string()).or_default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_each_known_domain_and_serialises_flat_names() {
        let mut c = ByDomain::<usize>::default();
        c.update(Some("CT"), None, "A", |n| *n += 1);
        c.update(Some("CT"), Some("Modality Recognition"), "B", |n| *n += 1);
        assert_eq!(c.modality["CT"], 2);
        assert_eq!(c.question_type.len(), 1);
        assert_eq!((c.dataset["A"], c.dataset["B"]), (1, 1));
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["by_modality"]["CT"], 2);
        assert_eq!(serde_json::from_value::<ByDomain<usize>>(v).unwrap(), c);
    }
}
