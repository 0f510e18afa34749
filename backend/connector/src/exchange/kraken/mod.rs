//! Kraken Spot WebSocket v2: the `trade` channel with `snapshot:true` over
//! `wss://ws.kraken.com/v2`, backfill from `GET /0/public/Trades?since=` (nanoseconds).
//!
//! Facts relied on (testdata/exchanges/kraken.md): `trade_id` is a sequence per book; `side` is
//! the taker side; prices and quantities are JSON numbers (parsed from their exact text); a
//! heartbeat arrives about every second; application pings (`{"method":"ping"}`) are answered
//! with `pong`. REST names pairs `XBTUSDT`, WebSocket v2 `BTC/USDT`.

pub mod messages;

use super::{
    ForPair, Frame, Gap, Keepalive, Origin, Page, Venue, candle_rows, cell_decimal, cell_int,
    join_url, rfc3339_micros, stamped,
};
use crate::error::ParseError;
use crate::listing::{PairListing, Status};
use crate::pacer::RestLimit;
use candles_core::symbols::{pair_from_symbol, rest_symbol, ws_symbol};
use candles_core::verify::ExchangeCandle;
use candles_core::{Decimal, Exchange, Micros, Pair, Side, Trade};
use messages::{AssetPair, Envelope, RestResponse, RestTrade, TradeData};

const WHAT: &str = "kraken frame";
const WHAT_REST: &str = "kraken Trades";
/// Rows of a full `Trades` page (Kraken's default and maximum `count`).
const PAGE_ROWS: usize = 1000;

const WS: Origin = Origin::new(WHAT, Exchange::Kraken);
const REST: Origin = Origin::new(WHAT_REST, Exchange::Kraken);

/// The Kraken Spot (WebSocket v2) protocol.
#[derive(Debug, Clone, Copy, Default)]
pub struct Kraken;

fn side(what: &'static str, field: &'static str, text: &str) -> Result<Side, ParseError> {
    match text {
        "buy" | "b" => Ok(Side::Buy),
        "sell" | "s" => Ok(Side::Sell),
        _ => Err(ParseError::field(
            what,
            field,
            text,
            "expected buy/sell (b/s)",
        )),
    }
}

impl TryFrom<&TradeData> for Trade {
    type Error = ParseError;
    fn try_from(m: &TradeData) -> Result<Trade, ParseError> {
        let time = rfc3339_micros(WHAT, "timestamp", &m.timestamp)?;
        let (pair, side) = (WS.pair("symbol", &m.symbol)?, side(WHAT, "side", &m.side)?);
        let text = [("price", m.price.as_str()), ("qty", m.qty.as_str())];
        WS.trade((pair, m.trade_id), side, time, text)
    }
}

/// Seconds since the epoch written as a decimal number (`1688669597.8277261`) → microseconds,
/// truncated.
fn seconds_micros(text: &str) -> Result<Micros, ParseError> {
    let secs =
        Decimal::from_str_exact(text).map_err(|e| ParseError::field(WHAT_REST, "time", text, e))?;
    secs.checked_mul(Decimal::from(1_000_000))
        .map(|us| us.trunc())
        .and_then(|us| i64::try_from(us).ok())
        .filter(|us| *us >= 0)
        .map(Micros)
        .ok_or_else(|| ParseError::field(WHAT_REST, "time", text, "out of range"))
}

impl TryFrom<ForPair<'_, RestTrade>> for Trade {
    type Error = ParseError;
    fn try_from(ForPair(m, pair): ForPair<'_, RestTrade>) -> Result<Trade, ParseError> {
        let time = seconds_micros(m.2.as_str())?;
        let side = side(WHAT_REST, "side", &m.3)?;
        REST.trade((pair, m.6), side, time, [("price", &m.0), ("volume", &m.1)])
    }
}

fn rest_result(
    what: &'static str,
    body: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, ParseError> {
    let resp: RestResponse = serde_json::from_str(body).map_err(ParseError::json(what))?;
    if !resp.error.is_empty() {
        return Err(ParseError::field(
            what,
            "error",
            resp.error.join("; "),
            "the exchange refused",
        ));
    }
    resp.result
        .ok_or_else(|| ParseError::field(what, "result", "", "missing"))
}

impl Venue for Kraken {
    /// Public endpoints: about one call a second with a small burst; 2 at once, then 0.9 a
    /// second.
    fn rest_limit(&self) -> RestLimit {
        RestLimit {
            burst: 2.0,
            per_second: 0.9,
        }
    }

    /// Kraken says it in the body of an HTTP 200: `{"error":["EGeneral:Too many requests"]}`.
    fn is_rate_limited(&self, status: u16, body: &str) -> bool {
        status == 429 || body.contains("EGeneral:Too many requests")
    }

    fn exchange(&self) -> Exchange {
        Exchange::Kraken
    }

    fn default_ws_url(&self) -> &'static str {
        "wss://ws.kraken.com/v2"
    }

    fn default_rest_url(&self) -> &'static str {
        "https://api.kraken.com"
    }

    fn subscribe_messages(&self, pairs: &[Pair]) -> Vec<String> {
        let symbols: Vec<String> = pairs
            .iter()
            .map(|p| ws_symbol(Exchange::Kraken, *p))
            .collect();
        vec![
            serde_json::json!({
                "method": "subscribe",
                "params": {"channel": "trade", "symbol": symbols, "snapshot": true},
                "req_id": 1
            })
            .to_string(),
        ]
    }

    fn parse_frame(&self, text: &str, received: Micros) -> Result<Frame, ParseError> {
        let env: Envelope<'_> = serde_json::from_str(text).map_err(ParseError::json(WHAT))?;
        match (env.channel.as_deref(), env.method.as_deref()) {
            (Some("trade"), _) => {
                let data = env
                    .data
                    .ok_or_else(|| ParseError::field(WHAT, "data", "", "missing"))?;
                let rows: Vec<TradeData> =
                    serde_json::from_str(data.get()).map_err(ParseError::json(WHAT))?;
                let trades = stamped(&rows, received)?;
                match env.kind.as_deref() {
                    Some("snapshot") => Ok(Frame::Snapshot(trades)),
                    Some("update") => Ok(Frame::Trades(trades)),
                    other => Err(ParseError::field(
                        WHAT,
                        "type",
                        other.unwrap_or(""),
                        "expected snapshot or update",
                    )),
                }
            }
            (Some("heartbeat"), _) => Ok(Frame::Heartbeat(Vec::new())),
            (Some(_), _) => Ok(Frame::Ignore),
            (None, Some("pong")) => Ok(Frame::Pong),
            (None, Some(_)) => match env.success {
                Some(true) => Ok(Frame::Ack),
                Some(false) => {
                    Ok(Frame::ExchangeError(env.error.unwrap_or_else(|| {
                        "request refused without a reason".into()
                    })))
                }
                // A request, not an answer (our own messages have this shape).
                None => Ok(Frame::Ignore),
            },
            (None, None) => Err(ParseError::Unknown {
                what: WHAT,
                detail: "neither `channel` nor `method`".into(),
            }),
        }
    }

    fn keepalive(&self, seq: u64) -> Keepalive {
        Keepalive::Text(serde_json::json!({"method": "ping", "req_id": seq}).to_string())
    }

    fn backfill_url_for(
        &self,
        rest_url: &str,
        symbol: &str,
        gap: &Gap,
        cursor: Option<&str>,
    ) -> String {
        // `since` is in nanoseconds; start just before the last published trade so that trades
        // sharing its microsecond are not skipped (the caller drops ids we already have).
        let since = cursor.map_or_else(
            || {
                (gap.after_time.0.saturating_mul(1_000).saturating_sub(1))
                    .max(0)
                    .to_string()
            },
            str::to_string,
        );
        format!(
            "{}?pair={}&since={since}",
            join_url(rest_url, "/0/public/Trades"),
            symbol
        )
    }

    fn parse_backfill(&self, body: &str, gap: &Gap, received: Micros) -> Result<Page, ParseError> {
        let result = rest_result(WHAT_REST, body)?;
        let mut trades = Vec::new();
        for (key, value) in &result {
            if key == "last" {
                // Kraken's cursor is the newest row's time in ns; pages continue from the rows'
                // own times instead (below), so trades sharing the boundary time are not skipped.
                continue;
            }
            // The one pair asked for, under Kraken's own key (e.g. `XXBTZUSD`).
            let rows: Vec<RestTrade> =
                serde_json::from_value(value.clone()).map_err(ParseError::json(WHAT_REST))?;
            trades.extend(stamped(
                rows.iter().map(|r| ForPair(r, gap.pair)),
                received,
            )?);
        }
        // Oldest first, at most PAGE_ROWS a page: a short page means there is nothing newer.
        // `since` is exclusive, and several trades can share a time: the next page starts just
        // before the newest row's time (repeated rows are dropped by id).
        let full = trades.len() >= PAGE_ROWS;
        let newest = trades.iter().map(|t| t.time).max();
        let next = match (trades.iter().map(|t| t.id).max(), newest) {
            (Some(max), Some(time)) if max < gap.until_id && full => {
                Some((i128::from(time.0) * 1_000 - 1).to_string())
            }
            _ => None,
        };
        Ok(Page { trades, next })
    }

    /// Every pair: `GET /0/public/AssetPairs` (naming pairs fails the whole request when one
    /// is unknown).
    fn listing_url(&self, rest_url: &str, _pairs: &[Pair]) -> String {
        join_url(rest_url, "/0/public/AssetPairs")
    }

    fn candle_url(&self, rest_url: &str, pair: Pair, start: Micros) -> String {
        format!(
            "{}?pair={}&interval=1&since={}",
            join_url(rest_url, "/0/public/OHLC"),
            rest_symbol(Exchange::Kraken, pair),
            start.0 / 1_000_000 - 60
        )
    }

    /// An OHLC row: `[time, o, h, l, c, vwap, volume, count]`; the newest row (after `last`)
    /// is not final.
    fn parse_candle(
        &self,
        body: &str,
        _pair: Pair,
        start: Micros,
        _now: Micros,
    ) -> Result<Option<ExchangeCandle>, ParseError> {
        const WHAT_OHLC: &str = "kraken OHLC";
        let resp: RestResponse = serde_json::from_str(body).map_err(ParseError::json(WHAT_OHLC))?;
        if !resp.error.is_empty() {
            let errors = resp.error.join("; ");
            return Err(ParseError::field(WHAT_OHLC, "error", errors, "refused"));
        }
        let result = resp.result.unwrap_or_default();
        let last = result.get("last").and_then(serde_json::Value::as_i64);
        let Some(rows) = result.iter().find(|(k, _)| *k != "last").map(|(_, v)| v) else {
            return Ok(None);
        };
        let rows = candle_rows(WHAT_OHLC, rows, 8)?;
        let secs = start.0 / 1_000_000;
        let Some(row) = rows.iter().find(|r| r[0].as_i64() == Some(secs)) else {
            return Ok(None);
        };
        if last.is_none_or(|last| secs > last) {
            return Ok(None);
        }
        let d = |i: usize, field| cell_decimal(WHAT_OHLC, field, &row[i]);
        Ok(Some(ExchangeCandle {
            start,
            open: d(1, "open")?,
            high: d(2, "high")?,
            low: d(3, "low")?,
            close: d(4, "close")?,
            volume: d(6, "volume")?,
            quote_volume: None,
            trades: Some(cell_int(WHAT_OHLC, "count", &row[7])?.unsigned_abs()),
            taker_buy_volume: None,
            vwap: Some(d(5, "vwap")?),
        }))
    }

    /// Pairs are found by `wsname`, else `altname`, else the key, read with Kraken's asset
    /// names (`XBT`, `XDG`, legacy `XXBTZUSD`); the detail is Kraken's key. `online` is
    /// trading, `delisted` delisted, anything else (`cancel_only`, `post_only`, `limit_only`,
    /// `reduce_only`, `maintenance`) halted.
    fn parse_listing(
        &self,
        status: u16,
        body: &str,
        pairs: &[Pair],
    ) -> Result<Option<Vec<PairListing>>, ParseError> {
        const WHAT_PAIRS: &str = "kraken AssetPairs";
        let resp: RestResponse =
            serde_json::from_str(body).map_err(ParseError::json(WHAT_PAIRS))?;
        if !resp.error.is_empty() {
            let why = format!("HTTP {status}: refused");
            return Err(ParseError::field(
                WHAT_PAIRS,
                "error",
                resp.error.join("; "),
                why,
            ));
        }
        let result = resp.result.unwrap_or_default();
        let found = result.iter().filter_map(|(key, value)| {
            let info: AssetPair = serde_json::from_value(value.clone()).ok()?;
            let names = [info.wsname.as_deref(), info.altname.as_deref(), Some(key)];
            let pair = names
                .into_iter()
                .flatten()
                .find_map(|name| pair_from_symbol(Exchange::Kraken, name).ok())?;
            let raw = info.status.as_deref().unwrap_or("online");
            let state = match raw {
                "online" => Status::Trading,
                "delisted" => Status::Delisted,
                _ => Status::Halted,
            };
            pairs
                .contains(&pair)
                .then(|| PairListing::listed(pair, key, state, raw))
        });
        Ok(Some(found.collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::samples;

    #[test]
    fn an_ohlc_row_is_read_exactly_unless_it_is_the_newest() {
        // The shape of GET /0/public/OHLC (docs.kraken.com, "Get OHLC Data").
        let body = r#"{"error":[],"result":{"XXBTZUSD":[[1688671200,"30306.1","30306.2","30305.7","30305.7","30306.1","3.39243896",23],[1688671260,"30305.7","30305.8","30305.7","30305.8","30305.7","0.10000000",2]],"last":1688671200}}"#;
        let pair = pair("BTC-USD");
        let now = Micros::now();
        let start = Micros(1_688_671_200_000_000);
        let c = Kraken
            .parse_candle(body, pair, start, now)
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.open.to_string(), c.close.to_string()),
            ("30306.1".into(), "30305.7".into())
        );
        assert_eq!(c.volume.to_string(), "3.39243896");
        assert_eq!(
            (c.vwap.unwrap().to_string(), c.trades),
            ("30306.1".into(), Some(23))
        );
        let newest = Micros(start.0 + 60_000_000);
        assert_eq!(Kraken.parse_candle(body, pair, newest, now).unwrap(), None);
        let refused = r#"{"error":["EQuery:Unknown asset pair"]}"#;
        assert!(Kraken.parse_candle(refused, pair, start, now).is_err());
    }

    fn pair(s: &str) -> Pair {
        Pair::parse(s).unwrap()
    }

    #[test]
    fn every_v2_sample_line_parses_to_what_it_means() {
        let rx = Micros(9);
        let matic = |id, qty: &str, ts| {
            let mut t = Trade::new(
                Exchange::Kraken,
                pair("MATIC-USD"),
                id,
                "0.5147",
                qty,
                Side::Buy,
                Micros(ts),
            )
            .unwrap();
            t.received = rx;
            t
        };
        let expected = [
            // 1: a subscribe request (our own message shape) is not an answer.
            Frame::Ignore,
            // 2: subscribe ack.
            Frame::Ack,
            // 3: snapshot with two trades; exact text of JSON numbers.
            Frame::Snapshot(vec![
                matic(4665846, "6423.46326", 1_695_628_116_925_533),
                matic(4665847, "1136.19677815", 1_695_628_176_925_603),
            ]),
            // 4: heartbeat.
            Frame::Heartbeat(vec![]),
            // 5: a ping request (ours); 6: the pong.
            Frame::Ignore,
            Frame::Pong,
            // 7: unsubscribe request.
            Frame::Ignore,
        ];
        let lines = samples::lines("kraken_v2_trade_samples.jsonl");
        assert_eq!(lines.len(), expected.len());
        for ((n, line), want) in lines.iter().zip(expected) {
            assert_eq!(
                Kraken.parse_frame(line, rx).unwrap(),
                want,
                "line {n}: {line}"
            );
        }
        if let Frame::Snapshot(t) = Kraken.parse_frame(&lines[2].1, rx).unwrap() {
            assert_eq!(t[1].quantity.to_string(), "1136.19677815");
        }
    }

    #[test]
    fn v1_samples_are_never_mistaken_for_v2_trades() {
        for (n, line) in samples::lines("kraken_v1_trade_samples.jsonl") {
            let frame = Kraken.parse_frame(&line, Micros(0));
            assert!(
                !matches!(frame, Ok(Frame::Trades(_) | Frame::Snapshot(_))),
                "line {n}: {frame:?}"
            );
        }
    }

    #[test]
    fn our_requests_match_the_documented_shapes() {
        let lines = samples::lines("kraken_v2_trade_samples.jsonl");
        let doc_sub: serde_json::Value = serde_json::from_str(&lines[0].1).unwrap();
        let mut ours: serde_json::Value =
            serde_json::from_str(&Kraken.subscribe_messages(&[pair("MATIC/USD")])[0]).unwrap();
        ours.as_object_mut().unwrap().remove("req_id");
        assert_eq!(ours, doc_sub);
        let Keepalive::Text(ping) = Kraken.keepalive(101) else {
            panic!("kraken pings in text")
        };
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&ping).unwrap(),
            serde_json::from_str::<serde_json::Value>(&lines[4].1).unwrap()
        );
    }

    #[test]
    fn updates_errors_and_precision() {
        let rx = Micros(0);
        let update = r#"{"channel":"trade","type":"update","data":[{"symbol":"BTC/USDT","side":"sell","price":43381.123456789012345678,"qty":1e-8,"ord_type":"market","trade_id":7,"timestamp":"2024-01-30T08:19:54.681000Z"}]}"#;
        let Frame::Trades(t) = Kraken.parse_frame(update, rx).unwrap() else {
            panic!()
        };
        assert_eq!(t[0].pair, pair("BTC-USDT"));
        assert_eq!(t[0].side, Side::Sell);
        assert_eq!(t[0].price.to_string(), "43381.123456789012345678");
        assert_eq!(t[0].quantity.to_string(), "0.00000001");
        let refused = r#"{"method":"subscribe","error":"Currency pair not supported XBT/USD","success":false,"time_in":"x","time_out":"y"}"#;
        assert_eq!(
            Kraken.parse_frame(refused, rx).unwrap(),
            Frame::ExchangeError("Currency pair not supported XBT/USD".into())
        );
        let status = r#"{"channel":"status","type":"update","data":[{"api_version":"v2","system":"online"}]}"#;
        assert_eq!(Kraken.parse_frame(status, rx).unwrap(), Frame::Ignore);
    }

    #[test]
    fn malformed_frames_are_errors_not_panics() {
        let bad = [
            "",
            "{",
            "{}",
            r#"{"channel":"trade","type":"update"}"#,
            r#"{"channel":"trade","type":"other","data":[]}"#,
            r#"{"channel":"trade","type":"update","data":[{"symbol":"BTC/USDT","side":"buy","price":"1","qty":1,"trade_id":1,"timestamp":"2024-01-30T08:19:54Z"}]}"#,
            r#"{"channel":"trade","type":"update","data":[{"symbol":"BTC/USDT","side":"up","price":1,"qty":1,"trade_id":1,"timestamp":"2024-01-30T08:19:54Z"}]}"#,
            r#"{"channel":"trade","type":"update","data":[{"symbol":"BTC/USDT","side":"buy","price":-1,"qty":1,"trade_id":1,"timestamp":"2024-01-30T08:19:54Z"}]}"#,
            r#"{"channel":"trade","type":"update","data":[{"symbol":"BTC/USDT","side":"buy","price":1,"qty":1,"trade_id":1,"timestamp":"soon"}]}"#,
            r#"{"channel":"trade","type":"update","data":[{"symbol":"BTC","side":"buy","price":1,"qty":1,"trade_id":1,"timestamp":"2024-01-30T08:19:54Z"}]}"#,
        ];
        for text in bad {
            assert!(Kraken.parse_frame(text, Micros(0)).is_err(), "{text}");
        }
    }

    #[test]
    fn backfill_pages_by_nanosecond_cursor() {
        let gap = Gap {
            pair: pair("BTC-USDT"),
            after_id: 61044950,
            after_time: Micros(1_688_669_597_000_000),
            until_id: 61044953,
        };
        assert_eq!(
            Kraken.backfill_url("https://api.kraken.com", &gap, None),
            "https://api.kraken.com/0/public/Trades?pair=XBTUSDT&since=1688669596999999999"
        );
        let body = r#"{"error":[],"result":{"XBTUSDT":[["30243.40000","0.34507674",1688669597.8277261,"b","m","",61044951],["30243.50000","0.1",1688669597.9,"s","l","",61044952]],"last":"1688671969993150842"}}"#;
        let page = Kraken.parse_backfill(body, &gap, Micros(1)).unwrap();
        assert_eq!(page.trades.len(), 2);
        assert_eq!(page.trades[0].time, Micros(1_688_669_597_827_726));
        assert_eq!(page.trades[0].price.to_string(), "30243.40000");
        assert_eq!(page.trades[0].side, Side::Buy);
        assert_eq!(page.trades[1].side, Side::Sell);
        assert_eq!(page.next, None, "a short page: nothing newer exists");
        let long = Gap {
            until_id: gap.after_id + 5000,
            ..gap
        };
        let rows: Vec<String> = (1..=1000)
            .map(|i| format!(r#"["1","1",1688669597.1,"b","m","",{}]"#, gap.after_id + i))
            .collect();
        let body = format!(
            r#"{{"error":[],"result":{{"XBTUSDT":[{}],"last":"1688671969993150842"}}}}"#,
            rows.join(",")
        );
        let full = Kraken.parse_backfill(&body, &long, Micros(1)).unwrap();
        assert_eq!(full.next.as_deref(), Some("1688669597099999999"));
        assert!(
            Kraken
                .backfill_url("http://h", &long, full.next.as_deref())
                .ends_with("since=1688669597099999999")
        );
        let refused = r#"{"error":["EGeneral:Too many requests"]}"#;
        assert!(Kraken.parse_backfill(refused, &gap, Micros(1)).is_err());
        let old_format =
            r#"{"error":[],"result":{"XBTUSDT":[["1","1",1.5,"b","m",""]],"last":"1"}}"#;
        assert!(Kraken.parse_backfill(old_format, &gap, Micros(1)).is_err());
    }

    #[test]
    fn listing_finds_pairs_under_krakens_own_names() {
        assert_eq!(
            Kraken.listing_url("https://api.kraken.com", &[pair("BTC-USDT")]),
            "https://api.kraken.com/0/public/AssetPairs"
        );
        let sample = samples::text("kraken_asset_pairs_sample.json");
        let asked = [
            "BTC-USD", "BTC-JPY", "DOGE-USD", "ETH-BTC", "BTC-USDT", "SOL-USD",
        ]
        .map(pair);
        let found = Kraken.parse_listing(200, &sample, &asked).unwrap().unwrap();
        let mut got: Vec<(String, Status, &str)> = found
            .iter()
            .map(|l| (l.pair.to_string(), l.status, l.detail.as_str()))
            .collect();
        got.sort();
        let want = [
            ("BTC-JPY", Status::Trading, "XXBTZJPY"),
            ("BTC-USD", Status::Trading, "XXBTZUSD"),
            ("BTC-USDT", Status::Halted, "XBTUSDT: cancel_only"),
            ("DOGE-USD", Status::Trading, "XDGUSD"),
            ("ETH-BTC", Status::Trading, "XETHXXBT"),
        ]
        .map(|(p, s, d)| (p.to_string(), s, d));
        assert_eq!(got, want);
        let unknown = r#"{"error":["EQuery:Unknown asset pair"]}"#;
        assert!(Kraken.parse_listing(200, unknown, &asked).is_err());
    }
}
