//! `medr1 serve` as a process: it prints where it listens, answers exactly what `medr1 ask`
//! answers for the same image, question and seed, and stops cleanly on SIGTERM.

use base64::Engine;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn serve_answers_what_ask_answers_and_stops_on_sigterm() {
    serve_answers_what_ask_answers("qwen2vl-tiny");
}

#[test]
fn serve_answers_what_ask_answers_with_qwen2_5_vl() {
    serve_answers_what_ask_answers("qwen25vl-tiny");
}

fn serve_answers_what_ask_answers(fixture: &str) {
    let model = repo().join(format!("crates/vlm/tests/fixtures/{fixture}/model"));
    let image = repo().join("samples/real/Images/RealSamples/us_echo.png");
    let q = "Which organ is shown in this image?";
    let mut child = Command::new(env!("CARGO_BIN_EXE_medr1"))
        .args(["serve", "--model", model.to_str().unwrap(), "--port", "0", "--served-model", "tiny"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    // Keep draining the request log so the server never blocks on a full pipe.
    let log = std::thread::spawn(move || err.lines().map_while(Result::ok).collect::<Vec<_>>());

    for (temperature, seed) in [("0", "0"), ("1.0", "42")] {
        let ask = Command::new(env!("CARGO_BIN_EXE_medr1"))
            .args([
                "ask",
                "--model",
                model.to_str().unwrap(),
                "--image",
                image.to_str().unwrap(),
                "--question",
                q,
                "--max-new-tokens",
                "12",
                "--temperature",
                temperature,
                "--seed",
                seed,
                "--json",
            ])
            .output()
            .unwrap();
        assert!(ask.status.success(), "{}", String::from_utf8_lossy(&ask.stderr));
        let want: Value = serde_json::from_slice(&ask.stdout).unwrap();
        let url = format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(std::fs::read(&image).unwrap())
        );
        let body = json!({"model": "tiny", "max_tokens": 12, "temperature": temperature.parse::<f64>().unwrap(), "seed": seed.parse::<u64>().unwrap(),
            "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": q}]}]});
        let mut res = ureq::post(&format!("http://{addr}/v1/chat/completions"))
            .header("content-type", "application/json")
            .send(body.to_string())
            .unwrap();
        let got: Value = serde_json::from_str(&res.body_mut().read_to_string().unwrap()).unwrap();
        assert_eq!(got["choices"][0]["message"]["content"], want["text"], "temperature {temperature}");
        assert_eq!(got["usage"]["completion_tokens"], want["completion_tokens"]);
        assert_eq!(got["usage"]["prompt_tokens"], want["prompt_tokens"]);
    }
    // SIGTERM: a clean exit.
    unsafe { libc_kill(child.id() as i32, 15) };
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let lines = log.join().unwrap();
    assert!(lines.iter().any(|l| l.starts_with("POST /v1/chat/completions 200")), "{lines:?}");
    assert!(lines.iter().any(|l| l == "stopped"), "{lines:?}");
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}
