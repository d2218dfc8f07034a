//! The swarm-wide tables of a contract: `[placement]`, `[instances]`,
//! `[swarm_limits]`, `[budget]`, `[throttle]`, and the selection threshold.

use super::*;

/// `[placement] labels` parse, say which workers may serve the swarm, and
/// a label that is not one is refused naming its field.
#[test]
fn placement_labels_admit_workers_that_have_them_all() {
    let contract = parse("swarm_id = \"s\"\n[placement]\nlabels = [\"gpu\", \"eu-1\"]\n").unwrap();
    let has = |labels: &[&str]| {
        let labels: Vec<String> = labels.iter().map(|l| l.to_string()).collect();
        contract.placement.admits(&labels)
    };
    assert!(has(&["eu-1", "gpu", "big"]));
    assert!(!has(&["gpu"]));
    assert!(parse("swarm_id = \"s\"\n").unwrap().placement.admits(&[]));
    refused(
        "swarm_id = \"s\"\n[placement]\nlabels = [\"GPU\"]\n",
        3,
        "placement.labels[0]",
        "lowercase",
    );
    assert!(parse("swarm_id = \"s\"\n[placement]\nzone = \"x\"\n").is_err());
}

/// `[instances] tasks_per_instance` is 1 (a fresh instance per task)
/// unless set, is written back only when set, and is refused out of
/// 1–10000 naming its field.
#[test]
fn tasks_per_instance_defaults_to_fresh_instances_and_is_range_checked() {
    let fresh = parse("swarm_id = \"s\"\n").unwrap();
    assert!(fresh.instances.is_fresh());
    assert!(!fresh.to_toml().contains("[instances]"));
    let warm = parse("swarm_id = \"s\"\n[instances]\ntasks_per_instance = 50\n").unwrap();
    assert_eq!(warm.instances.tasks_per_instance, 50);
    assert!(warm.to_toml().contains("tasks_per_instance = 50"));
    for bad in ["0", "10001"] {
        refused(
            &format!("swarm_id = \"s\"\n[instances]\ntasks_per_instance = {bad}\n"),
            3,
            "instances.tasks_per_instance",
            "1: a fresh instance per task",
        );
    }
    assert!(parse("swarm_id = \"s\"\n[instances]\nwarm = true\n").is_err());
}

/// `[swarm_limits]` must be at least the per-task limits, and `[budget]`
/// within its ranges; each refusal names its field.
#[test]
fn swarm_limits_and_budgets_are_range_checked() {
    let ok = parse(
        "swarm_id = \"s\"\n[resource_limits]\nmax_cpu_percent = 50\nmax_memory_mb = 64\n\
         [swarm_limits]\nmax_cpu_percent = 200\nmax_memory_mb = 256\n\
         [budget]\nperiod_seconds = 60\ncpu_seconds = 1.5\ntasks = 3\n",
    )
    .unwrap();
    assert_eq!(ok.swarm_limits.max_memory_mb, Some(256));
    assert_eq!(ok.budget.tasks, Some(3));
    refused(
        "swarm_id = \"s\"\n[resource_limits]\nmax_memory_mb = 64\n[swarm_limits]\nmax_memory_mb = 32\n",
        5,
        "swarm_limits.max_memory_mb",
        "at least resource_limits.max_memory_mb",
    );
    refused(
        "swarm_id = \"s\"\n[swarm_limits]\nmax_cpu_percent = 1\n",
        3,
        "swarm_limits.max_cpu_percent",
        "at least resource_limits.max_cpu_percent",
    );
    refused(
        "swarm_id = \"s\"\n[budget]\ncpu_seconds = -1.0\n",
        3,
        "budget.cpu_seconds",
        "more than 0",
    );
    refused(
        "swarm_id = \"s\"\n[budget]\nperiod_seconds = 0\ntasks = 1\n",
        3,
        "budget.period_seconds",
        "between 1 and 2592000",
    );
}

/// `[throttle]` keeps today's slots by default, and each setting out of
/// range is refused naming its field.
#[test]
fn throttle_settings_are_range_checked() {
    let default = parse("swarm_id = \"s\"\n").unwrap();
    assert!(default.throttle.is_default() && default.throttle.adaptive);
    assert_eq!(default.circuit_failures(), 5);
    let expected =
        parse("swarm_id = \"s\"\n[reputation]\nmax_failure_rate_percent = 100\n").unwrap();
    assert_eq!(
        expected.circuit_failures(),
        0,
        "failures are expected: no circuit"
    );
    let both = parse(
        "swarm_id = \"s\"\n[reputation]\nmax_failure_rate_percent = 100\n[throttle]\ncircuit_failures = 3\n",
    )
    .unwrap();
    assert_eq!(both.circuit_failures(), 3);
    let ok = parse(
        "swarm_id = \"s\"\n[resource_limits]\nmax_concurrent_tasks = 8\n\
         [throttle]\nmin_concurrency = 2\nwindow_tasks = 10\ncircuit_failures = 0\ncool_down_seconds = 0.5\n",
    )
    .unwrap();
    assert_eq!(
        ok.throttle.cool_down(),
        std::time::Duration::from_millis(500)
    );
    refused(
        "swarm_id = \"s\"\n[throttle]\nmin_concurrency = 2\n",
        3,
        "throttle.min_concurrency",
        "at most resource_limits.max_concurrent_tasks",
    );
    refused(
        "swarm_id = \"s\"\n[throttle]\ncool_down_seconds = 0.01\n",
        3,
        "throttle.cool_down_seconds",
        "between 0.1 and 86400",
    );
    refused(
        "swarm_id = \"s\"\n[throttle]\nwindow_tasks = 0\n",
        3,
        "throttle.window_tasks",
        "between 1 and 10000",
    );
    assert!(parse("swarm_id = \"s\"\n[throttle]\nspeed = 1\n").is_err());
}

/// A selection threshold must be above the quarantine threshold.
#[test]
fn a_selection_threshold_is_above_the_quarantine_threshold() {
    let ok = parse("swarm_id = \"s\"\n[reputation]\nselection_threshold = 0.7\n").unwrap();
    assert_eq!(ok.reputation.selection_threshold, Some(0.7));
    refused(
        "swarm_id = \"s\"\n[reputation]\nquarantine_threshold = 0.4\nselection_threshold = 0.3\n",
        4,
        "reputation.selection_threshold",
        "above quarantine_threshold (0.4)",
    );
}
