//! The status page of `chassis serve`: a read-only page at `/` that shows
//! the loaded swarms, their SLOs, reputation and quarantine, and the newest
//! audit records, live.
//!
//! Data flow: the page (`index.html`, `status.css`, `status.js`, embedded
//! in the binary; no build step, nothing fetched from elsewhere) polls the
//! service's own JSON routes, `GET /v1/swarms` and `GET /v1/audit`
//! (`http.rs`), every two seconds and renders them with DOM text nodes
//! only, so guest text is shown, never parsed as markup. Of what those
//! routes answer, the recent window — each swarm's latest task latencies
//! and reputation moves — comes from [`Recent`], an event sink fed by the
//! host like the metrics; the audit records come from the end of the audit
//! log file ([`crate::audit::tail`]).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::events::{Event, EventSink};

/// The page.
pub(super) const INDEX_HTML: &str = include_str!("index.html");
/// Its script.
pub(super) const STATUS_JS: &str = include_str!("status.js");
/// Its style sheet.
pub(super) const STATUS_CSS: &str = include_str!("status.css");

/// The page's Content-Security-Policy: its own script and style sheet,
/// requests to its own origin, nothing inline, no frames. Markup that got
/// into the page anyway could not run.
pub(super) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// Task latencies kept per swarm.
const TASKS_KEPT: usize = 120;
/// Reputation moves kept per swarm.
const MOVES_KEPT: usize = 60;

/// The operations the page lists by default: loads and unloads, refusals,
/// failures, limits, SLO misses, quarantines and releases. Left out are the
/// records every task or granted call makes, and the score's small moves
/// (`reputation_changed`).
pub(super) fn notable(operation: &str) -> bool {
    !matches!(
        operation,
        "task_start"
            | "task_complete"
            | "credential_access_allowed"
            | "credential_repeated"
            | "http_proxy"
            | "reputation_changed"
    )
}

/// One finished task, as the latency chart shows it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct TaskPoint {
    /// When it ended, milliseconds since the Unix epoch.
    pub(crate) at_ms: u64,
    /// Its wall time from the request, in milliseconds.
    pub(crate) wall_ms: f64,
    /// Whether it succeeded.
    pub(crate) ok: bool,
}

/// A reputation score at a moment: after a move, a quarantine or a release.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct ScorePoint {
    /// When, milliseconds since the Unix epoch.
    pub(crate) at_ms: u64,
    /// The score.
    pub(crate) score: f64,
}

/// A swarm's recent window.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct Window {
    /// Its latest tasks, oldest first.
    pub(crate) tasks: VecDeque<TaskPoint>,
    /// Its latest reputation moves, oldest first.
    pub(crate) reputation: VecDeque<ScorePoint>,
}

/// The service's observers part: the metrics (`/metrics`) and the status
/// page's recent window, each an event sink the host feeds.
#[derive(Default)]
pub(in crate::serve) struct Observers {
    /// Rendered at `/metrics`.
    pub(in crate::serve) metrics: Arc<crate::metrics::Metrics>,
    /// Each swarm's latest tasks and reputation moves.
    pub(in crate::serve) recent: Arc<Recent>,
}

impl Observers {
    /// Make both the host's event sinks.
    pub(in crate::serve) fn configure(&self, host: crate::ChassisConfig) -> crate::ChassisConfig {
        host.with_event_sink(self.metrics.clone())
            .with_event_sink(self.recent.clone())
    }
}

/// Each swarm's recent window, fed by the host's events.
#[derive(Debug, Default)]
pub(crate) struct Recent {
    swarms: Mutex<HashMap<String, Window>>,
}

impl Recent {
    /// A swarm's window (empty for one with no tasks yet).
    pub(crate) fn of(&self, swarm_id: &str) -> Window {
        self.swarms
            .lock()
            .expect("recent lock")
            .get(swarm_id)
            .cloned()
            .unwrap_or_default()
    }

    fn with(&self, swarm_id: &str, f: impl FnOnce(&mut Window)) {
        let mut swarms = self.swarms.lock().expect("recent lock");
        match swarms.get_mut(swarm_id) {
            Some(window) => f(window),
            None => f(swarms.entry(swarm_id.to_string()).or_default()),
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn push<T>(queue: &mut VecDeque<T>, kept: usize, item: T) {
    if queue.len() == kept {
        queue.pop_front();
    }
    queue.push_back(item);
}

impl EventSink for Recent {
    fn record(&self, event: &Event) {
        let task = |swarm_id: &str, wall_ms: f64, ok: bool| {
            self.with(swarm_id, |w| {
                let point = TaskPoint {
                    at_ms: now_ms(),
                    wall_ms,
                    ok,
                };
                push(&mut w.tasks, TASKS_KEPT, point);
            });
        };
        let score = |swarm_id: &str, score: f64| {
            self.with(swarm_id, |w| {
                let point = ScorePoint {
                    at_ms: now_ms(),
                    score,
                };
                push(&mut w.reputation, MOVES_KEPT, point);
            });
        };
        match event {
            Event::TaskComplete {
                swarm_id, wall_ms, ..
            } => task(swarm_id, *wall_ms, true),
            // Only tasks the SLOs count: not refusals before the swarm
            // (quarantined, unknown task type) nor tasks their caller gave up.
            Event::TaskFailed {
                swarm_id,
                kind,
                guest_error,
                wall_ms,
                ..
            } if crate::TaskEnd::from_names(kind, guest_error.as_deref())
                .and_then(crate::reputation::counted)
                .is_some() =>
            {
                task(swarm_id, *wall_ms, false)
            }
            Event::ReputationChanged { swarm_id, to, .. } => score(swarm_id, *to),
            Event::Quarantined {
                swarm_id, score: s, ..
            }
            | Event::Released { swarm_id, score: s } => score(swarm_id, *s),
            Event::ModuleUnloaded { swarm_id } => {
                self.swarms.lock().expect("recent lock").remove(swarm_id);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tasks and score moves land in their swarm's window, bounded, oldest
    /// dropped first; an unloaded swarm's window goes with it.
    #[test]
    fn the_recent_window_keeps_the_latest_tasks_and_moves() {
        let recent = Recent::default();
        for i in 0..(TASKS_KEPT + 5) {
            recent.record(&Event::TaskComplete {
                swarm_id: "a".into(),
                task_id: format!("t{i}"),
                wall_ms: i as f64,
            });
        }
        recent.record(&Event::TaskFailed {
            swarm_id: "a".into(),
            task_id: "x".into(),
            kind: "trap".into(),
            error: "e".into(),
            guest_error: None,
            wall_ms: 7.5,
        });
        // Refused before reaching the swarm: not a task the chart shows.
        recent.record(&Event::TaskFailed {
            swarm_id: "a".into(),
            task_id: "q".into(),
            kind: "quarantined".into(),
            error: "e".into(),
            guest_error: None,
            wall_ms: 0.01,
        });
        recent.record(&Event::ReputationChanged {
            swarm_id: "a".into(),
            task_id: "x".into(),
            from: 0.5,
            to: 0.4,
        });
        recent.record(&Event::Quarantined {
            swarm_id: "a".into(),
            task_id: "x".into(),
            score: 0.2,
            threshold: 0.3,
            reason: "r".into(),
        });
        recent.record(&Event::Released {
            swarm_id: "a".into(),
            score: 0.8,
        });
        let a = recent.of("a");
        assert_eq!(a.tasks.len(), TASKS_KEPT);
        assert_eq!(a.tasks[0].wall_ms, 6.0);
        let last = a.tasks.back().unwrap();
        assert_eq!((last.wall_ms, last.ok), (7.5, false));
        let scores: Vec<f64> = a.reputation.iter().map(|p| p.score).collect();
        assert_eq!(scores, [0.4, 0.2, 0.8]);
        assert_eq!(recent.of("b"), Window::default());
        recent.record(&Event::ModuleUnloaded {
            swarm_id: "a".into(),
        });
        assert_eq!(recent.of("a"), Window::default());
    }

    #[test]
    fn every_task_and_granted_call_record_is_left_out_of_the_notable_list() {
        for op in [
            "task_start",
            "task_complete",
            "credential_access_allowed",
            "http_proxy",
        ] {
            assert!(!notable(op), "{op}");
        }
        for op in [
            "module_loaded",
            "task_failed",
            "resource_limit_exceeded",
            "credential_access_denied",
            "http_proxy_denied",
            "slo_violation",
            "quarantined",
        ] {
            assert!(notable(op), "{op}");
        }
    }
}
