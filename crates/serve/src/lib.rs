//! `medr1 serve`: an OpenAI-compatible chat-completions API for medical VQA.
//!
//! - [`server`]: the routes, API keys, logging, errors ([`error`]) in OpenAI's format.
//! - [`request`]: the request checked field by field; [`images`]: data URLs (PNG, JPEG, DICOM)
//!   and allowed local files, with byte and pixel limits.
//! - [`engine`]: the model thread, continuous batching through `vlm::generator`; [`detok`]:
//!   incremental detokenisation.
//! - [`options`]: the server's settings (the command line's flags).

pub mod detok;
pub mod engine;
pub mod error;
pub mod images;
pub mod options;
pub mod request;
pub mod server;

pub use options::ServeOptions;

use anyhow::{Context, Result};
use server::AppState;
use std::net::SocketAddr;
use std::sync::Arc;
use vlm::Checkpoint;

/// A running server: where it listens, and how to stop it.
pub struct Running {
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    engine: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Stops accepting connections, lets in-flight requests finish, then stops the model thread.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.wait_inner().await;
    }

    /// Waits until the server stops (its `stop` future resolved) and the model thread is done.
    pub async fn wait(mut self) {
        self.wait_inner().await;
    }

    async fn wait_inner(&mut self) {
        if let Some(s) = self.server.take() {
            let _ = s.await;
        }
        if let Some(e) = self.engine.take() {
            let _ = tokio::task::spawn_blocking(move || e.join()).await;
        }
    }
}

/// Binds and starts serving in the current tokio runtime. `stop` resolving begins a graceful
/// shutdown too (e.g. Ctrl-C).
pub async fn start(
    ck: Checkpoint,
    opts: &ServeOptions,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<Running> {
    let ck = Arc::new(ck);
    let (engine, engine_thread) = engine::spawn(ck.clone(), opts.max_batch);
    let state = Arc::new(AppState::new(ck, engine, opts));
    let app = server::router(state);
    let listener = tokio::net::TcpListener::bind((opts.host.as_str(), opts.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", opts.host, opts.port))?;
    let addr = listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let signal = async move {
            tokio::select! {
                _ = rx => {}
                _ = stop => {}
            }
        };
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(signal).await {
            tracing::error!("server error: {e}");
        }
    });
    Ok(Running { addr, shutdown: Some(tx), server: Some(server), engine: Some(engine_thread) })
}
