//! Coinbase Exchange ws-feed: the public `matches` and `heartbeat` channels over
//! `wss://ws-feed.exchange.coinbase.com`, backfill from `GET /products/{id}/trades?after=`.
//!
//! Facts relied on (testdata/exchanges/coinbase.md): `trade_id` is contiguous per product
//! (`sequence` is not: other book events use numbers); `side` is the MAKER's side, so the taker
//! is the opposite; `last_match` replays the latest trade after subscribing; heartbeats carry
//! `last_trade_id` every second; REST pages go newest first, `after=X` giving ids below X.

pub mod messages;

use super::{
    ForPair, Frame, Gap, Keepalive, Origin, Page, Venue, candle_rows, cell_decimal, join_url,
    rfc3339_micros, stamped,
};
use crate::error::ParseError;
use crate::listing::{PairListing, Status};
use crate::pacer::RestLimit;
use candles_core::symbols::{pair_from_symbol, rest_symbol, ws_symbol};
use candles_core::verify::{ExchangeCandle, MINUTE};
use candles_core::{Exchange, Micros, Pair, Side, Trade};
use messages::{Envelope, Heartbeat, Match, Product, RestError, RestTrade};

const WHAT: &str = "coinbase frame";
const WHAT_REST: &str = "coinbase trades";
/// Coinbase's largest page.
const PAGE_LIMIT: u64 = 1000;

const WS: Origin = Origin::new(WHAT, Exchange::Coinbase);
const REST: Origin = Origin::new(WHAT_REST, Exchange::Coinbase);

/// The Coinbase Exchange protocol.
#[derive(Debug, Clone, Copy, Default)]
pub struct Coinbase;

/// The taker's side from the maker's.
fn taker_side(what: &'static str, maker: &str) -> Result<Side, ParseError> {
    match maker {
        "sell" => Ok(Side::Buy),
        "buy" => Ok(Side::Sell),
        _ => Err(ParseError::field(
            what,
            "side",
            maker,
            "expected buy or sell",
        )),
    }
}

impl TryFrom<&Match> for Trade {
    type Error = ParseError;
    fn try_from(m: &Match) -> Result<Trade, ParseError> {
        let time = rfc3339_micros(WHAT, "time", &m.time)?;
        let (pair, side) = (
            WS.pair("product_id", &m.product_id)?,
            taker_side(WHAT, &m.side)?,
        );
        WS.trade(
            (pair, m.trade_id),
            side,
            time,
            [("price", &m.price), ("size", &m.size)],
        )
    }
}

impl TryFrom<ForPair<'_, RestTrade>> for Trade {
    type Error = ParseError;
    fn try_from(ForPair(m, pair): ForPair<'_, RestTrade>) -> Result<Trade, ParseError> {
        let time = rfc3339_micros(WHAT_REST, "time", &m.time)?;
        let side = taker_side(WHAT_REST, &m.side)?;
        REST.trade(
            (pair, m.trade_id),
            side,
            time,
            [("price", &m.price), ("size", &m.size)],
        )
    }
}

impl Venue for Coinbase {
    /// Public endpoints: 10 requests a second, bursts of 15; 10 at once, then 8 a second.
    fn rest_limit(&self) -> RestLimit {
        RestLimit {
            burst: 10.0,
            per_second: 8.0,
        }
    }

    fn exchange(&self) -> Exchange {
        Exchange::Coinbase
    }

    fn default_ws_url(&self) -> &'static str {
        "wss://ws-feed.exchange.coinbase.com"
    }

    fn default_rest_url(&self) -> &'static str {
        "https://api.exchange.coinbase.com"
    }

    fn subscribe_messages(&self, pairs: &[Pair]) -> Vec<String> {
        let ids: Vec<String> = pairs
            .iter()
            .map(|p| ws_symbol(Exchange::Coinbase, *p))
            .collect();
        vec![
            serde_json::json!({"type": "subscribe", "product_ids": ids, "channels": ["matches", "heartbeat"]})
                .to_string(),
        ]
    }

    fn parse_frame(&self, text: &str, received: Micros) -> Result<Frame, ParseError> {
        let env: Envelope<'_> = serde_json::from_str(text).map_err(ParseError::json(WHAT))?;
        match env.kind.as_ref() {
            "match" | "last_match" => {
                let m: Match = serde_json::from_str(text).map_err(ParseError::json(WHAT))?;
                let mut t = Trade::try_from(&m)?;
                t.received = received;
                Ok(if env.kind == "match" {
                    Frame::Trades(vec![t])
                } else {
                    Frame::Snapshot(vec![t])
                })
            }
            "heartbeat" => {
                let h: Heartbeat = serde_json::from_str(text).map_err(ParseError::json(WHAT))?;
                let pair = pair_from_symbol(Exchange::Coinbase, &h.product_id)
                    .map_err(|e| ParseError::field(WHAT, "product_id", &h.product_id, e.reason))?;
                Ok(Frame::Heartbeat(vec![(pair, h.last_trade_id)]))
            }
            "subscriptions" => Ok(Frame::Ack),
            "error" => Ok(Frame::ExchangeError(match (env.message, env.reason) {
                (Some(m), Some(r)) => format!("{m}: {r}"),
                (Some(m), None) => m,
                (None, Some(r)) => r,
                (None, None) => "error without a message".into(),
            })),
            // Other channels, and our own `subscribe` request shape.
            _ => Ok(Frame::Ignore),
        }
    }

    fn keepalive(&self, _seq: u64) -> Keepalive {
        Keepalive::Ping
    }

    fn backfill_url_for(
        &self,
        rest_url: &str,
        symbol: &str,
        gap: &Gap,
        cursor: Option<&str>,
    ) -> String {
        // Newest first below `after`: start just above the last missing id, walk down. An
        // open-ended gap (catch-up) starts from the newest trade.
        let after = match cursor {
            Some(c) => format!("after={c}&"),
            None if gap.until_id == u64::MAX => String::new(),
            None => format!("after={}&", gap.until_id + 1),
        };
        let limit = gap.len().clamp(1, PAGE_LIMIT);
        let path = format!("/products/{}/trades", symbol);
        format!("{}?{after}limit={limit}", join_url(rest_url, &path))
    }

    fn parse_backfill(&self, body: &str, gap: &Gap, received: Micros) -> Result<Page, ParseError> {
        if let Ok(err) = serde_json::from_str::<RestError>(body) {
            return Err(ParseError::field(
                WHAT_REST,
                "message",
                err.message,
                "the exchange refused",
            ));
        }
        let rows: Vec<RestTrade> =
            serde_json::from_str(body).map_err(ParseError::json(WHAT_REST))?;
        let trades = stamped(rows.iter().map(|r| ForPair(r, gap.pair)), received)?;
        // Newest first: go on below the lowest id until the gap is covered; a short page means
        // there is nothing older.
        let full = trades.len() as u64 >= gap.len().clamp(1, PAGE_LIMIT);
        let next = match trades.iter().map(|t| t.id).min() {
            Some(min) if min > gap.after_id + 1 && full => Some(min.to_string()),
            _ => None,
        };
        Ok(Page { trades, next })
    }

    /// Every product: `GET /products`.
    fn listing_url(&self, rest_url: &str, _pairs: &[Pair]) -> String {
        join_url(rest_url, "/products")
    }

    fn candle_url(&self, rest_url: &str, pair: Pair, start: Micros) -> String {
        format!(
            "{}?granularity=60&start={}&end={}",
            join_url(
                rest_url,
                &format!(
                    "/products/{}/candles",
                    rest_symbol(Exchange::Coinbase, pair)
                )
            ),
            start.to_rfc3339(),
            MINUTE.window_end(start).to_rfc3339()
        )
    }

    /// A candle row: `[time, low, high, open, close, volume]` (JSON numbers, newest first);
    /// taken once its minute is over (Coinbase may still lag: the caller asks again).
    fn parse_candle(
        &self,
        body: &str,
        _pair: Pair,
        start: Micros,
        now: Micros,
    ) -> Result<Option<ExchangeCandle>, ParseError> {
        const WHAT_C: &str = "coinbase candles";
        if let Ok(err) = serde_json::from_str::<RestError>(body) {
            return Err(ParseError::field(WHAT_C, "message", err.message, "refused"));
        }
        let value: serde_json::Value =
            serde_json::from_str(body).map_err(ParseError::json(WHAT_C))?;
        let rows = candle_rows(WHAT_C, &value, 6)?;
        let secs = start.0 / 1_000_000;
        let Some(row) = rows.iter().find(|r| r[0].as_i64() == Some(secs)) else {
            return Ok(None);
        };
        if now < MINUTE.window_end(start) {
            return Ok(None);
        }
        let d = |i: usize, field| cell_decimal(WHAT_C, field, &row[i]);
        Ok(Some(ExchangeCandle {
            start,
            low: d(1, "low")?,
            high: d(2, "high")?,
            open: d(3, "open")?,
            close: d(4, "close")?,
            volume: d(5, "volume")?,
            ..ExchangeCandle::default()
        }))
    }

    /// Products are found by `base_currency` and `quote_currency`; `delisted` is delisted,
    /// `online` without `trading_disabled` trading, anything else halted.
    fn parse_listing(
        &self,
        status: u16,
        body: &str,
        pairs: &[Pair],
    ) -> Result<Option<Vec<PairListing>>, ParseError> {
        const WHAT_PRODUCTS: &str = "coinbase products";
        if let Ok(err) = serde_json::from_str::<RestError>(body) {
            let why = format!("HTTP {status}: refused");
            return Err(ParseError::field(
                WHAT_PRODUCTS,
                "message",
                err.message,
                why,
            ));
        }
        let products: Vec<Product> =
            serde_json::from_str(body).map_err(ParseError::json(WHAT_PRODUCTS))?;
        let found = products.iter().filter_map(|p| {
            let pair = Pair::parse(&format!("{}-{}", p.base_currency, p.quote_currency)).ok()?;
            let raw = match (p.status.as_deref(), p.trading_disabled) {
                (Some("online") | None, Some(true)) => "trading_disabled",
                (s, _) => s.unwrap_or("online"),
            };
            let state = match raw {
                "online" => Status::Trading,
                "delisted" => Status::Delisted,
                _ => Status::Halted,
            };
            pairs
                .contains(&pair)
                .then(|| PairListing::listed(pair, &p.id, state, raw))
        });
        Ok(Some(found.collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::samples;

    #[test]
    fn a_candle_row_is_read_exactly_from_json_numbers() {
        // The shape of GET /products/{id}/candles: [time, low, high, open, close, volume].
        let body = "[[1415398800,0.32,4.2,0.35,4.20,12.30000001],[1415398740,1,2,1,2,3]]";
        let pair = pair("BTC-USD");
        let start = Micros(1_415_398_800_000_000);
        let after = Micros(start.0 + 60_000_000);
        let c = Coinbase
            .parse_candle(body, pair, start, after)
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.low.to_string(), c.high.to_string()),
            ("0.32".into(), "4.2".into())
        );
        assert_eq!(
            (c.open.to_string(), c.close.to_string()),
            ("0.35".into(), "4.20".into())
        );
        assert_eq!(c.volume.to_string(), "12.30000001");
        assert_eq!((c.trades, c.vwap), (None, None));
        assert_eq!(
            Coinbase.parse_candle(body, pair, start, start).unwrap(),
            None
        );
        let refused = r#"{"message":"Unsupported granularity"}"#;
        assert!(Coinbase.parse_candle(refused, pair, start, after).is_err());
    }

    fn pair(s: &str) -> Pair {
        Pair::parse(s).unwrap()
    }

    #[test]
    fn every_matches_sample_line_parses_to_what_it_means() {
        let rx = Micros(3);
        let trade = |p: &str, id, price: &str, qty: &str, ts: &str| {
            let time = rfc3339_micros("t", "t", ts).unwrap();
            // Every sample's maker side is `sell`: the taker bought.
            let mut t =
                Trade::new(Exchange::Coinbase, pair(p), id, price, qty, Side::Buy, time).unwrap();
            t.received = rx;
            t
        };
        let expected = [
            // 1: a subscribe request (our own message shape).
            Frame::Ignore,
            // 2: doc match.
            Frame::Trades(vec![trade(
                "BTC-USD",
                10,
                "400.23",
                "5.23512",
                "2014-11-07T08:19:27.028459Z",
            )]),
            // 3: heartbeat with the latest trade id.
            Frame::Heartbeat(vec![(pair("BTC-USD"), 20)]),
            // 4: real last_match: an anchor, not a new trade.
            Frame::Snapshot(vec![trade(
                "BAND-GBP",
                881613,
                "14.7775",
                "0.04",
                "2021-04-17T16:43:30.244075Z",
            )]),
            // 5, 6: real consecutive matches.
            Frame::Trades(vec![trade(
                "SKL-USD",
                1568268,
                "0.791",
                "450",
                "2021-04-17T16:43:37.121358Z",
            )]),
            Frame::Trades(vec![trade(
                "SKL-USD",
                1568269,
                "0.7912",
                "1787",
                "2021-04-17T16:43:37.140491Z",
            )]),
            // 7: subscriptions reply.
            Frame::Ack,
        ];
        let lines = samples::lines("coinbase_matches_samples.jsonl");
        assert_eq!(lines.len(), expected.len());
        for ((n, line), want) in lines.iter().zip(expected) {
            assert_eq!(
                Coinbase.parse_frame(line, rx).unwrap(),
                want,
                "line {n}: {line}"
            );
        }
    }

    #[test]
    fn maker_buy_means_taker_sold_and_errors_are_reported() {
        let m = r#"{"type":"match","trade_id":1,"product_id":"BTC-USDT","size":"1","price":"2","side":"buy","time":"2024-01-01T00:00:00.000001Z"}"#;
        let Frame::Trades(t) = Coinbase.parse_frame(m, Micros(0)).unwrap() else {
            panic!()
        };
        assert_eq!(t[0].side, Side::Sell);
        let err = r#"{"type":"error","message":"Failed to subscribe","reason":"BTC-FOO is not a valid product"}"#;
        assert_eq!(
            Coinbase.parse_frame(err, Micros(0)).unwrap(),
            Frame::ExchangeError("Failed to subscribe: BTC-FOO is not a valid product".into())
        );
        let ticker = r#"{"type":"ticker","product_id":"BTC-USD","price":"1"}"#;
        assert_eq!(
            Coinbase.parse_frame(ticker, Micros(0)).unwrap(),
            Frame::Ignore
        );
    }

    #[test]
    fn malformed_frames_are_errors_not_panics() {
        let bad = [
            "",
            "null",
            "{}",
            r#"{"type":1}"#,
            r#"{"type":"match"}"#,
            r#"{"type":"match","trade_id":1,"product_id":"BTC-USDT","size":"1","price":"2","side":"up","time":"2024-01-01T00:00:00Z"}"#,
            r#"{"type":"match","trade_id":1,"product_id":"BTC-USDT","size":"x","price":"2","side":"buy","time":"2024-01-01T00:00:00Z"}"#,
            r#"{"type":"match","trade_id":1,"product_id":"BTCUSDT!","size":"1","price":"2","side":"buy","time":"2024-01-01T00:00:00Z"}"#,
            r#"{"type":"match","trade_id":1,"product_id":"BTC-USDT","size":"1","price":"2","side":"buy","time":"2024-13-01T00:00:00Z"}"#,
            r#"{"type":"heartbeat","product_id":"BTC-USD"}"#,
        ];
        for text in bad {
            assert!(Coinbase.parse_frame(text, Micros(0)).is_err(), "{text}");
        }
    }

    #[test]
    fn advanced_trade_samples_are_never_mistaken_for_exchange_trades() {
        for (n, line) in samples::lines("coinbase_market_trades_samples.jsonl") {
            let frame = Coinbase.parse_frame(&line, Micros(0));
            assert!(
                !matches!(frame, Ok(Frame::Trades(_) | Frame::Snapshot(_))),
                "line {n}: {frame:?}"
            );
        }
    }

    #[test]
    fn subscribe_names_matches_and_heartbeat() {
        let v: serde_json::Value =
            serde_json::from_str(&Coinbase.subscribe_messages(&Pair::defaults())[0]).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"subscribe","product_ids":["BTC-USDT","ETH-USDT","SOL-USDT"],"channels":["matches","heartbeat"]})
        );
    }

    #[test]
    fn backfill_pages_walk_down_from_the_gap() {
        let gap = Gap {
            pair: pair("BTC-USDT"),
            after_id: 70,
            after_time: Micros(0),
            until_id: 74,
        };
        assert_eq!(
            Coinbase.backfill_url("https://api.exchange.coinbase.com", &gap, None),
            "https://api.exchange.coinbase.com/products/BTC-USDT/trades?after=75&limit=4"
        );
        let body = r#"[{"time":"2014-11-07T22:19:28.578544Z","trade_id":74,"price":"10.00000000","size":"0.01000000","side":"buy"},
                       {"time":"2014-11-07T22:19:28.000001Z","trade_id":73,"price":"10.5","size":"1","side":"sell"}]"#;
        let open = Gap {
            until_id: u64::MAX,
            ..gap
        };
        assert_eq!(
            Coinbase.backfill_url("http://h", &open, None),
            "http://h/products/BTC-USDT/trades?limit=1000"
        );
        let page = Coinbase.parse_backfill(body, &gap, Micros(0)).unwrap();
        assert_eq!(page.trades[0].side, Side::Sell);
        assert_eq!(page.trades[1].side, Side::Buy);
        assert_eq!(page.trades[0].price.to_string(), "10.00000000");
        assert_eq!(page.next, None, "a short page: nothing older exists");
        let long = Gap {
            after_id: 0,
            until_id: 5000,
            ..gap
        };
        let rows: Vec<String> = (4001..=5000)
            .rev()
            .map(|id| format!(r#"{{"time":"2014-11-07T22:19:28Z","trade_id":{id},"price":"1","size":"1","side":"buy"}}"#))
            .collect();
        let full = Coinbase
            .parse_backfill(&format!("[{}]", rows.join(",")), &long, Micros(0))
            .unwrap();
        assert_eq!(full.next.as_deref(), Some("4001"));
        assert_eq!(
            Coinbase.backfill_url("http://h", &long, full.next.as_deref()),
            "http://h/products/BTC-USDT/trades?after=4001&limit=1000"
        );
        let done = r#"[{"time":"2014-11-07T22:19:28Z","trade_id":71,"price":"1","size":"1","side":"buy"}]"#;
        assert_eq!(
            Coinbase.parse_backfill(done, &gap, Micros(0)).unwrap().next,
            None
        );
        assert!(
            Coinbase
                .parse_backfill(r#"{"message":"NotFound"}"#, &gap, Micros(0))
                .is_err()
        );
    }

    #[test]
    fn listing_reads_every_product_and_its_status() {
        let (btc, doge, rgt) = (pair("BTC-USD"), pair("DOGE-USD"), pair("RGT-USD"));
        assert_eq!(
            Coinbase.listing_url("http://h/", &[btc]),
            "http://h/products"
        );
        let sample = samples::text("coinbase_products_sample.json");
        let found = Coinbase
            .parse_listing(200, &sample, &[btc, doge, rgt, pair("BTC-USDT")])
            .unwrap()
            .unwrap();
        let got: Vec<(Status, &str)> = found
            .iter()
            .map(|l| (l.status, l.detail.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (Status::Trading, "BTC-USD"),
                (Status::Halted, "DOGE-USD: trading_disabled"),
                (Status::Delisted, "RGT-USD: delisted"),
            ]
        );
        let refused = r#"{"message":"Internal server error"}"#;
        assert!(Coinbase.parse_listing(500, refused, &[btc]).is_err());
    }
}
