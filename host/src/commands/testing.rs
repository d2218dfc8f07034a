//! `chassis test [DIR]`: the swarm project in DIR built and loaded under
//! its contract (as `chassis build`), then each case of its `tests.toml`
//! run through the host: a task type and payload, and the output expected
//! or the kind of error, optionally within a time or memory bound. A
//! failing case prints what differs; any failure exits with status 1.

use super::project::Project;
use super::*;

/// `chassis test`'s arguments.
#[derive(clap::Args)]
pub struct TestCommand {
    /// The swarm project (made by `chassis new`).
    #[arg(default_value = ".")]
    dir: PathBuf,
}

/// `tests.toml`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Cases {
    #[serde(rename = "case", default)]
    cases: Vec<Case>,
}

/// One case.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    /// What it checks (default: the task type).
    name: Option<String>,
    /// The task type.
    task: String,
    /// The payload (default `{}`).
    #[serde(default = "empty_object")]
    payload: serde_json::Value,
    /// The output expected, exactly.
    output: Option<serde_json::Value>,
    /// The kind of error expected instead: the swarm's own
    /// (`invalid_payload`, `unknown_task_type`, `failed`, or `guest_error`
    /// for any of them) or the host's (`timeout`, `memory`, ...).
    error: Option<String>,
    /// The task must finish within this many milliseconds (wall time).
    max_ms: Option<f64>,
    /// The task's memory must stay under this many MiB.
    max_memory_mib: Option<f64>,
}

fn empty_object() -> serde_json::Value {
    serde_json::json!({})
}

impl TestCommand {
    /// Build, load, run every case.
    pub async fn execute(self, global: &Global) -> Result<()> {
        let project = Project::open(&self.dir)?;
        let file = project.dir.join("tests.toml");
        let text = crate::files::read_bounded_text(&file, 4 * 1024 * 1024)
            .with_context(|| format!("{}: the project's test cases", file.display()))?;
        let Cases { cases } =
            toml::from_str(&text).with_context(|| format!("{}", file.display()))?;
        if cases.is_empty() {
            bail!("{}: no [[case]]", file.display());
        }
        let built = project.build(global, false, false).await?;
        let swarm = &built.contract.swarm_id;
        let mut out = std::io::stdout().lock();
        let mut failed = 0;
        for case in &cases {
            let name = case.name.clone().unwrap_or_else(|| case.task.clone());
            let request = TaskRequest::new(case.task.clone(), case.payload.clone());
            let result = built.chassis.execute_task(swarm, request).await;
            match judge(case, &result) {
                Ok(()) => writeln!(out, "ok    {name}")?,
                Err(why) => {
                    failed += 1;
                    writeln!(out, "FAIL  {name}")?;
                    for line in why.lines() {
                        writeln!(out, "      {line}")?;
                    }
                }
            }
        }
        writeln!(
            out,
            "{} cases: {} passed, {failed} failed",
            cases.len(),
            cases.len() - failed
        )?;
        if failed > 0 {
            bail!("{failed} of {} cases failed", cases.len());
        }
        Ok(())
    }
}

/// Whether `result` is what `case` expects; what differs if not.
fn judge(
    case: &Case,
    result: &std::result::Result<crate::TaskOutcome, crate::Error>,
) -> std::result::Result<(), String> {
    let (outcome, error_kind) = match result {
        Ok(o) => (
            Some(o),
            o.error.as_ref().map(|e| e.kind().as_str().to_string()),
        ),
        Err(e) => (None, Some(e.kind().as_str().to_string())),
    };
    let described = || match result {
        Ok(o) => match &o.error {
            Some(e) => format!("the swarm's error: {e}"),
            None => format!("the output {}", o.output),
        },
        Err(e) => format!("the host's error: {e}"),
    };
    match (&case.error, &error_kind) {
        (Some(want), Some(got))
            if want == got
                || (want == "guest_error" && outcome.is_some_and(|o| o.error.is_some())) => {}
        (Some(want), _) => {
            return Err(format!(
                "expected an error of kind {want}, got {}",
                described()
            ));
        }
        (None, Some(_)) => return Err(format!("expected success, got {}", described())),
        (None, None) => {}
    }
    if let (Some(want), Some(o)) = (&case.output, outcome)
        && o.error.is_none()
        && &o.output != want
    {
        return Err(diff(want, &o.output));
    }
    if let Some(o) = outcome {
        if let Some(max) = case.max_ms
            && o.usage.wall_ms > max
        {
            return Err(format!(
                "took {:.1} ms, over max_ms = {max}",
                o.usage.wall_ms
            ));
        }
        if let Some(max) = case.max_memory_mib
            && o.usage.peak_memory_bytes as f64 > max * 1024.0 * 1024.0
        {
            return Err(format!(
                "used {:.1} MiB, over max_memory_mib = {max}",
                o.usage.peak_memory_bytes as f64 / (1024.0 * 1024.0)
            ));
        }
    }
    Ok(())
}

/// The expected and the actual output, pretty-printed, line by line: `-`
/// what was expected and is not there, `+` what is there instead.
fn diff(want: &serde_json::Value, got: &serde_json::Value) -> String {
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let (want, got) = (pretty(want), pretty(got));
    let mut text = String::from("output differs (- expected, + got):\n");
    for change in similar::TextDiff::from_lines(&want, &got).iter_all_changes() {
        let sign = match change.tag() {
            similar::ChangeTag::Delete => "- ",
            similar::ChangeTag::Insert => "+ ",
            similar::ChangeTag::Equal => "  ",
        };
        text.push_str(sign);
        text.push_str(&crate::text::escape(
            change.value().trim_end_matches('\n'),
            4096,
        ));
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(toml_text: &str) -> Case {
        toml::from_str(&format!("task = \"t\"\n{toml_text}")).unwrap()
    }

    fn answered(output: serde_json::Value, error: Option<crate::GuestError>) -> crate::TaskOutcome {
        crate::TaskOutcome {
            swarm_id: "s".into(),
            version: "1.0.0".into(),
            task_id: "id".into(),
            task_type: "t".into(),
            status: if error.is_some() {
                crate::TaskStatus::Failed
            } else {
                crate::TaskStatus::Success
            },
            output,
            error,
            execution_time: std::time::Duration::from_millis(5),
            usage: crate::TaskUsage {
                wall_ms: 5.0,
                peak_memory_bytes: 3 * 1024 * 1024,
                ..Default::default()
            },
        }
    }

    /// Each expectation a case can state passes on what it states and
    /// fails, saying why, on anything else.
    #[test]
    fn cases_judge_output_errors_and_bounds() {
        let ok = Ok(answered(serde_json::json!({"a": 1}), None));
        assert!(judge(&case("output = { a = 1 }"), &ok).is_ok());
        assert!(judge(&case(""), &ok).is_ok());
        let why = judge(&case("output = { a = 2 }"), &ok).unwrap_err();
        assert!(
            why.contains("-   \"a\": 2") && why.contains("+   \"a\": 1"),
            "{why}"
        );
        let why = judge(&case("error = \"invalid_payload\""), &ok).unwrap_err();
        assert!(
            why.contains("expected an error of kind invalid_payload"),
            "{why}"
        );
        assert!(judge(&case("max_ms = 10"), &ok).is_ok());
        let why = judge(&case("max_ms = 1"), &ok).unwrap_err();
        assert!(why.contains("over max_ms = 1"), "{why}");
        assert!(judge(&case("max_memory_mib = 4"), &ok).is_ok());
        let why = judge(&case("max_memory_mib = 2"), &ok).unwrap_err();
        assert!(why.contains("over max_memory_mib = 2"), "{why}");

        let refused = Ok(answered(
            serde_json::Value::Null,
            Some(crate::GuestError::InvalidPayload("no".into())),
        ));
        assert!(judge(&case("error = \"invalid_payload\""), &refused).is_ok());
        assert!(judge(&case("error = \"guest_error\""), &refused).is_ok());
        let why = judge(&case("error = \"failed\""), &refused).unwrap_err();
        assert!(why.contains("the swarm's error"), "{why}");
        let why = judge(&case("output = {}"), &refused).unwrap_err();
        assert!(why.contains("expected success"), "{why}");

        let timeout: std::result::Result<crate::TaskOutcome, crate::Error> =
            Err(crate::TaskError::Timeout {
                swarm_id: "s".into(),
                task_id: "id".into(),
                seconds: 1.0,
            }
            .into());
        assert!(judge(&case("error = \"timeout\""), &timeout).is_ok());
        let why = judge(&case("error = \"guest_error\""), &timeout).unwrap_err();
        assert!(why.contains("the host's error"), "{why}");
    }

    #[test]
    fn a_diff_marks_what_was_expected_and_what_came() {
        let text = diff(
            &serde_json::json!({"greeting": "Hello, Ada!"}),
            &serde_json::json!({"greeting": "Hello, Bob!"}),
        );
        assert!(
            text.contains("- ") && text.contains("\"Hello, Ada!\""),
            "{text}"
        );
        assert!(
            text.contains("+ ") && text.contains("\"Hello, Bob!\""),
            "{text}"
        );
    }
}
