//! How sure the model was of its answer: its probabilities over the option letters at the answer
//! position — the token that carries the first character of the word Med-R1's rule reads
//! (`<answer>\s*(\w+)\s*</answer>`). A byte-level tokenizer may fuse the letter with what precedes
//! it (`>A`, ` A`), so the alternatives compared are the tokens of the same shape: the same text
//! before the letter, each option's letter after it (`>A`, `>B`, `>C`). Their probabilities are
//! renormalised over the record's options: the model's distribution over the answers it could
//! have given there.

use std::collections::BTreeMap;

/// Option letters considered (records have at most this many options in practice).
pub const LETTERS: [char; 8] = ['A', 'B', 'C', 'D', 'E', 'F', 'G', 'H'];

/// A letter token's shape: the text before the letter (no letters or digits in it) and the letter.
/// `>A` -> (">", 'A'); ` C` -> (" ", 'C'); `Ab` or `A.` -> None.
pub fn letter_token(text: &str) -> Option<(String, char)> {
    let last = text.chars().last()?;
    let head = &text[..text.len() - last.len_utf8()];
    (LETTERS.contains(&last) && !head.chars().any(|c| c.is_alphanumeric())).then(|| (head.to_string(), last))
}

/// The byte offset, in `output`, of the word Med-R1's rule reads.
pub fn answer_offset(output: &str) -> Option<usize> {
    crate::extract::med_r1_answer_at(output).map(|(at, _)| at)
}

/// The index of the token whose text spans byte `offset`, given the decoded length of each
/// prefix of the completion (`prefix_len(k)` = bytes of the first k tokens' text).
pub fn token_at(offset: usize, tokens: usize, prefix_len: impl Fn(usize) -> usize) -> Option<usize> {
    (0..tokens).find(|&k| prefix_len(k + 1) > offset)
}

/// The distribution over the first `options` letters from `alternatives`: (letter, log-prob) of
/// the tokens shaped like the answer token. None when none of them has probability.
pub fn letter_distribution(alternatives: &[(char, f32)], options: usize) -> Option<BTreeMap<String, f64>> {
    let letters = &LETTERS[..options.min(LETTERS.len())];
    let mass: Vec<f64> = letters
        .iter()
        .map(|l| alternatives.iter().filter(|(a, _)| a == l).map(|(_, lp)| (*lp as f64).exp()).sum())
        .collect();
    let total: f64 = mass.iter().sum();
    if total.is_nan() || total <= 0.0 || total.is_infinite() {
        return None;
    }
    Some(letters.iter().zip(&mass).map(|(l, m)| (l.to_string(), m / total)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letter_tokens_have_a_head_and_a_letter() {
        assert_eq!(letter_token(">A"), Some((">".into(), 'A')));
        assert_eq!(letter_token(" C"), Some((" ".into(), 'C')));
        assert_eq!(letter_token("B"), Some(("".into(), 'B')));
        assert_eq!(letter_token("Ab"), None);
        assert_eq!(letter_token("xA"), None);
        assert_eq!(letter_token("Z"), None);
        assert_eq!(letter_token(""), None);
    }

    #[test]
    fn the_answer_token_is_the_one_spanning_the_word() {
        let out = "<think>x</think><answer> C</answer>";
        let off = answer_offset(out).unwrap();
        assert_eq!(&out[off..off + 1], "C");
        // Tokens "<think>x</think>", "<answer>", " C", "</answer>": the third spans it.
        let lens = [0, 16, 24, 26, 35];
        assert_eq!(token_at(off, 4, |k| lens[k]), Some(2));
        assert_eq!(answer_offset("C"), None);
    }

    #[test]
    fn letters_are_renormalised_over_the_options() {
        let ln = |p: f64| p.ln() as f32;
        // A: 0.2 (two forms: 0.1 + 0.1), B: 0.3, C: 0.3; E is not an option of this record.
        let alts = [('A', ln(0.1)), ('A', ln(0.1)), ('B', ln(0.3)), ('C', ln(0.3)), ('E', ln(0.5))];
        let d = letter_distribution(&alts, 3).unwrap();
        assert_eq!(d.len(), 3);
        assert!((d["A"] - 0.25).abs() < 1e-6 && (d["B"] - 0.375).abs() < 1e-6);
        assert!((d.values().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!(letter_distribution(&[('A', f32::NEG_INFINITY)], 1).is_none());
    }
}
