//! Rate-limited logging for lines fed from outside (rejected requests, refused connections):
//! a hostile peer must not be able to fill the disk with the service's own log.
//!
//! ```
//! use candles_service::ratelimit::LogLimit;
//! use std::time::Duration;
//! static REJECTED: LogLimit = LogLimit::new(10, Duration::from_secs(10));
//! if let Some(suppressed) = REJECTED.check() {
//!     // log the line, with `suppressed` (lines dropped since the last one logged)
//!     let _ = suppressed;
//! }
//! ```

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lets at most `max` lines through per `per`; counts the rest.
#[derive(Debug)]
pub struct LogLimit {
    max: u32,
    per: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    window: Option<Instant>,
    count: u32,
    suppressed: u64,
}

impl LogLimit {
    /// At most `max` lines per `per`.
    pub const fn new(max: u32, per: Duration) -> LogLimit {
        LogLimit {
            max,
            per,
            state: Mutex::new(State {
                window: None,
                count: 0,
                suppressed: 0,
            }),
        }
    }

    /// `Some(n)` when this line may be logged, `n` being the lines suppressed since the last
    /// line let through; `None` when it must be dropped (it is counted).
    pub fn check(&self) -> Option<u64> {
        let mut s = match self.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        let now = Instant::now();
        if s.window.is_none_or(|w| now.duration_since(w) >= self.per) {
            s.window = Some(now);
            s.count = 0;
        }
        if s.count < self.max {
            s.count += 1;
            Some(std::mem::take(&mut s.suppressed))
        } else {
            s.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn lets_max_lines_through_per_interval_and_counts_the_rest() {
        let l = LogLimit::new(2, Duration::from_millis(200));
        assert_eq!(l.check(), Some(0));
        assert_eq!(l.check(), Some(0));
        assert_eq!(l.check(), None);
        assert_eq!(l.check(), None);
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(l.check(), Some(2));
        assert_eq!(l.check(), Some(0));
    }
}
