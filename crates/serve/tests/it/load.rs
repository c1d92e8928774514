//! A bounded load test on loopback (run by hand; it stops by itself):
//!
//! ```sh
//! cargo test --release -p medr1-serve --test load -- --ignored --nocapture
//! ```
//!
//! 256 requests (half with the bundled chest X-ray, half text only; 16 new tokens each, sampled
//! with per-request seeds) from 16 concurrent clients against the tiny checkpoint, with
//! `--max-batch 8`. Prints requests/s, tokens/s and latency percentiles.

use base64::Engine;
use candle_core::DType;
use serde_json::json;
use serve::ServeOptions;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[test]
#[ignore]
fn load_tiny_checkpoint() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let ck = vlm::Checkpoint::open(&repo.join("crates/vlm/tests/fixtures/qwen2vl-tiny/model"), DType::F32).unwrap();
    let opts = ServeOptions { port: 0, served_model: "tiny".into(), default_max_tokens: 16, ..ServeOptions::default() };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let running = rt.block_on(serve::start(ck, &opts, std::future::pending())).unwrap();
    let url = format!("http://{}/v1/chat/completions", running.addr);
    let img = base64::engine::general_purpose::STANDARD
        .encode(std::fs::read(repo.join("samples/real/Images/RealSamples/xr_chest.png")).unwrap());
    let (total, clients) = (256usize, 16usize);
    let next = Arc::new(Mutex::new(0usize));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let tokens = Arc::new(Mutex::new(0u64));
    let t0 = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let (next, latencies, tokens, url, img) = (next.clone(), latencies.clone(), tokens.clone(), url.clone(), img.clone());
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(120))).build().into();
                loop {
                    let i = {
                        let mut n = next.lock().unwrap();
                        if *n >= total {
                            return;
                        }
                        *n += 1;
                        *n - 1
                    };
                    let content = if i % 2 == 0 {
                        json!([{"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{img}")}}, {"type": "text", "text": "Which organ is shown?"}])
                    } else {
                        json!("What imaging modality is used for chest radiographs?")
                    };
                    let body = json!({"messages": [{"role": "user", "content": content}], "max_tokens": 16, "temperature": 1.0, "seed": i});
                    let t = Instant::now();
                    let mut res = agent.post(&url).header("content-type", "application/json").send(body.to_string()).unwrap();
                    let v: serde_json::Value = serde_json::from_str(&res.body_mut().read_to_string().unwrap()).unwrap();
                    latencies.lock().unwrap().push(t.elapsed().as_secs_f64());
                    *tokens.lock().unwrap() += v["usage"]["completion_tokens"].as_u64().unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let secs = t0.elapsed().as_secs_f64();
    let mut l = latencies.lock().unwrap().clone();
    l.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |p: f64| l[((l.len() as f64 - 1.0) * p).round() as usize] * 1e3;
    let toks = *tokens.lock().unwrap();
    println!(
        "{total} requests, {clients} clients, max batch 8: {:.1} requests/s, {:.0} completion tokens/s; latency p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        total as f64 / secs,
        toks as f64 / secs,
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0)
    );
    rt.block_on(running.shutdown());
}
