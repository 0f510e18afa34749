//! Rate-limited logging for lines fed from outside (rejected requests, refused connections):
//! a hostile peer must not be able to fill the disk with the service's own log.
//!
//! ```
//! use candles_service::ratelimit::SharedLogLimit;
//! use std::time::Duration;
//! static REJECTED: SharedLogLimit = SharedLogLimit::new(10, Duration::from_secs(10));
//! if let Some(suppressed) = REJECTED.check() {
//!     // log the line, with `suppressed` (lines dropped since the last one logged)
//!     let _ = suppressed;
//! }
//! ```

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// [`candles_core::bounds::LogLimit`] shared between tasks (a `static` per kind of line): at
/// most `max` lines per `per`, the rest counted.
#[derive(Debug)]
pub struct SharedLogLimit(Mutex<candles_core::bounds::LogLimit>);

impl SharedLogLimit {
    /// At most `max` lines per `per`.
    pub const fn new(max: u32, per: Duration) -> SharedLogLimit {
        SharedLogLimit(Mutex::new(candles_core::bounds::LogLimit::new(max, per)))
    }

    /// `Some(n)` when this line may be logged, `n` being the lines suppressed since the last
    /// line let through; `None` when it must be dropped (it is counted).
    pub fn check(&self) -> Option<u64> {
        let mut limit = match self.0.lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        limit.allow(Instant::now())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn lets_max_lines_through_per_interval_and_counts_the_rest() {
        let l = SharedLogLimit::new(2, Duration::from_millis(200));
        assert_eq!(l.check(), Some(0));
        assert_eq!(l.check(), Some(0));
        assert_eq!(l.check(), None);
        assert_eq!(l.check(), None);
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(l.check(), Some(2));
        assert_eq!(l.check(), Some(0));
    }
}
