//! Range and consistency checks on a deserialized contract.
//!
//! Each check returns the dotted path of the field it is about, so the caller
//! can point at the line in the source.

use super::{NetworkAccess, ServiceContract};

/// WASI interfaces a component may import only when its contract lists them
/// in `security.wasi_capabilities` (the import policy reads this list).
pub const GATED_WASI_CAPABILITIES: &[&str] = &[
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:random/random",
    "wasi:random/insecure",
];

/// WASI interfaces a contract may list in `security.wasi_capabilities`:
/// the gated ones, plus `wasi:io/streams` (which decides whether
/// stdout/stderr reach the log) and `wasi:random/insecure-seed` (importable
/// by every swarm; listing it is accepted). See `docs/contract.md`.
pub const KNOWN_WASI_CAPABILITIES: &[&str] = &[
    "wasi:io/streams",
    GATED_WASI_CAPABILITIES[0],
    GATED_WASI_CAPABILITIES[1],
    GATED_WASI_CAPABILITIES[2],
    GATED_WASI_CAPABILITIES[3],
    "wasi:random/insecure-seed",
];

/// Domains a capability (`domain:name`) may belong to.
pub const KNOWN_CAPABILITY_DOMAINS: &[&str] = &[
    "code-analysis",
    "integration",
    "docs",
    "testing",
    "governance",
    "research",
    "demo",
];

/// Shortest `task_timeout_seconds`: below it a task could not even be
/// instantiated before its deadline.
pub const MIN_TASK_TIMEOUT_SECONDS: f64 = 0.01;

/// Shortest `slo_targets.response_time_p95_ms`.
pub const MIN_RESPONSE_TIME_MS: f64 = 0.001;

/// One failed check.
#[derive(Debug)]
pub(crate) struct Violation {
    pub field: String,
    pub message: String,
}

fn bad(field: impl Into<String>, message: impl Into<String>) -> Result<(), Violation> {
    Err(Violation {
        field: field.into(),
        message: message.into(),
    })
}

fn range_u32(field: &str, value: u32, min: u32, max: u32, unit: &str) -> Result<(), Violation> {
    if value < min || value > max {
        return bad(
            field,
            format!("must be between {min} and {max} {unit}, got {value}"),
        );
    }
    Ok(())
}

fn range_f64(field: &str, value: f64, min: f64, max: f64, unit: &str) -> Result<(), Violation> {
    if !value.is_finite() || value < min || value > max {
        return bad(
            field,
            format!("must be between {min} and {max} {unit}, got {value}"),
        );
    }
    Ok(())
}

fn is_identifier(s: &str, extra: &[char]) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || extra.contains(&c))
}

/// Check every field of `c`; the first violation wins.
pub(crate) fn validate(c: &ServiceContract) -> Result<(), Violation> {
    if c.swarm_id.is_empty()
        || c.swarm_id.len() > 64
        || !is_identifier(&c.swarm_id, &['-', '_', '.'])
        || c.swarm_id.chars().any(|ch| ch.is_ascii_uppercase())
    {
        return bad(
            "swarm_id",
            format!(
                "must be 1 to 64 lowercase letters, digits, '-', '_' or '.', starting with a letter or digit, got {:?}",
                c.swarm_id
            ),
        );
    }
    if let Some(p) = &c.wasm_module
        && p.as_os_str().is_empty()
    {
        return bad("wasm_module", "must not be empty");
    }
    if c.version.trim().is_empty() {
        return bad("version", "must not be empty");
    }
    for (i, cap) in c.capabilities.iter().enumerate() {
        let field = format!("capabilities[{i}]");
        let Some((domain, name)) = cap.split_once(':') else {
            return bad(
                field,
                format!("unknown capability {cap:?}: expected `domain:name`"),
            );
        };
        if !KNOWN_CAPABILITY_DOMAINS.contains(&domain) {
            return bad(
                field,
                format!(
                    "unknown capability {cap:?}: domain {domain:?} is not one of {}",
                    KNOWN_CAPABILITY_DOMAINS.join(", ")
                ),
            );
        }
        if !is_identifier(name, &['-', '_', '.']) {
            return bad(
                field,
                format!(
                    "unknown capability {cap:?}: name must be letters, digits, '-', '_' or '.'"
                ),
            );
        }
    }

    let r = &c.resource_limits;
    range_u32(
        "resource_limits.max_cpu_percent",
        r.max_cpu_percent,
        1,
        100,
        "percent",
    )?;
    range_u32(
        "resource_limits.max_memory_mb",
        r.max_memory_mb,
        1,
        4096,
        "MiB",
    )?;
    range_u32(
        "resource_limits.max_network_bandwidth_mbps",
        r.max_network_bandwidth_mbps,
        0,
        10_000,
        "Mbit/s",
    )?;
    range_u32(
        "resource_limits.max_concurrent_tasks",
        r.max_concurrent_tasks,
        1,
        1024,
        "tasks",
    )?;
    if !(r.task_timeout_seconds.is_finite()
        && r.task_timeout_seconds >= MIN_TASK_TIMEOUT_SECONDS
        && r.task_timeout_seconds <= 86_400.0)
    {
        return bad(
            "resource_limits.task_timeout_seconds",
            format!(
                "must be between {MIN_TASK_TIMEOUT_SECONDS} and 86400 seconds, got {}",
                r.task_timeout_seconds
            ),
        );
    }
    range_u32(
        "resource_limits.max_api_calls_per_second",
        r.max_api_calls_per_second,
        1,
        1_000_000,
        "calls per second",
    )?;
    range_u32(
        "resource_limits.max_log_lines_per_second",
        r.max_log_lines_per_second,
        1,
        1_000_000,
        "lines per second",
    )?;
    range_u32(
        "resource_limits.max_log_bytes_per_second",
        r.max_log_bytes_per_second,
        1024,
        1 << 30,
        "bytes per second",
    )?;

    if r.max_fuel == Some(0) {
        return bad(
            "resource_limits.max_fuel",
            "must be at least 1 (omit it to turn fuel off)",
        );
    }

    let s = &c.slo_targets;
    range_f64(
        "slo_targets.response_time_p95_ms",
        s.response_time_p95_ms,
        MIN_RESPONSE_TIME_MS,
        86_400_000.0,
        "milliseconds",
    )?;
    range_f64(
        "slo_targets.error_rate_percent",
        s.error_rate_percent,
        0.0,
        100.0,
        "percent",
    )?;
    range_f64(
        "slo_targets.availability_percent",
        s.availability_percent,
        0.0,
        100.0,
        "percent",
    )?;
    range_f64(
        "slo_targets.throughput_rps",
        s.throughput_rps,
        0.0,
        1e9,
        "tasks per second",
    )?;

    let sec = &c.security;
    for (i, name) in sec.scoped_credentials.iter().enumerate() {
        let field = format!("security.scoped_credentials[{i}]");
        if name == "*" {
            return bad(
                field,
                "wildcards are not allowed: list each credential by name",
            );
        }
        if name.len() > 128 || !is_identifier(name, &['-', '_', '.']) {
            return bad(
                field,
                format!("must be letters, digits, '-', '_' or '.', got {name:?}"),
            );
        }
        if sec.scoped_credentials[..i].contains(name) {
            return bad(field, format!("{name:?} is listed twice"));
        }
    }
    for (i, cap) in sec.wasi_capabilities.iter().enumerate() {
        let field = format!("security.wasi_capabilities[{i}]");
        if !KNOWN_WASI_CAPABILITIES.contains(&cap.as_str()) {
            return bad(
                field,
                format!(
                    "unknown WASI capability {cap:?}: expected one of {}",
                    KNOWN_WASI_CAPABILITIES.join(", ")
                ),
            );
        }
        if sec.wasi_capabilities[..i].contains(cap) {
            return bad(field, format!("{cap:?} is listed twice"));
        }
    }
    match sec.network_access {
        NetworkAccess::None if !sec.allowed_endpoints.is_empty() => {
            return bad(
                "security.allowed_endpoints",
                "must be empty when network_access is \"none\" (set network_access = \"proxy_only\" to use the HTTP proxy)",
            );
        }
        _ => {}
    }
    for (i, ep) in sec.allowed_endpoints.iter().enumerate() {
        if let Err(why) = crate::imports::http_proxy::allowlist::Endpoint::parse(ep) {
            return bad(format!("security.allowed_endpoints[{i}]"), why);
        }
    }

    let rep = &c.reputation;
    range_f64("reputation.initial_score", rep.initial_score, 0.0, 1.0, "")?;
    range_f64("reputation.slo_weight", rep.slo_weight, 0.0, 1.0, "")?;
    range_f64(
        "reputation.security_weight",
        rep.security_weight,
        0.0,
        1.0,
        "",
    )?;
    range_f64(
        "reputation.quarantine_threshold",
        rep.quarantine_threshold,
        0.0,
        1.0,
        "",
    )?;
    range_u32(
        "reputation.failure_window",
        rep.failure_window,
        1,
        1000,
        "tasks",
    )?;
    range_f64(
        "reputation.max_failure_rate_percent",
        rep.max_failure_rate_percent,
        0.0,
        100.0,
        "percent",
    )?;
    if let Some(selection) = rep.selection_threshold
        && !(selection.is_finite() && selection > rep.quarantine_threshold && selection <= 1.0)
    {
        return bad(
            "reputation.selection_threshold",
            format!(
                "must be above quarantine_threshold ({}) and at most 1, got {selection}",
                rep.quarantine_threshold
            ),
        );
    }
    if (rep.slo_weight + rep.security_weight - 1.0).abs() > 1e-9 {
        return bad(
            "reputation.security_weight",
            format!(
                "slo_weight + security_weight must sum to 1, got {} + {} = {}",
                rep.slo_weight,
                rep.security_weight,
                rep.slo_weight + rep.security_weight
            ),
        );
    }

    let st = &c.storage;
    range_u64(
        "storage.max_total_bytes",
        st.max_total_bytes,
        1,
        1 << 40,
        "bytes",
    )?;
    range_u64("storage.max_objects", st.max_objects, 1, 100_000, "objects")?;
    range_u64(
        "storage.max_object_bytes",
        st.max_object_bytes,
        1,
        crate::caps::MAX_OBJECT_BYTES,
        "bytes (an object passes through one import call)",
    )?;
    let s = &c.swarm_limits;
    if let Some(cpu) = s.max_cpu_percent {
        range_u32(
            "swarm_limits.max_cpu_percent",
            cpu,
            r.max_cpu_percent,
            102_400,
            "percent (at least resource_limits.max_cpu_percent: one task alone may use its own share)",
        )?;
    }
    if let Some(memory) = s.max_memory_mb {
        range_u32(
            "swarm_limits.max_memory_mb",
            memory,
            r.max_memory_mb,
            1_048_576,
            "MiB (at least resource_limits.max_memory_mb: one task alone may use its own memory)",
        )?;
    }
    let b = &c.budget;
    range_u64(
        "budget.period_seconds",
        b.period_seconds,
        1,
        2_592_000,
        "seconds",
    )?;
    if let Some(cpu) = b.cpu_seconds
        && !(cpu.is_finite() && cpu > 0.0 && cpu <= 1e9)
    {
        return bad(
            "budget.cpu_seconds",
            format!("must be more than 0 and at most 1000000000 seconds, got {cpu}"),
        );
    }
    if let Some(bytes) = b.network_bytes {
        range_u64("budget.network_bytes", bytes, 1, 1 << 60, "bytes")?;
    }
    if let Some(tasks) = b.tasks {
        range_u64("budget.tasks", tasks, 1, 1 << 40, "tasks")?;
    }
    let t = &c.throttle;
    range_u32(
        "throttle.min_concurrency",
        t.min_concurrency,
        1,
        r.max_concurrent_tasks.max(1),
        "slots (at most resource_limits.max_concurrent_tasks)",
    )?;
    range_u32("throttle.window_tasks", t.window_tasks, 1, 10_000, "tasks")?;
    if let Some(failures) = t.circuit_failures {
        range_u32(
            "throttle.circuit_failures",
            failures,
            0,
            10_000,
            "failures (0: no circuit)",
        )?;
    }
    range_f64(
        "throttle.cool_down_seconds",
        t.cool_down_seconds,
        0.1,
        86_400.0,
        "seconds",
    )?;
    range_u32(
        "throttle.quarantine_after",
        t.quarantine_after,
        0,
        1000,
        "openings (0: never)",
    )?;
    range_u32(
        "instances.tasks_per_instance",
        c.instances.tasks_per_instance,
        1,
        MAX_TASKS_PER_INSTANCE,
        "tasks (1: a fresh instance per task)",
    )?;
    if c.placement.labels.len() > MAX_LABELS {
        return bad(
            "placement.labels",
            format!(
                "at most {MAX_LABELS} labels, got {}",
                c.placement.labels.len()
            ),
        );
    }
    for (i, label) in c.placement.labels.iter().enumerate() {
        check_label(label).or_else(|reason| bad(format!("placement.labels[{i}]"), reason))?;
    }
    Ok(())
}

/// Most tasks one warm instance may run (`[instances]`).
pub(crate) const MAX_TASKS_PER_INSTANCE: u32 = 10_000;

/// Most labels a contract's placement or a worker may have.
pub const MAX_LABELS: usize = 32;

/// Check one placement or worker label: 1 to 64 lowercase letters,
/// digits, '-', '_' or '.', starting with a letter or digit.
pub fn check_label(label: &str) -> Result<(), String> {
    if label.is_empty()
        || label.len() > 64
        || !is_identifier(label, &['-', '_', '.'])
        || label.chars().any(|ch| ch.is_ascii_uppercase())
    {
        return Err(format!(
            "a label is 1 to 64 lowercase letters, digits, '-', '_' or '.', starting with a letter or digit; got {:?}",
            crate::text::escape(label, 80)
        ));
    }
    Ok(())
}

fn range_u64(field: &str, value: u64, min: u64, max: u64, unit: &str) -> Result<(), Violation> {
    if value < min || value > max {
        return bad(
            field,
            format!("must be between {min} and {max} {unit}, got {value}"),
        );
    }
    Ok(())
}
