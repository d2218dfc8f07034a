//! The record encoding: canonical JSON, the hash, and how an event
//! becomes one line of the log (the writer's hot path); timestamps are
//! `stamp.rs`'s.

use std::fmt::Write as _;
use std::time::SystemTime;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::events::Event;

use super::COMPONENT;
pub(crate) use super::stamp::parse_rfc3339;
use super::stamp::push_rfc3339;
pub use super::stamp::rfc3339;

/// JSON with object keys sorted at every level, no whitespace.
pub(super) fn canonical(value: &Value) -> String {
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

/// The record's `operation` for an event.
pub(super) fn operation(event: &Event) -> &'static str {
    match event {
        Event::ModuleLoaded { .. } => "module_loaded",
        Event::ModuleReplaced { .. } => "module_replaced",
        Event::TaskAbandoned { .. } => "task_abandoned",
        Event::LoadRejected { .. } => "load_rejected",
        Event::ModuleUnloaded { .. } => "module_unloaded",
        Event::Deployment { .. } => "deployment",
        Event::DeploymentRefused { .. } => "deployment_refused",
        Event::TaskRouted { .. } => "task_routed",
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
        Event::ConcurrencyChanged { .. } => "concurrency_changed",
        Event::CircuitChanged { .. } => "circuit_changed",
        Event::SecretRedacted { .. } => "secret_redacted",
    }
}

/// The record's `task_id` for an event (`null` for events about a swarm).
pub(super) fn task_id(event: &Event) -> Option<&str> {
    match event {
        Event::TaskAbandoned { task_id, .. }
        | Event::TaskRouted { task_id, .. }
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
        | Event::ConcurrencyChanged { task_id, .. }
        | Event::CircuitChanged { task_id, .. }
        | Event::SecretRedacted { task_id, .. } => Some(task_id),
        Event::ModuleLoaded { .. }
        | Event::ModuleReplaced { .. }
        | Event::LoadRejected { .. }
        | Event::ModuleUnloaded { .. }
        | Event::Deployment { .. }
        | Event::DeploymentRefused { .. }
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

/// The longest record line the writer writes, newline included, and so
/// the longest the readers accept: 1 MiB. A record would be longer only
/// through text no cap bounds before it reaches the log (a load refusal
/// naming thousands of imports, say); its longest strings are then cut
/// (ending in `…`) and its longest lists shortened until it fits.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// What the `hash` field adds to a record's canonical encoding:
/// `,"hash":"` and 64 hex digits and `"}` and the newline, for the `}` it
/// replaces.
const HASH_FIELD_BYTES: usize = 9 + 64 + 3 - 1;

/// Strings at most this long are never cut to fit a record (swarm ids,
/// names of kinds and limits).
const MIN_CUT_TEXT: usize = 64;

/// Number, chain and hash one record, append it to `text` as a line, and
/// return its hash.
///
/// The line is the record's canonical encoding itself (keys sorted), with
/// `hash` added last, so it is built and hashed in one pass. It is at most
/// [`MAX_RECORD_BYTES`] long.
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
    let body = Body {
        seq,
        head,
        ts,
        operation: operation(event),
    };
    body.write(
        text,
        Params::Event(event),
        event.swarm_id(),
        task_id(event),
        worker,
    );
    if text.len() - start + HASH_FIELD_BYTES > MAX_RECORD_BYTES {
        body.write_cut(text, start, event, worker);
    }
    finish_record(text, start)
}

/// Number, chain and hash one record the log writes of its own (a
/// checkpoint's), with `params` as given, append it to `text` as a line,
/// and return its hash. A record that would be longer than
/// [`MAX_RECORD_BYTES`] is written with `params` saying so instead.
#[allow(clippy::too_many_arguments)]
pub(super) fn append_value_record(
    text: &mut String,
    seq: u64,
    head: &str,
    ts: SystemTime,
    operation: &'static str,
    swarm_id: &str,
    params: &Value,
    worker: Option<&str>,
) -> String {
    let start = text.len();
    let body = Body {
        seq,
        head,
        ts,
        operation,
    };
    body.write(text, Params::Value(params), swarm_id, None, worker);
    if text.len() - start + HASH_FIELD_BYTES > MAX_RECORD_BYTES {
        text.truncate(start);
        let too_long = serde_json::json!({"error": "longer than a record can be"});
        body.write(text, Params::Value(&too_long), swarm_id, None, worker);
    }
    finish_record(text, start)
}

/// Add the hash of the record written from `start` to `text` (its
/// canonical encoding, without `hash`), end the line, and return the hash.
fn finish_record(text: &mut String, start: usize) -> String {
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
    debug_assert!(text.len() - start <= MAX_RECORD_BYTES);
    hash
}

/// A record's `params`: from the event, or a value already made.
enum Params<'a> {
    Event(&'a Event),
    Value(&'a Value),
}

/// The fields of a record that are the host's own.
struct Body<'a> {
    seq: u64,
    head: &'a str,
    ts: SystemTime,
    operation: &'static str,
}

impl Body<'_> {
    /// Append the record's canonical encoding, without `hash`.
    fn write(
        &self,
        text: &mut String,
        params: Params<'_>,
        swarm_id: &str,
        task_id: Option<&str>,
        worker: Option<&str>,
    ) {
        // The component, the operation names and the previous hash (hex) are
        // the host's own text and need no escaping.
        text.push_str("{\"component\":\"");
        text.push_str(COMPONENT);
        text.push_str("\",\"operation\":\"");
        text.push_str(self.operation);
        text.push_str("\",\"params\":");
        match params {
            Params::Event(event) => write_params(text, event),
            Params::Value(value) => write_canonical(text, value),
        }
        text.push_str(",\"prev_hash\":\"");
        text.push_str(self.head);
        text.push_str("\",\"seq\":");
        push_u64(text, self.seq);
        text.push_str(",\"swarm_id\":");
        push_json_str(text, swarm_id);
        text.push_str(",\"task_id\":");
        match task_id {
            Some(id) => push_json_str(text, id),
            None => text.push_str("null"),
        }
        text.push_str(",\"ts\":\"");
        push_rfc3339(text, self.ts);
        text.push('"');
        if let Some(worker) = worker {
            text.push_str(",\"worker\":");
            push_json_str(text, worker);
        }
        text.push('}');
    }

    /// Write the record again from `start`, its strings cut and its lists
    /// shortened, less each time, until it fits in [`MAX_RECORD_BYTES`].
    fn write_cut(&self, text: &mut String, start: usize, event: &Event, worker: Option<&str>) {
        let full = params(event);
        let mut max_text = MAX_RECORD_BYTES / 4;
        let mut max_items = usize::MAX;
        loop {
            let mut params = full.clone();
            cut_value(&mut params, max_text, max_items);
            let swarm_id = cut_text(event.swarm_id(), max_text);
            let task_id = task_id(event).map(|t| cut_text(t, max_text));
            let worker = worker.map(|w| cut_text(w, max_text));
            text.truncate(start);
            self.write(
                text,
                Params::Value(&params),
                &swarm_id,
                task_id.as_deref(),
                worker.as_deref(),
            );
            // With every string short and every list empty, a record is a
            // few hundred bytes: this ends.
            if text.len() - start + HASH_FIELD_BYTES <= MAX_RECORD_BYTES || max_items == 0 {
                return;
            }
            if max_text > MIN_CUT_TEXT {
                max_text = (max_text / 2).max(MIN_CUT_TEXT);
            } else {
                max_items = max_items.min(longest_list(&full)) / 2;
            }
        }
    }
}

/// `text`, or its first `max` bytes (at a character boundary) and `…`.
fn cut_text(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end]).into()
}

/// The number of entries of the longest list in `value`.
fn longest_list(value: &Value) -> usize {
    match value {
        Value::Array(items) => items.iter().map(longest_list).fold(items.len(), usize::max),
        Value::Object(fields) => fields.values().map(longest_list).max().unwrap_or(0),
        _ => 0,
    }
}

/// Cut every string in `value` longer than `max_text` bytes and keep at
/// most `max_items` entries of every list.
fn cut_value(value: &mut Value, max_text: usize, max_items: usize) {
    match value {
        Value::String(s) if s.len() > max_text => {
            *s = cut_text(s, max_text).into_owned();
        }
        Value::Array(items) => {
            items.truncate(max_items);
            for item in items {
                cut_value(item, max_text, max_items);
            }
        }
        Value::Object(fields) => {
            for (_, field) in fields.iter_mut() {
                cut_value(field, max_text, max_items);
            }
        }
        _ => {}
    }
}

pub(super) const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    /// The formatter this module had before `time` did it, kept as the
    /// reference: what existing logs hold.
    fn hand_written(t: SystemTime) -> String {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = d.as_secs() as i64;
        let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60,
            d.subsec_micros()
        )
    }

    /// Times are written byte for byte as before, and read back to the
    /// microsecond.
    #[test]
    fn timestamps_are_written_as_before_and_round_trip() {
        let mut micros: u64 = 0;
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut times = vec![0, 1, 999_999, 951_782_400_000_000, 253_402_300_799_999_999];
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            // Up to the year 9999.
            micros = micros.wrapping_add(seed) % 253_402_300_800_000_000;
            times.push(micros);
        }
        for micros in times {
            let t = UNIX_EPOCH + Duration::from_micros(micros) + Duration::from_nanos(999);
            let s = rfc3339(t);
            assert_eq!(s, hand_written(t), "{micros}");
            assert_eq!(s.len(), 27);
            assert_eq!(parse_rfc3339(&s), Some(micros as i64), "{s}");
            assert_eq!(
                rfc3339(UNIX_EPOCH + Duration::from_micros(micros)),
                s,
                "{micros}"
            );
        }
        let good = "2026-11-18T11:06:40.123456Z";
        let micros = parse_rfc3339(good).unwrap();
        assert_eq!(micros, 1_795_000_000_123_456);
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_micros(micros as u64)),
            good
        );
        // Before 1970: the epoch.
        assert_eq!(
            rfc3339(UNIX_EPOCH - Duration::from_secs(1)),
            "1970-01-01T00:00:00.000000Z"
        );
    }

    /// Dates and times that do not exist, and malformed offsets, are
    /// refused; RFC 3339's other forms are read.
    #[test]
    fn impossible_timestamps_are_refused() {
        for bad in [
            "2026-13-01T00:00:00Z",
            "2026-00-01T00:00:00Z",
            "2026-01-01T25:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T23:60:00Z",
            "2026-02-30T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-01-01T00:00:00+24:00",
            "2026-01-01T00:00:00+02:60",
            "2026-01-01T00:00:00+0200",
            "2026-01-01T00:00:00+2:00",
            "2026-01-01T00:00:00 02:00",
            "2026-01-01T00:00:00",
            "2026-01-01 00:00:00Z",
            "2026-01-01T00:00:00.Z",
            "2026-01-01T00:00:00ZZ",
            "26-01-01T00:00:00Z",
            "yesterday",
            "",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        for (good, micros) in [
            ("2000-02-29T00:00:00Z", 951_782_400_000_000),
            ("2000-02-29T02:00:00+02:00", 951_782_400_000_000),
            ("2000-02-28T22:30:00.5-01:30", 951_782_400_500_000),
            ("2000-02-29t00:00:00.0000009z", 951_782_400_000_000),
            ("1969-12-31T23:59:59.999999Z", -1),
        ] {
            assert_eq!(parse_rfc3339(good), Some(micros), "{good}");
        }
    }

    /// A record whose text no cap bounded is cut to fit
    /// [`MAX_RECORD_BYTES`], and still reads back as its event; one that
    /// fits is written whole.
    #[test]
    fn a_record_is_never_longer_than_the_readers_accept() {
        let huge = "\u{1}é".repeat(MAX_RECORD_BYTES);
        for event in [
            Event::LoadRejected {
                swarm_id: "s".into(),
                reason: huge.clone(),
            },
            Event::LoadRejected {
                swarm_id: huge.clone(),
                reason: "r".into(),
            },
            Event::TaskFailed {
                swarm_id: "s".into(),
                task_id: "t".into(),
                kind: "trap".into(),
                error: huge.clone(),
                guest_error: None,
                wall_ms: 1.0,
            },
            Event::ModuleLoaded {
                swarm_id: "s".into(),
                origin: "o".into(),
                digest: "d".into(),
                task_types: vec!["t".repeat(60); 100_000],
                settings: None,
            },
        ] {
            let mut text = String::new();
            let hash = append_record(
                &mut text,
                1,
                super::super::GENESIS,
                SystemTime::now(),
                &event,
                Some(&huge),
            );
            assert!(text.len() <= MAX_RECORD_BYTES, "{}", text.len());
            assert!(
                text.len() > MAX_RECORD_BYTES / 8,
                "cut more than needed: {} bytes for {}",
                text.len(),
                operation(&event)
            );
            let value: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(record_hash(&value), hash);
            let back = super::super::Record::from_json(&value).unwrap();
            assert_eq!(operation(&back.event), operation(&event));
        }
        let event = Event::LoadRejected {
            swarm_id: "s".into(),
            reason: "r".repeat(MAX_RECORD_BYTES / 2),
        };
        let mut text = String::new();
        append_record(
            &mut text,
            1,
            super::super::GENESIS,
            SystemTime::now(),
            &event,
            None,
        );
        let value: Value = serde_json::from_str(&text).unwrap();
        let back = super::super::Record::from_json(&value).unwrap();
        assert_eq!(back.event, event);
    }
}
