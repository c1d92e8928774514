//! The API over real HTTP on loopback: answers equal to the library's `generate` (what `medr1 ask`
//! runs), streaming, n > 1, 32 concurrent requests, every bad input with its error while the
//! server keeps serving, cancelled streams freeing their slot, API keys, graceful shutdown.

use base64::Engine;
use candle_core::DType;
use serde_json::{json, Value};
use serve::ServeOptions;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use vlm::generate::{generate, GenerateOptions, Sampling};
use vlm::Checkpoint;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn model_dir() -> PathBuf {
    repo().join("crates/vlm/tests/fixtures/qwen2vl-tiny/model")
}

fn ck() -> Checkpoint {
    Checkpoint::open(&model_dir(), DType::F32).unwrap()
}

fn opts() -> ServeOptions {
    // Small limits so the limit tests stay small.
    ServeOptions {
        port: 0,
        served_model: "tiny".into(),
        max_body_bytes: 2 * 1024 * 1024,
        max_image_bytes: 512 * 1024,
        max_image_pixels: 1024 * 1024,
        default_max_tokens: 16,
        ..ServeOptions::default()
    }
}

/// A server on its own runtime thread; dropped at the end of the test.
struct TestServer {
    url: String,
    rt: Option<tokio::runtime::Runtime>,
    running: Option<serve::Running>,
}

impl TestServer {
    fn start(o: ServeOptions) -> TestServer {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let running = rt.block_on(serve::start(ck(), &o, std::future::pending())).unwrap();
        TestServer { url: format!("http://{}", running.addr), rt: Some(rt), running: Some(running) }
    }

    fn shutdown(&mut self) {
        if let (Some(rt), Some(r)) = (self.rt.as_ref(), self.running.take()) {
            rt.block_on(r.shutdown());
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown();
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

fn post(url: &str, body: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut req = agent().post(url);
    let mut has_ct = false;
    for (k, v) in headers {
        has_ct |= k.eq_ignore_ascii_case("content-type");
        req = req.header(*k, *v);
    }
    if !has_ct {
        req = req.header("content-type", "application/json");
    }
    let mut res = req.send(body).unwrap();
    let status = res.status().as_u16();
    let text = res.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn chat(s: &TestServer, body: &Value) -> (u16, Value) {
    post(&format!("{}/v1/chat/completions", s.url), &body.to_string(), &[])
}

fn data_url(path: &Path, mime: &str) -> String {
    format!("data:{mime};base64,{}", base64::engine::general_purpose::STANDARD.encode(std::fs::read(path).unwrap()))
}

fn xray() -> PathBuf {
    repo().join("samples/real/Images/RealSamples/xr_chest.png")
}

fn image_message(url: &str, question: &str) -> Value {
    json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": question}]}])
}

/// What `medr1 ask` computes for one image and question (same prompt layout, same sampling).
fn ask(ck: &Checkpoint, image: Option<&Path>, question: &str, max_new: usize, s: Sampling) -> String {
    let mut content = vec![];
    let mut images = vec![];
    if let Some(p) = image {
        images.push(data::image::open(p).unwrap());
        content.push(json!({"type": "image", "image": p.display().to_string()}));
    }
    content.push(json!({"type": "text", "text": question}));
    let prompt = ck.processor.prompt_with_images(&json!([{"role": "user", "content": content}]), &images).unwrap();
    let enc = ck.processor.encode(&[prompt], None, ck.model.device()).unwrap();
    let o = GenerateOptions {
        max_new_tokens: max_new,
        eos_token_ids: ck.generation.eos_token_ids.clone(),
        suppress_token_ids: ck.config.vision_token_ids(),
        sampling: vec![s],
    };
    let g = generate(&ck.model, &enc.batch, &o, &mut |_, _| true).unwrap();
    ck.processor.tokenizer.decode(&g[0].tokens, true).unwrap()
}

fn sampled(seed: u64) -> Sampling {
    Sampling { temperature: 1.0, top_k: None, top_p: Some(0.9), seed }
}

/// Reads an SSE stream to the end: the concatenated content per choice, finish reasons, usage.
fn read_stream(url: &str, body: &Value) -> (Vec<String>, Vec<Option<String>>, Option<Value>, bool) {
    let res = agent().post(url).header("content-type", "application/json").send(body.to_string()).unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert!(res.headers().get("content-type").unwrap().to_str().unwrap().starts_with("text/event-stream"));
    let reader = BufReader::new(res.into_body().into_reader());
    let n = body.get("n").and_then(Value::as_u64).unwrap_or(1) as usize;
    let (mut texts, mut reasons, mut usage, mut done) = (vec![String::new(); n], vec![None; n], None, false);
    for line in reader.lines() {
        let line = line.unwrap();
        let Some(data) = line.strip_prefix("data: ") else { continue };
        if data == "[DONE]" {
            done = true;
            break;
        }
        let v: Value = serde_json::from_str(data).unwrap();
        assert_eq!(v["object"], "chat.completion.chunk");
        if let Some(u) = v.get("usage") {
            usage = Some(u.clone());
        }
        for c in v["choices"].as_array().unwrap() {
            let i = c["index"].as_u64().unwrap() as usize;
            if let Some(t) = c["delta"]["content"].as_str() {
                texts[i] += t;
            }
            if let Some(r) = c["finish_reason"].as_str() {
                reasons[i] = Some(r.to_string());
            }
        }
    }
    (texts, reasons, usage, done)
}

#[test]
fn plain_and_streamed_answers_equal_ask_with_the_same_seed() {
    let s = TestServer::start(opts());
    let ck = ck();
    let url = data_url(&xray(), "image/png");
    for (temp, seed) in [(0.0, 0u64), (1.0, 17)] {
        let body = json!({"model": "tiny", "messages": image_message(&url, "Which organ is shown?"), "max_tokens": 12, "temperature": temp, "top_p": 0.9, "seed": seed});
        let want = ask(
            &ck,
            Some(&xray()),
            "Which organ is shown?",
            12,
            if temp == 0.0 { Sampling { top_p: Some(0.9), ..Sampling::greedy() } } else { sampled(seed) },
        );
        let (st, v) = chat(&s, &body);
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["model"], "tiny");
        assert_eq!(v["choices"][0]["message"]["content"], want.as_str());
        assert_eq!(v["choices"][0]["message"]["role"], "assistant");
        let u = &v["usage"];
        assert_eq!(
            u["total_tokens"].as_u64(),
            Some(u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap())
        );
        assert!(u["prompt_tokens"].as_u64().unwrap() > 16, "the image's tokens count");
        let mut sbody = body.clone();
        sbody["stream"] = json!(true);
        sbody["stream_options"] = json!({"include_usage": true});
        let (texts, reasons, usage, done) = read_stream(&format!("{}/v1/chat/completions", s.url), &sbody);
        assert!(done);
        assert_eq!(texts[0], want);
        assert_eq!(reasons[0].as_deref(), v["choices"][0]["finish_reason"].as_str());
        assert_eq!(usage.unwrap(), *u);
    }
}

#[test]
fn n_choices_use_consecutive_seeds() {
    let s = TestServer::start(opts());
    let ck = ck();
    let body = json!({"messages": [{"role": "user", "content": "Describe the finding."}], "max_tokens": 10, "temperature": 1.0, "top_p": 0.9, "seed": 5, "n": 3});
    let (st, v) = chat(&s, &body);
    assert_eq!(st, 200, "{v}");
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 3);
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i);
        assert_eq!(
            c["message"]["content"],
            ask(&ck, None, "Describe the finding.", 10, sampled(5 + i as u64)).as_str()
        );
    }
    assert_ne!(choices[0]["message"]["content"], choices[1]["message"]["content"]);
    let (texts, _, _, done) = read_stream(
        &format!("{}/v1/chat/completions", s.url),
        &json!({"messages": [{"role": "user", "content": "Describe the finding."}], "max_tokens": 10, "temperature": 1.0, "top_p": 0.9, "seed": 5, "n": 3, "stream": true}),
    );
    assert!(done);
    for (i, t) in texts.iter().enumerate() {
        assert_eq!(t, choices[i]["message"]["content"].as_str().unwrap());
    }
}

#[test]
fn thirty_two_concurrent_requests_are_all_answered_correctly() {
    let s = TestServer::start(ServeOptions { max_batch: 6, ..opts() });
    let ck = ck();
    let url = data_url(&xray(), "image/png");
    let questions: Vec<String> =
        (0..32).map(|i| format!("Question {i}: which organ?{}", " Please answer.".repeat(i % 4))).collect();
    let xr = xray();
    let wants: Vec<String> = questions
        .iter()
        .enumerate()
        .map(|(i, q)| ask(&ck, if i % 2 == 0 { Some(xr.as_path()) } else { None }, q, 8, sampled(i as u64)))
        .collect();
    let t0 = Instant::now();
    let handles: Vec<_> = questions
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let messages = if i % 2 == 0 { image_message(&url, q) } else { json!([{"role": "user", "content": q}]) };
            let body = json!({"messages": messages, "max_tokens": 8, "temperature": 1.0, "top_p": 0.9, "seed": i});
            let endpoint = format!("{}/v1/chat/completions", s.url);
            std::thread::spawn(move || post(&endpoint, &body.to_string(), &[]))
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let (st, v) = h.join().unwrap();
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["choices"][0]["message"]["content"], wants[i].as_str(), "request {i}");
    }
    eprintln!("32 concurrent requests in {:.2} s", t0.elapsed().as_secs_f64());
}

#[test]
fn every_bad_input_gets_its_error_and_the_server_keeps_serving() {
    let dir = std::env::temp_dir().join(format!("medr1-serve-allowed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(xray(), dir.join("xr.png")).unwrap();
    let s = TestServer::start(ServeOptions { allow_local_files: Some(dir.clone()), ..opts() });
    let endpoint = format!("{}/v1/chat/completions", s.url);
    let ok_msg = json!([{"role": "user", "content": "hi"}]);
    // (what, body, extra headers, status, error code or "" for any)
    type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("malformed JSON", "{\"messages\": [".into(), vec![], 400, "invalid_json"),
        ("wrong content type", json!({"messages": ok_msg}).to_string(), vec![("content-type", "text/plain")], 415, "unsupported_media_type"),
        ("body too large", json!({"messages": [{"role": "user", "content": "x".repeat(3 * 1024 * 1024)}]}).to_string(), vec![], 413, "request_too_large"),
        ("unknown model", json!({"model": "gpt-4o", "messages": ok_msg}).to_string(), vec![], 404, "model_not_found"),
        ("unsupported parameter", json!({"messages": ok_msg, "tools": [{"type": "function"}]}).to_string(), vec![], 400, "unsupported_parameter"),
        ("unknown parameter", json!({"messages": ok_msg, "temprature": 1}).to_string(), vec![], 400, "unknown_parameter"),
        ("context exceeded", json!({"messages": ok_msg, "max_tokens": 100000}).to_string(), vec![], 400, "context_length_exceeded"),
        ("no messages", json!({"model": "tiny"}).to_string(), vec![], 400, ""),
        ("bad role", json!({"messages": [{"role": "tool", "content": "x"}]}).to_string(), vec![], 400, ""),
        ("bad temperature", json!({"messages": ok_msg, "temperature": 5}).to_string(), vec![], 400, ""),
        ("n too large", json!({"messages": ok_msg, "n": 100}).to_string(), vec![], 400, ""),
        ("remote URL", json!({"messages": image_message("https://example.com/x.png", "q")}).to_string(), vec![], 400, "invalid_image"),
        ("bad base64", json!({"messages": image_message("data:image/png;base64,@@@@", "q")}).to_string(), vec![], 400, "invalid_image"),
        ("not an image", json!({"messages": image_message(&format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(b"just text, not pixels")), "q")}).to_string(), vec![], 400, "invalid_image"),
        ("image too many bytes", json!({"messages": image_message(&format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(vec![0u8; 600 * 1024])), "q")}).to_string(), vec![], 413, "request_too_large"),
        ("image too many pixels", json!({"messages": image_message(&big_png(), "q")}).to_string(), vec![], 400, "image_too_large"),
        ("local file outside the folder", json!({"messages": image_message(&xray().display().to_string(), "q")}).to_string(), vec![], 403, ""),
        ("path traversal", json!({"messages": image_message("../../../../../../etc/passwd", "q")}).to_string(), vec![], 403, ""),
        // Outside is 403 whether or not the file exists: no probing of the file system.
        ("missing file outside the folder", json!({"messages": image_message("/no/such/dir/x.png", "q")}).to_string(), vec![], 403, ""),
        ("missing file by traversal", json!({"messages": image_message("../no-such-file.png", "q")}).to_string(), vec![], 403, ""),
        ("a folder, not an image", json!({"messages": image_message(&format!("{}/../{}", dir.display(), dir.file_name().unwrap().to_string_lossy()), "q")}).to_string(), vec![], 400, "invalid_image"),
        ("missing local file", json!({"messages": image_message("nope.png", "q")}).to_string(), vec![], 400, "invalid_image"),
    ];
    for (name, body, headers, status, code) in &cases {
        let (st, v) = post(&endpoint, body, headers);
        assert_eq!(st, *status, "{name}: {v}");
        assert!(v["error"]["message"].is_string(), "{name}: {v}");
        assert!(v["error"]["type"].is_string(), "{name}: {v}");
        if !code.is_empty() {
            assert_eq!(v["error"]["code"], *code, "{name}: {v}");
        }
        // Still serving.
        let (st, _) = chat(&s, &json!({"messages": ok_msg, "max_tokens": 2}));
        assert_eq!(st, 200, "after {name}");
    }
    // Allowed local file, and DICOM in a data URL.
    let (st, v) = chat(&s, &json!({"messages": image_message("xr.png", "Which organ?"), "max_tokens": 3}));
    assert_eq!(st, 200, "{v}");
    let dcm = data_url(&repo().join("crates/data/tests/fixtures/dicom/CT_small.dcm"), "application/dicom");
    let (st, v) = chat(&s, &json!({"messages": image_message(&dcm, "Which organ?"), "max_tokens": 3}));
    assert_eq!(st, 200, "{v}");
    // Unknown route, models, health.
    let mut r = agent().get(&format!("{}/v2/nothing", s.url)).call().unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let v: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    assert!(v["error"]["message"].is_string());
    let mut r = agent().get(&format!("{}/v1/models", s.url)).call().unwrap();
    let v: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(v["data"][0]["id"], "tiny");
    let mut r = agent().get(&format!("{}/health", s.url)).call().unwrap();
    let v: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(v["status"], "ok");
    std::fs::remove_dir_all(&dir).ok();
}

/// A 2048 x 1024 PNG: over the test server's 1 Mpixel limit, small in bytes.
fn big_png() -> String {
    let img = image::GrayImage::new(2048, 1024);
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(out.into_inner()))
}

#[test]
fn api_key_is_required_when_set() {
    let s = TestServer::start(ServeOptions { api_key: Some("sekret".into()), ..opts() });
    let endpoint = format!("{}/v1/chat/completions", s.url);
    let body = json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}).to_string();
    assert_eq!(post(&endpoint, &body, &[]).0, 401);
    assert_eq!(post(&endpoint, &body, &[("authorization", "Bearer wrong")]).0, 401);
    assert_eq!(post(&endpoint, &body, &[("authorization", "Bearer sekret")]).0, 200);
    assert_eq!(agent().get(&format!("{}/v1/models", s.url)).call().unwrap().status().as_u16(), 401);
    // Health stays open for load balancers.
    assert_eq!(agent().get(&format!("{}/health", s.url)).call().unwrap().status().as_u16(), 200);
}

fn health(s: &TestServer) -> Value {
    let mut r = agent().get(&format!("{}/health", s.url)).call().unwrap();
    serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
}

/// Polls /health until `pred` holds (at most 10 s).
fn wait_health(s: &TestServer, pred: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..500 {
        let h = health(s);
        if pred(&h) {
            return h;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("server never reached the expected state: {}", health(s));
}

#[test]
fn a_cancelled_stream_frees_its_slot() {
    // One slot: a long stream holds it; dropping the connection must hand it to the next request.
    let s = TestServer::start(ServeOptions { max_batch: 1, ..opts() });
    let endpoint = format!("{}/v1/chat/completions", s.url);
    let long = json!({"messages": [{"role": "user", "content": "Tell me everything."}], "max_tokens": 3000, "stream": true, "temperature": 1.0, "seed": 1, "ignore_eos": true});
    let res = agent().post(&endpoint).header("content-type", "application/json").send(long.to_string()).unwrap();
    let mut reader = BufReader::new(res.into_body().into_reader());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("data: "));
    wait_health(&s, |h| h["active_sequences"] == 1);
    drop(reader); // the client goes away mid-stream
    let (st, v) = chat(
        &s,
        &json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "temperature": 1.0, "seed": 2}),
    );
    assert_eq!(st, 200, "{v}");
    let h = wait_health(&s, |h| h["active_sequences"] == 0);
    assert_eq!(h["cancelled_sequences"], 1, "{h}");
    // The abandoned stream stopped long before its 3000 tokens.
    let total = h["generated_tokens"].as_u64().unwrap();
    assert!(total < 3000, "{total} tokens generated");
    eprintln!("abandoned stream stopped after {} tokens", total - v["usage"]["completion_tokens"].as_u64().unwrap());
}

#[test]
fn shutdown_finishes_in_flight_requests() {
    let mut s = TestServer::start(opts());
    let endpoint = format!("{}/v1/chat/completions", s.url);
    // ignore_eos: the answer runs its full 3000 tokens, so shutdown surely starts mid-generation.
    let body = json!({"messages": [{"role": "user", "content": "Tell me everything."}], "max_tokens": 3000, "temperature": 1.0, "seed": 3, "ignore_eos": true}).to_string();
    let e2 = endpoint.clone();
    let h = std::thread::spawn(move || post(&e2, &body, &[]));
    // Shut down while the request is generating.
    wait_health(&s, |h| h["active_sequences"] == 1 && h["generated_tokens"].as_u64().unwrap() > 0);
    s.shutdown();
    let (st, v) = h.join().unwrap();
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["usage"]["completion_tokens"], 3000, "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    // Nothing listens any more.
    assert!(agent().get(&format!("{}/health", s.url)).call().is_err());
}

#[test]
fn stop_strings_end_the_answer_before_them() {
    let s = TestServer::start(opts());
    let base = json!({"messages": [{"role": "user", "content": "Which organ is shown?"}], "max_tokens": 16});
    let (_, v) = chat(&s, &base);
    let full = v["choices"][0]["message"]["content"].as_str().unwrap().to_string();
    let chars: Vec<char> = full.chars().collect();
    assert!(chars.len() >= 8, "need a longer answer: {full:?}");
    let stop: String = chars[4..7].iter().collect();
    let want = &full[..full.find(&stop).unwrap()];
    let mut body = base.clone();
    body["stop"] = json!(["never-appears", stop]);
    let (st, v) = chat(&s, &body);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], want);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    body["stream"] = json!(true);
    let (texts, reasons, _, done) = read_stream(&format!("{}/v1/chat/completions", s.url), &body);
    assert!(done);
    assert_eq!(texts[0], want, "streamed text must not leak the stop string's start");
    assert_eq!(reasons[0].as_deref(), Some("stop"));
}

#[test]
fn a_client_that_stops_reading_does_not_block_others() {
    let s = TestServer::start(opts());
    let endpoint = format!("{}/v1/chat/completions", s.url);
    // A stream whose reader never reads past the headers.
    let long = json!({"messages": [{"role": "user", "content": "Tell me everything."}], "max_tokens": 3000, "stream": true, "temperature": 1.0, "seed": 1, "ignore_eos": true});
    let stalled = agent().post(&endpoint).header("content-type", "application/json").send(long.to_string()).unwrap();
    wait_health(&s, |h| h["active_sequences"] == 1);
    for i in 0..3 {
        let (st, v) = chat(&s, &json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 6, "seed": i}));
        assert_eq!(st, 200, "{v}");
    }
    drop(stalled);
}

/// A client that sends its headers and then no body is answered 408 after the body-read
/// timeout, instead of holding the connection until it leaves.
#[test]
fn a_body_that_never_arrives_times_out() {
    use std::io::{Read, Write};
    let s = TestServer::start(ServeOptions { body_read_timeout: std::time::Duration::from_millis(300), ..opts() });
    let addr = s.url.trim_start_matches("http://").to_string();
    let mut c = std::net::TcpStream::connect(&addr).unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    write!(
        c,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    )
    .unwrap();
    let mut buf = [0u8; 4096];
    let n = c.read(&mut buf).unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    assert!(head.contains("--body-read-timeout"), "{head}");
}

/// A client that connects and sends nothing, or only part of a request's header, is disconnected
/// after the header-read timeout (the connection is closed: a read returns end of stream), and
/// the server goes on answering others.
#[test]
fn a_header_that_never_completes_times_out() {
    use std::io::{Read, Write};
    let s = TestServer::start(ServeOptions { header_read_timeout: std::time::Duration::from_millis(300), ..opts() });
    let addr = s.url.trim_start_matches("http://").to_string();
    for partial in ["", "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Ty"] {
        let mut c = std::net::TcpStream::connect(&addr).unwrap();
        c.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
        c.write_all(partial.as_bytes()).unwrap();
        let t = std::time::Instant::now();
        let mut buf = [0u8; 4096];
        // Closed (0 bytes, or a reset), possibly after a 408 response.
        let mut got = Vec::new();
        loop {
            match c.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        let waited = t.elapsed();
        assert!(waited < std::time::Duration::from_secs(20), "held for {waited:?} with {partial:?}");
        let head = String::from_utf8_lossy(&got);
        assert!(head.is_empty() || head.starts_with("HTTP/1.1 408"), "{head}");
    }
    let (st, v) = chat(&s, &json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}));
    assert_eq!(st, 200, "{v}");
}

/// A prompt longer than --max-prompt-tokens is refused before any prefill, and the server goes on
/// answering normal requests.
#[test]
fn prompts_over_the_token_limit_are_refused() {
    let s = TestServer::start(ServeOptions { max_prompt_tokens: 64, ..opts() });
    let endpoint = format!("{}/v1/chat/completions", s.url);
    let long = json!({"messages": [{"role": "user", "content": "lung nodule ".repeat(200)}]}).to_string();
    let (st, v) = post(&endpoint, &long, &[]);
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"]["code"], "prompt_too_long", "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("--max-prompt-tokens"), "{v}");
    let (st, v) = post(&endpoint, &json!({"messages": [{"role": "user", "content": "hi"}]}).to_string(), &[]);
    assert_eq!(st, 200, "{v}");
}

/// One client may hold at most --max-requests-per-client requests in flight: with a limit of 1,
/// a second request while the first still streams gets 429, and once the first client has gone
/// the next request is served.
#[test]
fn a_client_over_its_request_limit_gets_429() {
    use std::io::{Read, Write};
    let s = TestServer::start(ServeOptions { max_requests_per_client: 1, ..opts() });
    let addr = s.url.trim_start_matches("http://").to_string();
    let endpoint = format!("{}/v1/chat/completions", s.url);
    // A long stream, read until its first event and then held open.
    let body = json!({"messages": [{"role": "user", "content": "hi"}], "stream": true, "max_tokens": 20000, "ignore_eos": true}).to_string();
    let mut c = std::net::TcpStream::connect(&addr).unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    write!(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("data:") {
        let n = c.read(&mut buf).unwrap();
        assert!(n > 0, "the stream ended early");
        got.extend_from_slice(&buf[..n]);
    }
    let hi = json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}).to_string();
    let (st, v) = post(&endpoint, &hi, &[]);
    assert_eq!(st, 429, "{v}");
    assert_eq!(v["error"]["code"], "too_many_requests", "{v}");
    // The streaming client leaves; its slot is given back when the server notices.
    drop(c);
    let mut status = 0;
    for _ in 0..100 {
        status = post(&endpoint, &hi, &[]).0;
        if status == 200 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(status, 200, "the slot was never given back");
}

/// A copy of the tiny checkpoint with every float weight perturbed (the same model, other weights).
fn perturbed_copy(dir: &Path) {
    for e in std::fs::read_dir(model_dir()).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
    }
    let bytes = std::fs::read(model_dir().join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut owned: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, t) in st.tensors() {
        let data = match t.dtype() {
            safetensors::Dtype::F32 => t
                .data()
                .chunks_exact(4)
                .enumerate()
                .flat_map(|(i, c)| {
                    let v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                    (v * 1.3 + 0.02 * ((i % 7) as f32 - 3.0)).to_le_bytes()
                })
                .collect(),
            _ => t.data().to_vec(),
        };
        owned.push((name, t.dtype(), t.shape().to_vec(), data));
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = owned
        .iter()
        .map(|(n, d, s, b)| (n.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
}

/// `POST /v1/medr1/reload_weights`: a request running when the reload arrives finishes on the old
/// weights, the reload answers once the new weights serve, and later answers equal the new
/// checkpoint's own; a checkpoint of another model, a missing folder and a server without
/// `--enable-weight-reload` are refused.
#[test]
fn weights_reload_between_steps_and_drop_nothing() {
    let new_dir = tempfile::tempdir().unwrap();
    perturbed_copy(new_dir.path());
    let (old_ck, new_ck) = (ck(), Checkpoint::open(new_dir.path(), DType::F32).unwrap());
    let q = "Describe the finding.";
    let body = move |max: usize| json!({"messages": [{"role": "user", "content": q}], "max_tokens": max, "temperature": 0, "ignore_eos": true});
    let want_old = ask(&old_ck, None, q, 40, Sampling::greedy());
    let want_new = ask(&new_ck, None, q, 12, Sampling::greedy());
    assert_ne!(want_old, want_new, "the perturbation changes the answer");

    let s = TestServer::start(ServeOptions { enable_weight_reload: true, ..opts() });
    // The old weights' 40 tokens (past EOS, so the request runs long enough to be caught running);
    // up to EOS they are what `ask` answers.
    let (_, v) = chat(&s, &body(40));
    let old_40 = v["choices"][0]["message"]["content"].as_str().unwrap().to_string();
    assert!(old_40.starts_with(want_old.as_str()), "{old_40:?} vs {want_old:?}");
    let url = s.url.clone();
    let long = std::thread::spawn(move || post(&format!("{url}/v1/chat/completions"), &body(40).to_string(), &[]));
    // Wait until the long request is in the running batch, then reload.
    let t0 = Instant::now();
    loop {
        let h: Value = serde_json::from_str(
            &agent().get(&format!("{}/health", s.url)).call().unwrap().body_mut().read_to_string().unwrap(),
        )
        .unwrap();
        if h["active_sequences"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "the long request never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    let reload = json!({"path": new_dir.path().to_str().unwrap()}).to_string();
    let (st, v) = post(&format!("{}/v1/medr1/reload_weights", s.url), &reload, &[]);
    assert_eq!(st, 200, "{v}");
    assert!(v["load_seconds"].as_f64().unwrap() >= 0.0);
    let (st, v) = long.join().unwrap();
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], old_40.as_str(), "the running request kept its weights");
    let (st, v) = chat(&s, &body(12));
    assert_eq!(st, 200, "{v}");
    let new_12 = v["choices"][0]["message"]["content"].as_str().unwrap().to_string();
    assert!(new_12.starts_with(want_new.as_str()), "answers come from the new weights: {new_12:?} vs {want_new:?}");

    // Refusals: another model, a missing folder.
    let other = repo().join("crates/vlm/tests/fixtures/qwen25vl-tiny/model");
    let (st, v) = post(&format!("{}/v1/medr1/reload_weights", s.url), &json!({"path": other}).to_string(), &[]);
    assert_eq!(st, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("another model"), "{v}");
    let (st, v) =
        post(&format!("{}/v1/medr1/reload_weights", s.url), &json!({"path": "/nonexistent/ck"}).to_string(), &[]);
    assert_eq!(st, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("/nonexistent/ck"), "{v}");
    // Still serving the new weights after the refusals.
    assert_eq!(chat(&s, &body(12)).1["choices"][0]["message"]["content"], new_12.as_str());
    let off = TestServer::start(opts());
    let (st, _) = post(&format!("{}/v1/medr1/reload_weights", off.url), &reload, &[]);
    assert_eq!(st, 404);
}
