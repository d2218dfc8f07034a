//! The record encoding: canonical JSON, the hash, timestamps, and how an
//! event becomes one line of the log (the writer's hot path).

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::events::Event;

use super::COMPONENT;

/// JSON with object keys sorted at every level, no whitespace.
pub fn canonical(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(&mut out, value);
    out
}

/// Append the canonical encoding of `value` to `out`.
pub(super) fn write_canonical(out: &mut String, value: &Value) {
    match value {
        Value::Object(m) => {
            let mut entries: Vec<(&String, &Value)> = m.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_str(out, k);
                out.push(':');
                write_canonical(out, v);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(out, v);
            }
            out.push(']');
        }
        Value::String(text) => push_json_str(out, text),
        other => out.push_str(&other.to_string()),
    }
}

/// Append `text` as a JSON string, escaped as serde_json escapes it.
pub(super) fn push_json_str(out: &mut String, text: &str) {
    out.push('"');
    let bytes = text.as_bytes();
    let mut plain = 0;
    while let Some(at) = first_escape(&bytes[plain..]).map(|i| plain + i) {
        out.push_str(&text[plain..at]);
        let b = bytes[at];
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x08 => out.push_str("\\b"),
            0x0c => out.push_str("\\f"),
            // Writing to a String cannot fail.
            _ => {
                let _ = write!(out, "\\u{b:04x}");
            }
        }
        plain = at + 1;
    }
    out.push_str(&text[plain..]);
    out.push('"');
}

/// Whether JSON needs `b` escaped in a string.
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Where the first byte to escape is. Most text has none: it is checked
/// 32 bytes at a time, without a branch per byte.
fn first_escape(bytes: &[u8]) -> Option<usize> {
    let mut start = 0;
    for chunk in bytes.chunks(32) {
        if chunk.iter().fold(false, |any, &b| any | needs_escape(b)) {
            return chunk
                .iter()
                .position(|&b| needs_escape(b))
                .map(|i| start + i);
        }
        start += chunk.len();
    }
    None
}

/// SHA-256 (hex) of a record's canonical encoding without its `hash`.
pub fn record_hash(record: &Value) -> String {
    let mut body = record.clone();
    if let Value::Object(m) = &mut body {
        m.remove("hash");
    }
    hex::encode(Sha256::digest(canonical(&body).as_bytes()))
}

/// RFC 3339 UTC with microseconds, e.g. `2026-11-21T12:00:00.000123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let mut out = String::with_capacity(27);
    push_rfc3339(&mut out, t);
    out
}

/// Append [`rfc3339`] of `t` to `out`.
pub(super) fn push_rfc3339(out: &mut String, t: SystemTime) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Years outside 0..=9999 do not occur for times after 1970 and before 10000.
    let y = year.clamp(0, 9999);
    push_digits(out, y, 4, '-');
    push_digits(out, month, 2, '-');
    push_digits(out, day, 2, 'T');
    push_digits(out, rem / 3600, 2, ':');
    push_digits(out, rem % 3600 / 60, 2, ':');
    push_digits(out, rem % 60, 2, '.');
    push_digits(out, i64::from(d.subsec_micros()), 6, 'Z');
}

/// Append `n` in decimal.
fn push_u64(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[at..] {
        out.push(char::from(d));
    }
}

/// Append the last `width` decimal digits of `n` (zero-padded), then `then`.
pub(super) fn push_digits(out: &mut String, n: i64, width: u32, then: char) {
    let mut div = 10_i64.pow(width - 1);
    while div > 0 {
        out.push(char::from(b'0' + (n / div % 10) as u8));
        div /= 10;
    }
    out.push(then);
}

/// Parse `YYYY-MM-DDTHH:MM:SS[.fraction]Z` into microseconds since the epoch.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    let micros: i64 = format!("{frac:0<6}")[..6].parse().ok()?;
    // Days from civil (inverse of the above).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1_000_000) + micros)
}

/// The record's `operation` for an event.
pub(super) fn operation(event: &Event) -> &'static str {
    match event {
        Event::ModuleLoaded { .. } => "module_loaded",
        Event::ModuleReplaced { .. } => "module_replaced",
        Event::TaskAbandoned { .. } => "task_abandoned",
        Event::LoadRejected { .. } => "load_rejected",
        Event::ModuleUnloaded { .. } => "module_unloaded",
        Event::TaskStart { .. } => "task_start",
        Event::TaskComplete { .. } => "task_complete",
        Event::TaskFailed { .. } => "task_failed",
        Event::LimitExceeded { .. } => "resource_limit_exceeded",
        Event::RateLimited { .. } => "rate_limited",
        Event::CredentialAccess { allowed: true, .. } => "credential_access_allowed",
        Event::CredentialAccess { allowed: false, .. } => "credential_access_denied",
        Event::CredentialRepeated { .. } => "credential_repeated",
        Event::HttpProxy { allowed: true, .. } => "http_proxy",
        Event::HttpProxy { allowed: false, .. } => "http_proxy_denied",
        Event::StorageAccess { allowed: true, .. } => "storage",
        Event::StorageAccess { allowed: false, .. } => "storage_denied",
        Event::SloViolation { .. } => "slo_violation",
        Event::ReputationChanged { .. } => "reputation_changed",
        Event::Quarantined { .. } => "quarantined",
        Event::Released { .. } => "released",
        Event::SecretRedacted { .. } => "secret_redacted",
    }
}

/// The record's `task_id` for an event (`null` for events about a swarm).
pub(super) fn task_id(event: &Event) -> Option<&str> {
    match event {
        Event::TaskAbandoned { task_id, .. }
        | Event::TaskStart { task_id, .. }
        | Event::TaskComplete { task_id, .. }
        | Event::TaskFailed { task_id, .. }
        | Event::LimitExceeded { task_id, .. }
        | Event::RateLimited { task_id, .. }
        | Event::CredentialAccess { task_id, .. }
        | Event::CredentialRepeated { task_id, .. }
        | Event::HttpProxy { task_id, .. }
        | Event::StorageAccess { task_id, .. }
        | Event::SloViolation { task_id, .. }
        | Event::ReputationChanged { task_id, .. }
        | Event::Quarantined { task_id, .. }
        | Event::SecretRedacted { task_id, .. } => Some(task_id),
        Event::ModuleLoaded { .. }
        | Event::ModuleReplaced { .. }
        | Event::LoadRejected { .. }
        | Event::ModuleUnloaded { .. }
        | Event::Released { .. } => None,
    }
}

/// The record's `params` for an event, as a JSON value: the event's fields
/// but `event`, `swarm_id` and `task_id`.
pub(super) fn params(event: &Event) -> Value {
    let mut v = serde_json::to_value(event).expect("events serialize");
    let map = v.as_object_mut().expect("events are objects");
    map.remove("event");
    map.remove("swarm_id");
    map.remove("task_id");
    v
}

/// Append the canonical encoding of the event's `params` to `out`.
///
/// The events every task raises (start, end, import decisions) are written
/// field by field, keys in sorted order; the rest go through
/// [`params`] and [`write_canonical`]. `tests::hot_events_encode_as_the_generic_path_does`
/// checks that both give the same text.
pub(super) fn write_params(out: &mut String, event: &Event) {
    let mut o = Obj::new(out);
    match event {
        Event::TaskStart { task_type, .. } => o.str("task_type", task_type),
        Event::TaskComplete { wall_ms, .. } => o.f64("wall_ms", *wall_ms),
        Event::TaskFailed {
            kind,
            error,
            guest_error,
            wall_ms,
            ..
        } => {
            o.str("error", error);
            if let Some(g) = guest_error {
                o.str("guest_error", g);
            }
            o.str("kind", kind);
            o.f64("wall_ms", *wall_ms);
        }
        Event::RateLimited { import, .. } => o.str("import", import),
        Event::CredentialAccess {
            key,
            operation,
            allowed,
            reason,
            security_violation,
            ..
        } => {
            o.bool("allowed", *allowed);
            o.str("key", key);
            o.str("operation", operation);
            if let Some(r) = reason {
                o.str("reason", r);
            }
            o.bool("security_violation", *security_violation);
        }
        Event::HttpProxy {
            allowed,
            method,
            url,
            status,
            bytes_out,
            bytes_in,
            elapsed_ms,
            reason,
            security_violation,
            ..
        } => {
            o.bool("allowed", *allowed);
            o.u64("bytes_in", *bytes_in);
            o.u64("bytes_out", *bytes_out);
            o.f64("elapsed_ms", *elapsed_ms);
            o.str("method", method);
            if let Some(r) = reason {
                o.str("reason", r);
            }
            o.bool("security_violation", *security_violation);
            if let Some(s) = status {
                o.u64("status", u64::from(*s));
            }
            o.str("url", url);
        }
        other => {
            write_canonical(o.out, &params(other));
            return;
        }
    }
    o.end();
}

/// A JSON object written key by key (the caller keeps the keys sorted).
struct Obj<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> Obj<'a> {
    fn new(out: &'a mut String) -> Self {
        Self { out, first: true }
    }

    fn key(&mut self, key: &str) {
        self.out.push(if self.first { '{' } else { ',' });
        self.first = false;
        push_json_str(self.out, key);
        self.out.push(':');
    }

    fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        push_json_str(self.out, value);
    }

    fn bool(&mut self, key: &str, value: bool) {
        self.key(key);
        self.out.push_str(if value { "true" } else { "false" });
    }

    fn u64(&mut self, key: &str, value: u64) {
        self.key(key);
        push_u64(self.out, value);
    }

    /// As serde_json writes an `f64` (which `verify` parses and writes
    /// again): `null` when not finite.
    fn f64(&mut self, key: &str, value: f64) {
        self.key(key);
        match serde_json::Number::from_f64(value) {
            // Writing to a String cannot fail.
            Some(n) => {
                let _ = write!(self.out, "{n}");
            }
            None => self.out.push_str("null"),
        }
    }

    fn end(self) {
        if self.first {
            self.out.push('{');
        }
        self.out.push('}');
    }
}

/// Number, chain and hash one record, append it to `text` as a line, and
/// return its hash.
///
/// The line is the record's canonical encoding itself (keys sorted), with
/// `hash` added last, so it is built and hashed in one pass.
pub(super) fn append_record(
    text: &mut String,
    seq: u64,
    head: &str,
    ts: SystemTime,
    event: &Event,
    worker: Option<&str>,
) -> String {
    debug_assert!(head.bytes().all(|b| b.is_ascii_hexdigit()), "{head:?}");
    let start = text.len();
    // The component, the operation names and the previous hash (hex) are
    // the host's own text and need no escaping.
    text.push_str("{\"component\":\"");
    text.push_str(COMPONENT);
    text.push_str("\",\"operation\":\"");
    text.push_str(operation(event));
    text.push_str("\",\"params\":");
    write_params(text, event);
    text.push_str(",\"prev_hash\":\"");
    text.push_str(head);
    text.push_str("\",\"seq\":");
    push_u64(text, seq);
    text.push_str(",\"swarm_id\":");
    push_json_str(text, event.swarm_id());
    text.push_str(",\"task_id\":");
    match task_id(event) {
        Some(id) => push_json_str(text, id),
        None => text.push_str("null"),
    }
    text.push_str(",\"ts\":\"");
    push_rfc3339(text, ts);
    text.push('"');
    if let Some(worker) = worker {
        text.push_str(",\"worker\":");
        push_json_str(text, worker);
    }
    text.push('}');
    let digest = Sha256::digest(&text.as_bytes()[start..]);
    text.pop();
    text.push_str(",\"hash\":\"");
    let hash_at = text.len();
    for b in digest {
        text.push(HEX[usize::from(b >> 4)] as char);
        text.push(HEX[usize::from(b & 0xf)] as char);
    }
    let hash = text[hash_at..].to_string();
    text.push_str("\"}\n");
    hash
}

pub(super) const HEX: &[u8; 16] = b"0123456789abcdef";
