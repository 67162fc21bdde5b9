//! The accept loop: hyper 1 HTTP/1.1 connections with a timer installed (without one, hyper's
//! header-read timeout silently does nothing), graceful shutdown, and `usersvc serve`.

use std::future::Future;
use std::net::SocketAddr;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::app::App;
use crate::clock::Clock;
use crate::config::ServeConfig;
use crate::db::Db;
use crate::error::{Error, Result};

/// The largest request head (request line and headers) accepted; hyper answers a larger one
/// with 431 and closes. Without it hyper buffers up to ~400 KiB per connection. Header count
/// stays at hyper's default (100, also 431): setting it would move the parser's header array
/// from the stack to the heap on every request.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Serves connections from `listener` until `shutdown` resolves, then lets in-flight requests
/// finish for at most `shutdown_timeout`.
pub async fn run(
    listener: TcpListener,
    app: App,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(app.config.header_timeout)
        .max_header_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Out of file descriptors and the like: back off briefly, keep serving.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let app = app.clone();
                let service = service_fn(move |req| crate::http::handle(app.clone(), req));
                let conn = builder.serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!("connection ended: {e}");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(app.config.shutdown_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown timeout reached; closing remaining connections");
    }
    Ok(())
}

/// Binds the listener and builds the `App` (migrations run when the database opens).
pub async fn bind(config: ServeConfig, clock: Clock) -> Result<(TcpListener, App)> {
    let db_path = config.db.clone();
    let db = tokio::task::spawn_blocking(move || Db::open(&db_path))
        .await
        .map_err(Error::internal)??;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| Error::Internal(format!("cannot listen on {}: {e}", config.listen)))?;
    let bound = listener.local_addr()?;
    Ok((listener, App::new(db, clock, config, bound)?))
}

/// `usersvc serve`: migrate, bootstrap on an empty database, print the address, serve until
/// SIGINT or SIGTERM.
pub fn serve(config: ServeConfig) -> Result<()> {
    init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let json = config.json;
        let no_bootstrap = config.no_bootstrap;
        let (listener, app) = bind(config, Clock::default()).await?;
        if !no_bootstrap {
            let db = app.db.clone();
            let now = app.clock.now();
            let created = tokio::task::spawn_blocking(move || crate::admin::bootstrap(&db, now))
                .await
                .map_err(Error::internal)??;
            if let Some(key) = created {
                eprintln!("usersvc: created admin@localhost with API key (shown once): {key}");
            }
        }
        let shutdown = shutdown_signal()?;
        print_listening(app.bound, json);
        run(listener, app, shutdown).await
    })
}

fn print_listening(addr: SocketAddr, json: bool) {
    use std::io::Write;
    let url = format!("http://{addr}");
    let line = if json {
        serde_json::json!({ "listening": url }).to_string()
    } else {
        format!("listening on {url}")
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// A future that resolves on SIGINT or SIGTERM. The handlers are installed when this is
/// called, so a signal that arrives right after the `listening` line is already caught.
fn shutdown_signal() -> Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
    })
}

/// One structured line per request on stderr; level from `RUST_LOG` (default `info`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
