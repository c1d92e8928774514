//! `medr1 serve`: the OpenAI-compatible API.

use anyhow::{Context, Result};
use clap::Args;
use serve::ServeOptions;
use std::path::PathBuf;
use vlm::precision::Precision;
use vlm::Checkpoint;

#[derive(Args)]
pub struct ServeArgs {
    /// Checkpoint directory to serve.
    #[arg(long)]
    pub model: PathBuf,
    /// Address to listen on (127.0.0.1: this machine only; 0.0.0.0: every interface).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Most sequences decoded together; requests beyond it wait for a finished one's slot.
    #[arg(long, default_value_t = 8)]
    pub max_batch: usize,
    /// The model name clients must ask for (default: the checkpoint folder's name).
    #[arg(long)]
    pub served_model: Option<String>,
    /// Require `Authorization: Bearer KEY` on /v1 routes. Prefer --api-key-file or the
    /// MEDR1_API_KEY variable: a key on the command line is visible to every user in `ps`.
    #[arg(long)]
    pub api_key: Option<String>,
    /// Read the API key from this file (its first line, trimmed).
    #[arg(long, conflicts_with = "api_key")]
    pub api_key_file: Option<PathBuf>,
    /// Requests one client address may have in flight (a stream counts until it ends); more get
    /// 429. 0: no limit.
    #[arg(long, default_value_t = 64)]
    pub max_requests_per_client: usize,
    /// Longest prompt accepted, in tokens (images included); longer ones get 400 prompt_too_long.
    #[arg(long, default_value_t = serve::options::DEFAULT_MAX_PROMPT_TOKENS)]
    pub max_prompt_tokens: usize,
    /// Seconds to wait for a request's body after its headers (408 after that).
    #[arg(long, default_value_t = 30.0)]
    pub body_read_timeout: f64,
    /// Seconds a client has to send a request's whole header (from connecting, or from the end of
    /// its previous request); the connection is closed after that.
    #[arg(long, default_value_t = 10.0)]
    pub header_read_timeout: f64,
    /// A prompt longer than this many tokens is prefilled this many per step, between the running
    /// requests' tokens (so one long prompt never stalls them).
    #[arg(long, default_value_t = serve::options::DEFAULT_PREFILL_CHUNK)]
    pub prefill_chunk: usize,
    /// Allow `image_url`s naming local files, but only inside this folder.
    #[arg(long)]
    pub allow_local_files: Option<PathBuf>,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 32 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Largest single image in bytes (after base64 decoding).
    #[arg(long, default_value_t = 20 * 1024 * 1024)]
    pub max_image_bytes: usize,
    /// `max_tokens` for requests that give none (capped by the context left).
    #[arg(long, default_value_t = 256)]
    pub default_max_tokens: usize,
    /// Weights' precision: f32 (the reference), bf16, or int8 (linear layers and the embedding
    /// quantized per output channel as they load, or read as `medr1 quantize` stored them).
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    pub dtype: Precision,
    /// Allow `POST /v1/medr1/reload_weights {"path": DIR}`: load full weights of the same model
    /// from a checkpoint folder on this machine between generation steps (a trainer syncing its
    /// rollout servers). Anyone who can reach the API (and has the key) can then make the server
    /// read any checkpoint folder it can access: use on a trusted network.
    #[arg(long)]
    pub enable_weight_reload: bool,
}

/// `max_image_pixels`: the global `--max-image-pixels` (width x height, checked from each
/// image's header before decompressing).
pub fn run(a: ServeArgs, max_image_pixels: u64) -> Result<()> {
    let ck = Checkpoint::open_as(&a.model, a.dtype)?;
    let served_model = a.served_model.clone().unwrap_or_else(|| {
        std::fs::canonicalize(&a.model)
            .ok()
            .and_then(|p| p.file_name().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "medr1".into())
    });
    if let Some(d) = &a.allow_local_files {
        anyhow::ensure!(d.is_dir(), "--allow-local-files {}: not a folder", d.display());
    }
    let opts = ServeOptions {
        host: a.host,
        port: a.port,
        max_batch: a.max_batch,
        served_model,
        api_key: api_key(a.api_key.clone(), a.api_key_file.as_deref())?,
        allow_local_files: a.allow_local_files,
        max_body_bytes: a.max_body_bytes,
        max_image_bytes: a.max_image_bytes,
        max_image_pixels,
        body_read_timeout: std::time::Duration::from_secs_f64(a.body_read_timeout.max(0.001)),
        header_read_timeout: std::time::Duration::from_secs_f64(a.header_read_timeout.max(0.001)),
        max_prompt_tokens: a.max_prompt_tokens,
        max_requests_per_client: a.max_requests_per_client,
        default_max_tokens: a.default_max_tokens,
        prefill_chunk: a.prefill_chunk.max(1),
        enable_weight_reload: a.enable_weight_reload,
        dtype: a.dtype,
    };
    // Request logs (and server errors) on stderr through `tracing`; RUST_LOG filters them
    // (default `info`; e.g. RUST_LOG=medr1::request=off for none).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // One plain line per request, as before tracing: `POST /v1/chat/completions 200 59ms`.
        .without_time()
        .with_level(false)
        .with_target(false)
        .try_init();
    let rt =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    rt.block_on(async move {
        let running = serve::start(ck, &opts, shutdown_signal()).await?;
        eprintln!(
            "serving `{}` on http://{} (Ctrl-C to stop; in-flight requests finish first)",
            opts.served_model, running.addr
        );
        running.wait().await;
        eprintln!("stopped");
        Ok(())
    })
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// The API key: --api-key, else --api-key-file's first line, else the MEDR1_API_KEY variable.
fn api_key(flag: Option<String>, file: Option<&std::path::Path>) -> Result<Option<String>> {
    if flag.is_some() {
        return Ok(flag);
    }
    if let Some(f) = file {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("{}: cannot read the API key file", f.display()))?;
        let key = text.lines().next().unwrap_or("").trim().to_string();
        anyhow::ensure!(!key.is_empty(), "{}: the API key file is empty", f.display());
        return Ok(Some(key));
    }
    Ok(std::env::var("MEDR1_API_KEY").ok().filter(|k| !k.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_comes_from_the_flag_else_the_file_else_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("key");
        std::fs::write(&f, "  from-file  \nsecond line\n").unwrap();
        assert_eq!(api_key(Some("flag".into()), Some(&f)).unwrap().as_deref(), Some("flag"));
        assert_eq!(api_key(None, Some(&f)).unwrap().as_deref(), Some("from-file"));
        let missing = format!("{:#}", api_key(None, Some(&dir.path().join("nope"))).unwrap_err());
        assert!(missing.contains("nope: cannot read the API key file"), "{missing}");
        std::fs::write(&f, "\n").unwrap();
        assert!(api_key(None, Some(&f)).is_err(), "an empty key file is an error, not an open server");
    }
}
