//! Load refusals as data: every folder under `tests/cases/load/` is a case
//! (the convention is in `tests/cases/README.md`) that the real host must
//! refuse with the expected text, staying healthy afterwards. And every
//! error text that `docs/troubleshooting.md` quotes is held to one of these
//! cases, or listed here as not being a load refusal, with the reason.

use std::path::{Path, PathBuf};

use chassis::{Event, ServiceContract};
use chassis_tests::{TestHost, component, greet, guests, root};

/// One folder of `tests/cases/load/`.
struct Case {
    name: String,
    dir: PathBuf,
    /// What `load_bytes` gets; `None` loads `contract.toml` as a file.
    bytes: Option<Vec<u8>>,
    /// Lines the error's text must each contain.
    expected: Vec<String>,
    /// The `chassis::Error` variant, if the case names one.
    variant: Option<String>,
}

fn cases_dir() -> PathBuf {
    root().join("tests/cases/load")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every case, in name order; panics on a folder that breaks the convention.
fn cases() -> Vec<Case> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .expect("tests/cases/load")
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs.into_iter().map(|dir| case(&dir)).collect()
}

fn case(dir: &Path) -> Case {
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        dir.join("contract.toml").is_file(),
        "case {name}: no contract.toml"
    );
    let sources: Vec<Vec<u8>> = [
        ("component", Source::Guest),
        ("component.wat", Source::Wat),
        ("component.bin", Source::Raw),
    ]
    .into_iter()
    .filter(|(file, _)| dir.join(file).exists())
    .map(|(file, source)| source.bytes(&dir.join(file)))
    .collect();
    assert!(
        sources.len() <= 1,
        "case {name}: more than one of component, component.wat, component.bin"
    );
    let expected: Vec<String> = read(&dir.join("expected.txt"))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    assert!(!expected.is_empty(), "case {name}: expected.txt is empty");
    let variant = dir
        .join("variant")
        .exists()
        .then(|| read(&dir.join("variant")).trim().to_string());
    Case {
        name,
        dir: dir.to_path_buf(),
        bytes: sources.into_iter().next(),
        expected,
        variant,
    }
}

/// Where a case's component comes from.
enum Source {
    /// `component`: a guest's name.
    Guest,
    /// `component.wat`: WebAssembly text.
    Wat,
    /// `component.bin`: the bytes themselves.
    Raw,
}

impl Source {
    fn bytes(self, path: &Path) -> Vec<u8> {
        match self {
            Source::Guest => {
                let guest = read(path).trim().to_string();
                assert!(
                    guests::ALL.contains(&guest.as_str()),
                    "{}: {guest:?} is not a guest of chassis_tests::guests",
                    path.display()
                );
                component(&guest)
            }
            Source::Wat => {
                wat::parse_file(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            }
            Source::Raw => std::fs::read(path).unwrap(),
        }
    }
}

/// The name of an error's variant, from its `Debug` form: a load's
/// refusal by its `LoadError` variant (`NotWasm`), the others by their
/// `Error` variant (`Instantiate`).
fn variant_of(err: &chassis::Error) -> String {
    let text = format!("{err:?}");
    let inner = text
        .strip_prefix("Load(")
        .or_else(|| text.strip_prefix("Task("))
        .unwrap_or(&text);
    inner
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// Run one case on a host of its own; what went wrong, if anything.
async fn run(case: Case) -> Result<(), String> {
    let host = TestHost::new()
        .memory_sink()
        .example(guests::HELLO_WORLD)
        .build()
        .await;
    let contract_path = case.dir.join("contract.toml");
    let result = match &case.bytes {
        Some(bytes) => {
            let contract = ServiceContract::from_toml(
                &read(&contract_path),
                &contract_path.display().to_string(),
            )
            .map_err(|e| format!("contract.toml must parse when a component is given: {e}"))?;
            host.load_bytes(bytes, contract).await
        }
        None => host.load(&contract_path).await,
    };
    let err = match result {
        Ok(info) => return Err(format!("loaded, as {:?}", info.swarm_id)),
        Err(err) => err,
    };
    let text = err.to_string();
    let missing: Vec<&String> = case
        .expected
        .iter()
        .filter(|line| !text.contains(line.as_str()))
        .collect();
    if !missing.is_empty() {
        return Err(format!("the error\n    {text}\nlacks\n    {missing:?}"));
    }
    if let Some(variant) = &case.variant
        && variant_of(&err) != *variant
    {
        return Err(format!("expected {variant}, got {err:?}"));
    }
    let loaded: Vec<String> = host.list().into_iter().map(|s| s.swarm_id).collect();
    if loaded != ["hello-world"] {
        return Err(format!("after the refusal, loaded: {loaded:?}"));
    }
    let recorded = host
        .events()
        .iter()
        .any(|e| matches!(e, Event::LoadRejected { reason, .. } if *reason == text));
    if !recorded {
        return Err(format!(
            "no load_rejected event with the text: {:?}",
            host.events()
        ));
    }
    // Panics (and so fails the case) if the host no longer serves.
    greet(&host, "after").await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_refusals() {
    let cases = cases();
    assert!(cases.len() >= 10, "{} cases", cases.len());
    // At once: the load timeout case waits out the host's 10 s.
    let runs: Vec<(String, tokio::task::JoinHandle<Result<(), String>>)> = cases
        .into_iter()
        .map(|case| (case.name.clone(), tokio::spawn(run(case))))
        .collect();
    let mut failures = Vec::new();
    for (name, run) in runs {
        match run.await {
            Ok(Ok(())) => {}
            Ok(Err(why)) => failures.push(format!("{name}: {why}")),
            Err(panic) => failures.push(format!("{name}: panicked: {panic}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} load case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Texts `docs/troubleshooting.md` quotes that are not load refusals, so no
/// load case can hold them: a fragment of the quote, and why it is not a
/// case.
const NOT_LOAD_REFUSALS: &[(&str, &str)] = &[
    (
        "task not exported by swarm",
        "asking a loaded swarm for a task type it does not serve; \
         swarms::a_task_type_not_in_describe_is_not_exported checks the text",
    ),
    (
        "memory limit exceeded (max_memory_mb = 16)",
        "ends a running task; limits::a_memory_bomb_hits_the_memory_limit checks it",
    ),
    (
        "timed out after 1 s (task_timeout_seconds)",
        "ends a running task; limits::an_infinite_loop_times_out_within_the_deadline_and_slack \
         checks the text",
    ),
    (
        "refused: its circuit is open after",
        "refuses a task while the swarm's circuit is open; \
         throttle::the_circuit_opens_refuses_probes_and_closes checks the text",
    ),
    (
        "WARN credential get denied",
        "a log line of the host during a task, not an error; \
         credentials::secret_values_never_reach_the_log checks it is logged",
    ),
    (
        "WARN GET https://evil.example.net/x: denied",
        "a log line of the host during a task, not an error; the denial itself is \
         http_proxy::host_scheme_port_and_path_outside_the_allowlist_are_denied",
    ),
    (
        "invalid payload: count_lines",
        "the swarm's own answer to a task; \
         swarms::a_payload_of_the_wrong_shape_is_an_invalid_payload checks it",
    ),
];

/// Every line of the ```text blocks of a Markdown document, without a
/// leading `error: ` (how the CLI prints a refusal).
fn quoted_texts(markdown: &str) -> Vec<String> {
    let mut quotes = Vec::new();
    let mut inside = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            inside = !inside && line.trim() == "```text";
            continue;
        }
        if inside && !line.trim().is_empty() {
            let line = line.trim();
            quotes.push(line.strip_prefix("error: ").unwrap_or(line).to_string());
        }
    }
    quotes
}

/// Whether `prefix` is the origin of a message: nothing, a file name with
/// an optional position (`bad.toml:3:19: `), or a swarm (`swarm "x": `).
fn is_origin(prefix: &str) -> bool {
    if prefix.is_empty() {
        return true;
    }
    if let Some(id) = prefix
        .strip_prefix("swarm \"")
        .and_then(|p| p.strip_suffix("\": "))
    {
        return !id.contains('"');
    }
    prefix
        .strip_suffix(": ")
        .is_some_and(|file| !file.is_empty() && !file.contains(char::is_whitespace))
}

/// Whether `expected` (a line of a case's expected.txt) is the message of
/// `quote`: the quote is that line with at most an origin in front.
fn is_message_of(quote: &str, expected: &str) -> bool {
    quote.strip_suffix(expected).is_some_and(is_origin)
}

#[test]
fn the_origin_rule_takes_file_and_swarm_names_only() {
    assert!(is_message_of(
        "a.wasm: not a valid wasm file",
        "not a valid wasm file"
    ));
    assert!(is_message_of("bad.toml:3:19: x: y", "x: y"));
    assert!(is_message_of(
        "swarm \"a b\": loading did not",
        "loading did not"
    ));
    assert!(is_message_of("exact", "exact"));
    assert!(!is_message_of("bad.toml:3:19: x: y", "y"));
    assert!(!is_message_of("a.wasm: not a valid wasm file", "wasm file"));
    assert!(!is_message_of("a.wasm: x", "y"));
}

#[test]
fn every_error_the_troubleshooting_guide_quotes_is_a_case_or_excluded() {
    let doc = read(&root().join("docs/troubleshooting.md"));
    let quotes = quoted_texts(&doc);
    assert!(quotes.len() >= 10, "{quotes:?}");
    let expected: Vec<(String, String)> = cases()
        .into_iter()
        .flat_map(|c| c.expected.into_iter().map(move |l| (c.name.clone(), l)))
        .collect();
    let mut problems = Vec::new();
    for quote in &quotes {
        let case = expected.iter().find(|(_, l)| is_message_of(quote, l));
        let excluded = NOT_LOAD_REFUSALS.iter().find(|(f, _)| quote.contains(f));
        match (case, excluded) {
            (Some(_), None) | (None, Some(_)) => {}
            (Some((name, _)), Some((fragment, _))) => problems.push(format!(
                "{quote}\n    is case {name} and excluded as {fragment:?}: drop the exclusion"
            )),
            (None, None) => problems.push(format!(
                "{quote}\n    no case under tests/cases/load/ has it as a line of expected.txt"
            )),
        }
    }
    for (fragment, _) in NOT_LOAD_REFUSALS {
        if !quotes.iter().any(|q| q.contains(fragment)) {
            problems.push(format!(
                "the exclusion {fragment:?} matches no quote of docs/troubleshooting.md"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "docs/troubleshooting.md:\n{}",
        problems.join("\n")
    );
}
