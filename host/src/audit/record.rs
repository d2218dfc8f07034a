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
    let mut plain = 0;
    for (i, b) in text.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&text[plain..i]);
        if escape.is_empty() {
            out.push_str(&format!("\\u{b:04x}"));
        } else {
            out.push_str(escape);
        }
        plain = i + 1;
    }
    out.push_str(&text[plain..]);
    out.push('"');
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

/// The operation name, swarm, task and parameters of an event.
pub(super) fn describe(event: &Event) -> (&'static str, Option<String>, Value) {
    let mut v = serde_json::to_value(event).expect("events serialize");
    let map = v.as_object_mut().expect("events are objects");
    map.remove("event");
    map.remove("swarm_id");
    let task_id = map
        .remove("task_id")
        .and_then(|t| t.as_str().map(str::to_string));
    let op = match event {
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
        Event::HttpProxy { allowed: true, .. } => "http_proxy",
        Event::HttpProxy { allowed: false, .. } => "http_proxy_denied",
        Event::SloViolation { .. } => "slo_violation",
        Event::ReputationChanged { .. } => "reputation_changed",
        Event::Quarantined { .. } => "quarantined",
        Event::Released { .. } => "released",
        Event::SecretRedacted { .. } => "secret_redacted",
    };
    (op, task_id, v)
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
    let (operation, task_id, params) = describe(event);
    let start = text.len();
    text.push_str("{\"component\":");
    push_json_str(text, COMPONENT);
    text.push_str(",\"operation\":");
    push_json_str(text, operation);
    text.push_str(",\"params\":");
    write_canonical(text, &params);
    text.push_str(",\"prev_hash\":");
    push_json_str(text, head);
    // Writing to a String cannot fail.
    let _ = write!(text, ",\"seq\":{seq},\"swarm_id\":");
    push_json_str(text, event.swarm_id());
    text.push_str(",\"task_id\":");
    match &task_id {
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
