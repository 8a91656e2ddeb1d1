//! Timestamps: UTC, millisecond precision, shown as RFC 3339 with a `Z`.

use std::fmt;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};

/// A point in time in UTC with millisecond precision. Stored as milliseconds
/// since the Unix epoch, the form every database sorts correctly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        Self(Utc::now().timestamp_millis())
    }

    /// From milliseconds since the Unix epoch.
    pub fn from_millis(millis: i64) -> Self {
        Self(millis)
    }

    /// Milliseconds since the Unix epoch.
    pub fn as_millis(&self) -> i64 {
        self.0
    }

    /// Parses an RFC 3339 / ISO 8601 date-time (any offset), or a plain
    /// `YYYY-MM-DD` date taken as midnight UTC.
    pub fn parse(text: &str) -> Option<Self> {
        if let Ok(parsed) = DateTime::parse_from_rfc3339(text) {
            return Some(Self(parsed.timestamp_millis()));
        }
        let date = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
        let midnight = date.and_hms_opt(0, 0, 0)?;
        Some(Self(Utc.from_utc_datetime(&midnight).timestamp_millis()))
    }

    /// Whole seconds from `self` to `later`, never negative.
    pub fn seconds_until(&self, later: Timestamp) -> i64 {
        (later.0 - self.0).max(0) / 1000
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match Utc.timestamp_millis_opt(self.0).single() {
            Some(moment) => formatter.write_str(&moment.to_rfc3339_opts(SecondsFormat::Millis, true)),
            None => formatter.write_str("1970-01-01T00:00:00.000Z"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_z_and_round_trips() {
        let moment = Timestamp::from_millis(1_700_000_000_123);
        let text = moment.to_string();
        assert_eq!(text, "2023-11-14T22:13:20.123Z");
        assert_eq!(Timestamp::parse(&text), Some(moment));
    }

    #[test]
    fn parses_offsets_and_plain_dates() {
        assert_eq!(
            Timestamp::parse("2023-11-14T23:13:20.123+01:00"),
            Some(Timestamp::from_millis(1_700_000_000_123))
        );
        assert_eq!(Timestamp::parse("1970-01-02"), Some(Timestamp::from_millis(86_400_000)));
        assert_eq!(Timestamp::parse("yesterday"), None);
        assert_eq!(Timestamp::parse("2023-13-01"), None);
    }
}
