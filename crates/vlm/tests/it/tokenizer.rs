//! The real Qwen2-VL tokenizer (fixtures/qwen2-vl-tokenizer, from shared/tokenizers/qwen2-vl):
//! prompts render and tokenize to exactly the ids transformers produced.

use crate::common;

use std::io::Read;
use vlm::image_processor::{ImageProcessor, ProcessedImage};
use vlm::prompt::{render_chat_template, Processor, Prompt};

fn real_tokenizer() -> tokenizers::Tokenizer {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen2-vl-tokenizer");
    let gz = std::fs::read(dir.join("tokenizer.json.gz")).unwrap();
    let mut s = Vec::new();
    flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut s).unwrap();
    tokenizers::Tokenizer::from_bytes(&s).unwrap()
}

#[test]
fn reference_prompts_tokenize_exactly() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen2-vl-tokenizer");
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap()).unwrap();
    // Qwen2-VL's chat template, as shipped with the tiny checkpoint.
    let template = vlm::checkpoint::load_chat_template(&common::fixtures().join("model")).unwrap();
    let tok = real_tokenizer();
    assert_eq!(tok.token_to_id("<|image_pad|>"), Some(151655));
    let proc = Processor {
        tokenizer: tok,
        chat_template: template.clone(),
        image_processor: ImageProcessor::new(Default::default()),
        pad_token_id: 151643,
        merge_size: 2,
    };
    let cases = reference["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 2);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let rendered = render_chat_template(&template, &case["messages"], true).unwrap();
        assert_eq!(rendered, case["rendered"].as_str().unwrap(), "{name}: rendering");
        let copies = case["image_pad_copies"].as_u64().unwrap() as usize;
        let images: Vec<ProcessedImage> = if copies > 0 {
            // A 392x392 image: 28x28 patches -> 196 merged tokens.
            vec![ProcessedImage { patches: vec![], grid_thw: [1, 28, 28], resized_hw: (392, 392) }]
        } else {
            vec![]
        };
        assert!(images.iter().all(|i| i.n_tokens(2) == copies));
        let prompt = Prompt { text: rendered, images };
        let completion = case["completion"].as_str().unwrap().to_string();
        let text = format!("{}{}", proc.expand(&prompt), completion);
        let ids = proc.tokenize(&text).unwrap();
        let want: Vec<u32> = serde_json::from_value(case["input_ids"].clone()).unwrap();
        assert_eq!(ids, want, "{name}: token ids");
    }
}
