//! Rewards for multiple-choice answers, exactly as Med-R1 computed them (DESIGN.md in the shared design notes):
//!
//! - accuracy: the text inside the first `<answer>(.*?)</answer>` (`.` not matching newlines),
//!   stripped, equals the gold letter exactly; without such a match the whole stripped completion
//!   is compared, so a bare `C` scores 1 and `<answer>\nC\n</answer>` scores 0.
//! - format: a full match of `<think>.*?</think>\s*<answer>.*?</answer>` (Think),
//!   `\s*<answer>.*?</answer>` (No-Think) or `<answer>.*?</answer>\s*<think>.*?</think>`
//!   (Think-After), with `.` matching newlines.
//!
//! Completions are decoded with special tokens skipped before they get here. Med-R1 first tried
//! math-verify for accuracy, which never matches letter answers; it is left out.

use data::prompts::PromptVariant;
use regex::Regex;
use std::sync::OnceLock;

/// A reward function: a name (for the metrics) and a score per completion.
pub trait Reward: Send + Sync {
    fn name(&self) -> &str;
    /// `completion`: the decoded text; `gold`: the correct option letter.
    fn score(&self, completion: &str, gold: char) -> f32;
}

fn answer_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"<answer>(.*?)</answer>").unwrap())
}

/// The answer Med-R1's accuracy reward reads from a completion.
pub fn extract_answer(completion: &str) -> String {
    match answer_re().captures(completion) {
        Some(c) => c[1].trim().to_string(),
        None => completion.trim().to_string(),
    }
}

pub struct Accuracy;

impl Reward for Accuracy {
    fn name(&self) -> &str {
        "accuracy"
    }
    fn score(&self, completion: &str, gold: char) -> f32 {
        let a = extract_answer(completion);
        let mut chars = a.chars();
        (chars.next() == Some(gold) && chars.next().is_none()) as u8 as f32
    }
}

pub struct Format {
    variant: PromptVariant,
    re: Regex,
}

impl Format {
    pub fn new(variant: PromptVariant) -> Format {
        let pattern = match variant {
            PromptVariant::Think => r"<think>.*?</think>\s*<answer>.*?</answer>",
            PromptVariant::ThinkAfter => r"<answer>.*?</answer>\s*<think>.*?</think>",
            // Zero-shot asks for no format; scoring it like No-Think tells how often a model
            // produces the tags anyway.
            PromptVariant::NoThink | PromptVariant::ZeroShot => r"\s*<answer>.*?</answer>",
        };
        // Python's re.fullmatch with re.DOTALL.
        Format { variant, re: Regex::new(&format!(r"(?s)\A(?:{pattern})\z")).unwrap() }
    }

    pub fn variant(&self) -> PromptVariant {
        self.variant
    }
}

impl Reward for Format {
    fn name(&self) -> &str {
        "format"
    }
    fn score(&self, completion: &str, _gold: char) -> f32 {
        self.re.is_match(completion) as u8 as f32
    }
}

/// Reward functions with their weights; the total is the weighted sum (Med-R1: accuracy + format).
pub struct RewardSet {
    pub rewards: Vec<(Box<dyn Reward>, f32)>,
}

impl RewardSet {
    /// Med-R1's set: accuracy + format, weight 1 each (`TrainConfig::rewards` applies the
    /// configured weights).
    pub fn med_r1(variant: PromptVariant) -> RewardSet {
        RewardSet { rewards: vec![(Box::new(Accuracy), 1.0), (Box::new(Format::new(variant)), 1.0)] }
    }

    /// Adds a reward function with its weight.
    pub fn with(mut self, reward: impl Reward + 'static, weight: f32) -> RewardSet {
        self.rewards.push((Box::new(reward), weight));
        self
    }

    /// Per-function scores and the weighted total.
    pub fn score(&self, completion: &str, gold: char) -> (Vec<f32>, f32) {
        let each: Vec<f32> = self.rewards.iter().map(|(r, _)| r.score(completion, gold)).collect();
        let total = each.iter().zip(&self.rewards).map(|(s, (_, w))| s * w).sum();
        (each, total)
    }

    pub fn names(&self) -> Vec<String> {
        self.rewards.iter().map(|(r, _)| r.name().to_string()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_on_the_tricky_cases() {
        let a = Accuracy;
        let cases = [
            ("<answer>C</answer>", 1.0),
            ("<answer> C </answer>", 1.0),
            ("<think>it is round</think><answer>C</answer>", 1.0),
            ("C", 1.0),
            ("  C\n", 1.0),
            ("<answer>\nC\n</answer>", 0.0), // `.` does not cross newlines: no match, whole text compared
            ("<answer>c</answer>", 0.0),     // exact: lower case is wrong
            ("<answer>C)</answer>", 0.0),
            ("<answer>C. Tumor</answer>", 0.0),
            ("The answer is C", 0.0),
            ("<answer>B</answer><answer>C</answer>", 0.0), // the first tag counts
            ("<answer>C</answer> extra text", 1.0),        // accuracy ignores extra text; format does not
            ("", 0.0),
        ];
        for (text, want) in cases {
            assert_eq!(a.score(text, 'C'), want, "{text:?}");
        }
    }

    #[test]
    fn format_for_each_prompt_variant() {
        let think = Format::new(PromptVariant::Think);
        let nothink = Format::new(PromptVariant::NoThink);
        let after = Format::new(PromptVariant::ThinkAfter);
        let cases = [
            ("<think>round, bright</think><answer>C</answer>", 1.0, 0.0, 0.0),
            ("<think>line one\nline two</think>\n<answer>C</answer>", 1.0, 0.0, 0.0),
            ("<think>x</think><answer>\nC\n</answer>", 1.0, 0.0, 0.0),
            ("<answer>C</answer>", 0.0, 1.0, 0.0),
            ("  \n<answer> C </answer>", 0.0, 1.0, 0.0),
            ("<answer>C</answer>\n<think>because</think>", 0.0, 0.0, 1.0),
            ("<answer>C</answer> extra", 0.0, 0.0, 0.0),
            ("<answer>C</answer>\n", 0.0, 0.0, 0.0), // fullmatch: nothing after the closing tag
            ("<think>x</think>", 0.0, 0.0, 0.0),
            ("C", 0.0, 0.0, 0.0),
            ("<think>a</think><answer>B</answer><think>b</think>", 0.0, 0.0, 0.0),
        ];
        for (text, t, n, a) in cases {
            assert_eq!(
                (think.score(text, 'C'), nothink.score(text, 'C'), after.score(text, 'C')),
                (t, n, a),
                "{text:?}"
            );
        }
    }

    #[test]
    fn med_r1_total_is_accuracy_plus_format() {
        let set = RewardSet::med_r1(PromptVariant::NoThink);
        assert_eq!(set.score("<answer>C</answer>", 'C'), (vec![1.0, 1.0], 2.0));
        assert_eq!(set.score("C", 'C'), (vec![1.0, 0.0], 1.0));
        assert_eq!(set.score("<answer>B</answer>", 'C'), (vec![0.0, 1.0], 1.0));
        assert_eq!(set.names(), vec!["accuracy", "format"]);
    }
}
