//! `analyzer`: source-code analysis tasks.
//!
//! - `analyze_code` `{"language", "source"}`: line, blank-line, comment-line
//!   and code-line counts for Python, Rust, JavaScript, Go and TypeScript;
//! - `count_lines` `{"source"}`: line counts without language rules;
//! - `parse_json` `{"text"}`: whether `text` is valid JSON, and where it breaks;
//! - `check_security` `{"source"}`: SQL-injection and hard-coded-secret
//!   patterns, each finding with its 1-based line.
//!
//! Lines are counted as `str::lines` does: a final newline does not start
//! another line. The analysis functions are plain Rust in `analyzer-core`,
//! so they can be tested and benchmarked natively.

use analyzer_core as analysis;
use chassis_sdk::{Request, Swarm, TaskError, Value, export_swarm, to_value};
use serde::Deserialize;

/// The swarm.
pub struct Analyzer;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnalyzeCode {
    language: String,
    source: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Source {
    source: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Text {
    text: String,
}

impl Swarm for Analyzer {
    const TASK_TYPES: &'static [&'static str] = &[
        "analyze_code",
        "count_lines",
        "parse_json",
        "check_security",
    ];

    fn execute(request: &Request) -> Result<Value, TaskError> {
        match request.task_type() {
            "analyze_code" => {
                let p: AnalyzeCode = request.payload()?;
                let language = analysis::Language::parse(&p.language).ok_or_else(|| {
                    TaskError::invalid_payload(format!(
                        "unsupported language {:?}; supported: {}",
                        p.language,
                        analysis::Language::NAMES.join(", ")
                    ))
                })?;
                to_value(&analysis::analyze_code(language, &p.source))
            }
            "count_lines" => {
                let p: Source = request.payload()?;
                to_value(&analysis::count_lines(&p.source))
            }
            "parse_json" => {
                let p: Text = request.payload()?;
                to_value(&analysis::parse_json(&p.text))
            }
            "check_security" => {
                let p: Source = request.payload()?;
                to_value(&analysis::check_security(&p.source))
            }
            other => Err(TaskError::UnknownTaskType(other.to_string())),
        }
    }
}

export_swarm!(Analyzer);
