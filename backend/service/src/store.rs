//! Redis: publish-once of final candles, live updates, history and the list of markets.
//!
//! # Layout (every name includes the interval, so instances with different intervals never mix)
//! - Channel `candles.v1.<interval>.<PAIR>` (e.g. `candles.v1.5s.BTC-USDT`): every candle of the
//!   pair, final and live, as a prost-encoded `candles.v1.Candle`.
//! - Sorted set `candles.v1.<interval>.history.<PAIR>.<source>`: the last `history_max` final
//!   candles of one series, scored by window start (µs), members prost-encoded.
//! - Set `candles.v1.<interval>.markets`: `"<PAIR> <source>"` of every series with a final candle.
//!
//! # Publish once
//! Finals go through one Lua script ([`PUBLISH_FINAL`], run with EVALSHA) that atomically
//! checks the series' newest stored start: if it is at or after this candle's start, the candle
//! (or a later one) was already published and the script does nothing; otherwise it adds the
//! candle, trims the history, records the market and PUBLISHes. A series' finals are produced in
//! order of start, so "newer than the newest stored" is the identity check, and it stays correct
//! after trimming. Two instances replaying the same window publish it once.

use crate::redis_input::{ReadFrom, RedisCheck, reject};
use crate::verdicts::HubVerdict;
use candles_core::{Candle, Interval, Micros, Pair, Source};
use candles_proto::v1;
use prost::Message as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// The atomic check-and-publish of a final candle. KEYS: history, markets. ARGV: start (µs),
/// encoded candle, history max, channel, market member. Returns 1 if published, 0 if it was
/// already there.
/// `ARGV[6]` is the latest plausible start ([`RedisCheck::latest_start`], µs): a candle starting
/// later is refused (-1), and stored entries scored later (written into Redis by someone else)
/// are removed first, never compared with, so a forged final dated 2100 cannot silence the
/// real ones.
pub const PUBLISH_FINAL: &str = r#"
local limit = tonumber(ARGV[6])
if tonumber(ARGV[1]) > limit then
  return -1
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '(' .. ARGV[6], '+inf')
local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if newest[2] ~= nil and tonumber(newest[2]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
local n = redis.call('ZCARD', KEYS[1])
local max = tonumber(ARGV[3])
if n > max then
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - max - 1)
end
redis.call('SADD', KEYS[2], ARGV[5])
redis.call('PUBLISH', ARGV[4], ARGV[2])
return 1
"#;

/// The most series [`Store::markets`] returns (members beyond it were not written by this
/// service: it serves at most [`crate::config::MAX_PAIRS`] pairs).
pub const MAX_MARKETS: usize = crate::config::MAX_PAIRS * Source::ALL.len();

/// A Redis failure, naming what was being done.
#[derive(Debug, thiserror::Error)]
#[error("Redis {action} failed: {source}")]
pub struct StoreError {
    /// What the service was doing.
    pub action: &'static str,
    /// The client's error.
    #[source]
    pub source: redis::RedisError,
}

fn err(action: &'static str) -> impl FnOnce(redis::RedisError) -> StoreError {
    move |source| StoreError { action, source }
}

/// Names of channels and keys for one interval.
#[derive(Clone, Debug)]
pub struct Keys {
    /// The deployment prefix (`--redis-prefix`).
    deployment: String,
    /// `{deployment}candles.v1.{interval}`.
    prefix: String,
    interval: Interval,
}

impl Keys {
    /// The names for candles of `interval`.
    pub fn new(interval: Interval) -> Keys {
        Keys::with_prefix("", interval)
    }

    /// The names for candles of `interval` under a deployment `prefix` (`--redis-prefix`).
    pub fn with_prefix(prefix: &str, interval: Interval) -> Keys {
        Keys {
            deployment: prefix.to_string(),
            prefix: format!("{prefix}candles.v1.{interval}"),
            interval,
        }
    }

    /// The interval these names are for.
    pub fn interval(&self) -> Interval {
        self.interval
    }

    /// The Pub/Sub channel of a pair (the name the connectors' verifiers subscribe to:
    /// [`candles_reports::candle_channel`]).
    pub fn channel(&self, pair: Pair) -> String {
        candles_reports::candle_channel(&self.deployment, self.interval, pair)
    }

    /// The pattern matching every pair's channel.
    pub fn pattern(&self) -> String {
        format!("{}.*", self.prefix)
    }

    /// The history sorted set of one series.
    pub fn history(&self, pair: Pair, source: Source) -> String {
        format!("{}.history.{pair}.{source}", self.prefix)
    }

    /// The set of known series.
    pub fn markets(&self) -> String {
        format!("{}.markets", self.prefix)
    }
}

/// A cloneable handle on Redis for publishing and reading candles. Reconnects by itself.
/// Reads (history, markets) use the keys of its interval ([`Store::for_interval`] gives the
/// handle of another); publishing picks the keys of each candle's interval.
#[derive(Clone)]
pub struct Store {
    conn: ConnectionManager,
    prefix: Arc<str>,
    keys: Keys,
    script: Arc<redis::Script>,
    history_max: usize,
    check: Arc<RedisCheck>,
}

impl Store {
    /// A handle on Redis at `url`; connects lazily, so Redis need not be up yet.
    /// No key prefix, any pair, the default [`candles_core::TimeBounds`] (tests, tools).
    pub fn connect(url: &str, interval: Interval, history_max: usize) -> Result<Store, StoreError> {
        let check = RedisCheck::new(interval, Vec::new(), candles_core::TimeBounds::default());
        Store::connect_with(url, "", history_max, check)
    }

    /// Like [`Store::connect`], with a deployment `prefix` on every key and channel
    /// ([`crate::redis_input::default_prefix`]) and the [`RedisCheck`] every candle read back
    /// must pass. Its reads use the keys of the check's finest interval.
    pub fn connect_with(
        url: &str,
        prefix: &str,
        history_max: usize,
        check: RedisCheck,
    ) -> Result<Store, StoreError> {
        let interval = check.intervals().finest();
        let client = redis::Client::open(url).map_err(err("URL parsing"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(err("connection setup"))?;
        Ok(Store {
            conn,
            prefix: prefix.into(),
            keys: Keys::with_prefix(prefix, interval),
            script: Arc::new(redis::Script::new(PUBLISH_FINAL)),
            history_max,
            check: Arc::new(check),
        })
    }

    /// The validation applied to candles read back from Redis.
    pub fn check(&self) -> &RedisCheck {
        &self.check
    }

    /// The key names its reads use.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The names of the connectors' reports under this deployment's prefix.
    pub fn reports(&self) -> candles_reports::Keys {
        candles_reports::Keys::new(&self.prefix)
    }

    /// The stored verdicts on `pairs`, every exchange: per pair and exchange, the latest
    /// mismatch (when older than the latest verdict) and the latest verdict. Stored verdicts
    /// that fail [`HubVerdict::check`] are skipped.
    pub async fn verdicts(&self, pairs: &[Pair]) -> Result<Vec<HubVerdict>, StoreError> {
        let keys = self.reports();
        let mut conn = self.conn.clone();
        let mut out = Vec::new();
        for &pair in pairs {
            for exchange in candles_core::Exchange::ALL {
                let source = Source::Exchange(exchange);
                let (latest, mismatch) =
                    candles_reports::read_latest(&mut conn, &keys, pair, source)
                        .await
                        .map_err(err("reading verdicts"))?;
                let [mismatch, latest] = [mismatch, latest]
                    .map(|v| v.and_then(|v| HubVerdict::check(v, &self.check).ok()));
                if let Some(m) = mismatch
                    && latest
                        .as_ref()
                        .is_none_or(|l| (m.start, m.checked_at) < (l.start, l.checked_at))
                {
                    out.push(m);
                }
                out.extend(latest);
            }
        }
        Ok(out)
    }

    /// The same handle (one connection) reading the keys of `interval`.
    pub fn for_interval(&self, interval: Interval) -> Store {
        Store {
            keys: Keys::with_prefix(&self.prefix, interval),
            ..self.clone()
        }
    }

    /// The key names of `interval`: its own when it is the handle's, else made anew.
    fn keys_of(&self, interval: Interval) -> std::borrow::Cow<'_, Keys> {
        if interval == self.keys.interval {
            std::borrow::Cow::Borrowed(&self.keys)
        } else {
            std::borrow::Cow::Owned(Keys::with_prefix(&self.prefix, interval))
        }
    }

    /// Publishes a final candle unless its identity (or a later window of its series) is already
    /// in history. `true` if this call published it.
    pub async fn publish_final(&self, candle: &Candle) -> Result<bool, StoreError> {
        let payload = stamped(candle);
        let keys = self.keys_of(candle.interval);
        let mut conn = self.conn.clone();
        let published: i64 = self
            .script
            .key(keys.history(candle.pair, candle.source))
            .key(keys.markets())
            .arg(candle.start.0)
            .arg(payload)
            .arg(self.history_max)
            .arg(keys.channel(candle.pair))
            .arg(format!("{} {}", candle.pair, candle.source))
            .arg(self.check.latest_start(Micros::now()).0)
            .invoke_async(&mut conn)
            .await
            .map_err(err("publish of a final candle"))?;
        if published < 0 {
            tracing::warn!(pair = %candle.pair, source = %candle.source, start = %candles_core::bounds::Utc(candle.start),
                "refused to publish a final candle starting beyond the plausible lead (--max-trade-lead)");
        }
        Ok(published == 1)
    }

    /// Publishes an in-progress candle (not stored).
    pub async fn publish_live(&self, candle: &Candle) -> Result<(), StoreError> {
        let payload = stamped(candle);
        let mut conn = self.conn.clone();
        redis::cmd("PUBLISH")
            .arg(self.keys_of(candle.interval).channel(candle.pair))
            .arg(payload)
            .query_async::<i64>(&mut conn)
            .await
            .map_err(err("publish of a live candle"))?;
        Ok(())
    }

    /// The last `n` final candles of a series of its interval, oldest first.
    pub async fn history(
        &self,
        pair: Pair,
        source: Source,
        n: usize,
    ) -> Result<Vec<v1::Candle>, StoreError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let raw: Vec<Vec<u8>> = redis::cmd("ZRANGE")
            .arg(self.keys.history(pair, source))
            .arg(-(n as i64))
            .arg(-1)
            .query_async(&mut conn)
            .await
            .map_err(err("history read"))?;
        let now = Micros::now();
        Ok(raw
            .iter()
            .filter_map(
                |bytes| match self.check.check(bytes, now, ReadFrom::History) {
                    Ok((wire, c))
                        if c.pair == pair
                            && c.source == source
                            && c.interval == self.keys.interval
                            && c.is_final =>
                    {
                        Some(wire)
                    }
                    Ok(_) => {
                        reject("wrong_series", bytes);
                        None
                    }
                    Err(reason) => {
                        reject(reason, bytes);
                        None
                    }
                },
            )
            .collect())
    }

    /// The newest final candle of a series, if any (to seed an engine after a (re)assignment).
    pub async fn last_final(
        &self,
        pair: Pair,
        source: Source,
    ) -> Result<Option<Candle>, StoreError> {
        let mut newest = self.history(pair, source, 1).await?;
        Ok(newest.pop().and_then(|wire| Candle::try_from(&wire).ok()))
    }

    /// Every series that has a final candle, grouped by pair (sorted), sources in
    /// [`Source::ALL`] order.
    pub async fn markets(&self) -> Result<Vec<(Pair, Vec<Source>)>, StoreError> {
        let mut conn = self.conn.clone();
        let members: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.keys.markets())
            .query_async(&mut conn)
            .await
            .map_err(err("market list read"))?;
        let mut series: Vec<(Pair, Source)> = members
            .iter()
            .filter_map(|m| {
                let (pair, source) = m.split_once(' ')?;
                Some((Pair::parse(pair).ok()?, Source::from_str(source).ok()?))
            })
            .filter(|(pair, _)| self.check.serves(*pair))
            .take(MAX_MARKETS)
            .collect();
        series.sort();
        let mut out: Vec<(Pair, Vec<Source>)> = Vec::new();
        for (pair, source) in series {
            match out.last_mut() {
                Some((p, sources)) if *p == pair => sources.push(source),
                _ => out.push((pair, vec![source])),
            }
        }
        Ok(out)
    }

    /// A round trip, for health checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map_err(err("PING"))?;
        Ok(())
    }
}

/// The wire form of `candle`, stamped with the moment it is published (`published_at`).
fn stamped(candle: &Candle) -> Vec<u8> {
    let mut wire = v1::Candle::from(candle);
    wire.published_at = Some(candles_proto::timestamp(Micros::now()));
    wire.encode_to_vec()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_include_the_interval() {
        let k = Keys::new(Interval::parse("500ms").unwrap());
        let pair = Pair::parse("btcusdt").unwrap();
        assert_eq!(k.channel(pair), "candles.v1.500ms.BTC-USDT");
        assert_eq!(k.pattern(), "candles.v1.500ms.*");
        assert_eq!(
            k.history(pair, Source::Composite),
            "candles.v1.500ms.history.BTC-USDT.composite"
        );
        assert_eq!(k.markets(), "candles.v1.500ms.markets");
        assert_ne!(
            Keys::new(Interval::seconds(5)).channel(pair),
            k.channel(pair)
        );
    }
}
