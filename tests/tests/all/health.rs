//! SLOs, reputation and quarantine through the real host.

use chassis::TaskError;
use chassis::{Error, Event, TaskRequest};
use chassis_tests::{TestHost, contract, guests, scratch_dir};
use serde_json::json;

#[tokio::test]
async fn slo_figures_and_a_violation_on_the_edge() {
    let chassis = TestHost::new()
        .memory_sink()
        .example(guests::HELLO_WORLD)
        .build()
        .await;
    for i in 0..5 {
        chassis
            .execute_task(
                "hello-world",
                TaskRequest::new("hello", json!({"name": i.to_string()})),
            )
            .await
            .unwrap();
    }
    // Two guest errors (an unknown payload field): the error rate target (1 %) is missed once.
    for _ in 0..2 {
        let o = chassis
            .execute_task(
                "hello-world",
                TaskRequest::new("hello", json!({"nom": "x"})),
            )
            .await
            .unwrap();
        assert!(!o.is_success());
    }
    // A caller's mistake does not count.
    chassis
        .execute_task("hello-world", TaskRequest::new("nope", json!({})))
        .await
        .unwrap_err();
    let report = chassis.slo_report("hello-world").unwrap();
    let s = &report.slo;
    assert_eq!((s.tasks, s.failed), (7, 2));
    assert!((s.error_rate_percent - 200.0 / 7.0).abs() < 1e-9, "{s:?}");
    assert_eq!(s.availability_percent, 100.0, "guest errors are answers");
    assert!(
        s.p50_ms > 0.0 && s.p50_ms <= s.p95_ms && s.p95_ms <= s.p99_ms,
        "{s:?}"
    );
    let error_rate = s
        .compliance
        .iter()
        .find(|c| c.metric == "error_rate")
        .unwrap();
    assert!(!error_rate.compliant);
    let violations: Vec<Event> = chassis
        .events()
        .into_iter()
        .filter(|e| matches!(e, Event::SloViolation { .. }))
        .collect();
    assert_eq!(violations.len(), 1, "once, on the edge: {violations:?}");
    let Event::SloViolation { metric, target, .. } = &violations[0] else {
        unreachable!()
    };
    assert_eq!((metric.as_str(), *target), ("error_rate", 1.0));
    // The reputation follows: the missed error rate costs SLO compliance
    // (0.4 + 0.3 · 0.5 + 0.3 = 0.85), not enough to quarantine.
    let rep = &report.reputation;
    assert!((rep.slo_compliance - 0.85).abs() < 1e-9, "{rep:?}");
    assert!(!rep.quarantined, "{rep:?}");
}

#[tokio::test]
async fn a_task_without_an_answer_takes_the_swarm_down_until_the_next_answer() {
    let chassis = TestHost::new()
        .component(
            guests::MISBEHAVE,
            "swarm_id = \"m\"\n[slo_targets]\navailability_percent = 99.0\n",
        )
        .build()
        .await;
    chassis
        .execute_task("m", TaskRequest::new("trap", json!({})))
        .await
        .unwrap_err();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    chassis
        .execute_task("m", TaskRequest::new("burn", json!({"rounds": 10})))
        .await
        .unwrap();
    let s = chassis.slo_report("m").unwrap().slo;
    assert!(s.availability_percent < 99.0, "{s:?}");
    assert!(s.availability_percent > 0.0, "{s:?}");
}

#[tokio::test]
async fn security_violations_quarantine_a_swarm_until_it_is_released() {
    let chassis = TestHost::new()
        .memory_sink()
        .component(
            guests::EGRESS,
            "swarm_id = \"thief\"\n[security]\nscoped_credentials = [\"api_key\"]\nnetwork_access = \"proxy_only\"\n\
             [reputation]\ninitial_score = 0.3\nslo_weight = 0.5\nsecurity_weight = 0.5\nquarantine_threshold = 0.25\n",
        )
        .build()
        .await;
    // One request outside its scope: 0.3 · 0.8 = 0.24 < 0.25.
    chassis
        .execute_task(
            "thief",
            TaskRequest::new("steal_credential", json!({"name": "root"})),
        )
        .await
        .unwrap();
    let rep = chassis.slo_report("thief").unwrap().reputation;
    assert!(rep.quarantined, "{rep:?}");
    let err = chassis
        .execute_task(
            "thief",
            TaskRequest::new("steal_credential", json!({"name": "api_key"})),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Task(TaskError::Quarantined { .. })),
        "{err}"
    );
    assert!(
        err.to_string().contains("is quarantined") && err.to_string().contains("release"),
        "{err}"
    );

    let released = chassis.release("thief").unwrap();
    assert!(!released.quarantined);
    assert_eq!(released.score, 0.3);
    let o = chassis
        .execute_task(
            "thief",
            TaskRequest::new("steal_credential", json!({"name": "api_key"})),
        )
        .await
        .unwrap();
    assert!(o.is_success());
    // Releasing a swarm that is not quarantined changes nothing.
    let before = chassis.slo_report("thief").unwrap().reputation;
    assert_eq!(chassis.release("thief").unwrap(), before);

    let names: Vec<String> = chassis
        .events()
        .iter()
        .map(|e| {
            serde_json::to_value(e).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .filter(|n| n == "quarantined" || n == "released")
        .collect();
    assert_eq!(names, vec!["quarantined", "released"]);
}

#[tokio::test]
async fn a_swarm_that_always_traps_is_quarantined_within_its_failure_window() {
    let chassis = TestHost::new()
        .memory_sink()
        .example(guests::HELLO_WORLD)
        .component(
            guests::MISBEHAVE,
            "swarm_id = \"trapper\"\n[reputation]\nfailure_window = 10\nmax_failure_rate_percent = 50\n\
             [throttle]\ncircuit_failures = 0\n",
        )
        .build()
        .await;
    let mut quarantined_at = None;
    for i in 1..=30 {
        // A healthy swarm runs beside it all along, and is never quarantined.
        let o = chassis
            .execute_task(
                "hello-world",
                TaskRequest::new("hello", json!({"name": "h"})),
            )
            .await
            .unwrap();
        assert!(o.is_success());
        match chassis
            .execute_task("trapper", TaskRequest::new("trap", json!({})))
            .await
        {
            Err(Error::Task(TaskError::Trap { .. })) => {}
            Err(Error::Task(TaskError::Quarantined { reason, .. })) => {
                assert!(
                    reason.contains("10 of its latest 10 tasks failed"),
                    "{reason}"
                );
                quarantined_at = Some(i);
                break;
            }
            other => panic!("task {i}: {other:?}"),
        }
    }
    // Ten traps fill the window; the eleventh task is refused.
    assert_eq!(quarantined_at, Some(11));
    let rep = chassis.slo_report("trapper").unwrap().reputation;
    assert!(
        rep.quarantined && rep.score > rep.threshold,
        "the score alone would not: {rep:?}"
    );
    assert!(chassis.events().iter().any(|e| matches!(e,
        Event::Quarantined { swarm_id, reason, .. } if swarm_id == "trapper" && reason.contains("max_failure_rate_percent"))));
    let healthy = chassis.slo_report("hello-world").unwrap().reputation;
    assert!(
        !healthy.quarantined && healthy.recent_failures == 0,
        "{healthy:?}"
    );
    // Callers' mistakes do not count against a swarm.
    for _ in 0..30 {
        let o = chassis
            .execute_task("hello-world", TaskRequest::new("add", json!({"a": "x"})))
            .await
            .unwrap();
        assert_eq!(
            o.error.as_ref().map(|e| e.kind().as_str()),
            Some("invalid_payload")
        );
    }
    assert!(
        !chassis
            .slo_report("hello-world")
            .unwrap()
            .reputation
            .quarantined
    );
}

#[tokio::test]
async fn metrics_are_rendered_for_prometheus() {
    let metrics = std::sync::Arc::new(chassis::metrics::Metrics::new());
    let sink = metrics.clone();
    let chassis = TestHost::new()
        .config(move |c| c.with_event_sink(sink))
        .example(guests::HELLO_WORLD)
        .build()
        .await;
    chassis
        .execute_task("hello-world", TaskRequest::new("hello", json!({})))
        .await
        .unwrap();
    let text = metrics.render(&chassis);
    for expected in [
        "# TYPE chassis_reputation_score gauge",
        "# TYPE chassis_tasks counter",
        "# TYPE chassis_task_duration_seconds histogram",
        "chassis_tasks_total{swarm=\"hello-world\",outcome=\"success\"} 1",
        "chassis_task_duration_seconds_count{swarm=\"hello-world\"} 1",
        "chassis_quarantined{swarm=\"hello-world\"} 0",
        "chassis_slo_compliant{swarm=\"hello-world\"} 1",
    ] {
        assert!(text.contains(expected), "{expected}: {text}");
    }
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (_, value) = line.rsplit_once(' ').unwrap();
        assert!(value.parse::<f64>().is_ok(), "{line}");
    }
}

#[tokio::test]
async fn a_report_rebuilt_from_the_audit_log_matches_the_live_one() {
    use chassis::audit::FsyncPolicy;
    let path = scratch_dir("health-replay").join("audit.jsonl");
    let text = "swarm_id = \"thief\"\n[security]\nscoped_credentials = [\"api_key\"]\nnetwork_access = \"proxy_only\"\n";
    let chassis = TestHost::new()
        .audit(&path, FsyncPolicy::Never)
        .component(guests::EGRESS, text)
        .build()
        .await;
    for name in ["api_key", "root", "api_key", "other", "api_key"] {
        chassis
            .execute_task(
                "thief",
                TaskRequest::new("steal_credential", json!({ "name": name })),
            )
            .await
            .unwrap();
    }
    chassis
        .execute_task(
            "thief",
            TaskRequest::new("steal_credential", json!({"bad": 1})),
        )
        .await
        .unwrap();
    let live = chassis.slo_report("thief").unwrap();
    chassis.audit_log().close().unwrap();
    let records = chassis::audit::events(&path).unwrap();
    let replayed = chassis::report::replay(&records, &contract(text));
    assert_eq!(
        (replayed.slo.tasks, replayed.slo.failed),
        (live.slo.tasks, live.slo.failed)
    );
    assert_eq!((live.slo.tasks, live.slo.failed), (6, 1));
    assert!((replayed.slo.error_rate_percent - live.slo.error_rate_percent).abs() < 1e-9);
    assert!((replayed.slo.p95_ms - live.slo.p95_ms).abs() <= live.slo.p95_ms * 0.01 + 0.01);
    assert!(
        (replayed.reputation.score - live.reputation.score).abs() < 1e-9,
        "{replayed:?} vs {live:?}"
    );
    assert!(
        (replayed.reputation.security_compliance - 0.64).abs() < 1e-9,
        "two violations"
    );
    std::fs::remove_dir_all(path.parent().unwrap()).ok();
}

/// The series of a Prometheus text exposition (`name{labels}` → value),
/// checked as it is read: every line a comment or a sample, every sample
/// of a family its `# TYPE` declared, a counter's samples named `_total`.
fn exposition(text: &str) -> std::collections::HashMap<String, f64> {
    let mut types = std::collections::HashMap::new();
    let mut series = std::collections::HashMap::new();
    assert!(text.ends_with("# EOF\n"), "{text}");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (family, kind) = rest.split_once(' ').unwrap();
            types.insert(family.to_string(), kind.to_string());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (key, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
        let name = key.split('{').next().unwrap();
        let kind = types
            .iter()
            .filter(|(family, _)| name.starts_with(family.as_str()))
            .max_by_key(|(family, _)| family.len())
            .map(|(family, kind)| (kind.as_str(), &name[family.len()..]))
            .unwrap_or_else(|| panic!("no # TYPE for {line}"));
        match kind {
            ("counter", suffix) => assert!(suffix == "_total" || suffix == "_created", "{line}"),
            ("gauge", suffix) => assert_eq!(suffix, "", "{line}"),
            ("histogram", suffix) => {
                assert!(["_bucket", "_sum", "_count"].contains(&suffix), "{line}")
            }
            (other, _) => panic!("{other}: {line}"),
        }
        assert!(
            series.insert(key.to_string(), value).is_none(),
            "twice: {line}"
        );
    }
    series
}

#[tokio::test]
async fn reading_usage_resets_no_reader_and_cpu_time_is_a_counter() {
    let metrics = std::sync::Arc::new(chassis::metrics::Metrics::new());
    let sink = metrics.clone();
    let chassis = TestHost::new()
        .config(move |c| c.with_event_sink(sink))
        .example(guests::BENCH_PROBE)
        .build()
        .await;
    let (mut page, mut scraper) = (chassis::UsageMeter::new(), chassis::UsageMeter::new());
    page.sample(&chassis, "bench-probe").unwrap();
    scraper.sample(&chassis, "bench-probe").unwrap();
    chassis
        .execute_task("bench-probe", TaskRequest::new("hold", json!({"ms": 100})))
        .await
        .unwrap();
    let first = chassis.resource_usage("bench-probe").unwrap();
    assert!(
        first.cpu_seconds > 0.0 && first.cpu_percent > 0.0,
        "{first:?}"
    );
    // A scrape and another read in between change nothing.
    let text = metrics.render(&chassis);
    let second = chassis.resource_usage("bench-probe").unwrap();
    assert_eq!(second.cpu_seconds, first.cpu_seconds);
    assert!(
        second.cpu_percent > 0.0 && second.cpu_percent <= first.cpu_percent,
        "reading it reset it: {first:?} then {second:?}"
    );
    let series = exposition(&text);
    let exported = series[r#"chassis_cpu_seconds_total{swarm="bench-probe"}"#];
    assert!((exported - first.cpu_seconds).abs() < 1e-9, "{text}");
    // Each meter over its own span: one reader's look does not reset the
    // other's, and a look with no task ended since shows none.
    let seen = page.sample(&chassis, "bench-probe").unwrap();
    assert!(seen.cpu_percent > 0.0, "{seen:?}");
    let scraped = scraper.sample(&chassis, "bench-probe").unwrap();
    assert!(
        scraped.cpu_percent > 0.0,
        "the page's look reset it: {scraped:?}"
    );
    let again = page.sample(&chassis, "bench-probe").unwrap();
    assert_eq!(again.cpu_percent, 0.0, "{again:?}");
    assert_eq!(again.cpu_seconds, first.cpu_seconds);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn cpu_percent_is_not_capped_at_one_core() {
    let chassis = TestHost::new().example(guests::BENCH_PROBE).build().await;
    let mut meter = chassis::UsageMeter::new();
    // Three tasks at once, each busy for two seconds; CPU time is counted
    // as each ends, so a span starting 1.5 s in holds all of it.
    let tasks: Vec<_> = (0..3)
        .map(|_| {
            let chassis = chassis.clone();
            tokio::spawn(async move {
                chassis
                    .execute_task("bench-probe", TaskRequest::new("hold", json!({"ms": 2000})))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let started = std::time::Instant::now();
    while chassis.resource_usage("bench-probe").unwrap().tasks_running < 3 {
        assert!(started.elapsed().as_secs() < 10, "the tasks never started");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let before = meter.sample(&chassis, "bench-probe").unwrap();
    assert_eq!(before.cpu_seconds, 0.0, "{before:?}");
    let mut cpu_ms = 0.0;
    for task in tasks {
        cpu_ms += task.await.unwrap().usage.cpu_ms;
    }
    let after = meter.sample(&chassis, "bench-probe").unwrap();
    assert!(
        (after.cpu_seconds - cpu_ms / 1000.0).abs() < 1e-3,
        "{after:?}"
    );
    assert!(after.cpu_percent > 100.0, "{after:?}");
    // The same figures since load stay those of the whole time.
    assert!(chassis.resource_usage("bench-probe").unwrap().cpu_percent < after.cpu_percent);
}

#[tokio::test]
async fn network_bytes_are_counted_per_swarm() {
    let server = chassis_tests::TestServer::start();
    let metrics = std::sync::Arc::new(chassis::metrics::Metrics::new());
    let sink = metrics.clone();
    let text = format!(
        "swarm_id = \"api-client\"\n[resource_limits]\nmax_network_bandwidth_mbps = 100\n\
         [security]\nnetwork_access = \"proxy_only\"\nscoped_credentials = [\"api_token\"]\n\
         allowed_endpoints = [\"http://127.0.0.1:{}/v1/\"]\n",
        server.port
    );
    let chassis = TestHost::new()
        .config(move |c| c.with_event_sink(sink))
        .secret("api-client", "api_token", "tok-123")
        .component(guests::API_CLIENT, text)
        .build()
        .await;
    let idle = chassis.resource_usage("api-client").unwrap();
    assert_eq!((idle.network_bytes_out, idle.network_bytes_in), (0, 0));
    assert_eq!(idle.network_mbps, 0.0);
    let o = chassis
        .execute_task(
            "api-client",
            TaskRequest::new(
                "fetch_json",
                json!({"url": server.url("127.0.0.1", "/v1/echo"), "method": "post", "body": {"x": [1, 2]}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(o.output["status"], json!(200), "{o:?}");
    // `{"x":[1,2]}` out, echoed back.
    let usage = chassis.resource_usage("api-client").unwrap();
    assert_eq!((usage.network_bytes_out, usage.network_bytes_in), (11, 11));
    let expected = 22.0 * 8.0 / 1e6 / usage.uptime_seconds;
    assert!(
        usage.network_mbps > 0.0 && usage.network_mbps <= expected,
        "{usage:?}"
    );
    let series = exposition(&metrics.render(&chassis));
    for direction in ["out", "in"] {
        let key =
            format!(r#"chassis_proxy_bytes_total{{swarm="api-client",direction="{direction}"}}"#);
        assert_eq!(series.get(&key), Some(&11.0), "{key}: {series:?}");
    }
}

#[tokio::test]
async fn metrics_export_the_slo_figures_and_the_hosts_counters() {
    let metrics = std::sync::Arc::new(chassis::metrics::Metrics::new());
    let sink = metrics.clone();
    let chassis = TestHost::new()
        .config(move |c| c.with_event_sink(sink))
        .example(guests::HELLO_WORLD)
        .build()
        .await;
    for payload in [
        json!({"name": "a"}),
        json!({"name": "b"}),
        json!({"nom": "x"}),
    ] {
        chassis
            .execute_task("hello-world", TaskRequest::new("hello", payload))
            .await
            .unwrap();
    }
    let text = metrics.render(&chassis);
    let series = exposition(&text);
    let report = chassis.slo_report("hello-world").unwrap().slo;
    let usage = chassis.resource_usage("hello-world").unwrap();
    let get = |name: &str| {
        *series
            .get(&format!(r#"{name}{{swarm="hello-world"}}"#))
            .unwrap_or_else(|| panic!("no {name}:\n{text}"))
    };
    for (family, kind) in [
        ("chassis_cpu_seconds", "counter"),
        ("chassis_refused_calls", "counter"),
        ("chassis_dropped_log_lines", "counter"),
        ("chassis_slo_latency_p95_seconds", "gauge"),
        ("chassis_slo_error_ratio", "gauge"),
        ("chassis_slo_availability_ratio", "gauge"),
        ("chassis_slo_throughput_tasks_per_second", "gauge"),
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} {kind}\n")),
            "{family}:\n{text}"
        );
    }
    assert_eq!(get("chassis_refused_calls_total"), 0.0);
    assert_eq!(get("chassis_dropped_log_lines_total"), 0.0);
    assert!((get("chassis_cpu_seconds_total") - usage.cpu_seconds).abs() < 1e-9);
    assert!((get("chassis_slo_latency_p95_seconds") - report.p95_ms / 1000.0).abs() < 1e-9);
    assert!(get("chassis_slo_latency_p95_seconds") > 0.0);
    assert!(
        (get("chassis_slo_error_ratio") - 1.0 / 3.0).abs() < 1e-9,
        "{text}"
    );
    assert_eq!(get("chassis_slo_availability_ratio"), 1.0);
    assert!(get("chassis_slo_throughput_tasks_per_second") > 0.0);
}

/// The metrics `docs/serve.md` and `docs/slo.md` name are the ones
/// `/metrics` has, and `docs/serve.md`'s table names every one of those.
#[tokio::test]
async fn the_docs_name_the_metrics_there_are() {
    use chassis::EventSink;
    let metrics = chassis::metrics::Metrics::new();
    let chassis = TestHost::new()
        .example(guests::HELLO_WORLD)
        .component(
            guests::HELLO_WORLD,
            "swarm_id = \"budgeted\"\n[security]\nwasi_capabilities = [\"wasi:io/streams\"]\n\
             [budget]\ntasks = 10\n",
        )
        .build()
        .await;
    // A family shows once it has a series: one of each event they count.
    let (swarm_id, task_id) = ("hello-world".to_string(), "t".to_string());
    for event in [
        Event::TaskComplete {
            swarm_id: swarm_id.clone(),
            task_id: task_id.clone(),
            wall_ms: 1.0,
        },
        Event::LimitExceeded {
            swarm_id: swarm_id.clone(),
            task_id: task_id.clone(),
            limit: chassis::LimitKind::Timeout,
            detail: String::new(),
        },
        Event::HttpProxy {
            swarm_id: swarm_id.clone(),
            task_id: task_id.clone(),
            allowed: false,
            method: "GET".into(),
            url: String::new(),
            status: None,
            bytes_out: 0,
            bytes_in: 0,
            elapsed_ms: 0.0,
            reason: None,
            security_violation: true,
        },
        Event::TaskAbandoned {
            swarm_id: swarm_id.clone(),
            task_id: task_id.clone(),
            deliveries: 5,
        },
        Event::TaskRouted {
            swarm_id: swarm_id.clone(),
            task_id: task_id.clone(),
            capability: "demo:hello".into(),
            eligible: 1,
            draw: 0.5,
        },
        Event::CircuitChanged {
            swarm_id: swarm_id.clone(),
            task_id: task_id.clone(),
            state: "open".into(),
            reason: String::new(),
            cool_down_seconds: Some(30.0),
        },
    ] {
        metrics.record(&event);
    }
    metrics.queue_figures(&swarm_id, 0, 0);
    metrics.redelivered(&swarm_id);
    let text = metrics.render(&chassis);
    let families: std::collections::BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    let named = |doc: &str| -> std::collections::BTreeSet<String> {
        let text = std::fs::read_to_string(chassis_tests::root().join(doc)).unwrap();
        let mut names = std::collections::BTreeSet::new();
        for (at, _) in text.match_indices("`chassis_") {
            let name: String = text[at + 1..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            names.insert(name.strip_suffix("_total").unwrap_or(&name).to_string());
        }
        names
    };
    let serve = named("docs/serve.md");
    for doc in ["docs/serve.md", "docs/slo.md"] {
        for name in named(doc) {
            assert!(
                families.contains(name.as_str()),
                "{doc} names {name}, which /metrics does not have:\n{text}"
            );
        }
    }
    for family in families {
        assert!(
            serve.contains(family),
            "docs/serve.md does not name {family}"
        );
    }
}
