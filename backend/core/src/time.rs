//! Time as the engine sees it: microseconds since the Unix epoch, intervals, and window alignment.
//!
//! Microseconds because Kraken and Coinbase stamp trades to the microsecond; Binance's
//! milliseconds convert exactly. There is exactly one alignment function, [`Interval::window_start`].

use std::fmt;
use std::str::FromStr;

/// A point in time: microseconds since the Unix epoch (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Micros(pub i64);

impl Micros {
    /// From milliseconds since the epoch (Binance's unit).
    pub const fn from_millis(ms: i64) -> Micros {
        Micros(ms * 1_000)
    }

    /// Whole milliseconds since the epoch, rounded down.
    pub const fn as_millis(self) -> i64 {
        self.0.div_euclid(1_000)
    }

    /// The current wall-clock time. The engine never calls this; its callers do.
    pub fn now() -> Micros {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Micros(d.as_micros() as i64)
    }

    /// Seconds and nanoseconds, as protobuf's `Timestamp` wants them.
    pub const fn to_secs_nanos(self) -> (i64, i32) {
        (
            self.0.div_euclid(1_000_000),
            (self.0.rem_euclid(1_000_000) * 1_000) as i32,
        )
    }

    /// `self + d`, saturating.
    pub const fn plus(self, d: Duration) -> Micros {
        Micros(self.0.saturating_add(d.0))
    }
}

/// Why a text is not an RFC 3339 time the system can hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Rfc3339Error(String);

impl Micros {
    /// RFC 3339 UTC with six sub-second digits, as exchanges send it:
    /// `2023-09-25T07:48:36.925533Z`. A time beyond year 9999 is written as `<n>us`.
    pub fn to_rfc3339(self) -> String {
        self.rfc3339(false)
    }

    /// RFC 3339 UTC with sub-second digits only as far as they are not zero:
    /// `2026-11-26T06:40:05Z`, `1970-01-01T00:00:00.5Z`. A time beyond year 9999 is `<n>us`.
    pub fn to_rfc3339_short(self) -> String {
        self.rfc3339(true)
    }

    fn rfc3339(self, short: bool) -> String {
        let (secs, micros) = (self.0.div_euclid(1_000_000), self.0.rem_euclid(1_000_000));
        let Ok(dt) = ::time::OffsetDateTime::from_unix_timestamp(secs) else {
            return format!("{}us", self.0);
        };
        let base = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            dt.year(),
            u8::from(dt.month()),
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second()
        );
        let fraction = format!("{micros:06}");
        match (short, fraction.trim_end_matches('0')) {
            (true, "") => format!("{base}Z"),
            (true, digits) => format!("{base}.{digits}Z"),
            (false, _) => format!("{base}.{fraction}Z"),
        }
    }

    /// Parses an RFC 3339 time (any offset; digits below the microsecond are dropped, rounding
    /// down): `2023-09-25T07:48:36.925533Z`.
    pub fn parse_rfc3339(text: &str) -> Result<Micros, Rfc3339Error> {
        let dt =
            ::time::OffsetDateTime::parse(text, &::time::format_description::well_known::Rfc3339)
                .map_err(|e| Rfc3339Error(format!("not an RFC 3339 time ({e})")))?;
        i64::try_from(dt.unix_timestamp_nanos().div_euclid(1_000))
            .map(Micros)
            .map_err(|_| Rfc3339Error("out of range".to_string()))
    }
}

/// A non-negative length of time in microseconds (used for grace periods and update throttles).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Duration(pub i64);

impl Duration {
    /// From whole milliseconds.
    pub const fn from_millis(ms: i64) -> Duration {
        Duration(ms * 1_000)
    }

    /// As a standard library duration.
    pub fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_micros(self.0.max(0) as u64)
    }
}

/// Why a duration or interval could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid {what} {input}: {reason}; write a whole number followed by a unit: us, ms, s, m, h or d (e.g. 500ms, 5s, 1m, 1h)"
)]
pub struct DurationError {
    /// "interval" or "duration".
    pub what: &'static str,
    /// The text given, as [`crate::excerpt`] shows it (quoted, cut when long).
    pub input: String,
    /// What was wrong.
    pub reason: &'static str,
}

fn parse_micros(what: &'static str, input: &str) -> Result<i64, DurationError> {
    let err = |reason| DurationError {
        what,
        input: crate::excerpt(input),
        reason,
    };
    let text = input.trim();
    if text.is_empty() {
        return Err(err("it is empty"));
    }
    if text.starts_with('-') {
        return Err(err("it is negative"));
    }
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    if number.is_empty() {
        return Err(err("it does not start with a number"));
    }
    let number: i64 = number.parse().map_err(|_| err("the number is too large"))?;
    let scale: i64 = match unit.trim() {
        "us" | "µs" => 1,
        "ms" => 1_000,
        "s" => 1_000_000,
        "m" | "min" => 60_000_000,
        "h" => 3_600_000_000,
        "d" => 86_400_000_000,
        "" => return Err(err("it has no unit")),
        _ => return Err(err("the unit is not one of us, ms, s, m, h, d")),
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| err("it is too long"))
}

impl Duration {
    /// Parses `0`-or-more durations such as `1500ms` or `2s` (a grace period may be zero).
    pub fn parse(input: &str) -> Result<Duration, DurationError> {
        if input.trim() == "0" {
            return Ok(Duration(0));
        }
        parse_micros("duration", input).map(Duration)
    }
}

impl FromStr for Duration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Duration::parse(s)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_micros(self.0, f)
    }
}

fn fmt_micros(us: i64, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    for (scale, unit) in [
        (86_400_000_000, "d"),
        (3_600_000_000, "h"),
        (60_000_000, "m"),
        (1_000_000, "s"),
        (1_000, "ms"),
    ] {
        if us != 0 && us % scale == 0 {
            return write!(f, "{}{unit}", us / scale);
        }
    }
    write!(f, "{us}us")
}

/// The length of a candle window: strictly positive, in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Interval(i64);

impl Interval {
    /// An interval of `us` microseconds; `None` unless positive.
    pub const fn from_micros(us: i64) -> Option<Interval> {
        if us > 0 { Some(Interval(us)) } else { None }
    }

    /// An interval of whole seconds (panics on zero: for constants in code and tests).
    pub const fn seconds(s: i64) -> Interval {
        assert!(s > 0);
        Interval(s * 1_000_000)
    }

    /// Length in microseconds.
    pub const fn micros(self) -> i64 {
        self.0
    }

    /// Parses `500ms`, `5s`, `1m`, `1h`, `1d`; zero, negatives and junk are errors.
    pub fn parse(input: &str) -> Result<Interval, DurationError> {
        let us = parse_micros("interval", input)?;
        Interval::from_micros(us).ok_or(DurationError {
            what: "interval",
            input: crate::excerpt(input),
            reason: "it must be longer than zero",
        })
    }

    /// The start of the window that contains `t`: `floor(t / I) * I`, aligned to the Unix epoch.
    /// A time exactly at a window's end belongs to the next window.
    pub const fn window_start(self, t: Micros) -> Micros {
        Micros(t.0.div_euclid(self.0) * self.0)
    }

    /// The (exclusive) end of the window starting at `start`.
    pub const fn window_end(self, start: Micros) -> Micros {
        Micros(start.0 + self.0)
    }
}

impl FromStr for Interval {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Interval::parse(s)
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_micros(self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse_every_unit() {
        assert_eq!(Interval::parse("500ms").unwrap().micros(), 500_000);
        assert_eq!(Interval::parse("5s").unwrap().micros(), 5_000_000);
        assert_eq!(Interval::parse("1m").unwrap().micros(), 60_000_000);
        assert_eq!(Interval::parse("1h").unwrap().micros(), 3_600_000_000);
        assert_eq!(Interval::parse("1d").unwrap().micros(), 86_400_000_000);
        assert_eq!(Interval::parse(" 250us ").unwrap().micros(), 250);
        assert_eq!(Interval::parse("90s").unwrap().to_string(), "90s");
        assert_eq!(Interval::parse("60s").unwrap().to_string(), "1m");
    }

    #[test]
    fn bad_intervals_are_clear_errors() {
        for (input, reason) in [
            ("0s", "longer than zero"),
            ("0", "no unit"),
            ("-5s", "negative"),
            ("", "empty"),
            ("5", "no unit"),
            ("5 parsecs", "unit"),
            ("s", "number"),
            ("1.5s", "unit"),
            ("99999999999999999999s", "too large"),
            ("9999999999999d", "too long"),
        ] {
            let msg = Interval::parse(input).unwrap_err().to_string();
            assert!(msg.contains(reason), "{input}: {msg}");
            assert!(msg.contains(&format!("{input:?}")), "{input}: {msg}");
            assert!(msg.contains("500ms, 5s"), "{msg}");
        }
    }

    #[test]
    fn grace_may_be_zero_but_not_negative() {
        assert_eq!(Duration::parse("0").unwrap(), Duration(0));
        assert_eq!(Duration::parse("1500ms").unwrap(), Duration(1_500_000));
        assert!(Duration::parse("-1s").is_err());
    }

    #[test]
    fn windows_align_to_the_epoch_and_the_end_belongs_to_the_next() {
        let i = Interval::seconds(5);
        assert_eq!(i.window_start(Micros(0)), Micros(0));
        assert_eq!(i.window_start(Micros(4_999_999)), Micros(0));
        assert_eq!(i.window_start(Micros(5_000_000)), Micros(5_000_000));
        assert_eq!(i.window_start(Micros(-1)), Micros(-5_000_000));
        assert_eq!(i.window_end(Micros(5_000_000)), Micros(10_000_000));
        assert_eq!(Micros(1_500_250).to_secs_nanos(), (1, 500_250_000));
    }

    #[test]
    fn rfc3339_formats_and_parses_with_microseconds() {
        let t = Micros(1_695_628_116_925_533);
        assert_eq!(t.to_rfc3339(), "2023-09-25T07:48:36.925533Z");
        assert_eq!(Micros::parse_rfc3339("2023-09-25T07:48:36.925533Z"), Ok(t));
        assert_eq!(
            Micros::parse_rfc3339("2023-02-09T20:19:35.39625135Z"),
            Ok(Micros(1_675_973_975_396_251))
        );
        assert!(Micros::parse_rfc3339("yesterday").is_err());
        assert_eq!(Micros(500_000).to_rfc3339_short(), "1970-01-01T00:00:00.5Z");
        assert_eq!(Micros(0).to_rfc3339_short(), "1970-01-01T00:00:00Z");
        assert_eq!(Micros(0).to_rfc3339(), "1970-01-01T00:00:00.000000Z");
        assert_eq!(Micros(i64::MAX).to_rfc3339(), format!("{}us", i64::MAX));
    }
}
