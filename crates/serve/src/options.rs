//! The server's settings, as `medr1 serve`'s flags give them.

use crate::images::ImageLimits;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub host: String,
    pub port: u16,
    /// Most sequences decoded together.
    pub max_batch: usize,
    pub served_model: String,
    pub api_key: Option<String>,
    pub allow_local_files: Option<PathBuf>,
    pub max_body_bytes: usize,
    pub max_image_bytes: usize,
    pub max_image_pixels: u64,
    pub default_max_tokens: usize,
    /// Longest wait for a request's body once its headers have arrived.
    pub body_read_timeout: std::time::Duration,
    /// Longest wait for a request's whole header (from the connection's start, or the end of the
    /// previous request on a kept-alive connection); then the connection is closed.
    pub header_read_timeout: std::time::Duration,
    /// Longest prompt accepted, in tokens (images included), well below the model's context.
    pub max_prompt_tokens: usize,
    /// Requests one client address may have in flight (streams count until they end); 0: no limit.
    pub max_requests_per_client: usize,
    /// A longer prompt is prefilled this many tokens per engine step, between the running
    /// batch's tokens, so it never stalls them for its whole prefill.
    pub prefill_chunk: usize,
    /// Allow `POST /v1/medr1/reload_weights` (full weights from a checkpoint folder on this
    /// machine, for trainers that sync weights to their rollout servers).
    pub enable_weight_reload: bool,
    /// The precision reloaded weights are loaded in (the server's `--dtype`).
    pub dtype: vlm::precision::Precision,
}

/// 512 tokens: at the 2B shape a chunk's prefill takes about as long as a few decode steps, and
/// a Med-R1 question with an image (~600 tokens) takes two.
pub const DEFAULT_PREFILL_CHUNK: usize = 512;

/// 4096 tokens: a Med-R1 question with one image at Qwen2-VL's default pixel budget is about 600;
/// several images still fit, while one request cannot ask for the tens of GB a 32k-token prefill
/// would take.
pub const DEFAULT_MAX_PROMPT_TOKENS: usize = 4096;

impl Default for ServeOptions {
    /// The command line's defaults.
    fn default() -> Self {
        ServeOptions {
            host: "127.0.0.1".into(),
            port: 8000,
            max_batch: 8,
            served_model: "medr1".into(),
            api_key: None,
            allow_local_files: None,
            max_body_bytes: 32 << 20,
            max_image_bytes: 20 << 20,
            max_image_pixels: 4096 * 4096,
            default_max_tokens: 256,
            body_read_timeout: std::time::Duration::from_secs(30),
            header_read_timeout: std::time::Duration::from_secs(10),
            max_prompt_tokens: DEFAULT_MAX_PROMPT_TOKENS,
            max_requests_per_client: 64,
            prefill_chunk: DEFAULT_PREFILL_CHUNK,
            enable_weight_reload: false,
            dtype: vlm::precision::Precision::F32,
        }
    }
}

impl ServeOptions {
    pub fn limits(&self) -> ImageLimits {
        ImageLimits {
            max_bytes: self.max_image_bytes,
            max_pixels: self.max_image_pixels,
            allow_local_files: self.allow_local_files.clone(),
        }
    }
}
