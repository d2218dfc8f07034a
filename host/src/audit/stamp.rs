//! Record timestamps: RFC 3339 in UTC with six fraction digits, written
//! on the writer's hot path without allocating, and parsed back.

use std::time::{SystemTime, UNIX_EPOCH};

/// How the writer stamps a record: RFC 3339 in UTC with six fraction
/// digits, e.g. `2026-11-21T12:00:00.000123Z` (always 27 bytes).
const TS_FORMAT: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
);

/// RFC 3339 UTC with microseconds, e.g. `2026-11-21T12:00:00.000123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let mut out = String::with_capacity(27);
    push_rfc3339(&mut out, t);
    out
}

/// Append [`rfc3339`] of `t` to `out`. A time before 1970 is written as
/// the epoch, one after 9999 as the last microsecond of 9999.
pub(super) fn push_rfc3339(out: &mut String, t: SystemTime) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let micros = i128::from(d.as_secs()) * 1_000_000 + i128::from(d.subsec_micros());
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(micros * 1000).unwrap_or_else(|_| {
        time::PrimitiveDateTime::new(time::Date::MAX, time::Time::MAX).assume_utc()
    });
    // 27 bytes for years 0 to 9999, the only ones `time` represents here.
    let mut buf = [0u8; 32];
    let mut rest = &mut buf[..];
    let written = at
        .format_into(&mut rest, TS_FORMAT)
        .expect("a UTC time formats into 32 bytes");
    out.push_str(std::str::from_utf8(&buf[..written]).expect("the format is ASCII"));
}

/// Parse an RFC 3339 time (`YYYY-MM-DDTHH:MM:SS[.fraction]` then `Z` or an
/// offset `±HH:MM`) into microseconds since the epoch (a finer fraction is
/// cut). The date and time must exist: month 13, hour 25, February 30 or an
/// offset of `+24:00` are refused (`None`).
pub(crate) fn parse_rfc3339(s: &str) -> Option<i64> {
    // `time` takes any byte between date and time; RFC 3339 takes `T`.
    if !matches!(s.as_bytes().get(10), Some(b'T' | b't')) {
        return None;
    }
    let at = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(at.unix_timestamp_nanos().div_euclid(1000)).ok()
}
