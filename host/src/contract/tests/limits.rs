//! The swarm-wide tables of a contract: `[placement]`, `[swarm_limits]`,
//! `[budget]`, and the selection threshold.

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
