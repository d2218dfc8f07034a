//! Object names: what a swarm may call an object, and which names are
//! attempts to leave its namespace.
//!
//! A name is 1 to [`crate::caps::MAX_OBJECT_NAME_BYTES`] bytes of ASCII letters, digits and
//! `-` `_` `.`, in `/`-separated segments, none empty, `.` or `..`. A name
//! that is not one is refused; one that looks like a path out of the
//! namespace — a leading `/`, `~` or `~/`, a `.` or `..` segment, a
//! backslash, a NUL, a drive or URL (`c:`, `file://`), a percent-encoded (or
//! double-encoded) dot, slash, backslash or NUL, or a Unicode look-alike of
//! a dot or a slash — is refused as an escape attempt, which costs the swarm reputation. Where objects are kept
//! never depends on the name's text: the stores key them by its hash.
//!
//! A leaf module: it depends on nothing else in the crate but the cap it
//! enforces, named in `caps`.

pub(crate) use crate::caps::MAX_OBJECT_NAME_BYTES as MAX_NAME_BYTES;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameProblem {
    /// Not an object name.
    Invalid(&'static str),
    /// A name that tries to leave the namespace.
    Escape(&'static str),
}

impl NameProblem {
    /// What is wrong, for a message.
    pub fn reason(&self) -> &'static str {
        match self {
            NameProblem::Invalid(r) | NameProblem::Escape(r) => r,
        }
    }

    /// Whether it is an attempt to leave the namespace.
    pub fn is_escape(&self) -> bool {
        matches!(self, NameProblem::Escape(_))
    }
}

/// Characters that look like a dot, a slash or a backslash.
const LOOKALIKES: &[char] = &[
    '\u{2024}', // one dot leader
    '\u{FE52}', // small full stop
    '\u{FF0E}', // fullwidth full stop
    '\u{2044}', // fraction slash
    '\u{2215}', // division slash
    '\u{29F8}', // big solidus
    '\u{FF0F}', // fullwidth solidus
    '\u{29F5}', // reverse solidus operator
    '\u{29F9}', // big reverse solidus
    '\u{FE68}', // small reverse solidus
    '\u{FF3C}', // fullwidth reverse solidus
];

/// Check an object name.
pub fn check(name: &str) -> Result<(), NameProblem> {
    if let Some(escape) = escape(name) {
        return Err(NameProblem::Escape(escape));
    }
    if name.is_empty() {
        return Err(NameProblem::Invalid("the name is empty"));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(NameProblem::Invalid("the name is over 256 bytes"));
    }
    segments(name)
}

/// Check a prefix for listing: empty, or the start of a name (it may end
/// with `/`).
pub fn check_prefix(prefix: &str) -> Result<(), NameProblem> {
    if prefix.is_empty() {
        return Ok(());
    }
    // The last segment may be the start of one: `.` begins `.config`.
    let whole = match prefix.rsplit_once('/') {
        _ if prefix.ends_with('/') => prefix,
        Some((complete, _)) => complete,
        None => "",
    };
    if let Some(escape) = escape_of(prefix, whole) {
        return Err(NameProblem::Escape(escape));
    }
    if prefix.len() > MAX_NAME_BYTES {
        return Err(NameProblem::Invalid("the prefix is over 256 bytes"));
    }
    segments(prefix.strip_suffix('/').unwrap_or(prefix))
}

fn segments(name: &str) -> Result<(), NameProblem> {
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'))
    {
        return Err(NameProblem::Invalid(
            "a name holds only ASCII letters, digits, `-`, `_`, `.` and `/`",
        ));
    }
    if name.split('/').any(str::is_empty) {
        return Err(NameProblem::Invalid(
            "a name has no empty segment (no `//`, no `/` at its end)",
        ));
    }
    Ok(())
}

/// Why `name` is an attempt to leave the namespace, if it is one.
fn escape(name: &str) -> Option<&'static str> {
    escape_of(name, name)
}

/// [`escape`], with `.` and `..` looked for in the complete segments of
/// `segments` only.
fn escape_of(name: &str, segments: &str) -> Option<&'static str> {
    if name.starts_with('/') {
        return Some("an absolute path");
    }
    if name == "~" || name.starts_with("~/") {
        return Some("a home directory");
    }
    if name.contains('\\') {
        return Some("a backslash");
    }
    if name.contains('\0') {
        return Some("a NUL byte");
    }
    if !segments.is_empty()
        && segments
            .split(['/', '\\'])
            .any(|segment| segment == ".." || segment == ".")
    {
        return Some("a `.` or `..` segment");
    }
    let lower = name.to_ascii_lowercase();
    if [
        "%2e", "%2f", "%5c", "%00", "%252e", "%252f", "%255c", "%2500",
    ]
    .iter()
    .any(|encoded| lower.contains(encoded))
    {
        return Some("a percent-encoded dot, slash, backslash or NUL");
    }
    let bytes = name.as_bytes();
    let drive = bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':';
    let scheme = name.split_once("://").is_some_and(|(scheme, _)| {
        !scheme.is_empty()
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    });
    if drive || scheme {
        return Some("a drive or URL (`c:`, `file://`)");
    }
    if name.contains(LOOKALIKES) {
        return Some("a look-alike of a dot, a slash or a backslash");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_pass() {
        for ok in [
            "a",
            "counter",
            "docs/2026/report.json",
            "a.b.c",
            "...a",
            "a..b",
            "x-y_z.0",
            &"n".repeat(MAX_NAME_BYTES),
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
    }

    /// Every spelling of a way out: refused as an escape attempt.
    #[test]
    fn every_way_out_is_an_escape_attempt() {
        for bad in [
            "..",
            ".",
            "../x",
            "a/../b",
            "a/..",
            "./a",
            "a/./b",
            "/etc/passwd",
            "//server/share",
            "..\\x",
            "a\\b",
            "\\\\server\\share",
            "a\0b",
            "%2e%2e/x",
            "%2E%2E%2Fx",
            "a%2fb",
            "%252e%252e/x",
            "..%5cx",
            "x%00.txt",
            "~/x",
            "~",
            "c:x",
            "C:\\x",
            "file:///etc/passwd",
            "%255c..",
            "a%2500",
            "\u{FF0E}\u{FF0E}/x",
            "a\u{2215}b",
            "\u{2024}\u{2024}\u{2044}x",
            "a\u{FF3C}b",
            "../other-swarm/secret",
        ] {
            let problem = check(bad).unwrap_err();
            assert!(problem.is_escape(), "{bad:?}: {problem:?}");
        }
    }

    #[test]
    fn other_bad_names_are_invalid() {
        for bad in [
            "",
            "a//b",
            "a/",
            "sp ace",
            "tab\t",
            "new\nline",
            "ünïcode",
            "a*b",
            "q?",
            "<b>",
            "user:42",
            "docs/a:b",
            "~draft",
            "~root",
            &"n".repeat(MAX_NAME_BYTES + 1),
        ] {
            let problem = check(bad).unwrap_err();
            assert!(!problem.is_escape(), "{bad:?}: {problem:?}");
        }
    }

    #[test]
    fn prefixes_may_be_empty_or_end_with_a_slash() {
        for ok in [
            "", "docs/", "docs", "docs/20", ".", "..", "docs/.", "docs/..", ".con",
        ] {
            assert_eq!(check_prefix(ok), Ok(()), "{ok}");
        }
        assert!(check_prefix("../").unwrap_err().is_escape());
        assert!(check_prefix("../x").unwrap_err().is_escape());
        assert!(check_prefix("a/../b").unwrap_err().is_escape());
        assert!(check_prefix("/").unwrap_err().is_escape());
        assert!(!check_prefix("a//").unwrap_err().is_escape());
    }
}
