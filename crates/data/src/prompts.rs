//! The user-turn texts Med-R1 trains and evaluates with. The image comes first in the user turn,
//! then this text; the system prompt is the chat template's default.
//!
//! - Think and No-Think are Med-R1's training prompts word for word (DESIGN.md in the shared design notes).
//!   Med-R1's evaluation scripts use the same instructions, so medr1 uses one text for both.
//! - Think-After is medr1's: Med-R1 released no template for it. It is the Think prompt with the
//!   two steps swapped, in the same words: answer first, reasoning after.
//! - Zero-shot is the bare question with its options, for scoring a model that was never told a
//!   format (answers are then read with the lenient extractor).

use crate::record::Record;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

pub const THINK: &str = "{Question} Your task: 1. Think through the question step by step, enclose your reasoning process in <think>...</think> tags. 2. Then provide the correct single-letter choice (A, B, C, D,...) inside <answer>...</answer> tags. 3. No extra information or text outside of these tags.";
pub const NO_THINK: &str = "{Question} Your task: 1. Provide the correct single-letter choice (A, B, C, D,...) inside <answer>...</answer> tags. 2. No extra information or text outside of this tag.";
pub const THINK_AFTER: &str = "{Question} Your task: 1. Provide the correct single-letter choice (A, B, C, D,...) inside <answer>...</answer> tags. 2. Then explain your reasoning step by step, enclosed in <think>...</think> tags. 3. No extra information or text outside of these tags.";
pub const ZERO_SHOT: &str = "{Question}";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PromptVariant {
    Think,
    #[serde(rename = "nothink")]
    NoThink,
    #[serde(rename = "thinkafter")]
    ThinkAfter,
    #[serde(rename = "zeroshot")]
    ZeroShot,
}

impl PromptVariant {
    pub const ALL: [PromptVariant; 4] =
        [PromptVariant::Think, PromptVariant::NoThink, PromptVariant::ThinkAfter, PromptVariant::ZeroShot];

    pub fn template(self) -> &'static str {
        match self {
            PromptVariant::Think => THINK,
            PromptVariant::NoThink => NO_THINK,
            PromptVariant::ThinkAfter => THINK_AFTER,
            PromptVariant::ZeroShot => ZERO_SHOT,
        }
    }

    /// The command-line spelling.
    pub fn name(self) -> &'static str {
        match self {
            PromptVariant::Think => "think",
            PromptVariant::NoThink => "nothink",
            PromptVariant::ThinkAfter => "thinkafter",
            PromptVariant::ZeroShot => "zeroshot",
        }
    }

    /// The template with `{Question}` replaced by a Med-R1 `problem` (question plus options).
    pub fn render(self, problem: &str) -> String {
        self.template().replace("{Question}", problem)
    }

    /// The user-turn text for a record.
    pub fn for_record(self, r: &Record) -> String {
        self.render(&r.problem())
    }

    /// A completion in this variant's format with the given letter and reasoning (for SFT targets).
    pub fn answer_text(self, letter: char, reasoning: &str) -> String {
        match self {
            PromptVariant::Think => format!("<think>{reasoning}</think>\n<answer>{letter}</answer>"),
            PromptVariant::ThinkAfter => format!("<answer>{letter}</answer>\n<think>{reasoning}</think>"),
            PromptVariant::NoThink => format!("<answer>{letter}</answer>"),
            PromptVariant::ZeroShot => letter.to_string(),
        }
    }
}

impl FromStr for PromptVariant {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let k: String = s.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_ascii_lowercase();
        match k.as_str() {
            "think" => Ok(PromptVariant::Think),
            "nothink" => Ok(PromptVariant::NoThink),
            "thinkafter" => Ok(PromptVariant::ThinkAfter),
            "zeroshot" => Ok(PromptVariant::ZeroShot),
            _ => Err(format!("unknown prompt variant `{s}` (think, nothink, thinkafter, zeroshot)")),
        }
    }
}

/// On the command line: the four names, parsed as leniently as [`FromStr`] (`No-Think` works).
#[cfg(feature = "clap")]
impl clap::ValueEnum for PromptVariant {
    fn value_variants<'a>() -> &'a [Self] {
        &Self::ALL
    }
    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name()))
    }
    fn from_str(input: &str, _ignore_case: bool) -> Result<Self, String> {
        input.parse()
    }
}

impl fmt::Display for PromptVariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_med_r1_words_around_the_problem() {
        let p = "Is COVID-19 indicated by the signs in this CT scan image? A)Yes, B)No";
        assert_eq!(
            PromptVariant::NoThink.render(p),
            "Is COVID-19 indicated by the signs in this CT scan image? A)Yes, B)No Your task: 1. Provide the correct single-letter choice (A, B, C, D,...) inside <answer>...</answer> tags. 2. No extra information or text outside of this tag."
        );
        assert!(PromptVariant::Think.render(p).starts_with(
            "Is COVID-19 indicated by the signs in this CT scan image? A)Yes, B)No Your task: 1. Think through"
        ));
        assert_eq!(PromptVariant::ZeroShot.render(p), p);
        for v in PromptVariant::ALL {
            assert_eq!(v.name().parse::<PromptVariant>().unwrap(), v);
            assert_eq!(v.render(p).matches(p).count(), 1);
        }
        assert_eq!("No-Think".parse::<PromptVariant>().unwrap(), PromptVariant::NoThink);
        assert!("cot".parse::<PromptVariant>().is_err());
    }
}
