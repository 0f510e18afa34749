//! Kraken spot WebSocket v2 `trade` channel and the public REST trades endpoints.
//!
//! - WebSocket `/v2`. On connect a `status` message; `subscribe` with `channel:"trade"` gets one
//!   ack per symbol (unknown → `success:false`, `error:"Currency pair not supported XXX/YYY"`),
//!   then (with `snapshot:true`, the default) a snapshot of the last 50 trades, then `update`
//!   messages, several trades of a pair batched in one message when they happen together.
//!   Prices and quantities are JSON numbers whose text is the exact decimal.
//!   `{"channel":"heartbeat"}` every second once subscribed; `ping` → `pong`.
//! - Trade message (docs.kraken.com/api/docs/websocket-v2/trade):
//!   `{"channel":"trade","type":"update","data":[{"symbol":"BTC/USDT","side":"buy","price":97000.1,"qty":0.0012,"ord_type":"limit","trade_id":4665846,"timestamp":"2023-09-25T07:48:36.925533Z"}]}`
//! - REST: `GET /0/public/Trades?pair=XBTUSDT&since=<ns>&count=<n>` (trades with time > since,
//!   oldest first), `GET /0/public/AssetPairs?pair=XBTUSDT`, `GET /0/public/Time`,
//!   `GET /0/public/OHLC` (see `klines`).

use crate::http::{Request, Response};
use crate::market::Market;
use crate::ratelimit::Rule;
use crate::venue::{Parsed, Session, Venue, json_str};
use candles_core::symbols::{kraken_asset, pair_from_symbol, rest_symbol, ws_symbol};
use candles_core::{Decimal, Exchange, Micros, Pair, Side, Trade};
use serde_json::{Value, json};
use std::fmt::Write as _;

/// Kraken's protocol.
pub(crate) struct Kraken;

/// Trades in a subscription snapshot.
const SNAPSHOT: usize = 50;
/// `count` of the REST trades endpoint: default and maximum.
const DEFAULT_COUNT: usize = 1000;

/// The order type shown for a trade (Kraken reports the taker's; the sim derives it from the id).
fn ord_type(trade: &Trade) -> &'static str {
    if trade.id.is_multiple_of(4) {
        "market"
    } else {
        "limit"
    }
}

fn trade_item(t: &Trade) -> String {
    format!(
        r#"{{"symbol":"{}","side":"{}","price":{},"qty":{},"ord_type":"{}","trade_id":{},"timestamp":"{}"}}"#,
        ws_symbol(Exchange::Kraken, t.pair),
        if t.side == Side::Sell { "sell" } else { "buy" },
        t.price,
        t.quantity,
        ord_type(t),
        t.id,
        t.time.to_rfc3339(),
    )
}

fn trade_message(kind: &str, trades: &[Trade]) -> String {
    let items: Vec<String> = trades.iter().map(trade_item).collect();
    format!(
        r#"{{"channel":"trade","type":"{kind}","data":[{}]}}"#,
        items.join(",")
    )
}

/// `,"req_id":N` when the request had one.
fn req_id_suffix(request: &Value) -> String {
    match request.get("req_id") {
        Some(id) if !id.is_null() => format!(r#","req_id":{id}"#),
        _ => String::new(),
    }
}

/// Kraken's REST asset codes: `XXBT`, `XETH`, `ZUSD`, `ZEUR`; others as they are.
fn asset_code(asset: &str) -> String {
    match asset {
        "BTC" => "XXBT".into(),
        "ETH" => "XETH".into(),
        "XRP" => "XXRP".into(),
        "LTC" => "XLTC".into(),
        "USD" => "ZUSD".into(),
        "EUR" => "ZEUR".into(),
        "JPY" => "ZJPY".into(),
        "GBP" => "ZGBP".into(),
        "CAD" => "ZCAD".into(),
        other => other.into(),
    }
}

/// Kraken's key for a pair in `AssetPairs` (and its REST answers): the legacy form of two
/// `X`/`Z` asset codes for its old pairs (`XXBTZUSD`, `XXBTZJPY`, `XETHXXBT`), else the
/// altname (`XBTUSDT`, `XDGUSD`).
fn pair_key(pair: Pair) -> String {
    let (base, quote) = (
        asset_code(pair.base.as_str()),
        asset_code(pair.quote.as_str()),
    );
    let legacy = |code: &str| code.len() == 4 && (code.starts_with('X') || code.starts_with('Z'));
    if legacy(&base) && legacy(&quote) {
        format!("{base}{quote}")
    } else {
        rest_symbol(Exchange::Kraken, pair)
    }
}

/// The v1 WebSocket name (`XBT/USDT`, `XDG/USDT`) that AssetPairs reports as `wsname`.
fn v1_name(pair: Pair) -> String {
    format!(
        "{}/{}",
        kraken_asset(pair.base.as_str()),
        kraken_asset(pair.quote.as_str())
    )
}

fn kraken_error(message: &str) -> Response {
    Response::ok(json!({ "error": [message] }).to_string())
}

/// A time as Kraken's REST float seconds, exactly: `1700000000.123456`.
fn float_seconds(t: Micros) -> String {
    format!(
        "{}.{:06}",
        t.0.div_euclid(1_000_000),
        t.0.rem_euclid(1_000_000)
    )
}

/// Parses `since`: nanoseconds, or seconds when it has a fraction or is too small to be ns.
fn parse_since(text: &str) -> Option<i128> {
    let value = Decimal::from_str_exact(text.trim()).ok()?;
    if value < Decimal::ZERO {
        return None;
    }
    let ns = if text.contains('.') || value < Decimal::from(100_000_000_000_000i64) {
        value * Decimal::from(1_000_000_000)
    } else {
        value
    };
    ns.trunc().to_string().parse().ok()
}

impl Kraken {
    fn ack(
        &self,
        method: &str,
        channel: &str,
        symbol: Option<&str>,
        snapshot: Option<bool>,
        error: Option<&str>,
        request: &Value,
    ) -> String {
        let now = Micros::now().to_rfc3339();
        let mut out = String::from("{");
        if let Some(error) = error {
            let _ = write!(out, r#""error":{},"#, json_str(error));
        }
        let _ = write!(out, r#""method":{},"#, json_str(method));
        if error.is_none() {
            let _ = write!(out, r#""result":{{"channel":{}"#, json_str(channel));
            if let Some(snapshot) = snapshot {
                let _ = write!(out, r#","snapshot":{snapshot}"#);
            }
            if let Some(symbol) = symbol {
                let _ = write!(out, r#","symbol":{}"#, json_str(symbol));
            }
            out.push_str("},");
        }
        let _ = write!(out, r#""success":{},"#, error.is_none());
        if let (Some(_), Some(symbol)) = (error, symbol) {
            let _ = write!(out, r#""symbol":{},"#, json_str(symbol));
        }
        let _ = write!(
            out,
            r#""time_in":"{now}","time_out":"{now}"{}}}"#,
            req_id_suffix(request)
        );
        out
    }

    fn symbols(request: &Value) -> Vec<String> {
        request
            .pointer("/params/symbol")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn subscribe(&self, request: &Value, session: &mut Session, market: &Market) -> Vec<String> {
        let channel = request
            .pointer("/params/channel")
            .and_then(Value::as_str)
            .unwrap_or("");
        match channel {
            "trade" => {}
            "heartbeat" => {
                return vec![self.ack("subscribe", "heartbeat", None, None, None, request)];
            }
            _ => {
                let error =
                    format!("Channel {channel:?} is not supported by exchange-sim (only trade)");
                return vec![self.ack("subscribe", channel, None, None, Some(&error), request)];
            }
        }
        let snapshot = request
            .pointer("/params/snapshot")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let symbols = Self::symbols(request);
        if symbols.is_empty() {
            return vec![self.ack(
                "subscribe",
                channel,
                None,
                None,
                Some("EGeneral:Invalid arguments:no symbols"),
                request,
            )];
        }
        let mut out = Vec::new();
        let mut snapshots = Vec::new();
        for symbol in &symbols {
            match pair_from_symbol(Exchange::Kraken, symbol) {
                Ok(pair) if market.is_listed(pair) => {
                    let recent =
                        session.subscribe(pair, market, if snapshot { SNAPSHOT } else { 0 });
                    out.push(self.ack(
                        "subscribe",
                        "trade",
                        Some(symbol),
                        Some(snapshot),
                        None,
                        request,
                    ));
                    if snapshot {
                        snapshots.push(trade_message("snapshot", &recent));
                    }
                }
                _ => {
                    let error = format!("Currency pair not supported {symbol}");
                    out.push(self.ack(
                        "subscribe",
                        "trade",
                        Some(symbol),
                        None,
                        Some(&error),
                        request,
                    ));
                }
            }
        }
        out.extend(snapshots);
        out
    }

    fn unsubscribe(&self, request: &Value, session: &mut Session) -> Vec<String> {
        Self::symbols(request)
            .iter()
            .map(|symbol| match pair_from_symbol(Exchange::Kraken, symbol) {
                Ok(pair) if session.subs.remove(&pair).is_some() => {
                    self.ack("unsubscribe", "trade", Some(symbol), None, None, request)
                }
                _ => self.ack(
                    "unsubscribe",
                    "trade",
                    Some(symbol),
                    None,
                    Some("Subscription Not Found"),
                    request,
                ),
            })
            .collect()
    }

    /// The listed pair for a REST `pair` parameter (`XBTUSDT`, `BTCUSDT`, `XBT/USDT`, its key
    /// `XXBTZJPY` or altname `XBTJPY`, …).
    fn rest_pair(text: &str, market: &Market) -> Option<Pair> {
        let named = |p: &Pair| pair_key(*p) == text || rest_symbol(Exchange::Kraken, *p) == text;
        (market.listed.iter().copied().find(named)).or_else(|| {
            pair_from_symbol(Exchange::Kraken, text)
                .ok()
                .filter(|p| market.is_listed(*p))
        })
    }

    fn trades(&self, request: &Request, market: &Market) -> Response {
        let Some(text) = request.param("pair") else {
            return kraken_error("EGeneral:Invalid arguments");
        };
        let Some(pair) = Self::rest_pair(&text, market) else {
            return kraken_error("EQuery:Unknown asset pair");
        };
        let since = match request.param("since") {
            None => 0,
            Some(text) => match parse_since(&text) {
                Some(ns) => ns,
                None => return kraken_error("EGeneral:Invalid arguments:since"),
            },
        };
        let count = match request.param("count").map(|c| c.parse::<usize>()) {
            None => DEFAULT_COUNT,
            Some(Ok(n)) if n >= 1 => n.min(DEFAULT_COUNT),
            Some(_) => return kraken_error("EGeneral:Invalid arguments:count"),
        };
        let key = rest_symbol(Exchange::Kraken, pair);
        let (rows, last) = market.with_pair(pair, |list| {
            let start = list.partition_point(|t| i128::from(t.time.0) * 1_000 <= since);
            let page = &list[start..(start + count).min(list.len())];
            let rows: Vec<String> = page
                .iter()
                .map(|t| {
                    let mut volume = t.quantity;
                    volume.rescale(8);
                    format!(
                        r#"["{}","{}",{},"{}","{}","",{}]"#,
                        t.price,
                        volume,
                        float_seconds(t.time),
                        if t.side == Side::Sell { "s" } else { "b" },
                        if ord_type(t) == "market" { "m" } else { "l" },
                        t.id
                    )
                })
                .collect();
            let last = page.last().map_or(since, |t| i128::from(t.time.0) * 1_000);
            (rows, last)
        });
        Response::ok(format!(
            r#"{{"error":[],"result":{{"{key}":[{}],"last":"{last}"}}}}"#,
            rows.join(",")
        ))
    }

    fn asset_pairs(&self, request: &Request, market: &Market) -> Response {
        let pairs: Vec<Pair> = match request.param("pair") {
            None => market.listed.clone(),
            Some(list) => {
                let mut pairs = Vec::new();
                for text in list.split(',').filter(|t| !t.is_empty()) {
                    match Self::rest_pair(text, market) {
                        Some(p) => pairs.push(p),
                        None => return kraken_error("EQuery:Unknown asset pair"),
                    }
                }
                pairs
            }
        };
        let mut result = serde_json::Map::new();
        for pair in pairs {
            let mut info = json!({
                "altname": rest_symbol(Exchange::Kraken, pair),
                "wsname": v1_name(pair),
                "base": asset_code(pair.base.as_str()),
                "quote": asset_code(pair.quote.as_str()),
            });
            // Without a status a pair reads as online (the shape earlier versions served).
            if market.is_halted(pair) {
                info["status"] = json!("cancel_only");
            }
            result.insert(pair_key(pair), info);
        }
        Response::ok(json!({ "error": [], "result": result }).to_string())
    }
}

impl Venue for Kraken {
    /// Public endpoints: about one call a second, with a small burst.
    fn rest_limit(&self) -> Rule {
        Rule::Bucket {
            burst: 3.0,
            per_second: 1.0,
        }
    }

    /// HTTP 200 with `EGeneral:Too many requests`, no `Retry-After`.
    fn rate_limited(&self, _retry_after: std::time::Duration, _banned: bool) -> Response {
        kraken_error("EGeneral:Too many requests")
    }

    fn exchange(&self) -> Exchange {
        Exchange::Kraken
    }

    fn ws_path(&self) -> &'static str {
        "/v2"
    }

    fn open(&self, path: &str, _query: &str, _market: &Market) -> Option<Session> {
        matches!(path, "/v2" | "/v2/").then(Session::default)
    }

    fn greeting(&self, session: &Session) -> Vec<String> {
        vec![format!(
            r#"{{"channel":"status","data":[{{"api_version":"v2","connection_id":{},"system":"online","version":"2.0.10"}}],"type":"update"}}"#,
            12_393_906_104_898_154_338u64.wrapping_add(session.id)
        )]
    }

    fn on_text(&self, text: &str, session: &mut Session, market: &Market) -> Vec<String> {
        let Ok(request) = serde_json::from_str::<Value>(text) else {
            let now = Micros::now().to_rfc3339();
            return vec![format!(
                r#"{{"error":"Malformed request","success":false,"time_in":"{now}","time_out":"{now}"}}"#
            )];
        };
        match request.get("method").and_then(Value::as_str).unwrap_or("") {
            "subscribe" => self.subscribe(&request, session, market),
            "unsubscribe" => self.unsubscribe(&request, session),
            "ping" => {
                let now = Micros::now().to_rfc3339();
                vec![format!(
                    r#"{{"method":"pong"{},"time_in":"{now}","time_out":"{now}"}}"#,
                    req_id_suffix(&request)
                )]
            }
            other => {
                let error = format!("Method {other:?} is not supported by exchange-sim");
                let now = Micros::now().to_rfc3339();
                vec![format!(
                    r#"{{"error":{},"method":{},"success":false,"time_in":"{now}","time_out":"{now}"{}}}"#,
                    json_str(&error),
                    json_str(other),
                    req_id_suffix(&request)
                )]
            }
        }
    }

    fn encode(&self, trades: &[Trade], _session: &Session) -> Vec<String> {
        // One update per pair with all of that pair's trades of this step (Kraken batches).
        let mut pairs: Vec<Pair> = Vec::new();
        for t in trades {
            if !pairs.contains(&t.pair) {
                pairs.push(t.pair);
            }
        }
        pairs
            .into_iter()
            .map(|pair| {
                let batch: Vec<Trade> = trades.iter().filter(|t| t.pair == pair).copied().collect();
                trade_message("update", &batch)
            })
            .collect()
    }

    fn heartbeats(&self, session: &Session, _market: &Market) -> Vec<String> {
        if session.subscribed {
            vec![r#"{"channel":"heartbeat"}"#.to_string()]
        } else {
            Vec::new()
        }
    }

    fn corrupt(&self, message: &str) -> String {
        message.replacen(r#""price":"#, r#""price":null,"price_text":"#, 1)
    }

    fn rest(&self, request: &Request, market: &Market) -> Response {
        match request.path.as_str() {
            "/0/public/Trades" => self.trades(request, market),
            "/0/public/AssetPairs" => self.asset_pairs(request, market),
            "/0/public/OHLC" => match request
                .param("pair")
                .and_then(|p| Self::rest_pair(&p, market))
            {
                Some(pair) => {
                    let key = rest_symbol(Exchange::Kraken, pair);
                    crate::klines::kraken(request, pair, &key, market)
                        .map_or_else(|e| kraken_error(&e), Response::ok)
                }
                None => kraken_error("EQuery:Unknown asset pair"),
            },
            "/0/public/Time" => {
                let now = Micros::now();
                Response::ok(
                    json!({ "error": [], "result": { "unixtime": now.0 / 1_000_000 } }).to_string(),
                )
            }
            _ => Response::status(
                404,
                json!({ "error": ["EGeneral:Unknown method"] }).to_string(),
            ),
        }
    }

    fn parse_line(&self, line: &str) -> Parsed {
        let Ok(value) = serde_json::from_str::<Value>(line) else {
            return Parsed::default();
        };
        if value.get("channel").and_then(Value::as_str) != Some("trade") {
            return Parsed::default();
        }
        let items = value
            .get("data")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let trades: Vec<Trade> = items.iter().filter_map(parse_item).collect();
        let pair = items
            .first()
            .and_then(|i| i.get("symbol"))
            .and_then(Value::as_str)
            .and_then(|s| pair_from_symbol(Exchange::Kraken, s).ok());
        Parsed { pair, trades }
    }

    fn wire(&self, mut trade: Trade) -> Trade {
        trade.price = trade.price.normalize();
        trade.quantity = trade.quantity.normalize();
        trade
    }
}

/// One `data` item of a trade message.
fn parse_item(item: &Value) -> Option<Trade> {
    let pair = pair_from_symbol(Exchange::Kraken, item.get("symbol")?.as_str()?).ok()?;
    let side = match item.get("side")?.as_str()? {
        "buy" => Side::Buy,
        "sell" => Side::Sell,
        _ => Side::Unknown,
    };
    // With serde_json's arbitrary_precision, a number's text is exactly what the line had.
    let number = |key: &str| match item.get(key)? {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        _ => None,
    };
    let id = item.get("trade_id")?.as_u64()?;
    let time = Micros::parse_rfc3339(item.get("timestamp")?.as_str()?).ok()?;
    Trade::new(
        Exchange::Kraken,
        pair,
        id,
        &number("price")?,
        &number("qty")?,
        side,
        time,
    )
    .ok()
}

#[cfg(test)]
mod tests;
