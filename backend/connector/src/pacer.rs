//! The pace of one exchange's public REST API: a token bucket at (just under) the exchange's
//! documented public limit, shared by everything that asks that exchange over REST (gap fill,
//! the listing check, and whoever else holds the [`Pacer`]).
//!
//! A request first takes its cost from the bucket, waiting if it is empty, so the connector
//! never sends more than the limit allows. When the exchange still answers "too many requests",
//! every user of the pacer holds off: for its `Retry-After` when it gives one (Binance), else
//! for a doubling wait from one second (Kraken's `EGeneral:Too many requests`, Coinbase's 429),
//! reset by the next successful answer.
//!
//! [`Bucket`] is pure (the caller passes the time); [`Pacer`] adds the lock and the sleeping.

use candles_core::retry::Doubling;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// An exchange's public REST limit as a token bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RestLimit {
    /// The most cost spent at once.
    pub burst: f64,
    /// Cost refilled per second.
    pub per_second: f64,
}

impl std::str::FromStr for RestLimit {
    type Err = String;

    /// `BURST,PER_SECOND`, e.g. `2,0.9`: both positive and finite.
    fn from_str(s: &str) -> Result<RestLimit, String> {
        let (burst, per_second) = s
            .split_once(',')
            .ok_or_else(|| format!("expected BURST,PER_SECOND (e.g. 2,0.9), got {s:?}"))?;
        let number = |name: &str, v: &str| match v.trim().parse::<f64>() {
            Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
            _ => Err(format!("{name} must be a positive number, got {v:?}")),
        };
        Ok(RestLimit {
            burst: number("BURST", burst)?,
            per_second: number("PER_SECOND", per_second)?,
        })
    }
}

/// The first hold-off after a rate-limit answer without `Retry-After`, and the longest.
const HOLD_OFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(30));

/// The bucket's state: tokens, and a hold-off after a rate-limit answer.
#[derive(Debug)]
pub struct Bucket {
    limit: RestLimit,
    tokens: f64,
    last: Instant,
    hold_until: Option<Instant>,
    backoff: Doubling,
}

impl Bucket {
    /// A full bucket at `now`.
    pub fn new(limit: RestLimit, now: Instant) -> Bucket {
        Bucket {
            limit,
            tokens: limit.burst,
            last: now,
            hold_until: None,
            backoff: Doubling::new(HOLD_OFF.0, HOLD_OFF.1),
        }
    }

    /// Takes `cost` (at most the burst) at `now`, or says how long to wait before trying again.
    pub fn take(&mut self, now: Instant, cost: f64) -> Result<(), Duration> {
        if let Some(until) = self.hold_until.filter(|u| now < *u) {
            return Err(until - now);
        }
        let cost = cost.min(self.limit.burst);
        let refill = now.saturating_duration_since(self.last).as_secs_f64() * self.limit.per_second;
        self.tokens = (self.tokens + refill).min(self.limit.burst);
        self.last = now;
        if self.tokens >= cost {
            self.tokens -= cost;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (cost - self.tokens) / self.limit.per_second,
            ))
        }
    }

    /// The exchange answered "too many requests": nobody asks again before `retry_after`, or,
    /// without one, before a doubling wait. The bucket is emptied too. Returns the wait.
    pub fn refused(&mut self, now: Instant, retry_after: Option<Duration>) -> Duration {
        let wait = retry_after.unwrap_or_else(|| self.backoff.next_delay());
        let until = now + wait;
        self.hold_until = Some(self.hold_until.map_or(until, |u| u.max(until)));
        self.tokens = 0.0;
        self.last = now.max(until);
        wait
    }

    /// The exchange answered normally: the doubling wait starts over.
    pub fn answered(&mut self) {
        self.backoff.reset();
    }
}

/// One exchange's REST pace, shared (behind an `Arc`) by every REST user of that exchange.
#[derive(Debug)]
pub struct Pacer {
    bucket: Mutex<Bucket>,
}

impl Pacer {
    /// A pacer at `limit`, starting full.
    pub fn new(limit: RestLimit) -> Pacer {
        Pacer {
            bucket: Mutex::new(Bucket::new(limit, Instant::now())),
        }
    }

    fn bucket(&self) -> std::sync::MutexGuard<'_, Bucket> {
        // The bucket is a few numbers, consistent after any panic.
        self.bucket.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until a request of `cost` is allowed, and takes it.
    pub async fn acquire(&self, cost: f64) {
        loop {
            let wait = match self.bucket().take(Instant::now(), cost) {
                Ok(()) => return,
                Err(wait) => wait,
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// See [`Bucket::refused`].
    pub fn refused(&self, retry_after: Option<Duration>) -> Duration {
        self.bucket().refused(Instant::now(), retry_after)
    }

    /// See [`Bucket::answered`].
    pub fn answered(&self) {
        self.bucket().answered();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const KRAKEN: RestLimit = RestLimit {
        burst: 2.0,
        per_second: 0.5,
    };

    #[test]
    fn a_rest_limit_parses_from_burst_comma_per_second() {
        assert_eq!("2,0.5".parse::<RestLimit>(), Ok(KRAKEN));
        assert_eq!(
            " 1000 , 1000 ".parse::<RestLimit>(),
            Ok(RestLimit {
                burst: 1000.0,
                per_second: 1000.0
            })
        );
        for bad in ["2", "2,0", "-1,1", "x,1", "1,inf", ""] {
            assert!(bad.parse::<RestLimit>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_bucket_allows_its_burst_then_waits_for_the_refill() {
        let t0 = Instant::now();
        let mut bucket = Bucket::new(KRAKEN, t0);
        assert_eq!(bucket.take(t0, 1.0), Ok(()));
        assert_eq!(bucket.take(t0, 1.0), Ok(()));
        assert_eq!(bucket.take(t0, 1.0), Err(Duration::from_secs(2)));
        assert_eq!(bucket.take(t0 + Duration::from_secs(2), 1.0), Ok(()));
        // A cost above the burst is capped at the burst, so it is not refused forever.
        assert_eq!(bucket.take(t0 + Duration::from_secs(6), 50.0), Ok(()));
    }

    #[test]
    fn a_refusal_holds_everyone_off_for_retry_after_or_a_doubling_wait() {
        let t0 = Instant::now();
        let mut bucket = Bucket::new(KRAKEN, t0);
        assert_eq!(
            bucket.refused(t0, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(
            bucket.take(t0 + Duration::from_secs(3), 1.0),
            Err(Duration::from_secs(4))
        );
        // Held off, then the bucket refills from the end of the hold-off.
        let later = t0 + Duration::from_secs(7);
        assert_eq!(bucket.take(later, 1.0), Err(Duration::from_secs(2)));
        let t1 = later + Duration::from_secs(10);
        assert_eq!(bucket.refused(t1, None), Duration::from_secs(1));
        assert_eq!(bucket.refused(t1, None), Duration::from_secs(2));
        bucket.answered();
        assert_eq!(bucket.refused(t1, None), Duration::from_secs(1));
    }
}
