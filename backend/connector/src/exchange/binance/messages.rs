//! Binance Spot JSON, mirrored field by field (numbers that are money stay text).
//!
//! Docs: <https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams> and
//! <https://developers.binance.com/docs/binance-spot-api-docs/rest-api>.

use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// Just enough of any frame to tell what it is: a raw event has `e`; the combined-stream form
/// wraps it as `{"stream":..,"data":..}`; a request's answer has `id` and `result` or `code`.
///
/// `{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1770123456789}}`
#[derive(Debug, Deserialize)]
pub struct Envelope<'a> {
    /// Event type: `trade`, `aggTrade`, `serverShutdown`, ...
    #[serde(default, borrow)]
    pub e: Option<Cow<'a, str>>,
    /// Combined-stream name (`btcusdt@trade`).
    #[serde(default, borrow)]
    pub stream: Option<Cow<'a, str>>,
    /// Combined-stream payload.
    #[serde(default, borrow)]
    pub data: Option<&'a RawValue>,
    /// Request id echoed in answers (integer, string or null).
    #[serde(default)]
    pub id: Option<serde_json::Value>,
    /// Error code of a refused request.
    #[serde(default)]
    pub code: Option<serde_json::Value>,
    /// Error message of a refused request.
    #[serde(default)]
    pub msg: Option<String>,
    /// Newer error form: `{"error":{"code":..,"msg":..},"id":..}`.
    #[serde(default)]
    pub error: Option<serde_json::Value>,
}

/// A raw `<symbol>@trade` event. Doc sample (web-socket-streams.md):
///
/// `{"e":"trade","E":1672515782136,"s":"BNBBTC","t":12345,"p":"0.001","q":"100","T":1672515782136,"m":true,"M":true}`
///
/// Real BTCUSDT trade from January 2024, in the legacy format with the buyer/seller order ids
/// `b`/`a` (removed 2024-06-18; tolerated and ignored):
///
/// `{"e":"trade","E":1706602794682,"s":"BTCUSDT","t":276229663,"p":"43381.54000000","q":"0.10820000","b":2707014328,"a":2707014327,"T":1706602794681,"m":false,"M":true}`
#[derive(Debug, Deserialize)]
pub struct TradeEvent {
    /// Event (push) time, ms.
    #[serde(rename = "E")]
    pub event_time: i64,
    /// Symbol, upper case (`BTCUSDT`).
    #[serde(rename = "s")]
    pub symbol: String,
    /// Trade id, strictly increasing per symbol.
    #[serde(rename = "t")]
    pub trade_id: u64,
    /// Price text.
    #[serde(rename = "p")]
    pub price: String,
    /// Quantity text.
    #[serde(rename = "q")]
    pub quantity: String,
    /// Trade (matching engine) time, ms.
    #[serde(rename = "T")]
    pub trade_time: i64,
    /// Is the buyer the maker? `true` ⇒ the taker sold.
    #[serde(rename = "m")]
    pub buyer_is_maker: bool,
}

/// One entry of `GET /api/v3/historicalTrades` (rest-api.md "Old trade lookup"):
///
/// `{"id":28457,"price":"4.00000100","qty":"12.00000000","quoteQty":"48.000012","time":1499865549590,"isBuyerMaker":true,"isBestMatch":true}`
#[derive(Debug, Deserialize)]
pub struct HistoricalTrade {
    /// Trade id (same id space as the stream's `t`).
    pub id: u64,
    /// Price text.
    pub price: String,
    /// Quantity text.
    pub qty: String,
    /// Trade time, ms.
    pub time: i64,
    /// `true` ⇒ the taker sold.
    #[serde(rename = "isBuyerMaker")]
    pub is_buyer_maker: bool,
}

/// A REST error: `{"code":-1121,"msg":"Invalid symbol."}`.
#[derive(Debug, Deserialize)]
pub struct RestError {
    /// Binance's error code.
    pub code: i64,
    /// Its message.
    pub msg: String,
}

/// `GET /api/v3/exchangeInfo?symbols=["BTCUSDT","ETHUSDT"]`, reduced to what the listing check reads:
///
/// `{"timezone":"UTC","serverTime":1565246363776,"rateLimits":[],"exchangeFilters":[],"symbols":[{"symbol":"ETHBTC","status":"TRADING","baseAsset":"ETH","quoteAsset":"BTC"}]}`
#[derive(Debug, Deserialize)]
pub struct ExchangeInfo {
    /// The symbols asked for.
    pub symbols: Vec<SymbolInfo>,
}

/// One symbol of [`ExchangeInfo`].
#[derive(Debug, Deserialize)]
pub struct SymbolInfo {
    /// `BTCUSDT`.
    pub symbol: String,
    /// `TRADING`, `BREAK`, `HALT`, ...
    pub status: String,
    /// `BTC`.
    #[serde(default, rename = "baseAsset")]
    pub base_asset: String,
    /// `USDT`.
    #[serde(default, rename = "quoteAsset")]
    pub quote_asset: String,
}
