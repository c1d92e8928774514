//! Any OpenAI-compatible chat-completions server (vLLM, SGLang, `medr1 serve`): the question and
//! the image (a base64 PNG data URL of the pixels medr1 decoded, so DICOM windowing and any
//! pre-resize are the same as local scoring), greedy (temperature 0), `--concurrency` requests in
//! flight. Transport errors, timeouts, 408, 429 and 5xx are retried with exponential backoff;
//! other statuses fail at once. A record that still fails is recorded with its error.

use super::{Answer, Backend, Item};
use crate::confidence::{answer_offset, letter_distribution, letter_token, token_at};
use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

pub struct EndpointOptions {
    /// The server's base URL (`http://host:8000/v1`) or the full chat-completions URL.
    pub url: String,
    /// The `model` field of each request.
    pub served_model: String,
    pub api_key: Option<String>,
    pub concurrency: usize,
    pub max_new_tokens: usize,
    /// Per-request time limit.
    pub timeout: Duration,
    /// Retries after the first attempt.
    pub retries: usize,
    /// Wait before the first retry; doubled each time.
    pub backoff: Duration,
    /// Ask for `logprobs` with this many `top_logprobs` per token (OpenAI's 0-20), to read the
    /// option letters' probabilities at the answer position; None asks for none (servers such as
    /// `medr1 serve` refuse the parameter).
    pub top_logprobs: Option<usize>,
}

pub struct Endpoint {
    o: EndpointOptions,
    url: String,
    agent: ureq::Agent,
}

/// PNG bytes of the decoded image.
fn png(img: &vlm::image_processor::RgbImage) -> Result<Vec<u8>> {
    let buf = image::RgbImage::from_raw(img.width as u32, img.height as u32, img.data.clone())
        .ok_or_else(|| anyhow!("image buffer size"))?;
    let mut out = std::io::Cursor::new(Vec::new());
    buf.write_to(&mut out, image::ImageFormat::Png)?;
    Ok(out.into_inner())
}

/// Why an attempt failed, and whether another attempt may succeed.
struct Failure {
    message: String,
    retryable: bool,
}

impl Endpoint {
    pub fn new(o: EndpointOptions) -> Endpoint {
        let base = o.url.trim_end_matches('/');
        let url =
            if base.ends_with("/chat/completions") { base.to_string() } else { format!("{base}/chat/completions") };
        let agent: ureq::Agent =
            ureq::Agent::config_builder().timeout_global(Some(o.timeout)).http_status_as_error(false).build().into();
        Endpoint { o, url, agent }
    }

    pub fn request_body(&self, it: &Item) -> Result<Value> {
        let data_url =
            format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(png(&it.image)?));
        let mut body = json!({
            "model": self.o.served_model,
            "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": data_url}},
                {"type": "text", "text": it.text},
            ]}],
            "temperature": 0.0,
            "max_tokens": self.o.max_new_tokens,
        });
        if let Some(k) = self.o.top_logprobs {
            body["logprobs"] = json!(true);
            body["top_logprobs"] = json!(k);
        }
        Ok(body)
    }

    fn attempt(&self, body: &Value, options: usize) -> Result<Answer, Failure> {
        let mut req = self.agent.post(&self.url);
        if let Some(k) = &self.o.api_key {
            req = req.header("Authorization", format!("Bearer {k}"));
        }
        let resp =
            req.send_json(body).map_err(|e| Failure { message: format!("{}: {e}", self.url), retryable: true })?;
        let status = resp.status().as_u16();
        let text = resp
            .into_body()
            .read_to_string()
            .map_err(|e| Failure { message: format!("reading the response: {e}"), retryable: true })?;
        if status != 200 {
            let detail = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(String::from))
                .unwrap_or_else(|| text.chars().take(200).collect());
            return Err(Failure {
                message: format!("HTTP {status}: {detail}"),
                retryable: status == 408 || status == 429 || status >= 500,
            });
        }
        parse_response(&text, options).map_err(|e| Failure { message: format!("{e:#}"), retryable: false })
    }

    fn answer_one(&self, it: &Item) -> Result<Answer> {
        let body = self.request_body(it)?;
        let mut wait = self.o.backoff;
        let mut tries = 0;
        loop {
            match self.attempt(&body, it.options) {
                Ok(a) => return Ok(a),
                Err(f) if f.retryable && tries < self.o.retries => {
                    tries += 1;
                    std::thread::sleep(wait);
                    wait *= 2;
                }
                Err(f) => bail!("{} (after {} attempt{})", f.message, tries + 1, if tries == 0 { "" } else { "s" }),
            }
        }
    }
}

/// The option letters' distribution at the answer position from OpenAI-format `logprobs`
/// (`choices[0].logprobs.content[j] = {token, logprob, top_logprobs: [{token, logprob}]}`): the
/// token spanning the answer word, and among its top alternatives those of the same shape.
pub fn letter_probs_from_logprobs(choice: &Value, output: &str, options: usize) -> Option<BTreeMap<String, f64>> {
    let content = choice["logprobs"]["content"].as_array()?;
    let pieces: Vec<&str> = content.iter().map(|t| t["token"].as_str().unwrap_or("")).collect();
    let mut ends = vec![0];
    for p in &pieces {
        ends.push(ends.last().unwrap() + p.len());
    }
    let k = token_at(answer_offset(output)?, pieces.len(), |k| ends[k])?;
    let (head, _) = letter_token(pieces[k])?;
    let alternatives: Vec<(char, f32)> = content[k]["top_logprobs"]
        .as_array()?
        .iter()
        .filter_map(|t| {
            let (h, l) = letter_token(t["token"].as_str()?)?;
            (h == head).then_some((l, t["logprob"].as_f64()? as f32))
        })
        .collect();
    letter_distribution(&alternatives, options)
}

/// The first choice's text, the completion-token count and, when the response carries
/// log-probabilities, the option letters' distribution, of a chat-completions response.
pub fn parse_response(text: &str, options: usize) -> Result<Answer> {
    let v: Value = serde_json::from_str(text).context("the response is not JSON")?;
    let output = v["choices"][0]["message"]["content"]
        .as_str()
        .ok_or_else(|| anyhow!("the response has no choices[0].message.content"))?
        .to_string();
    let completion_tokens = v["usage"]["completion_tokens"].as_u64().unwrap_or(0) as usize;
    let letter_probs = letter_probs_from_logprobs(&v["choices"][0], &output, options);
    Ok(Answer { output, completion_tokens, letter_probs })
}

impl Backend for Endpoint {
    fn answer(&self, items: &[Item]) -> Vec<Result<Answer>> {
        let next = AtomicUsize::new(0);
        let results: Mutex<Vec<Option<Result<Answer>>>> = Mutex::new((0..items.len()).map(|_| None).collect());
        std::thread::scope(|s| {
            for _ in 0..self.o.concurrency.clamp(1, items.len().max(1)) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= items.len() {
                        break;
                    }
                    let r = self.answer_one(&items[i]);
                    results.lock().unwrap()[i] = Some(r);
                });
            }
        });
        results.into_inner().unwrap().into_iter().map(|r| r.unwrap_or_else(|| Err(anyhow!("not attempted")))).collect()
    }
    fn chunk_size(&self) -> usize {
        // A few requests per worker keeps every connection busy between progress updates.
        4 * self.o.concurrency.max(1)
    }
    fn model_name(&self) -> String {
        format!("{} @ {}", self.o.served_model, self.o.url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A vLLM-style response with logprobs: the answer token `>B` (fused with the tag's end) and
    /// its top alternatives; only the same-shaped ones count, renormalised over 3 options.
    #[test]
    fn letter_probabilities_come_from_the_answer_tokens_top_logprobs() {
        let ln = |p: f64| p.ln();
        let body = json!({
            "choices": [{"message": {"content": "<answer>B</answer>"}, "logprobs": {"content": [
                {"token": "<answer", "logprob": -0.01, "top_logprobs": []},
                {"token": ">B", "logprob": ln(0.6), "top_logprobs": [
                    {"token": ">B", "logprob": ln(0.6)}, {"token": ">A", "logprob": ln(0.2)},
                    {"token": " C", "logprob": ln(0.1)}, {"token": ">D", "logprob": ln(0.05)},
                    {"token": ">C", "logprob": ln(0.05)}]},
                {"token": "</answer>", "logprob": -0.02, "top_logprobs": []}]}}],
            "usage": {"completion_tokens": 3}
        });
        let a = parse_response(&body.to_string(), 3).unwrap();
        let p = a.letter_probs.unwrap();
        // >A 0.2, >B 0.6, >C 0.05 (>D is not an option; " C" has another shape): / 0.85.
        assert!((p["B"] - 0.6 / 0.85).abs() < 1e-6 && (p["C"] - 0.05 / 0.85).abs() < 1e-6, "{p:?}");
        assert_eq!(a.completion_tokens, 3);
        // Without logprobs (medr1 serve today): no distribution, the answer still parses.
        let plain = json!({"choices": [{"message": {"content": "<answer>B</answer>"}}]});
        assert!(parse_response(&plain.to_string(), 3).unwrap().letter_probs.is_none());
    }
}
