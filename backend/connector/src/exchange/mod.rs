//! One module per exchange behind one small trait, [`Venue`].
//!
//! Each exchange folder has the same two files: `messages.rs` (serde structs that mirror the
//! exchange's JSON, numbers kept as their exact text, each with a real payload in its doc
//! comment) and `mod.rs` (URLs, subscribe and keep-alive messages, frame classification, REST
//! backfill and listing requests, and the `TryFrom` normalization into [`Trade`]). Adding an
//! exchange touches no other exchange.

pub mod binance;
pub mod coinbase;
pub mod kraken;

use crate::error::ParseError;
use crate::pacer::RestLimit;
use candles_core::symbols::pair_from_symbol;
use candles_core::trade::parse_positive_decimal;
use candles_core::verify::ExchangeCandle;
use candles_core::{Decimal, Exchange, Micros, Pair, Side, Trade};

/// What one text frame from the exchange means to the session.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// New trades, in the order the exchange sent them.
    Trades(Vec<Trade>),
    /// Recent trades the exchange replays on subscribe (Kraken's snapshot, Coinbase's
    /// `last_match`). On a pair's first subscription they only set the reference trade id; later
    /// they are deduplicated against what was published, and any newer one is a missed trade.
    Snapshot(Vec<Trade>),
    /// A liveness message. Some exchanges report each pair's latest trade id in it (Coinbase),
    /// which reveals trades missed at the end of a burst.
    Heartbeat(Vec<(Pair, u64)>),
    /// A subscription was confirmed.
    Ack,
    /// The answer to our application-level ping.
    Pong,
    /// The server is about to go away: reconnect now.
    ServerShutdown,
    /// The exchange reported an error (e.g. a subscription it refused).
    ExchangeError(String),
    /// Known and irrelevant (another channel, a status message, our own request echoed).
    Ignore,
}

/// What to send to keep a quiet connection alive and prove it is not dead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keepalive {
    /// A WebSocket protocol ping frame; the server answers with a pong frame.
    Ping,
    /// An application-level text message (Kraken's `{"method":"ping"}`).
    Text(String),
}

/// Trades known to be missing for one pair: ids in `after_id + 1 ..= until_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// The pair.
    pub pair: Pair,
    /// The last id published before the gap.
    pub after_id: u64,
    /// The trade time of that trade (Kraken's REST pages by time).
    pub after_time: Micros,
    /// The last missing id (inclusive).
    pub until_id: u64,
}

impl Gap {
    /// How many ids are missing.
    pub fn len(&self) -> u64 {
        self.until_id.saturating_sub(self.after_id)
    }

    /// Whether no id is missing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `id` is one of the missing ids.
    pub fn contains(&self, id: u64) -> bool {
        id > self.after_id && id <= self.until_id
    }
}

/// One page of a REST backfill.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The trades on the page, any order, possibly outside the gap (the caller filters).
    pub trades: Vec<Trade>,
    /// The cursor for the next request, or `None` when the gap is covered or the exchange has
    /// nothing more.
    pub next: Option<String>,
}

/// A REST trade together with the pair it was requested for (REST rows do not name their pair),
/// for the `TryFrom` into [`Trade`].
#[derive(Debug, Clone, Copy)]
pub struct ForPair<'a, T>(pub &'a T, pub Pair);

/// What a REST listing query said about one pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listing {
    /// Listed and trading.
    Trading,
    /// Listed, but the exchange reports this status (e.g. `BREAK`, `delisted`).
    Status(String),
    /// Not listed.
    NotListed,
}

/// One exchange's protocol: everything the generic session needs to know about it.
pub trait Venue: Send + Sync + std::fmt::Debug + 'static {
    /// Which exchange.
    fn exchange(&self) -> Exchange;
    /// The real public WebSocket endpoint.
    fn default_ws_url(&self) -> &'static str;
    /// The real public REST base URL.
    fn default_rest_url(&self) -> &'static str;
    /// The messages to send right after connecting.
    fn subscribe_messages(&self, pairs: &[Pair]) -> Vec<String>;
    /// Classifies and parses one text frame; `received` stamps the trades.
    fn parse_frame(&self, text: &str, received: Micros) -> Result<Frame, ParseError>;
    /// The message to send periodically; `seq` numbers application pings.
    fn keepalive(&self, seq: u64) -> Keepalive;
    /// The REST URL for one page of trades covering `gap` (`cursor` from the previous page).
    fn backfill_url(&self, rest_url: &str, gap: &Gap, cursor: Option<&str>) -> String;
    /// Parses one REST trades page.
    fn parse_backfill(&self, body: &str, gap: &Gap, received: Micros) -> Result<Page, ParseError>;
    /// The REST URL that tells whether `pair` is listed.
    fn listing_url(&self, rest_url: &str, pair: Pair) -> String;
    /// Reads the answer to [`Venue::listing_url`] (`status` is the HTTP status code).
    fn parse_listing(&self, status: u16, body: &str, pair: Pair) -> Result<Listing, ParseError>;
    /// The exchange's documented public REST limit, with a margin, as a token bucket.
    fn rest_limit(&self) -> RestLimit;
    /// What one request to `url` costs in [`Venue::rest_limit`]'s unit (Binance weighs its
    /// endpoints; the others count requests).
    fn rest_cost(&self, _url: &str) -> f64 {
        1.0
    }
    /// The REST URL of the exchange's own 1-minute candles around the minute starting at
    /// `start` (Binance klines, Kraken OHLC, Coinbase candles).
    fn candle_url(&self, rest_url: &str, pair: Pair, start: Micros) -> String;
    /// Reads the answer to [`Venue::candle_url`]: the exchange's candle of the minute starting
    /// at `start`, `None` when it has no final candle for it (yet) at `now`.
    fn parse_candle(
        &self,
        body: &str,
        pair: Pair,
        start: Micros,
        now: Micros,
    ) -> Result<Option<ExchangeCandle>, ParseError>;
    /// Whether an answer says "too many requests" (HTTP 429; Binance's 418 ban).
    fn is_rate_limited(&self, status: u16, _body: &str) -> bool {
        status == 429 || status == 418
    }
}

/// The protocol of `exchange`.
pub fn venue(exchange: Exchange) -> &'static dyn Venue {
    match exchange {
        Exchange::Binance => &binance::Binance,
        Exchange::Kraken => &kraken::Kraken,
        Exchange::Coinbase => &coinbase::Coinbase,
    }
}

/// Joins a base URL and a path without doubling or dropping the slash.
pub(crate) fn join_url(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

/// Which message a trade is read from: its name in errors (`"binance frame"`) and its exchange.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Origin {
    /// What is being parsed, for errors.
    pub what: &'static str,
    /// Whose message it is.
    pub exchange: Exchange,
}

impl Origin {
    /// The origin `what` of `exchange`.
    pub(crate) const fn new(what: &'static str, exchange: Exchange) -> Origin {
        Origin { what, exchange }
    }

    /// The pair of the exchange's `symbol`, read from `field`.
    pub(crate) fn pair(self, field: &'static str, symbol: &str) -> Result<Pair, ParseError> {
        pair_from_symbol(self.exchange, symbol)
            .map_err(|e| ParseError::field(self.what, field, symbol, e.reason))
    }

    /// A trade from the exchange's text of its price and quantity (`[(field, text); 2]`, read
    /// as exact positive decimals), stamped as received at its trade time (the caller restamps).
    pub(crate) fn trade(
        self,
        (pair, id): (Pair, u64),
        side: Side,
        time: Micros,
        [price, quantity]: [(&'static str, &str); 2],
    ) -> Result<Trade, ParseError> {
        Ok(Trade {
            exchange: self.exchange,
            pair,
            id,
            price: decimal(self.what, price.0, price.1)?,
            quantity: decimal(self.what, quantity.0, quantity.1)?,
            side,
            time,
            received: time,
            complete_since: None,
            after_unfilled_gap: false,
        })
    }
}

/// Converts parsed rows into trades stamped as received at `received`; the first row that does
/// not convert is the error.
pub(crate) fn stamped<R>(
    rows: impl IntoIterator<Item = R>,
    received: Micros,
) -> Result<Vec<Trade>, ParseError>
where
    Trade: TryFrom<R, Error = ParseError>,
{
    rows.into_iter()
        .map(|row| Trade::try_from(row).map(|t| Trade { received, ..t }))
        .collect()
}

/// An exact positive decimal from the exchange's text.
pub(crate) fn decimal(
    what: &'static str,
    field: &'static str,
    text: &str,
) -> Result<Decimal, ParseError> {
    parse_positive_decimal(field, text).map_err(|e| ParseError::field(what, field, text, e.reason))
}

/// An RFC 3339 timestamp (`2023-09-25T07:48:36.925533Z`) as microseconds since the epoch.
pub(crate) fn rfc3339_micros(
    what: &'static str,
    field: &'static str,
    text: &str,
) -> Result<Micros, ParseError> {
    Micros::parse_rfc3339(text).map_err(|e| ParseError::field(what, field, text, e))
}

/// An exact non-negative decimal from a candle row's cell: a string (`"0.10820000"`) or a
/// JSON number, whose text serde_json keeps exactly (`arbitrary_precision`).
pub(crate) fn cell_decimal(
    what: &'static str,
    field: &'static str,
    cell: &serde_json::Value,
) -> Result<Decimal, ParseError> {
    let text = match cell {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        other => return Err(ParseError::field(what, field, other, "not a decimal")),
    };
    match text.parse::<Decimal>() {
        Ok(d) if !d.is_sign_negative() => Ok(d),
        Ok(_) => Err(ParseError::field(what, field, &text, "negative")),
        Err(e) => Err(ParseError::field(what, field, &text, e)),
    }
}

/// An integer cell of a candle row (times, counts).
pub(crate) fn cell_int(
    what: &'static str,
    field: &'static str,
    cell: &serde_json::Value,
) -> Result<i64, ParseError> {
    cell.as_i64()
        .ok_or_else(|| ParseError::field(what, field, cell, "not an integer"))
}

/// The rows of a candle answer: a JSON array of arrays of at least `width` cells.
pub(crate) fn candle_rows(
    what: &'static str,
    rows: &serde_json::Value,
    width: usize,
) -> Result<Vec<Vec<serde_json::Value>>, ParseError> {
    let rows = rows
        .as_array()
        .ok_or_else(|| ParseError::field(what, "rows", rows, "not an array"))?;
    rows.iter()
        .map(|row| match row.as_array() {
            Some(cells) if cells.len() >= width => Ok(cells.clone()),
            _ => Err(ParseError::field(
                what,
                "row",
                row,
                format!("not {width} cells"),
            )),
        })
        .collect()
}

/// Milliseconds since the epoch as microseconds, rejecting values that would overflow.
pub(crate) fn millis_micros(
    what: &'static str,
    field: &'static str,
    ms: i64,
) -> Result<Micros, ParseError> {
    ms.checked_mul(1_000)
        .map(Micros)
        .ok_or_else(|| ParseError::field(what, field, ms, "out of range"))
}

#[cfg(test)]
pub(crate) mod samples {
    //! Loads the captured exchange messages in `testdata/exchanges/*.jsonl` (kept in the
    //! repository, so a plain clone has them; `testdata/README.md` says where they come from).

    /// The lines of one sample file, numbered from 1 like the research notes.
    pub fn lines(file: &str) -> Vec<(usize, String)> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata/exchanges")
            .join(file);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| (i + 1, l.to_string()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_urls() {
        assert_eq!(
            rfc3339_micros("t", "time", "2023-09-25T07:48:36.925533Z").unwrap(),
            Micros(1_695_628_116_925_533)
        );
        assert!(rfc3339_micros("t", "time", "yesterday").is_err());
        assert!(millis_micros("t", "T", i64::MAX).is_err());
        assert_eq!(join_url("http://a/", "/b"), "http://a/b");
    }
}
