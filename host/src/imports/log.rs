//! `infrafabric:chassis/log`, and the one path every guest line takes (log
//! import, stdout, stderr): to `tracing`, target `swarm`, prefixed with the
//! swarm id and carrying the task id.
//!
//! A line is first checked against the swarm's log budget
//! (`max_log_lines_per_second`, `max_log_bytes_per_second`): over it, the
//! line is dropped and counted, and the task goes on — logging never ends a
//! task, and never uses up the call rate that credentials and the proxy
//! share. Then secret values are redacted and the text is escaped and cut
//! ([`crate::text`]), so one call is one line in the host's log: a guest
//! cannot forge lines for another swarm.

use std::sync::{Arc, RwLock};

use crate::bindings::log::{Host, Level};
use crate::imports::scope::{Scoped, SwarmScope, TaskShared};
use crate::limits::LogBudget;

/// Longest log message kept, in bytes; longer messages are cut and marked.
pub const MAX_LOG_LINE_BYTES: usize = 16 * 1024;

/// The severity of a guest's log line.
pub use crate::bindings::log::Level as LogLevel;

/// One line a swarm wrote, already made safe: secret values redacted,
/// control characters escaped, at most [`MAX_LOG_LINE_BYTES`].
#[derive(Debug, Clone, Copy)]
pub struct GuestLine<'a> {
    /// The swarm that wrote it.
    pub swarm_id: &'a str,
    /// The task it wrote it in (`load` while the swarm is being loaded).
    pub task_id: &'a str,
    /// Its severity: `info` for stdout, `warn` for stderr.
    pub level: LogLevel,
    /// Where it came from: `log` (the log import), `stdout` or `stderr`.
    pub channel: &'static str,
    /// The text.
    pub text: &'a str,
}

/// Where an embedder receives swarms' log lines instead of `tracing`
/// (set host-wide with [`crate::ChassisConfig::with_log_sink`], or per swarm
/// with [`crate::Chassis::set_log_sink`]). Called on the task's thread,
/// once per line within the swarm's log budget: keep it quick.
pub trait GuestLogSink: Send + Sync {
    /// One line.
    fn line(&self, line: &GuestLine<'_>);
}

/// The log capability of one swarm: its budget and where its lines go.
pub(crate) struct LogState {
    budget: LogBudget,
    sink: RwLock<Option<Arc<dyn GuestLogSink>>>,
}

impl LogState {
    pub(crate) fn new(budget: LogBudget, sink: Option<Arc<dyn GuestLogSink>>) -> Self {
        Self {
            budget,
            sink: RwLock::new(sink),
        }
    }

    /// Send this swarm's lines to `sink`, or back to `tracing` with `None`.
    pub(crate) fn set_sink(&self, sink: Option<Arc<dyn GuestLogSink>>) {
        *self.sink.write().expect("log sink lock") = sink;
    }

    /// Where this swarm's lines go now.
    pub(crate) fn sink(&self) -> Option<Arc<dyn GuestLogSink>> {
        self.sink.read().expect("log sink lock").clone()
    }

    /// One guest line from `channel` (`log`, `stdout`, `stderr`): within
    /// the log budget it is redacted, escaped and logged at `level` (returns
    /// `true`); over it, dropped and counted (returns `false`).
    pub(crate) fn line(
        &self,
        swarm: &SwarmScope,
        shared: &TaskShared,
        task_id: &str,
        level: Level,
        message: &str,
        channel: &'static str,
    ) -> bool {
        if !self.budget.allow(message.len().min(MAX_LOG_LINE_BYTES)) {
            swarm.drop_line(shared, task_id, channel);
            return false;
        }
        let text = swarm.guest_text(shared, task_id, message, channel, MAX_LOG_LINE_BYTES);
        let sink = self.sink.read().expect("log sink lock").clone();
        match sink {
            Some(sink) => sink.line(&GuestLine {
                swarm_id: &swarm.swarm_id,
                task_id,
                level,
                channel,
                text: &text,
            }),
            None => emit(&swarm.swarm_id, task_id, level, &text),
        }
        true
    }
}

/// Write one line, already made safe, to `tracing` at `level`.
fn emit(swarm_id: &str, task_id: &str, level: Level, message: &str) {
    match level {
        Level::Trace => {
            tracing::trace!(target: "swarm", swarm = swarm_id, task = task_id, "[{swarm_id}] {message}")
        }
        Level::Debug => {
            tracing::debug!(target: "swarm", swarm = swarm_id, task = task_id, "[{swarm_id}] {message}")
        }
        Level::Info => {
            tracing::info!(target: "swarm", swarm = swarm_id, task = task_id, "[{swarm_id}] {message}")
        }
        Level::Warn => {
            tracing::warn!(target: "swarm", swarm = swarm_id, task = task_id, "[{swarm_id}] {message}")
        }
        Level::Error => {
            tracing::error!(target: "swarm", swarm = swarm_id, task = task_id, "[{swarm_id}] {message}")
        }
    }
}

/// One task's view of the log capability.
pub(crate) struct LogHost<'a> {
    pub(crate) log: &'a LogState,
    pub(crate) scoped: Scoped<'a>,
}

impl Host for LogHost<'_> {
    async fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let task = &self.scoped.task;
        if self.log.line(
            self.scoped.swarm,
            &task.shared,
            &task.task_id,
            level,
            &message,
            "log",
        ) {
            self.scoped.count_call();
        }
        Ok(())
    }
}

crate::imports::scope::linker_for!(log, LogHost);

#[cfg(test)]
mod tests {
    use super::*;

    fn sanitize(message: &str) -> String {
        crate::text::escape(message, MAX_LOG_LINE_BYTES)
    }

    #[test]
    fn sanitize_escapes_newlines_so_a_guest_cannot_forge_lines() {
        let s = sanitize("ok\n[other-swarm] forged\r\x1b[31m\u{2028}");
        assert!(!s.contains('\n') && !s.contains('\r') && !s.contains('\x1b'));
        assert!(!s.contains('\u{2028}'));
        assert!(s.starts_with("ok\\n[other-swarm] forged\\r"));
    }

    #[test]
    fn sanitize_cuts_long_messages() {
        let s = sanitize(&"x".repeat(MAX_LOG_LINE_BYTES * 2));
        assert!(s.len() < MAX_LOG_LINE_BYTES + 48);
        assert!(s.contains("[truncated"));
    }
}
