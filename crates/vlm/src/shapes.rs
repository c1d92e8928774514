//! Model shapes medr1 builds without a download: the bundled tiny checkpoints' (the oracles', whose
//! tokenizer and processor files are compiled in from `assets/tiny` for Qwen2-VL and
//! `assets/tiny-qwen2_5_vl` for Qwen2.5-VL), Qwen2-VL-2B-Instruct's and Qwen2.5-VL-3B-Instruct's.
//! Benchmarks, the demo and tests take their shapes from here and nowhere else.

use crate::config::{Family, Qwen2VlConfig};
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

/// The tiny Qwen2.5-VL checkpoint's files other than its weights (the Qwen2.5-VL oracle's).
pub const TINY_QWEN2_5_VL_FILES: [(&str, &str); 6] = [
    ("config.json", include_str!("../assets/tiny-qwen2_5_vl/config.json")),
    ("tokenizer.json", include_str!("../assets/tiny-qwen2_5_vl/tokenizer.json")),
    ("tokenizer_config.json", include_str!("../assets/tiny-qwen2_5_vl/tokenizer_config.json")),
    ("chat_template.json", include_str!("../assets/tiny-qwen2_5_vl/chat_template.json")),
    ("generation_config.json", include_str!("../assets/tiny-qwen2_5_vl/generation_config.json")),
    ("preprocessor_config.json", include_str!("../assets/tiny-qwen2_5_vl/preprocessor_config.json")),
];

/// The bundled tiny files of `family`.
pub fn tiny_files(family: Family) -> &'static [(&'static str, &'static str); 6] {
    match family {
        Family::Qwen2Vl => &TINY_FILES,
        Family::Qwen2_5Vl => &TINY_QWEN2_5_VL_FILES,
    }
}

/// A named shape: `tiny` (the bundled Qwen2-VL checkpoint's: text 64 wide x 2 layers, vision
/// 32 x 2), `tiny25` (the bundled Qwen2.5-VL checkpoint's: text 64 x 2, vision 32 x 4 with windows),
/// `2b` (Qwen2-VL-2B-Instruct's: text 1536 x 28, vision 1280 x 32) or `3b` (Qwen2.5-VL-3B-Instruct's:
/// text 2048 x 36, vision 1280 x 32, windows of 112 pixels, full attention in blocks 7, 15, 23, 31).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Tiny,
    TinyQwen2_5Vl,
    Qwen2Vl2b,
    Qwen2_5Vl3b,
}

impl Shape {
    pub fn parse(name: &str) -> Result<Shape> {
        Shape::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| VlmError::input(format!("unknown model shape `{name}` (tiny, tiny25, 2b or 3b)")))
    }

    pub fn family(self) -> Family {
        match self {
            Shape::Tiny | Shape::Qwen2Vl2b => Family::Qwen2Vl,
            Shape::TinyQwen2_5Vl | Shape::Qwen2_5Vl3b => Family::Qwen2_5Vl,
        }
    }

    /// The tiny shape of `family` (tokenizer and processor files bundled).
    pub fn tiny(family: Family) -> Shape {
        match family {
            Family::Qwen2Vl => Shape::Tiny,
            Family::Qwen2_5Vl => Shape::TinyQwen2_5Vl,
        }
    }

    /// The shape's `config.json` (transformers' legacy layout).
    pub fn config_json(self) -> Value {
        match self {
            Shape::Tiny => tiny_config_json(),
            Shape::TinyQwen2_5Vl => tiny_config_json_of(Family::Qwen2_5Vl),
            // Qwen2.5-VL-3B-Instruct's config.json (its weights: 3.75 B parameters).
            Shape::Qwen2_5Vl3b => json!({
                "architectures": ["Qwen2_5_VLForConditionalGeneration"],
                "model_type": "qwen2_5_vl", "vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 11008,
                "num_hidden_layers": 36, "num_attention_heads": 16, "num_key_value_heads": 2, "rms_norm_eps": 1e-6,
                "rope_theta": 1e6, "tie_word_embeddings": true, "max_position_embeddings": 128000,
                "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
                "image_token_id": 151655, "video_token_id": 151656,
                "vision_start_token_id": 151652, "vision_end_token_id": 151653,
                "vision_config": {"depth": 32, "hidden_act": "silu", "hidden_size": 1280, "intermediate_size": 3420,
                                  "num_heads": 16, "in_chans": 3, "out_hidden_size": 2048, "patch_size": 14,
                                  "spatial_merge_size": 2, "spatial_patch_size": 14, "window_size": 112,
                                  "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2,
                                  "temporal_patch_size": 2}}),
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
    pub const ALL: [Shape; 4] = [Shape::Tiny, Shape::TinyQwen2_5Vl, Shape::Qwen2Vl2b, Shape::Qwen2_5Vl3b];

    /// The command-line spelling.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Tiny => "tiny",
            Shape::TinyQwen2_5Vl => "tiny25",
            Shape::Qwen2Vl2b => "2b",
            Shape::Qwen2_5Vl3b => "3b",
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

/// The bundled tiny Qwen2-VL checkpoint's `config.json`.
pub fn tiny_config_json() -> Value {
    tiny_config_json_of(Family::Qwen2Vl)
}

/// The bundled tiny checkpoint's `config.json` of `family`.
pub fn tiny_config_json_of(family: Family) -> Value {
    serde_json::from_str(tiny_files(family)[0].1).expect("the bundled tiny config.json is valid JSON")
}

/// The demo's tiny model: the bundled checkpoint's architecture and tokenizer at twice its widths
/// (text 128 x 2 layers, 4 heads / 2 KV heads; vision 64 wide, 2 heads: Qwen2-VL 2 blocks,
/// Qwen2.5-VL the bundled 4 blocks with 56-pixel windows, full attention in blocks 1 and 3).
pub fn demo_config_json() -> Value {
    demo_config_json_of(Family::Qwen2Vl)
}

/// [`demo_config_json`] in `family`.
pub fn demo_config_json_of(family: Family) -> Value {
    let mut cfg = tiny_config_json_of(family);
    cfg["hidden_size"] = json!(128);
    cfg["intermediate_size"] = json!(256);
    cfg["num_attention_heads"] = json!(4);
    cfg["num_key_value_heads"] = json!(2);
    cfg["rope_scaling"]["mrope_section"] = json!([4, 6, 6]);
    match family {
        Family::Qwen2Vl => {
            cfg["vision_config"]["embed_dim"] = json!(64);
            cfg["vision_config"]["hidden_size"] = json!(128);
        }
        Family::Qwen2_5Vl => {
            cfg["vision_config"]["hidden_size"] = json!(64);
            cfg["vision_config"]["intermediate_size"] = json!(112);
            cfg["vision_config"]["out_hidden_size"] = json!(128);
        }
    }
    cfg["vision_config"]["num_heads"] = json!(2);
    cfg
}

/// Writes the tiny checkpoint's tokenizer, template and processor files to `dir`, with `config`
/// as its `config.json` (weights are the caller's). The files are those of the config's family
/// (its `model_type`).
pub fn write_tiny_files(dir: &Path, config: &Value) -> Result<()> {
    let family = config.get("model_type").and_then(|v| v.as_str()).and_then(Family::parse).unwrap_or(Family::Qwen2Vl);
    std::fs::create_dir_all(dir).map_err(|e| VlmError::file(dir, format!("cannot create the folder: {e}")))?;
    for (name, text) in tiny_files(family) {
        let path = dir.join(name);
        let text = if *name == "config.json" {
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
        assert_eq!((demo.text.hidden_size, demo.vision.embed_dim, demo.vision.out_hidden_size), (128, 64, 128));
        assert!(Shape::parse("7b").is_err());
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen25vl-tiny/model");
        for (name, text) in TINY_QWEN2_5_VL_FILES {
            let want = std::fs::read_to_string(fixture.join(name)).unwrap();
            assert_eq!(text, want, "assets/tiny-qwen2_5_vl/{name} differs from the fixture's");
        }
        let demo = Qwen2VlConfig::from_json(&demo_config_json_of(Family::Qwen2_5Vl), Path::new("demo")).unwrap();
        assert_eq!(demo.family, Family::Qwen2_5Vl);
        assert_eq!((demo.text.hidden_size, demo.vision.embed_dim, demo.vision.out_hidden_size), (128, 64, 128));
        for shape in Shape::ALL {
            let cfg = shape.config().unwrap();
            assert_eq!(cfg.family, shape.family(), "{shape}");
            assert_eq!(Shape::parse(shape.name()).unwrap(), shape);
        }
        // Qwen2.5-VL-3B-Instruct: 3.75 B parameters with its tied embedding.
        let c = Shape::Qwen2_5Vl3b.config().unwrap();
        assert_eq!((c.vision.embed_dim, c.vision.intermediate_size, c.vision.window_tokens()), (1280, 3420, Some(4)));
    }
}
