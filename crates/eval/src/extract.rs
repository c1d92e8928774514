//! Reading the chosen option out of a model's output.
//!
//! - **Med-R1's rule** ([`med_r1_answer`]): the word inside the first `<answer> X </answer>`
//!   (`<answer>\s*(\w+)\s*</answer>`), compared with the gold letter exactly. This is the number
//!   the paper reports. Med-R1's released No-Think scripts compared the *raw output* with the
//!   letter instead, which scores `<answer>C</answer>` wrong; medr1 applies the tag rule to every
//!   prompt variant.
//! - **Lenient** ([`lenient_answer`]): for models that were never taught the format (zero-shot,
//!   the 72B comparator) a second, separately reported reading. In order, the first that gives an
//!   option:
//!   1. Med-R1's rule, when its word is one of the options' letters (any case);
//!   2. the text inside the first `<answer>...</answer>` (newlines allowed), read as below;
//!   3. the whole output, read as below.
//!
//!   "Read as below": a lone letter (`C`, `c`, `(C)`, `C)`, `C.`); an upper-case letter opening the
//!   text followed by `)`, `.` or `:` (`C) Brain`, `B. MRI`); "answer is C" / "answer: C"; and
//!   finally an option's text, when exactly one option's text occurs (whole words, any case; an
//!   option contained in another matched option does not count).

use regex::Regex;
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

fn re(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pattern).expect("valid pattern"))
}

/// The word in the first `<answer> X </answer>`, as Med-R1's evaluation reads it, with its
/// byte offset in `output` (where the model's answer token is: see `crate::confidence`).
pub fn med_r1_answer_at(output: &str) -> Option<(usize, String)> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let m = re(&RE, r"<answer>\s*(\w+)\s*</answer>").captures(output)?.get(1)?;
    Some((m.start(), m.as_str().to_string()))
}

/// The word in the first `<answer> X </answer>`, as Med-R1's evaluation reads it.
pub fn med_r1_answer(output: &str) -> Option<String> {
    med_r1_answer_at(output).map(|(_, w)| w)
}

/// How the lenient reading found its letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Med-R1's tag rule.
    Tag,
    /// A letter inside an answer tag that the strict rule missed (`<answer>(c)</answer>`).
    TagLetter,
    /// An option's text inside an answer tag.
    TagText,
    /// A letter in the output without tags.
    Letter,
    /// An option's text in the output without tags.
    Text,
}

/// The option index `letter` names among `n` options.
fn index_of(letter: char, n: usize) -> Option<usize> {
    data::record::letter_index(letter, n)
}

/// A letter stated in `text`: alone, opening it as `C)`, or after "answer is".
fn stated_letter(text: &str, n: usize) -> Option<usize> {
    static LONE: OnceLock<Regex> = OnceLock::new();
    static OPENING: OnceLock<Regex> = OnceLock::new();
    static ANSWER_IS: OnceLock<Regex> = OnceLock::new();
    let t = text.trim();
    if let Some(c) = re(&LONE, r"^[\(\[]?([A-Za-z])[\)\]\.:]?$").captures(t) {
        return index_of(c[1].chars().next()?, n);
    }
    if let Some(c) = re(&OPENING, r"^[\(\[]?([A-Z])[\)\]\.:](\s|$)").captures(t) {
        return index_of(c[1].chars().next()?, n);
    }
    if let Some(c) = re(&ANSWER_IS, r"(?i:answer)\s*(?:(?i:is)\s*|:\s*)(?i:option\s*)?[\(\[]?([A-Z])\b").captures(t) {
        return index_of(c[1].chars().next()?, n);
    }
    None
}

fn normalise(s: &str) -> String {
    s.to_lowercase().split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ")
}

/// The one option whose text occurs in `text` (whole words, any case).
fn stated_option(text: &str, options: &[String]) -> Option<usize> {
    let hay = format!(" {} ", normalise(text));
    let norm: Vec<String> = options.iter().map(|o| normalise(o)).collect();
    let found: Vec<usize> =
        (0..options.len()).filter(|&i| !norm[i].is_empty() && hay.contains(&format!(" {} ", norm[i]))).collect();
    // "Lung" inside a matched "Lung cancer" is not a second answer.
    let kept: Vec<usize> = found
        .iter()
        .copied()
        .filter(|&i| {
            !found.iter().any(|&j| {
                j != i && norm[j].len() > norm[i].len() && format!(" {} ", norm[j]).contains(&format!(" {} ", norm[i]))
            })
        })
        .collect();
    match kept.as_slice() {
        [one] => Some(*one),
        _ => None,
    }
}

/// The lenient reading: (option index, how it was found).
pub fn lenient_answer(output: &str, options: &[String]) -> Option<(usize, Method)> {
    let n = options.len();
    if let Some(w) = med_r1_answer(output) {
        let mut cs = w.chars();
        if let (Some(c), None) = (cs.next(), cs.next()) {
            if let Some(i) = index_of(c, n) {
                return Some((i, Method::Tag));
            }
        }
    }
    static TAG: OnceLock<Regex> = OnceLock::new();
    if let Some(c) = re(&TAG, r"(?s)<answer>(.*?)</answer>").captures(output) {
        if let Some(i) = stated_letter(&c[1], n) {
            return Some((i, Method::TagLetter));
        }
        if let Some(i) = stated_option(&c[1], options) {
            return Some((i, Method::TagText));
        }
    }
    static TAGS: OnceLock<Regex> = OnceLock::new();
    let bare = re(&TAGS, r"</?(answer|think)>").replace_all(output, " ");
    if let Some(i) = stated_letter(&bare, n) {
        return Some((i, Method::Letter));
    }
    stated_option(&bare, options).map(|i| (i, Method::Text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn med_r1_rule_on_every_shape() {
        assert_eq!(med_r1_answer("<answer>C</answer>").as_deref(), Some("C"));
        assert_eq!(med_r1_answer("<answer> C </answer>").as_deref(), Some("C"));
        assert_eq!(med_r1_answer("<think>x</think>\n<answer>\nB\n</answer>").as_deref(), Some("B"));
        assert_eq!(med_r1_answer("<answer>C</answer><answer>D</answer>").as_deref(), Some("C"));
        assert_eq!(med_r1_answer("<answer>c</answer>").as_deref(), Some("c"));
        // \w+ cannot match "C)" or "(C)" or two words: no answer.
        assert_eq!(med_r1_answer("<answer>C)</answer>"), None);
        assert_eq!(med_r1_answer("<answer>(C)</answer>"), None);
        assert_eq!(med_r1_answer("<answer>Lung cancer</answer>"), None);
        assert_eq!(med_r1_answer("C"), None);
        assert_eq!(med_r1_answer(""), None);
        // A whole word is taken: "Brain" is not the letter B.
        assert_eq!(med_r1_answer("<answer>Brain</answer>").as_deref(), Some("Brain"));
    }

    #[test]
    fn lenient_reading_of_real_output_shapes() {
        let o = opts(&["CT", "MRI", "X-ray", "Ultrasound"]);
        assert_eq!(lenient_answer("<answer> B </answer>", &o), Some((1, Method::Tag)));
        assert_eq!(lenient_answer("<answer>c</answer>", &o), Some((2, Method::Tag)));
        assert_eq!(lenient_answer("<answer>(C)</answer>", &o), Some((2, Method::TagLetter)));
        assert_eq!(lenient_answer("<answer>D) Ultrasound</answer>", &o), Some((3, Method::TagLetter)));
        assert_eq!(lenient_answer("<answer>MRI</answer>", &o), Some((1, Method::TagText)));
        assert_eq!(
            lenient_answer("<think>T2 bright fluid</think><answer>\nmri\n</answer>", &o),
            Some((1, Method::TagText))
        );
        assert_eq!(lenient_answer("B", &o), Some((1, Method::Letter)));
        assert_eq!(lenient_answer(" b.\n", &o), Some((1, Method::Letter)));
        assert_eq!(lenient_answer("A) CT", &o), Some((0, Method::Letter)));
        assert_eq!(lenient_answer("The answer is D.", &o), Some((3, Method::Letter)));
        assert_eq!(lenient_answer("Answer: (C)", &o), Some((2, Method::Letter)));
        assert_eq!(lenient_answer("This image is an ultrasound scan of the liver.", &o), Some((3, Method::Text)));
        // An article is not a letter; two options named is no answer; an empty output is none.
        assert_eq!(lenient_answer("A scan that could be CT or MRI", &o), None);
        assert_eq!(lenient_answer("", &o), None);
        // A letter beyond the options is not an answer.
        assert_eq!(lenient_answer("<answer>E</answer>", &o), None);
        // With several tags the first one counts.
        assert_eq!(lenient_answer("<answer>A</answer> <answer>B</answer>", &o), Some((0, Method::Tag)));
    }

    #[test]
    fn option_contained_in_another_is_not_a_second_answer() {
        let o = opts(&["Lung", "Lung cancer", "Normal"]);
        assert_eq!(lenient_answer("Findings suggest lung cancer.", &o), Some((1, Method::Text)));
        assert_eq!(lenient_answer("the lung looks normal", &o), None);
        let yn = opts(&["Yes", "No"]);
        assert_eq!(lenient_answer("<answer>yes</answer>", &yn), Some((0, Method::TagText)));
        assert_eq!(lenient_answer("No, there is no tumour.", &yn), Some((1, Method::Text)));
    }
}
