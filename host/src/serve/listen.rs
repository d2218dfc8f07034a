//! The accept loop: HTTP/1.1 connections served by hyper with the limits a
//! long-running server needs against slow, greedy or absent clients.
//!
//! Each accepted connection takes a permit from a semaphore of
//! `max_connections` (more wait in the kernel's backlog) and one of its
//! address's `max_connections_per_address` (past that, it is answered 503
//! and closed at once, so one address cannot hold every slot). It gets
//! `request_read_timeout_seconds` to send its request headers (hyper's
//! header read timeout, which also closes an idle keep-alive connection;
//! the body has the same budget from a tower-http layer in `http.rs`). Its
//! socket's send buffer is bounded (`send_buffer_bytes`), so the kernel
//! holds little of an answer nobody reads, and the answer is written
//! through [`WriteDeadline`]: a client that takes none of a pending answer
//! for
//! `response_idle_timeout_seconds`, or has not taken all of it within
//! `response_write_timeout_seconds`, is cut off and its slot freed. Each
//! connection is served by the router on its own task. On shutdown the loop
//! stops accepting, every connection is told to finish the request it is on
//! and close, and the loop returns when they have.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};

/// How the loop serves connections.
#[derive(Debug, Clone)]
pub(super) struct Limits {
    /// Time to send a request's headers.
    pub(super) header_read_timeout: Duration,
    /// Connections served at once.
    pub(super) max_connections: usize,
    /// Connections served at once from one client address.
    pub(super) max_connections_per_address: usize,
    /// Time a client has to take a whole answer once it is being written.
    pub(super) response_write_timeout: Duration,
    /// Time a client may take none of a pending answer.
    pub(super) response_idle_timeout: Duration,
    /// Each connection's socket send buffer (0: the kernel's own sizing,
    /// which grows it to megabytes): what the kernel may hold of answers a
    /// client has not read, beyond which writes wait and the deadlines
    /// apply.
    pub(super) send_buffer_bytes: usize,
}

/// What a connection over its address's cap is told before it is closed.
fn too_many_from_address() -> Vec<u8> {
    let body = "{\"error\":{\"kind\":\"too_many_connections\",\"message\":\"too many connections from this address\"}}\n";
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         connection: close\r\nretry-after: 1\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
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
    let per_address = PerAddress::new(limits.max_connections_per_address);
    let refusal = too_many_from_address();
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
        let Some(held) = per_address.take(client_key(peer.ip())) else {
            tracing::debug!(target: "chassis::serve", "connection from {peer} refused: {} open from its address", limits.max_connections_per_address);
            // Best effort, never waiting: the answer fits an empty socket
            // buffer; the connection is closed when `stream` drops.
            let _ = stream.try_write(&refusal);
            continue;
        };
        let _ = stream.set_nodelay(true);
        if limits.send_buffer_bytes > 0
            && let Err(e) =
                rustix::net::sockopt::set_socket_send_buffer_size(&stream, limits.send_buffer_bytes)
        {
            tracing::debug!(target: "chassis::serve", "connection from {peer}: setting its send buffer: {e}");
        }
        let stream = WriteDeadline::new(
            stream,
            limits.response_write_timeout,
            limits.response_idle_timeout,
        );
        let service = TowerToHyperService::new(router.clone());
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(target: "chassis::serve", "connection from {peer}: {e}");
            }
            drop(held);
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Whose connection this is, for the per-address cap: an IPv4 address
/// (an IPv4-mapped IPv6 one as itself), or an IPv6 address's /64 prefix —
/// one host is commonly given a whole /64, and could otherwise take a slot
/// per address of it.
fn client_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Open connections per client address, each at most `cap`.
struct PerAddress {
    cap: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One open connection of an address, counted until dropped.
struct Held {
    address: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl PerAddress {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            open: Arc::default(),
        }
    }

    /// A slot for `address`, unless it holds `cap` already.
    fn take(&self, address: IpAddr) -> Option<Held> {
        let mut open = self.open.lock().expect("per-address lock");
        let count = open.entry(address).or_insert(0);
        if *count >= self.cap {
            return None;
        }
        *count += 1;
        Some(Held {
            address,
            open: self.open.clone(),
        })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut open = self.open.lock().expect("per-address lock");
        if let Some(count) = open.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.address);
            }
        }
    }
}

/// A connection whose writes have deadlines: an answer is pending from the
/// first write after the client last sent something until the client
/// sends again (its next request) with nothing left to write. While one is
/// pending, the client must take some of it every `idle` and all of it
/// within `total`; otherwise the next write fails with `TimedOut` and
/// hyper closes the connection.
struct WriteDeadline<S> {
    inner: S,
    total: Duration,
    idle: Duration,
    /// When the pending answer's first byte was written.
    writing_since: Option<Instant>,
    /// When the client last took bytes of it.
    last_progress: Instant,
    /// Whether the last write was refused for a full socket.
    blocked: bool,
    /// Since when writes have been refused so (the idle clock starts at
    /// the later of this and the last progress: a pause of the server's
    /// own between writes is not the client's idleness).
    blocked_since: Option<Instant>,
    /// Wakes a blocked writer at its deadline.
    timer: Pin<Box<Sleep>>,
}

impl<S> WriteDeadline<S> {
    fn new(inner: S, total: Duration, idle: Duration) -> Self {
        let now = Instant::now();
        Self {
            inner,
            total,
            idle,
            writing_since: None,
            last_progress: now,
            blocked: false,
            blocked_since: None,
            timer: Box::pin(tokio::time::sleep_until(now + idle)),
        }
    }

    /// The instant the pending answer must have made progress by.
    fn deadline(&self) -> Instant {
        let since = self.writing_since.unwrap_or(self.last_progress);
        let idle_from = self
            .blocked_since
            .map_or(self.last_progress, |b| b.max(self.last_progress));
        (since + self.total).min(idle_from + self.idle)
    }

    /// A write is about to be tried: start the answer's clock.
    fn begin(&mut self) {
        if self.writing_since.is_none() {
            let now = Instant::now();
            self.writing_since = Some(now);
            self.last_progress = now;
        }
    }

    /// What a write came to, checked against the deadlines.
    fn after(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match polled {
            Poll::Ready(Ok(n)) => {
                self.blocked = false;
                self.blocked_since = None;
                let now = Instant::now();
                if n > 0 {
                    self.last_progress = now;
                }
                if self
                    .writing_since
                    .is_some_and(|since| now >= since + self.total)
                {
                    return Poll::Ready(Err(self.timed_out()));
                }
                Poll::Ready(Ok(n))
            }
            Poll::Pending => {
                if !self.blocked {
                    self.blocked_since = Some(Instant::now());
                }
                self.blocked = true;
                let deadline = self.deadline();
                if Instant::now() >= deadline {
                    return Poll::Ready(Err(self.timed_out()));
                }
                self.timer.as_mut().reset(deadline);
                match self.timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(self.timed_out())),
                    Poll::Pending => Poll::Pending,
                }
            }
            other => other,
        }
    }

    fn timed_out(&self) -> io::Error {
        let waited = self
            .writing_since
            .map_or(Duration::ZERO, |since| since.elapsed());
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "the client took none of its answer for {:.1} s (or not all of it in {:.1} s): cut off",
                self.idle.as_secs_f64(),
                waited.as_secs_f64()
            ),
        )
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        // The client sent more with nothing left to write: the answer is
        // out, and what comes next is its next request.
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before && !self.blocked {
            self.writing_since = None;
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.begin();
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.after(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.begin();
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.after(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An address holds at most its cap; a slot given back is free again,
    /// and other addresses are not counted against it.
    #[test]
    fn one_address_holds_at_most_its_cap() {
        let slots = PerAddress::new(2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let first = slots.take(a).unwrap();
        let _second = slots.take(a).unwrap();
        assert!(slots.take(a).is_none());
        assert!(slots.take(b).is_some());
        drop(first);
        assert!(slots.take(a).is_some());
    }

    /// One IPv6 host's /64 counts as one client; an IPv4-mapped address
    /// as its IPv4 address.
    #[test]
    fn an_ipv6_slash_64_is_one_client() {
        let key = |a: &str| client_key(a.parse().unwrap());
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:127.0.0.2"), key("127.0.0.2"));
        assert_ne!(key("127.0.0.1"), key("127.0.0.2"));
    }

    /// A reader that takes nothing: the write fails at the idle deadline,
    /// not never.
    #[tokio::test]
    async fn a_client_that_takes_nothing_is_cut_off() {
        use tokio::io::AsyncWriteExt;
        let (server, _client) = tokio::io::duplex(64);
        let mut guarded =
            WriteDeadline::new(server, Duration::from_secs(60), Duration::from_millis(200));
        let started = std::time::Instant::now();
        let written =
            tokio::time::timeout(Duration::from_secs(10), guarded.write_all(&[0u8; 4096]))
                .await
                .expect("the write ends");
        let e = written.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        assert!(started.elapsed() >= Duration::from_millis(200));
    }

    /// A reader that takes a little now and then still must take the whole
    /// answer within the total deadline.
    #[tokio::test]
    async fn a_slow_reader_has_a_total_deadline() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (server, mut client) = tokio::io::duplex(64);
        let mut guarded =
            WriteDeadline::new(server, Duration::from_millis(500), Duration::from_secs(60));
        let drip = tokio::spawn(async move {
            let mut byte = [0u8; 1];
            while client.read(&mut byte).await.is_ok_and(|n| n > 0) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let written = tokio::time::timeout(
            Duration::from_secs(10),
            guarded.write_all(&[0u8; 64 * 1024]),
        )
        .await
        .expect("the write ends");
        assert_eq!(written.unwrap_err().kind(), io::ErrorKind::TimedOut);
        drip.abort();
    }

    /// The idle clock starts when a write is first refused, not at the last
    /// write: after a pause of the server's own longer than `idle`, a
    /// client that takes its answer slowly is not cut off at once.
    #[tokio::test]
    async fn a_pause_of_the_server_s_own_is_not_the_client_s_idleness() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (server, mut client) = tokio::io::duplex(64);
        let mut guarded =
            WriteDeadline::new(server, Duration::from_secs(60), Duration::from_millis(300));
        // The socket is full, and the server thinks for longer than the
        // idle limit ...
        guarded.write_all(&[1u8; 64]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        // ... then writes more; the client takes it all, starting well
        // within the limit of the moment the write was refused.
        let reader = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut all = vec![0u8; 64 + 1024];
            client.read_exact(&mut all).await.map(|_| ())
        });
        guarded.write_all(&[2u8; 1024]).await.unwrap();
        reader.await.unwrap().unwrap();
    }

    /// A client that reads its answers is never cut off, however many it
    /// asks for.
    #[tokio::test]
    async fn a_reading_client_is_served() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (server, mut client) = tokio::io::duplex(64);
        let mut guarded = WriteDeadline::new(
            server,
            Duration::from_millis(300),
            Duration::from_millis(100),
        );
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            client.read_to_end(&mut all).await.map(|_| all.len())
        });
        for _ in 0..4 {
            guarded.write_all(&[1u8; 1024]).await.unwrap();
        }
        guarded.shutdown().await.unwrap();
        drop(guarded);
        assert_eq!(reader.await.unwrap().unwrap(), 4096);
    }
}
