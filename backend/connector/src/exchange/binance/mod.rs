//! Binance Spot: raw `<symbol>@trade` streams over `wss://stream.binance.com:9443/ws` with a
//! live `SUBSCRIBE`, backfill from `GET /api/v3/historicalTrades?fromId=`.
//!
//! Facts relied on (testdata/exchanges/binance.md): trade ids `t` are contiguous per symbol;
//! `m == true` means the buyer was the maker, so the taker sold; the server pings every 20 s
//! (tungstenite answers); a connection lives at most 24 h; `serverShutdown` asks us to
//! reconnect now. Both the raw and the combined (`{"stream":..,"data":..}`) forms are accepted.

pub mod messages;

use super::{
    ForPair, Frame, Gap, Keepalive, Origin, Page, Venue, candle_rows, cell_decimal, cell_int,
    join_url, millis_micros, stamped,
};
use crate::error::ParseError;
use crate::listing::{PairListing, Status};
use crate::pacer::RestLimit;
use candles_core::symbols::{binance_stream, rest_symbol};
use candles_core::verify::ExchangeCandle;
use candles_core::{Exchange, Micros, Pair, Side, Trade};
use messages::{Envelope, ExchangeInfo, HistoricalTrade, RestError, TradeEvent};

const WHAT: &str = "binance frame";
const WHAT_REST: &str = "binance historicalTrades";
/// Binance's largest page.
const PAGE_LIMIT: u64 = 1000;

const WS: Origin = Origin::new(WHAT, Exchange::Binance);
const REST: Origin = Origin::new(WHAT_REST, Exchange::Binance);

/// `m == true`: the buyer was the maker, so the taker sold.
fn taker_side(buyer_is_maker: bool) -> Side {
    if buyer_is_maker {
        Side::Sell
    } else {
        Side::Buy
    }
}

/// The Binance Spot protocol.
#[derive(Debug, Clone, Copy, Default)]
pub struct Binance;

impl TryFrom<&TradeEvent> for Trade {
    type Error = ParseError;
    fn try_from(m: &TradeEvent) -> Result<Trade, ParseError> {
        let time = millis_micros(WHAT, "T", m.trade_time)?;
        let (pair, side) = (WS.pair("s", &m.symbol)?, taker_side(m.buyer_is_maker));
        WS.trade(
            (pair, m.trade_id),
            side,
            time,
            [("p", &m.price), ("q", &m.quantity)],
        )
    }
}

/// A REST trade needs the pair from the request, since the entry does not name it.
impl TryFrom<ForPair<'_, HistoricalTrade>> for Trade {
    type Error = ParseError;
    fn try_from(ForPair(m, pair): ForPair<'_, HistoricalTrade>) -> Result<Trade, ParseError> {
        let time = millis_micros(WHAT_REST, "time", m.time)?;
        let side = taker_side(m.is_buyer_maker);
        REST.trade(
            (pair, m.id),
            side,
            time,
            [("price", &m.price), ("qty", &m.qty)],
        )
    }
}

fn parse_event(text: &str, received: Micros, depth: u8) -> Result<Frame, ParseError> {
    let env: Envelope<'_> = serde_json::from_str(text).map_err(ParseError::json(WHAT))?;
    if let Some(e) = env.e.as_deref() {
        return match e {
            "trade" => {
                let m: TradeEvent = serde_json::from_str(text).map_err(ParseError::json(WHAT))?;
                let mut t = Trade::try_from(&m)?;
                t.received = received;
                Ok(Frame::Trades(vec![t]))
            }
            "serverShutdown" => Ok(Frame::ServerShutdown),
            // Streams we do not subscribe to (aggTrade, kline, ...) are not errors.
            _ => Ok(Frame::Ignore),
        };
    }
    if let (Some(_), Some(data), 0) = (env.stream.as_deref(), env.data, depth) {
        return parse_event(data.get(), received, depth + 1);
    }
    if env.code.is_some() || env.error.is_some() {
        let detail = match (&env.error, &env.msg, &env.code) {
            (Some(err), _, _) => err.to_string(),
            (None, Some(msg), Some(code)) => format!("{code}: {msg}"),
            _ => candles_core::excerpt(text),
        };
        return Ok(Frame::ExchangeError(detail));
    }
    if env.id.is_some() {
        // `{"result":null,"id":1}`: the answer to our SUBSCRIBE.
        return Ok(Frame::Ack);
    }
    Err(ParseError::Unknown {
        what: WHAT,
        detail: "no event type `e`, no `stream`, no `id`".into(),
    })
}

impl Venue for Binance {
    /// `REQUEST_WEIGHT` 6,000 a minute per IP: a burst of 1,000 and 80 a second keep any minute
    /// under 5,800.
    fn rest_limit(&self) -> RestLimit {
        RestLimit {
            burst: 1_000.0,
            per_second: 80.0,
        }
    }

    /// Binance's weights: `historicalTrades` 25, `exchangeInfo` 20.
    fn rest_cost(&self, url: &str) -> f64 {
        if url.contains("/api/v3/historicalTrades") || url.contains("/api/v3/trades") {
            25.0
        } else if url.contains("/api/v3/exchangeInfo") {
            20.0
        } else if url.contains("/api/v3/klines") {
            2.0
        } else {
            1.0
        }
    }

    fn exchange(&self) -> Exchange {
        Exchange::Binance
    }

    fn default_ws_url(&self) -> &'static str {
        "wss://stream.binance.com:9443/ws"
    }

    fn default_rest_url(&self) -> &'static str {
        "https://api.binance.com"
    }

    fn subscribe_messages(&self, pairs: &[Pair]) -> Vec<String> {
        // One message for every stream: Binance allows 5 incoming messages per second.
        let params: Vec<String> = pairs.iter().map(|p| binance_stream(*p)).collect();
        vec![serde_json::json!({"method": "SUBSCRIBE", "params": params, "id": 1}).to_string()]
    }

    fn parse_frame(&self, text: &str, received: Micros) -> Result<Frame, ParseError> {
        parse_event(text, received, 0)
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
        let from = cursor.map_or_else(|| (gap.after_id + 1).to_string(), str::to_string);
        let limit = gap.len().clamp(1, PAGE_LIMIT);
        format!(
            "{}?symbol={}&fromId={from}&limit={limit}",
            join_url(rest_url, "/api/v3/historicalTrades"),
            symbol
        )
    }

    fn parse_backfill(&self, body: &str, gap: &Gap, received: Micros) -> Result<Page, ParseError> {
        if let Ok(err) = serde_json::from_str::<RestError>(body) {
            return Err(ParseError::field(WHAT_REST, "code", err.code, err.msg));
        }
        let rows: Vec<HistoricalTrade> =
            serde_json::from_str(body).map_err(ParseError::json(WHAT_REST))?;
        let trades = stamped(rows.iter().map(|r| ForPair(r, gap.pair)), received)?;
        // Ascending from `fromId`: go on after the highest id until the gap is covered; a short
        // page means there is nothing newer.
        let full = trades.len() as u64 >= gap.len().clamp(1, PAGE_LIMIT);
        let next = match trades.iter().map(|t| t.id).max() {
            Some(max) if max < gap.until_id && full => Some((max + 1).to_string()),
            _ => None,
        };
        Ok(Page { trades, next })
    }

    /// `exchangeInfo?symbol=X` for one pair, `?symbols=["X","Y"]` (percent-encoded) for several.
    fn listing_url(&self, rest_url: &str, pairs: &[Pair]) -> String {
        let base = join_url(rest_url, "/api/v3/exchangeInfo");
        let symbols: Vec<String> = pairs
            .iter()
            .map(|p| rest_symbol(Exchange::Binance, *p))
            .collect();
        match symbols.as_slice() {
            [one] => format!("{base}?symbol={one}"),
            _ => format!(
                "{base}?symbols=%5B{}%5D",
                symbols
                    .iter()
                    .map(|s| format!("%22{s}%22"))
                    .collect::<Vec<_>>()
                    .join("%2C")
            ),
        }
    }

    fn candle_url(&self, rest_url: &str, pair: Pair, start: Micros) -> String {
        format!(
            "{}?symbol={}&interval=1m&startTime={ms}&endTime={ms}&limit=1",
            join_url(rest_url, "/api/v3/klines"),
            rest_symbol(Exchange::Binance, pair),
            ms = start.as_millis()
        )
    }

    /// A kline row: `[open time, o, h, l, c, volume, close time, quote volume, trades, taker
    /// buy base, taker buy quote, ignore]`; final once its minute is over.
    fn parse_candle(
        &self,
        body: &str,
        _pair: Pair,
        start: Micros,
        now: Micros,
    ) -> Result<Option<ExchangeCandle>, ParseError> {
        const WHAT_K: &str = "binance klines";
        if let Ok(err) = serde_json::from_str::<RestError>(body) {
            return Err(ParseError::field(WHAT_K, "code", err.code, err.msg));
        }
        let value: serde_json::Value =
            serde_json::from_str(body).map_err(ParseError::json(WHAT_K))?;
        let rows = candle_rows(WHAT_K, &value, 11)?;
        let Some(row) = rows
            .iter()
            .find(|r| r[0].as_i64() == Some(start.as_millis()))
        else {
            return Ok(None);
        };
        if now < candles_core::verify::MINUTE.window_end(start) {
            return Ok(None);
        }
        let d = |i: usize, field| cell_decimal(WHAT_K, field, &row[i]);
        Ok(Some(ExchangeCandle {
            start,
            open: d(1, "open")?,
            high: d(2, "high")?,
            low: d(3, "low")?,
            close: d(4, "close")?,
            volume: d(5, "volume")?,
            quote_volume: Some(d(7, "quote volume")?),
            trades: Some(cell_int(WHAT_K, "trades", &row[8])?.unsigned_abs()),
            taker_buy_volume: Some(d(9, "taker buy base")?),
            vwap: None,
        }))
    }

    /// Symbols are found by their `baseAsset` and `quoteAsset`; `TRADING` is trading, any other
    /// status (`BREAK`, `HALT`, ...) halted. `-1121 Invalid symbol` names no symbol: for one pair
    /// it is not listed, for several each is asked alone.
    fn parse_listing(
        &self,
        status: u16,
        body: &str,
        pairs: &[Pair],
    ) -> Result<Option<Vec<PairListing>>, ParseError> {
        const WHAT_INFO: &str = "binance exchangeInfo";
        if let Ok(err) = serde_json::from_str::<RestError>(body) {
            return match (err.code, pairs) {
                (-1121, [pair]) => Ok(Some(vec![PairListing::not_listed(
                    Exchange::Binance,
                    *pair,
                )])),
                (-1121, _) => Ok(None),
                _ => Err(ParseError::field(
                    WHAT_INFO,
                    "code",
                    err.code,
                    format!("HTTP {status}: {}", err.msg),
                )),
            };
        }
        let info: ExchangeInfo = serde_json::from_str(body).map_err(ParseError::json(WHAT_INFO))?;
        let found = info.symbols.iter().filter_map(|s| {
            let pair = Pair::parse(&format!("{}-{}", s.base_asset, s.quote_asset)).ok()?;
            let state = if s.status == "TRADING" {
                Status::Trading
            } else {
                Status::Halted
            };
            pairs
                .contains(&pair)
                .then(|| PairListing::listed(pair, &s.symbol, state, &s.status))
        });
        Ok(Some(found.collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::samples;
    use candles_core::Decimal;
    use std::str::FromStr;

    #[test]
    fn a_kline_row_is_read_exactly_once_its_minute_is_over() {
        // The shape of GET /api/v3/klines (rest-api.md "Kline/Candlestick data").
        let body = r#"[[1499040000000,"0.01634790","0.80000000","0.01575800","0.01577100","148976.11427815",1499040059999,"2434.19055334",308,"1756.87402397","28.46694368","0"]]"#;
        let start = Micros::from_millis(1_499_040_000_000);
        let pair = Pair::parse("BTC-USDT").unwrap();
        let after = Micros(start.0 + 60_000_000);
        let c = Binance
            .parse_candle(body, pair, start, after)
            .unwrap()
            .unwrap();
        assert_eq!(c.open.to_string(), "0.01634790");
        assert_eq!(c.volume.to_string(), "148976.11427815");
        assert_eq!(c.quote_volume.unwrap().to_string(), "2434.19055334");
        assert_eq!(c.trades, Some(308));
        assert_eq!(c.taker_buy_volume.unwrap().to_string(), "1756.87402397");
        assert_eq!(
            Binance.parse_candle(body, pair, start, start).unwrap(),
            None
        );
        let other = Micros(start.0 + 60_000_000);
        assert_eq!(
            Binance.parse_candle(body, pair, other, after).unwrap(),
            None
        );
        let refused = r#"{"code":-1121,"msg":"Invalid symbol."}"#;
        assert!(Binance.parse_candle(refused, pair, start, after).is_err());
        let url = Binance.candle_url("http://h", pair, start);
        assert!(
            url.starts_with("http://h/api/v3/klines?symbol=BTCUSDT&interval=1m"),
            "{url}"
        );
        assert_eq!(Binance.rest_cost(&url), 2.0);
    }

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn pair(s: &str) -> Pair {
        Pair::parse(s).unwrap()
    }

    #[test]
    fn every_sample_line_parses_to_what_it_means() {
        let rx = Micros(7);
        let trade = |p: &str, id, price: &str, qty: &str, side, ms| {
            let mut t = Trade::new(
                Exchange::Binance,
                pair(p),
                id,
                price,
                qty,
                side,
                Micros::from_millis(ms),
            )
            .unwrap();
            t.received = rx;
            Frame::Trades(vec![t])
        };
        let expected = [
            // 1: doc sample, m=true ⇒ the taker sold.
            trade("BNB-BTC", 12345, "0.001", "100", Side::Sell, 1672515782136),
            // 2: aggTrade — we subscribe to raw trades only.
            Frame::Ignore,
            // 3: real legacy trade with b/a, combined wrapper; m=false ⇒ taker bought.
            trade(
                "BTC-USDT",
                276229663,
                "43381.54000000",
                "0.10820000",
                Side::Buy,
                1706602794681,
            ),
            // 4: real aggTrade, combined.
            Frame::Ignore,
            // 5, 6: serverShutdown raw and combined.
            Frame::ServerShutdown,
            Frame::ServerShutdown,
        ];
        let lines = samples::lines("binance_trade_samples.jsonl");
        assert_eq!(lines.len(), expected.len());
        for ((n, line), want) in lines.iter().zip(expected) {
            assert_eq!(
                Binance.parse_frame(line, rx).unwrap(),
                want,
                "line {n}: {line}"
            );
        }
        // Exact text survives: no float on the way.
        if let Frame::Trades(t) = Binance.parse_frame(&lines[2].1, rx).unwrap() {
            assert_eq!(t[0].price.to_string(), "43381.54000000");
            assert_eq!(t[0].quantity, dec("0.1082"));
        }
    }

    #[test]
    fn kline_samples_are_ignored_not_rejected() {
        for (n, line) in samples::lines("binance_kline_samples.jsonl") {
            assert_eq!(
                Binance.parse_frame(&line, Micros(0)).unwrap(),
                Frame::Ignore,
                "line {n}"
            );
        }
    }

    #[test]
    fn answers_and_errors() {
        let p = |s: &str| Binance.parse_frame(s, Micros(0));
        assert_eq!(p(r#"{"result":null,"id":1}"#).unwrap(), Frame::Ack);
        assert_eq!(
            p(r#"{"result":["btcusdt@trade"],"id":"x"}"#).unwrap(),
            Frame::Ack
        );
        assert!(matches!(
            p(r#"{"code":2,"msg":"Invalid request: unknown variable","id":1}"#).unwrap(),
            Frame::ExchangeError(m) if m.contains("Invalid request")
        ));
    }

    #[test]
    fn malformed_frames_are_errors_not_panics() {
        let bad = [
            "",
            "not json",
            "[]",
            "{}",
            r#"{"e":"trade"}"#,
            r#"{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"abc","q":"1","T":1,"m":true}"#,
            r#"{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"-1","q":"1","T":1,"m":true}"#,
            r#"{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"1","q":"0","T":1,"m":true}"#,
            r#"{"e":"trade","E":1,"s":"BTCUSDT","t":-1,"p":"1","q":"1","T":1,"m":true}"#,
            r#"{"e":"trade","E":1,"s":"???","t":1,"p":"1","q":"1","T":1,"m":true}"#,
            r#"{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":1.5,"q":"1","T":1,"m":true}"#,
            r#"{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"1","q":"1","T":9223372036854775807,"m":true}"#,
            r#"{"stream":"btcusdt@trade","data":{"stream":"x","data":{}}}"#,
            r#"{"stream":"btcusdt@trade","data":"#,
        ];
        for text in bad {
            assert!(Binance.parse_frame(text, Micros(0)).is_err(), "{text}");
        }
    }

    #[test]
    fn subscribe_is_one_message_with_every_stream() {
        let msgs = Binance.subscribe_messages(&Pair::defaults());
        let v: serde_json::Value = serde_json::from_str(&msgs[0]).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"method":"SUBSCRIBE","params":["btcusdt@trade","ethusdt@trade","solusdt@trade"],"id":1})
        );
    }

    #[test]
    fn backfill_pages_ascend_from_the_gap() {
        let gap = Gap {
            pair: pair("BTC-USDT"),
            after_id: 100,
            after_time: Micros(0),
            until_id: 104,
        };
        assert_eq!(
            Binance.backfill_url("http://h:1/", &gap, None),
            "http://h:1/api/v3/historicalTrades?symbol=BTCUSDT&fromId=101&limit=4"
        );
        let body = r#"[{"id":101,"price":"4.00000100","qty":"12.00000000","quoteQty":"48.000012","time":1499865549590,"isBuyerMaker":true,"isBestMatch":true},
                      {"id":102,"price":"4.1","qty":"1","quoteQty":"4.1","time":1499865549591,"isBuyerMaker":false,"isBestMatch":true}]"#;
        let page = Binance.parse_backfill(body, &gap, Micros(5)).unwrap();
        assert_eq!(page.trades.len(), 2);
        assert_eq!(page.trades[0].side, Side::Sell);
        assert_eq!(page.trades[0].price.to_string(), "4.00000100");
        assert_eq!(page.trades[1].side, Side::Buy);
        assert_eq!(page.next, None, "a short page: nothing newer exists");
        // A full page of a long gap goes on after its highest id.
        let long = Gap {
            until_id: 5000,
            ..gap
        };
        let rows: Vec<String> = (101..1101)
            .map(|id| {
                format!(r#"{{"id":{id},"price":"1","qty":"1","time":1,"isBuyerMaker":true}}"#)
            })
            .collect();
        let full = Binance
            .parse_backfill(&format!("[{}]", rows.join(",")), &long, Micros(5))
            .unwrap();
        assert_eq!(full.next.as_deref(), Some("1101"));
        assert_eq!(
            Binance.backfill_url("http://h:1", &long, full.next.as_deref()),
            "http://h:1/api/v3/historicalTrades?symbol=BTCUSDT&fromId=1101&limit=1000"
        );
        let last = Binance
            .parse_backfill(
                r#"[{"id":104,"price":"1","qty":"1","time":1,"isBuyerMaker":true}]"#,
                &gap,
                Micros(5),
            )
            .unwrap();
        assert_eq!(last.next, None);
        assert_eq!(
            Binance.parse_backfill("[]", &gap, Micros(5)).unwrap().next,
            None
        );
        assert!(
            Binance
                .parse_backfill(
                    r#"{"code":-1003,"msg":"Too many requests"}"#,
                    &gap,
                    Micros(5)
                )
                .is_err()
        );
    }

    #[test]
    fn listing_finds_symbols_by_their_assets_in_a_real_answer() {
        let (eth_btc, btc) = (pair("ETH-BTC"), pair("BTC-USDT"));
        assert_eq!(
            Binance.listing_url("https://api.binance.com", &[btc]),
            "https://api.binance.com/api/v3/exchangeInfo?symbol=BTCUSDT"
        );
        assert_eq!(
            Binance.listing_url("https://api.binance.com", &[btc, eth_btc]),
            "https://api.binance.com/api/v3/exchangeInfo?symbols=%5B%22BTCUSDT%22%2C%22ETHBTC%22%5D"
        );
        let real = samples::text("binance_exchange_info_sample.json");
        let found = Binance
            .parse_listing(200, &real, &[eth_btc, btc])
            .unwrap()
            .unwrap();
        assert_eq!(
            found,
            [PairListing::listed(
                eth_btc,
                "ETHBTC",
                Status::Trading,
                "TRADING"
            )]
        );
        let halted = r#"{"symbols":[{"symbol":"BTCUSDT","status":"BREAK","baseAsset":"BTC","quoteAsset":"USDT"}]}"#;
        let found = Binance.parse_listing(200, halted, &[btc]).unwrap().unwrap();
        assert_eq!(
            (found[0].status, found[0].detail.as_str()),
            (Status::Halted, "BTCUSDT: BREAK")
        );
        let invalid = r#"{"code":-1121,"msg":"Invalid symbol."}"#;
        let one = Binance
            .parse_listing(400, invalid, &[btc])
            .unwrap()
            .unwrap();
        assert_eq!(one[0].status, Status::NotListed);
        assert_eq!(
            Binance
                .parse_listing(400, invalid, &[btc, eth_btc])
                .unwrap(),
            None
        );
        let banned = r#"{"code":-1003,"msg":"Way too many requests"}"#;
        assert!(Binance.parse_listing(418, banned, &[btc]).is_err());
    }
}
