//! The endpoint backend over real HTTP on loopback:
//! - against `medr1 serve` with the same checkpoint, it gets exactly the local backend's answers
//!   (same question text, same pixels, greedy);
//! - against a scripted server that answers some records right, some only in words, fails some
//!   once (503, retried) and some for good (400, recorded and retried by the next run), the counts
//!   come out exactly.

use crate::common;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use candle_core::DType;
use data::prompts::PromptVariant;
use data::Record;
use eval::backend::endpoint::{Endpoint, EndpointOptions};
use eval::backend::local::Local;
use eval::prediction;
use eval::run::{run, RunOptions};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vlm::Checkpoint;

fn endpoint(url: String, model: &str, api_key: Option<&str>) -> Endpoint {
    Endpoint::new(EndpointOptions {
        url,
        served_model: model.into(),
        api_key: api_key.map(String::from),
        concurrency: 3,
        max_new_tokens: 6,
        timeout: Duration::from_secs(60),
        retries: 2,
        backoff: Duration::from_millis(10),
        top_logprobs: None,
    })
}

fn opts(out: &std::path::Path) -> RunOptions {
    RunOptions {
        variant: PromptVariant::NoThink,
        out: out.to_path_buf(),
        image: Default::default(),
        limit: None,
        data: "phantoms".into(),
        train_domain: None,
    }
}

#[test]
fn endpoint_on_medr1_serve_equals_local_scoring() {
    let tmp = tempfile::tempdir().unwrap();
    let records: Vec<Record> = common::phantom_records(tmp.path()).into_iter().step_by(3).collect();
    let ck = Checkpoint::open(&common::model_dir(), DType::F32).unwrap();
    let local = Local { checkpoint: &ck, name: "tiny".into(), batch_size: 4, max_new_tokens: 6 };
    let want = run(&local, &records, &opts(&tmp.path().join("local")), &mut |_| {}).unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let so = serve::ServeOptions {
        port: 0,
        served_model: "tiny".into(),
        api_key: Some("k3y".into()),
        ..serve::ServeOptions::default()
    };
    let server = rt
        .block_on(serve::start(
            Checkpoint::open(&common::model_dir(), DType::F32).unwrap(),
            &so,
            std::future::pending(),
        ))
        .unwrap();
    let remote = endpoint(format!("http://{}/v1", server.addr), "tiny", Some("k3y"));
    let got = run(&remote, &records, &opts(&tmp.path().join("remote")), &mut |_| {}).unwrap();
    rt.block_on(server.shutdown());

    let (lp, _) = prediction::read(&tmp.path().join("local/predictions.jsonl")).unwrap();
    let (rp, _) = prediction::read(&tmp.path().join("remote/predictions.jsonl")).unwrap();
    assert_eq!(lp.len(), records.len());
    for (l, r) in lp.iter().zip(&rp) {
        assert_eq!(r.error, None);
        assert_eq!((&l.id, &l.output, l.completion_tokens), (&r.id, &r.output, r.completion_tokens));
    }
    assert_eq!(got.strict.overall, want.strict.overall);
    assert_eq!(got.lenient, want.lenient);
    assert!(got.model.contains("tiny @ http://"));

    // A wrong key is a 401: not retried, recorded per record.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let server = rt
        .block_on(serve::start(
            Checkpoint::open(&common::model_dir(), DType::F32).unwrap(),
            &so,
            std::future::pending(),
        ))
        .unwrap();
    let wrong = endpoint(format!("http://{}/v1", server.addr), "tiny", Some("nope"));
    let s = run(&wrong, &records[..2], &opts(&tmp.path().join("wrong-key")), &mut |_| {}).unwrap();
    rt.block_on(server.shutdown());
    assert_eq!((s.failed, s.strict.overall.n), (2, 0));
    let (wp, _) = prediction::read(&tmp.path().join("wrong-key/predictions.jsonl")).unwrap();
    assert!(
        wp[0].error.as_deref().unwrap().contains("HTTP 401")
            && wp[0].error.as_deref().unwrap().contains("after 1 attempt"),
        "{:?}",
        wp[0].error
    );
}

/// What the scripted server does with the k-th record.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Script {
    Right,
    FlakyThenWrong,
    Words,
    Broken,
}

fn script(k: usize) -> Script {
    [Script::Right, Script::FlakyThenWrong, Script::Words, Script::Broken][k % 4]
}

struct Scripted {
    /// User text -> (record index, gold letter, gold option text).
    by_text: HashMap<String, (usize, char, String)>,
    attempts: Mutex<HashMap<usize, usize>>,
    /// Pixels each record's image must arrive with.
    pixels: HashMap<usize, Vec<u8>>,
    broken_fixed: Mutex<bool>,
}

async fn scripted(
    State(s): State<Arc<Scripted>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    assert_eq!(body["model"], "remote-72b");
    assert_eq!(body["temperature"], 0.0);
    assert_eq!(headers.get("authorization").unwrap(), "Bearer secret");
    let content = body["messages"][0]["content"].as_array().unwrap();
    let url = content[0]["image_url"]["url"].as_str().unwrap();
    let text = content[1]["text"].as_str().unwrap();
    let (k, gold, gold_text) = s.by_text[text].clone();
    let png =
        base64::engine::general_purpose::STANDARD.decode(url.strip_prefix("data:image/png;base64,").unwrap()).unwrap();
    assert_eq!(image::load_from_memory(&png).unwrap().to_rgb8().into_raw(), s.pixels[&k], "record {k}: pixels differ");
    let attempt = {
        let mut a = s.attempts.lock().unwrap();
        let n = a.entry(k).or_insert(0);
        *n += 1;
        *n
    };
    let answer = |content: String| {
        (
            StatusCode::OK,
            Json(
                json!({"choices": [{"message": {"role": "assistant", "content": content}}], "usage": {"completion_tokens": 5}}),
            ),
        )
    };
    match script(k) {
        Script::Right => answer(format!("<answer> {gold} </answer>")),
        Script::FlakyThenWrong if attempt == 1 => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": {"message": "warming up"}})))
        }
        Script::FlakyThenWrong => answer(format!("<answer>{}</answer>", if gold == 'A' { 'B' } else { 'A' })),
        Script::Words => answer(format!("The image shows {gold_text}.")),
        Script::Broken if !*s.broken_fixed.lock().unwrap() => {
            (StatusCode::BAD_REQUEST, Json(json!({"error": {"message": "image too large"}})))
        }
        Script::Broken => answer(format!("<answer>{gold}</answer>")),
    }
}

#[test]
fn retries_failures_and_exact_counts_against_a_scripted_server() {
    let tmp = tempfile::tempdir().unwrap();
    // Records whose gold option's text names no other option, so the "Words" answers are unambiguous.
    let records: Vec<Record> = common::phantom_records(tmp.path())
        .into_iter()
        .filter(|r| {
            let g = r.options[r.answer].to_lowercase();
            r.options
                .iter()
                .enumerate()
                .all(|(i, o)| i == r.answer || (!o.to_lowercase().contains(&g) && !g.contains(&o.to_lowercase())))
        })
        .take(16)
        .collect();
    assert_eq!(records.len(), 16);
    let state = Arc::new(Scripted {
        by_text: records
            .iter()
            .enumerate()
            .map(|(k, r)| (PromptVariant::NoThink.for_record(r), (k, r.gold_letter(), r.options[r.answer].clone())))
            .collect(),
        attempts: Mutex::new(HashMap::new()),
        pixels: records.iter().enumerate().map(|(k, r)| (k, data::image::open(&r.image_path).unwrap().data)).collect(),
        broken_fixed: Mutex::new(false),
    });
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/v1/chat/completions", post(scripted)).with_state(state.clone());
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });

    std::env::set_var("MEDR1_TEST_KEY", "secret");
    let key = std::env::var("MEDR1_TEST_KEY").ok();
    let be = endpoint(format!("http://{addr}/v1/"), "remote-72b", key.as_deref());
    let out = tmp.path().join("remote");
    let s = run(&be, &records, &opts(&out), &mut |_| {}).unwrap();
    // 4 of each script: Right counts under both rules, Words only leniently, FlakyThenWrong under
    // neither (after one retry), Broken fails.
    assert_eq!((s.strict.overall.n, s.failed), (12, 4));
    assert_eq!((s.strict.overall.correct, s.lenient.overall.correct), (4, 8));
    assert_eq!(s.format_rate, 100.0 * 8.0 / 12.0);
    assert_eq!(s.tokens, 12 * 5);
    {
        let a = state.attempts.lock().unwrap();
        for k in 0..16 {
            let want = match script(k) {
                Script::FlakyThenWrong => 2,
                _ => 1,
            };
            assert_eq!(a[&k], want, "record {k} ({:?})", script(k));
        }
    }
    let (preds, _) = prediction::read(&out.join("predictions.jsonl")).unwrap();
    let broken = preds.iter().filter(|p| p.error.is_some()).collect::<Vec<_>>();
    assert_eq!(broken.len(), 4);
    assert!(broken[0].error.as_deref().unwrap().contains("HTTP 400: image too large"), "{:?}", broken[0].error);

    // The server is fixed; rerunning retries only the 4 failures.
    *state.broken_fixed.lock().unwrap() = true;
    let s2 = run(&be, &records, &opts(&out), &mut |_| {}).unwrap();
    assert_eq!((s2.strict.overall.n, s2.failed, s2.strict.overall.correct, s2.lenient.overall.correct), (16, 0, 8, 12));
    let a = state.attempts.lock().unwrap();
    assert_eq!(a.values().sum::<usize>(), 16 + 4 + 4);
}
