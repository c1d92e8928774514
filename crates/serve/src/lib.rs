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
pub mod logprobs;
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
    let (engine, engine_thread) = engine::spawn(ck.clone(), opts.max_batch, opts.prefill_chunk);
    let state = Arc::new(AppState::new(&ck, engine, opts));
    drop(ck); // the engine thread holds the weights (and may swap them)
    let app = server::router(state);
    let listener = tokio::net::TcpListener::bind((opts.host.as_str(), opts.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", opts.host, opts.port))?;
    let addr = listener.local_addr()?;
    let header_read_timeout = opts.header_read_timeout;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let signal = async move {
            tokio::select! {
                _ = rx => {}
                _ = stop => {}
            }
        };
        serve_connections(listener, app, header_read_timeout, signal).await;
    });
    Ok(Running { addr, shutdown: Some(tx), server: Some(server), engine: Some(engine_thread) })
}

/// Accepts connections until `signal`, then lets open ones finish. Each connection is served by
/// hyper with a timer, so a client must send its first byte, and then each request's whole header,
/// within `header_read_timeout` (axum's own `serve` sets no timer, and holds such a connection
/// forever);
/// requests carry their peer's address (`ConnectInfo`) for the per-client limit.
async fn serve_connections(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    header_read_timeout: std::time::Duration,
    signal: impl std::future::Future<Output = ()>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use tower::ServiceExt;
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut signal = std::pin::pin!(signal);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    tracing::error!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut signal => break,
        };
        let svc = app
            .clone()
            .layer(axum::Extension(axum::extract::ConnectInfo(peer)))
            .map_request(|req: hyper::Request<hyper::body::Incoming>| req.map(axum::body::Body::new));
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            // hyper's header timer starts at a request's first byte: a client that connects and
            // sends nothing is dropped here.
            // (`peek` waits for a byte; `readable` may report a fresh socket ready at once.)
            let mut first = [0u8; 1];
            if !matches!(tokio::time::timeout(header_read_timeout, stream.peek(&mut first)).await, Ok(Ok(1..))) {
                return;
            }
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder.http1().timer(TokioTimer::new()).header_read_timeout(header_read_timeout);
            let conn = builder
                .serve_connection_with_upgrades(
                    TokioIo::new(stream),
                    hyper_util::service::TowerToHyperService::new(svc),
                )
                .into_owned();
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!("connection from {peer}: {e}");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
