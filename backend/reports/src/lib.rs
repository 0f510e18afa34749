//! The reports side channel: what a connector checks about its exchange, kept in Redis for
//! every service instance to serve.
//!
//! A connector is the one process that talks to its exchange's REST API (at the exchange's
//! pace), so it is the one that checks our candles against the exchange's own and reads the
//! exchange's listing. It writes what it found here ([`Reporter`]); every candles-service
//! instance reads it back ([`read_latest`], [`read_listings`]) and relays each new verdict
//! from [`Keys::verifications`] to the gRPC clients that asked for verifications.
//!
//! The layout (every name under the deployment's prefix, see [`default_prefix`]):
//! - `candles.v1.verifications`: Pub/Sub channel, one protobuf `candles.v1.Verification` per
//!   verdict, its tally included;
//! - `candles.v1.verification.latest.{pair}.{source}`: the latest verdict (protobuf);
//! - `candles.v1.verification.mismatch.{pair}.{source}`: the latest mismatch (protobuf), so a
//!   client that subscribes later still sees what differed;
//! - `candles.v1.listings.{exchange}`: hash, pair → protobuf `candles.v1.Listing`.
//!
//! The tally lives in the verdict: one connector per exchange keeps it, seeded at start from the
//! latest verdict stored here ([`read_latest`]), so it survives a connector restart.
//! Everything read back is decoded and bounded ([`MAX_REPORT_BYTES`]); what fails is skipped.
//!
//! The connector verifies the final 1-minute candles the services publish on
//! [`candle_channel`] (the services' own channel name, from this one function).
//!
//! A report must never stop trades: [`Reporter::connect_in_background`] returns at once and
//! connects (and, once connected, reconnects) on its own; until then every write fails with
//! [`not_connected`] and the caller carries on.

use candles_core::retry::Doubling;
use candles_core::{Exchange, Interval, Pair, Source};
use candles_proto::v1;
use prost::Message as _;
use redis::AsyncCommands as _;
use redis::aio::ConnectionManager;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

/// The largest encoded report accepted from Redis (a verdict with every field differing is
/// well under 1 KB).
pub const MAX_REPORT_BYTES: usize = 8192;

/// The deployment prefix for a Redis URL: `dbN.` for a database other than 0, else empty, so
/// deployments sharing a server on different databases never share a Pub/Sub channel (Pub/Sub
/// ignores the database number).
pub fn default_prefix(url: &str) -> String {
    let db = redis::parse_redis_url(url).and_then(|u| {
        u.path_segments()
            .and_then(|mut s| s.next().map(str::to_string))
    });
    match db {
        Some(db) if !db.is_empty() && db != "0" => format!("db{db}."),
        _ => String::new(),
    }
}

/// The Pub/Sub channel on which the services publish `pair`'s candles of `interval` (final and
/// live, every source), under the deployment `prefix`: `{prefix}candles.v1.{interval}.{pair}`.
pub fn candle_channel(prefix: &str, interval: Interval, pair: Pair) -> String {
    format!("{prefix}candles.v1.{interval}.{pair}")
}

/// The error of a write before the first connection was made.
pub fn not_connected() -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::Io,
        "not connected to Redis yet (connecting in the background)",
    ))
}

/// The waits between two attempts of the first connection.
const CONNECT_RETRY: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(30));

/// The names of the reports' channel and keys under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// The names under `prefix` (e.g. [`default_prefix`]'s).
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_string(),
        }
    }

    /// The Pub/Sub channel every verdict is published on.
    pub fn verifications(&self) -> String {
        format!("{}candles.v1.verifications", self.prefix)
    }

    /// The key holding the latest verdict of `pair` from `source`.
    pub fn latest(&self, pair: Pair, source: Source) -> String {
        format!(
            "{}candles.v1.verification.latest.{pair}.{source}",
            self.prefix
        )
    }

    /// The key holding the latest mismatch of `pair` from `source`.
    pub fn mismatch(&self, pair: Pair, source: Source) -> String {
        format!(
            "{}candles.v1.verification.mismatch.{pair}.{source}",
            self.prefix
        )
    }

    /// The services' candle channel of `pair` and `interval` under this prefix
    /// ([`candle_channel`]).
    pub fn candles(&self, interval: Interval, pair: Pair) -> String {
        candle_channel(&self.prefix, interval, pair)
    }

    /// The hash of `exchange`'s listings: pair → `candles.v1.Listing`.
    pub fn listings(&self, exchange: Exchange) -> String {
        format!("{}candles.v1.listings.{exchange}", self.prefix)
    }
}

/// Decodes a stored or published verdict; `None` for one too large or not a verdict.
pub fn decode_verification(bytes: &[u8]) -> Option<v1::Verification> {
    if bytes.len() > MAX_REPORT_BYTES {
        return None;
    }
    v1::Verification::decode(bytes).ok()
}

/// Where a connector writes its reports. Clones share the connection.
#[derive(Clone)]
pub struct Reporter {
    conn: Arc<OnceCell<ConnectionManager>>,
    keys: Keys,
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reporter")
            .field("keys", &self.keys)
            .field("connected", &self.is_connected())
            .finish()
    }
}

impl Reporter {
    /// Connects to `url` (reconnecting on its own later), names under `prefix` (`None`:
    /// [`default_prefix`] of the URL). Fails when Redis cannot be reached now.
    pub async fn connect(url: &str, prefix: Option<&str>) -> redis::RedisResult<Reporter> {
        let (client, keys) = Reporter::parse(url, prefix)?;
        let conn = ConnectionManager::new(client).await?;
        Ok(Reporter {
            conn: Arc::new(OnceCell::new_with(Some(conn))),
            keys,
        })
    }

    /// A reporter to `url` that connects in the background (call from a Tokio runtime): it
    /// returns at once, tries again after doubling waits (0.5 s up to 30 s) while Redis cannot
    /// be reached, telling `on_failure` of every failed attempt, and reconnects on its own once
    /// connected. Writes before the first connection fail with [`not_connected`]. Only a URL
    /// that does not parse is an error.
    pub fn connect_in_background(
        url: &str,
        prefix: Option<&str>,
        on_failure: impl Fn(&redis::RedisError) + Send + 'static,
    ) -> redis::RedisResult<Reporter> {
        let (client, keys) = Reporter::parse(url, prefix)?;
        let cell = Arc::new(OnceCell::new());
        let reporter = Reporter {
            conn: cell.clone(),
            keys,
        };
        tokio::spawn(async move {
            let mut wait = Doubling::new(CONNECT_RETRY.0, CONNECT_RETRY.1);
            loop {
                match ConnectionManager::new(client.clone()).await {
                    Ok(conn) => {
                        let _ = cell.set(conn);
                        return;
                    }
                    Err(e) => on_failure(&e),
                }
                tokio::time::sleep(wait.next_delay()).await;
            }
        });
        Ok(reporter)
    }

    fn parse(url: &str, prefix: Option<&str>) -> redis::RedisResult<(redis::Client, Keys)> {
        let client = redis::Client::open(url)?;
        let prefix = prefix.map_or_else(|| default_prefix(url), str::to_string);
        Ok((client, Keys::new(&prefix)))
    }

    /// Whether the first connection has been made (later outages are the connection's own to
    /// recover from).
    pub fn is_connected(&self) -> bool {
        self.conn.initialized()
    }

    /// The shared connection, or [`not_connected`].
    fn conn(&self) -> redis::RedisResult<ConnectionManager> {
        self.conn.get().cloned().ok_or_else(not_connected)
    }

    /// The names this reporter writes.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Stores `verdict` as the latest of its pair and source (and as the latest mismatch when it
    /// is one) and publishes it, in one transaction.
    pub async fn verification(&mut self, verdict: &v1::Verification) -> redis::RedisResult<()> {
        let (Ok(pair), Ok(source)) = (Pair::parse(&verdict.pair), verdict.source.parse::<Source>())
        else {
            return Err(redis::RedisError::from((
                redis::ErrorKind::Client,
                "a verdict names an unknown pair or source",
            )));
        };
        let bytes = verdict.encode_to_vec();
        let mut pipe = redis::pipe();
        pipe.atomic().set(self.keys.latest(pair, source), &bytes);
        if verdict.outcome == v1::Outcome::Mismatch as i32 {
            pipe.set(self.keys.mismatch(pair, source), &bytes);
        }
        pipe.publish(self.keys.verifications(), &bytes);
        pipe.query_async::<()>(&mut self.conn()?).await
    }

    /// Replaces `exchange`'s listings with `listings` (one per pair it was asked about).
    pub async fn listings(
        &mut self,
        exchange: Exchange,
        listings: &[(Pair, v1::Listing)],
    ) -> redis::RedisResult<()> {
        let key = self.keys.listings(exchange);
        let mut pipe = redis::pipe();
        pipe.atomic().del(&key);
        for (pair, listing) in listings {
            pipe.hset(&key, pair.to_string(), listing.encode_to_vec());
        }
        pipe.query_async::<()>(&mut self.conn()?).await
    }

    /// The latest verdict and the latest mismatch stored for `pair` from `source` under this
    /// reporter's names ([`read_latest`]).
    pub async fn read_latest(
        &self,
        pair: Pair,
        source: Source,
    ) -> redis::RedisResult<(Option<v1::Verification>, Option<v1::Verification>)> {
        read_latest(&mut self.conn()?, &self.keys, pair, source).await
    }
}

/// The latest verdict and the latest mismatch stored for `pair` from `source`.
pub async fn read_latest(
    conn: &mut ConnectionManager,
    keys: &Keys,
    pair: Pair,
    source: Source,
) -> redis::RedisResult<(Option<v1::Verification>, Option<v1::Verification>)> {
    let (latest, mismatch): (Option<Vec<u8>>, Option<Vec<u8>>) = redis::pipe()
        .get(keys.latest(pair, source))
        .get(keys.mismatch(pair, source))
        .query_async(conn)
        .await?;
    Ok((
        latest.as_deref().and_then(decode_verification),
        mismatch.as_deref().and_then(decode_verification),
    ))
}

/// Every exchange's stored listings, per pair (exchanges in [`Exchange::ALL`] order).
pub async fn read_listings(
    conn: &mut ConnectionManager,
    keys: &Keys,
) -> redis::RedisResult<BTreeMap<String, Vec<v1::Listing>>> {
    let mut by_pair: BTreeMap<String, Vec<v1::Listing>> = BTreeMap::new();
    for exchange in Exchange::ALL {
        let stored: Vec<(String, Vec<u8>)> = conn.hgetall(keys.listings(exchange)).await?;
        for (pair, bytes) in stored {
            if bytes.len() > MAX_REPORT_BYTES {
                continue;
            }
            if let Ok(listing) = v1::Listing::decode(bytes.as_slice()) {
                by_pair.entry(pair).or_default().push(listing);
            }
        }
    }
    Ok(by_pair)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn prefix_follows_the_database_number() {
        assert_eq!(default_prefix("redis://cache:6379/"), "");
        assert_eq!(default_prefix("redis://cache:6379/0"), "");
        assert_eq!(default_prefix("redis://cache:6379/3"), "db3.");
        assert_eq!(default_prefix("rediss://u:p@cache:6380/12"), "db12.");
    }

    #[test]
    fn names_carry_the_prefix_pair_and_source() {
        let keys = Keys::new("db3.");
        let pair = Pair::parse("DOGE-USD").unwrap();
        assert_eq!(keys.verifications(), "db3.candles.v1.verifications");
        assert_eq!(
            keys.latest(pair, Source::Exchange(Exchange::Kraken)),
            "db3.candles.v1.verification.latest.DOGE-USD.kraken"
        );
        assert_eq!(
            keys.mismatch(pair, Source::Exchange(Exchange::Kraken)),
            "db3.candles.v1.verification.mismatch.DOGE-USD.kraken"
        );
        assert_eq!(
            keys.listings(Exchange::Coinbase),
            "db3.candles.v1.listings.coinbase"
        );
    }

    #[test]
    fn the_candle_channel_is_the_services_name() {
        let pair = Pair::parse("btcusdt").unwrap();
        // The names candles-service publishes on (backend/service/src/store.rs, `Keys::channel`).
        assert_eq!(
            candle_channel("", Interval::parse("500ms").unwrap(), pair),
            "candles.v1.500ms.BTC-USDT"
        );
        assert_eq!(
            Keys::new("db3.").candles(Interval::seconds(60), pair),
            "db3.candles.v1.1m.BTC-USDT"
        );
    }

    #[tokio::test]
    async fn an_unreachable_redis_does_not_stop_the_start_and_writes_fail_meanwhile() {
        let failures = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = failures.clone();
        let mut reporter =
            Reporter::connect_in_background("redis://127.0.0.1:1/", None, move |_| {
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            })
            .unwrap();
        assert!(!reporter.is_connected());
        let v = v1::Verification {
            pair: "BTC-USDT".into(),
            source: "binance".into(),
            ..Default::default()
        };
        let err = reporter.verification(&v).await.unwrap_err();
        assert!(err.to_string().contains("not connected"), "{err}");
        // Each attempt is the connection manager's own few retries (a few seconds).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while failures.load(std::sync::atomic::Ordering::Relaxed) < 1 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no attempt reported"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(!reporter.is_connected());
        assert!(Reporter::connect_in_background("nonsense", None, |_| {}).is_err());
    }

    #[test]
    fn oversized_or_garbage_reports_are_skipped() {
        assert!(decode_verification(&vec![0u8; MAX_REPORT_BYTES + 1]).is_none());
        assert!(decode_verification(&[0xff, 0xff, 0xff]).is_none());
        let v = v1::Verification {
            pair: "BTC-USDT".into(),
            source: "binance".into(),
            outcome: v1::Outcome::Match as i32,
            ..Default::default()
        };
        assert_eq!(decode_verification(&v.encode_to_vec()), Some(v));
    }
}
