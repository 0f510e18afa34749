//! What the service accepts back from Redis. Redis is an input like the `trades` topic: anyone
//! who can write to it can PUBLISH on a candle channel or ZADD into a history set, and every
//! client of every instance would be served what they wrote. So each candle read from Pub/Sub
//! or from history passes [`RedisCheck`] before it reaches a client, and the rejected ones are
//! counted by reason ([`crate::metrics::REDIS_REJECTED`]) and logged rate-limited, as excerpts.
//!
//! Validation cannot tell a plausible forged candle from a real one: against that, Redis needs
//! a password or ACL and TLS (`rediss://`), and deployments sharing a server need their own
//! [`default_prefix`] (see docs/DESIGN.md, "Redis as an input").

use crate::ratelimit::SharedLogLimit;
use candles_core::bounds::excerpt_bytes;
use candles_core::{Candle, Interval, Intervals, Micros, Pair, TimeBounds};
use candles_proto::v1;
use prost::Message as _;
use std::time::Duration;

/// The largest encoded candle accepted from Redis (a real one is about 200 bytes).
pub const MAX_CANDLE_BYTES: usize = 4096;

/// The rules a candle read back from Redis must pass: its size, that it decodes into exact
/// decimals, [`Candle::inconsistency`], one of this server's intervals, `end = start + interval`, a
/// served pair, and a start within the plausible window around the wall clock (the same
/// [`TimeBounds`] as trades, `--max-trade-age` / `--max-trade-lead`).
#[derive(Debug, Clone)]
pub struct RedisCheck {
    intervals: Intervals,
    pairs: Vec<Pair>,
    bounds: TimeBounds,
}

/// Where a candle was read: live and final candles on Pub/Sub are recent; history may hold
/// finals of any age (it is trimmed by count), so only its future end is bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadFrom {
    /// A Pub/Sub message.
    PubSub,
    /// A history sorted set.
    History,
}

impl RedisCheck {
    /// Accepts candles of `interval` for `pairs` (empty: any pair) with times within `bounds`.
    pub fn new(interval: Interval, pairs: Vec<Pair>, bounds: TimeBounds) -> RedisCheck {
        RedisCheck::for_intervals(Intervals::one(interval), pairs, bounds)
    }

    /// Accepts candles of any of `intervals` for `pairs` (empty: any pair) with times within
    /// `bounds`.
    pub fn for_intervals(intervals: Intervals, pairs: Vec<Pair>, bounds: TimeBounds) -> RedisCheck {
        RedisCheck {
            intervals,
            pairs,
            bounds,
        }
    }

    /// The intervals accepted, finest first.
    pub fn intervals(&self) -> Intervals {
        self.intervals
    }

    /// Whether candles of `pair` are served here.
    pub fn serves(&self, pair: Pair) -> bool {
        self.pairs.is_empty() || self.pairs.contains(&pair)
    }

    /// The latest window start that may be published or stored when the wall clock reads
    /// `now`: a window starting later cannot hold a plausible trade.
    pub fn latest_start(&self, now: Micros) -> Micros {
        Micros(now.0.saturating_add(self.bounds.max_lead.0))
    }

    /// The decoded candle (wire and core form), or the reason it is rejected (a metric label).
    pub fn check(
        &self,
        bytes: &[u8],
        now: Micros,
        from: ReadFrom,
    ) -> Result<(v1::Candle, Candle), &'static str> {
        if bytes.len() > MAX_CANDLE_BYTES {
            return Err("too_large");
        }
        let wire = v1::Candle::decode(bytes).map_err(|_| "undecodable")?;
        let candle = Candle::try_from(&wire).map_err(|_| "invalid")?;
        if !self.intervals.contains(candle.interval) {
            return Err("wrong_interval");
        }
        let end = wire.end.as_ref().map(|t| {
            t.seconds
                .saturating_mul(1_000_000)
                .saturating_add(i64::from(t.nanos) / 1000)
        });
        if end != Some(candle.end().0) {
            return Err("wrong_end");
        }
        if candle.inconsistency().is_some() {
            return Err("inconsistent");
        }
        if !self.serves(candle.pair) {
            return Err("unserved_pair");
        }
        if candle.start > self.latest_start(now) {
            return Err("future_start");
        }
        if from == ReadFrom::PubSub && candle.end().0 < now.0.saturating_sub(self.bounds.max_age.0)
        {
            return Err("too_old");
        }
        Ok((wire, candle))
    }
}

static REJECT_LOG: SharedLogLimit = SharedLogLimit::new(5, Duration::from_secs(10));

/// Counts (by `reason`) and logs, rate-limited and as an excerpt, a candle from Redis that is
/// not served.
pub fn reject(reason: &'static str, bytes: &[u8]) {
    metrics::counter!(crate::metrics::REDIS_REJECTED, "reason" => reason).increment(1);
    if let Some(suppressed) = REJECT_LOG.check() {
        tracing::warn!(
            reason,
            candle = %excerpt_bytes(bytes),
            suppressed,
            "rejected a candle read from Redis (not served; candles_service_redis_rejected_total)"
        );
    }
}

/// `url` with its password replaced by `***`, for errors and logs.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((auth, host)) = rest.rsplit_once('@') else {
        return url.to_string();
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => format!("{scheme}://***@{host}"),
    }
}

/// The default key and channel prefix for `url` (one rule for candles and reports).
pub use candles_reports::default_prefix;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use candles_core::Source;
    use rust_decimal::Decimal;

    const NOW: Micros = Micros(1_700_000_000_000_000);

    fn candle(start: Micros) -> Candle {
        let mut c = Candle::flat(
            Pair::parse("ETH-USDT").unwrap(),
            Source::Composite,
            Interval::seconds(5),
            start,
            Decimal::new(2500, 0),
        );
        c.is_final = false;
        c
    }

    fn check() -> RedisCheck {
        RedisCheck::new(
            Interval::seconds(5),
            vec![Pair::parse("ETH-USDT").unwrap()],
            TimeBounds::default(),
        )
    }

    fn bytes(c: &Candle) -> Vec<u8> {
        v1::Candle::from(c).encode_to_vec()
    }

    #[test]
    fn a_real_candle_passes_from_pubsub_and_history() {
        let c = candle(NOW);
        for from in [ReadFrom::PubSub, ReadFrom::History] {
            let (_, back) = check().check(&bytes(&c), NOW, from).unwrap();
            assert_eq!(back, c);
        }
    }

    #[test]
    fn each_rule_rejects_with_its_reason() {
        let c = candle(NOW);
        let huge = vec![0u8; MAX_CANDLE_BYTES + 1];
        assert_eq!(
            check().check(&huge, NOW, ReadFrom::PubSub).map(|_| ()),
            Err("too_large")
        );
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("undecodable", vec![0xff, 0xff, 0xff]),
            ("invalid", {
                let mut w = v1::Candle::from(&c);
                w.close = "1e400".into();
                w.encode_to_vec()
            }),
            ("wrong_interval", {
                let mut other = c;
                other.interval = Interval::seconds(60);
                other.start = Interval::seconds(60).window_start(NOW);
                bytes(&other)
            }),
            ("wrong_end", {
                let mut w = v1::Candle::from(&c);
                w.end = Some(candles_proto::timestamp(Micros(NOW.0 + 1)));
                w.encode_to_vec()
            }),
            ("inconsistent", {
                let mut other = c;
                other.high = Decimal::ONE;
                bytes(&other)
            }),
            ("unserved_pair", {
                let mut other = c;
                other.pair = Pair::parse("DOGE-USDT").unwrap();
                bytes(&other)
            }),
            (
                "future_start",
                bytes(&candle(Micros(NOW.0 + 2 * 3_600_000_000))),
            ),
        ];
        for (reason, b) in cases {
            for from in [ReadFrom::PubSub, ReadFrom::History] {
                assert_eq!(
                    check().check(&b, NOW, from).map(|_| ()),
                    Err(reason),
                    "{reason} {from:?}"
                );
            }
        }
        let old = bytes(&candle(Micros(NOW.0 - 8 * 86_400_000_000)));
        assert_eq!(
            check().check(&old, NOW, ReadFrom::PubSub).map(|_| ()),
            Err("too_old")
        );
        assert!(check().check(&old, NOW, ReadFrom::History).is_ok());
    }
}
