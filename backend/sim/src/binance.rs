//! Binance spot: raw `@trade` streams over WebSocket and the public trades REST endpoints.
//!
//! - WebSocket `/ws` (send `SUBSCRIBE`), `/ws/<stream>[/<stream>…]` (streams in the path) and
//!   combined `/stream?streams=a/b` (events wrapped as `{"stream":…,"data":…}`).
//!   Subscribing to an unknown symbol still answers `{"result":null,"id":…}` and sends nothing,
//!   as Binance does. Ping frames every 20 s.
//! - Event (web-socket-streams.md, `<symbol>@trade`):
//!   `{"e":"trade","E":1706602794682,"s":"BTCUSDT","t":276229663,"p":"43381.54000000","q":"0.10820000","T":1706602794681,"m":false,"M":true}`
//!   where `m` = buyer is the maker, i.e. the taker sold.
//! - REST: `GET /api/v3/historicalTrades?symbol=&fromId=&limit=`, `GET /api/v3/trades?symbol=&limit=`,
//!   `GET /api/v3/exchangeInfo?symbol=`, `GET /api/v3/klines` (see `klines`), `GET /api/v3/ping`, `GET /api/v3/time`.

use crate::http::{Request, Response};
use crate::market::Market;
use crate::ratelimit::{Rule, retry_after_secs};
use crate::venue::{Parsed, Session, Venue, json_str};
use candles_core::symbols::{pair_from_symbol, rest_symbol, ws_symbol};
use candles_core::{Decimal, Exchange, Micros, Pair, Side, Trade};
use serde_json::{Value, json};

/// Binance's protocol.
pub(crate) struct Binance;

/// Binance writes prices and quantities with 8 decimals.
const DECIMALS: u32 = 8;
/// `limit` of the trades endpoints: default and maximum.
const DEFAULT_LIMIT: usize = 500;
const MAX_LIMIT: usize = 1000;

/// `btcusdt@trade` → BTC-USDT; other stream kinds → `None`.
fn trade_stream_pair(stream: &str) -> Option<Pair> {
    let (symbol, kind) = stream.split_once('@')?;
    if kind != "trade" {
        return None;
    }
    pair_from_symbol(Exchange::Binance, symbol).ok()
}

fn stream_name(pair: Pair) -> String {
    candles_core::symbols::binance_stream(pair)
}

fn error(status: u16, code: i64, msg: &str) -> Response {
    Response::status(status, json!({ "code": code, "msg": msg }).to_string())
}

impl Binance {
    fn subscribe_streams<'a>(
        &self,
        streams: impl Iterator<Item = &'a str>,
        session: &mut Session,
        market: &Market,
    ) {
        for stream in streams {
            match trade_stream_pair(stream) {
                Some(pair) if market.is_listed(pair) => {
                    session.subscribe(pair, market, 0);
                }
                // Binance accepts any stream name and simply sends nothing for unknown ones.
                _ => tracing::debug!(stream, "subscription to an unknown stream: no data"),
            }
        }
    }

    /// The pair for a REST `symbol` parameter, or the error Binance gives.
    fn rest_pair(&self, request: &Request, market: &Market) -> Result<Pair, Response> {
        let Some(symbol) = request.param("symbol").filter(|s| !s.is_empty()) else {
            return Err(error(
                400,
                -1102,
                "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
            ));
        };
        match pair_from_symbol(Exchange::Binance, &symbol) {
            Ok(pair) if market.is_listed(pair) => Ok(pair),
            _ => Err(error(400, -1121, "Invalid symbol.")),
        }
    }

    fn limit(&self, request: &Request) -> Result<usize, Response> {
        match request.param("limit") {
            None => Ok(DEFAULT_LIMIT),
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
                _ => Err(error(
                    400,
                    -1130,
                    "Data sent for parameter 'limit' is not valid.",
                )),
            },
        }
    }

    fn trades_json(trades: &[Trade]) -> String {
        let items: Vec<Value> = trades
            .iter()
            .map(|t| {
                let mut quote = (t.price * t.quantity).round_dp(DECIMALS);
                quote.rescale(DECIMALS);
                json!({
                    "id": t.id,
                    "price": t.price.to_string(),
                    "qty": t.quantity.to_string(),
                    "quoteQty": quote.to_string(),
                    "time": t.time.as_millis(),
                    "isBuyerMaker": t.side == Side::Sell,
                    "isBestMatch": true,
                })
            })
            .collect();
        Value::Array(items).to_string()
    }

    fn symbol_info(pair: Pair, market: &Market) -> Value {
        json!({
            "symbol": rest_symbol(Exchange::Binance, pair),
            "status": if market.is_halted(pair) { "BREAK" } else { "TRADING" },
            "baseAsset": pair.base.as_str(),
            "quoteAsset": pair.quote.as_str(),
        })
    }

    fn exchange_info(&self, request: &Request, market: &Market) -> Response {
        let symbols: Vec<String> = if let Some(symbol) = request.param("symbol") {
            vec![symbol]
        } else if let Some(list) = request.param("symbols") {
            match serde_json::from_str::<Vec<String>>(&list) {
                Ok(list) => list,
                Err(_) => {
                    return error(
                        400,
                        -1100,
                        "Illegal characters found in parameter 'symbols'.",
                    );
                }
            }
        } else {
            market
                .listed
                .iter()
                .map(|p| rest_symbol(Exchange::Binance, *p))
                .collect()
        };
        let mut infos = Vec::new();
        for symbol in symbols {
            match pair_from_symbol(Exchange::Binance, &symbol) {
                Ok(pair) if market.is_listed(pair) => infos.push(Self::symbol_info(pair, market)),
                _ => return error(400, -1121, "Invalid symbol."),
            }
        }
        Response::ok(
            json!({ "timezone": "UTC", "serverTime": Micros::now().as_millis(), "symbols": infos })
                .to_string(),
        )
    }
}

/// Parses one `@trade` event (raw or inside a combined wrapper) into a trade.
fn parse_trade_event(event: &Value) -> Option<Trade> {
    if event.get("e")?.as_str()? != "trade" {
        return None;
    }
    let pair = pair_from_symbol(Exchange::Binance, event.get("s")?.as_str()?).ok()?;
    let id = event.get("t")?.as_u64()?;
    let time = Micros::from_millis(event.get("T")?.as_i64()?);
    let side = if event.get("m")?.as_bool()? {
        Side::Sell
    } else {
        Side::Buy
    };
    let price = event.get("p")?.as_str()?;
    let qty = event.get("q")?.as_str()?;
    Trade::new(Exchange::Binance, pair, id, price, qty, side, time).ok()
}

impl Venue for Binance {
    /// `REQUEST_WEIGHT`: 6,000 per minute per IP (GET /api/v3/exchangeInfo `rateLimits`).
    fn rest_limit(&self) -> Rule {
        Rule::Window {
            per: std::time::Duration::from_secs(60),
            max: 6_000,
        }
    }

    /// Binance's documented weights: trades lists 25, exchangeInfo 20, klines 2, the rest 1.
    fn rest_cost(&self, path: &str) -> f64 {
        match path {
            "/api/v3/historicalTrades" | "/api/v3/trades" => 25.0,
            "/api/v3/exchangeInfo" => 20.0,
            "/api/v3/klines" => 2.0,
            _ => 1.0,
        }
    }

    /// 429 with `Retry-After`; 418 (an IP ban) for who keeps asking while told to wait.
    fn rate_limited(&self, retry_after: std::time::Duration, banned: bool) -> Response {
        let secs = retry_after_secs(retry_after);
        let (status, msg) = if banned {
            (
                418,
                "Way too many requests; IP banned. Please use the websocket for live updates to avoid bans.",
            )
        } else {
            (
                429,
                "Too many requests; current limit of IP is 6000 request weight per 1 MINUTE. Please use the websocket for live updates to avoid polling the API.",
            )
        };
        Response::status(status, json!({ "code": -1003, "msg": msg }).to_string())
            .with_header("Retry-After", secs.to_string())
    }

    fn exchange(&self) -> Exchange {
        Exchange::Binance
    }

    fn ws_path(&self) -> &'static str {
        "/ws"
    }

    fn open(&self, path: &str, query: &str, market: &Market) -> Option<Session> {
        let mut session = Session::default();
        if path == "/ws" || path == "/ws/" {
        } else if let Some(streams) = path.strip_prefix("/ws/") {
            self.subscribe_streams(streams.split('/'), &mut session, market);
        } else if path == "/stream" || path == "/stream/" {
            session.combined = true;
            if let Some(streams) = crate::http::query_param(query, "streams") {
                self.subscribe_streams(streams.split('/'), &mut session, market);
            }
        } else {
            return None;
        }
        Some(session)
    }

    fn on_text(&self, text: &str, session: &mut Session, market: &Market) -> Vec<String> {
        let request: Value = match serde_json::from_str(text) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => {
                return vec![
                    json!({ "code": 2, "msg": "Invalid request: expected a JSON object" })
                        .to_string(),
                ];
            }
            Err(e) => {
                return vec![json!({ "code": 3, "msg": format!("Invalid JSON: {e}") }).to_string()];
            }
        };
        let id = request.get("id").cloned().unwrap_or(Value::Null);
        let params: Vec<&str> = request
            .get("params")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let reply = match request.get("method").and_then(Value::as_str) {
            Some("SUBSCRIBE") => {
                self.subscribe_streams(params.into_iter(), session, market);
                format!(r#"{{"result":null,"id":{id}}}"#)
            }
            Some("UNSUBSCRIBE") => {
                for pair in params.into_iter().filter_map(trade_stream_pair) {
                    session.subs.remove(&pair);
                }
                format!(r#"{{"result":null,"id":{id}}}"#)
            }
            Some("LIST_SUBSCRIPTIONS") => {
                let streams: Vec<String> = session.subs.keys().map(|p| stream_name(*p)).collect();
                format!(r#"{{"result":{},"id":{id}}}"#, json!(streams))
            }
            Some(other) => {
                let msg = format!(
                    "Invalid request: unknown variant '{other}', expected one of SUBSCRIBE, UNSUBSCRIBE, LIST_SUBSCRIPTIONS"
                );
                format!(r#"{{"code":2,"msg":{},"id":{id}}}"#, json_str(&msg))
            }
            None => {
                format!(r#"{{"code":2,"msg":"Invalid request: missing field 'method'","id":{id}}}"#)
            }
        };
        vec![reply]
    }

    fn encode(&self, trades: &[Trade], session: &Session) -> Vec<String> {
        let now_ms = Micros::now().as_millis();
        trades
            .iter()
            .map(|t| {
                let event = format!(
                    r#"{{"e":"trade","E":{},"s":"{}","t":{},"p":"{}","q":"{}","T":{},"m":{},"M":true}}"#,
                    now_ms.max(t.time.as_millis()),
                    ws_symbol(Exchange::Binance, t.pair),
                    t.id,
                    t.price,
                    t.quantity,
                    t.time.as_millis(),
                    t.side == Side::Sell,
                );
                if session.combined {
                    format!(r#"{{"stream":"{}","data":{event}}}"#, stream_name(t.pair))
                } else {
                    event
                }
            })
            .collect()
    }

    fn sends_pings(&self) -> bool {
        true
    }

    fn corrupt(&self, message: &str) -> String {
        message.replacen(r#""p":""#, r#""p":"NaN"#, 1)
    }

    fn rest(&self, request: &Request, market: &Market) -> Response {
        match request.path.as_str() {
            "/api/v3/historicalTrades" | "/api/v3/trades" => {
                let pair = match self.rest_pair(request, market) {
                    Ok(p) => p,
                    Err(r) => return r,
                };
                let limit = match self.limit(request) {
                    Ok(n) => n,
                    Err(r) => return r,
                };
                let from_id = match request.param("fromId") {
                    None => None,
                    Some(text) => match text.parse::<u64>() {
                        Ok(id) if request.path == "/api/v3/historicalTrades" => Some(id),
                        _ => {
                            return error(
                                400,
                                -1100,
                                "Illegal characters found in parameter 'fromId'; legal range is '^[0-9]{1,20}$'.",
                            );
                        }
                    },
                };
                let body = market.with_pair(pair, |list| {
                    let page = match from_id {
                        Some(from) => {
                            let start = list.partition_point(|t| t.id < from);
                            &list[start..(start + limit).min(list.len())]
                        }
                        None => &list[list.len().saturating_sub(limit)..],
                    };
                    Self::trades_json(page)
                });
                Response::ok(body)
            }
            "/api/v3/exchangeInfo" => self.exchange_info(request, market),
            "/api/v3/klines" => match self.rest_pair(request, market) {
                Ok(pair) => crate::klines::binance(request, pair, market)
                    .map_or_else(|msg| error(400, -1120, &msg), Response::ok),
                Err(r) => r,
            },
            "/api/v3/ping" => Response::ok("{}"),
            "/api/v3/time" => {
                Response::ok(json!({ "serverTime": Micros::now().as_millis() }).to_string())
            }
            _ => error(404, -1000, "Unknown path on this Binance simulator"),
        }
    }

    fn parse_line(&self, line: &str) -> Parsed {
        let Ok(value) = serde_json::from_str::<Value>(line) else {
            return Parsed::default();
        };
        let event = value
            .get("data")
            .filter(|_| value.get("stream").is_some())
            .unwrap_or(&value);
        let pair = event
            .get("s")
            .and_then(Value::as_str)
            .and_then(|s| pair_from_symbol(Exchange::Binance, s).ok());
        Parsed {
            pair,
            trades: parse_trade_event(event).into_iter().collect(),
        }
    }

    fn wire(&self, mut trade: Trade) -> Trade {
        trade.time = Micros::from_millis(trade.time.as_millis());
        trade.received = trade.time;
        trade.price = rescaled(trade.price);
        trade.quantity = rescaled(trade.quantity);
        trade
    }
}

fn rescaled(mut d: Decimal) -> Decimal {
    d.rescale(DECIMALS);
    d
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn klines_weigh_two() {
        assert_eq!(Binance.rest_cost("/api/v3/klines"), 2.0);
    }

    #[test]
    fn stream_names_map_to_pairs() {
        assert_eq!(
            trade_stream_pair("btcusdt@trade").unwrap().to_string(),
            "BTC-USDT"
        );
        assert_eq!(trade_stream_pair("btcusdt@aggTrade"), None);
        assert_eq!(trade_stream_pair("nonsense"), None);
    }

    #[test]
    fn sample_lines_parse_into_trades() {
        let line = r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1706602794682,"s":"BTCUSDT","t":276229663,"p":"43381.54000000","q":"0.10820000","b":2707014328,"a":2707014327,"T":1706602794681,"m":false,"M":true}}"#;
        let parsed = Binance.parse_line(line);
        assert_eq!(parsed.pair.unwrap().to_string(), "BTC-USDT");
        let t = parsed.trades[0];
        assert_eq!(
            (t.id, t.price.to_string(), t.quantity.to_string()),
            (276229663, "43381.54000000".into(), "0.10820000".into())
        );
        assert_eq!(
            (t.side, t.time),
            (Side::Buy, Micros::from_millis(1706602794681))
        );
        let agg = Binance.parse_line(r#"{"e":"aggTrade","E":1,"s":"BNBBTC","a":1,"p":"0.001","q":"100","f":100,"l":105,"T":1,"m":true,"M":true}"#);
        assert!(agg.trades.is_empty() && agg.pair.is_some());
        assert_eq!(Binance.parse_line("not json"), Parsed::default());
    }

    #[test]
    fn events_round_trip_through_the_parser() {
        let pair = Pair::parse("BTC-USDT").unwrap();
        let t = Binance.wire(
            Trade::new(
                Exchange::Binance,
                pair,
                7,
                "97000.1",
                "0.001",
                Side::Sell,
                Micros(1_700_000_000_123_456),
            )
            .unwrap(),
        );
        assert_eq!(t.price.to_string(), "97000.10000000");
        let mut session = Session::default();
        let raw = &Binance.encode(&[t], &session)[0];
        assert_eq!(Binance.parse_line(raw).trades, vec![t]);
        assert!(raw.contains(r#""m":true"#), "{raw}");
        session.combined = true;
        let wrapped = &Binance.encode(&[t], &session)[0];
        assert!(
            wrapped.starts_with(r#"{"stream":"btcusdt@trade","data":{"e":"trade""#),
            "{wrapped}"
        );
        assert_eq!(Binance.parse_line(wrapped).trades, vec![t]);
        assert!(Binance.parse_line(&Binance.corrupt(raw)).trades.is_empty());
    }
}
