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

use crate::bindings::log::{Host, Level};
use crate::state::{HostState, SwarmRuntime, TaskShared};

/// Longest log message kept, in bytes; longer messages are cut and marked.
pub const MAX_LOG_LINE_BYTES: usize = 16 * 1024;

/// One guest line from `channel` (`log`, `stdout`, `stderr`): within the
/// log budget it is redacted, escaped and logged at `level` (returns
/// `true`); over it, dropped and counted (returns `false`).
pub(crate) fn line(
    swarm: &SwarmRuntime,
    shared: &TaskShared,
    task_id: &str,
    level: Level,
    message: &str,
    channel: &'static str,
) -> bool {
    if !swarm
        .log_budget
        .allow(message.len().min(MAX_LOG_LINE_BYTES))
    {
        shared.drop_line(swarm, task_id, channel);
        return false;
    }
    let message = shared.guest_text(swarm, task_id, message, channel, MAX_LOG_LINE_BYTES);
    emit(swarm.swarm_id(), task_id, level, &message);
    true
}

/// Write one line, already made safe, at `level`.
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

impl Host for HostState {
    async fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        if line(
            &self.swarm,
            &self.shared,
            &self.task_id,
            level,
            &message,
            "log",
        ) {
            self.host_calls += 1;
        }
        Ok(())
    }
}

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
