//! `--rest-limit`: each exchange's published public REST limit, per client IP, and who broke it.
//!
//! A [`Rule`] is either a fixed window of request weight (Binance: 6,000 weight per minute) or a
//! token bucket (Kraken: about one call a second with a small burst; Coinbase: 10 requests a
//! second, bursts of 15). A request over the limit gets the exchange's own answer (the venue
//! writes it) and a time to wait; a request that arrives before that time is a *violation*:
//! the client ignored a rate-limit answer. Both are counted, per exchange, on `/metrics`
//! (`sim_rest_rate_limited_total`, `sim_rest_rate_limit_violations_total`) and for tests.
//!
//! Pure logic: the caller passes the time, so every rule is unit-tested without sleeping.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// An exchange's public REST limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Rule {
    /// At most `max` weight per window; the window restarts every `per` (Binance's
    /// `REQUEST_WEIGHT` per minute).
    Window {
        /// The window length.
        per: Duration,
        /// The weight allowed in one window.
        max: u32,
    },
    /// A token bucket: `burst` tokens, refilled at `per_second` (Kraken, Coinbase).
    Bucket {
        /// The most requests in a burst.
        burst: f64,
        /// Sustained requests per second.
        per_second: f64,
    },
}

/// What to answer one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Within the limit: serve it.
    Allowed,
    /// Over the limit: answer with the exchange's rate-limit response.
    Limited {
        /// When the client may ask again.
        retry_after: Duration,
        /// Whether the client was already told to wait and came back too early (Binance
        /// answers these with 418, an IP ban).
        violation: bool,
    },
}

/// One client's use of the limit.
#[derive(Debug, Clone, Copy)]
struct Usage {
    /// Window: its start and the weight used in it. Bucket: the last refill and the tokens.
    since: Instant,
    level: f64,
    /// Told to wait until then (by the last rate-limit answer).
    wait_until: Option<Instant>,
}

/// A ban after a violation (Binance bans for 2 minutes at first).
const BAN: Duration = Duration::from_secs(120);

impl Rule {
    /// A new client's usage.
    fn fresh(&self, now: Instant) -> Usage {
        let level = match *self {
            Rule::Window { .. } => 0.0,
            Rule::Bucket { burst, .. } => burst,
        };
        Usage {
            since: now,
            level,
            wait_until: None,
        }
    }

    /// Spends `cost` if the limit allows it; otherwise how long until it would.
    fn spend(&self, usage: &mut Usage, now: Instant, cost: f64) -> Result<(), Duration> {
        match *self {
            Rule::Window { per, max } => {
                let elapsed = now.saturating_duration_since(usage.since);
                if elapsed >= per {
                    let windows = (elapsed.as_secs_f64() / per.as_secs_f64()).floor();
                    usage.since += per.mul_f64(windows);
                    usage.level = 0.0;
                }
                if usage.level + cost <= f64::from(max) {
                    usage.level += cost;
                    Ok(())
                } else {
                    Err((usage.since + per).saturating_duration_since(now))
                }
            }
            Rule::Bucket { burst, per_second } => {
                let elapsed = now.saturating_duration_since(usage.since).as_secs_f64();
                usage.level = (usage.level + elapsed * per_second).min(burst);
                usage.since = now;
                if usage.level >= cost {
                    usage.level -= cost;
                    Ok(())
                } else {
                    Err(Duration::from_secs_f64((cost - usage.level) / per_second))
                }
            }
        }
    }
}

/// The limit of one simulated exchange, per client IP, with its counters.
#[derive(Debug)]
pub(crate) struct Limiter {
    rule: Rule,
    exchange: &'static str,
    clients: Mutex<HashMap<IpAddr, Usage>>,
    limited: AtomicU64,
    violations: AtomicU64,
}

impl Limiter {
    /// A limiter applying `rule`; `exchange` labels the metrics.
    pub fn new(rule: Rule, exchange: &'static str) -> Limiter {
        Limiter {
            rule,
            exchange,
            clients: Mutex::default(),
            limited: AtomicU64::new(0),
            violations: AtomicU64::new(0),
        }
    }

    /// Decides about one request of weight `cost` from `client` at `now`, and counts it.
    pub fn check(&self, client: IpAddr, now: Instant, cost: f64) -> Verdict {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let usage = clients
            .entry(client)
            .or_insert_with(|| self.rule.fresh(now));
        let early = usage.wait_until.is_some_and(|until| now < until);
        let verdict = if early {
            // Binance bans; the others simply refuse again. Either way the wait starts over.
            let wait = if matches!(self.rule, Rule::Window { .. }) {
                BAN
            } else {
                self.rule.spend(usage, now, cost).err().unwrap_or_default()
            };
            Verdict::Limited {
                retry_after: wait,
                violation: true,
            }
        } else {
            match self.rule.spend(usage, now, cost) {
                Ok(()) => Verdict::Allowed,
                Err(wait) => Verdict::Limited {
                    retry_after: wait,
                    violation: false,
                },
            }
        };
        if let Verdict::Limited {
            retry_after,
            violation,
        } = verdict
        {
            usage.wait_until = Some(now + retry_after);
            self.count(violation);
        }
        verdict
    }

    fn count(&self, violation: bool) {
        self.limited.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("sim_rest_rate_limited_total", "exchange" => self.exchange).increment(1);
        if violation {
            self.violations.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("sim_rest_rate_limit_violations_total", "exchange" => self.exchange)
                .increment(1);
        }
    }

    /// Requests answered with a rate-limit response so far.
    pub fn limited(&self) -> u64 {
        self.limited.load(Ordering::Relaxed)
    }

    /// Of those, requests that came while the client was told to wait.
    pub fn violations(&self) -> u64 {
        self.violations.load(Ordering::Relaxed)
    }
}

/// Whole seconds to put in a `Retry-After` header: rounded up, at least 1.
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0).max(u64::from(wait.is_zero()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn a_bucket_allows_its_burst_then_one_per_refill() {
        let limiter = Limiter::new(
            Rule::Bucket {
                burst: 3.0,
                per_second: 1.0,
            },
            "kraken",
        );
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.check(IP, t0, 1.0), Verdict::Allowed);
        }
        let Verdict::Limited {
            retry_after,
            violation: false,
        } = limiter.check(IP, t0, 1.0)
        else {
            panic!("the fourth request at once is over the burst");
        };
        assert_eq!(retry_after, Duration::from_secs(1));
        // Back too early: a violation. Back on time: served.
        assert!(matches!(
            limiter.check(IP, t0 + Duration::from_millis(500), 1.0),
            Verdict::Limited {
                violation: true,
                ..
            }
        ));
        assert_eq!(
            limiter.check(IP, t0 + Duration::from_millis(1500), 1.0),
            Verdict::Allowed
        );
        assert_eq!((limiter.limited(), limiter.violations()), (2, 1));
    }

    #[test]
    fn a_window_counts_weight_and_bans_who_ignores_retry_after() {
        let limiter = Limiter::new(
            Rule::Window {
                per: Duration::from_secs(60),
                max: 100,
            },
            "binance",
        );
        let t0 = Instant::now();
        for _ in 0..4 {
            assert_eq!(limiter.check(IP, t0, 25.0), Verdict::Allowed);
        }
        let later = t0 + Duration::from_secs(20);
        assert_eq!(
            limiter.check(IP, later, 25.0),
            Verdict::Limited {
                retry_after: Duration::from_secs(40),
                violation: false
            }
        );
        assert_eq!(
            limiter.check(IP, later + Duration::from_secs(1), 25.0),
            Verdict::Limited {
                retry_after: BAN,
                violation: true
            }
        );
        // Another client has its own window.
        let other = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(limiter.check(other, later, 25.0), Verdict::Allowed);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(40)), 40);
        assert_eq!(retry_after_secs(Duration::from_millis(40_100)), 41);
    }
}
