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
use crate::imports::scope::TaskShared;
use crate::state::SwarmRuntime;

/// Bytes of stdout, and of stderr, kept per task; the rest is dropped.
pub const MAX_STDIO_BYTES_PER_TASK: usize = 64 * 1024;

/// Build the WASI context for one task.
pub(crate) fn context(
    swarm: &Arc<SwarmRuntime>,
    task_id: &Arc<str>,
    shared: &Arc<TaskShared>,
) -> WasiCtx {
    let mut b = WasiCtxBuilder::new();
    b.allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .allow_blocking_current_thread(false);
    let forward = swarm.contract.grants_wasi("wasi:io/streams");
    if forward {
        b.stdout(LogSink::new(swarm, task_id, shared, Level::Info, true));
    }
    // stderr is always captured (its tail explains a trap), and logged only
    // with `wasi:io/streams`.
    b.stderr(LogSink::new(swarm, task_id, shared, Level::Warn, forward));
    b.build()
}

/// stdout/stderr of a task, written line by line to the scoped log.
#[derive(Clone)]
struct LogSink {
    swarm: Arc<SwarmRuntime>,
    task_id: Arc<str>,
    shared: Arc<TaskShared>,
    level: Level,
    forward: bool,
}

impl LogSink {
    fn new(
        swarm: &Arc<SwarmRuntime>,
        task_id: &Arc<str>,
        shared: &Arc<TaskShared>,
        level: Level,
        forward: bool,
    ) -> Self {
        Self {
            swarm: swarm.clone(),
            task_id: task_id.clone(),
            shared: shared.clone(),
            level,
            forward,
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
        let s = &self.sink;
        if !s.forward {
            return;
        }
        let channel = if s.level == Level::Info {
            "stdout"
        } else {
            "stderr"
        };
        let text = String::from_utf8_lossy(line);
        s.swarm.log.line(
            &s.swarm.scope,
            &s.shared,
            &s.task_id,
            s.level,
            &text,
            channel,
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
        if self.sink.level != Level::Info {
            self.sink.shared.push_stderr(buf);
        }
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
        if self.dropped > 0 && self.sink.forward {
            let s = &self.sink;
            tracing::warn!(
                target: "swarm",
                swarm = s.swarm.swarm_id(),
                task = &*s.task_id,
                "[{}] {} bytes of output over the {} byte limit were dropped",
                s.swarm.swarm_id(),
                self.dropped,
                MAX_STDIO_BYTES_PER_TASK
            );
        }
    }
}
