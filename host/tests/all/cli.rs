//! The `chassis` command line, run as a process against the example
//! contracts and the components built by `cargo xtask build`.

use std::path::PathBuf;
use std::process::{Command, Output};

use crate::common::{audit_segment, audit_text, root};

fn chassis(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chassis"))
        .args(args)
        .current_dir(root())
        .env("CHASSIS_LOG", "error")
        // Compiled components and objects go under target/, not the user's.
        .env("CHASSIS_CACHE_DIR", root().join("target/tmp/cli-cache"))
        .env(
            "CHASSIS_STORAGE_DIR",
            root().join(format!("target/tmp/cli-storage-{}", std::process::id())),
        )
        .output()
        .expect("chassis runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A failed command printed exactly one `error: ...` line.
#[track_caller]
fn one_line_error(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "expected failure, stdout: {}",
        stdout(o)
    );
    let err = stderr(o);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    lines[0].to_string()
}

#[test]
fn run_prints_the_output_json() {
    let o = chassis(&[
        "run",
        "config/analyzer.toml",
        "--task",
        "analyze_code",
        "--payload",
        r##"{"language":"python","source":"# c\n\nx = 1\nprint(x)\n"}"##,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        out,
        serde_json::json!({"language": "python", "line_count": 4, "blank_lines": 1, "comment_lines": 1, "code_lines": 2})
    );
}

#[test]
fn run_json_prints_the_whole_outcome() {
    let o = chassis(&[
        "run",
        "config/hello-world.toml",
        "--task",
        "hello",
        "--payload",
        r#"{"name":"CLI"}"#,
        "--task-id",
        "cli-1",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(out["status"], "success");
    assert_eq!(out["task_id"], "cli-1");
    assert_eq!(out["swarm_id"], "hello-world");
    assert_eq!(out["output"]["greeting"], "Hello, CLI!");
    assert!(out["execution_time_ms"].as_f64().unwrap() > 0.0);
    // Task usage and the swarm's resource usage.
    assert!(out["usage"]["peak_memory_bytes"].as_u64().unwrap() > 0);
    assert!(out["usage"]["cpu_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(out["swarm_usage"]["swarm_id"], "hello-world");
    assert_eq!(out["swarm_usage"]["tasks_completed"], 1);
    assert_eq!(out["swarm_usage"]["tasks_running"], 0);
}

#[test]
fn run_fails_with_one_line_for_each_kind_of_problem() {
    let e = one_line_error(&chassis(&[
        "run",
        "config/hello-world.toml",
        "--task",
        "nope",
    ]));
    assert!(
        e.contains("task not exported by swarm") && e.contains("nope"),
        "{e}"
    );

    let e = one_line_error(&chassis(&[
        "run",
        "config/analyzer.toml",
        "--task",
        "analyze_code",
        "--payload",
        r#"{"language":"cobol","source":""}"#,
    ]));
    assert!(e.contains("invalid payload") && e.contains("cobol"), "{e}");

    let e = one_line_error(&chassis(&[
        "run",
        "config/hello-world.toml",
        "--task",
        "hello",
        "--payload",
        "{not json",
    ]));
    assert!(e.contains("--payload is not valid JSON"), "{e}");

    let e = one_line_error(&chassis(&["run", "config/missing.toml", "--task", "hello"]));
    assert!(
        e.contains("config/missing.toml: cannot read contract"),
        "{e}"
    );
}

#[test]
fn run_failure_with_json_still_prints_the_outcome() {
    let o = chassis(&[
        "run",
        "config/analyzer.toml",
        "--task",
        "count_lines",
        "--payload",
        "{}",
        "--json",
    ]);
    assert!(!o.status.success());
    let out: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(out["status"], "failed");
    assert_eq!(out["error"]["kind"], "invalid_payload");
}

#[test]
fn validate_accepts_every_example_contract() {
    let mut args = vec!["validate", "--brief"];
    let files: Vec<String> = std::fs::read_dir(root().join("config"))
        .unwrap()
        .map(|e| format!("config/{}", e.unwrap().file_name().to_string_lossy()))
        .filter(|f| f.ends_with(".toml"))
        .collect();
    assert!(files.len() >= 5, "{files:?}");
    args.extend(files.iter().map(String::as_str));
    let o = chassis(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).lines().filter(|l| l.starts_with("OK: ")).count(),
        files.len()
    );
}

#[test]
fn validate_prints_defaults_and_names_bad_fields() {
    let dir = std::env::temp_dir().join(format!("chassis-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(&good, "swarm_id = \"tiny\"\n").unwrap();
    let o = chassis(&["validate", "--contract-only", good.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("max_memory_mb = 256"), "{}", stdout(&o));

    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "swarm_id = \"b\"\n[security]\nfilesystem_access = \"full\"\n",
    )
    .unwrap();
    let o = chassis(&["validate", bad.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("bad.toml:3:") && err.contains("security.filesystem_access"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn inspect_prints_the_world_as_wit() {
    let o = chassis(&["inspect", "target/swarms/guardian_council.wasm"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let wit = stdout(&o);
    assert!(
        wit.contains("import infrafabric:chassis/credentials@0.1.0;"),
        "{wit}"
    );
    assert!(
        wit.contains("import infrafabric:chassis/log@0.1.0;"),
        "{wit}"
    );
    assert!(
        wit.contains("export infrafabric:chassis/task@0.1.0;"),
        "{wit}"
    );
    assert!(!wit.contains("http-proxy"), "{wit}");
}

#[test]
fn inspect_refuses_what_is_not_a_component() {
    let e = one_line_error(&chassis(&["inspect", "Cargo.toml"]));
    assert!(e.contains("Cargo.toml: not a valid wasm file"), "{e}");
}

#[test]
fn help_describes_each_command() {
    let o = chassis(&["--help"]);
    assert!(o.status.success());
    for cmd in ["validate", "inspect", "run", "audit", "report", "release"] {
        assert!(
            stdout(&o).contains(cmd),
            "{cmd} missing from: {}",
            stdout(&o)
        );
    }
    for cmd in [
        &["validate", "--help"][..],
        &["inspect", "--help"],
        &["run", "--help"],
        &["audit", "verify", "--help"],
        &["audit", "show", "--help"],
        &["report", "--help"],
        &["release", "--help"],
    ] {
        let o = chassis(cmd);
        assert!(o.status.success());
        assert!(
            stdout(&o).contains("Usage: chassis"),
            "{cmd:?}: {}",
            stdout(&o)
        );
    }
    let o = chassis(&["run", "--help"]);
    assert!(stdout(&o).contains("--payload") && stdout(&o).contains("--json"));
    assert!(stdout(&o).contains("--usage"));
}

#[test]
fn run_shows_usage_also_when_the_task_fails() {
    let o = chassis(&[
        "run",
        "config/hello-world.toml",
        "--task",
        "hello",
        "--payload",
        r#"{"name":"u"}"#,
        "--usage",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("task usage: wall "), "{err}");
    assert!(
        err.contains("swarm usage: hello-world: cpu ") && err.contains("1 completed"),
        "{err}"
    );
    let o = chassis(&[
        "run",
        "config/hello-world.toml",
        "--task",
        "nope",
        "--payload",
        "{}",
        "--usage",
    ]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("swarm usage: hello-world: cpu "), "{err}");
    assert!(err.contains("task not exported by swarm"), "{err}");
}

#[test]
fn run_with_a_secrets_file_signs_the_vote() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("chassis-cli-secrets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("secrets.toml");
    std::fs::write(
        &file,
        "[guardian-council]\nguardian_signing_key = \"ed25519:9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let vote = r#"{"session":"s","proposal":"p"}"#;
    let o = chassis(&[
        "run",
        "config/guardian-council.toml",
        "--task",
        "guardian_vote",
        "--payload",
        vote,
        "--secrets",
        file.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        out["signature"].as_str().unwrap().starts_with("ed25519:"),
        "{out}"
    );
    assert_eq!(
        out["public_key"],
        "ed25519:d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    );

    // A secrets file others can read is refused before anything runs.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = one_line_error(&chassis(&[
        "run",
        "config/guardian-council.toml",
        "--task",
        "guardian_vote",
        "--payload",
        vote,
        "--secrets",
        file.to_str().unwrap(),
    ]));
    assert!(
        e.contains("readable by group or others") && e.contains("chmod 600"),
        "{e}"
    );
    assert!(!e.contains("9d61b19d"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn audit_verify_and_show() {
    let dir = std::env::temp_dir().join(format!("chassis-cli-audit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("audit.jsonl");
    let _ = std::fs::remove_file(&log);
    let log_arg = log.to_str().unwrap();
    for name in ["one", "two"] {
        let payload = format!(r#"{{"name":"{name}"}}"#);
        let o = chassis(&[
            "run",
            "config/hello-world.toml",
            "--task",
            "hello",
            "--payload",
            &payload,
            "--audit",
            log_arg,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let o = chassis(&["audit", "verify", log_arg]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Two runs of: module_loaded, task_start, task_complete, and
    // reputation_changed (0.5 moves to 0.55 after a task that meets every
    // SLO), then the checkpoint written at close (its marker and the
    // swarm's state).
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "OK: 12 records", "{out}");
    assert!(
        lines[1].starts_with("head: 12:") && lines[1].len() == "head: 12:".len() + 64,
        "{out}"
    );

    let o = chassis(&[
        "audit",
        "show",
        log_arg,
        "--operation",
        "task_complete",
        "--swarm",
        "hello-world",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let shown: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(shown.len(), 2);
    assert!(shown.iter().all(|r| r["operation"] == "task_complete"));

    // A second swarm in the same log: the swarm filter keeps them apart.
    let o = chassis(&[
        "run",
        "config/analyzer.toml",
        "--task",
        "count_lines",
        "--payload",
        r#"{"source":"a\nb"}"#,
        "--audit",
        log_arg,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let show = |args: &[&str]| -> Vec<serde_json::Value> {
        let mut all = vec!["audit", "show", log_arg];
        all.extend_from_slice(args);
        let o = chassis(&all);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let every = show(&[]);
    let analyzer = show(&["--swarm", "analyzer"]);
    let hello = show(&["--swarm", "hello-world"]);
    assert!(!analyzer.is_empty() && !hello.is_empty());
    assert!(analyzer.iter().all(|r| r["swarm_id"] == "analyzer"));
    assert!(hello.iter().all(|r| r["swarm_id"] == "hello-world"));
    // The checkpoints' markers are about no swarm.
    let markers = every
        .iter()
        .filter(|r| r["operation"] == "checkpoint")
        .count();
    assert_eq!(markers, 3);
    assert_eq!(analyzer.len() + hello.len() + markers, every.len());
    // Time windows (--since inclusive, --until exclusive): until the second
    // run's first record keeps exactly the first run's six.
    let second_run = every[6]["ts"].as_str().unwrap();
    assert_eq!(show(&["--until", second_run]), every[..6].to_vec());
    assert_eq!(show(&["--since", second_run]), every[6..].to_vec());
    let one = show(&[
        "--since",
        every[1]["ts"].as_str().unwrap(),
        "--until",
        every[2]["ts"].as_str().unwrap(),
    ]);
    assert_eq!(one, vec![every[1].clone()]);
    let o = chassis(&["audit", "show", log_arg, "--since", "2999-01-01T00:00:00Z"]);
    assert_eq!(stdout(&o), "");
    let e = one_line_error(&chassis(&[
        "audit",
        "show",
        log_arg,
        "--since",
        "yesterday",
    ]));
    assert!(e.contains("--since \"yesterday\""), "{e}");

    // Tampering: exit 1 and the first bad record.
    let text = audit_text(&log);
    std::fs::write(
        audit_segment(&log),
        text.replacen("\"name\"", "\"nome\"", 1)
            .replacen("task_start", "task_stort", 1),
    )
    .unwrap();
    let e = one_line_error(&chassis(&["audit", "verify", log_arg]));
    assert!(
        e.contains("record on line 2 is bad") && e.contains("edited"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn report_marks_each_target_pass_or_fail() {
    let dir = std::env::temp_dir().join(format!("chassis-cli-report-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("audit.jsonl");
    let _ = std::fs::remove_file(&log);
    let log_arg = log.to_str().unwrap();
    let run = |payload: &str| {
        chassis(&[
            "run",
            "config/hello-world.toml",
            "--task",
            "hello",
            "--payload",
            payload,
            "--audit",
            log_arg,
        ])
    };
    assert!(run(r#"{"name":"a"}"#).status.success());
    let o = chassis(&["report", "--audit", log_arg, "config/hello-world.toml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("hello-world (1 tasks, 0 failed)"), "{text}");
    assert_eq!(text.matches("PASS").count(), 3, "{text}");

    assert!(!run(r#"{"nom":"b"}"#).status.success());
    let o = chassis(&[
        "report",
        "--audit",
        log_arg,
        "config/hello-world.toml",
        "--json",
    ]);
    assert!(!o.status.success(), "a missed target fails the report");
    let reports: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let checks = reports[0]["slo"]["compliance"].as_array().unwrap();
    let error_rate = checks.iter().find(|c| c["metric"] == "error_rate").unwrap();
    assert_eq!(error_rate["compliant"], false);
    assert_eq!(error_rate["actual"], 50.0);

    // From the newest checkpoint (each run ends with one), from the log's
    // start, and over a range of records: the first run's four alone.
    let report = |extra: &[&str]| {
        let mut args = vec![
            "report",
            "--audit",
            log_arg,
            "config/hello-world.toml",
            "--json",
        ];
        args.extend_from_slice(extra);
        let o = chassis(&args);
        let reports: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        (reports, stderr(&o))
    };
    let (latest, said) = report(&[]);
    assert!(
        said.contains("state from the checkpoint covering record 11, then 0 records replayed"),
        "{said}"
    );
    let (full, said) = report(&["--full"]);
    assert!(said.contains("state from the log's start"), "{said}");
    assert_eq!(latest, full);
    let (first, said) = report(&["--from", "1", "--to", "4"]);
    assert!(said.contains("records 1 to 4 only"), "{said}");
    assert_eq!(first[0]["slo"]["tasks"], 1, "{first}");
    assert_eq!(first[0]["slo"]["failed"], 0, "{first}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn run_writes_prometheus_metrics() {
    let path =
        std::env::temp_dir().join(format!("chassis-cli-metrics-{}.prom", std::process::id()));
    let o = chassis(&[
        "run",
        "config/hello-world.toml",
        "--task",
        "hello",
        "--metrics",
        path.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&path).unwrap();
    for expected in [
        "chassis_tasks_total{swarm=\"hello-world\",outcome=\"success\"} 1",
        "# TYPE chassis_task_duration_seconds histogram",
        "chassis_reputation_score{swarm=\"hello-world\"}",
    ] {
        assert!(text.contains(expected), "{expected}: {text}");
    }
    std::fs::remove_file(&path).ok();
}

#[test]
fn quarantine_carries_over_runs_until_released() {
    let dir = std::env::temp_dir().join(format!("chassis-cli-quarantine-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("audit.jsonl");
    let _ = std::fs::remove_file(&log);
    let contract = dir.join("thief.toml");
    std::fs::write(
        &contract,
        format!(
            "swarm_id = \"thief\"\nwasm_module = {:?}\n[security]\nscoped_credentials = [\"api_key\"]\n\
             network_access = \"proxy_only\"\n[reputation]\ninitial_score = 0.3\nslo_weight = 0.5\n\
             security_weight = 0.5\nquarantine_threshold = 0.25\n",
            root().join("target/swarms/egress.wasm")
        ),
    )
    .unwrap();
    let (log_arg, contract_arg) = (log.to_str().unwrap(), contract.to_str().unwrap());
    let steal = |name: &str| {
        let payload = format!(r#"{{"name":"{name}"}}"#);
        chassis(&[
            "run",
            contract_arg,
            "--task",
            "steal_credential",
            "--payload",
            &payload,
            "--audit",
            log_arg,
        ])
    };
    // Asking for a key outside its scope costs 20 %: 0.24 < 0.25.
    assert!(steal("root").status.success());
    let e = one_line_error(&steal("api_key"));
    assert!(e.contains("\"thief\" is quarantined"), "{e}");
    let o = chassis(&["release", "--audit", log_arg, contract_arg]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("released \"thief\""), "{}", stdout(&o));
    assert!(steal("api_key").status.success());
    let e = one_line_error(&chassis(&["release", "--audit", log_arg, contract_arg]));
    assert!(e.contains("is not quarantined"), "{e}");
    let o = chassis(&["audit", "verify", log_arg]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = chassis(&["audit", "show", log_arg, "--operation", "quarantined"]);
    assert_eq!(stdout(&o).lines().count(), 1);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn run_compiles_once_then_loads_from_the_cache_dir() {
    let dir = root().join(format!("target/tmp/cli-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let run = |extra: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_chassis"));
        cmd.args(["run", "config/hello-world.toml", "--task", "hello"])
            .args(extra)
            .current_dir(root())
            .env("CHASSIS_LOG", "chassis=info");
        let o = cmd.output().expect("chassis runs");
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stdout(&o).contains("Hello, world!"), "{}", stdout(&o));
        stderr(&o)
    };
    let dir_arg = dir.to_str().unwrap();
    assert!(run(&["--cache-dir", dir_arg]).contains("cache miss"));
    assert!(run(&["--cache-dir", dir_arg]).contains("cache hit"));
    assert!(run(&["--no-cache"]).contains("cache off"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A temporary directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chassis-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A contract file in `dir` for the built component `stem`.
fn contract_file(dir: &std::path::Path, id: &str, stem: &str, extra: &str) -> PathBuf {
    let path = dir.join(format!("{id}.toml"));
    std::fs::write(
        &path,
        format!(
            "swarm_id = \"{id}\"\nwasm_module = {:?}\n{extra}",
            root().join(format!("target/swarms/{stem}.wasm"))
        ),
    )
    .unwrap();
    path
}

#[test]
fn guest_text_cannot_forge_the_error_line() {
    let dir = scratch("forge");
    let contract = contract_file(&dir, "misbehave", "misbehave", "");
    let o = chassis(&["run", contract.to_str().unwrap(), "--task", "forge"]);
    let line = one_line_error(&o);
    assert!(
        !line.contains('\r') && !line.contains('\u{1b}') && !line.contains('\u{2028}'),
        "{line:?}"
    );
    assert!(
        !line.contains('\u{202e}') && !line.contains('\u{2066}'),
        "{line:?}"
    );
    assert!(line.contains(r"boom\r\u{1b}[2K"), "{line}");
    // The raw bytes of stderr hold no escape character at all.
    assert!(!o.stderr.contains(&0x1b) && !o.stderr.contains(&b'\r'));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn validate_loads_the_component_under_its_contract() {
    let dir = scratch("validate");
    let missing = dir.join("missing.toml");
    std::fs::write(&missing, "swarm_id = \"nomodule\"\n").unwrap();
    let ungranted = contract_file(
        &dir,
        "egress",
        "egress",
        "[security]\nnetwork_access = \"proxy_only\"\n",
    );
    let good = contract_file(&dir, "hello", "hello_world", "");
    for (path, expected) in [
        (&missing, "wasm_module: missing"),
        (&ungranted, "infrafabric:chassis/credentials"),
    ] {
        let o = chassis(&["validate", "--brief", path.to_str().unwrap()]);
        assert!(!o.status.success(), "{}", stdout(&o));
        assert!(stderr(&o).contains(expected), "{}", stderr(&o));
        assert!(!stdout(&o).contains("OK:"), "{}", stdout(&o));
        // The contract on its own is fine.
        let o = chassis(&[
            "validate",
            "--brief",
            "--contract-only",
            path.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let o = chassis(&["validate", "--brief", good.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("serves hello, echo, add"),
        "{}",
        stdout(&o)
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_closed_stdout_ends_quietly() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let o = Command::new(env!("CARGO_BIN_EXE_chassis"))
        .args(["validate", "--contract-only", "config/hello-world.toml"])
        .current_dir(root())
        .stdout(writer)
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(o.status.code(), Some(141), "{err}");
}

#[test]
fn run_json_prints_the_error_when_the_host_stops_the_task() {
    let dir = scratch("json-error");
    let contract = contract_file(
        &dir,
        "spinner",
        "misbehave",
        "[resource_limits]\ntask_timeout_seconds = 0.5\n",
    );
    let o = chassis(&[
        "run",
        contract.to_str().unwrap(),
        "--task",
        "spin",
        "--json",
    ]);
    assert!(!o.status.success());
    let out: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {:?}", stdout(&o)));
    assert_eq!(out["status"], "error");
    assert_eq!(out["error"]["kind"], "timeout");
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{out}"
    );
    assert_eq!(out["swarm_usage"]["tasks_completed"], 1);
    assert!(out["reputation"]["score"].is_number(), "{out}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn report_says_no_data_for_a_swarm_without_tasks() {
    let dir = scratch("no-data");
    let log = dir.join("audit.jsonl");
    let o = chassis(&[
        "run",
        "config/hello-world.toml",
        "--task",
        "hello",
        "--audit",
        log.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = chassis(&[
        "report",
        "--audit",
        log.to_str().unwrap(),
        "config/hello-world.toml",
        "config/analyzer.toml",
    ]);
    let out = stdout(&o);
    let analyzer = out
        .split("analyzer (")
        .nth(1)
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        analyzer.contains("NO DATA") && !analyzer.contains("PASS"),
        "{out}"
    );
    assert!(
        !out.split("analyzer (").next().unwrap().contains("NO DATA"),
        "{out}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn runs_sharing_an_audit_log_get_unique_task_ids_and_no_colours() {
    let dir = scratch("ids");
    let log = dir.join("audit.jsonl");
    for _ in 0..3 {
        let o = Command::new(env!("CARGO_BIN_EXE_chassis"))
            .args([
                "run",
                "config/hello-world.toml",
                "--task",
                "hello",
                "--audit",
            ])
            .arg(&log)
            .current_dir(root())
            .env("CHASSIS_LOG", "info")
            .env("CHASSIS_CACHE_DIR", root().join("target/tmp/cli-cache"))
            .env_remove("NO_COLOR")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        // stderr is a pipe: plain text.
        assert!(!o.stderr.contains(&0x1b), "{}", stderr(&o));
        assert!(
            stderr(&o).contains("[hello-world] greeting"),
            "{}",
            stderr(&o)
        );
    }
    let o = chassis(&[
        "audit",
        "show",
        log.to_str().unwrap(),
        "--operation",
        "task_start",
    ]);
    let ids: std::collections::BTreeSet<String> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["task_id"].to_string())
        .collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn files_are_checked_and_named_by_role_before_the_task_runs() {
    let dir = scratch("roles");
    let log = dir.join("audit.jsonl");
    let e = one_line_error(&chassis(&[
        "run",
        "config/hello-world.toml",
        "--task",
        "hello",
        "--audit",
        log.to_str().unwrap(),
        "--metrics",
        "/nonexistent/dir/metrics.prom",
    ]));
    assert!(
        e.contains("metrics file /nonexistent/dir/metrics.prom"),
        "{e}"
    );
    // Refused before the host started: nothing ran, nothing was recorded.
    assert!(!log.exists() || audit_text(&log).is_empty());
    let e = one_line_error(&chassis(&[
        "run",
        "config/hello-world.toml",
        "--task",
        "hello",
        "--audit",
        "/nonexistent/dir/audit.jsonl",
    ]));
    assert!(
        e.starts_with("error: audit log: /nonexistent/dir/audit.jsonl"),
        "{e}"
    );
    let e = one_line_error(&chassis(&[
        "run",
        "config/hello-world.toml",
        "--task",
        "hello",
        "--secrets",
        "/nonexistent/secrets.toml",
    ]));
    assert!(e.starts_with("error: secrets file: "), "{e}");
    let o = chassis(&["validate", "/dev/zero"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("/dev/zero: cannot read contract: is a character device"),
        "{}",
        stderr(&o)
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_yaml_contract_gets_a_hint_that_contracts_are_toml() {
    let dir = scratch("yaml");
    let path = dir.join("seed.yaml");
    std::fs::write(
        &path,
        "swarm_id: research-agent-001\nresource_limits:\n  max_memory_mb: 256\n",
    )
    .unwrap();
    let o = chassis(&["validate", path.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("contracts are TOML"), "{}", stderr(&o));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn audit_verify_prints_the_head_and_detects_a_cut_tail_against_it() {
    let dir = scratch("head");
    let log = dir.join("audit.jsonl");
    let log_arg = log.to_str().unwrap();
    for _ in 0..2 {
        let o = chassis(&[
            "run",
            "config/hello-world.toml",
            "--task",
            "hello",
            "--audit",
            log_arg,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let o = chassis(&["audit", "verify", log_arg]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let head = out
        .lines()
        .find_map(|l| l.strip_prefix("head: "))
        .unwrap_or_else(|| panic!("{out}"))
        .to_string();
    let records = audit_text(&log);
    let count = records.lines().count();
    assert!(head.starts_with(&format!("{count}:")), "{head}");
    let o = chassis(&["audit", "verify", log_arg, "--expect-head", &head]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("holds the expected head"),
        "{}",
        stdout(&o)
    );
    // Cut the last two records: the chain still verifies on its own...
    let kept: String = records
        .lines()
        .take(count - 2)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(audit_segment(&log), kept).unwrap();
    let o = chassis(&["audit", "verify", log_arg]);
    assert!(o.status.success(), "{}", stderr(&o));
    // ...but not against the head kept from before.
    let e = one_line_error(&chassis(&[
        "audit",
        "verify",
        log_arg,
        "--expect-head",
        &head,
    ]));
    assert!(e.contains("records were cut from its end"), "{e}");
    let o = chassis(&["audit", "verify", log_arg, "--expect-head", "3:zz"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("HASH must be 64 hex digits"),
        "{}",
        stderr(&o)
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn reputation_chains_from_run_to_run_and_into_the_report() {
    let dir = scratch("chain");
    let log = dir.join("audit.jsonl");
    let log_arg = log.to_str().unwrap();
    // A swarm with a slow task and failing tasks, so its score moves.
    let contract = contract_file(
        &dir,
        "mover",
        "misbehave",
        "[slo_targets]\nresponse_time_p95_ms = 0.001\n[reputation]\nmax_failure_rate_percent = 100\n",
    );
    let contract_arg = contract.to_str().unwrap();
    let mut scores = Vec::new();
    for (i, task) in ["burn", "panic", "burn", "panic", "burn"]
        .iter()
        .enumerate()
    {
        let o = chassis(&[
            "run",
            contract_arg,
            "--task",
            task,
            "--payload",
            r#"{"rounds": 1000}"#,
            "--audit",
            log_arg,
            "--json",
        ]);
        let out: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("run {i}: {e}: {}", stderr(&o)));
        let live = out["reputation"]["score"].as_f64().unwrap();
        // The report rebuilt from the log right after the run says the same.
        let o = chassis(&["report", "--json", "--audit", log_arg, contract_arg]);
        let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let replayed = report[0]["reputation"]["score"].as_f64().unwrap();
        assert!(
            (live - replayed).abs() < 1e-9,
            "run {i}: live {live}, report {replayed}"
        );
        scores.push(live);
    }
    // Each reputation change starts where the previous one ended.
    let o = chassis(&[
        "audit",
        "show",
        log_arg,
        "--operation",
        "reputation_changed",
    ]);
    let changes: Vec<(f64, f64)> = stdout(&o)
        .lines()
        .map(|l| {
            let r: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                r["params"]["from"].as_f64().unwrap(),
                r["params"]["to"].as_f64().unwrap(),
            )
        })
        .collect();
    assert!(changes.len() >= 2, "{changes:?} (scores {scores:?})");
    for pair in changes.windows(2) {
        assert_eq!(pair[0].1, pair[1].0, "{changes:?}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn run_repeat_runs_the_task_n_times_and_sums_up() {
    let o = chassis(&[
        "run",
        "config/hello-world.toml",
        "--task",
        "add",
        "--payload",
        r#"{"a": 1, "b": 2}"#,
        "--task-id",
        "rep",
        "--repeat",
        "5",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<&str> = std::str::from_utf8(&o.stdout).unwrap().lines().collect();
    assert_eq!(lines, [r#"{"sum":3}"#; 5]);
    assert!(
        stderr(&o).contains("5 tasks: 5 succeeded, 0 failed; p50 "),
        "{}",
        stderr(&o)
    );
    // Every task failing: each is named, and the command fails.
    let o = chassis(&[
        "run",
        "config/hello-world.toml",
        "--task",
        "add",
        "--payload",
        r#"{"a": "x"}"#,
        "--task-id",
        "bad",
        "--repeat",
        "3",
        "--json",
    ]);
    assert!(!o.status.success());
    let err = stderr(&o);
    for i in 1..=3 {
        assert!(
            err.contains(&format!("task bad-{i}: invalid payload")),
            "{err}"
        );
    }
    assert!(err.contains("error: 3 of 3 tasks failed"), "{err}");
    // With --json, each outcome is a line.
    let outcomes: Vec<serde_json::Value> = std::str::from_utf8(&o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(outcomes.len(), 3);
    assert_eq!(outcomes[2]["task_id"], "bad-3");
    assert_eq!(outcomes[2]["status"], "failed");
    let o = chassis(&[
        "run",
        "config/hello-world.toml",
        "--task",
        "add",
        "--repeat",
        "0",
    ]);
    assert!(!o.status.success());
}

/// `chassis run` keeps a swarm's objects in `--storage-dir` between runs;
/// a contract that grants storage runs only with a store.
#[test]
fn run_keeps_objects_between_runs_in_the_storage_dir() {
    let dir = std::env::temp_dir().join(format!("chassis-cli-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let count = || {
        chassis(&[
            "run",
            "config/notes.toml",
            "--task",
            "count",
            "--payload",
            r#"{"counter": "runs"}"#,
            "--storage-dir",
            dir.to_str().unwrap(),
        ])
    };
    for n in 1..=2 {
        let o = count();
        assert!(o.status.success(), "{}", stderr(&o));
        let out: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(out["value"], n, "{out}");
    }
    assert!(dir.join("notes").is_dir());
    std::fs::remove_dir_all(&dir).ok();
}
