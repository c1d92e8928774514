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
}

#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub output: String,
    pub completion_tokens: usize,
}

pub trait Backend: Sync {
    /// Answers a chunk of items; one result per item, in order (a failure affects only its item).
    fn answer(&self, items: &[Item]) -> Vec<anyhow::Result<Answer>>;
    /// How many items to hand over at once.
    fn chunk_size(&self) -> usize;
    /// The model's name for the summary.
    fn model_name(&self) -> String;
}
