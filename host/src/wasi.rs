//! The WASI context a task gets, decided by its contract.
//!
//! Every task gets WASI 0.2 linked, because Rust's standard library imports
//! it, but with nothing behind it: no preopened directories, no sockets, no
//! name lookup, no environment variables, no arguments, stdin closed.
//! Clocks and random sources are real, but a component may only import them
//! when its contract lists them in `security.wasi_capabilities` (checked at
//! load time by [`crate::imports::policy`]). `wasi:io/streams` decides where
//! stdout and stderr go: to the scoped log when granted, nowhere otherwise.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder};

use crate::bindings::log::Level;
use crate::contract::ServiceContract;

/// Bytes of stdout plus stderr kept per stream and task; the rest is dropped.
pub const MAX_STDIO_BYTES_PER_TASK: usize = 64 * 1024;

/// Build the WASI context for one task of the swarm under `contract`.
pub(crate) fn context(contract: &Arc<ServiceContract>, task_id: &Arc<str>) -> WasiCtx {
    let mut b = WasiCtxBuilder::new();
    b.allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .allow_blocking_current_thread(false);
    if contract.grants_wasi("wasi:io/streams") {
        b.stdout(LogSink::new(contract, task_id, Level::Info));
        b.stderr(LogSink::new(contract, task_id, Level::Warn));
    }
    b.build()
}

/// stdout/stderr of a task, written line by line to the scoped log.
#[derive(Clone)]
struct LogSink {
    swarm_id: Arc<str>,
    task_id: Arc<str>,
    level: Level,
}

impl LogSink {
    fn new(contract: &ServiceContract, task_id: &Arc<str>, level: Level) -> Self {
        Self {
            swarm_id: contract.swarm_id.as_str().into(),
            task_id: task_id.clone(),
            level,
        }
    }
}

impl IsTerminal for LogSink {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogSink {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            sink: self.clone(),
            pending: Vec::new(),
            written: 0,
            dropped: 0,
        })
    }
}

/// Buffers partial lines; emits each whole line; drops bytes past the cap
/// (still reporting them as written, so the guest's `print!` never fails).
struct LineWriter {
    sink: LogSink,
    pending: Vec<u8>,
    written: usize,
    dropped: usize,
}

impl LineWriter {
    fn emit(&mut self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        crate::imports::log::emit(
            &self.sink.swarm_id,
            &self.sink.task_id,
            self.sink.level,
            &text,
        );
    }

    fn flush_pending(&mut self) {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            self.emit(&line);
        }
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let room = MAX_STDIO_BYTES_PER_TASK.saturating_sub(self.written);
        let take = buf.len().min(room);
        self.written += take;
        self.dropped += buf.len() - take;
        for byte in &buf[..take] {
            if *byte == b'\n' {
                let line = std::mem::take(&mut self.pending);
                self.emit(&line);
            } else if self.pending.len() < crate::imports::log::MAX_LOG_LINE_BYTES {
                self.pending.push(*byte);
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.flush_pending();
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        self.flush_pending();
        if self.dropped > 0 {
            tracing::warn!(
                target: "swarm",
                swarm = &*self.sink.swarm_id,
                task = &*self.sink.task_id,
                "[{}] {} bytes of output over the {} byte limit were dropped",
                self.sink.swarm_id,
                self.dropped,
                MAX_STDIO_BYTES_PER_TASK
            );
        }
    }
}
