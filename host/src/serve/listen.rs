//! The accept loop: HTTP/1.1 connections served by hyper with the limits a
//! long-running server needs against slow or greedy clients.
//!
//! Each accepted connection takes a permit from a semaphore of
//! `max_connections` (more wait in the kernel's backlog), gets
//! `request_read_timeout_seconds` to send its request headers (hyper's
//! header read timeout; the body has the same budget from a tower-http layer
//! in `http.rs`), and is served by the router on its own task. On shutdown
//! the loop stops accepting, every connection is told to finish the request
//! it is on and close, and the loop returns when they have.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// How the loop serves connections.
pub(super) struct Limits {
    /// Time to send a request's headers.
    pub(super) header_read_timeout: Duration,
    /// Connections served at once.
    pub(super) max_connections: usize,
}

/// Serve `router` on `listener` until `shutdown` resolves, then let each
/// open connection finish its request and return once all have closed.
pub(super) async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait, don't spin.
                    tracing::warn!(target: "chassis::serve", "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(target: "chassis::serve", "connection from {peer}: {e}");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
