//! One multiple-choice medical question about one image — the unit everything else reads.

use crate::taxonomy::{Modality, QuestionType};
use serde::Serialize;
use std::path::PathBuf;

pub const MAX_OPTIONS: usize = 4;
pub const MIN_OPTIONS: usize = 2;

/// The option letter for index `i` (0 -> 'A').
pub fn letter(i: usize) -> char {
    (b'A' + i as u8) as char
}

/// The index of an option letter ('A' -> 0), if it is one of the first `n`.
pub fn letter_index(c: char, n: usize) -> Option<usize> {
    let i = (c.to_ascii_uppercase() as u32).checked_sub('A' as u32)? as usize;
    (i < n).then_some(i)
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    pub id: String,
    /// The source data set (OmniMedVQA's `dataset`, e.g. "RadImageNet").
    pub dataset: String,
    /// None only for Med-R1 split records whose file does not say it (e.g. the question-type files).
    pub modality: Option<Modality>,
    pub question_type: Option<QuestionType>,
    /// The question without its options.
    pub question: String,
    /// 2 to 4 option texts, lettered A.. in this order.
    pub options: Vec<String>,
    /// Index of the correct option.
    pub answer: usize,
    /// Where the image is: as written in the source (relative to the data set root).
    pub image: String,
    /// The image's resolved location on disk.
    pub image_path: PathBuf,
}

impl Record {
    pub fn gold_letter(&self) -> char {
        letter(self.answer)
    }

    /// Med-R1's `problem` text: the question, a space, then `A)opt, B)opt, ...`.
    pub fn problem(&self) -> String {
        format!("{} {}", self.question, options_text(&self.options))
    }

    /// Med-R1's `solution` text.
    pub fn solution(&self) -> String {
        format!("<answer> {} </answer>", self.gold_letter())
    }
}

/// `A)opt, B)opt, C)opt` as Med-R1 writes the options after the question.
pub fn options_text(options: &[String]) -> String {
    options.iter().enumerate().map(|(i, o)| format!("{}){}", letter(i), o)).collect::<Vec<_>>().join(", ")
}

/// Splits a Med-R1 `problem` into the question and its options. The options are the tail
/// `A)opt, B)opt[, C)opt[, D)opt]]`; the `A)` that starts it is the last one preceded by a space
/// (or the start) and followed, in order, by `, B)` etc. Returns None when there is no such tail
/// with 2 to 4 options.
pub fn split_problem(problem: &str) -> Option<(String, Vec<String>)> {
    let starts: Vec<usize> =
        problem.match_indices("A)").map(|(i, _)| i).filter(|&i| i == 0 || problem[..i].ends_with(' ')).collect();
    for &a in starts.iter().rev() {
        let mut cuts = vec![a];
        let mut from = a + 2;
        for l in 1..MAX_OPTIONS {
            let marker = format!(", {})", letter(l));
            match problem[from..].find(&marker) {
                Some(off) => {
                    cuts.push(from + off);
                    from = from + off + marker.len();
                }
                None => break,
            }
        }
        if cuts.len() < MIN_OPTIONS {
            continue;
        }
        let mut options = Vec::new();
        for (k, &c) in cuts.iter().enumerate() {
            let body_start = if k == 0 { c + 2 } else { c + 4 };
            let end = cuts.get(k + 1).copied().unwrap_or(problem.len());
            options.push(problem[body_start..end].to_string());
        }
        let question = problem[..a].trim_end().to_string();
        return Some((question, options));
    }
    None
}

/// Parses Med-R1's `<answer> X </answer>` (spaces optional) into a letter.
pub fn parse_solution(solution: &str) -> Option<char> {
    let s = solution.trim();
    let inner = s.strip_prefix("<answer>")?.strip_suffix("</answer>")?.trim();
    let mut chars = inner.chars();
    let c = chars.next()?;
    (chars.next().is_none() && c.is_ascii_alphabetic()).then(|| c.to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_round_trips_through_split() {
        let p = "What is the stage of the cancer in this image? A)Stage Ib of Small cell carcinoma of the right hilum., B)Stage Ic, C)Stage IIIa, D)Stage IVc.";
        let (q, o) = split_problem(p).unwrap();
        assert_eq!(q, "What is the stage of the cancer in this image?");
        assert_eq!(
            o,
            vec!["Stage Ib of Small cell carcinoma of the right hilum.", "Stage Ic", "Stage IIIa", "Stage IVc."]
        );
        assert_eq!(format!("{q} {}", options_text(&o)), p);
    }

    #[test]
    fn a_paren_inside_the_question_is_not_the_options() {
        let p = "Is finding A) or B) visible? A)Yes, B)No";
        let (q, o) = split_problem(p).unwrap();
        assert_eq!(q, "Is finding A) or B) visible?");
        assert_eq!(o, vec!["Yes", "No"]);
        assert!(split_problem("What is shown? A)Only one").is_none());
        assert!(split_problem("No options at all").is_none());
    }

    #[test]
    fn solutions_and_letters() {
        assert_eq!(parse_solution("<answer> B </answer>"), Some('B'));
        assert_eq!(parse_solution("<answer>c</answer>"), Some('C'));
        assert_eq!(parse_solution("<answer> BC </answer>"), None);
        assert_eq!(parse_solution("B"), None);
        assert_eq!(letter_index('D', 4), Some(3));
        assert_eq!(letter_index('D', 3), None);
        assert_eq!(letter_index('b', 2), Some(1));
    }
}
