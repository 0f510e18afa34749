//! Coinbase Exchange market-data feed (`matches` + `heartbeat` channels) and its public REST
//! trades endpoint.
//!
//! - WebSocket `/`. The client must send `subscribe` within 5 s or is disconnected. Channels as
//!   names with top-level `product_ids`, or as objects `{"name":…,"product_ids":[…]}`. Reply:
//!   `subscriptions`, then one `last_match` per product (its most recent trade, if any), then
//!   `match` messages. One unknown product rejects the whole request with
//!   `{"type":"error","message":"Failed to subscribe","reason":"XXX-YYY is not a valid product"}`.
//! - Match (docs.cdp.coinbase.com/exchange/websocket-feed/channels, `matches`):
//!   `{"type":"match","trade_id":10,"sequence":50,"maker_order_id":"…","taker_order_id":"…","time":"2014-11-07T08:19:27.028459Z","product_id":"BTC-USD","size":"5.23512","price":"400.23","side":"sell"}`
//!   where `side` is the MAKER's side: a taker buy is `"sell"`.
//! - `heartbeat` every second per product: `{"type":"heartbeat","sequence":90,"last_trade_id":20,"product_id":"BTC-USD","time":"…"}`.
//! - REST: `GET /products/{id}/trades?after=&before=&limit=` (newest first; `after=X` → ids
//!   below X; header `CB-AFTER` = smallest id returned, `CB-BEFORE` = largest), `GET /products/{id}`,
//!   `GET /products`, `GET /time`, `GET /products/{id}/candles` (see `klines`).

use crate::http::{Request, Response};
use crate::market::Market;
use crate::ratelimit::Rule;
use crate::venue::{Parsed, Session, Venue, json_str, pseudo_uuid};
use candles_core::symbols::{pair_from_symbol, ws_symbol};
use candles_core::{Exchange, Micros, Pair, Side, Trade};
use serde_json::{Value, json};

/// Coinbase's protocol.
pub(crate) struct Coinbase;

/// `limit` of the trades endpoint: default and maximum.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// The maker's side, which is what Coinbase reports.
fn maker_side(side: Side) -> &'static str {
    match side {
        Side::Buy => "sell",
        _ => "buy",
    }
}

/// The product-wide sequence number of a match (other book events use the numbers between).
fn sequence(trade_id: u64) -> u64 {
    trade_id.saturating_mul(3)
}

/// A number that identifies a pair (FNV-1a of its name), for deterministic order ids.
fn pair_key(pair: Pair) -> u64 {
    pair.to_string()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
}

fn match_message(kind: &str, t: &Trade) -> String {
    format!(
        r#"{{"type":"{kind}","trade_id":{},"sequence":{},"maker_order_id":"{}","taker_order_id":"{}","time":"{}","product_id":"{}","size":"{}","price":"{}","side":"{}"}}"#,
        t.id,
        sequence(t.id),
        pseudo_uuid(&[pair_key(t.pair), t.id, 1]),
        pseudo_uuid(&[pair_key(t.pair), t.id, 2]),
        t.time.to_rfc3339(),
        ws_symbol(Exchange::Coinbase, t.pair),
        t.quantity,
        t.price,
        maker_side(t.side),
    )
}

fn error_message(message: &str, reason: &str) -> String {
    format!(
        r#"{{"type":"error","message":{},"reason":{}}}"#,
        json_str(message),
        json_str(reason)
    )
}

fn not_found() -> Response {
    Response::status(404, r#"{"message":"NotFound"}"#)
}

/// The channels and products a subscribe/unsubscribe request names.
#[derive(Debug)]
struct Wanted {
    matches: Vec<String>,
    heartbeat: Vec<String>,
    /// Channel names given without products (unsubscribe: the whole channel).
    whole: Vec<String>,
}

/// The strings of `value`'s `product_ids` array, if it has one.
fn product_ids(value: &Value) -> Option<Vec<String>> {
    let ids = value.get("product_ids")?.as_array()?;
    Some(
        ids.iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
    )
}

/// Reads `channels` (names and/or objects) with the top-level `product_ids` as default.
fn channels(request: &Value) -> Result<Wanted, String> {
    let top: Vec<String> = product_ids(request).unwrap_or_default();
    let mut out = Wanted {
        matches: Vec::new(),
        heartbeat: Vec::new(),
        whole: Vec::new(),
    };
    let list = request
        .get("channels")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for channel in &list {
        let (name, products) = match channel {
            Value::String(name) => (name.as_str(), top.clone()),
            Value::Object(o) => {
                let name = o.get("name").and_then(Value::as_str).unwrap_or("");
                let products = product_ids(channel).unwrap_or_else(|| top.clone());
                (name, products)
            }
            _ => return Err("channels must be names or objects".into()),
        };
        if products.is_empty() {
            out.whole.push(name.to_string());
        }
        match name {
            "matches" => out.matches.extend(products),
            "heartbeat" => out.heartbeat.extend(products),
            other => return Err(format!("{other} is not a valid channel")),
        }
    }
    Ok(out)
}

impl Coinbase {
    fn subscriptions(session: &Session) -> String {
        let names = |pairs: Vec<Pair>| -> Vec<String> {
            pairs
                .into_iter()
                .map(|p| ws_symbol(Exchange::Coinbase, p))
                .collect()
        };
        let mut channels = Vec::new();
        if !session.subs.is_empty() {
            channels.push(json!({ "name": "matches", "product_ids": names(session.subs.keys().copied().collect()) }));
        }
        if !session.heartbeats.is_empty() {
            channels.push(json!({ "name": "heartbeat", "product_ids": names(session.heartbeats.iter().copied().collect()) }));
        }
        format!(
            r#"{{"type":"subscriptions","channels":{}}}"#,
            Value::Array(channels)
        )
    }

    fn subscribe(&self, request: &Value, session: &mut Session, market: &Market) -> Vec<String> {
        let wanted = match channels(request) {
            Ok(w) => w,
            Err(reason) => return vec![error_message("Failed to subscribe", &reason)],
        };
        if wanted.matches.is_empty() && wanted.heartbeat.is_empty() {
            return vec![error_message(
                "Failed to subscribe",
                "No product ids provided",
            )];
        }
        // Validate everything first: one bad product rejects the whole request.
        let resolve = |ids: &[String]| -> Result<Vec<Pair>, String> {
            ids.iter()
                .map(|id| match pair_from_symbol(Exchange::Coinbase, id) {
                    Ok(p) if market.is_listed(p) => Ok(p),
                    _ => Err(format!("{id} is not a valid product")),
                })
                .collect()
        };
        let (matches, heartbeat) = match (resolve(&wanted.matches), resolve(&wanted.heartbeat)) {
            (Ok(m), Ok(h)) => (m, h),
            (Err(reason), _) | (_, Err(reason)) => {
                return vec![error_message("Failed to subscribe", &reason)];
            }
        };
        let mut last_matches = Vec::new();
        for pair in matches {
            let fresh = !session.subs.contains_key(&pair);
            let recent = session.subscribe(pair, market, 1);
            if fresh && let Some(last) = recent.last() {
                last_matches.push(match_message("last_match", last));
            }
        }
        for pair in heartbeat {
            session.heartbeats.insert(pair);
            session.subscribed = true;
            market.note_subscriber();
        }
        let mut out = vec![Self::subscriptions(session)];
        out.extend(last_matches);
        out
    }

    fn unsubscribe(&self, request: &Value, session: &mut Session) -> Vec<String> {
        let wanted = match channels(request) {
            Ok(w) => w,
            Err(reason) => return vec![error_message("Failed to unsubscribe", &reason)],
        };
        let pairs = |ids: &[String]| -> Vec<Pair> {
            ids.iter()
                .filter_map(|id| pair_from_symbol(Exchange::Coinbase, id).ok())
                .collect()
        };
        for pair in pairs(&wanted.matches) {
            session.subs.remove(&pair);
        }
        for pair in pairs(&wanted.heartbeat) {
            session.heartbeats.remove(&pair);
        }
        for name in &wanted.whole {
            match name.as_str() {
                "matches" => session.subs.clear(),
                "heartbeat" => session.heartbeats.clear(),
                _ => {}
            }
        }
        vec![Self::subscriptions(session)]
    }

    fn product(path: &str, market: &Market) -> Option<Pair> {
        pair_from_symbol(Exchange::Coinbase, path)
            .ok()
            .filter(|p| market.is_listed(*p))
    }

    fn product_json(pair: Pair, market: &Market) -> Value {
        let mut product = json!({
            "id": ws_symbol(Exchange::Coinbase, pair),
            "base_currency": pair.base.as_str(),
            "quote_currency": pair.quote.as_str(),
            "status": "online",
        });
        // Without `trading_disabled` a product trades (the shape earlier versions served).
        if market.is_halted(pair) {
            product["trading_disabled"] = json!(true);
        }
        product
    }

    fn trades(&self, pair: Pair, request: &Request, market: &Market) -> Response {
        let limit = match request.param("limit").map(|l| l.parse::<usize>()) {
            None => DEFAULT_LIMIT,
            Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
            Some(_) => {
                return Response::status(
                    400,
                    r#"{"message":"Invalid limit: must be between 1 and 1000"}"#,
                );
            }
        };
        let cursor = |name: &str| -> Result<Option<u64>, Response> {
            match request.param(name) {
                None => Ok(None),
                Some(text) => text.parse::<u64>().map(Some).map_err(|_| {
                    Response::status(
                        400,
                        format!(r#"{{"message":"Invalid {name}: not a trade id"}}"#),
                    )
                }),
            }
        };
        let (after, before) = match (cursor("after"), cursor("before")) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(r), _) | (_, Err(r)) => return r,
        };
        let page: Vec<Trade> = market.with_pair(pair, |list| {
            let slice = match (after, before) {
                (Some(after), _) => {
                    let end = list.partition_point(|t| t.id < after);
                    &list[end.saturating_sub(limit)..end]
                }
                (None, Some(before)) => {
                    let start = list.partition_point(|t| t.id <= before);
                    &list[start..(start + limit).min(list.len())]
                }
                (None, None) => &list[list.len().saturating_sub(limit)..],
            };
            slice.iter().rev().copied().collect()
        });
        let rows: Vec<String> = page
            .iter()
            .map(|t| {
                format!(
                    r#"{{"time":"{}","trade_id":{},"price":"{}","size":"{}","side":"{}"}}"#,
                    t.time.to_rfc3339(),
                    t.id,
                    t.price,
                    t.quantity,
                    maker_side(t.side)
                )
            })
            .collect();
        let mut response = Response::ok(format!("[{}]", rows.join(",")));
        if let (Some(newest), Some(oldest)) = (page.first(), page.last()) {
            response = response
                .with_header("CB-AFTER", oldest.id.to_string())
                .with_header("CB-BEFORE", newest.id.to_string());
        }
        response
    }
}

impl Venue for Coinbase {
    /// Public endpoints: 10 requests a second, bursts up to 15.
    fn rest_limit(&self) -> Rule {
        Rule::Bucket {
            burst: 15.0,
            per_second: 10.0,
        }
    }

    /// 429 `Public rate limit exceeded`, no `Retry-After`.
    fn rate_limited(&self, _retry_after: std::time::Duration, _banned: bool) -> Response {
        Response::status(
            429,
            json!({ "message": "Public rate limit exceeded" }).to_string(),
        )
    }

    fn exchange(&self) -> Exchange {
        Exchange::Coinbase
    }

    fn ws_path(&self) -> &'static str {
        "/"
    }

    fn open(&self, path: &str, _query: &str, _market: &Market) -> Option<Session> {
        (path == "/" || path.is_empty()).then(Session::default)
    }

    fn on_text(&self, text: &str, session: &mut Session, market: &Market) -> Vec<String> {
        let Ok(request) = serde_json::from_str::<Value>(text) else {
            return vec![error_message(
                "Malformed JSON",
                "the message is not valid JSON",
            )];
        };
        match request.get("type").and_then(Value::as_str).unwrap_or("") {
            "subscribe" => self.subscribe(&request, session, market),
            "unsubscribe" => self.unsubscribe(&request, session),
            other => vec![error_message(
                "Failed to subscribe",
                &format!(
                    "{other:?} is not a valid message type; expected subscribe or unsubscribe"
                ),
            )],
        }
    }

    fn encode(&self, trades: &[Trade], _session: &Session) -> Vec<String> {
        trades.iter().map(|t| match_message("match", t)).collect()
    }

    fn heartbeats(&self, session: &Session, market: &Market) -> Vec<String> {
        let now = Micros::now().to_rfc3339();
        session
            .heartbeats
            .iter()
            .map(|pair| {
                let last = session.subs.get(pair).copied().unwrap_or_else(|| market.subscribe_point(*pair, 0).1);
                format!(
                    r#"{{"type":"heartbeat","sequence":{},"last_trade_id":{last},"product_id":"{}","time":"{now}"}}"#,
                    sequence(last) + 1,
                    ws_symbol(Exchange::Coinbase, *pair)
                )
            })
            .collect()
    }

    fn requires_early_subscribe(&self) -> bool {
        true
    }

    fn corrupt(&self, message: &str) -> String {
        message.replacen(r#""price":""#, r#""price":"NaN"#, 1)
    }

    fn rest(&self, request: &Request, market: &Market) -> Response {
        let path = request.path.trim_end_matches('/');
        if path == "/products" {
            let all: Vec<Value> = market
                .listed
                .iter()
                .map(|p| Self::product_json(*p, market))
                .collect();
            return Response::ok(Value::Array(all).to_string());
        }
        if path == "/time" {
            let now = Micros::now();
            return Response::ok(format!(
                r#"{{"iso":"{}","epoch":{}.{:03}}}"#,
                now.to_rfc3339(),
                now.0 / 1_000_000,
                (now.0 / 1_000) % 1_000
            ));
        }
        let Some(rest) = path.strip_prefix("/products/") else {
            return not_found();
        };
        match rest.split_once('/') {
            None => Self::product(rest, market).map_or_else(not_found, |p| {
                Response::ok(Self::product_json(p, market).to_string())
            }),
            Some((id, "trades")) => match Self::product(id, market) {
                Some(pair) => self.trades(pair, request, market),
                None => not_found(),
            },
            Some((id, "candles")) => match Self::product(id, market) {
                Some(pair) => crate::klines::coinbase(request, pair, market).map_or_else(
                    |msg| Response::status(400, json!({ "message": msg }).to_string()),
                    Response::ok,
                ),
                None => not_found(),
            },
            Some(_) => not_found(),
        }
    }

    fn parse_line(&self, line: &str) -> Parsed {
        let Ok(value) = serde_json::from_str::<Value>(line) else {
            return Parsed::default();
        };
        let pair = value
            .get("product_id")
            .and_then(Value::as_str)
            .and_then(|s| pair_from_symbol(Exchange::Coinbase, s).ok());
        let kind = value.get("type").and_then(Value::as_str).unwrap_or("");
        let trade = if matches!(kind, "match" | "last_match") {
            parse_match(&value)
        } else {
            None
        };
        Parsed {
            pair,
            trades: trade.into_iter().collect(),
        }
    }

    fn wire(&self, mut trade: Trade) -> Trade {
        trade.quantity.rescale(8);
        trade
    }
}

/// A `match`/`last_match` message as a trade (taker side = opposite of the maker side).
fn parse_match(value: &Value) -> Option<Trade> {
    let pair = pair_from_symbol(Exchange::Coinbase, value.get("product_id")?.as_str()?).ok()?;
    let side = match value.get("side")?.as_str()? {
        "sell" => Side::Buy,
        "buy" => Side::Sell,
        _ => Side::Unknown,
    };
    let id = value.get("trade_id")?.as_u64()?;
    let time = Micros::parse_rfc3339(value.get("time")?.as_str()?).ok()?;
    let price = value.get("price")?.as_str()?;
    let size = value.get("size")?.as_str()?;
    Trade::new(Exchange::Coinbase, pair, id, price, size, side, time).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_match_parses_with_the_taker_side() {
        let line = r#"{"type":"match","trade_id":10,"sequence":50,"maker_order_id":"ac928c66-ca53-498f-9c13-a110027a60e8","taker_order_id":"132fb6ae-456b-4654-b4e0-d681ac05cea1","time":"2014-11-07T08:19:27.028459Z","product_id":"BTC-USD","size":"5.23512","price":"400.23","side":"sell"}"#;
        let parsed = Coinbase.parse_line(line);
        let t = parsed.trades[0];
        assert_eq!(
            (t.id, t.side, t.price.to_string(), t.quantity.to_string()),
            (10, Side::Buy, "400.23".into(), "5.23512".into())
        );
        assert_eq!(parsed.pair.unwrap().to_string(), "BTC-USD");
        let heartbeat = Coinbase.parse_line(r#"{"type":"heartbeat","sequence":90,"last_trade_id":20,"product_id":"BTC-USD","time":"2014-11-07T08:19:28.464459Z"}"#);
        assert!(heartbeat.trades.is_empty() && heartbeat.pair.is_some());
    }

    #[test]
    fn matches_round_trip() {
        let pair = Pair::parse("ETH-USDT").unwrap();
        let t = Coinbase.wire(
            Trade::new(
                Exchange::Coinbase,
                pair,
                77,
                "3000.01",
                "0.0123",
                Side::Sell,
                Micros(1_700_000_000_000_001),
            )
            .unwrap(),
        );
        let msg = &Coinbase.encode(&[t], &Session::default())[0];
        assert!(
            msg.contains(r#""size":"0.01230000","price":"3000.01","side":"buy""#),
            "{msg}"
        );
        assert_eq!(Coinbase.parse_line(msg).trades, vec![t]);
        assert!(
            Coinbase
                .parse_line(&Coinbase.corrupt(msg))
                .trades
                .is_empty()
        );
    }

    #[test]
    fn channel_objects_and_names_are_both_understood() {
        let request: Value = serde_json::from_str(r#"{"type":"subscribe","product_ids":["BTC-USDT"],"channels":["heartbeat",{"name":"matches","product_ids":["ETH-USDT"]}]}"#).unwrap();
        let wanted = channels(&request).unwrap();
        assert_eq!(wanted.heartbeat, ["BTC-USDT"]);
        assert_eq!(wanted.matches, ["ETH-USDT"]);
        let bad: Value = serde_json::from_str(
            r#"{"type":"subscribe","product_ids":["BTC-USDT"],"channels":["level3"]}"#,
        )
        .unwrap();
        assert!(channels(&bad).unwrap_err().contains("level3"));
    }
}
