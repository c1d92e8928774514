//! Routes: `POST /v1/chat/completions`, `GET /v1/models`, `GET /health`; API-key checks,
//! request logging, OpenAI-format errors for everything (unknown routes included).

use crate::engine::{EngineHandle, Job, Out};
use crate::error::ApiError;
use crate::images::ImageLimits;
use crate::request;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use vlm::generate::Sampling;
use vlm::Checkpoint;

/// Everything a handler needs.
pub struct AppState {
    /// The served model's processor and context length (the weights live in the engine thread,
    /// which may swap them: see `POST /v1/medr1/reload_weights`).
    pub processor: vlm::prompt::Processor,
    pub context: usize,
    pub engine: EngineHandle,
    pub enable_weight_reload: bool,
    pub dtype: vlm::precision::Precision,
    pub served_model: String,
    pub api_key: Option<String>,
    pub limits: ImageLimits,
    /// `max_tokens` when a request gives none (capped by the context left).
    pub default_max_tokens: usize,
    pub max_body_bytes: usize,
    pub body_read_timeout: std::time::Duration,
    pub max_prompt_tokens: usize,
    pub max_requests_per_client: usize,
    /// Requests in flight per client address.
    clients: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
    pub started: u64,
    next_id: AtomicU64,
}

impl AppState {
    pub fn new(ck: &Checkpoint, engine: EngineHandle, opts: &crate::options::ServeOptions) -> Self {
        AppState {
            processor: ck.processor.clone(),
            context: ck.config.text.max_position_embeddings,
            engine,
            enable_weight_reload: opts.enable_weight_reload,
            dtype: opts.dtype,
            served_model: opts.served_model.clone(),
            api_key: opts.api_key.clone(),
            limits: opts.limits(),
            default_max_tokens: opts.default_max_tokens,
            max_body_bytes: opts.max_body_bytes,
            body_read_timeout: opts.body_read_timeout,
            max_prompt_tokens: opts.max_prompt_tokens,
            max_requests_per_client: opts.max_requests_per_client,
            clients: Default::default(),
            started: now(),
            next_id: AtomicU64::new(1),
        }
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .route("/health", get(health))
        .route("/v1/medr1/reload_weights", post(reload_weights))
        .fallback(not_found)
        // The chat handler enforces the body limit itself (see read_body).
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(state.clone(), limit_clients))
        .layer(middleware::from_fn(log_requests))
        .with_state(state)
}

/// A client's place among its in-flight requests, given back when dropped.
struct Slot {
    clients: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
    ip: std::net::IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut m = self.clients.lock().unwrap();
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// A response body that holds its request's slot until the body is done (a stream counts as in
/// flight until it ends or its client leaves).
struct Guarded {
    inner: Body,
    _slot: Slot,
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// At most `--max-requests-per-client` requests in flight per client address; more get 429.
async fn limit_clients(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let ip = req.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
    let (Some(ip), true) = (ip, st.max_requests_per_client > 0) else { return next.run(req).await };
    {
        let mut m = st.clients.lock().unwrap();
        let n = m.entry(ip).or_insert(0);
        if *n >= st.max_requests_per_client {
            return ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                format!(
                    "this client already has {} requests in flight, the server's limit (--max-requests-per-client)",
                    st.max_requests_per_client
                ),
            )
            .code("too_many_requests")
            .into_response();
        }
        *n += 1;
    }
    let slot = Slot { clients: st.clients.clone(), ip };
    next.run(req).await.map(|b| Body::new(Guarded { inner: b, _slot: slot }))
}

/// One `tracing` event per request (target `medr1::request`, level info): method, path, status,
/// milliseconds. `RUST_LOG=medr1::request=off` silences them; `medr1 serve` prints them on stderr.
async fn log_requests(req: Request, next: Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let t0 = Instant::now();
    let res = next.run(req).await;
    let (status, ms) = (res.status().as_u16(), t0.elapsed().as_secs_f64() * 1e3);
    tracing::info!(target: "medr1::request", "{method} {path} {status} {ms:.0}ms");
    res
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        format!("no route {} {}", req.method(), req.uri().path()),
    )
    .code("not_found")
}

fn check_key(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(key) = &state.api_key else { return Ok(()) };
    let given =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    // Compared in constant time, so the response time says nothing about how much of a guess
    // was right.
    let matches = given.is_some_and(|g| bool::from(subtle::ConstantTimeEq::ct_eq(g.as_bytes(), key.as_bytes())));
    if !matches {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "missing or wrong API key (send `Authorization: Bearer KEY`)",
        )
        .code("invalid_api_key"));
    }
    Ok(())
}

async fn health(State(st): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "model": st.served_model,
        "active_sequences": st.engine.stats.active.load(Ordering::Relaxed),
        "queued_requests": st.engine.stats.queued.load(Ordering::Relaxed),
        "generated_tokens": st.engine.stats.generated_tokens.load(Ordering::Relaxed),
        "cancelled_sequences": st.engine.stats.cancelled.load(Ordering::Relaxed),
    }))
}

async fn models(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    check_key(&st, &headers)?;
    Ok(Json(
        json!({"object": "list", "data": [{"id": st.served_model, "object": "model", "created": st.started, "owned_by": "medr1"}]}),
    ))
}

/// `POST /v1/medr1/reload_weights {"path": DIR}` (with `--enable-weight-reload`): full weights
/// from a checkpoint folder of the same model. Requests running finish on the old weights, new
/// ones wait, none is dropped; answers once the new weights serve, with the load time.
async fn reload_weights(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    check_key(&st, &headers)?;
    if !st.enable_weight_reload {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "weight reloading is off: start the server with --enable-weight-reload",
        ));
    }
    let body = read_body(body, st.max_body_bytes, st.body_read_timeout).await?;
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid(format!("We could not parse the JSON body of your request: {e}")))?;
    let path = v
        .get("path")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid("`path` (a checkpoint folder on the server) is required").param("path"))?;
    let rx = st
        .engine
        .reload(std::path::PathBuf::from(path), st.dtype)
        .ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", "the server is shutting down"))?;
    let answer = tokio::task::spawn_blocking(move || rx.recv())
        .await
        .map_err(|_| ApiError::internal("reload failed"))?
        .map_err(|_| ApiError::internal("the engine stopped during the reload"))?;
    match answer {
        Ok(seconds) => Ok(Json(json!({"status": "ok", "path": path, "load_seconds": seconds}))),
        Err(e) => Err(ApiError::invalid(e).param("path")),
    }
}

/// A validated request, ready for the engine.
struct Ready {
    job_prompt: vlm::prompt::Prompt,
    prompt_tokens: usize,
    prompt_ids: Vec<u32>,
    req: request::ChatRequest,
    max_tokens: usize,
}

fn prepare(st: &AppState, body: &Value) -> Result<Ready, ApiError> {
    let req = request::parse(body, &st.limits)?;
    if let Some(m) = &req.model {
        if m != &st.served_model {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                format!("The model `{m}` does not exist; this server serves `{}`", st.served_model),
            )
            .param("model")
            .code("model_not_found"));
        }
    }
    let p = &st.processor;
    let prompt = p
        .prompt_with_images(&req.messages, &req.images)
        .map_err(|e| ApiError::invalid(format!("{e}")).param("messages"))?;
    let prompt_ids = p.tokenize(&p.expand(&prompt)).map_err(|e| ApiError::invalid(format!("{e}")).param("messages"))?;
    let prompt_tokens = prompt_ids.len();
    if prompt_tokens > st.max_prompt_tokens {
        // Prefill memory and time grow with the prompt (quadratically in attention): one huge
        // prompt must not take the server, or every other request's latency, with it.
        return Err(ApiError::invalid(format!(
            "the prompt is {prompt_tokens} tokens, more than this server's limit of {} (--max-prompt-tokens)",
            st.max_prompt_tokens
        ))
        .param("messages")
        .code("prompt_too_long"));
    }
    let ctx = st.context;
    let max_tokens = match req.max_tokens {
        Some(m) => m,
        None => st.default_max_tokens.min(ctx.saturating_sub(prompt_tokens)).max(1),
    };
    if prompt_tokens + max_tokens > ctx {
        return Err(ApiError::invalid(format!(
            "This model's maximum context length is {ctx} tokens. However, you requested {} tokens ({prompt_tokens} in the messages, {max_tokens} in the completion).",
            prompt_tokens + max_tokens
        ))
        .param("messages")
        .code("context_length_exceeded"));
    }
    Ok(Ready { job_prompt: prompt, prompt_tokens, prompt_ids, req, max_tokens })
}

/// Reads the body up to `limit` bytes. A larger body is still drained (up to 4x the limit) before
/// the 413 goes out: a server that answers and hangs up mid-upload leaves the client with a broken
/// pipe instead of the error.
/// Reads the body within `limit` bytes and `timeout` (a client that sends headers and then
/// nothing, or trickles its body, is answered 408 and its connection freed).
async fn read_body(body: Body, limit: usize, timeout: std::time::Duration) -> Result<Bytes, ApiError> {
    match tokio::time::timeout(timeout, read_body_within(body, limit)).await {
        Ok(r) => r,
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "invalid_request_error",
            format!("the request body did not arrive within {:.0} s (--body-read-timeout)", timeout.as_secs_f64()),
        )
        .code("timeout")),
    }
}

async fn read_body_within(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    use tokio_stream::StreamExt;
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::invalid(format!("cannot read the request body: {e}")))?;
        seen += chunk.len();
        if seen <= limit {
            buf.extend_from_slice(&chunk);
        } else if seen > 4 * limit {
            break;
        }
    }
    if seen > limit {
        return Err(ApiError::too_large("request body larger than the server's limit (--max-body-bytes)"));
    }
    Ok(Bytes::from(buf))
}

async fn chat(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    check_key(&st, &headers)?;
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.trim_start().to_ascii_lowercase().starts_with("application/json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request_error",
            format!("Content-Type must be application/json, got `{ct}`"),
        )
        .code("unsupported_media_type"));
    }
    let body = read_body(body, st.max_body_bytes, st.body_read_timeout).await?;
    let value: Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid(format!("We could not parse the JSON body of your request: {e}")).code("invalid_json")
    })?;
    // Image decoding and prompt building are CPU work: keep them off the async threads.
    let st2 = st.clone();
    let ready = tokio::task::spawn_blocking(move || prepare(&st2, &value))
        .await
        .map_err(|_| ApiError::internal("request preparation failed"))??;
    let (tx, rx) = mpsc::unbounded_channel();
    let r = &ready.req;
    let job = Job {
        prompt: ready.job_prompt.clone(),
        prompt_tokens: ready.prompt_tokens,
        n: r.n,
        max_tokens: ready.max_tokens,
        sampling: Sampling {
            temperature: r.temperature,
            top_k: (r.top_k > 0).then_some(r.top_k),
            top_p: (r.top_p < 1.0).then_some(r.top_p),
            seed: r.seed,
        },
        stop: r.stop.clone(),
        ignore_eos: r.ignore_eos,
        report_tokens: r.logprobs || r.return_token_ids,
        top_logprobs: r.top_logprobs,
        out: tx,
    };
    if !st.engine.submit(job) {
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", "the server is shutting down"));
    }
    let id = format!("chatcmpl-{}", st.next_id.fetch_add(1, Ordering::Relaxed));
    let want = Wanted { logprobs: r.logprobs, token_ids: r.return_token_ids };
    if r.stream {
        Ok(stream_response(st.clone(), id, ready.prompt_tokens, r.n, r.include_usage, want, rx).into_response())
    } else {
        collect_response(&st, id, &ready, want, rx).await.map(IntoResponse::into_response)
    }
}

/// What a response carries beyond the text.
#[derive(Clone, Copy)]
struct Wanted {
    logprobs: bool,
    token_ids: bool,
}

impl Wanted {
    /// Adds `logprobs` (or null) and, when asked, `token_ids` to a choice or a delta chunk's choice.
    fn fill(&self, choice: &mut Value, st: &AppState, tokens: &[crate::logprobs::TokenOut]) {
        choice["logprobs"] = if self.logprobs {
            json!({"content": crate::logprobs::content(&st.processor.tokenizer, tokens)})
        } else {
            Value::Null
        };
        if self.token_ids {
            choice["token_ids"] = json!(tokens.iter().map(|t| t.id).collect::<Vec<_>>());
        }
    }
}

async fn collect_response(
    st: &AppState,
    id: String,
    ready: &Ready,
    want: Wanted,
    mut rx: mpsc::UnboundedReceiver<Out>,
) -> Result<Json<Value>, ApiError> {
    let (model, prompt_tokens, n) = (&st.served_model, ready.prompt_tokens, ready.req.n);
    let mut tokens: Vec<Vec<crate::logprobs::TokenOut>> = vec![Vec::new(); n];
    let mut texts = vec![String::new(); n];
    let mut reasons: Vec<Option<&str>> = vec![None; n];
    let mut completion_tokens = 0;
    while reasons.iter().any(Option::is_none) {
        match rx.recv().await {
            Some(Out::Delta { choice, text, tokens: t }) => {
                texts[choice] += &text;
                tokens[choice].extend(t);
            }
            Some(Out::Finish { choice, reason, completion_tokens: c }) => {
                reasons[choice] = Some(reason);
                completion_tokens += c;
            }
            Some(Out::Error(e)) => return Err(ApiError::internal(e)),
            None => return Err(ApiError::internal("the model stopped before finishing")),
        }
    }
    let choices: Vec<Value> = (0..n)
        .map(|i| {
            let mut c =
                json!({"index": i, "message": {"role": "assistant", "content": texts[i]}, "finish_reason": reasons[i]});
            want.fill(&mut c, st, &tokens[i]);
            c
        })
        .collect();
    let mut out = json!({
        "id": id, "object": "chat.completion", "created": now(), "model": model, "choices": choices,
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens},
    });
    if want.token_ids {
        out["prompt_token_ids"] = json!(ready.prompt_ids);
    }
    Ok(Json(out))
}

fn chunk(id: &str, model: &str, created: u64, choices: Value) -> Event {
    Event::default().data(
        json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model, "choices": choices})
            .to_string(),
    )
}

/// Server-sent events in OpenAI's chunk format, ending with `data: [DONE]`. A task translates the
/// engine's messages; when the client disconnects the event channel closes, the task ends, and
/// dropping its receiver tells the engine to cancel.
fn stream_response(
    st: Arc<AppState>,
    id: String,
    prompt_tokens: usize,
    n: usize,
    include_usage: bool,
    want: Wanted,
    mut rx: mpsc::UnboundedReceiver<Out>,
) -> Sse<tokio_stream::wrappers::ReceiverStream<Result<Event, Infallible>>> {
    let (tx, events) = mpsc::channel::<Result<Event, Infallible>>(64);
    let model = st.served_model.clone();
    tokio::spawn(async move {
        let created = now();
        for i in 0..n {
            if tx
                .send(Ok(chunk(
                    &id,
                    &model,
                    created,
                    json!([{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]),
                )))
                .await
                .is_err()
            {
                return;
            }
        }
        let mut open = n;
        let mut completion_tokens = 0;
        while open > 0 {
            let ev = match rx.recv().await {
                Some(Out::Delta { choice, text, tokens }) => {
                    let mut c = json!({"index": choice, "delta": {"content": text}, "finish_reason": null});
                    if want.logprobs || want.token_ids {
                        want.fill(&mut c, &st, &tokens);
                    }
                    chunk(&id, &model, created, json!([c]))
                }
                Some(Out::Finish { choice, reason, completion_tokens: c }) => {
                    open -= 1;
                    completion_tokens += c;
                    chunk(&id, &model, created, json!([{"index": choice, "delta": {}, "finish_reason": reason}]))
                }
                Some(Out::Error(e)) => {
                    let _ = tx.send(Ok(Event::default().data(ApiError::internal(e).body().to_string()))).await;
                    return;
                }
                None => return,
            };
            if tx.send(Ok(ev)).await.is_err() {
                return;
            }
        }
        if include_usage {
            let usage = json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}});
            let _ = tx.send(Ok(Event::default().data(usage.to_string()))).await;
        }
        let _ = tx.send(Ok(Event::default().data("[DONE]"))).await;
    });
    Sse::new(tokio_stream::wrappers::ReceiverStream::new(events))
}
