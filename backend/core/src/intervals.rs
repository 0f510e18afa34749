//! The set of intervals one engine builds (DESIGN.md "Several intervals in one engine").
//!
//! Up to [`Intervals::MAX`] intervals, finest first, each a whole multiple of the finest, so that
//! every window of every interval is made of whole windows of the finest one (all are aligned to
//! the Unix epoch). Parsed from a comma-separated list such as `1s,5s,1m,5m,15m,1h,4h,1d`; an
//! error names the item at fault.

use crate::time::Interval;
use std::fmt;
use std::str::FromStr;

/// A set of one to [`Intervals::MAX`] intervals, finest first, each a whole multiple of the
/// finest. `Copy`, with no allocation: the engine keeps it inline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Intervals {
    list: [Interval; Intervals::MAX],
    len: usize,
}

/// Why a list of intervals was refused; the message names the item at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntervalsError {
    /// An item is not an interval.
    #[error("invalid interval {item:?} in the list: {reason}")]
    Item {
        /// The item (an excerpt).
        item: String,
        /// Why it is not an interval.
        reason: String,
    },
    /// The list is empty.
    #[error("the list of intervals is empty: name at least one (e.g. `5s`)")]
    Empty,
    /// More than [`Intervals::MAX`] intervals.
    #[error("too many intervals ({0}): at most {max}", max = Intervals::MAX)]
    TooMany(usize),
    /// The same interval twice.
    #[error("interval {0} is listed twice")]
    Duplicate(Interval),
    /// An interval that is not a whole multiple of the finest.
    #[error("interval {item} is not a whole multiple of the finest interval {finest}")]
    NotAMultiple {
        /// The interval at fault.
        item: Interval,
        /// The finest interval of the set.
        finest: Interval,
    },
}

impl Intervals {
    /// The most intervals one set holds.
    pub const MAX: usize = 16;

    /// The default set: `1s,5s,1m,5m,15m,1h,4h,1d`.
    pub const DEFAULT: &'static str = "1s,5s,1m,5m,15m,1h,4h,1d";

    /// The set of one interval (what a single-interval engine builds).
    pub const fn one(interval: Interval) -> Intervals {
        Intervals {
            list: [interval; Intervals::MAX],
            len: 1,
        }
    }

    /// The set of `intervals` (in any order), sorted finest first; refused when empty, too long,
    /// with a duplicate, or with an interval that is not a whole multiple of the finest.
    pub fn new(intervals: &[Interval]) -> Result<Intervals, IntervalsError> {
        let finest = *intervals.iter().min().ok_or(IntervalsError::Empty)?;
        if intervals.len() > Intervals::MAX {
            return Err(IntervalsError::TooMany(intervals.len()));
        }
        let mut set = Intervals::one(finest);
        set.list[..intervals.len()].copy_from_slice(intervals);
        set.len = intervals.len();
        set.list[..set.len].sort_unstable();
        for pair in set.as_slice().windows(2) {
            if pair[0] == pair[1] {
                return Err(IntervalsError::Duplicate(pair[0]));
            }
        }
        if let Some(&item) = set
            .as_slice()
            .iter()
            .find(|i| i.micros() % finest.micros() != 0)
        {
            return Err(IntervalsError::NotAMultiple { item, finest });
        }
        Ok(set)
    }

    /// The default set, [`Intervals::DEFAULT`].
    pub fn default_set() -> Intervals {
        Intervals::DEFAULT
            .parse()
            .expect("the default set of intervals is valid")
    }

    /// Every interval, finest first.
    pub fn as_slice(&self) -> &[Interval] {
        &self.list[..self.len]
    }

    /// The finest interval: the one trades are placed in.
    pub fn finest(&self) -> Interval {
        self.list[0]
    }

    /// The intervals other than the finest, finest first (built by merging the finest).
    pub fn coarser(&self) -> &[Interval] {
        &self.list[1..self.len]
    }

    /// How many intervals the set holds (at least one).
    #[allow(clippy::len_without_is_empty)] // never empty
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether `interval` is in the set.
    pub fn contains(&self, interval: Interval) -> bool {
        self.as_slice().contains(&interval)
    }
}

impl FromStr for Intervals {
    type Err = IntervalsError;

    /// Parses a comma-separated list (`1s,5s,1m`); spaces around items are ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut list = [Interval::seconds(1); Intervals::MAX];
        let mut len = 0;
        for item in s.split(',').filter(|item| !item.trim().is_empty()) {
            let interval = Interval::parse(item).map_err(|e| IntervalsError::Item {
                item: crate::excerpt(item.trim()),
                reason: e.to_string(),
            })?;
            if len == Intervals::MAX {
                return Err(IntervalsError::TooMany(s.split(',').count()));
            }
            list[len] = interval;
            len += 1;
        }
        Intervals::new(&list[..len])
    }
}

impl fmt::Display for Intervals {
    /// The list as it is parsed: `1s,5s,1m`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (at, interval) in self.as_slice().iter().enumerate() {
            if at > 0 {
                f.write_str(",")?;
            }
            write!(f, "{interval}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_set_parses_finest_first() {
        let set = Intervals::default_set();
        assert_eq!(set.len(), 8);
        assert_eq!(set.finest(), Interval::seconds(1));
        assert_eq!(set.to_string(), Intervals::DEFAULT);
        assert_eq!(set.coarser().len(), 7);
        assert!(set.contains(Interval::seconds(86_400)));
        assert!(!set.contains(Interval::seconds(2)));
    }

    #[test]
    fn any_order_is_sorted_and_one_interval_is_a_set() {
        let set: Intervals = " 1m, 5s ,15s".parse().unwrap();
        assert_eq!(set.to_string(), "5s,15s,1m");
        let one = Intervals::one(Interval::seconds(5));
        assert_eq!(one.as_slice(), &[Interval::seconds(5)]);
        assert!(one.coarser().is_empty());
        assert_eq!("5s".parse::<Intervals>().unwrap(), one);
    }

    #[test]
    fn errors_name_the_bad_item() {
        let error = |s: &str| s.parse::<Intervals>().unwrap_err().to_string();
        assert!(
            error("1s,5x,1m").contains("\"5x\""),
            "{}",
            error("1s,5x,1m")
        );
        assert!(error("1s,0s").contains("\"0s\""));
        assert!(error("").contains("empty"));
        assert!(error("2s,5s").contains("5s is not a whole multiple of the finest interval 2s"));
        assert!(error("1s,5s,1s").contains("1s is listed twice"));
        let many = (1..=17)
            .map(|s| format!("{s}s"))
            .collect::<Vec<_>>()
            .join(",");
        assert!(error(&many).contains("too many intervals (17): at most 16"));
    }
}
