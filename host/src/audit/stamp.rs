//! Record timestamps: RFC 3339 in UTC with six fraction digits, written
//! on the writer's hot path without allocating, and parsed back.

use std::time::{SystemTime, UNIX_EPOCH};

/// The last second written as itself: 9999-12-31T23:59:59Z.
const LAST_SECOND: u64 = 253_402_300_799;

/// RFC 3339 UTC with microseconds, e.g. `2026-11-21T12:00:00.000123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let mut out = String::with_capacity(27);
    push_rfc3339(&mut out, t);
    out
}

/// Append [`rfc3339`] of `t` to `out` (always 27 bytes). A time before
/// 1970 is written as the epoch, one after 9999 as the last microsecond of
/// 9999. The date is computed directly (days to civil date), with no
/// formatting machinery: this runs for every record the writer writes.
pub(super) fn push_rfc3339(out: &mut String, t: SystemTime) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (secs, micros) = if d.as_secs() > LAST_SECOND {
        (LAST_SECOND, 999_999)
    } else {
        (d.as_secs(), d.subsec_micros())
    };
    let (year, month, day) = civil_from_days(secs / 86_400);
    let second_of_day = secs % 86_400;
    let mut buf = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |at: usize, width: usize, mut value: u64| {
        for i in (at..at + width).rev() {
            buf[i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, second_of_day / 3600);
    put(14, 2, second_of_day / 60 % 60);
    put(17, 2, second_of_day % 60);
    put(20, 6, u64::from(micros));
    out.push_str(std::str::from_utf8(&buf).expect("ASCII digits"));
}

/// The proleptic Gregorian date `days` after 1970-01-01, as (year, month,
/// day): Howard Hinnant's `civil_from_days`, for days on or after the epoch.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Days since 0000-03-01, so that a leap day ends each 4-year cycle.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// What `time` writes for `t` (the reference the direct formatter must
    /// match, byte for byte).
    fn by_time(t: SystemTime) -> String {
        let format = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
        );
        let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        let nanos = i128::from(d.as_secs()) * 1_000_000_000 + i128::from(d.subsec_micros()) * 1000;
        time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
            .unwrap_or_else(|_| {
                time::PrimitiveDateTime::new(time::Date::MAX, time::Time::MAX).assume_utc()
            })
            .format(format)
            .unwrap()
    }

    #[test]
    fn stamps_match_the_time_crate_across_the_calendar() {
        let mut seconds = vec![
            0,
            59,
            86_399,
            86_400,
            951_782_400,   // 2000-02-29
            951_868_800,   // 2000-03-01
            4_107_542_400, // 2100-03-01 (2100 is not a leap year)
            LAST_SECOND,
        ];
        // Every day's first and last second for 1970..2401 (leap years and
        // centuries), then a pseudo-random spread up to 9999.
        for day in 0..(431 * 366) {
            seconds.push(day * 86_400);
            seconds.push(day * 86_400 + 86_399);
        }
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            seconds.push(x % (LAST_SECOND + 1));
        }
        for (i, s) in seconds.into_iter().enumerate() {
            let t = UNIX_EPOCH + Duration::new(s, (i as u32 * 7_919) % 1_000_000_000);
            let mut ours = String::new();
            push_rfc3339(&mut ours, t);
            assert_eq!(ours, by_time(t), "{s} s");
            assert_eq!(ours.len(), 27);
            assert_eq!(
                parse_rfc3339(&ours),
                Some(
                    s as i64 * 1_000_000
                        + i64::from(t.duration_since(UNIX_EPOCH).unwrap().subsec_micros())
                )
            );
        }
    }

    #[test]
    fn times_outside_the_range_are_clamped() {
        let before = UNIX_EPOCH - Duration::from_secs(10);
        assert_eq!(rfc3339(before), "1970-01-01T00:00:00.000000Z");
        let after = UNIX_EPOCH + Duration::from_secs(LAST_SECOND + 1);
        assert_eq!(rfc3339(after), "9999-12-31T23:59:59.999999Z");
        assert_eq!(rfc3339(after), by_time(after));
    }
}
