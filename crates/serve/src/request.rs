//! A chat-completions request, checked field by field: what medr1 supports is parsed, what it
//! knows but does not support is refused by name, and anything unknown is refused too (a silently
//! ignored parameter is a wrong answer waiting to happen).

use crate::error::ApiError;
use crate::images::{self, ImageLimits};
use serde_json::{json, Map, Value};
use vlm::image_processor::RgbImage;

pub const MAX_N: usize = 8;
pub const MAX_STOPS: usize = 4;

#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub model: Option<String>,
    /// The conversation in qwen-vl-utils form (`{"type": "image"}` / `{"type": "text"}` parts).
    pub messages: Value,
    pub images: Vec<RgbImage>,
    pub n: usize,
    pub max_tokens: Option<usize>,
    pub temperature: f64,
    pub top_p: f64,
    pub top_k: usize,
    pub seed: u64,
    pub stop: Vec<String>,
    pub stream: bool,
    pub include_usage: bool,
    /// vLLM's extension: generate until max_tokens even past EOS.
    pub ignore_eos: bool,
    /// Return each completion token's log-probability (OpenAI's `logprobs`).
    pub logprobs: bool,
    /// And the most likely alternatives at each position, 0-20 (`top_logprobs`).
    pub top_logprobs: usize,
    /// vLLM's extension: return the prompt's and each completion's token ids.
    pub return_token_ids: bool,
}

fn num(v: &Value, name: &str) -> Result<f64, ApiError> {
    v.as_f64().ok_or_else(|| ApiError::invalid(format!("`{name}` must be a number")).param(name))
}

fn uint(v: &Value, name: &str) -> Result<u64, ApiError> {
    v.as_u64().ok_or_else(|| ApiError::invalid(format!("`{name}` must be a non-negative integer")).param(name))
}

/// Parses and validates a request body (already JSON). Images are decoded here.
pub fn parse(body: &Value, limits: &ImageLimits) -> Result<ChatRequest, ApiError> {
    let obj = body.as_object().ok_or_else(|| ApiError::invalid("the request body must be a JSON object"))?;
    let mut r = ChatRequest {
        model: None,
        messages: Value::Null,
        images: vec![],
        n: 1,
        max_tokens: None,
        temperature: 0.0,
        top_p: 1.0,
        top_k: 0,
        seed: 0,
        stop: vec![],
        stream: false,
        include_usage: false,
        ignore_eos: false,
        logprobs: false,
        top_logprobs: 0,
        return_token_ids: false,
    };
    let mut top_logprobs = None;
    let mut messages = None;
    for (k, v) in obj {
        if v.is_null() {
            continue; // explicit nulls mean "default", as OpenAI's SDKs send them
        }
        match k.as_str() {
            "model" => {
                r.model = Some(
                    v.as_str().ok_or_else(|| ApiError::invalid("`model` must be a string").param("model"))?.to_string(),
                )
            }
            "messages" => messages = Some(v),
            "temperature" => {
                r.temperature = num(v, k)?;
                if !(0.0..=2.0).contains(&r.temperature) {
                    return Err(ApiError::invalid("`temperature` must be between 0 and 2").param(k));
                }
            }
            "top_p" => {
                r.top_p = num(v, k)?;
                if !(r.top_p > 0.0 && r.top_p <= 1.0) {
                    return Err(ApiError::invalid("`top_p` must be in (0, 1]").param(k));
                }
            }
            "top_k" => r.top_k = uint(v, k)? as usize,
            "max_tokens" | "max_completion_tokens" => {
                let m = uint(v, k)? as usize;
                if m == 0 {
                    return Err(ApiError::invalid(format!("`{k}` must be at least 1")).param(k));
                }
                r.max_tokens = Some(m);
            }
            "seed" => {
                r.seed = v.as_i64().ok_or_else(|| ApiError::invalid("`seed` must be an integer").param(k))? as u64
            }
            "n" => {
                r.n = uint(v, k)? as usize;
                if r.n == 0 || r.n > MAX_N {
                    return Err(ApiError::invalid(format!("`n` must be between 1 and {MAX_N}")).param(k));
                }
            }
            "stop" => {
                r.stop = match v {
                    Value::String(s) => vec![s.clone()],
                    Value::Array(a) => a
                        .iter()
                        .map(|x| x.as_str().map(str::to_string))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| ApiError::invalid("`stop` must be a string or a list of strings").param(k))?,
                    _ => return Err(ApiError::invalid("`stop` must be a string or a list of strings").param(k)),
                };
                if r.stop.len() > MAX_STOPS || r.stop.iter().any(|s| s.is_empty()) {
                    return Err(ApiError::invalid(format!("`stop` takes 1 to {MAX_STOPS} non-empty strings")).param(k));
                }
            }
            "stream" => {
                r.stream = v.as_bool().ok_or_else(|| ApiError::invalid("`stream` must be true or false").param(k))?
            }
            "ignore_eos" => {
                r.ignore_eos =
                    v.as_bool().ok_or_else(|| ApiError::invalid("`ignore_eos` must be true or false").param(k))?
            }
            "stream_options" => r.include_usage = v.get("include_usage").and_then(Value::as_bool).unwrap_or(false),
            "user" | "metadata" | "store" | "service_tier" => {}
            "frequency_penalty" | "presence_penalty" => {
                if num(v, k)? != 0.0 {
                    return Err(ApiError::unsupported(k, "only 0 is supported"));
                }
            }
            "logprobs" => {
                r.logprobs =
                    v.as_bool().ok_or_else(|| ApiError::invalid("`logprobs` must be true or false").param(k))?
            }
            "top_logprobs" => {
                let t = uint(v, k)? as usize;
                if t > 20 {
                    return Err(ApiError::invalid("`top_logprobs` must be between 0 and 20").param(k));
                }
                top_logprobs = Some(t);
            }
            "return_token_ids" => {
                r.return_token_ids =
                    v.as_bool().ok_or_else(|| ApiError::invalid("`return_token_ids` must be true or false").param(k))?
            }
            "response_format" => {
                if v.get("type").and_then(Value::as_str) != Some("text") {
                    return Err(ApiError::unsupported(k, "only {\"type\": \"text\"} is supported"));
                }
            }
            "logit_bias" => {
                if v.as_object().is_some_and(|m| !m.is_empty()) {
                    return Err(ApiError::unsupported(k, "logit biases are not applied"));
                }
            }
            "tools"
            | "tool_choice"
            | "functions"
            | "function_call"
            | "parallel_tool_calls"
            | "audio"
            | "modalities"
            | "prediction"
            | "reasoning_effort"
            | "web_search_options" => {
                return Err(ApiError::unsupported(
                    k,
                    "this server answers medical questions about images with text only",
                ));
            }
            other => {
                return Err(ApiError::invalid(format!("Unrecognized request argument supplied: {other}"))
                    .param(other)
                    .code("unknown_parameter"))
            }
        }
    }
    if let Some(t) = top_logprobs {
        if t > 0 && !r.logprobs {
            return Err(ApiError::invalid("`top_logprobs` needs `logprobs` set to true").param("top_logprobs"));
        }
        r.top_logprobs = t;
    }
    let messages = messages.ok_or_else(|| ApiError::invalid("`messages` is required").param("messages"))?;
    let (converted, images) = convert_messages(messages, limits)?;
    r.messages = converted;
    r.images = images;
    Ok(r)
}

/// OpenAI messages -> the chat template's messages, decoding images in order.
fn convert_messages(messages: &Value, limits: &ImageLimits) -> Result<(Value, Vec<RgbImage>), ApiError> {
    let list = messages
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| ApiError::invalid("`messages` must be a non-empty list").param("messages"))?;
    let mut out = Vec::new();
    let mut images = Vec::new();
    for (i, m) in list.iter().enumerate() {
        let at = |what: &str| ApiError::invalid(format!("messages[{i}]: {what}")).param("messages");
        let m: &Map<String, Value> = m.as_object().ok_or_else(|| at("must be an object"))?;
        let role = m.get("role").and_then(Value::as_str).ok_or_else(|| at("`role` is required"))?;
        if !matches!(role, "system" | "user" | "assistant" | "developer") {
            return Err(at(&format!("role `{role}` is not supported (system, developer, user, assistant)")));
        }
        let role = if role == "developer" { "system" } else { role };
        let content = match m.get("content") {
            Some(Value::String(s)) => json!(s),
            Some(Value::Array(parts)) => {
                let mut conv = Vec::new();
                for (j, p) in parts.iter().enumerate() {
                    let kind = p
                        .get("type")
                        .and_then(Value::as_str)
                        .ok_or_else(|| at(&format!("content[{j}] needs a `type`")))?;
                    match kind {
                        "text" => {
                            let t = p
                                .get("text")
                                .and_then(Value::as_str)
                                .ok_or_else(|| at(&format!("content[{j}] text part needs `text`")))?;
                            conv.push(json!({"type": "text", "text": t}));
                        }
                        "image_url" => {
                            let url = match p.get("image_url") {
                                Some(Value::String(s)) => s.as_str(),
                                Some(o) => o
                                    .get("url")
                                    .and_then(Value::as_str)
                                    .ok_or_else(|| at(&format!("content[{j}] image part needs `image_url.url`")))?,
                                None => return Err(at(&format!("content[{j}] image part needs `image_url`"))),
                            };
                            if role != "user" {
                                return Err(at("images are accepted in user messages only"));
                            }
                            images.push(images::load(url, limits)?);
                            conv.push(json!({"type": "image"}));
                        }
                        other => {
                            return Err(at(&format!("content part type `{other}` is not supported (text, image_url)")))
                        }
                    }
                }
                Value::Array(conv)
            }
            _ => return Err(at("`content` must be a string or a list of parts")),
        };
        out.push(json!({"role": role, "content": content}));
    }
    Ok((Value::Array(out), images))
}
