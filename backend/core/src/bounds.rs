//! What the system accepts from outside, as pure rules shared by the connectors and the service:
//!
//! - untrusted text (a record's field, a frame, a request) is echoed in errors, statuses,
//!   dead-letter reasons and logs only as a short [`excerpt`] with its length, so one huge input
//!   cannot make a huge error;
//! - a trade's time must lie in a plausible window around the wall clock ([`TimeBounds`]), so
//!   one trade dated 1970 or 2100 cannot make a flat candle for every window in between or pin
//!   the committed offset;
//! - log lines about input from outside are rate-limited ([`LogLimit`]), so a flood of bad input
//!   cannot become a flood of log.

use crate::time::{Duration, Micros};
use std::fmt;

/// At most this many characters of untrusted text are shown.
pub const EXCERPT_CHARS: usize = 48;

/// Untrusted text as an error or log line may show it: quoted and escaped like `{:?}`, cut to
/// [`EXCERPT_CHARS`] characters, and then followed by its whole length in bytes.
pub fn excerpt(text: &str) -> String {
    match text.char_indices().nth(EXCERPT_CHARS) {
        None => format!("{text:?}"),
        Some((cut, _)) => format!("{:?}… ({} bytes)", &text[..cut], text.len()),
    }
}

/// [`excerpt`] for bytes that may not be UTF-8 (invalid sequences show as `�`).
pub fn excerpt_bytes(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(EXCERPT_CHARS * 4)];
    let text = String::from_utf8_lossy(head);
    match text.char_indices().nth(EXCERPT_CHARS) {
        None if head.len() == bytes.len() => format!("{text:?}"),
        None => format!("{text:?}… ({} bytes)", bytes.len()),
        Some((cut, _)) => format!("{:?}… ({} bytes)", &text[..cut], bytes.len()),
    }
}

/// The window of trade times accepted, relative to the wall clock: from `max_age` before it to
/// `max_lead` after it. The defaults (7 days back, 1 hour ahead) cover Kafka's default
/// retention and any sane clock skew; replaying an older recording needs a larger `max_age`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeBounds {
    /// How far in the past a trade may be.
    pub max_age: Duration,
    /// How far in the future a trade may be (clock skew between an exchange and this host).
    pub max_lead: Duration,
}

impl Default for TimeBounds {
    fn default() -> Self {
        TimeBounds {
            max_age: Duration(7 * 86_400_000_000),
            max_lead: Duration(3_600_000_000),
        }
    }
}

/// Why a trade time is not accepted. The message names the time, the wall clock, the bound and
/// the flag that moves it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ImplausibleTime {
    /// Older than `max_age`.
    #[error(
        "trade time {} is {} before the wall clock ({}), beyond the accepted {} (--max-trade-age)",
        Utc(*time), Approx(now.0.saturating_sub(time.0)), Utc(*now), max_age
    )]
    TooOld {
        /// The trade's time.
        time: Micros,
        /// The wall clock.
        now: Micros,
        /// The bound it broke.
        max_age: Duration,
    },
    /// Further ahead than `max_lead`.
    #[error(
        "trade time {} is {} after the wall clock ({}), beyond the accepted {} (--max-trade-lead)",
        Utc(*time), Approx(time.0.saturating_sub(now.0)), Utc(*now), max_lead
    )]
    TooFarAhead {
        /// The trade's time.
        time: Micros,
        /// The wall clock.
        now: Micros,
        /// The bound it broke.
        max_lead: Duration,
    },
}

impl TimeBounds {
    /// Whether a trade at `time` is plausible when the wall clock reads `now`.
    pub fn check(&self, time: Micros, now: Micros) -> Result<(), ImplausibleTime> {
        if time.0 < now.0.saturating_sub(self.max_age.0) {
            return Err(ImplausibleTime::TooOld {
                time,
                now,
                max_age: self.max_age,
            });
        }
        if time.0 > now.0.saturating_add(self.max_lead.0) {
            return Err(ImplausibleTime::TooFarAhead {
                time,
                now,
                max_lead: self.max_lead,
            });
        }
        Ok(())
    }
}

/// Lets through at most `max` log lines per `per`, and counts the ones it holds back. Pure: the
/// caller passes the time.
#[derive(Clone, Debug)]
pub struct LogLimit {
    max: u32,
    per: std::time::Duration,
    since: Option<std::time::Instant>,
    shown: u32,
    held: u64,
}

impl LogLimit {
    /// At most `max` lines per `per`.
    pub const fn new(max: u32, per: std::time::Duration) -> LogLimit {
        LogLimit {
            max,
            per,
            since: None,
            shown: 0,
            held: 0,
        }
    }

    /// `Some(held)` when a line may be logged at `now` (`held`: lines held back since the last
    /// one let through, to be mentioned in it); `None` when this one is held back.
    pub fn allow(&mut self, now: std::time::Instant) -> Option<u64> {
        if self
            .since
            .is_none_or(|s| now.saturating_duration_since(s) >= self.per)
        {
            self.since = Some(now);
            self.shown = 0;
        }
        if self.shown < self.max {
            self.shown += 1;
            return Some(std::mem::take(&mut self.held));
        }
        self.held += 1;
        None
    }

    /// Lines held back since the last one let through.
    pub fn held(&self) -> u64 {
        self.held
    }
}

/// A length of time in microseconds, shown roughly in its largest unit (`20789.4 days`).
struct Approx(i64);

impl fmt::Display for Approx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let us = self.0 as f64;
        match self.0 {
            d if d >= 86_400_000_000 => write!(f, "{:.1} days", us / 86_400e6),
            d if d >= 3_600_000_000 => write!(f, "{:.1} hours", us / 3_600e6),
            _ => write!(f, "{:.3} s", us / 1e6),
        }
    }
}

/// A time shown as UTC, `1970-01-01T00:00:00.000000Z`.
#[derive(Clone, Copy, Debug)]
pub struct Utc(pub Micros);

impl fmt::Display for Utc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let us = self.0.0;
        let secs = us.div_euclid(1_000_000);
        let frac = us.rem_euclid(1_000_000);
        let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{frac:06}Z",
            rem / 3_600,
            rem % 3_600 / 60,
            rem % 60
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_shown_whole_and_long_text_cut_with_its_length() {
        assert_eq!(excerpt("BTC-USDT"), "\"BTC-USDT\"");
        let long = "\u{1}".repeat(170_000);
        let shown = excerpt(&long);
        assert!(shown.len() < 400, "{shown}");
        assert!(shown.ends_with("… (170000 bytes)"), "{shown}");
        // Multi-byte characters are never split.
        let wide = "é".repeat(100);
        assert!(excerpt(&wide).ends_with("… (200 bytes)"));
        assert_eq!(excerpt_bytes(b"abc"), "\"abc\"");
        let bytes = vec![0xffu8; 10_000];
        let shown = excerpt_bytes(&bytes);
        assert!(
            shown.len() < 400 && shown.ends_with("… (10000 bytes)"),
            "{shown}"
        );
    }

    #[test]
    fn times_outside_the_window_are_refused_naming_the_bound() {
        let now = Micros(1_780_000_000_000_000);
        let b = TimeBounds::default();
        assert!(b.check(now, now).is_ok());
        assert!(b.check(Micros(now.0 - 7 * 86_400_000_000), now).is_ok());
        assert!(b.check(Micros(now.0 + 3_600_000_000), now).is_ok());
        let old = b.check(Micros(0), now).unwrap_err();
        assert!(matches!(old, ImplausibleTime::TooOld { .. }));
        let msg = old.to_string();
        assert!(
            msg.contains("1970-01-01T00:00:00.000000Z") && msg.contains("--max-trade-age"),
            "{msg}"
        );
        let ahead = b.check(Micros(4_102_444_800_000_000), now).unwrap_err();
        let msg = ahead.to_string();
        assert!(
            msg.contains("2100-01-01T00:00:00.000000Z") && msg.contains("--max-trade-lead"),
            "{msg}"
        );
        assert!(b.check(Micros(i64::MIN), now).is_err());
        assert!(b.check(Micros(i64::MAX), now).is_err());
    }

    #[test]
    fn log_limit_lets_max_lines_through_per_period_and_counts_the_rest() {
        let mut limit = LogLimit::new(2, std::time::Duration::from_secs(10));
        let t0 = std::time::Instant::now();
        assert_eq!(limit.allow(t0), Some(0));
        assert_eq!(limit.allow(t0), Some(0));
        assert_eq!(limit.allow(t0), None);
        assert_eq!(limit.allow(t0 + std::time::Duration::from_secs(9)), None);
        // A new period: the first line says how many were held back.
        assert_eq!(
            limit.allow(t0 + std::time::Duration::from_secs(10)),
            Some(2)
        );
        assert_eq!(
            limit.allow(t0 + std::time::Duration::from_secs(10)),
            Some(0)
        );
    }

    #[test]
    fn utc_matches_known_dates() {
        assert_eq!(
            Utc(Micros(1_700_000_000_123_456)).to_string(),
            "2023-11-14T22:13:20.123456Z"
        );
        assert_eq!(
            Utc(Micros(951_782_400_000_000)).to_string(),
            "2000-02-29T00:00:00.000000Z"
        );
    }
}
