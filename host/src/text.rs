//! Guest text made safe to show: every string a guest produces (log lines,
//! error messages, stderr, names) passes through here before the host logs,
//! stores or prints it.
//!
//! [`escape`] writes control characters (C0, DEL, C1), the Unicode line and
//! paragraph separators (U+2028, U+2029) and the bidirectional controls
//! (U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069) as visible escapes
//! (`\n`, `\r`, `\u{1b}`, `\u{202e}`), and cuts the text at a byte bound. So
//! one piece of guest text is one line on a terminal or in a log, cannot move
//! the cursor, erase a line or reorder what is shown around it.
//!
//! A leaf module: it depends on nothing else in the crate.

/// Whether `c` is shown escaped.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}'
                | '\u{2029}'
                | '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// `text` with every unsafe character escaped, cut to about `max_bytes`
/// (the cut is marked with the original length).
pub fn escape(text: &str, max_bytes: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_bytes) + 16);
    for c in text.chars() {
        if out.len() >= max_bytes {
            out.push_str(&format!("…[truncated, {} bytes]", text.len()));
            return out;
        }
        if is_unsafe(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Serialized JSON with the characters JSON leaves raw but a terminal acts
/// on (U+2028, U+2029, the bidirectional controls) written as `\uXXXX`
/// escapes: the same JSON value, safe to print. JSON already escapes the
/// other control characters inside strings.
#[cfg(any(feature = "cli", test))]
pub(crate) fn json_for_terminal(json: &str) -> std::borrow::Cow<'_, str> {
    if !json.chars().any(is_unsafe) {
        return std::borrow::Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        // Newlines and tabs between JSON tokens are layout, not content:
        // inside strings JSON has escaped them already.
        if is_unsafe(c) && !matches!(c, '\n' | '\t' | '\r') {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_separators_and_bidi_are_escaped() {
        let forged =
            "boom\r\x1b[2K\x1b[32mOK other-swarm\u{2028}x\u{2029}\u{202e}evil\u{2066}\u{85}\u{7f}";
        let s = escape(forged, 1024);
        assert!(!s.chars().any(is_unsafe), "{s:?}");
        assert_eq!(
            s,
            "boom\\r\\u{1b}[2K\\u{1b}[32mOK other-swarm\\u{2028}x\\u{2029}\\u{202e}evil\\u{2066}\\u{85}\\u{7f}"
        );
        // Ordinary text, including non-ASCII letters, is kept.
        assert_eq!(escape("héllo ✓ 😀 tab-free", 64), "héllo ✓ 😀 tab-free");
    }

    #[test]
    fn long_text_is_cut_and_marked() {
        let s = escape(&"é".repeat(10_000), 100);
        assert!(s.len() < 140, "{}", s.len());
        assert!(s.ends_with("…[truncated, 20000 bytes]"), "{s}");
        assert_eq!(escape("short", 10), "short");
    }

    #[test]
    fn json_for_terminal_keeps_the_value() {
        let value = serde_json::json!({"a": "x\u{2028}y\u{202e}z\n", "b": [1, 2]});
        let text = serde_json::to_string_pretty(&value).unwrap();
        assert!(text.contains('\u{2028}'), "serde_json leaves it raw");
        let safe = json_for_terminal(&text);
        assert!(!safe.contains('\u{2028}') && !safe.contains('\u{202e}'));
        assert!(safe.contains("\\u2028") && safe.contains("\\u202e"));
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back, value);
    }
}
