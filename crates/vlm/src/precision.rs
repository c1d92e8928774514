//! The storage precision a model is loaded in: float32 (the reference) or bfloat16. A closed set,
//! typed everywhere it is chosen (`--dtype`, `lora_base_dtype`), so a misspelling is an error
//! instead of a silent float32.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    #[serde(alias = "float32")]
    F32,
    #[serde(alias = "bfloat16")]
    Bf16,
}

impl Precision {
    pub const ALL: [Precision; 2] = [Precision::F32, Precision::Bf16];

    pub fn dtype(self) -> candle_core::DType {
        match self {
            Precision::F32 => candle_core::DType::F32,
            Precision::Bf16 => candle_core::DType::BF16,
        }
    }

    /// The command-line and settings spelling.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Ok(Precision::F32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            _ => Err(format!("unknown precision `{s}` (f32 or bf16)")),
        }
    }
}

#[cfg(feature = "clap")]
impl clap::ValueEnum for Precision {
    fn value_variants<'a>() -> &'a [Self] {
        &Self::ALL
    }
    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        let alias = match self {
            Precision::F32 => "float32",
            Precision::Bf16 => "bfloat16",
        };
        Some(clap::builder::PossibleValue::new(self.name()).alias(alias))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_parse_and_unknown_ones_are_errors() {
        assert_eq!("bfloat16".parse::<Precision>().unwrap(), Precision::Bf16);
        assert_eq!("F32".parse::<Precision>().unwrap(), Precision::F32);
        assert!("f16".parse::<Precision>().is_err());
        #[derive(Deserialize)]
        struct S {
            #[allow(dead_code)]
            p: Precision,
        }
        assert!(serde_json::from_str::<S>(r#"{"p": "bfloat16"}"#).is_ok());
        let err = serde_json::from_str::<S>(r#"{"p": "half"}"#).err().unwrap().to_string();
        assert!(err.contains("half"), "{err}");
    }
}
