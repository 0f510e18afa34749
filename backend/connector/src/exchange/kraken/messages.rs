//! Kraken Spot WebSocket v2 and REST JSON, mirrored field by field.
//!
//! WebSocket v2 sends prices and quantities as JSON *numbers*; they are kept as
//! [`serde_json::Number`], whose text (the workspace enables `arbitrary_precision`) is parsed as
//! an exact decimal — never through `f64`.
//!
//! Docs: <https://docs.kraken.com/api/docs/websocket-v2/trade>,
//! <https://docs.kraken.com/api/docs/rest-api/get-recent-trades>.

use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// Just enough of any frame to tell what it is: data frames have `channel` (and `type`),
/// request answers have `method` (and `success`).
///
/// `{"method":"subscribe","result":{"channel":"ticker","snapshot":true,"symbol":"ALGO/USD"},"success":true,"time_in":"2023-09-25T09:04:31.742599Z","time_out":"2023-09-25T09:04:31.742648Z"}`
#[derive(Debug, Deserialize)]
pub struct Envelope<'a> {
    /// `trade`, `heartbeat`, `status`, ...
    #[serde(default, borrow)]
    pub channel: Option<Cow<'a, str>>,
    /// `snapshot` or `update` on data frames.
    #[serde(default, borrow, rename = "type")]
    pub kind: Option<Cow<'a, str>>,
    /// `subscribe`, `unsubscribe`, `pong`, ... on answers.
    #[serde(default, borrow)]
    pub method: Option<Cow<'a, str>>,
    /// Whether a request succeeded.
    #[serde(default)]
    pub success: Option<bool>,
    /// Why a request failed.
    #[serde(default)]
    pub error: Option<String>,
    /// The trades of a `trade` frame.
    #[serde(default, borrow)]
    pub data: Option<&'a RawValue>,
}

/// One trade of a v2 `trade` frame. Real doc sample (a snapshot carries several):
///
/// `{"channel":"trade","type":"snapshot","data":[{"symbol":"MATIC/USD","side":"buy","price":0.5147,"qty":6423.46326,"ord_type":"limit","trade_id":4665846,"timestamp":"2023-09-25T07:48:36.925533Z"},{"symbol":"MATIC/USD","side":"buy","price":0.5147,"qty":1136.19677815,"ord_type":"limit","trade_id":4665847,"timestamp":"2023-09-25T07:49:36.925603Z"}]}`
#[derive(Debug, Deserialize)]
pub struct TradeData {
    /// `BTC/USDT` (v2 writes BTC, not XBT).
    pub symbol: String,
    /// Taker side: `buy` or `sell`.
    pub side: String,
    /// Price as the exchange wrote the number.
    pub price: serde_json::Number,
    /// Quantity as the exchange wrote the number.
    pub qty: serde_json::Number,
    /// Trade id, a sequence number per book.
    pub trade_id: u64,
    /// Trade time, RFC 3339 with microseconds.
    pub timestamp: String,
}

/// The envelope of every REST answer:
///
/// `{"error":[],"result":{"XBTUSDT":[["30243.40000","0.34507674",1688669597.8277261,"b","m","",61044952]],"last":"1688671969993150842"}}`
///
/// A refused request: `{"error":["EQuery:Unknown asset pair"]}`.
#[derive(Debug, Deserialize)]
pub struct RestResponse {
    /// Error strings; empty on success.
    #[serde(default)]
    pub error: Vec<String>,
    /// The payload: for `Trades`, one key per pair plus `last`; for `AssetPairs`, one per pair.
    #[serde(default)]
    pub result: Option<serde_json::Map<String, serde_json::Value>>,
}

/// One row of `GET /0/public/Trades`:
/// `["30243.40000","0.34507674",1688669597.8277261,"b","m","",61044952]` =
/// price, volume, time (seconds, a JSON number), taker side `b`/`s`, order type, misc, trade id.
#[derive(Debug, Deserialize)]
pub struct RestTrade(
    /// Price text.
    pub String,
    /// Volume text.
    pub String,
    /// Time in seconds since the epoch, as the exchange wrote the number.
    pub serde_json::Number,
    /// Taker side: `b` or `s`.
    pub String,
    /// Order type: `l` or `m`.
    pub String,
    /// Miscellaneous.
    pub String,
    /// Trade id (same sequence as the WebSocket's `trade_id`).
    pub u64,
);

/// One pair of `GET /0/public/AssetPairs?pair=XBTUSDT`, reduced to what the listing check reads:
///
/// `{"altname":"XBTUSDT","wsname":"XBT/USDT","base":"XXBT","quote":"USDT","status":"online"}`
#[derive(Debug, Deserialize)]
pub struct AssetPair {
    /// `XBTUSDT`.
    #[serde(default)]
    pub altname: Option<String>,
    /// The WebSocket v1 name, Kraken's asset names: `XBT/USDT`, `XDG/USDT`.
    #[serde(default)]
    pub wsname: Option<String>,
    /// `online`, `cancel_only`, `post_only`, `limit_only`, `reduce_only`, `delisted`.
    #[serde(default)]
    pub status: Option<String>,
}
