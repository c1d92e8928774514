//! Model shapes medr1 builds without a download: the bundled tiny checkpoint's (the oracle's, whose
//! tokenizer and processor files are compiled in from `assets/tiny`) and Qwen2-VL-2B-Instruct's.
//! Benchmarks, the demo and tests take their shapes from here and nowhere else.

use crate::config::Qwen2VlConfig;
use crate::error::{Result, VlmError};
use serde_json::{json, Value};
use std::path::Path;

/// The tiny checkpoint's files other than its weights, by file name.
pub const TINY_FILES: [(&str, &str); 6] = [
    ("config.json", include_str!("../assets/tiny/config.json")),
    ("tokenizer.json", include_str!("../assets/tiny/tokenizer.json")),
    ("tokenizer_config.json", include_str!("../assets/tiny/tokenizer_config.json")),
    ("chat_template.json", include_str!("../assets/tiny/chat_template.json")),
    ("generation_config.json", include_str!("../assets/tiny/generation_config.json")),
    ("preprocessor_config.json", include_str!("../assets/tiny/preprocessor_config.json")),
];

/// A named shape: `tiny` (the bundled checkpoint's: text 64 wide x 2 layers, vision 32 x 2) or
/// `2b` (Qwen2-VL-2B-Instruct's: text 1536 x 28, vision 1280 x 32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Tiny,
    Qwen2Vl2b,
}

impl Shape {
    pub fn parse(name: &str) -> Result<Shape> {
        match name {
            "tiny" => Ok(Shape::Tiny),
            "2b" => Ok(Shape::Qwen2Vl2b),
            _ => Err(VlmError::input(format!("unknown model shape `{name}` (tiny or 2b)"))),
        }
    }

    /// The shape's `config.json` (transformers' legacy layout).
    pub fn config_json(self) -> Value {
        match self {
            Shape::Tiny => tiny_config_json(),
            Shape::Qwen2Vl2b => json!({
                "model_type": "qwen2_vl", "vocab_size": 151936, "hidden_size": 1536, "intermediate_size": 8960,
                "num_hidden_layers": 28, "num_attention_heads": 12, "num_key_value_heads": 2, "rms_norm_eps": 1e-6,
                "rope_theta": 1e6, "tie_word_embeddings": true, "max_position_embeddings": 32768,
                "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
                "image_token_id": 151655, "video_token_id": 151656,
                "vision_start_token_id": 151652, "vision_end_token_id": 151653,
                "vision_config": {"depth": 32, "embed_dim": 1280, "mlp_ratio": 4, "num_heads": 16, "in_chans": 3,
                                  "hidden_size": 1536, "patch_size": 14, "spatial_merge_size": 2,
                                  "temporal_patch_size": 2}}),
        }
    }

    pub fn config(self) -> Result<Qwen2VlConfig> {
        Qwen2VlConfig::from_json(&self.config_json(), Path::new("<built-in shape>"))
    }
}

impl Shape {
    pub const ALL: [Shape; 2] = [Shape::Tiny, Shape::Qwen2Vl2b];

    /// The command-line spelling.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Tiny => "tiny",
            Shape::Qwen2Vl2b => "2b",
        }
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Shape {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Shape::parse(s).map_err(|e| e.to_string())
    }
}

#[cfg(feature = "clap")]
impl clap::ValueEnum for Shape {
    fn value_variants<'a>() -> &'a [Self] {
        &Self::ALL
    }
    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name()))
    }
}

/// The bundled tiny checkpoint's `config.json`.
pub fn tiny_config_json() -> Value {
    serde_json::from_str(TINY_FILES[0].1).expect("the bundled tiny config.json is valid JSON")
}

/// The demo's tiny model: the bundled checkpoint's architecture and tokenizer at twice its widths
/// (text 128 x 2 layers, 4 heads / 2 KV heads; vision 64 x 2 blocks, 2 heads).
pub fn demo_config_json() -> Value {
    let mut cfg = tiny_config_json();
    cfg["hidden_size"] = json!(128);
    cfg["intermediate_size"] = json!(256);
    cfg["num_attention_heads"] = json!(4);
    cfg["num_key_value_heads"] = json!(2);
    cfg["rope_scaling"]["mrope_section"] = json!([4, 6, 6]);
    cfg["vision_config"]["embed_dim"] = json!(64);
    cfg["vision_config"]["num_heads"] = json!(2);
    cfg["vision_config"]["hidden_size"] = json!(128);
    cfg
}

/// Writes the tiny checkpoint's tokenizer, template and processor files to `dir`, with `config`
/// as its `config.json` (weights are the caller's).
pub fn write_tiny_files(dir: &Path, config: &Value) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| VlmError::file(dir, format!("cannot create the folder: {e}")))?;
    for (name, text) in TINY_FILES {
        let path = dir.join(name);
        let text = if name == "config.json" {
            serde_json::to_string_pretty(config).map_err(|e| VlmError::input(e.to_string()))?
        } else {
            text.to_string()
        };
        std::fs::write(&path, text).map_err(|e| VlmError::file(&path, format!("cannot write: {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_equal_the_oracle_checkpoint() {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen2vl-tiny/model");
        for (name, text) in TINY_FILES {
            let want = std::fs::read_to_string(fixture.join(name)).unwrap();
            assert_eq!(text, want, "assets/tiny/{name} differs from the fixture's");
        }
        let tiny = Shape::Tiny.config().unwrap();
        assert_eq!((tiny.text.hidden_size, tiny.vision.embed_dim), (64, 32));
        let demo = Qwen2VlConfig::from_json(&demo_config_json(), Path::new("demo")).unwrap();
        assert_eq!((demo.text.hidden_size, demo.vision.embed_dim, demo.vision.hidden_size), (128, 64, 128));
        assert!(Shape::parse("7b").is_err());
    }
}
