//! Coinbase Exchange ws-feed and REST JSON, mirrored field by field (money stays text).
//!
//! Docs: <https://docs.cdp.coinbase.com/exchange/websocket-feed/channels> and
//! <https://docs.cdp.coinbase.com/exchange/reference/exchangerestapi_getproducttrades>.

use serde::Deserialize;
use std::borrow::Cow;

/// Just enough of any frame to tell what it is: every ws-feed message has `type`.
///
/// `{"type":"subscriptions","channels":[{"name":"level2","product_ids":["BAND-GBP","BAND-BTC"]}]}`
#[derive(Debug, Deserialize)]
pub struct Envelope<'a> {
    /// `match`, `last_match`, `heartbeat`, `subscriptions`, `error`, ...
    #[serde(borrow, rename = "type")]
    pub kind: Cow<'a, str>,
    /// The error text of `type:"error"`.
    #[serde(default)]
    pub message: Option<String>,
    /// More detail on an error.
    #[serde(default)]
    pub reason: Option<String>,
}

/// A `match` (one trade) or `last_match` (the latest trade, sent once per product right after
/// subscribing). Doc sample:
///
/// `{"type":"match","trade_id":10,"sequence":50,"maker_order_id":"ac928c66-ca53-498f-9c13-a110027a60e8","taker_order_id":"132fb6ae-456b-4654-b4e0-d681ac05cea1","time":"2014-11-07T08:19:27.028459Z","product_id":"BTC-USD","size":"5.23512","price":"400.23","side":"sell"}`
///
/// Real `last_match` (2021):
///
/// `{"type":"last_match","trade_id":881613,"maker_order_id":"27fff20b-af29-4f45-8744-56dd1ef57dc0","taker_order_id":"1da6ce16-c8da-4732-9f71-6049f4c6aaf8","side":"sell","size":"0.04","price":"14.7775","product_id":"BAND-GBP","sequence":333938798,"time":"2021-04-17T16:43:30.244075Z"}`
#[derive(Debug, Deserialize)]
pub struct Match {
    /// Trade id, contiguous per product (unlike `sequence`).
    pub trade_id: u64,
    /// `BTC-USDT`.
    pub product_id: String,
    /// Quantity text.
    pub size: String,
    /// Price text.
    pub price: String,
    /// The MAKER order's side: `sell` ⇒ the taker bought.
    pub side: String,
    /// Trade time, RFC 3339 with microseconds.
    pub time: String,
}

/// A `heartbeat`, once a second per product. Doc sample:
///
/// `{"type":"heartbeat","sequence":90,"last_trade_id":20,"product_id":"BTC-USD","time":"2014-11-07T08:19:28.464459Z"}`
#[derive(Debug, Deserialize)]
pub struct Heartbeat {
    /// The product's latest trade id: anything above what we published was missed.
    pub last_trade_id: u64,
    /// `BTC-USDT`.
    pub product_id: String,
}

/// One entry of `GET /products/{id}/trades` (newest first; `side` is the maker's side):
///
/// `{"time":"2014-11-07T22:19:28.578544Z","trade_id":74,"price":"10.00000000","size":"0.01000000","side":"buy"}`
#[derive(Debug, Deserialize)]
pub struct RestTrade {
    /// Trade time.
    pub time: String,
    /// Trade id.
    pub trade_id: u64,
    /// Price text.
    pub price: String,
    /// Quantity text.
    pub size: String,
    /// The maker's side.
    pub side: String,
}

/// A REST error: `{"message":"NotFound"}`.
#[derive(Debug, Deserialize)]
pub struct RestError {
    /// What went wrong.
    pub message: String,
}

/// One product of `GET /products`, reduced to what the listing check reads:
///
/// `{"id":"BTC-USDT","base_currency":"BTC","quote_currency":"USDT","status":"online","trading_disabled":false}`
#[derive(Debug, Deserialize)]
pub struct Product {
    /// `BTC-USDT`.
    pub id: String,
    /// `BTC`.
    #[serde(default)]
    pub base_currency: String,
    /// `USDT`.
    #[serde(default)]
    pub quote_currency: String,
    /// `online`, `offline`, `internal`, `delisted`.
    #[serde(default)]
    pub status: Option<String>,
    /// Whether trading is halted.
    #[serde(default)]
    pub trading_disabled: Option<bool>,
}
