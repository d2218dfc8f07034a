//! The host's figures in the Prometheus text exposition format: per swarm,
//! SLO figures, reputation and live usage, as gauges labelled `swarm`.
//!
//! Data flow: read from each loaded swarm's health (SLO tracker and
//! reputation) and counters at the moment of the call; nothing is kept.

use std::sync::atomic::Ordering;

use crate::Chassis;

/// Render every loaded swarm's figures.
pub(crate) fn render(chassis: &Chassis) -> String {
    type Family = (&'static str, &'static str, Vec<(String, f64)>);
    let mut families: Vec<Family> = vec![
        ("chassis_task_latency_p50_ms", "Median task latency", vec![]),
        (
            "chassis_task_latency_p95_ms",
            "95th percentile task latency",
            vec![],
        ),
        (
            "chassis_task_latency_p99_ms",
            "99th percentile task latency",
            vec![],
        ),
        ("chassis_tasks_total", "Tasks counted for SLOs", vec![]),
        (
            "chassis_tasks_failed_total",
            "Tasks that did not succeed",
            vec![],
        ),
        (
            "chassis_error_rate_percent",
            "Failed tasks, percent",
            vec![],
        ),
        (
            "chassis_availability_percent",
            "Time up since load, percent",
            vec![],
        ),
        (
            "chassis_slo_compliant",
            "1 when every SLO target is met",
            vec![],
        ),
        ("chassis_reputation_score", "Reputation score", vec![]),
        (
            "chassis_quarantined",
            "1 when the swarm is quarantined",
            vec![],
        ),
        (
            "chassis_throughput_rps",
            "Tasks per second since load",
            vec![],
        ),
        ("chassis_tasks_running", "Tasks running now", vec![]),
        (
            "chassis_memory_bytes",
            "Linear memory of running instances",
            vec![],
        ),
    ];
    for info in chassis.list() {
        let Ok(swarm) = chassis.inner.registry.get(&info.swarm_id) else {
            continue;
        };
        let Ok(report) = chassis.slo_report(&info.swarm_id) else {
            continue;
        };
        let c = &swarm.runtime.counters;
        let s = &report.slo;
        let values = [
            s.p50_ms,
            s.p95_ms,
            s.p99_ms,
            s.tasks as f64,
            s.failed as f64,
            s.error_rate_percent,
            s.availability_percent,
            f64::from(u8::from(s.compliance.iter().all(|c| c.compliant))),
            report.reputation.score,
            f64::from(u8::from(report.reputation.quarantined)),
            s.throughput_rps,
            c.running.load(Ordering::Relaxed) as f64,
            c.memory_bytes.load(Ordering::Relaxed) as f64,
        ];
        for (family, value) in families.iter_mut().zip(values) {
            family.2.push((info.swarm_id.clone(), value));
        }
    }
    let mut out = String::new();
    for (name, help, samples) in families {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
        for (swarm, value) in samples {
            let swarm = swarm.replace('\\', "\\\\").replace('"', "\\\"");
            out.push_str(&format!("{name}{{swarm=\"{swarm}\"}} {value}\n"));
        }
    }
    out
}
