//! The analyzer swarm's logic, independent of the component glue: the
//! same functions run inside the `analyzer` component and natively (tests,
//! benchmarks).

use serde::Serialize;

/// A language `analyze_code` understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// `#` line comments.
    Python,
    /// `//` line and `/* */` block comments.
    Rust,
    /// `//` line and `/* */` block comments.
    JavaScript,
    /// `//` line and `/* */` block comments.
    Go,
    /// `//` line and `/* */` block comments.
    TypeScript,
}

impl Language {
    /// Names accepted by [`Language::parse`].
    pub const NAMES: &'static [&'static str] =
        &["python", "rust", "javascript", "go", "typescript"];

    /// Parse a language name (case-insensitive; `py`, `rs`, `js`, `ts` and `golang` also work).
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "python" | "py" => Language::Python,
            "rust" | "rs" => Language::Rust,
            "javascript" | "js" => Language::JavaScript,
            "go" | "golang" => Language::Go,
            "typescript" | "ts" => Language::TypeScript,
            _ => return None,
        })
    }
}

/// Result of `analyze_code`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CodeStats {
    /// The language the rules came from.
    pub language: Language,
    /// All lines.
    pub line_count: usize,
    /// Lines with only whitespace.
    pub blank_lines: usize,
    /// Lines that hold only a comment (or are inside a block comment).
    pub comment_lines: usize,
    /// The other lines.
    pub code_lines: usize,
}

/// Count lines, blank lines and comment lines of `source` in `language`.
pub fn analyze_code(language: Language, source: &str) -> CodeStats {
    let mut stats = CodeStats {
        language,
        line_count: 0,
        blank_lines: 0,
        comment_lines: 0,
        code_lines: 0,
    };
    let mut in_block = false;
    for line in source.lines() {
        stats.line_count += 1;
        let t = line.trim();
        if in_block {
            stats.comment_lines += 1;
            if let Some(end) = t.find("*/") {
                in_block = false;
                let rest = t[end + 2..].trim();
                if !rest.is_empty() && !rest.starts_with("//") {
                    // Code follows the end of the block comment on this line.
                    stats.comment_lines -= 1;
                    stats.code_lines += 1;
                    in_block = opens_block(rest);
                }
            }
            continue;
        }
        if t.is_empty() {
            stats.blank_lines += 1;
            continue;
        }
        let is_comment = match language {
            Language::Python => t.starts_with('#'),
            _ => {
                if t.starts_with("//") {
                    true
                } else if let Some(rest) = t.strip_prefix("/*") {
                    match rest.find("*/") {
                        None => {
                            in_block = true;
                            true
                        }
                        Some(end) => {
                            let after = rest[end + 2..].trim();
                            after.is_empty() || after.starts_with("//")
                        }
                    }
                } else {
                    in_block = opens_block(t);
                    false
                }
            }
        };
        if is_comment {
            stats.comment_lines += 1;
        } else {
            stats.code_lines += 1;
        }
    }
    stats
}

/// Whether a code line leaves a `/*` comment open at its end.
fn opens_block(code: &str) -> bool {
    match code.rfind("/*") {
        Some(start) => !code[start + 2..].contains("*/") && !code[..start].contains("//"),
        None => false,
    }
}

/// Result of `count_lines`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineCount {
    /// All lines.
    pub line_count: usize,
    /// Lines with only whitespace.
    pub blank_lines: usize,
    /// Lines with something on them.
    pub non_blank_lines: usize,
    /// Length of the longest line, in characters.
    pub longest_line: usize,
}

/// Count the lines of `source`.
pub fn count_lines(source: &str) -> LineCount {
    let mut c = LineCount {
        line_count: 0,
        blank_lines: 0,
        non_blank_lines: 0,
        longest_line: 0,
    };
    for line in source.lines() {
        c.line_count += 1;
        if line.trim().is_empty() {
            c.blank_lines += 1;
        } else {
            c.non_blank_lines += 1;
        }
        c.longest_line = c.longest_line.max(line.chars().count());
    }
    c
}

/// Result of `parse_json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JsonCheck {
    /// Whether the text is one valid JSON document.
    pub valid: bool,
    /// The top-level kind (`object`, `array`, `string`, `number`, `bool`, `null`) when valid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    /// Where and why parsing failed, when invalid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<JsonError>,
}

/// A JSON syntax error and its position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JsonError {
    /// The parser's message, without the position.
    pub message: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

/// Check whether `text` is valid JSON.
pub fn parse_json(text: &str) -> JsonCheck {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) => JsonCheck {
            valid: true,
            kind: Some(match v {
                serde_json::Value::Object(_) => "object",
                serde_json::Value::Array(_) => "array",
                serde_json::Value::String(_) => "string",
                serde_json::Value::Number(_) => "number",
                serde_json::Value::Bool(_) => "bool",
                serde_json::Value::Null => "null",
            }),
            error: None,
        },
        Err(e) => {
            let full = e.to_string();
            let message = match full.rfind(" at line ") {
                Some(i) => full[..i].to_string(),
                None => full,
            };
            JsonCheck {
                valid: false,
                kind: None,
                error: Some(JsonError {
                    message,
                    line: e.line(),
                    column: e.column(),
                }),
            }
        }
    }
}

/// One security finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// `sql_injection` or `hardcoded_secret`.
    pub kind: &'static str,
    /// 1-based line.
    pub line: usize,
    /// What matched.
    pub message: String,
    /// The line's text, trimmed.
    pub snippet: String,
}

/// Result of `check_security`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecurityReport {
    /// Number of findings.
    pub issue_count: usize,
    /// Each finding, in line order.
    pub findings: Vec<Finding>,
}

/// Look for the seed's patterns, line by line (case-insensitive):
/// a line with both `SELECT` and `WHERE` but no `?` or `$` placeholder is a
/// possible SQL injection; a line mentioning `password` or `secret` is a
/// possible hard-coded secret.
pub fn check_security(source: &str) -> SecurityReport {
    let mut findings = Vec::new();
    for (i, line) in source.lines().enumerate() {
        let lower = line.to_ascii_lowercase();
        let snippet: String = line.trim().chars().take(120).collect();
        if lower.contains("select")
            && lower.contains("where")
            && !line.contains('?')
            && !line.contains('$')
        {
            findings.push(Finding {
                kind: "sql_injection",
                line: i + 1,
                message: "SELECT ... WHERE without a ? or $ placeholder: possible SQL injection"
                    .to_string(),
                snippet: snippet.clone(),
            });
        }
        for word in ["password", "secret"] {
            if lower.contains(word) {
                findings.push(Finding {
                    kind: "hardcoded_secret",
                    line: i + 1,
                    message: format!("mentions {word:?}: possible hard-coded secret"),
                    snippet: snippet.clone(),
                });
                break;
            }
        }
    }
    SecurityReport {
        issue_count: findings.len(),
        findings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_counts() {
        let s = analyze_code(
            Language::Python,
            "# c\n\nx = 1\n  # c2\nprint(x)  # trailing\n",
        );
        assert_eq!(
            (s.line_count, s.blank_lines, s.comment_lines, s.code_lines),
            (5, 1, 2, 2)
        );
    }

    #[test]
    fn c_like_block_comments() {
        let src = "/* a\n b\n*/\nfn main() {} /* open\nstill\n*/ let x = 1;\n// x\n";
        let s = analyze_code(Language::Rust, src);
        assert_eq!(s.line_count, 7);
        assert_eq!(s.comment_lines, 5, "{s:?}");
        assert_eq!(s.code_lines, 2, "{s:?}");
    }

    #[test]
    fn json_error_position() {
        let r = parse_json("{\n  \"a\": 1,\n  \"b\": }\n");
        assert!(!r.valid);
        let e = r.error.unwrap();
        assert_eq!(e.line, 3);
        assert!(!e.message.contains(" at line "));
    }

    #[test]
    fn security_lines() {
        let r = check_security(
            "ok\nq = \"SELECT * FROM t WHERE id=\" + id\nq2 = \"SELECT * FROM t WHERE id = ?\"\npassword = \"x\"\n",
        );
        let lines: Vec<_> = r.findings.iter().map(|f| (f.kind, f.line)).collect();
        assert_eq!(lines, vec![("sql_injection", 2), ("hardcoded_secret", 4)]);
    }
}
