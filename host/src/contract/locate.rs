//! Turn parse and validation failures into errors that point at a line.
//!
//! A parse error's field is the path `serde_path_to_error` tracked, its line
//! toml's span. For a validation failure, which names a field, and for a
//! field given twice, the text is parsed a second time (only on the error
//! path) into toml's spanned document tree, to find the span of a path.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::ContractError;
use super::validate::Violation;

/// One step of a field path: a table key or an array index.
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

fn steps(path: &str) -> Vec<Step<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(i) => part.split_at(i),
            None => (part, ""),
        };
        out.push(Step::Key(key));
        while let Some(stripped) = rest.strip_prefix('[') {
            let end = stripped.find(']').unwrap_or(stripped.len());
            if let Ok(i) = stripped[..end].parse() {
                out.push(Step::Index(i));
            }
            rest = stripped.get(end + 1..).unwrap_or("");
        }
    }
    out
}

/// Span of the value at `path`, or of the closest enclosing value that exists.
fn span_of(root: &Spanned<DeTable<'_>>, path: &str) -> Option<Range<usize>> {
    let mut best: Option<Range<usize>> = None;
    let mut table = root.get_ref();
    let mut current: Option<&Spanned<DeValue<'_>>> = None;
    for step in steps(path) {
        let next = match (step, current.map(Spanned::get_ref)) {
            (Step::Key(k), None) => table.get(k),
            (Step::Key(k), Some(DeValue::Table(t))) => {
                table = t;
                table.get(k)
            }
            (Step::Index(i), Some(DeValue::Array(a))) => a.get(i),
            _ => None,
        };
        match next {
            Some(v) => {
                best = Some(v.span());
                current = Some(v);
            }
            None => break,
        }
    }
    best
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The name inside the first pair of backticks of a serde message.
fn backticked(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

/// Field names the contract accepts under a second name (the first seed
/// document's), as (name, alias): to find the later of two keys naming one
/// field, which serde's message does not say. A test checks it against the
/// names serde's derive itself reads (`FIELDS`), both ways.
pub(super) const ALIASES: &[(&str, &str)] = &[
    ("slo_targets", "slos"),
    ("task_timeout_seconds", "max_execution_time_seconds"),
    ("response_time_p95_ms", "target_latency_ms"),
    ("availability_percent", "target_availability_percent"),
    ("throughput_rps", "target_throughput_rps"),
];

/// For a field given twice (under its name and its alias): the dotted path
/// and span of the later of the two keys.
fn second_of(root: &Spanned<DeTable<'_>>, name: &str) -> Option<(String, usize)> {
    let names: Vec<&str> = ALIASES
        .iter()
        .filter(|(n, a)| *n == name || *a == name)
        .flat_map(|(n, a)| [*n, *a])
        .chain([name])
        .collect();
    fn walk(table: &DeTable<'_>, prefix: &str, names: &[&str], found: &mut Vec<(String, usize)>) {
        for (key, value) in table.iter() {
            let path = if prefix.is_empty() {
                key.get_ref().to_string()
            } else {
                format!("{prefix}.{}", key.get_ref())
            };
            if names.contains(&key.get_ref().as_ref()) {
                found.push((path.clone(), key.span().start));
            }
            if let DeValue::Table(t) = value.get_ref() {
                walk(t, &path, names, found);
            }
        }
    }
    let mut found = Vec::new();
    walk(root.get_ref(), "", &names, &mut found);
    found.into_iter().max_by_key(|(_, start)| *start)
}

/// A contract that did not parse: `e` says what and where, `path` (from
/// `serde_path_to_error`; `None` for a syntax error) which field.
pub(super) fn parse_error(
    text: &str,
    origin: &str,
    e: &toml::de::Error,
    path: Option<&serde_path_to_error::Path>,
) -> ContractError {
    let message = e.message().trim().to_string();
    // The path of the value, or of the table holding the error; the
    // document itself is `.`.
    let at = path.map(ToString::to_string).filter(|p| p != ".");
    if message.starts_with("duplicate field")
        && let Some(name) = backticked(&message)
        && let Some((field, start)) = DeTable::parse(text)
            .ok()
            .and_then(|root| second_of(&root, name))
    {
        let (line, column) = line_col(text, start);
        return ContractError::Invalid {
            origin: origin.to_string(),
            line,
            column,
            field,
            message: format!(
                "{message}: it is given twice, under its name and its alias; keep one"
            ),
        };
    }
    let span = e.span().unwrap_or(0..0);
    let (line, column) = line_col(text, span.start);
    let field = if message.starts_with("missing field") {
        // The path is the table the field is missing from.
        let name = backticked(&message).unwrap_or("?");
        match at {
            Some(table) => format!("{table}.{name}"),
            None => name.to_string(),
        }
    } else {
        at.unwrap_or_else(|| "(document)".to_string())
    };
    ContractError::Invalid {
        origin: origin.to_string(),
        line,
        column,
        field,
        message,
    }
}

pub(super) fn validation_error(text: &str, origin: &str, v: Violation) -> ContractError {
    let span = DeTable::parse(text)
        .ok()
        .and_then(|root| span_of(&root, &v.field))
        .unwrap_or(0..0);
    let (line, column) = line_col(text, span.start);
    ContractError::Invalid {
        origin: origin.to_string(),
        line,
        column,
        field: v.field,
        message: v.message,
    }
}
