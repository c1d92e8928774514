//! The storage precision a model is loaded in: float32 (the reference), bfloat16, or int8 — the
//! storage of the linear layers' weights and the embedding table (int8: quantized per output
//! channel); activations, norms and biases are float32 in all three. A closed set,
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
    /// Linear weights and the token embedding in int8 (see `kernels::int8`); activations, norms,
    /// biases, softmax and rotary tables in float32.
    Int8,
    /// The decoder's linear weights in 4-bit groups (`kernels::q4`), the vision tower's and the
    /// embedding / LM head in int8: decoding reads half of int8's bytes.
    Q4,
}

impl Precision {
    pub const ALL: [Precision; 4] = [Precision::F32, Precision::Bf16, Precision::Int8, Precision::Q4];

    /// The candle dtype of the activations and of every tensor but the linear weights and the
    /// embedding table: float32 in every precision (bf16 and int8 are the storage of those
    /// tables; their products round or quantize the inputs and accumulate in float32).
    pub fn dtype(self) -> candle_core::DType {
        candle_core::DType::F32
    }

    /// Whether weights are quantized (int8 or q4: inference only).
    pub fn quantized(self) -> bool {
        matches!(self, Precision::Int8 | Precision::Q4)
    }

    /// The command-line and settings spelling.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::Int8 => "int8",
            Precision::Q4 => "q4",
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
            "int8" | "i8" => Ok(Precision::Int8),
            "q4" | "int4" => Ok(Precision::Q4),
            _ => Err(format!("unknown precision `{s}` (f32, bf16, int8 or q4)")),
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
            Precision::Int8 => "i8",
            Precision::Q4 => "int4",
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
        assert_eq!("int8".parse::<Precision>().unwrap(), Precision::Int8);
        assert_eq!(Precision::Int8.dtype(), candle_core::DType::F32);
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
