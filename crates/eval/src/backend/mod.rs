//! Where answers come from: a checkpoint run here ([`local::Local`]) or any OpenAI-compatible
//! chat-completions server ([`endpoint::Endpoint`]: vLLM, SGLang, `medr1 serve`). Both get the
//! same question text and the same decoded pixels, and answer greedily.

pub mod endpoint;
pub mod local;

use vlm::image_processor::RgbImage;

/// One question to answer.
pub struct Item {
    pub text: String,
    pub image: RgbImage,
    /// How many options the question has (A, B, ...): the letters whose probabilities matter.
    pub options: usize,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Answer {
    pub output: String,
    pub completion_tokens: usize,
    /// The model's distribution over the option letters at the answer position (see
    /// [`crate::confidence`]), when the backend can tell it and the output has an answer tag.
    pub letter_probs: Option<std::collections::BTreeMap<String, f64>>,
}

pub trait Backend: Sync {
    /// Answers a chunk of items; one result per item, in order (a failure affects only its item).
    fn answer(&self, items: &[Item]) -> Vec<anyhow::Result<Answer>>;
    /// How many items to hand over at once.
    fn chunk_size(&self) -> usize;
    /// The model's name for the summary.
    fn model_name(&self) -> String;
}
