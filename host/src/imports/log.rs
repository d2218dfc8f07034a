//! `infrafabric:chassis/log`: guest log lines go to `tracing`, target
//! `swarm`, prefixed with the swarm id and carrying the task id.
//!
//! Control characters in a guest's message are escaped so one call is one
//! line in the host's log: a guest cannot forge lines for another swarm.

use crate::bindings::log::{Host, Level};
use crate::state::HostState;

/// Longest log message kept, in bytes; longer messages are cut and marked.
pub const MAX_LOG_LINE_BYTES: usize = 16 * 1024;

/// Escape control characters and cut `message` to [`MAX_LOG_LINE_BYTES`].
pub(crate) fn sanitize(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(MAX_LOG_LINE_BYTES));
    for c in message.chars() {
        if out.len() >= MAX_LOG_LINE_BYTES {
            out.push_str("…[truncated]");
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Emit one guest line at `level`.
pub(crate) fn emit(swarm_id: &str, task_id: &str, level: Level, message: &str) {
    let message = sanitize(message);
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
        if self.admit_call("log")? {
            emit(self.swarm_id(), &self.task_id, level, &message);
        } else {
            self.shared.drop_line(&self.swarm, &self.task_id, "log");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_escapes_newlines_so_a_guest_cannot_forge_lines() {
        let s = sanitize("ok\n[other-swarm] forged\r\x1b[31m");
        assert!(!s.contains('\n') && !s.contains('\r') && !s.contains('\x1b'));
        assert!(s.starts_with("ok\\n[other-swarm] forged\\r"));
    }

    #[test]
    fn sanitize_cuts_long_messages() {
        let s = sanitize(&"x".repeat(MAX_LOG_LINE_BYTES * 2));
        assert!(s.len() < MAX_LOG_LINE_BYTES + 32);
        assert!(s.ends_with("[truncated]"));
    }
}
