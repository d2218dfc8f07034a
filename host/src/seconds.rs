//! Spans of time in configuration files, given as a number of seconds
//! (`2.5`) and held as a [`Duration`]: a field is read with
//! `#[serde(deserialize_with = "crate::seconds::positive")]`, and one set
//! in code is checked with [`check`]. A leaf module.

use std::time::Duration;

/// The longest span a setting may name: a year, so that any clock can
/// add it.
pub(crate) const MAX: Duration = Duration::from_secs(365 * 24 * 3600);

/// A positive number of seconds, at most [`MAX`].
pub(crate) fn positive<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let v = <f64 as serde::Deserialize>::deserialize(d)?;
    if v.is_finite() && v > 0.0 && v <= MAX.as_secs_f64() {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(serde::de::Error::custom(format!(
            "a positive number of seconds, at most a year, not {v}"
        )))
    }
}

/// `name`, a span set in code, checked as [`positive`] checks one read.
#[cfg(feature = "serve")]
pub(crate) fn check(name: &str, d: Duration) -> Result<(), String> {
    if d.is_zero() || d > MAX {
        return Err(format!(
            "{name} must be a positive number of seconds, at most a year, not {}",
            d.as_secs_f64()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Span {
        #[serde(deserialize_with = "positive")]
        wait_seconds: Duration,
    }

    /// What a file may say, and what it may not: each refusal names the
    /// value, and its key is in toml's message.
    #[test]
    fn seconds_are_positive_finite_and_at_most_a_year() {
        let read = |v: &str| toml::from_str::<Span>(&format!("wait_seconds = {v}"));
        assert_eq!(
            read("2.5").unwrap().wait_seconds,
            Duration::from_millis(2500)
        );
        assert_eq!(read("31536000").unwrap().wait_seconds, MAX);
        for bad in ["0", "-1", "nan", "inf", "31536001"] {
            let e = read(bad).unwrap_err().to_string();
            assert!(
                e.contains("wait_seconds") && e.contains("at most a year"),
                "{bad}: {e}"
            );
        }
    }
}
